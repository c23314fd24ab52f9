//! The watcher's objects: its DaemonSet and RBAC.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, HostPathVolumeSource,
    KeyToPath, NFSVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, SecretVolumeSource,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::parts::{
    empty_dir_volume, field_env, host_path_volume, http_probe, match_labels, meta, resources, rule,
    runtime_default, secret_env, sha256_hex, strings, volume_mount,
};
use super::{
    ACCESS_KEY_ID, CFS_VOLUME, CONFIG_KEY, CONFIG_SECRET, CONFIG_VOLUME, CREDENTIALS_SECRET,
    CfsShare, HOST_DUMPS_VOLUME, LOG_FORMAT, Labels, SECRET_ACCESS_KEY, STATE_HOST_DIR,
    STORAGE_CA_CONFIG_MAP, STORAGE_CA_DIR, STORAGE_CA_KEY, STORAGE_CA_VOLUME, Settings, WATCHER,
    WATCHER_CONTAINER, linux_nodes, selector_labels,
};

/// How long a stopping watcher pod has: uploads in flight finish within it.
const TERMINATION_GRACE_SECONDS: i64 = 60;
/// The watcher names a dump's pod from a watch of its node's pods, records Events on it
/// (events.k8s.io, as kube-runtime's recorder writes them), and annotates its own pod.
pub(super) fn watcher_cluster_role(labels: &Labels) -> ClusterRole {
    ClusterRole {
        metadata: meta(WATCHER, false, labels.watcher()),
        rules: Some(vec![
            rule(&[""], &["pods"], &[], &["list", "watch"]),
            rule(&["events.k8s.io"], &["events"], &[], &["create", "patch"]),
        ]),
        aggregation_rule: None,
    }
}

pub(super) fn watcher_role(labels: &Labels) -> Role {
    Role {
        metadata: meta(WATCHER, true, labels.watcher()),
        rules: Some(vec![
            rule(&[""], &["pods"], &[], &["patch"]),
            rule(&["apps"], &["daemonsets"], &[WATCHER], &["get"]),
        ]),
    }
}

fn cfs_volume(share: &CfsShare) -> Volume {
    match share {
        // The mount point must exist on the node; whether the share is mounted on it is the
        // node's business, which install's note and the README say.
        CfsShare::NodeMount { mount_path } => Volume {
            name: CFS_VOLUME.into(),
            host_path: Some(HostPathVolumeSource {
                path: mount_path.clone(),
                type_: Some("Directory".into()),
            }),
            ..Volume::default()
        },
        CfsShare::Nfs { server, export, .. } => Volume {
            name: CFS_VOLUME.into(),
            nfs: Some(NFSVolumeSource {
                server: server.clone(),
                path: export.clone(),
                read_only: None,
            }),
            ..Volume::default()
        },
    }
}

pub(super) fn watcher_daemon_set(
    settings: &Settings,
    host_dir: &str,
    labels: &Labels,
) -> DaemonSet {
    let mut args = strings(&[
        "watcher",
        "--config",
        "/etc/coredog/config.yaml",
        "--dir",
        "/corefile",
        "--listen",
        "[::]:9090",
    ]);
    // Uploads in flight get the grace period less the time the last notices take.
    args.extend([
        "--drain-seconds".to_owned(),
        (TERMINATION_GRACE_SECONDS - 15).to_string(),
    ]);
    if let Some(pattern) = &settings.core_pattern {
        args.extend(strings(&[
            "--core-pattern",
            pattern,
            "--state-dir",
            STATE_HOST_DIR,
            "--daemonset",
            WATCHER,
        ]));
    }
    args.extend(strings(&["--log-format", LOG_FORMAT]));

    let mut env = vec![
        field_env("NODE_NAME", "spec.nodeName"),
        field_env("HOST_IP", "status.hostIP"),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
    ];
    // Restart the watchers when what they read at start changes.
    let mut annotations = BTreeMap::from([
        (
            "kubectl.kubernetes.io/default-container".to_owned(),
            WATCHER_CONTAINER.to_owned(),
        ),
        (
            "checksum/config".to_owned(),
            sha256_hex(&settings.config_text),
        ),
    ]);
    if let Some(credentials) = &settings.credentials {
        env.push(secret_env(ACCESS_KEY_ID, CREDENTIALS_SECRET, ACCESS_KEY_ID));
        env.push(secret_env(
            SECRET_ACCESS_KEY,
            CREDENTIALS_SECRET,
            SECRET_ACCESS_KEY,
        ));
        annotations.insert(
            "checksum/storage-credentials".to_owned(),
            sha256_hex(&format!(
                "{}\n{}",
                credentials.access_key_id, credentials.secret_access_key
            )),
        );
    }

    if let Some(certificates) = &settings.storage_ca {
        env.push(EnvVar {
            name: "SSL_CERT_FILE".into(),
            value: Some(format!("{STORAGE_CA_DIR}/{STORAGE_CA_KEY}")),
            ..EnvVar::default()
        });
        annotations.insert("checksum/storage-ca".to_owned(), sha256_hex(certificates));
    }

    let privileged = settings.core_pattern.is_some();
    let security_context = if privileged {
        // Writing kernel.core_pattern needs a writable /proc/sys.
        SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(true),
            seccomp_profile: runtime_default(),
            ..SecurityContext::default()
        }
    } else {
        // Root, to read and remove cores written by any user, and to ask (with a read lease)
        // whether one is still being written; nothing else of root's.
        SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                add: Some(strings(&[
                    "DAC_OVERRIDE",
                    "DAC_READ_SEARCH",
                    "FOWNER",
                    "LEASE",
                ])),
            }),
            seccomp_profile: runtime_default(),
            ..SecurityContext::default()
        }
    };

    let mut volume_mounts = vec![
        volume_mount(HOST_DUMPS_VOLUME, "/corefile", false),
        volume_mount(CONFIG_VOLUME, "/etc/coredog", true),
        volume_mount("tmp", "/tmp", false),
    ];
    let mut volumes = vec![
        host_path_volume(HOST_DUMPS_VOLUME, host_dir),
        Volume {
            name: CONFIG_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(CONFIG_SECRET.into()),
                default_mode: Some(0o400),
                items: Some(vec![KeyToPath {
                    key: CONFIG_KEY.into(),
                    path: CONFIG_KEY.into(),
                    mode: None,
                }]),
                optional: None,
            }),
            ..Volume::default()
        },
        empty_dir_volume("tmp", "64Mi"),
    ];
    if settings.storage_ca.is_some() {
        volume_mounts.push(volume_mount(STORAGE_CA_VOLUME, STORAGE_CA_DIR, true));
        volumes.push(Volume {
            name: STORAGE_CA_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: STORAGE_CA_CONFIG_MAP.into(),
                items: Some(vec![KeyToPath {
                    key: STORAGE_CA_KEY.into(),
                    path: STORAGE_CA_KEY.into(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    if privileged {
        volume_mounts.push(volume_mount("state", STATE_HOST_DIR, false));
        volumes.push(host_path_volume("state", STATE_HOST_DIR));
    }
    if let Some(share) = &settings.cfs_share {
        volume_mounts.push(VolumeMount {
            // A share the node mounts after the watcher started is seen too.
            mount_propagation: matches!(share, CfsShare::NodeMount { .. })
                .then(|| "HostToContainer".to_owned()),
            ..volume_mount(CFS_VOLUME, share.mount_path(), false)
        });
        volumes.push(cfs_volume(share));
    }

    DaemonSet {
        metadata: meta(WATCHER, true, labels.watcher()),
        spec: Some(DaemonSetSpec {
            revision_history_limit: Some(5),
            selector: match_labels(selector_labels("watcher")),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: None,
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.watcher()),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(WATCHER.into()),
                    node_selector: linux_nodes(),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: runtime_default(),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![Container {
                        name: WATCHER_CONTAINER.into(),
                        image: Some(settings.image.clone()),
                        image_pull_policy: Some("IfNotPresent".into()),
                        args: Some(args),
                        env: Some(env),
                        ports: Some(vec![ContainerPort {
                            name: Some("metrics".into()),
                            container_port: 9090,
                            protocol: Some("TCP".into()),
                            ..ContainerPort::default()
                        }]),
                        liveness_probe: Some(http_probe("/healthz", "metrics", false, 10, 3)),
                        readiness_probe: Some(http_probe("/readyz", "metrics", false, 10, 3)),
                        resources: Some(resources("20m", "64Mi", "256Mi")),
                        security_context: Some(security_context),
                        volume_mounts: Some(volume_mounts),
                        ..Container::default()
                    }],
                    volumes: Some(volumes),
                    // Every node can produce dumps.
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Toleration::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    }
}
