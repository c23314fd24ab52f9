//! `coredog`: one binary, one image, for everything CoreDog runs in the cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coredog::http::Readiness;
use coredog::node_setup::{self, NodeFiles, NodeSetupError};
use coredog::notify::Notifier;
use coredog::telemetry::{self, LogFormat};
use coredog::tls::{self, CertificateFiles, ReloadingCert};
use coredog::watcher::discover::Discovery;
use coredog::watcher::housekeeping;
use coredog::watcher::kube::{KubeLink, Whereabouts};
use coredog::watcher::pods::PodDirectory;
use coredog::watcher::ship::Shipper;
use coredog::watcher::{Pacing, Watcher, WatcherMetrics};
use coredog::webhook::{self, WebhookMetrics, WebhookState};
use coredog::webhook_certs::{self, CertSettings};
use coredog_core::config::Config;
use coredog_core::layout::{DEFAULT_HOST_DIR, parse_host_dir};
use coredog_core::node_status::NodeStatus;
use coredog_store::Store;
use prometheus_client::registry::Registry;
use std::time::Duration;
use tracing::info;

// The webhook allocates many small, short-lived values per request, and the watcher hands
// buffers between its reading, compressing and uploading threads: patterns mimalloc is built
// for.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "coredog",
    version,
    about = "Collects core dumps from Kubernetes pods"
)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Logfmt, env = "COREDOG_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the mutating admission webhook that gives opted-in pods a dump directory.
    Webhook(WebhookArgs),
    /// Watch this node's dump directory and ship every core to storage.
    Watcher(WatcherArgs),
    /// Run the whole pipeline on this machine: a real crash, shipped and described.
    Demo(DemoArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Where to put the node directory, the storage and the config (default: a new temporary
    /// directory, kept afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use the storage of this configuration file (for example an S3 endpoint) instead of a
    /// local directory.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct WatcherArgs {
    /// The configuration file (the same YAML `kubectl coredog` reads).
    #[arg(
        long,
        env = "COREDOG_CONFIG",
        default_value = "/etc/coredog/config.yaml"
    )]
    config: PathBuf,
    /// The node's dump root as mounted here; default: the config's CorefileDir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "[::]:9090")]
    listen: SocketAddr,
    /// This node's name, recorded with every dump.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Set the node's kernel.core_pattern to this (node setup; needs a privileged pod). The
    /// previous value is remembered and restored when CoreDog is uninstalled or node setup is
    /// turned off.
    #[arg(long, value_name = "PATTERN", requires = "daemonset")]
    core_pattern: Option<String>,
    /// Where node setup remembers the node's previous core_pattern (a hostPath).
    #[arg(long, default_value = "/var/lib/coredog")]
    state_dir: PathBuf,
    /// The watcher DaemonSet: its deletion, or its pods without --core-pattern, is what tells
    /// the end of node setup from a restart.
    #[arg(long, requires = "core_pattern")]
    daemonset: Option<String>,
    /// On SIGTERM, how long the uploads in flight may take to finish. Keep it below the pod's
    /// terminationGracePeriodSeconds, leaving time for the last notices.
    #[arg(long, default_value_t = coredog::watcher::DEFAULT_SHUTDOWN_DRAIN_SECONDS, value_name = "SECONDS")]
    drain_seconds: u64,
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("certificate").required(true).args(["tls_cert", "cert_secret"]))]
struct WebhookArgs {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "[::]:8443")]
    listen: SocketAddr,
    /// PEM certificate chain (for example from cert-manager); reloaded when it changes.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key; reloaded when it changes.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Manage the serving certificate in this Secret: create a CA and certificate when missing
    /// or near expiry, share them between replicas, and keep the caBundle current.
    #[arg(long, requires_all = ["webhook_configuration", "service"], conflicts_with_all = ["tls_cert", "tls_key"])]
    cert_secret: Option<String>,
    /// The MutatingWebhookConfiguration whose caBundle the webhook keeps current.
    #[arg(long, requires = "cert_secret")]
    webhook_configuration: Option<String>,
    /// The webhook's Service, whose DNS names the certificate is for.
    #[arg(long, requires = "cert_secret")]
    service: Option<String>,
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pod_namespace: Option<String>,
    /// The node directory that holds every namespace's dumps.
    #[arg(long, default_value = DEFAULT_HOST_DIR, value_parser = |raw: &str| parse_host_dir(raw))]
    host_dir: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo talks to a person; the servers talk to log collectors.
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    telemetry::init(cli.log_format, default_level);
    // The webhook's work is a few microseconds of CPU per request, and a second worker thread
    // costs it more in wake-ups and cache lines passed between cores than it adds: on one
    // thread it spends about a sixth less CPU per request and answers about a tenth more
    // under load (bench/README.md, webhook). One thread answers tens of thousands a second,
    // far beyond what an API server sends. The watcher and the demo compress and upload
    // cores, and use every core they are given.
    let mut runtime = if matches!(cli.command, Command::Webhook(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Webhook(args) => run_webhook(args).await,
            Command::Watcher(args) => run_watcher(args).await,
            Command::Demo(args) => coredog::demo::run(coredog::demo::DemoOptions {
                dir: args.dir,
                config: args.config,
            })
            .await
            .map(drop),
        }
    })
}

/// How long a stopping webhook goes on serving, unready: the time for the endpoint controller
/// and the API servers to stop sending it requests. Within the pods' 30 s of grace with the
/// connections' drain.
const WEBHOOK_ENDPOINTS_SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

async fn run_webhook(args: WebhookArgs) -> anyhow::Result<()> {
    let cert = match (args.cert_secret, args.tls_cert, args.tls_key) {
        (Some(secret), _, _) => {
            let namespace = args
                .pod_namespace
                .context("POD_NAMESPACE is not set; the webhook needs its namespace to manage its certificate")?;
            let settings = CertSettings::new(
                secret,
                args.webhook_configuration.unwrap_or_default(),
                args.service.unwrap_or_default(),
                namespace,
            );
            let client = kube::Client::try_default()
                .await
                .context("cannot reach the Kubernetes API to manage the webhook certificate")?;
            let key = webhook_certs::ensure(&client, &settings)
                .await
                .context("cannot set up the webhook certificate")?;
            let cert = ReloadingCert::new(key);
            tokio::spawn(webhook_certs::maintain(client, settings, cert.clone()));
            cert
        }
        (None, Some(cert), Some(key)) => {
            let files = CertificateFiles { cert, key };
            let cert = ReloadingCert::new(
                files
                    .load()
                    .context("cannot load the serving certificate")?,
            );
            tokio::spawn(tls::watch_files(cert.clone(), files));
            cert
        }
        _ => anyhow::bail!("give --cert-secret, or --tls-cert with --tls-key"),
    };

    let mut registry = Registry::default();
    let readiness = Readiness::default();
    let state = WebhookState {
        host_dir: args.host_dir.into(),
        metrics: WebhookMetrics::register(&mut registry),
        readiness: readiness.clone(),
    };
    let app = webhook::router(state, Arc::new(registry));
    let listener = coredog::http::listen(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    info!(address = %listener.local_addr()?, "webhook serving HTTPS");
    readiness.set(true);
    let shutdown = async move {
        coredog::shutdown_signal().await;
        // The API servers still pick this pod until they see its endpoint go: answer them
        // meanwhile, or pods created then miss their dump directory.
        readiness.set(false);
        info!(
            seconds = WEBHOOK_ENDPOINTS_SETTLE.as_secs(),
            "stopping: not ready, serving on while the endpoints change"
        );
        tokio::time::sleep(WEBHOOK_ENDPOINTS_SETTLE).await;
    };
    tls::serve(listener, cert.server_config()?, app, shutdown).await;
    info!("webhook stopped");
    Ok(())
}

async fn run_watcher(args: WatcherArgs) -> anyhow::Result<()> {
    coredog::watcher::handle_lease_breaks();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read the configuration {}", args.config.display()))?;
    let config = Config::from_yaml(&text)
        .with_context(|| format!("invalid configuration {}", args.config.display()))?;
    if config.storage.compression_level != config.storage.compression_level_in_use() {
        tracing::warn!(
            configured = config.storage.compression_level,
            in_use = config.storage.compression_level_in_use(),
            "compressionLevel above 19 needs too much memory per worker; compressing at 19"
        );
    }
    let root = args
        .dir
        .unwrap_or_else(|| PathBuf::from(&config.corefile_dir));
    let node = match args.node_name {
        Some(name) => name,
        None => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    let store = Store::from_config(&config.storage).context("cannot open storage")?;
    info!(storage = %store.describe(), root = %root.display(), node, "watcher starting");

    let node_files = args
        .core_pattern
        .as_ref()
        .map(|_| NodeFiles::on_node(&args.state_dir));
    let mut previous_core_pattern = None;
    if let (Some(files), Some(pattern)) = (&node_files, &args.core_pattern) {
        match node_setup::apply(files, pattern) {
            Ok(applied) => {
                info!(previous = ?applied.previous, current = %applied.current, changed = applied.changed, "node core_pattern set");
                previous_core_pattern = applied.previous;
            }
            Err(err @ NodeSetupError::InvalidPattern { .. }) => {
                return Err(err).context("invalid --core-pattern");
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot set the node's core_pattern; shipping what arrives anyway")
            }
        }
    }

    let mut registry = Registry::default();
    let metrics = WatcherMetrics::register(&mut registry);
    // Only redirects that keep the POST and its body (307, 308: an ingress answering http://)
    // are followed; after a 301, 302 or 303 reqwest would send a GET without the message and
    // take its 200 for a delivery. No Referer: it would carry a webhook's key (in its URL's
    // query) to wherever the redirect leads.
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        let keeps_the_post = matches!(attempt.status().as_u16(), 307 | 308);
        if keeps_the_post && attempt.previous().len() < 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(redirects)
        .referer(false)
        .build()
        .context("cannot build the HTTP client")?;
    let notifier = Arc::new(
        Notifier::from_config(&config, http, &mut registry)
            .context("invalid notification settings")?,
    );
    let readiness = Readiness::default();
    let ops = coredog::http::ops_routes(Arc::new(registry), readiness.clone());
    let listener = coredog::http::listen(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    info!(address = %listener.local_addr()?, "watcher serving metrics");
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, ops).await {
            tracing::warn!(error = %err, "metrics server stopped");
        }
    });

    let config = Arc::new(config);
    let store = Arc::new(store);
    let pods = PodDirectory::default();
    let kube = KubeLink::connect(Whereabouts {
        node: node.clone(),
        pod_name: std::env::var("POD_NAME").ok(),
        pod_namespace: std::env::var("POD_NAMESPACE").ok(),
    })
    .await;
    if let Some(link) = kube.clone() {
        tokio::spawn(link.clone().feed_pods(pods.clone()));
        tokio::spawn(report_node_status(
            link,
            node.clone(),
            root.clone(),
            store.clone(),
            config.clone(),
            metrics.clone(),
            previous_core_pattern.clone(),
        ));
    }
    {
        let (root, pods) = (root.clone(), pods.clone());
        let grace = Duration::from_secs(u64::from(config.watcher.pod_dir_grace_seconds));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(600));
            loop {
                every.tick().await;
                let (root, pods) = (root.clone(), pods.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    housekeeping::remove_gone_pod_dirs(&root, &pods, grace)
                })
                .await;
            }
        });
    }
    let rescan = Duration::from_secs(u64::from(config.watcher.rescan_interval_seconds));
    let (found_tx, found_rx) = tokio::sync::mpsc::channel(1024);
    let discovery = Discovery::new(root.clone(), rescan);
    tokio::spawn(async move {
        if let Err(err) = discovery.run(found_tx).await {
            tracing::error!(error = %err, "watching the dump directory failed");
        }
    });
    let watcher = Watcher {
        shipper: Arc::new(Shipper {
            root,
            node,
            store,
            config: config.clone(),
            pods,
        }),
        notifier: notifier.clone(),
        metrics,
        pacing: Pacing {
            shutdown_drain: Duration::from_secs(args.drain_seconds),
            ..Pacing::from_config(&config)
        },
        kube,
    };
    readiness.set(true);
    watcher.run(found_rx, coredog::shutdown_signal()).await;
    readiness.set(false);
    info!("watcher stopping");
    if let (Some(files), Some(daemonset)) = (&node_files, &args.daemonset) {
        restore_core_pattern(files, daemonset).await;
    }
    if let Ok(notifier) = Arc::try_unwrap(notifier) {
        notifier.shutdown(Duration::from_secs(5)).await;
    }
    Ok(())
}

/// How long the status report waits for storage to answer its probe.
const STORAGE_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes this node's status on the watcher pod now and every minute, for `kubectl coredog doctor`.
async fn report_node_status(
    link: KubeLink,
    node: String,
    root: PathBuf,
    store: Arc<Store>,
    config: Arc<Config>,
    metrics: WatcherMetrics,
    previous_core_pattern: Option<String>,
) {
    // A listing that matches nothing: as telling of access as any, and it reads no more than
    // the store directory itself (on a share, not the flat id index, which grows with every
    // dump).
    let probe_prefix = format!(
        "{}.coredog-probe",
        coredog_core::object_key::listing_prefix(&config.storage.store_dir, None, None)
    );
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        // One answer within the probe's time: a store that drops packets would hold the
        // report for the request's retries (minutes), and doctor would take the silence for a
        // watcher gone.
        let probe =
            tokio::time::timeout(STORAGE_PROBE_TIMEOUT, store.list_page(&probe_prefix, None));
        let storage = match probe.await {
            Ok(Ok(_)) => "ok".to_owned(),
            Ok(Err(err)) => format!("error: {err}"),
            Err(_) => format!(
                "error: no answer within {}s",
                STORAGE_PROBE_TIMEOUT.as_secs()
            ),
        };
        let (backlog_files, backlog_bytes) = metrics.backlog();
        let status = NodeStatus {
            node: node.clone(),
            core_pattern: node_setup::read_core_pattern(Path::new(node_setup::PROC_CORE_PATTERN)),
            previous_core_pattern: previous_core_pattern.clone(),
            corefile_dir: root.display().to_string(),
            storage,
            backlog_files,
            backlog_bytes,
            updated_at: jiff::Timestamp::now(),
        };
        link.report_status(&status).await;
    }
}

/// On the way out: gives the node its own core_pattern back if, and only if, CoreDog is being
/// uninstalled or node setup turned off (a rolling restart keeps ours, so no core is lost in
/// the gap).
async fn restore_core_pattern(files: &NodeFiles, daemonset: &str) {
    let Ok(namespace) = std::env::var("POD_NAMESPACE") else {
        tracing::warn!("POD_NAMESPACE is not set; the node keeps CoreDog's core_pattern");
        return;
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(error = %err, "no API access to tell the end of node setup from a restart; the node keeps CoreDog's core_pattern");
            return;
        }
    };
    match node_setup::restore_if_setup_ended(&client, &namespace, daemonset, files).await {
        Ok(outcome) => info!(?outcome, "core_pattern on the way out"),
        Err(err) => tracing::warn!(error = %err, "cannot restore the node's core_pattern"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Command};

    /// The arguments the Helm chart and `kubectl coredog install` give the containers.
    #[test]
    fn the_manifests_arguments_parse() {
        let webhook = Cli::try_parse_from([
            "coredog",
            "webhook",
            "--listen",
            "[::]:8443",
            "--host-dir",
            "/data/coredog-system/dumps",
            "--cert-secret",
            "coredog-webhook-tls",
            "--webhook-configuration",
            "coredog-webhook",
            "--service",
            "coredog-webhook",
            "--log-format",
            "logfmt",
        ])
        .unwrap();
        assert!(matches!(webhook.command, Command::Webhook(_)));
        let watcher = Cli::try_parse_from([
            "coredog",
            "watcher",
            "--config",
            "/etc/coredog/config.yaml",
            "--dir",
            "/corefile",
            "--listen",
            "[::]:9090",
            "--core-pattern",
            "/corefile/core.%e.%p.%h.%t",
            "--state-dir",
            "/var/lib/coredog",
            "--daemonset",
            "coredog-watcher",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert!(matches!(watcher.command, Command::Watcher(_)));
        assert!(Cli::try_parse_from(["coredog", "webhook", "--tls-cert", "a"]).is_err());
        let relative_host_dir = Cli::try_parse_from(["coredog", "webhook", "--host-dir", "dumps"])
            .err()
            .map(|err| err.to_string());
        assert!(
            relative_host_dir.is_some_and(|err| err.contains("not an absolute, normalised path")),
            "a relative --host-dir must be refused at start"
        );
        assert!(Cli::try_parse_from(["coredog", "webhook", "--cert-secret", "s"]).is_err());
        assert!(
            Cli::try_parse_from(["coredog", "watcher", "--core-pattern", "/corefile/core"])
                .is_err()
        );
    }
}
