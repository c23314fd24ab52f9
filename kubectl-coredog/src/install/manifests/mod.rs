//! The objects `install` applies: the same the Helm chart in `charts/` renders for release
//! `coredog` in namespace `coredog-system` with its default values, except for the labels that
//! name the tool (`app.kubernetes.io/managed-by`, Helm's `helm.sh/chart`) and the namespace itself,
//! which Helm leaves to `--create-namespace`. A test renders both and compares them.

mod parts;
mod watcher;
mod webhook;

pub use webhook::namespace_selector;

use std::collections::BTreeMap;
use std::fmt;

use coredog_core::mount_path::is_at_or_under;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::ApiResource;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::cli::FailurePolicy;

use parts::{
    cluster_role_binding, config_secret, credentials_secret, namespace, role_binding,
    service_account, storage_ca_config_map,
};
use watcher::{watcher_cluster_role, watcher_daemon_set, watcher_role};
use webhook::{
    pod_disruption_budget, webhook_cluster_role, webhook_configuration, webhook_deployment,
    webhook_role, webhook_service,
};

pub const NAMESPACE: &str = "coredog-system";
pub const RELEASE: &str = "coredog";
pub const WEBHOOK: &str = "coredog-webhook";
pub const WATCHER: &str = "coredog-watcher";
/// The watcher DaemonSet's container.
pub const WATCHER_CONTAINER: &str = "watcher";
pub const CONFIG_SECRET: &str = "coredog-config";
pub const CONFIG_KEY: &str = "config.yaml";
pub const CREDENTIALS_SECRET: &str = "coredog-storage-credentials";
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Made by the webhook at start, not by install: it manages its own certificate.
pub const TLS_SECRET: &str = "coredog-webhook-tls";
pub const WEBHOOK_NAME: &str = "inject.coredog.io";
pub const DEFAULT_CORE_PATTERN: &str = "/corefile/core.%e.%p.%h.%t";
pub const IMAGE_REPOSITORY: &str = "ghcr.io/coredog-io/coredog";
pub const MANAGED_BY: &str = "kubectl-coredog";
const STATE_HOST_DIR: &str = "/var/lib/coredog";

/// The watcher's volume of its configuration Secret (the chart's too).
pub const CONFIG_VOLUME: &str = "config";
/// The labels of CoreDog's watcher DaemonSet, whoever installed it (install or the chart).
pub const WATCHER_SELECTOR: &str =
    "app.kubernetes.io/part-of=coredog,app.kubernetes.io/component=watcher";
/// The CAs the watcher trusts for an https storage endpoint (`--storage-ca`): a ConfigMap, as
/// certificates are no secret, mounted where `SSL_CERT_FILE` points.
pub const STORAGE_CA_CONFIG_MAP: &str = "coredog-storage-ca";
pub const STORAGE_CA_KEY: &str = "ca.crt";
pub const STORAGE_CA_VOLUME: &str = "storage-ca";
const STORAGE_CA_DIR: &str = "/etc/coredog/storage-ca";
/// The watcher's volume (and mount) of a CFS share.
pub const CFS_VOLUME: &str = "cfs";
/// The watcher's volume of the node's dump directory (`--host-dir`).
pub const HOST_DUMPS_VOLUME: &str = "corefile";

/// Where the watcher container mounts its own volumes: a CFS share may not go there.
const WATCHER_OWN_PATHS: [&str; 4] = ["/corefile", "/etc/coredog", "/tmp", STATE_HOST_DIR];
const LOG_FORMAT: &str = "logfmt";

/// Static storage keys, given to the watcher through their own Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// What the install flags decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub image: String,
    pub host_dir: String,
    /// `Some(pattern)`: node setup, the watcher runs privileged and sets `kernel.core_pattern`.
    pub core_pattern: Option<String>,
    pub failure_policy: FailurePolicy,
    /// The watcher's config.yaml, as the user wrote it.
    pub config_text: String,
    pub credentials: Option<Credentials>,
    /// With protocol `cfs`: the share the watchers write to.
    pub cfs_share: Option<CfsShare>,
    /// The credentials Secret holds another kind of store's keys: removed once applied.
    pub stale_credentials: bool,
    /// PEM certificates of the CAs the storage endpoint's certificate may chain to, besides the
    /// public ones.
    pub storage_ca: Option<String>,
    /// A storage CA ConfigMap left from an earlier install that no longer wants one: removed
    /// once applied.
    pub stale_storage_ca: bool,
}

/// Where a watcher of protocol `cfs` finds the share it writes to, at the config's
/// `CFSMountPath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfsShare {
    /// Every node has the share mounted at `mount_path`; the watcher sees the node's.
    NodeMount { mount_path: String },
    /// The watcher mounts the NFS export `server:export` itself.
    Nfs {
        server: String,
        export: String,
        mount_path: String,
    },
}

impl CfsShare {
    /// `mount_path`'s share: the node's, or `server:/export` when given.
    pub fn new(mount_path: &str, nfs: Option<&str>) -> Result<Self, ManifestError> {
        let mount_path = mount_path.trim().trim_end_matches('/').to_owned();
        let overlaps =
            |own: &str| is_at_or_under(&mount_path, own) || is_at_or_under(own, &mount_path);
        if !mount_path.starts_with('/') || WATCHER_OWN_PATHS.iter().any(|own| overlaps(own)) {
            return Err(ManifestError::CfsMountPath(mount_path));
        }
        let Some(nfs) = nfs else {
            return Ok(Self::NodeMount { mount_path });
        };
        // The export is a path: the server is what comes before its `:/`, IPv6 colons and all.
        match nfs.rsplit_once(":/") {
            Some((server, export)) if !server.is_empty() => Ok(Self::Nfs {
                server: server.trim_matches(['[', ']']).to_owned(),
                export: format!("/{export}"),
                mount_path,
            }),
            _ => Err(ManifestError::CfsNfs(nfs.to_owned())),
        }
    }

    pub fn mount_path(&self) -> &str {
        match self {
            Self::NodeMount { mount_path } | Self::Nfs { mount_path, .. } => mount_path,
        }
    }
}

impl Settings {
    /// The image released with this plugin.
    pub fn default_image() -> String {
        format!("{IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    #[error("--host-dir {0:?} must be an absolute path other than /, without '.', '..' or '//'")]
    HostDir(String),
    #[error("--core-pattern {0:?} {1}")]
    CorePattern(String, &'static str),
    #[error("--image must not be empty")]
    Image,
    #[error("--cfs-nfs {0:?} must be SERVER:/EXPORT")]
    CfsNfs(String),
    #[error(
        "CFSMountPath {0:?} must be an absolute path apart from the watcher's /corefile, /etc/coredog, /tmp and /var/lib/coredog"
    )]
    CfsMountPath(String),
    #[error("cannot render {0}: {1}")]
    Render(String, String),
}

/// One object to apply: its JSON and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub name: String,
    pub object: Value,
}

impl Manifest {
    fn new<K>(object: &K) -> Result<Self, ManifestError>
    where
        K: kube::Resource<DynamicType = ()> + Serialize,
    {
        let resource = ApiResource::erase::<K>(&());
        let meta = object.meta();
        let name = meta.name.clone().unwrap_or_default();
        let value = serde_json::to_value(object)
            .map_err(|err| ManifestError::Render(name.clone(), err.to_string()))?;
        Ok(Self {
            namespace: meta.namespace.clone(),
            name,
            object: value,
            resource,
        })
    }

    /// As kubectl names it: `deployment.apps/coredog-webhook`.
    pub fn display_name(&self) -> String {
        display_name(&self.resource, &self.name)
    }
}

pub fn display_name(resource: &ApiResource, name: &str) -> String {
    let kind = resource.kind.to_ascii_lowercase();
    if resource.group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{}/{name}", resource.group)
    }
}

/// Every object install creates, in the order it applies them: what others refer to first, the
/// webhook configuration last (the API server should call only a webhook that exists).
pub fn build(settings: &Settings) -> Result<Vec<Manifest>, ManifestError> {
    // Checked as the webhook and the watcher check them at start: refused here, not in a
    // crash loop on every node.
    let host_dir = coredog_core::layout::parse_host_dir(&settings.host_dir)
        .map_err(|_| ManifestError::HostDir(settings.host_dir.clone()))?;
    if let Some(pattern) = &settings.core_pattern
        && let Some(problem) = coredog_core::node_status::core_pattern_problem(pattern)
    {
        return Err(ManifestError::CorePattern(pattern.clone(), problem));
    }
    if settings.image.trim().is_empty() {
        return Err(ManifestError::Image);
    }
    let labels = Labels::new(&settings.image);
    let mut manifests = vec![
        Manifest::new(&namespace())?,
        Manifest::new(&pod_disruption_budget(&labels))?,
        Manifest::new(&service_account(WEBHOOK, labels.webhook()))?,
        Manifest::new(&service_account(WATCHER, labels.watcher()))?,
        Manifest::new(&config_secret(&labels, &settings.config_text))?,
    ];
    if let Some(credentials) = &settings.credentials {
        manifests.push(Manifest::new(&credentials_secret(&labels, credentials))?);
    }
    if let Some(certificates) = &settings.storage_ca {
        manifests.push(Manifest::new(&storage_ca_config_map(
            &labels,
            certificates,
        ))?);
    }
    manifests.extend([
        Manifest::new(&webhook_cluster_role(&labels))?,
        Manifest::new(&watcher_cluster_role(&labels))?,
        Manifest::new(&cluster_role_binding(WEBHOOK, labels.webhook()))?,
        Manifest::new(&cluster_role_binding(WATCHER, labels.watcher()))?,
        Manifest::new(&webhook_role(&labels))?,
        Manifest::new(&watcher_role(&labels))?,
        Manifest::new(&role_binding(WEBHOOK, labels.webhook()))?,
        Manifest::new(&role_binding(WATCHER, labels.watcher()))?,
        Manifest::new(&webhook_service(&labels))?,
        Manifest::new(&watcher_daemon_set(settings, &host_dir, &labels))?,
        Manifest::new(&webhook_deployment(settings, &host_dir, &labels))?,
        Manifest::new(&webhook_configuration(settings, &labels))?,
    ]);
    Ok(manifests)
}

/// What uninstall removes, in order: the webhook configuration first, so that no pod creation
/// waits on a webhook that is going away; the namespace (and with it everything left) last.
pub fn removal_order(
    keep_namespace: bool,
) -> Vec<(ApiResource, Option<&'static str>, &'static str)> {
    let namespaced = Some(NAMESPACE);
    let mut order = vec![
        (
            ApiResource::erase::<MutatingWebhookConfiguration>(&()),
            None,
            WEBHOOK,
        ),
        (ApiResource::erase::<Deployment>(&()), namespaced, WEBHOOK),
        (ApiResource::erase::<DaemonSet>(&()), namespaced, WATCHER),
        (ApiResource::erase::<Service>(&()), namespaced, WEBHOOK),
        (
            ApiResource::erase::<PodDisruptionBudget>(&()),
            namespaced,
            WEBHOOK,
        ),
        (ApiResource::erase::<RoleBinding>(&()), namespaced, WEBHOOK),
        (ApiResource::erase::<RoleBinding>(&()), namespaced, WATCHER),
        (ApiResource::erase::<Role>(&()), namespaced, WEBHOOK),
        (ApiResource::erase::<Role>(&()), namespaced, WATCHER),
        (ApiResource::erase::<ClusterRoleBinding>(&()), None, WEBHOOK),
        (ApiResource::erase::<ClusterRoleBinding>(&()), None, WATCHER),
        (ApiResource::erase::<ClusterRole>(&()), None, WEBHOOK),
        (ApiResource::erase::<ClusterRole>(&()), None, WATCHER),
        (ApiResource::erase::<Secret>(&()), namespaced, TLS_SECRET),
        (
            ApiResource::erase::<Secret>(&()),
            namespaced,
            CREDENTIALS_SECRET,
        ),
        (ApiResource::erase::<Secret>(&()), namespaced, CONFIG_SECRET),
        (
            ApiResource::erase::<ConfigMap>(&()),
            namespaced,
            STORAGE_CA_CONFIG_MAP,
        ),
        (
            ApiResource::erase::<ServiceAccount>(&()),
            namespaced,
            WEBHOOK,
        ),
        (
            ApiResource::erase::<ServiceAccount>(&()),
            namespaced,
            WATCHER,
        ),
    ];
    if !keep_namespace {
        order.push((ApiResource::erase::<Namespace>(&()), None, NAMESPACE));
    }
    order
}

/// The labels of the webhook's and the watcher's objects.
struct Labels {
    version: String,
}

impl Labels {
    fn new(image: &str) -> Self {
        Self {
            version: version_label(image),
        }
    }

    fn common(&self, component: &str) -> BTreeMap<String, String> {
        let mut labels = selector_labels(component);
        labels.insert("app.kubernetes.io/version".into(), self.version.clone());
        labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
        labels.insert("app.kubernetes.io/part-of".into(), "coredog".into());
        labels
    }

    fn webhook(&self) -> BTreeMap<String, String> {
        self.common("webhook")
    }

    fn watcher(&self) -> BTreeMap<String, String> {
        self.common("watcher")
    }
}

/// The node label that says which operating system a node runs.
pub const OS_LABEL: &str = "kubernetes.io/os";

/// Pods that only run on Linux nodes: cores, `core_pattern` and the images are Linux's.
fn linux_nodes() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([(OS_LABEL.to_owned(), "linux".to_owned())]))
}

fn selector_labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "coredog".into()),
        ("app.kubernetes.io/instance".into(), RELEASE.into()),
        ("app.kubernetes.io/component".into(), component.into()),
    ])
}

/// The image's tag, as the chart's `app.kubernetes.io/version` (the plugin's version when the
/// image has no tag a label can hold, e.g. a digest).
fn version_label(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let tag = last.split_once(':').map(|(_, tag)| tag);
    match tag {
        Some(tag)
            if !image.contains('@')
                && tag.len() <= 63
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && tag
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && tag
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_alphanumeric()) =>
        {
            tag.to_owned()
        }
        _ => env!("CARGO_PKG_VERSION").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::parts::sha256_hex;
    use super::*;

    fn settings() -> Settings {
        Settings {
            image: Settings::default_image(),
            host_dir: "/data/coredog-system/dumps/".into(),
            core_pattern: None,
            failure_policy: FailurePolicy::Ignore,
            config_text: "StorageConfig:\n  S3Bucket: b\n".into(),
            credentials: None,
            cfs_share: None,
            stale_credentials: false,
            storage_ca: None,
            stale_storage_ca: false,
        }
    }

    fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Value {
        &manifests
            .iter()
            .find(|m| m.resource.kind == kind && m.name == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .object
    }

    #[test]
    fn the_default_install() {
        let manifests = build(&settings()).unwrap();
        let names: Vec<String> = manifests.iter().map(Manifest::display_name).collect();
        assert_eq!(
            names,
            [
                "namespace/coredog-system",
                "poddisruptionbudget.policy/coredog-webhook",
                "serviceaccount/coredog-webhook",
                "serviceaccount/coredog-watcher",
                "secret/coredog-config",
                "clusterrole.rbac.authorization.k8s.io/coredog-webhook",
                "clusterrole.rbac.authorization.k8s.io/coredog-watcher",
                "clusterrolebinding.rbac.authorization.k8s.io/coredog-webhook",
                "clusterrolebinding.rbac.authorization.k8s.io/coredog-watcher",
                "role.rbac.authorization.k8s.io/coredog-webhook",
                "role.rbac.authorization.k8s.io/coredog-watcher",
                "rolebinding.rbac.authorization.k8s.io/coredog-webhook",
                "rolebinding.rbac.authorization.k8s.io/coredog-watcher",
                "service/coredog-webhook",
                "daemonset.apps/coredog-watcher",
                "deployment.apps/coredog-webhook",
                "mutatingwebhookconfiguration.admissionregistration.k8s.io/coredog-webhook",
            ]
        );
        let daemon_set = find(&manifests, "DaemonSet", WATCHER);
        assert_eq!(daemon_set["apiVersion"], "apps/v1");
        let pod = &daemon_set["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["hostPath"]["path"],
            "/data/coredog-system/dumps"
        );
        assert_eq!(pod["volumes"][1]["secret"]["defaultMode"], 256);
        assert_eq!(pod["containers"][0]["securityContext"]["privileged"], false);
        let secret = find(&manifests, "Secret", CONFIG_SECRET);
        assert_eq!(
            secret["data"]["config.yaml"],
            "U3RvcmFnZUNvbmZpZzoKICBTM0J1Y2tldDogYgo="
        );
        let webhook = &find(&manifests, "MutatingWebhookConfiguration", WEBHOOK)["webhooks"][0];
        assert!(webhook["clientConfig"].get("caBundle").is_none());
        assert_eq!(webhook["failurePolicy"], "Ignore");
    }

    #[test]
    fn node_setup_and_credentials() {
        let mut settings = settings();
        settings.core_pattern = Some(DEFAULT_CORE_PATTERN.into());
        settings.credentials = Some(Credentials {
            access_key_id: "ak".into(),
            secret_access_key: "sk".into(),
        });
        let manifests = build(&settings).unwrap();
        let pod = &find(&manifests, "DaemonSet", WATCHER)["spec"]["template"];
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["securityContext"]["privileged"], true);
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w == ["--core-pattern", DEFAULT_CORE_PATTERN])
        );
        assert_eq!(
            container["env"][4]["valueFrom"]["secretKeyRef"]["name"],
            CREDENTIALS_SECRET
        );
        assert_eq!(
            pod["metadata"]["annotations"]["checksum/storage-credentials"],
            sha256_hex("ak\nsk")
        );
        assert!(manifests.iter().any(|m| m.name == CREDENTIALS_SECRET));
        assert!(!format!("{:?}", settings.credentials).contains("sk"));
    }

    #[test]
    fn a_cfs_share_is_mounted_where_the_config_says() {
        let mut settings = settings();
        // The watcher's pod spec, and its CFS volume and mount.
        let cfs = |settings: &Settings| {
            let manifests = build(settings).unwrap();
            let pod = find(&manifests, "DaemonSet", WATCHER)["spec"]["template"]["spec"].clone();
            let named = |list: &Value| {
                list.as_array()
                    .unwrap()
                    .iter()
                    .find(|item| item["name"] == CFS_VOLUME)
                    .unwrap()
                    .clone()
            };
            (
                named(&pod["volumes"]),
                named(&pod["containers"][0]["volumeMounts"]),
            )
        };
        settings.cfs_share = Some(CfsShare::new("/mnt/cfs", None).unwrap());
        let (volume, mount) = cfs(&settings);
        assert_eq!(
            volume["hostPath"],
            serde_json::json!({"path": "/mnt/cfs", "type": "Directory"})
        );
        assert_eq!(mount["mountPath"], "/mnt/cfs");
        assert_eq!(mount["mountPropagation"], "HostToContainer");

        settings.cfs_share = Some(CfsShare::new("/mnt/cfs", Some("10.0.0.9:/dumps")).unwrap());
        let (volume, mount) = cfs(&settings);
        assert_eq!(
            volume["nfs"],
            serde_json::json!({"server": "10.0.0.9", "path": "/dumps"})
        );
        assert_eq!(mount["mountPath"], "/mnt/cfs");
        for bad in ["10.0.0.9", "10.0.0.9:dumps", ":/dumps"] {
            assert_eq!(
                CfsShare::new("/mnt/cfs", Some(bad)),
                Err(ManifestError::CfsNfs(bad.to_owned()))
            );
        }
        assert_eq!(
            CfsShare::new(" /mnt/cfs/ ", Some("[fd00::9]:/exports/dumps")),
            Ok(CfsShare::Nfs {
                server: "fd00::9".into(),
                export: "/exports/dumps".into(),
                mount_path: "/mnt/cfs".into(),
            })
        );
        for clash in [
            "/corefile",
            "/corefile/cfs",
            "/tmp/cfs",
            "/etc",
            "/var/lib/coredog",
            "cfs",
        ] {
            assert!(
                matches!(
                    CfsShare::new(clash, None),
                    Err(ManifestError::CfsMountPath(_))
                ),
                "{clash}"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut bad = settings();
        bad.host_dir = "/".into();
        assert!(matches!(build(&bad), Err(ManifestError::HostDir(_))));
        let mut bad = settings();
        bad.core_pattern = Some("|/usr/lib/systemd/systemd-coredump".into());
        assert!(matches!(build(&bad), Err(ManifestError::CorePattern(..))));
        // What the webhook and the watcher would refuse at start.
        let mut bad = settings();
        bad.core_pattern = Some("/corefile/".into());
        assert!(matches!(build(&bad), Err(ManifestError::CorePattern(..))));
        let mut bad = settings();
        bad.host_dir = "/data/../dumps".into();
        assert!(matches!(build(&bad), Err(ManifestError::HostDir(_))));
    }

    #[test]
    fn version_labels_come_from_the_tag() {
        assert_eq!(version_label("ghcr.io/coredog-io/coredog:1.2.3"), "1.2.3");
        assert_eq!(
            version_label("localhost:5000/coredog"),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(
            version_label("coredog@sha256:0123"),
            env!("CARGO_PKG_VERSION")
        );
    }
}
