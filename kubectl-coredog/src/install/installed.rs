//! What the running install chose, read on an upgrade so that a flag left out keeps it rather
//! than falling back to its default: re-running `install` to update the image must not move
//! the dump directory, stop the node setup or loosen the webhook's failure policy.

use anyhow::Context as _;
use coredog_core::node_status::core_pattern_argument;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use super::manifests::{
    CFS_VOLUME, HOST_DUMPS_VOLUME, NAMESPACE, STORAGE_CA_CONFIG_MAP, STORAGE_CA_KEY,
    STORAGE_CA_VOLUME, WATCHER, WATCHER_CONTAINER, WEBHOOK, WEBHOOK_NAME,
};
use crate::cli::FailurePolicy;

/// The choices of the running install; `None` where there is none or it cannot be read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Installed {
    /// `server:/export` of the NFS share the watchers mount.
    pub nfs_export: Option<String>,
    /// The node directory the watchers watch.
    pub host_dir: Option<String>,
    /// The `kernel.core_pattern` the watchers set (node setup is on).
    pub core_pattern: Option<String>,
    pub failure_policy: Option<FailurePolicy>,
    /// The CA certificates the watchers trust for the storage endpoint (`--storage-ca`).
    pub storage_ca: Option<String>,
}

impl Installed {
    /// Reads the watcher DaemonSet and the webhook configuration; nothing without a client.
    pub async fn read(client: Option<&Client>) -> anyhow::Result<Self> {
        let Some(client) = client else {
            return Ok(Self::default());
        };
        let watcher = Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
            .get_opt(WATCHER)
            .await
            .with_context(|| format!("cannot read DaemonSet {NAMESPACE}/{WATCHER}"))?;
        let webhook = Api::<MutatingWebhookConfiguration>::all(client.clone())
            .get_opt(WEBHOOK)
            .await
            .with_context(|| format!("cannot read MutatingWebhookConfiguration {WEBHOOK}"))?;
        let mut installed = watcher.as_ref().map(Self::of_watcher).unwrap_or_default();
        installed.failure_policy = webhook.as_ref().and_then(failure_policy_of);
        if watcher.as_ref().is_some_and(mounts_storage_ca) {
            let config_map = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
                .get_opt(STORAGE_CA_CONFIG_MAP)
                .await
                .with_context(|| {
                    format!("cannot read ConfigMap {NAMESPACE}/{STORAGE_CA_CONFIG_MAP}")
                })?;
            installed.storage_ca = config_map
                .and_then(|config_map| config_map.data)
                .and_then(|mut data| data.remove(STORAGE_CA_KEY));
        }
        Ok(installed)
    }

    /// What the watcher DaemonSet says: its volumes, and the arguments of its container.
    fn of_watcher(daemon_set: &DaemonSet) -> Self {
        let pod = daemon_set
            .spec
            .as_ref()
            .and_then(|spec| spec.template.spec.as_ref());
        let volumes = pod.and_then(|pod| pod.volumes.as_deref()).unwrap_or(&[]);
        let volume = |name: &str| volumes.iter().find(|volume| volume.name == name);
        let watcher =
            pod.and_then(|pod| pod.containers.iter().find(|c| c.name == WATCHER_CONTAINER));
        let command_line = watcher
            .into_iter()
            .flat_map(|container| container.command.iter().chain(&container.args).flatten());
        Self {
            nfs_export: volume(CFS_VOLUME)
                .and_then(|volume| volume.nfs.as_ref())
                .map(|nfs| format!("{}:{}", nfs.server, nfs.path)),
            host_dir: volume(HOST_DUMPS_VOLUME)
                .and_then(|volume| volume.host_path.as_ref())
                .map(|host_path| host_path.path.clone()),
            core_pattern: core_pattern_argument(command_line.map(String::as_str))
                .map(str::to_owned),
            failure_policy: None,
            storage_ca: None,
        }
    }
}

/// Whether the watcher DaemonSet mounts the storage CA ConfigMap.
fn mounts_storage_ca(daemon_set: &DaemonSet) -> bool {
    daemon_set
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .and_then(|pod| pod.volumes.as_ref())
        .is_some_and(|volumes| {
            volumes.iter().any(|volume| {
                volume.name == STORAGE_CA_VOLUME
                    && volume
                        .config_map
                        .as_ref()
                        .is_some_and(|source| source.name == STORAGE_CA_CONFIG_MAP)
            })
        })
}

fn failure_policy_of(configuration: &MutatingWebhookConfiguration) -> Option<FailurePolicy> {
    let webhook = configuration
        .webhooks
        .as_deref()?
        .iter()
        .find(|webhook| webhook.name == WEBHOOK_NAME)?;
    // The API server's default for a webhook without one is Fail.
    match webhook.failure_policy.as_deref().unwrap_or("Fail") {
        "Fail" => Some(FailurePolicy::Fail),
        "Ignore" => Some(FailurePolicy::Ignore),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::manifests::{self, Settings};

    fn settings() -> Settings {
        Settings {
            image: "coredog:1".into(),
            host_dir: "/srv/dumps".into(),
            core_pattern: Some("/corefile/core.%p".into()),
            failure_policy: FailurePolicy::Fail,
            config_text: "StorageConfig:\n  protocol: cfs\n  CFSMountPath: /mnt/cfs\n".into(),
            credentials: None,
            cfs_share: Some(manifests::CfsShare::new("/mnt/cfs", Some("10.0.0.9:/dumps")).unwrap()),
            stale_credentials: false,
            storage_ca: None,
            stale_storage_ca: false,
        }
    }

    /// What install applies reads back as the choices that made it.
    #[test]
    fn the_applied_objects_read_back_as_their_settings() {
        let objects = manifests::build(&settings()).unwrap();
        let object = |kind: &str| {
            objects
                .iter()
                .find(|manifest| manifest.object["kind"] == kind)
                .map(|manifest| manifest.object.clone())
                .unwrap()
        };
        let watcher: DaemonSet = serde_json::from_value(object("DaemonSet")).unwrap();
        let webhook: MutatingWebhookConfiguration =
            serde_json::from_value(object("MutatingWebhookConfiguration")).unwrap();
        let mut installed = Installed::of_watcher(&watcher);
        installed.failure_policy = failure_policy_of(&webhook);
        assert_eq!(
            installed,
            Installed {
                nfs_export: Some("10.0.0.9:/dumps".into()),
                host_dir: Some("/srv/dumps".into()),
                core_pattern: Some("/corefile/core.%p".into()),
                failure_policy: Some(FailurePolicy::Fail),
                storage_ca: None,
            }
        );
        assert!(!mounts_storage_ca(&watcher));
        let with_ca = Settings {
            storage_ca: Some("-----BEGIN CERTIFICATE-----\n".into()),
            ..settings()
        };
        let objects = manifests::build(&with_ca).unwrap();
        let watcher = objects
            .iter()
            .find(|manifest| manifest.object["kind"] == "DaemonSet")
            .map(|manifest| serde_json::from_value(manifest.object.clone()).unwrap())
            .unwrap();
        assert!(mounts_storage_ca(&watcher));

        let plain = Settings {
            core_pattern: None,
            cfs_share: None,
            stale_credentials: false,
            failure_policy: FailurePolicy::Ignore,
            ..settings()
        };
        let objects = manifests::build(&plain).unwrap();
        let watcher = objects
            .iter()
            .find(|manifest| manifest.object["kind"] == "DaemonSet")
            .unwrap();
        let installed =
            Installed::of_watcher(&serde_json::from_value(watcher.object.clone()).unwrap());
        assert_eq!(installed.core_pattern, None);
        assert_eq!(installed.nfs_export, None);
        assert_eq!(installed.host_dir.as_deref(), Some("/srv/dumps"));
    }
}
