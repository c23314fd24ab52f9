//! Where the dumps are: the storage the cluster's config Secret (or `--config FILE`) names,
//! reached through `coredog-store`.
//!
//! The commands read storage through [`DumpStorage`], the few read calls they need, so that
//! their logic runs as well over [`memory::MemoryStorage`] in tests.

pub mod info;
pub mod list;
pub mod memory;
pub mod resolve;

use std::future::Future;
use std::path::Path;

use anyhow::Context as _;
use coredog_core::config::{Config, StorageConfig};
use coredog_store::{ListPage, ObjectInfo, Piece, Store, StoreError};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};
use tracing::debug;

use crate::error::{UserError, is_forbidden};
use crate::install::manifests::{
    ACCESS_KEY_ID, CONFIG_KEY, CONFIG_SECRET, CONFIG_VOLUME, CREDENTIALS_SECRET, NAMESPACE,
    SECRET_ACCESS_KEY, WATCHER, WATCHER_SELECTOR,
};

/// The reads `list`, `info`, `fetch` and `status` make.
pub trait DumpStorage {
    /// One page of the keys under `prefix`, in key order; the first page starts after the key
    /// `start_after` when one is given.
    fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        start_after: Option<&str>,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    fn get_bytes(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Streams bytes `start..=end_inclusive` of `key` to `to`, each piece with its offset.
    fn read_range(
        &self,
        key: &str,
        start: u64,
        end_inclusive: u64,
        to: &tokio::sync::mpsc::Sender<Piece>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn head(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectInfo>, StoreError>> + Send;
}

impl DumpStorage for Store {
    fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        start_after: Option<&str>,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send {
        Store::list_page_after(self, prefix, continuation, start_after)
    }

    fn get_bytes(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send {
        Store::get_bytes(self, key)
    }

    fn read_range(
        &self,
        key: &str,
        start: u64,
        end_inclusive: u64,
        to: &tokio::sync::mpsc::Sender<Piece>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        Store::read_range(self, key, start, end_inclusive, to)
    }

    fn head(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectInfo>, StoreError>> + Send {
        Store::head(self, key)
    }
}

/// Opened storage and the prefix (`StoreDir`) its dumps are under.
pub struct OpenedStorage {
    pub store: Store,
    pub store_dir: String,
    /// The multipart part size the watcher stores dumps with (`partSizeMiB`).
    pub part_size: u64,
}

/// The storage settings: from `--config FILE`, else from the config Secret install wrote
/// (and its credentials Secret, when neither the config nor the environment has keys).
pub async fn storage_config(
    config_file: Option<&Path>,
    client: Option<&Client>,
) -> anyhow::Result<StorageConfig> {
    if let Some(path) = config_file {
        let text = std::fs::read_to_string(path).map_err(|err| {
            UserError::new(format!("cannot read --config {}", path.display()))
                .hint("pass the watcher's configuration file (README \"Configuration\")")
                .cause(err)
        })?;
        let config = Config::from_yaml(&text).map_err(|err| {
            UserError::new(format!("{}: {err}", path.display()))
                .hint("fix the key it names (README \"Configuration\" lists them)")
        })?;
        return Ok(config.storage);
    }
    let Some(client) = client else {
        return Err(UserError::new("no storage configuration")
            .hint("pass --config FILE, or reach a cluster where CoreDog is installed")
            .into());
    };
    let (source, secret) = config_secret(client).await?;
    let text = secret
        .data
        .as_ref()
        .and_then(|data| data.get(CONFIG_KEY))
        .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
        .ok_or_else(|| {
            UserError::new(format!("Secret {} has no {CONFIG_KEY}", source.config))
                .hint("re-run `kubectl coredog install` (or `helm upgrade`), or pass --config FILE")
        })?;
    let mut storage = Config::from_yaml(&text)
        .map_err(|err| {
            UserError::new(format!(
                "the configuration in Secret {} is not valid: {err}",
                source.config
            ))
            .hint("fix it with `kubectl coredog install --config FILE` (or the chart's values)")
        })?
        .storage;
    // Key files the configuration names are paths in the watcher's pod, not on this machine.
    storage.access_key_id_file = None;
    storage.secret_access_key_file = None;
    let has_keys = storage
        .static_credentials(
            |name| std::env::var(name).ok(),
            |path| std::fs::read_to_string(path).map_err(|err| err.to_string()),
        )
        .ok()
        .flatten()
        .is_some();
    if !has_keys && let Some(credentials) = &source.credentials {
        add_cluster_credentials(client, credentials, &mut storage).await;
    }
    Ok(storage)
}

/// A Secret, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SecretName {
    namespace: String,
    name: String,
}

impl std::fmt::Display for SecretName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The watcher's storage keys in a Secret: its name and the keys of the two values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CredentialsSecret {
    secret: SecretName,
    access_key_id: String,
    secret_access_key: String,
}

/// Where CoreDog keeps its configuration in the cluster, and the watcher's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfigSource {
    /// The watcher DaemonSet that reads them, `namespace/name`.
    watcher: String,
    config: SecretName,
    credentials: Option<CredentialsSecret>,
}

impl ConfigSource {
    /// The names `kubectl coredog install` (and a Helm release `coredog` in `coredog-system`)
    /// gives them.
    fn installed() -> Self {
        Self {
            watcher: format!("{NAMESPACE}/{WATCHER}"),
            config: SecretName {
                namespace: NAMESPACE.to_owned(),
                name: CONFIG_SECRET.to_owned(),
            },
            credentials: Some(CredentialsSecret {
                secret: SecretName {
                    namespace: NAMESPACE.to_owned(),
                    name: CREDENTIALS_SECRET.to_owned(),
                },
                access_key_id: ACCESS_KEY_ID.to_owned(),
                secret_access_key: SECRET_ACCESS_KEY.to_owned(),
            }),
        }
    }

    /// What the watcher DaemonSet of a release reads: the Secret its `config` volume mounts,
    /// and the Secret and keys its storage key variables come from.
    fn of_watcher(daemon_set: &DaemonSet) -> Option<Self> {
        let namespace = daemon_set.metadata.namespace.clone()?;
        let spec = daemon_set.spec.as_ref()?.template.spec.as_ref()?;
        let config = spec
            .volumes
            .iter()
            .flatten()
            .find(|volume| volume.name == CONFIG_VOLUME)?
            .secret
            .as_ref()?
            .secret_name
            .clone()?;
        let env_secret = |variable: &str| {
            spec.containers
                .iter()
                .flat_map(|container| container.env.iter().flatten())
                .find(|env| env.name == variable)?
                .value_from
                .as_ref()?
                .secret_key_ref
                .as_ref()
                .map(|reference| (reference.name.clone(), reference.key.clone()))
        };
        let credentials = match (env_secret(ACCESS_KEY_ID), env_secret(SECRET_ACCESS_KEY)) {
            (Some((name, access_key_id)), Some((other, secret_access_key))) if name == other => {
                Some(CredentialsSecret {
                    secret: SecretName {
                        namespace: namespace.clone(),
                        name,
                    },
                    access_key_id,
                    secret_access_key,
                })
            }
            _ => None,
        };
        Some(Self {
            watcher: format!(
                "{namespace}/{}",
                daemon_set.metadata.name.as_deref().unwrap_or_default()
            ),
            config: SecretName {
                namespace,
                name: config,
            },
            credentials,
        })
    }
}

/// The configuration Secret: under the names install gives it, else (a Helm release under
/// another name or namespace) the one the cluster's only CoreDog watcher mounts.
async fn config_secret(client: &Client) -> anyhow::Result<(ConfigSource, Secret)> {
    let installed = ConfigSource::installed();
    // Why install's Secret is not the answer, should no release be found elsewhere either.
    let not_installed = match read_config_secret(client, &installed.config).await? {
        SecretRead::Found(secret) => return Ok((installed, *secret)),
        SecretRead::Missing => None,
        SecretRead::Forbidden(refused) => Some(refused),
    };
    let source = match release_elsewhere(client).await? {
        Elsewhere::One(source) => source,
        Elsewhere::None => {
            return Err(not_installed.unwrap_or_else(|| {
                UserError::new(format!(
                    "CoreDog's configuration (Secret {}) is not in this cluster",
                    installed.config
                ))
                .hint("install CoreDog with `kubectl coredog install`, pick another --context, or pass --config FILE")
                .into()
            }));
        }
        Elsewhere::MayNotLook => {
            return Err(not_installed.unwrap_or_else(|| {
                UserError::new(format!(
                    "CoreDog's configuration is not under the names install gives it (Secret {}), and you may not list DaemonSets to find a Helm release elsewhere",
                    installed.config
                ))
                .hint("pass --config FILE with the storage settings, or ask for `list daemonsets` in all namespaces")
                .into()
            }));
        }
    };
    debug!(config = %source.config, watcher = %source.watcher, "configuration of a release under other names");
    match read_config_secret(client, &source.config).await? {
        SecretRead::Found(secret) => Ok((source, *secret)),
        SecretRead::Missing => Err(UserError::new(format!(
            "the CoreDog watcher {} mounts Secret {}, which does not exist",
            source.watcher, source.config
        ))
        .hint("create it (the chart's config.existingSecret), or pass --config FILE")
        .into()),
        SecretRead::Forbidden(refused) => Err(refused),
    }
}

/// What reading a configuration Secret found.
enum SecretRead {
    Found(Box<Secret>),
    Missing,
    /// The user may not read it: the error that says so.
    Forbidden(anyhow::Error),
}

async fn read_config_secret(client: &Client, name: &SecretName) -> anyhow::Result<SecretRead> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &name.namespace);
    match secrets.get_opt(&name.name).await {
        Ok(Some(secret)) => Ok(SecretRead::Found(Box::new(secret))),
        Ok(None) => Ok(SecretRead::Missing),
        Err(err) if is_forbidden(&err) => Ok(SecretRead::Forbidden(
            UserError::new(format!(
                "you may not read Secret {name}, which says where dumps are stored"
            ))
            .hint(format!(
                "ask for `get secrets` in namespace {}, or pass --config FILE with the storage settings",
                name.namespace
            ))
            .into(),
        )),
        Err(err) => Err(anyhow::Error::new(err).context(format!("cannot read Secret {name}"))),
    }
}

/// What the search for a release under other names found.
enum Elsewhere {
    One(ConfigSource),
    None,
    /// The user may not list DaemonSets in all namespaces.
    MayNotLook,
}

/// The configuration of the one CoreDog release whose watcher runs in this cluster; several
/// are an error that names them.
async fn release_elsewhere(client: &Client) -> anyhow::Result<Elsewhere> {
    let daemon_sets: Api<DaemonSet> = Api::all(client.clone());
    let watchers = ListParams::default().labels(WATCHER_SELECTOR);
    let listed = match daemon_sets.list(&watchers).await {
        Ok(listed) => listed.items,
        Err(err) if is_forbidden(&err) => {
            debug!(error = %err, "may not list DaemonSets to find a CoreDog release");
            return Ok(Elsewhere::MayNotLook);
        }
        Err(err) => {
            return Err(
                anyhow::Error::new(err).context("cannot list DaemonSets to find CoreDog's watcher")
            );
        }
    };
    let mut found: Vec<ConfigSource> = listed.iter().filter_map(ConfigSource::of_watcher).collect();
    match found.len() {
        0 => Ok(Elsewhere::None),
        1 => Ok(found.pop().map_or(Elsewhere::None, Elsewhere::One)),
        several => {
            let names: Vec<&str> = found.iter().map(|source| source.watcher.as_str()).collect();
            Err(UserError::new(format!(
                "CoreDog runs {several} times in this cluster (watchers {})",
                names.join(", ")
            ))
            .hint("pass --config FILE with the storage settings of the one you mean")
            .into())
        }
    }
}

/// The keys install keeps for the watcher, when this user may read them; otherwise the store
/// falls back to the provider chain.
async fn add_cluster_credentials(
    client: &Client,
    credentials: &CredentialsSecret,
    storage: &mut StorageConfig,
) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &credentials.secret.namespace);
    let secret = match secrets.get_opt(&credentials.secret.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return,
        Err(err) => {
            debug!(error = %err, "cannot read the storage credentials Secret");
            return;
        }
    };
    let value = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
    };
    if let (Some(access), Some(secret)) = (
        value(&credentials.access_key_id),
        value(&credentials.secret_access_key),
    ) {
        storage.access_key_id = Some(access);
        storage.secret_access_key = Some(secret);
    }
}

pub fn open(storage: &StorageConfig) -> anyhow::Result<OpenedStorage> {
    let store = Store::from_config(storage).map_err(|err| {
        UserError::new("cannot open the dump storage")
            .hint("check the StorageConfig section of the configuration")
            .cause(err)
    })?;
    debug!(storage = %store.describe(), "storage opened");
    Ok(OpenedStorage {
        store,
        store_dir: storage.store_dir.clone(),
        part_size: storage.part_size() as u64,
    })
}

/// An S3 error answer, `... Got HTTP 403 with content '<?xml ...<Code>X</Code><Message>Y</Message>...'`,
/// as `... Got HTTP 403: X (Y)`.
pub fn tidy_s3_message(text: &str) -> String {
    let tag = |name: &str| {
        text.split_once(&format!("<{name}>"))
            .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
            .map(|(value, _)| value)
    };
    match (text.find(" with content '"), tag("Code")) {
        (Some(at), Some(code)) => {
            let message = tag("Message")
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            format!("{}: {code}{message}", &text[..at])
        }
        _ => text.to_owned(),
    }
}

/// A storage error as a user-facing error, with what to check.
pub fn storage_error(err: StoreError, doing: &str) -> anyhow::Error {
    let text = tidy_s3_message(&err.to_string());
    let hint = match &err {
        StoreError::NotFound(_) => "the object may have been deleted; list again",
        StoreError::UntrustedCertificate {
            unknown_issuer: true,
            ..
        } => {
            "a store signed by a private CA needs that CA trusted where the plugin runs: in the system's trust store, or in a PEM file named by SSL_CERT_FILE"
        }
        StoreError::UntrustedCertificate { .. } => {
            "check that S3Endpoint is the name the store's certificate was made for, and this machine's clock"
        }
        _ if text.contains("HTTP 403") || text.contains("HTTP 401") => {
            "the storage refused the credentials: check the keys (the config's s3AccesskeyID/s3SecretAccessKey, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the watcher's key Secret, coredog-system/coredog-storage-credentials as install makes it)"
        }
        _ => "check that the storage is reachable from here and that the credentials allow reading",
    };
    UserError::new(format!("cannot {doing}"))
        .hint(hint)
        .cause(anyhow::anyhow!(text))
        .into()
}

/// Reads the config file or the cluster's Secret, and opens the storage.
pub async fn connect(
    config_file: Option<&Path>,
    client: Option<&Client>,
) -> anyhow::Result<OpenedStorage> {
    let storage = storage_config(config_file, client)
        .await
        .context("cannot find the dump storage")?;
    open(&storage)
}

#[cfg(test)]
mod tests {
    #[test]
    fn s3_error_answers_are_read() {
        assert_eq!(
            super::tidy_s3_message(
                "list objects x/: Got HTTP 403 with content '<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>'"
            ),
            "list objects x/: Got HTTP 403: AccessDenied (Access Denied.)"
        );
        assert_eq!(super::tidy_s3_message("timed out"), "timed out");
    }
}
