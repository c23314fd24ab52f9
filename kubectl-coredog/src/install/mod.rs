//! `install` and `uninstall`.

pub mod apply;
mod installed;
pub mod manifests;
pub mod wait;

use anyhow::Context as _;
use coredog_core::config::{Config, PLACEHOLDER_BUCKET, Protocol};
use coredog_core::layout::DEFAULT_HOST_DIR;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use serde_json::Value;

use crate::cli::{
    DryRun, FailurePolicy, InstallArgs, ManifestFormat, StorageProtocol, UninstallArgs,
};
use crate::error::{UserError, is_forbidden, user};
use crate::output::{Console, to_json, to_yaml_stream};
use installed::Installed;
use manifests::{
    ACCESS_KEY_ID, CONFIG_KEY, CONFIG_SECRET, CREDENTIALS_SECRET, CfsShare, Credentials,
    DEFAULT_CORE_PATTERN, NAMESPACE, SECRET_ACCESS_KEY, STORAGE_CA_CONFIG_MAP, Settings,
};

/// Looks up an environment variable (the process environment, or a test's).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The watcher's configuration text, from `--config FILE`, the storage flags, or (on an
/// upgrade without either) the Secret the last install wrote; what it says; and whether the
/// flags or the file moved the dumps to another kind of store, whose keys the stored ones are not.
async fn config_text(
    args: &InstallArgs,
    client: Option<&Client>,
    console: &mut Console<'_>,
) -> anyhow::Result<(String, Config, bool)> {
    let existing = existing_config(client).await?;
    let text = if let Some(path) = &args.config {
        std::fs::read_to_string(path).map_err(|err| {
            UserError::new(format!("cannot read --config {}", path.display()))
                .hint("pass the watcher's configuration file (README \"Configuration\")")
                .cause(err)
        })?
    } else if args.bucket.is_some()
        || args.protocol.is_some()
        || args.endpoint.is_some()
        || args.region.is_some()
        || args.store_dir.is_some()
    {
        match &existing {
            Some(existing) => {
                console.note(&format!(
                    "changing the storage settings the flags name; the rest of Secret {NAMESPACE}/{CONFIG_SECRET} (notice channels, tuning; the keys unless the protocol changes) is kept"
                ));
                flags_over(existing, args)?
            }
            None => config_from_flags(args)?,
        }
    } else if let Some(existing) = &existing {
        console.note(&format!(
            "keeping the storage settings of Secret {NAMESPACE}/{CONFIG_SECRET}"
        ));
        existing.clone()
    } else {
        return Err(user(
            "install needs to know where to store dumps",
            "pass --bucket NAME [--region REGION] [--endpoint URL], or --config FILE",
        ));
    };
    let config = Config::from_yaml(&text).map_err(|err| {
        UserError::new(format!("the storage configuration is not valid: {err}"))
            .hint("fix the key it names (README \"Configuration\" lists them)")
    })?;
    if config.storage.protocol != Protocol::Cfs
        && config.storage.bucket() == Some(PLACEHOLDER_BUCKET)
    {
        return Err(user(
            format!(
                "the storage configuration names the example's bucket {PLACEHOLDER_BUCKET}, which anyone may own and the watchers refuse"
            ),
            "name your own bucket: --bucket NAME, or S3Bucket in --config FILE",
        ));
    }
    // An installed configuration that no longer loads says nothing of its store.
    let other_store = existing
        .and_then(|text| Config::from_yaml(&text).ok())
        .is_some_and(|installed| installed.storage.protocol != config.storage.protocol);
    Ok((text, config, other_store))
}

/// With protocol cfs, the share the watchers write to: `--cfs-nfs`, else (on an upgrade) the
/// NFS export the running watchers mount, else the nodes' own mount.
fn cfs_share(
    args: &InstallArgs,
    config: &Config,
    installed: &Installed,
    console: &mut Console<'_>,
) -> anyhow::Result<Option<CfsShare>> {
    let mount_path = config
        .storage
        .cfs_mount_path
        .as_deref()
        .filter(|_| config.storage.protocol == Protocol::Cfs);
    let Some(mount_path) = mount_path else {
        return match &args.cfs_nfs {
            Some(_) => Err(user(
                "--cfs-nfs is for protocol cfs",
                "drop it, or store dumps on a CFS share (protocol: cfs, CFSMountPath)",
            )),
            None => Ok(None),
        };
    };
    let nfs = match &args.cfs_nfs {
        Some(nfs) => Some(nfs.clone()),
        None => {
            if let Some(export) = &installed.nfs_export {
                console.note(&format!(
                    "keeping the NFS export {export} the watchers mount (--cfs-nfs changes it)"
                ));
            }
            installed.nfs_export.clone()
        }
    };
    let share = CfsShare::new(mount_path, nfs.as_deref()).map_err(|err| {
        user(
            err.to_string(),
            "for example CFSMountPath: /mnt/cfs and --cfs-nfs 10.0.0.9:/coredumps",
        )
    })?;
    if let CfsShare::NodeMount { mount_path } = &share {
        console.note(&format!(
            "protocol cfs: the watchers write to {mount_path} on each node, where the share must be mounted (or pass --cfs-nfs SERVER:/EXPORT)"
        ));
    }
    Ok(Some(share))
}

/// The node directory of the dumps: `--host-dir`, else the installed one, else the default.
fn host_dir(args: &InstallArgs, installed: &Installed, console: &mut Console<'_>) -> String {
    match (&args.host_dir, &installed.host_dir) {
        (Some(wanted), Some(running))
            if wanted.trim_end_matches('/') != running.trim_end_matches('/') =>
        {
            console.note(&format!(
                "the watchers move from {running} to {wanted}: cores still in {running} on the nodes are no longer shipped"
            ));
            wanted.clone()
        }
        (Some(wanted), _) => wanted.clone(),
        (None, Some(running)) => {
            if running != DEFAULT_HOST_DIR {
                console.note(&format!(
                    "keeping the dump directory {running} on the nodes (--host-dir changes it)"
                ));
            }
            running.clone()
        }
        (None, None) => DEFAULT_HOST_DIR.to_owned(),
    }
}

/// The `kernel.core_pattern` the watchers set, if node setup is on: `--node-setup` and
/// `--core-pattern`, else what the running install does.
fn core_pattern(
    args: &InstallArgs,
    installed: &Installed,
    console: &mut Console<'_>,
) -> anyhow::Result<Option<String>> {
    let running = installed.core_pattern.as_ref();
    match (args.node_setup, &args.core_pattern) {
        (Some(false), Some(_)) => Err(user(
            "--core-pattern is what node setup writes, and --node-setup=false turns it off",
            "drop one of them",
        )),
        (Some(false), None) => {
            if running.is_some() {
                console.note(
                    "node setup off: each watcher puts its node's own kernel.core_pattern back as it is replaced",
                );
            }
            Ok(None)
        }
        (Some(true), None) => {
            if let Some(pattern) = running {
                console.note(&format!(
                    "keeping kernel.core_pattern {pattern} (--core-pattern changes it)"
                ));
            }
            Ok(Some(
                running
                    .map_or(DEFAULT_CORE_PATTERN, String::as_str)
                    .to_owned(),
            ))
        }
        (Some(true), Some(pattern)) => Ok(Some(pattern.clone())),
        (None, Some(pattern)) if running.is_some() => Ok(Some(pattern.clone())),
        (None, Some(_)) => Err(user(
            "--core-pattern is what node setup writes, and node setup is off",
            "pass --node-setup too (--dry-run=client cannot see an installed node setup; --dry-run=server can)",
        )),
        (None, None) => {
            if let Some(pattern) = running {
                console.note(&format!(
                    "keeping the node setup: the watchers set kernel.core_pattern to {pattern} (--node-setup=false turns it off)"
                ));
            }
            Ok(running.cloned())
        }
    }
}

/// The webhook's failure policy: the flag, else the installed one, else the default.
fn failure_policy(
    args: &InstallArgs,
    installed: &Installed,
    console: &mut Console<'_>,
) -> FailurePolicy {
    if let Some(policy) = args.webhook_failure_policy {
        return policy;
    }
    let policy = installed.failure_policy.unwrap_or_default();
    if policy != FailurePolicy::default() {
        console.note(&format!(
            "keeping the webhook's failure policy {} (--webhook-failure-policy changes it)",
            policy.as_str()
        ));
    }
    policy
}

fn config_from_flags(args: &InstallArgs) -> anyhow::Result<String> {
    let Some(bucket) = &args.bucket else {
        return Err(user(
            "--bucket is required with the storage flags",
            "pass --bucket NAME, or --config FILE",
        ));
    };
    let quote = |value: &str| serde_json::to_string(value).unwrap_or_default();
    let protocol = match args.protocol.unwrap_or_default() {
        StorageProtocol::S3 => "s3",
        StorageProtocol::Cos => "cos",
        StorageProtocol::Oss => "oss",
    };
    let mut text = format!("StorageConfig:\n  protocol: {protocol}\n");
    if let Some(region) = &args.region {
        text.push_str(&format!("  s3Region: {}\n", quote(region)));
    }
    text.push_str(&format!("  S3Bucket: {}\n", quote(bucket)));
    if let Some(endpoint) = &args.endpoint {
        text.push_str(&format!("  S3Endpoint: {}\n", quote(endpoint)));
    }
    let store_dir = args.store_dir.as_deref().unwrap_or("corefiles");
    text.push_str(&format!("  StoreDir: {}\n", quote(store_dir)));
    text.push_str("  DeleteLocalCorefile: true\nNoticeChannel: []\nCorefileDir: /corefile\n");
    Ok(text)
}

const UNREACHABLE_HINT: &str = "check that the API server answers: kubectl get --raw /readyz";

/// What to do about an object install could not apply, from the API server's answer (an
/// answer not listed here says itself what is wrong).
fn apply_hint(err: &kube::Error, dry_run: DryRun) -> Option<String> {
    let hint = match err {
        // Forbidden too, but no lack of rights: `uninstall` returns before the namespace is gone.
        kube::Error::Api(status) if status.message.contains("being terminated") => format!(
            "namespace {NAMESPACE} is still being deleted; wait until it is gone (kubectl wait --for=delete namespace/{NAMESPACE} --timeout=5m), then install again"
        ),
        kube::Error::Api(status) if status.code == 404 && dry_run == DryRun::Server => {
            "--dry-run=server previews an upgrade of an installed CoreDog; where it is not installed yet, preview with --dry-run=client".to_owned()
        }
        _ if is_forbidden(err) => {
            "installing CoreDog needs cluster-admin rights (it creates cluster roles and a webhook)"
                .to_owned()
        }
        kube::Error::Api(_) => return None,
        _ => UNREACHABLE_HINT.to_owned(),
    };
    Some(hint)
}

/// The installed configuration with the storage settings the flags name changed: an upgrade
/// that moves the bucket keeps the notice channels, keys and tuning it had.
fn flags_over(existing: &str, args: &InstallArgs) -> anyhow::Result<String> {
    let mut config = Config::from_yaml(existing).map_err(|err| {
        UserError::new(format!(
            "the configuration in Secret {NAMESPACE}/{CONFIG_SECRET} is not valid: {err}"
        ))
        .hint("pass the whole configuration with --config FILE")
    })?;
    let storage = &mut config.storage;
    let protocol = match args.protocol {
        Some(StorageProtocol::S3) => Protocol::S3,
        Some(StorageProtocol::Cos) => Protocol::Cos,
        Some(StorageProtocol::Oss) => Protocol::Oss,
        // A bucket named: from a share to object storage.
        None if storage.protocol == Protocol::Cfs && args.bucket.is_some() => Protocol::S3,
        None => storage.protocol,
    };
    if protocol == Protocol::Cfs && (args.region.is_some() || args.endpoint.is_some()) {
        return Err(user(
            "--region and --endpoint are for object storage, and the dumps go to a CFS share",
            "to move them to object storage, pass --bucket NAME (and --protocol); or install --config FILE",
        ));
    }
    let other_store = protocol != storage.protocol;
    if other_store {
        // Another store: the old one's endpoint, region, addressing and keys are no use there.
        if args.region.is_none() && args.endpoint.is_none() && protocol != Protocol::S3 {
            return Err(user(
                format!(
                    "--protocol {} needs to know where the store is",
                    protocol.as_str()
                ),
                "pass --region REGION or --endpoint URL",
            ));
        }
        storage.protocol = protocol;
        storage.endpoint = None;
        storage.region = None;
        storage.force_path_style = None;
        storage.access_key_id = None;
        storage.secret_access_key = None;
        storage.access_key_id_file = None;
        storage.secret_access_key_file = None;
        storage.cfs_mount_path = None;
        storage.cfs_allow_local_disk = false;
    }
    if let Some(bucket) = &args.bucket {
        storage.bucket = Some(bucket.clone());
    }
    if let Some(region) = &args.region {
        storage.region = Some(region.clone());
    }
    if let Some(endpoint) = &args.endpoint {
        storage.endpoint = Some(endpoint.clone());
    }
    if let Some(store_dir) = &args.store_dir {
        storage.store_dir = store_dir.clone();
    }
    if storage.protocol != Protocol::Cfs && storage.bucket.is_none() {
        return Err(user(
            "--bucket is required with the storage flags",
            "pass --bucket NAME, or --config FILE",
        ));
    }
    Ok(config.to_yaml())
}

async fn read_secret(client: &Client, name: &str) -> anyhow::Result<Option<Secret>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    secrets
        .get_opt(name)
        .await
        .with_context(|| format!("cannot read Secret {NAMESPACE}/{name}"))
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

async fn existing_config(client: Option<&Client>) -> anyhow::Result<Option<String>> {
    let Some(client) = client else {
        return Ok(None);
    };
    Ok(read_secret(client, CONFIG_SECRET)
        .await?
        .and_then(|secret| secret_text(&secret, CONFIG_KEY)))
}

/// Storage keys from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, or (on an upgrade that
/// keeps its kind of store) the Secret the last install wrote; and whether that Secret holds
/// another kind of store's keys, to be removed.
async fn credentials(
    env: Env<'_>,
    client: Option<&Client>,
    same_store: bool,
    console: &mut Console<'_>,
) -> anyhow::Result<(Option<Credentials>, bool)> {
    let value = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    match (value(ACCESS_KEY_ID), value(SECRET_ACCESS_KEY)) {
        // Written over whatever the Secret held.
        (Some(access_key_id), Some(secret_access_key)) => {
            return Ok((
                Some(Credentials {
                    access_key_id,
                    secret_access_key,
                }),
                false,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(user(
                format!("{ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} go together, and only one is set"),
                "set both, or neither (the watcher then uses the config file's keys or its provider chain)",
            ));
        }
    }
    if !same_store {
        let stale = stored_keys(client).await?;
        if stale {
            console.note(&format!(
                "another kind of store: the old one's keys in Secret {NAMESPACE}/{CREDENTIALS_SECRET} are removed (set {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} for the new store, or leave it to the provider chain)"
            ));
        }
        return Ok((None, stale));
    }
    let Some(client) = client else {
        return Ok((None, false));
    };
    let Some(secret) = read_secret(client, CREDENTIALS_SECRET).await? else {
        return Ok((None, false));
    };
    match (
        secret_text(&secret, ACCESS_KEY_ID),
        secret_text(&secret, SECRET_ACCESS_KEY),
    ) {
        (Some(access_key_id), Some(secret_access_key)) => {
            console.note(&format!(
                "keeping the storage keys of Secret {NAMESPACE}/{CREDENTIALS_SECRET} (to use the provider chain instead, delete it and install again)"
            ));
            Ok((
                Some(Credentials {
                    access_key_id,
                    secret_access_key,
                }),
                false,
            ))
        }
        _ => Ok((None, false)),
    }
}

/// Whether the credentials Secret an earlier install wrote is there.
async fn stored_keys(client: Option<&Client>) -> anyhow::Result<bool> {
    match client {
        Some(client) => Ok(read_secret(client, CREDENTIALS_SECRET).await?.is_some()),
        None => Ok(false),
    }
}

/// The install's settings from its flags and environment. `client` is `None` for a client-side
/// dry run, which reads nothing from the cluster.
pub async fn settings(
    args: &InstallArgs,
    client: Option<&Client>,
    env: Env<'_>,
    console: &mut Console<'_>,
) -> anyhow::Result<Settings> {
    let (config_text, config, other_store) = config_text(args, client, console).await?;
    let installed = Installed::read(client).await?;
    let cfs_share = cfs_share(args, &config, &installed, console)?;
    let (credentials, stale_credentials) = credentials(env, client, !other_store, console).await?;
    let (storage_ca, stale_storage_ca) = storage_ca(args, &installed, console)?;
    let inline_keys = [
        &config.storage.access_key_id,
        &config.storage.access_key_id_file,
        &config.storage.secret_access_key,
        &config.storage.secret_access_key_file,
    ]
    .iter()
    .any(|value| value.as_deref().is_some_and(|value| !value.is_empty()));
    if credentials.is_some() && inline_keys {
        console.warn(&format!(
            "the configuration names its own keys (s3AccesskeyID, s3SecretAccessKey or their File forms), which come before {ACCESS_KEY_ID}: the keys stored in Secret {NAMESPACE}/{CREDENTIALS_SECRET} are not used"
        ));
    }
    Ok(Settings {
        image: args.image.clone().unwrap_or_else(Settings::default_image),
        host_dir: host_dir(args, &installed, console),
        core_pattern: core_pattern(args, &installed, console)?,
        failure_policy: failure_policy(args, &installed, console),
        config_text,
        credentials,
        cfs_share,
        stale_credentials,
        storage_ca,
        stale_storage_ca,
    })
}

/// The storage CAs: `--storage-ca FILE`, else the installed ones; `--storage-ca=` removes them.
/// Returns them and whether an installed ConfigMap of them is to go.
fn storage_ca(
    args: &InstallArgs,
    installed: &Installed,
    console: &mut Console<'_>,
) -> anyhow::Result<(Option<String>, bool)> {
    match args.storage_ca.as_deref() {
        None => {
            if installed.storage_ca.is_some() {
                console.note(&format!(
                    "keeping the storage CAs of ConfigMap {NAMESPACE}/{STORAGE_CA_CONFIG_MAP} (--storage-ca FILE changes them, --storage-ca= removes them)"
                ));
            }
            Ok((installed.storage_ca.clone(), false))
        }
        Some("") => Ok((None, installed.storage_ca.is_some())),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                UserError::new(format!("cannot read --storage-ca {path}"))
                    .hint("pass a PEM file of the CA certificates that sign the storage endpoint's certificate")
                    .cause(err)
            })?;
            let count = ca_certificates(&text).map_err(|problem| {
                user(
                    format!("--storage-ca {path}: {problem}"),
                    "pass a PEM file of CA certificates (-----BEGIN CERTIFICATE-----) and nothing else",
                )
            })?;
            console.note(&format!(
                "the watchers trust the {count} CA certificate{} of --storage-ca for the storage endpoint, besides the public CAs",
                if count == 1 { "" } else { "s" }
            ));
            Ok((Some(text), false))
        }
    }
}

/// How many certificates a PEM bundle of CAs holds; an error for anything else in it (a
/// private key has no place in a ConfigMap) or for none.
fn ca_certificates(pem: &str) -> Result<usize, String> {
    use x509_parser::pem::Pem;
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let mut count = 0;
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|err| format!("not PEM: {err}"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "holds a {}, where only certificates belong",
                block.label
            ));
        }
        X509Certificate::from_der(&block.contents)
            .map_err(|err| format!("certificate {} does not parse: {err}", count + 1))?;
        count += 1;
    }
    if count == 0 {
        return Err("holds no certificate".to_owned());
    }
    Ok(count)
}

fn print_objects(
    objects: &[Value],
    format: ManifestFormat,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let text = match format {
        ManifestFormat::Yaml => to_yaml_stream(objects)?,
        ManifestFormat::Json => to_json(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": objects,
        }))?,
    };
    console.print(&text)
}

/// `client` may be `None` only for `--dry-run=client`.
pub async fn install(
    client: Option<&Client>,
    args: &InstallArgs,
    env: Env<'_>,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let dry_run = args.dry_run.dry_run;
    let timeout = crate::when::parse_duration(&args.timeout)
        .map_err(|err| user(format!("--timeout: {err}"), "for example --timeout 5m"))?;
    let reader = if dry_run == DryRun::Client {
        None
    } else {
        client
    };
    let settings = settings(args, reader, env, console).await?;
    let manifests = manifests::build(&settings)
        .map_err(|err| user(err.to_string(), "see `kubectl coredog install --help`"))?;

    let Some(client) = reader else {
        if let Some(format) = args.output {
            let objects: Vec<Value> = manifests.iter().map(|m| m.object.clone()).collect();
            return print_objects(&objects, format, console);
        }
        for manifest in &manifests {
            console.line(&format!(
                "{} serverside-applied{}",
                manifest.display_name(),
                dry_run.suffix()
            ))?;
        }
        return Ok(());
    };

    let mut applied = Vec::new();
    for manifest in &manifests {
        let object = apply::apply(client, manifest, dry_run)
            .await
            .map_err(|err| {
                let failed = UserError::new(format!("cannot apply {}", manifest.display_name()));
                match apply_hint(&err, dry_run) {
                    Some(hint) => failed.hint(hint),
                    None => failed,
                }
                .cause(err)
            })?;
        if args.output.is_none() {
            console.line(&format!(
                "{} serverside-applied{}",
                manifest.display_name(),
                dry_run.suffix()
            ))?;
        }
        applied.push(object);
    }
    // What an earlier install made and this one no longer wants.
    let stale = [
        (
            settings.stale_storage_ca,
            kube::core::ApiResource::erase::<ConfigMap>(&()),
            STORAGE_CA_CONFIG_MAP,
            "the storage CAs in ConfigMap",
        ),
        (
            settings.stale_credentials,
            kube::core::ApiResource::erase::<Secret>(&()),
            CREDENTIALS_SECRET,
            "the old store's keys in Secret",
        ),
    ];
    for (_, resource, name, what) in stale.iter().filter(|(stale, ..)| *stale) {
        apply::delete(client, resource, Some(NAMESPACE), name, dry_run)
            .await
            .map_err(|err| {
                UserError::new(format!("cannot remove {what} {NAMESPACE}/{name}")).cause(err)
            })?;
    }
    if let Some(format) = args.output {
        print_objects(&applied, format, console)?;
    }
    if dry_run.is_dry() {
        return Ok(());
    }
    if args.wait {
        wait::wait_ready(client, timeout, args.output.is_some(), console).await?;
    }
    if args.output.is_none() {
        next_steps(&settings, console)?;
    }
    Ok(())
}

fn next_steps(settings: &Settings, console: &mut Console<'_>) -> anyhow::Result<()> {
    let pattern_step = match &settings.core_pattern {
        Some(pattern) => format!("the watchers set kernel.core_pattern to {pattern} on every node"),
        None => format!(
            "make each node write cores into the pods' dump directory, e.g. `sysctl -w kernel.core_pattern={}` (or re-run with --node-setup)",
            DEFAULT_CORE_PATTERN
        ),
    };
    console.line(&format!(
        "\nCoreDog is installed in namespace {NAMESPACE}. Next:\n  1. {pattern_step}\n  2. opt workloads in: kubectl coredog enable deploy/NAME --path /corefile\n  3. check it end to end: kubectl coredog doctor deploy/NAME"
    ))
}

pub async fn uninstall(
    client: &Client,
    args: &UninstallArgs,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let dry_run = args.dry_run.dry_run;
    let mut removed = 0usize;
    for (resource, namespace, name) in manifests::removal_order(args.keep_namespace) {
        let display = manifests::display_name(&resource, name);
        let gone = if dry_run == DryRun::Client {
            apply::exists(client, &resource, namespace, name).await
        } else {
            apply::delete(client, &resource, namespace, name, dry_run).await
        }
        .map_err(|err| {
            let failed = UserError::new(format!("cannot delete {display}"));
            match &err {
                _ if is_forbidden(&err) => failed.hint(
                    "uninstalling CoreDog needs the rights that installed it (cluster-admin)",
                ),
                kube::Error::Api(_) => failed,
                _ => failed.hint(UNREACHABLE_HINT),
            }
            .cause(err)
        })?;
        if gone {
            removed += 1;
            console.line(&format!("{display} deleted{}", dry_run.suffix()))?;
        }
    }
    if removed == 0 {
        console.line("CoreDog is not installed: nothing to delete")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn install_args(args: &[&str]) -> InstallArgs {
        let mut argv = vec!["kubectl-coredog", "install"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Install(args) => args,
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn flags_make_a_valid_config() {
        let args = install_args(&[
            "--bucket",
            "dumps",
            "--region",
            "eu-west-1",
            "--endpoint",
            "http://127.0.0.1:8333",
        ]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut console = Console {
            out: &mut out,
            err: &mut err,
        };
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("ak".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("sk".to_owned()),
            _ => None,
        };
        let settings = settings(&args, None, &env, &mut console).await.unwrap();
        let config = Config::from_yaml(&settings.config_text).unwrap();
        assert_eq!(config.storage.bucket(), Some("dumps"));
        assert_eq!(config.storage.store_dir, "corefiles");
        assert_eq!(
            config.storage.endpoint().unwrap().url,
            "http://127.0.0.1:8333"
        );
        assert_eq!(
            settings.credentials,
            Some(Credentials {
                access_key_id: "ak".into(),
                secret_access_key: "sk".into()
            })
        );
    }

    #[tokio::test]
    async fn storage_is_required_and_half_credentials_are_refused() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut console = Console {
            out: &mut out,
            err: &mut err,
        };
        let none = |_: &str| None;
        let error = settings(&install_args(&[]), None, &none, &mut console)
            .await
            .unwrap_err();
        assert!(
            crate::error::explain(&error)
                .hint
                .unwrap()
                .contains("--bucket")
        );
        let half = |name: &str| (name == "AWS_ACCESS_KEY_ID").then(|| "ak".to_owned());
        let error = settings(&install_args(&["--bucket", "b"]), None, &half, &mut console)
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("go together"));
        let error = settings(&install_args(&["--region", "x"]), None, &none, &mut console)
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("--bucket is required"));
    }
}
