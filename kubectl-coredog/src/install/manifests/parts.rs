//! Building blocks the objects share: metadata, RBAC pieces, env, probes, volumes.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource,
    Namespace, ObjectFieldSelector, Probe, ResourceRequirements, SeccompProfile, Secret,
    SecretKeySelector, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::{
    ACCESS_KEY_ID, CONFIG_KEY, CONFIG_SECRET, CREDENTIALS_SECRET, Credentials, Labels, MANAGED_BY,
    NAMESPACE, SECRET_ACCESS_KEY, STORAGE_CA_CONFIG_MAP, STORAGE_CA_KEY,
};

pub(super) fn meta(name: &str, namespaced: bool, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespaced.then(|| NAMESPACE.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

pub(super) fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

pub(super) fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub(super) fn namespace() -> Namespace {
    Namespace {
        metadata: meta(
            NAMESPACE,
            false,
            BTreeMap::from([
                ("app.kubernetes.io/part-of".into(), "coredog".into()),
                ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
                // The watcher mounts the node's dump directory (hostPath), which the baseline and
                // restricted Pod Security levels refuse.
                (
                    "pod-security.kubernetes.io/enforce".into(),
                    "privileged".into(),
                ),
            ]),
        ),
        ..Namespace::default()
    }
}

pub(super) fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    }
}

pub(super) fn service_account(name: &str, labels: BTreeMap<String, String>) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(name, true, labels),
        ..ServiceAccount::default()
    }
}

pub(super) fn config_secret(labels: &Labels, config_text: &str) -> Secret {
    Secret {
        metadata: meta(CONFIG_SECRET, true, labels.watcher()),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            ByteString(config_text.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

pub(super) fn storage_ca_config_map(labels: &Labels, certificates: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(STORAGE_CA_CONFIG_MAP, true, labels.watcher()),
        data: Some(BTreeMap::from([(
            STORAGE_CA_KEY.to_owned(),
            certificates.to_owned(),
        )])),
        ..ConfigMap::default()
    }
}

pub(super) fn credentials_secret(labels: &Labels, credentials: &Credentials) -> Secret {
    Secret {
        metadata: meta(CREDENTIALS_SECRET, true, labels.watcher()),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                ACCESS_KEY_ID.to_owned(),
                ByteString(credentials.access_key_id.as_bytes().to_vec()),
            ),
            (
                SECRET_ACCESS_KEY.to_owned(),
                ByteString(credentials.secret_access_key.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

pub(super) fn rule(
    groups: &[&str],
    resources: &[&str],
    names: &[&str],
    verbs: &[&str],
) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        resource_names: (!names.is_empty()).then(|| strings(names)),
        verbs: strings(verbs),
        non_resource_urls: None,
    }
}

pub(super) fn subjects(name: &str) -> Option<Vec<Subject>> {
    Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(NAMESPACE.into()),
        api_group: None,
    }])
}

pub(super) fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

pub(super) fn cluster_role_binding(
    name: &str,
    labels: BTreeMap<String, String>,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, false, labels),
        role_ref: role_ref("ClusterRole", name),
        subjects: subjects(name),
    }
}

pub(super) fn role_binding(name: &str, labels: BTreeMap<String, String>) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, true, labels),
        role_ref: role_ref("Role", name),
        subjects: subjects(name),
    }
}

pub(super) fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

pub(super) fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

pub(super) fn http_probe(path: &str, port: &str, https: bool, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            scheme: https.then(|| "HTTPS".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

pub(super) fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity(memory_limit.into()),
        )])),
        claims: None,
    }
}

pub(super) fn runtime_default() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    })
}

pub(super) fn volume_mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

pub(super) fn host_path_volume(name: &str, path: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some("DirectoryOrCreate".into()),
        }),
        ..Volume::default()
    }
}

pub(super) fn empty_dir_volume(name: &str, size: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(Quantity(size.into())),
        }),
        ..Volume::default()
    }
}
