//! `coredog-bench`: CoreDog's benchmarks, each against a peer measured in the same run.
//!
//! - `webhook`: `/mutate` throughput and latency over TLS with keep-alive, against a minimal
//!   axum + rustls server that answers a fixed response (the ceiling), on the same TLS stack.
//! - `echo-server`: that ceiling server (started by `webhook`).
//! - `webhook-instructions`: instructions per `/mutate` request of the webhook and of the
//!   ceiling, counted by valgrind (see `instructions.rs`).
//! - `ship`: a real core shipped to S3 by `coredog watcher` (zstd and off), against s5cmd,
//!   rclone and the AWS CLI uploading the same file to the same server (see `ship.rs`).
//! - `heap-holder`: the process `ship` takes its core of (started by `ship`).
//! - `list-fetch`: `kubectl coredog list` of 10,000 dumps and `fetch` of a 1 GiB dump from S3,
//!   against `s5cmd ls` and `s5cmd cp` on the same bucket (see `list_fetch.rs`).

mod instructions;
mod list_fetch;
mod measure;
mod ship;
mod throttle;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use coredog::tls::{CertificateFiles, ReloadingCert};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "coredog-bench")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compare `coredog webhook` with the TLS echo ceiling.
    Webhook {
        /// The `coredog` binary to measure.
        #[arg(long, default_value = "target/release/coredog")]
        coredog: PathBuf,
        /// Seconds per measured run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Alternating rounds per target; the median round is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Also measure, for the opted-in pod, two variants of the ceiling that split the
        /// webhook's cost: one answering with the webhook's own answer (the patch included),
        /// one that first keeps its CPU busy for as long as the review takes alone.
        #[arg(long)]
        probes: bool,
        /// Also measure, for the opted-in pod, the ceiling keeping its CPU busy for each of
        /// these many microseconds per request (comma-separated): how much work per request
        /// this machine allows at a given ratio, whatever the work is.
        #[arg(long, value_delimiter = ',', value_name = "MICROS")]
        busy_curve: Vec<u64>,
        /// Another `coredog` build to measure in the same alternating rounds (a change shows
        /// only against its predecessor measured in turn).
        #[arg(long, value_name = "COREDOG")]
        baseline: Option<PathBuf>,
    },
    /// Instructions per `/mutate` request of `coredog webhook` and of the ceiling (valgrind).
    WebhookInstructions(instructions::InstructionsArgs),
    /// The ceiling: a minimal axum + rustls server answering a fixed AdmissionReview.
    EchoServer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        tls_cert: PathBuf,
        #[arg(long)]
        tls_key: PathBuf,
        /// Answer with this file's bytes instead of the fixed answer.
        #[arg(long)]
        answer: Option<PathBuf>,
        /// Spin this many microseconds (wall clock, no memory touched) before each answer.
        #[arg(long, default_value_t = 0)]
        busy_micros: u64,
    },
    /// Ship a real core with `coredog watcher` against s5cmd, rclone and the AWS CLI.
    Ship(ship::ShipArgs),
    /// Hold a heap of realistic content until stdin closes (the process `ship` takes a core of).
    #[command(hide = true)]
    HeapHolder(ship::HeapHolderArgs),
    /// `kubectl coredog list` and `fetch` against `s5cmd ls` and `s5cmd cp` on SeaweedFS.
    ListFetch(list_fetch::ListFetchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Before any runtime thread exists: its core holds the heap and nothing else to speak of.
    if let Cmd::HeapHolder(args) = &cli.command {
        return ship::hold_heap(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::EchoServer {
            listen,
            tls_cert,
            tls_key,
            answer,
            busy_micros,
        } => {
            let answer = match answer {
                Some(path) => Bytes::from(
                    std::fs::read(&path).with_context(|| format!("cannot read {path:?}"))?,
                ),
                None => Bytes::from_static(FIXED_RESPONSE.as_bytes()),
            };
            let busy = Duration::from_micros(busy_micros);
            runtime.block_on(echo_server(listen, tls_cert, tls_key, answer, busy))
        }
        Cmd::Webhook {
            coredog,
            seconds,
            connections,
            rounds,
            probes,
            busy_curve,
            baseline,
        } => runtime.block_on(webhook_bench(
            &coredog,
            baseline.as_deref(),
            Duration::from_secs(seconds),
            connections,
            rounds,
            probes,
            &busy_curve,
        )),
        Cmd::WebhookInstructions(args) => runtime.block_on(instructions::run(&args)),
        Cmd::Ship(args) => ship::run(&args, &runtime),
        Cmd::HeapHolder(_) => Ok(()),
        Cmd::ListFetch(args) => list_fetch::run(&args, &runtime),
    }
}

const FIXED_RESPONSE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"b1f0c8e2-7a4d-4a7e-9f55-2f9d3c4e5a61","allowed":true}}"#;

async fn echo_server(
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    answer: Bytes,
    busy: Duration,
) -> anyhow::Result<()> {
    let files = CertificateFiles { cert, key };
    let resolver = ReloadingCert::new(files.load()?);
    let app = axum::Router::new().route(
        "/mutate",
        axum::routing::post(move |_body: Bytes| async move {
            let started = Instant::now();
            while started.elapsed() < busy {
                std::hint::spin_loop();
            }
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                answer,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("echo serving address={}", listener.local_addr()?);
    coredog::tls::serve(
        listener,
        resolver.server_config()?,
        app,
        std::future::pending(),
    )
    .await;
    Ok(())
}

/// A server process stopped when dropped.
struct Server(Child);

impl Server {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Stops the server with SIGINT, as Ctrl-C would, and waits for it to exit (so that a
    /// profiler it runs under writes its figures).
    fn interrupt(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -INT {} failed", self.pid());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.0.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("{} did not stop on SIGINT", self.pid());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(command: &mut Command, marker: &str) -> anyhow::Result<(Server, SocketAddr)> {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line?;
        if line.contains(marker) {
            let address = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("address="))
                .context("no address in the ready line")?
                .parse()?;
            // Keep draining so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((server, address));
        }
    }
    bail!("{command:?} exited before it was ready")
}

#[derive(Debug, Clone)]
struct RunResult {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    /// The server's CPU time (user + system) per request.
    server_cpu: Duration,
}

/// Where a load goes: the server's address and its process, for its CPU time.
#[derive(Clone, Copy)]
struct Target {
    address: SocketAddr,
    pid: u32,
}

/// A TLS client that trusts the CA in `ca` (PEM).
fn tls_connector(ca: &Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(coredog::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTPS connection to `address` (as `localhost`).
async fn connect(
    address: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One `POST /mutate` of `body`, its answer read to the end.
async fn mutate(sender: &mut Sender, body: &Bytes) -> anyhow::Result<()> {
    sender.ready().await?;
    let request = hyper::Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    if !status.is_success() {
        bail!("status {status}");
    }
    Ok(())
}

async fn load(
    target: Target,
    ca: &Path,
    body: Bytes,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<RunResult> {
    let connector = tls_connector(ca)?;
    let ticks = measure::clock_ticks();
    let cpu_before = measure::cpu_seconds(target.pid, ticks);
    let address = target.address;
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let connector = connector.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address, &connector).await?;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                mutate(&mut sender, &body).await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let server_cpu = measure::cpu_seconds(target.pid, ticks) - cpu_before;
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(RunResult {
        requests_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        server_cpu: Duration::from_secs_f64(server_cpu.max(0.0) / latencies.len() as f64),
    })
}

fn review(pod: Value) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "b1f0c8e2-7a4d-4a7e-9f55-2f9d3c4e5a61",
                "kind": { "group": "", "version": "v1", "kind": "Pod" },
                "resource": { "group": "", "version": "v1", "resource": "pods" },
                "namespace": "default",
                "operation": "CREATE",
                "userInfo": { "username": "system:serviceaccount:kube-system:replicaset-controller" },
                "object": pod,
                "dryRun": false
            }
        }))
        .unwrap_or_default(),
    )
}

/// The two reviews measured: a Deployment's pod that opted in, and the same pod without the
/// annotations.
fn review_bodies() -> anyhow::Result<[(&'static str, Bytes); 2]> {
    let opted_in: Value = serde_json::from_str(include_str!(
        "../../cluster/tests/fixtures/deployment-pod.json"
    ))?;
    let mut plain = opted_in.clone();
    plain["metadata"]["annotations"] = json!({});
    Ok([
        ("opted-in pod", review(opted_in)),
        ("not opted-in pod", review(plain)),
    ])
}

/// A serving certificate for `localhost`, its key and its CA, in a fresh directory.
struct BenchCerts {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl BenchCerts {
    fn issue() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("coredog-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let issued = coredog::certs::issue(&["localhost".to_owned()], 1)?;
        let (cert, key, ca) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
        std::fs::write(&cert, &issued.cert_pem)?;
        std::fs::write(&key, &issued.key_pem)?;
        std::fs::write(&ca, &issued.ca_pem)?;
        Ok(Self { dir, cert, key, ca })
    }
}

fn median(mut runs: Vec<RunResult>) -> RunResult {
    runs.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
    runs[runs.len() / 2].clone()
}

async fn webhook_bench(
    coredog: &Path,
    baseline: Option<&Path>,
    duration: Duration,
    connections: usize,
    rounds: usize,
    probes: bool,
    busy_curve: &[u64],
) -> anyhow::Result<()> {
    let BenchCerts { dir, cert, key, ca } = BenchCerts::issue()?;

    // A server of `program` running `subcommand` with the bench's certificate.
    let start_tls_server = |program: &Path,
                            subcommand: &str,
                            extra: &[&std::ffi::OsStr],
                            marker: &str|
     -> anyhow::Result<(Server, Target)> {
        let (server, address) = start(
            Command::new(program)
                .args([subcommand, "--listen", "127.0.0.1:0", "--tls-cert"])
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key)
                .args(extra),
            marker,
        )?;
        let target = Target {
            address,
            pid: server.pid(),
        };
        Ok((server, target))
    };
    let start_webhook =
        |coredog: &Path| start_tls_server(coredog, "webhook", &[], "webhook serving HTTPS");
    let (_webhook_server, webhook) = start_webhook(coredog)?;
    let baseline = baseline.map(start_webhook).transpose()?;
    let bench = std::env::current_exe()?;
    let start_echo =
        |extra: &[&std::ffi::OsStr]| start_tls_server(&bench, "echo-server", extra, "echo serving");
    let (_echo_server, echo) = start_echo(&[])?;

    let bodies = review_bodies()?;

    println!(
        "webhook /mutate over TLS, keep-alive, {connections} connections, {rounds} alternating rounds of {}s (median round)",
        duration.as_secs()
    );
    println!(
        "{:<18} {:<18} {:>10} {:>9} {:>9} {:>15}",
        "body", "server", "req/s", "p50 ms", "p99 ms", "server CPU/req"
    );
    let mut summary = Vec::new();
    for (label, body) in &bodies {
        // Warm both servers (TLS session setup, allocator) before measuring.
        load(
            echo,
            &ca,
            body.clone(),
            connections,
            Duration::from_millis(500),
        )
        .await?;
        load(
            webhook,
            &ca,
            body.clone(),
            connections,
            Duration::from_millis(500),
        )
        .await?;
        if let Some((_, baseline)) = &baseline {
            load(
                *baseline,
                &ca,
                body.clone(),
                connections,
                Duration::from_millis(500),
            )
            .await?;
        }
        let (mut echo_runs, mut webhook_runs, mut baseline_runs) =
            (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            echo_runs.push(load(echo, &ca, body.clone(), connections, duration).await?);
            webhook_runs.push(load(webhook, &ca, body.clone(), connections, duration).await?);
            if let Some((_, baseline)) = &baseline {
                baseline_runs
                    .push(load(*baseline, &ca, body.clone(), connections, duration).await?);
            }
        }
        let (echo, webhook) = (median(echo_runs), median(webhook_runs));
        let baseline_result = (!baseline_runs.is_empty()).then(|| median(baseline_runs));
        let mut measured = vec![("ceiling (echo)", &echo), ("coredog webhook", &webhook)];
        measured.extend(
            baseline_result
                .as_ref()
                .map(|result| ("baseline webhook", result)),
        );
        for (server, result) in measured {
            println!(
                "{label:<18} {server:<18} {:>10.0} {:>9.3} {:>9.3} {:>12.1} µs",
                result.requests_per_second,
                result.p50.as_secs_f64() * 1e3,
                result.p99.as_secs_f64() * 1e3,
                result.server_cpu.as_secs_f64() * 1e6
            );
        }
        let ratio = webhook.requests_per_second / echo.requests_per_second;
        println!("{label:<18} {:<18} {ratio:>10.2}x of the ceiling", "ratio");
        let baseline_ratio = baseline_result.as_ref().map(|result| {
            let ratio = result.requests_per_second / echo.requests_per_second;
            println!(
                "{label:<18} {:<18} {ratio:>10.2}x of the ceiling",
                "baseline ratio"
            );
            (ratio * 100.0).round() / 100.0
        });
        summary.push(json!({
            "baseline_ratio": baseline_ratio,
            "baseline_server_cpu_us": baseline_result.as_ref().map(|result| (result.server_cpu.as_secs_f64() * 1e7).round() / 10.0),
            "body": label,
            "ceiling_rps": echo.requests_per_second.round(),
            "webhook_rps": webhook.requests_per_second.round(),
            "ratio": (ratio * 100.0).round() / 100.0,
            "webhook_p50_ms": (webhook.p50.as_secs_f64() * 1e6).round() / 1e3,
            "webhook_p99_ms": (webhook.p99.as_secs_f64() * 1e6).round() / 1e3,
            "ceiling_p99_ms": (echo.p99.as_secs_f64() * 1e6).round() / 1e3,
            "ceiling_server_cpu_us": (echo.server_cpu.as_secs_f64() * 1e7).round() / 10.0,
            "webhook_server_cpu_us": (webhook.server_cpu.as_secs_f64() * 1e7).round() / 10.0,
        }));
    }
    let (label, body) = &bodies[0];
    let load = Load {
        ca: &ca,
        body,
        connections,
        duration,
        rounds,
    };
    if probes {
        summary.push(probe(label, &load, &dir, echo, &start_echo).await?);
    }
    if !busy_curve.is_empty() {
        summary.push(busy_ceilings(label, &load, echo, &start_echo, busy_curve).await?);
    }
    println!("{}", serde_json::to_string(&summary)?);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// How each target is loaded in alternating rounds.
struct Load<'a> {
    ca: &'a Path,
    body: &'a Bytes,
    connections: usize,
    duration: Duration,
    rounds: usize,
}

impl Load<'_> {
    /// Each target warmed up, then measured in alternating rounds; the median round of each.
    async fn alternating(&self, targets: &[Target]) -> anyhow::Result<Vec<RunResult>> {
        let Self {
            ca,
            body,
            connections,
            duration,
            rounds,
        } = *self;
        for target in targets {
            load(
                *target,
                ca,
                (*body).clone(),
                connections,
                Duration::from_millis(500),
            )
            .await?;
        }
        // Each round starts with the next target, so that no target is always measured right
        // after the same one.
        let mut runs = vec![Vec::new(); targets.len()];
        for round in 0..rounds {
            for step in 0..targets.len() {
                let index = (round + step) % targets.len();
                let measured = load(targets[index], ca, (*body).clone(), connections, duration);
                runs[index].push(measured.await?);
            }
        }
        Ok(runs.into_iter().map(median).collect())
    }
}

/// The ceiling against copies of itself that spin `micros` µs per request before answering:
/// the ratio any server doing that much work per request could reach here.
async fn busy_ceilings(
    label: &str,
    load: &Load<'_>,
    echo: Target,
    start_echo: &StartEcho<'_>,
    micros: &[u64],
) -> anyhow::Result<Value> {
    let mut servers = Vec::new();
    let mut targets = vec![echo];
    for busy in micros {
        let busy = busy.to_string();
        let (server, target) = start_echo(&["--busy-micros".as_ref(), busy.as_ref()])?;
        servers.push(server);
        targets.push(target);
    }
    let results = load.alternating(&targets).await?;
    drop(servers);
    println!("{label}: the ceiling kept busy for a given time per request (no memory touched):");
    let ceiling = results[0].requests_per_second;
    let mut curve = Vec::new();
    for (busy, result) in std::iter::once(&0).chain(micros).zip(&results) {
        let ratio = result.requests_per_second / ceiling;
        println!(
            "{label:<18} {:<18} {:>10.0} {:>9.3} {:>9.3} {:>12.1} µs {ratio:>6.2}x",
            format!("+ {busy} µs busy"),
            result.requests_per_second,
            result.p50.as_secs_f64() * 1e3,
            result.p99.as_secs_f64() * 1e3,
            result.server_cpu.as_secs_f64() * 1e6,
        );
        curve.push(json!({
            "busy_us": busy,
            "ratio": (ratio * 100.0).round() / 100.0,
            "server_cpu_us": (result.server_cpu.as_secs_f64() * 1e7).round() / 10.0,
        }));
    }
    Ok(json!({ "busy_curve": label, "points": curve }))
}

/// The review of `body` timed alone on this thread: the median of 15 batches of 10,000, with
/// the answer written, as `/mutate` does.
fn review_alone(body: &[u8]) -> anyhow::Result<(Vec<u8>, Duration)> {
    const BATCH: u32 = 10_000;
    let host_dir = coredog_core::layout::DEFAULT_HOST_DIR;
    let answer = coredog::webhook::review::review(body, host_dir)?
        .review
        .to_json();
    let mut batches = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        for _ in 0..BATCH {
            let decision = coredog::webhook::review::review(std::hint::black_box(body), host_dir)?;
            std::hint::black_box(decision.review.to_json());
        }
        batches.push(started.elapsed() / BATCH);
    }
    batches.sort_unstable();
    Ok((answer, batches[batches.len() / 2]))
}

/// Starts a ceiling server with extra arguments.
type StartEcho<'a> = dyn Fn(&[&std::ffi::OsStr]) -> anyhow::Result<(Server, Target)> + 'a;

/// Splits the webhook's cost for `body`: the ceiling answering with the webhook's own answer,
/// and the ceiling spinning as long as the review takes alone before its fixed answer, each
/// measured in alternating rounds with the plain ceiling.
async fn probe(
    label: &str,
    load: &Load<'_>,
    dir: &Path,
    echo: Target,
    start_echo: &StartEcho<'_>,
) -> anyhow::Result<Value> {
    let (answer, alone) = review_alone(load.body)?;
    let answer_file = dir.join("answer.json");
    std::fs::write(&answer_file, &answer)?;
    let busy_micros = alone.as_micros().max(1).to_string();
    let (_answering, answering) = start_echo(&["--answer".as_ref(), answer_file.as_os_str()])?;
    let (_busy, busy) = start_echo(&["--busy-micros".as_ref(), busy_micros.as_ref()])?;
    let targets = [
        ("ceiling (echo)".to_owned(), echo),
        (format!("+ its {} B answer", answer.len()), answering),
        (format!("+ {busy_micros} µs busy"), busy),
    ];
    let results = load
        .alternating(
            &targets
                .iter()
                .map(|(_, target)| *target)
                .collect::<Vec<_>>(),
        )
        .await?;
    println!(
        "{label}: the review alone takes {:.1} µs on one thread; the ceiling, given the webhook's answer or that much busy CPU per request:",
        alone.as_secs_f64() * 1e6
    );
    let ceiling = results[0].requests_per_second;
    for ((server, _), result) in targets.iter().zip(&results) {
        println!(
            "{label:<18} {server:<18} {:>10.0} {:>9.3} {:>9.3} {:>12.1} µs {:>6.2}x",
            result.requests_per_second,
            result.p50.as_secs_f64() * 1e3,
            result.p99.as_secs_f64() * 1e3,
            result.server_cpu.as_secs_f64() * 1e6,
            result.requests_per_second / ceiling
        );
    }
    let ratio = |result: &RunResult| (result.requests_per_second / ceiling * 100.0).round() / 100.0;
    Ok(json!({
        "probe": label,
        "review_alone_us": (alone.as_secs_f64() * 1e7).round() / 10.0,
        "answer_bytes": answer.len(),
        "with_answer_ratio": ratio(&results[1]),
        "with_busy_ratio": ratio(&results[2]),
        "with_busy_server_cpu_us": (results[2].server_cpu.as_secs_f64() * 1e7).round() / 10.0,
        "ceiling_server_cpu_us": (results[0].server_cpu.as_secs_f64() * 1e7).round() / 10.0,
    }))
}
