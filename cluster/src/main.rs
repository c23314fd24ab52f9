//! `coredog`: one binary, one image, for everything CoreDog runs in the cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coredog::http::Readiness;
use coredog::telemetry::{self, LogFormat};
use coredog::tls::{self, CertificateFiles, ReloadingCert};
use coredog::webhook::{self, WebhookMetrics, WebhookState};
use coredog_core::layout::DEFAULT_HOST_DIR;
use prometheus_client::registry::Registry;
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
    telemetry::init(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Webhook(args) => run_webhook(args).await,
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
