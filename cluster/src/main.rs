//! `coredog`: one binary, one image, for everything CoreDog runs in the cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coredog::http::Readiness;
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
use coredog_core::config::Config;
use coredog_core::layout::DEFAULT_HOST_DIR;
use coredog_core::node_status::NodeStatus;
use coredog_store::Store;
use prometheus_client::registry::Registry;
use std::time::Duration;
use tracing::info;

// The webhook allocates many small, short-lived values per request on every worker thread;
// mimalloc serves that pattern with less contention than the system allocator.
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
    #[arg(long, default_value = "0.0.0.0:9090")]
    listen: SocketAddr,
    /// This node's name, recorded with every dump.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
}

#[derive(clap::Args)]
struct WebhookArgs {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// PEM certificate chain; reloaded when it changes.
    #[arg(long)]
    tls_cert: PathBuf,
    /// PEM private key; reloaded when it changes.
    #[arg(long)]
    tls_key: PathBuf,
    /// The node directory that holds every namespace's dumps.
    #[arg(long, default_value = DEFAULT_HOST_DIR)]
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
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

async fn run_webhook(args: WebhookArgs) -> anyhow::Result<()> {
    let files = CertificateFiles {
        cert: args.tls_cert,
        key: args.tls_key,
    };
    let cert = ReloadingCert::new(
        files
            .load()
            .context("cannot load the serving certificate")?,
    );
    tokio::spawn(tls::watch_files(cert.clone(), files));

    let mut registry = Registry::default();
    let state = WebhookState {
        host_dir: args.host_dir.into(),
        metrics: WebhookMetrics::register(&mut registry),
    };
    let readiness = Readiness::default();
    let app = webhook::router(state, Arc::new(registry), readiness.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    info!(address = %listener.local_addr()?, "webhook serving HTTPS");
    readiness.set(true);
    tls::serve(
        listener,
        cert.server_config()?,
        app,
        coredog::shutdown_signal(),
    )
    .await;
    info!("webhook stopped");
    Ok(())
}

async fn run_watcher(args: WatcherArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read the configuration {}", args.config.display()))?;
    let config = Config::from_yaml(&text)
        .with_context(|| format!("invalid configuration {}", args.config.display()))?;
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

    let mut registry = Registry::default();
    let metrics = WatcherMetrics::register(&mut registry);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .context("cannot build the HTTP client")?;
    let notifier = Arc::new(
        Notifier::from_config(&config, http, &mut registry)
            .context("invalid notification settings")?,
    );
    let readiness = Readiness::default();
    let ops = coredog::http::ops_routes(Arc::new(registry), readiness.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
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
        pacing: Pacing::from_config(&config),
        kube,
    };
    readiness.set(true);
    watcher.run(found_rx, coredog::shutdown_signal()).await;
    readiness.set(false);
    info!("watcher stopping");
    if let Ok(notifier) = Arc::try_unwrap(notifier) {
        notifier.shutdown(Duration::from_secs(5)).await;
    }
    Ok(())
}

/// Writes this node's status on the watcher pod now and every minute, for `kubectl coredog doctor`.
async fn report_node_status(
    link: KubeLink,
    node: String,
    root: PathBuf,
    store: Arc<Store>,
    config: Arc<Config>,
    metrics: WatcherMetrics,
) {
    let probe_prefix =
        coredog_core::object_key::listing_prefix(&config.storage.store_dir, None, None);
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        let storage = match store.list_page(&probe_prefix, None).await {
            Ok(_) => "ok".to_owned(),
            Err(err) => format!("error: {err}"),
        };
        let (backlog_files, backlog_bytes) = metrics.backlog();
        let status = NodeStatus {
            node: node.clone(),
            core_pattern: std::fs::read_to_string("/proc/sys/kernel/core_pattern")
                .ok()
                .map(|pattern| pattern.trim().to_owned()),
            previous_core_pattern: None,
            corefile_dir: root.display().to_string(),
            storage,
            backlog_files,
            backlog_bytes,
            updated_at: jiff::Timestamp::now(),
        };
        link.report_status(&status).await;
    }
}
