//! `ship`: one real core dump, from the instant its writer closes it in the watched directory
//! to the instant it is durable in S3, shipped by `coredog watcher` (zstd, then off) and, in the
//! same run and on the same server, uploaded raw by s5cmd, rclone and the AWS CLI.
//!
//! - The core: gdb's `gcore` of a helper process (`heap-holder`) whose heap holds a realistic
//!   mix: zero pages, mostly-zero slab pages, repetitive records with pointers, log lines and
//!   JSON, pointer arrays, and ~12% random bytes (compressed or encrypted payloads).
//! - The server: SeaweedFS `weed mini` on loopback with SigV4 enforced, a fresh one per round.
//! - Every contender gets a fresh copy of the core written by this harness with one final
//!   close, after a `sync` (so no earlier copy is still being flushed); t0 is the instant
//!   `close()` returned. inotify reports the close when `close()` starts, so when `close()` is
//!   slow the watcher may log its capture a few ms *before* t0 (a negative latency).
//! - The watcher is durable when its record `<key>.json` is listed in the bucket (polled here:
//!   every 100 ms while /proc/<pid>/io shows it still reading the core, every 5 ms after), and
//!   its `uploaded corefile` log time is reported beside; a peer is durable when it exits
//!   successfully (its object is then checked). The record must carry the core's size and
//!   SHA-256.
//! - When the watcher starts reading the core and when its first part goes out are seen in
//!   /proc/<pid>/io (`rchar` up by 1 MiB, `wchar` up by 256 KiB): nothing is added to it.
//! - Every contender reads the core from the page cache (a file just written on this machine);
//!   the server shares the machine's CPUs with them, so its CPU per byte uploaded weighs on
//!   every figure (reported as `srv cpu`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use coredog_core::config::Config;
use coredog_core::object_key::store_prefix;
use coredog_core::record::DumpRecord;
use coredog_store::Store;
use serde_json::{Value, json};

use crate::Server;
use crate::measure::{
    ACCESS_KEY, BUCKET, REGION, SECRET_KEY, Seaweed, children_cpu_seconds, clock_ticks,
    cpu_seconds, peak_rss_mib, round_to, stat_fields,
};

const MIB: u64 = 1024 * 1024;
/// Longest a single upload may take before the run is abandoned.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(clap::Args)]
pub struct ShipArgs {
    /// The `coredog` binary to measure.
    #[arg(long, default_value = "target/release/coredog")]
    coredog: PathBuf,
    /// Where `.ci/tools` installed `weed`.
    #[arg(long, default_value = ".cache/tools/bin")]
    tools_bin: PathBuf,
    /// Where `bench/tools` installed s5cmd, rclone and aws.
    #[arg(long, default_value = ".cache/bench-tools/bin")]
    bench_tools_bin: PathBuf,
    /// Size of the helper's heap, in GiB (the core is this plus its mappings).
    #[arg(long, default_value_t = 1.0)]
    size_gib: f64,
    /// Rounds, each on a fresh server with the contenders in a rotated order; medians reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// After the measured rounds, profile one extra watcher run per mode with
    /// `perf record -e cpu-clock -g`, writing DIR/watcher-<mode>.data (not in the figures).
    #[arg(long, value_name = "DIR")]
    perf: Option<PathBuf>,
    /// Scratch directory (default: a new directory under the system temp dir, removed at the end).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// The contenders to run (s5cmd is the reference of the ratios).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = CONTENDERS)]
    contenders: Vec<Contender>,
    /// Extra environment for the watcher, for experiments (for example MIMALLOC_PURGE_DELAY=0).
    #[arg(long = "watcher-env", value_name = "KEY=VALUE")]
    watcher_env: Vec<String>,
    /// A StorageConfig key for the watcher instead of its default, for experiments (for example
    /// partsInFlight=1); the goals are about the defaults.
    #[arg(long = "storage-setting", value_name = "KEY=VALUE")]
    storage_settings: Vec<String>,
}

#[derive(clap::Args)]
pub struct HeapHolderArgs {
    /// Heap to allocate and fill, in MiB.
    #[arg(long)]
    size_mib: u64,
    /// Seed of the content.
    #[arg(long, default_value_t = 0x00C0_2ED0_6BE4_C400)]
    seed: u64,
}

// ---------------------------------------------------------------------------------------------
// The heap the core is taken of.

/// SplitMix64: fast, deterministic, good enough for content.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// Pages touched and all zero (freed, calloc'ed, reserved buffers).
    Zero,
    /// Slab pages holding a header and a few small objects.
    Sparse,
    /// Arrays of 64-byte records: vtable, next pointer, ids, counters, timestamps, names.
    Records,
    /// Log lines, JSON documents, HTTP headers, paths and environment strings.
    Text,
    /// Compressed or encrypted payloads.
    Random,
    /// Pointer arrays and hash-table buckets.
    Pointers,
}

/// Percent of the heap per kind.
const MIX: [(Kind, usize); 6] = [
    (Kind::Zero, 35),
    (Kind::Sparse, 10),
    (Kind::Records, 22),
    (Kind::Text, 13),
    (Kind::Random, 12),
    (Kind::Pointers, 8),
];

const WORDS: [&str; 24] = [
    "session",
    "request",
    "worker",
    "cache",
    "buffer",
    "upstream",
    "tenant",
    "order",
    "invoice",
    "payment",
    "account",
    "shard",
    "replica",
    "queue",
    "message",
    "stream",
    "batch",
    "token",
    "profile",
    "catalog",
    "inventory",
    "metrics",
    "span",
    "trace",
];

const ARENA: usize = 4 << 20;
const PAGE: usize = 4096;

struct Heap {
    rng: Rng,
    /// Addresses of the arenas, for pointers that point into the heap.
    bases: Vec<usize>,
    serial: u64,
}

impl Heap {
    fn pointer(&mut self) -> u64 {
        let base = self.bases[self.rng.below(self.bases.len())];
        (base + (self.rng.below(ARENA) & !0xF)) as u64
    }

    fn fill(&mut self, kind: Kind, segment: &mut [u8]) {
        match kind {
            Kind::Zero => segment.fill(0),
            Kind::Sparse => {
                segment.fill(0);
                for page in segment.chunks_mut(PAGE) {
                    let next = self.pointer();
                    page[..8].copy_from_slice(&0x5AB1_0C00_0000_0001u64.to_le_bytes());
                    page[8..16].copy_from_slice(&next.to_le_bytes());
                    page[16..20].copy_from_slice(&(self.rng.below(64) as u32).to_le_bytes());
                    for _ in 0..self.rng.below(4) {
                        let at = 64 + (self.rng.below(PAGE - 96) & !0xF);
                        let value = self.rng.next();
                        page[at..at + 8].copy_from_slice(&value.to_le_bytes());
                        let next = self.pointer();
                        page[at + 8..at + 16].copy_from_slice(&next.to_le_bytes());
                    }
                }
            }
            Kind::Records => {
                let vtable = 0x5566_1a2b_0000u64 + 0x40 * self.rng.below(6) as u64;
                for record in segment.chunks_mut(64) {
                    let mut bytes = [0u8; 64];
                    self.serial += 1;
                    let id = self.serial;
                    let name = WORDS[self.rng.below(WORDS.len())].as_bytes();
                    bytes[..8].copy_from_slice(&vtable.to_le_bytes());
                    let next = if self.rng.below(8) == 0 {
                        0
                    } else {
                        self.pointer()
                    };
                    bytes[8..16].copy_from_slice(&next.to_le_bytes());
                    bytes[16..24].copy_from_slice(&id.to_le_bytes());
                    bytes[24..28].copy_from_slice(&(1 + self.rng.below(3) as u32).to_le_bytes());
                    bytes[28..32].copy_from_slice(&(self.rng.below(5) as u32).to_le_bytes());
                    let stamp =
                        1_764_237_612_000_000u64 + id * 1_000 + self.rng.below(1_000) as u64;
                    bytes[32..40].copy_from_slice(&stamp.to_le_bytes());
                    bytes[40..40 + name.len().min(16)].copy_from_slice(&name[..name.len().min(16)]);
                    bytes[56..60].copy_from_slice(&(name.len() as u32).to_le_bytes());
                    bytes[60..64].copy_from_slice(&(self.rng.next() as u16 as u32).to_le_bytes());
                    let take = record.len();
                    record.copy_from_slice(&bytes[..take]);
                }
            }
            Kind::Text => self.text(segment),
            Kind::Random => {
                for word in segment.chunks_mut(8) {
                    let value = self.rng.next().to_le_bytes();
                    let take = word.len();
                    word.copy_from_slice(&value[..take]);
                }
            }
            Kind::Pointers => {
                for slot in segment.chunks_mut(8) {
                    let value = match self.rng.below(10) {
                        0..=6 => self.pointer(),
                        7 | 8 => 0,
                        _ => self.rng.below(4096) as u64,
                    };
                    let take = slot.len();
                    slot.copy_from_slice(&value.to_le_bytes()[..take]);
                }
            }
        }
    }

    fn text(&mut self, segment: &mut [u8]) {
        use std::fmt::Write as _;
        let mut line = String::with_capacity(512);
        let mut at = 0;
        while at < segment.len() {
            line.clear();
            self.serial += 1;
            let id = self.serial;
            let word = WORDS[self.rng.below(WORDS.len())];
            let (minute, second, milli) = ((id / 60_000) % 60, (id / 1_000) % 60, id % 1_000);
            let _ = match self.rng.below(4) {
                0 => writeln!(
                    line,
                    "time=2025-11-27T09:{minute:02}:{second:02}.{milli:03}Z level=info msg=\"request handled\" method=GET path=/api/v1/{word}s/{id} status={} bytes={} duration_ms={} request_id={:016x}",
                    [200, 200, 200, 201, 204, 404, 500][self.rng.below(7)],
                    self.rng.below(65_536),
                    self.rng.below(900),
                    self.rng.next()
                ),
                1 => writeln!(
                    line,
                    "{{\"id\":{id},\"kind\":\"{word}\",\"owner\":\"user-{}@example.com\",\"roles\":[\"reader\",\"writer\"],\"created_at\":\"2025-11-27T09:{minute:02}:{second:02}Z\",\"active\":true,\"score\":{}.{}}}",
                    self.rng.below(5_000),
                    self.rng.below(100),
                    self.rng.below(1_000)
                ),
                2 => write!(
                    line,
                    "POST /api/v1/{word}s HTTP/1.1\r\nHost: {word}.default.svc.cluster.local:8080\r\nUser-Agent: Go-http-client/1.1\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\nX-Request-Id: {:016x}\r\nContent-Length: {}\r\n\r\n",
                    self.rng.next(),
                    self.rng.below(4_096)
                ),
                _ => write!(
                    line,
                    "/var/lib/app/data/{word}/{:08}.dat\0{}_SERVICE_PORT=8080\0{}_SERVICE_HOST=10.96.{}.{}\0",
                    id % 100_000_000,
                    word.to_uppercase(),
                    word.to_uppercase(),
                    self.rng.below(256),
                    self.rng.below(256)
                ),
            };
            let take = line.len().min(segment.len() - at);
            segment[at..at + take].copy_from_slice(&line.as_bytes()[..take]);
            at += take;
        }
    }
}

/// Allocates and fills the heap, says `heap ready pid=... bytes=...` on stdout, and holds it
/// until stdin closes.
pub fn hold_heap(args: &HeapHolderArgs) -> anyhow::Result<()> {
    let arenas = usize::try_from(args.size_mib)?.div_ceil(ARENA / MIB as usize);
    let mut heap: Vec<Box<[u8]>> = (0..arenas)
        .map(|_| vec![0u8; ARENA].into_boxed_slice())
        .collect();
    let mut state = Heap {
        rng: Rng(args.seed),
        bases: heap.iter().map(|arena| arena.as_ptr() as usize).collect(),
        serial: 0,
    };
    let total: usize = MIX.iter().map(|(_, weight)| weight).sum();
    for arena in &mut heap {
        let mut at = 0;
        while at < arena.len() {
            let length = (PAGE * (1 + state.rng.below(16))).min(arena.len() - at);
            let mut pick = state.rng.below(total);
            let kind = MIX
                .iter()
                .find(|(_, weight)| {
                    let found = pick < *weight;
                    pick = pick.saturating_sub(*weight);
                    found
                })
                .map_or(Kind::Zero, |(kind, _)| *kind);
            state.fill(kind, &mut arena[at..at + length]);
            at += length;
        }
    }
    std::hint::black_box(&heap);
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "heap ready pid={} bytes={}",
        std::process::id(),
        arenas * ARENA
    )?;
    stdout.flush()?;
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    std::hint::black_box(&heap);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes, /proc, files.

/// Busy CPU seconds of the whole machine (all CPUs), from `/proc/stat`.
fn machine_busy_seconds(ticks: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(at, _)| !matches!(at, 3 | 4) && *at < 8)
        .map(|(_, value)| value)
        .sum();
    busy as f64 / ticks
}

/// This harness's own user + system CPU seconds.
fn own_cpu_seconds(ticks: f64) -> f64 {
    stat_fields("self")
        .map(|fields| (fields[11] + fields[12]) as f64 / ticks)
        .unwrap_or(0.0)
}

/// `rchar` and `wchar` of `/proc/<pid>/io`: bytes read and written through read/write calls
/// (files and sockets alike).
fn io_counters(pid: u32) -> Option<(u64, u64)> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let value = |key: &str| -> Option<u64> {
        io.lines()
            .find_map(|line| line.strip_prefix(key))?
            .trim()
            .parse()
            .ok()
    };
    Some((value("rchar:")?, value("wchar:")?))
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Flushes every dirty page on the machine, so each contender starts from the same state.
fn sync_disks() {
    let _ = Command::new("sync").status();
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// When a copy was closed.
struct Closed {
    /// Right before `close()`.
    started: Instant,
    /// Right after `close()` returned: t0.
    at: Instant,
    wall: SystemTime,
}

/// Writes `source` to the new file `target` and closes it once at the end, as the kernel writes
/// a core. `before_close` runs after the last write.
fn write_copy(source: &Path, target: &Path, before_close: impl FnOnce()) -> anyhow::Result<Closed> {
    let mut input = File::open(source)?;
    let mut output =
        File::create(target).with_context(|| format!("cannot create {}", target.display()))?;
    let mut buffer = vec![0u8; 8 << 20];
    loop {
        let read = input.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        output.write_all(&buffer[..read])?;
    }
    before_close();
    let started = Instant::now();
    drop(output);
    Ok(Closed {
        started,
        at: Instant::now(),
        wall: SystemTime::now(),
    })
}

/// A process whose stderr lines are collected with the instant each arrived.
struct Logged {
    server: Server,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Logged {
    fn start(command: &mut Command, marker: &str, timeout: Duration) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let mut logged = Self {
            server: Server(child),
            lines,
            seen: Vec::new(),
        };
        logged
            .wait_for(marker, timeout)
            .with_context(|| format!("{command:?} did not start"))?;
        Ok(logged)
    }

    fn pid(&self) -> u32 {
        self.server.0.id()
    }

    fn pump(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    fn find(&self, marker: &str) -> Option<&(Instant, String)> {
        self.seen.iter().find(|(_, line)| line.contains(marker))
    }

    fn wait_for(&mut self, marker: &str, timeout: Duration) -> anyhow::Result<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump();
            if let Some(found) = self.find(marker) {
                return Ok(found.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "no {marker:?} within {timeout:?}; last lines:\n{}",
                        self.tail()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("exited before {marker:?}; last lines:\n{}", self.tail())
                }
            }
        }
    }

    fn tail(&self) -> String {
        let from = self.seen.len().saturating_sub(20);
        self.seen[from..]
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The `time=` of a logfmt line, in seconds since the epoch: the middle of the millisecond it
/// names (the watcher logs whole milliseconds, truncated).
fn log_time(line: &str) -> Option<f64> {
    let text = line.strip_prefix("time=")?.split_whitespace().next()?;
    let time: jiff::Timestamp = text.parse().ok()?;
    Some((time.as_millisecond() as f64 + 0.5) / 1e3)
}

fn logfmt_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split_whitespace().next()
}

// ---------------------------------------------------------------------------------------------
// The S3 server.

impl Seaweed {
    fn config_yaml(&self, store_dir: &str, compression: &str) -> String {
        format!(
            "{}  compression: {compression}\n",
            self.storage_config_yaml(store_dir)
        )
    }

    fn store(&self) -> anyhow::Result<Store> {
        let config = Config::from_yaml(&self.config_yaml("checks", "zstd"))?;
        Ok(Store::from_config(&config.storage)?)
    }
}

// ---------------------------------------------------------------------------------------------
// Contenders and measurements.

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Contender {
    #[value(name = "coredog-zstd")]
    WatcherZstd,
    #[value(name = "coredog-off")]
    WatcherOff,
    S5cmd,
    Rclone,
    Aws,
}

const CONTENDERS: [Contender; 5] = [
    Contender::WatcherZstd,
    Contender::WatcherOff,
    Contender::S5cmd,
    Contender::Rclone,
    Contender::Aws,
];

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Self::WatcherZstd => "coredog zstd",
            Self::WatcherOff => "coredog off",
            Self::S5cmd => "s5cmd cp",
            Self::Rclone => "rclone copyto",
            Self::Aws => "aws s3 cp",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::WatcherZstd => "coredog_zstd",
            Self::WatcherOff => "coredog_off",
            Self::S5cmd => "s5cmd",
            Self::Rclone => "rclone",
            Self::Aws => "aws",
        }
    }

    fn compression(self) -> Option<&'static str> {
        match self {
            Self::WatcherZstd => Some("zstd"),
            Self::WatcherOff => Some("off"),
            _ => None,
        }
    }
}

/// One contender's figures in one round.
#[derive(Debug, Clone, Default)]
struct Run {
    /// close → durable: the record listed (watcher), the tool's successful exit (peers).
    wall: f64,
    /// close → the watcher's `uploaded corefile` log time.
    durable_by_log: Option<f64>,
    /// close → the watcher's `capture a file` log time, in ms (the log has ms resolution).
    capture_ms: Option<f64>,
    /// close → the `capture a file` line arriving on the watcher's stderr pipe, in ms.
    capture_arrival_ms: Option<f64>,
    /// close → the watcher's first MiB read of the core, in ms (from /proc/<pid>/io).
    first_read_ms: Option<f64>,
    /// close → the watcher's first 256 KiB written to a socket, in ms (its first part request).
    first_part_ms: Option<f64>,
    /// close → the watcher has read the whole core, in s.
    read_done: Option<f64>,
    stored_bytes: u64,
    client_cpu: f64,
    server_cpu: f64,
    /// CPU used on the machine meanwhile by anything but the contender, the server and this
    /// harness: noise from other work (should be near 0).
    other_cpu: f64,
    peak_rss_mib: f64,
    /// How long `close()` of the copy took (t0 is when it returned; the watcher is told of the
    /// close when it starts).
    close_ms: f64,
    /// The watcher took the file before its close (a write stalled past the settle time, so
    /// it was taken as settled): not a close-write measurement, done again.
    taken_before_close: bool,
}

/// Machine, server and harness CPU counters at t0.
struct CpuMark {
    machine: f64,
    server: f64,
    own: f64,
}

impl CpuMark {
    fn take(server: u32, ticks: f64) -> Self {
        Self {
            machine: machine_busy_seconds(ticks),
            server: cpu_seconds(server, ticks),
            own: own_cpu_seconds(ticks),
        }
    }

    /// (server CPU, other CPU) since the mark, given the contender's CPU.
    fn since(&self, server: u32, ticks: f64, contender: f64) -> (f64, f64) {
        let server = cpu_seconds(server, ticks) - self.server;
        let own = own_cpu_seconds(ticks) - self.own;
        let machine = machine_busy_seconds(ticks) - self.machine;
        (server, (machine - server - own - contender).max(0.0))
    }
}

/// Watches `/proc/<pid>/io` from just before t0: when the core's reading starts, when the first
/// part goes out, and when the whole core has been read.
struct IoProbe {
    times: Arc<Mutex<ProbeTimes>>,
    read_done: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

#[derive(Default, Clone, Copy)]
struct ProbeTimes {
    first_read: Option<Instant>,
    first_part: Option<Instant>,
    read_done: Option<Instant>,
}

impl IoProbe {
    /// Takes the baseline now and starts probing.
    fn start(pid: u32, core_size: u64) -> Self {
        let times = Arc::new(Mutex::new(ProbeTimes::default()));
        let read_done = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (base_read, base_written) = io_counters(pid).unwrap_or_default();
        {
            let (times, read_done, stop) = (times.clone(), read_done.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = ProbeTimes::default();
                while !stop.load(Ordering::Relaxed) {
                    let Some((read, written)) = io_counters(pid) else {
                        break;
                    };
                    let now = Instant::now();
                    if seen.first_read.is_none() && read >= base_read + MIB {
                        seen.first_read = Some(now);
                    }
                    if seen.first_part.is_none() && written >= base_written + MIB / 4 {
                        seen.first_part = Some(now);
                    }
                    if read >= base_read + core_size {
                        seen.read_done = Some(now);
                        read_done.store(true, Ordering::Release);
                    }
                    if let Ok(mut shared) = times.lock() {
                        *shared = seen;
                    }
                    if seen.read_done.is_some() {
                        break;
                    }
                    // Fine-grained until the first part is out, then cheap.
                    std::thread::sleep(if seen.first_part.is_none() {
                        Duration::from_micros(200)
                    } else {
                        Duration::from_millis(5)
                    });
                }
            });
        }
        Self {
            times,
            read_done,
            stop,
        }
    }

    fn read_done(&self) -> bool {
        self.read_done.load(Ordering::Acquire)
    }

    fn finish(self) -> ProbeTimes {
        self.stop.store(true, Ordering::Relaxed);
        self.times.lock().map(|times| *times).unwrap_or_default()
    }
}

struct Tools {
    weed: PathBuf,
    s5cmd: PathBuf,
    rclone: PathBuf,
    aws: PathBuf,
}

struct Bench<'a> {
    args: &'a ShipArgs,
    runtime: &'a tokio::runtime::Runtime,
    tools: Tools,
    scratch: PathBuf,
    core: PathBuf,
    core_size: u64,
    core_sha256: String,
    core_name: String,
    ticks: f64,
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

impl Bench<'_> {
    fn measure(
        &self,
        server: &Seaweed,
        contender: Contender,
        tag: &str,
        perf: Option<&Path>,
    ) -> anyhow::Result<Run> {
        match contender.compression() {
            Some(compression) => self.measure_watcher(server, compression, tag, perf),
            None => self.measure_peer(server, contender, tag),
        }
    }

    fn measure_watcher(
        &self,
        server: &Seaweed,
        compression: &str,
        tag: &str,
        perf: Option<&Path>,
    ) -> anyhow::Result<Run> {
        let dir = self.scratch.join(format!("watcher-{tag}"));
        let app = dir.join("root/bench/core-pod/app");
        std::fs::create_dir_all(&app)?;
        let store_dir = format!("ship-{tag}");
        let config = dir.join("config.yaml");
        let mut yaml = server.config_yaml(&store_dir, compression);
        for pair in &self.args.storage_settings {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--storage-setting {pair:?} is not KEY=VALUE"))?;
            yaml.push_str(&format!("  {key}: {value}\n"));
        }
        std::fs::write(&config, yaml)?;

        let mut command = match perf {
            Some(data) => {
                let mut command = Command::new("perf");
                command
                    .args(["record", "-e", "cpu-clock", "-g", "-o"])
                    .arg(data)
                    .arg("--")
                    .arg(&self.args.coredog);
                command
            }
            None => Command::new(&self.args.coredog),
        };
        command
            .arg("watcher")
            .arg("--config")
            .arg(&config)
            .arg("--dir")
            .arg(dir.join("root"))
            .args(["--listen", "127.0.0.1:0", "--node-name", "bench"])
            .env("RUST_LOG", "info")
            .env_remove("COREDOG_LOG_FORMAT")
            .env_remove("COREDOG_CONFIG")
            .env_remove("KUBECONFIG");
        for pair in &self.args.watcher_env {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--watcher-env {pair:?} is not KEY=VALUE"))?;
            command.env(key, value);
        }
        let mut watcher = Logged::start(
            &mut command,
            "watching for core files",
            Duration::from_secs(60),
        )?;
        let pid = match perf {
            Some(_) => child_named(watcher.pid(), "coredog").context("no watcher under perf")?,
            None => watcher.pid(),
        };
        let store = server.store()?;
        let prefix = format!("{}/", store_prefix(&store_dir));

        sync_disks();
        let client_cpu = cpu_seconds(pid, self.ticks);
        let mark = CpuMark::take(server.pid(), self.ticks);
        let core_path = app.join(&self.core_name);
        let mut probe = None;
        let closed = write_copy(&self.core, &core_path, || {
            probe = Some(IoProbe::start(pid, self.core_size));
        })?;
        let (t0, t0_wall) = (closed.at, closed.wall);
        let probe = probe.context("no probe")?;
        let t0_unix = unix_seconds(t0_wall);

        let record_key = loop {
            std::thread::sleep(if probe.read_done() {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(100)
            });
            let page = self.runtime.block_on(store.list_page(&prefix, None))?;
            if let Some(record) = page.objects.iter().find(|o| o.key.ends_with(".json")) {
                break record.key.clone();
            }
            if t0.elapsed() > UPLOAD_TIMEOUT {
                watcher.pump();
                bail!(
                    "the watcher did not store the core; last lines:\n{}",
                    watcher.tail()
                );
            }
        };
        let durable = t0.elapsed();
        let client_cpu = cpu_seconds(pid, self.ticks) - client_cpu;
        let (server_cpu, other_cpu) = mark.since(server.pid(), self.ticks, client_cpu);
        let peak_rss = peak_rss_mib(pid).unwrap_or_default();
        let times = probe.finish();
        let (_, uploaded) = watcher.wait_for("uploaded corefile", Duration::from_secs(10))?;
        let (capture_at, capture) = watcher
            .find("capture a file:")
            .cloned()
            .context("no `capture a file` line")?;

        let record = self.runtime.block_on(store.get_bytes(&record_key))?;
        let record = DumpRecord::from_json(&record).context("the record does not parse")?;
        if record.sha256 != self.core_sha256 || record.size != self.core_size {
            bail!(
                "the record says size {} sha256 {}, the core is {} {}",
                record.size,
                record.sha256,
                self.core_size,
                self.core_sha256
            );
        }
        let stored = self.runtime.block_on(store.head(&record.key))?;
        if stored.map(|object| object.size) != Some(record.stored_size) {
            bail!("the stored core's size differs from its record");
        }
        if logfmt_value(&uploaded, "stored") != Some(&record.stored_size.to_string()) {
            bail!("the `uploaded corefile` line does not match the record: {uploaded}");
        }

        match perf {
            // perf finishes writing its data once the watcher it runs has exited.
            Some(_) => {
                signal(pid, "INT");
                let _ = watcher.server.0.wait();
            }
            None => {
                signal(pid, "TERM");
                let deadline = Instant::now() + Duration::from_secs(10);
                while watcher.server.0.try_wait()?.is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Run {
            wall: durable.as_secs_f64(),
            durable_by_log: log_time(&uploaded).map(|at| at - t0_unix),
            capture_ms: log_time(&capture).map(|at| (at - t0_unix) * 1e3),
            capture_arrival_ms: Some(ms(t0, capture_at)),
            first_read_ms: times.first_read.map(|at| ms(t0, at)),
            first_part_ms: times.first_part.map(|at| ms(t0, at)),
            read_done: times.read_done.map(|at| ms(t0, at) / 1e3),
            stored_bytes: record.stored_size,
            client_cpu,
            server_cpu,
            other_cpu,
            peak_rss_mib: peak_rss,
            close_ms: ms(closed.started, closed.at),
            taken_before_close: capture_at < closed.started,
        })
    }

    fn measure_peer(
        &self,
        server: &Seaweed,
        contender: Contender,
        tag: &str,
    ) -> anyhow::Result<Run> {
        let dir = self.scratch.join(format!("peer-{tag}"));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(&self.core_name);
        let key = format!("peers/{tag}/{}", self.core_name);
        let endpoint = server.endpoint();
        let mut command = match contender {
            Contender::S5cmd => {
                let mut command = Command::new(&self.tools.s5cmd);
                command
                    .args(["--endpoint-url", &endpoint, "cp"])
                    .arg(&file)
                    .arg(format!("s3://{BUCKET}/{key}"));
                command
            }
            Contender::Rclone => {
                let mut command = Command::new(&self.tools.rclone);
                command
                    .arg("copyto")
                    .arg(&file)
                    .arg(format!("bench:{BUCKET}/{key}"))
                    .env("RCLONE_CONFIG", dir.join("rclone.conf"))
                    .env("RCLONE_CONFIG_BENCH_TYPE", "s3")
                    .env("RCLONE_CONFIG_BENCH_PROVIDER", "Other")
                    .env("RCLONE_CONFIG_BENCH_ENDPOINT", &endpoint)
                    .env("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", ACCESS_KEY)
                    .env("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", SECRET_KEY)
                    .env("RCLONE_CONFIG_BENCH_REGION", REGION);
                command
            }
            Contender::Aws => {
                let mut command = Command::new(&self.tools.aws);
                command
                    .args(["--endpoint-url", &endpoint, "s3", "cp"])
                    .arg(&file)
                    .arg(format!("s3://{BUCKET}/{key}"));
                command
            }
            Contender::WatcherZstd | Contender::WatcherOff => unreachable!("not a peer"),
        };
        // The same credentials for every tool, and nothing from this machine's profiles.
        command
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_CONFIG_FILE", dir.join("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("aws-credentials"))
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("stderr.log"))?);

        sync_disks();
        let children_cpu = children_cpu_seconds(self.ticks);
        let mark = CpuMark::take(server.pid(), self.ticks);
        let closed = write_copy(&self.core, &file, || {})?;
        let t0 = closed.at;
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        let pid = child.id();
        let peak = Arc::new(Mutex::new(0.0f64));
        let done = Arc::new(AtomicBool::new(false));
        {
            let (peak, done) = (peak.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let (Some(now), Ok(mut peak)) = (peak_rss_mib(pid), peak.lock()) {
                        *peak = peak.max(now);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        let status = child.wait()?;
        let wall = t0.elapsed();
        done.store(true, Ordering::Relaxed);
        let client_cpu = children_cpu_seconds(self.ticks) - children_cpu;
        let (server_cpu, other_cpu) = mark.since(server.pid(), self.ticks, client_cpu);
        if !status.success() {
            let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            bail!("{} failed ({status}):\n{stderr}", contender.label());
        }
        let stored = self
            .runtime
            .block_on(server.store()?.head(&key))?
            .context("the peer's object is missing")?;
        if stored.size != self.core_size {
            bail!(
                "{} stored {} bytes of {}",
                contender.label(),
                stored.size,
                self.core_size
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        let peak = peak.lock().map(|peak| *peak).unwrap_or_default();
        Ok(Run {
            wall: wall.as_secs_f64(),
            stored_bytes: stored.size,
            client_cpu,
            server_cpu,
            other_cpu,
            peak_rss_mib: peak,
            close_ms: ms(closed.started, closed.at),
            ..Run::default()
        })
    }
}

/// The first child of `parent` whose command is `name`.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let comm = stat
                .find('(')
                .zip(stat.rfind(')'))
                .map(|(open, close)| &stat[open + 1..close]);
            let ppid = stat_fields(&pid.to_string()).and_then(|fields| fields.get(1).copied());
            if comm == Some(name) && ppid == Some(u64::from(parent)) {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The run.

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

fn median_of(runs: &[Run], field: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
    median(runs.iter().filter_map(field).collect())
}

/// One contender's medians over the rounds (the peak RSS is the largest).
struct Summary {
    wall: f64,
    capture_ms: f64,
    stored: u64,
    cpu: f64,
    server_cpu: f64,
    other_cpu: f64,
    peak_rss_mib: f64,
}

impl Summary {
    fn of(runs: &[Run]) -> Option<Self> {
        Some(Self {
            wall: median_of(runs, |run| Some(run.wall))?,
            capture_ms: median_of(runs, |run| run.capture_ms).unwrap_or_default(),
            stored: median_of(runs, |run| Some(run.stored_bytes as f64))? as u64,
            cpu: median_of(runs, |run| Some(run.client_cpu))?,
            server_cpu: median_of(runs, |run| Some(run.server_cpu))?,
            other_cpu: median_of(runs, |run| Some(run.other_cpu))?,
            peak_rss_mib: runs.iter().map(|run| run.peak_rss_mib).fold(0.0, f64::max),
        })
    }
}

fn tool_version(command: &Path, args: &[&str]) -> String {
    Command::new(command)
        .args(args)
        .output()
        .ok()
        .map(|out| {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| round_to(kib / 1024.0 / 1024.0, 1));
    json!({
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": model,
        "memory_gib": memory_gib,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

/// Takes a core of a fresh heap holder with gcore.
fn make_core(scratch: &Path, size_gib: f64) -> anyhow::Result<(PathBuf, String)> {
    let size_mib = (size_gib * 1024.0).round() as u64;
    let started = Instant::now();
    let mut holder = Command::new(std::env::current_exe()?)
        .args(["heap-holder", "--size-mib", &size_mib.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the heap holder")?;
    let mut ready = String::new();
    BufReader::new(holder.stdout.take().context("no stdout")?).read_line(&mut ready)?;
    let pid: u32 = logfmt_value(&format!(" {}", ready.trim()), "pid")
        .and_then(|pid| pid.parse().ok())
        .with_context(|| format!("the heap holder said {ready:?}"))?;
    let filled = started.elapsed();
    let prefix = scratch.join("gcore");
    let output = Command::new("gcore")
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()
        .context("cannot run gcore (gdb)")?;
    drop(holder.stdin.take());
    let _ = holder.wait();
    if !output.status.success() {
        bail!(
            "gcore failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let core = scratch.join(format!("gcore.{pid}"));
    eprintln!(
        "core: heap of {size_mib} MiB filled in {:.1}s, gcore took {:.1}s more",
        filled.as_secs_f64(),
        (started.elapsed() - filled).as_secs_f64()
    );
    // The name the kernel would give it with core_pattern core.%e.%p.%h.%t.
    let name = format!(
        "core.coredog-bench.{pid}.bench-node.{}",
        unix_seconds(SystemTime::now()) as u64
    );
    Ok((core, name))
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let output = Command::new("sha256sum").arg(path).output()?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned)
        .context("sha256sum said nothing")
}

fn perf_top(data: &Path) -> String {
    Command::new("perf")
        .args(["report", "--no-children", "--sort", "dso,symbol", "--stdio"])
        .args(["-g", "none", "--percent-limit", "2", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|line| line.trim_start().starts_with(|c: char| c.is_ascii_digit()))
                .take(15)
                .map(|line| {
                    // `percent dso [.] symbol`, without perf's padding.
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let symbol = fields.get(3..).map_or(String::new(), |rest| {
                        rest.iter()
                            .take_while(|field| **field != "-")
                            .copied()
                            .collect::<Vec<_>>()
                            .join(" ")
                    });
                    format!(
                        "  {:>7} {:<18} {symbol}",
                        fields.first().copied().unwrap_or_default(),
                        fields.get(1).copied().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

pub fn run(args: &ShipArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let tools = Tools {
        weed: args.tools_bin.join("weed"),
        s5cmd: args.bench_tools_bin.join("s5cmd"),
        rclone: args.bench_tools_bin.join("rclone"),
        aws: args.bench_tools_bin.join("aws"),
    };
    for (tool, installer) in [
        (&tools.weed, ".ci/tools"),
        (&tools.s5cmd, "bench/tools"),
        (&tools.rclone, "bench/tools"),
        (&tools.aws, "bench/tools"),
        (&args.coredog, "cargo build --release -p coredog"),
    ] {
        if !tool.exists() {
            bail!("{} is missing: run `{installer}`", tool.display());
        }
    }
    if args.rounds == 0 || args.size_gib <= 0.0 {
        bail!("--rounds and --size-gib must be positive");
    }
    let (scratch, owned_scratch) = match &args.scratch {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("coredog-bench-ship-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&scratch)?;
    let result = run_in(args, runtime, tools, &scratch);
    if owned_scratch {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

fn run_in(
    args: &ShipArgs,
    runtime: &tokio::runtime::Runtime,
    tools: Tools,
    scratch: &Path,
) -> anyhow::Result<()> {
    let (core, core_name) = make_core(scratch, args.size_gib)?;
    let core_size = std::fs::metadata(&core)?.len();
    let bench = Bench {
        args,
        runtime,
        core_sha256: sha256_of(&core)?,
        tools,
        scratch: scratch.to_owned(),
        core,
        core_size,
        core_name,
        ticks: clock_ticks(),
    };
    let defaults = Config::from_yaml(&format!(
        "StorageConfig:\n  S3Bucket: {BUCKET}\n  S3Endpoint: http://127.0.0.1:1\n"
    ))?;
    let versions = json!({
        "weed": tool_version(&bench.tools.weed, &["version"]),
        "s5cmd": tool_version(&bench.tools.s5cmd, &["version"]),
        "rclone": tool_version(&bench.tools.rclone, &["version"]),
        "aws": tool_version(&bench.tools.aws, &["--version"]),
    });
    let machine = machine();
    let date = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();
    let gib = core_size as f64 / (1024.0 * MIB as f64);

    println!(
        "ship: a {gib:.2} GiB core (gcore of a {} GiB heap) from close-write to durable in SeaweedFS ({}) on loopback, SigV4",
        args.size_gib, versions["weed"]
    );
    println!(
        "{} rounds, a fresh server each, contenders in rotated order; medians. {date}; {} CPUs ({}), {} GiB",
        args.rounds, machine["cpus"], machine["cpu"], machine["memory_gib"]
    );
    println!(
        "watcher defaults: partSizeMiB {}, partsInFlight {}, compressionLevel {}, uploadConcurrency {}",
        defaults.storage.part_size_mib,
        defaults.storage.parts_in_flight,
        defaults.storage.compression_level,
        defaults.watcher.upload_concurrency
    );
    if !args.storage_settings.is_empty() || !args.watcher_env.is_empty() {
        println!(
            "watcher overrides (an experiment, not the defaults the goals are about): {} {}",
            args.storage_settings.join(" "),
            args.watcher_env.join(" ")
        );
    }
    println!(
        "peers (their defaults): s5cmd {} (50 MiB parts, 5 at once), rclone {} (5 MiB chunks, 4 at once, MD5 of the file first), {} (8 MiB parts, 10 at once)",
        versions["s5cmd"].as_str().unwrap_or_default(),
        versions["rclone"].as_str().unwrap_or_default(),
        versions["aws"].as_str().unwrap_or_default()
    );
    println!(
        "every contender reads the core from the page cache: a fresh copy written here and closed at t0"
    );

    let selected: Vec<usize> = (0..CONTENDERS.len())
        .filter(|at| args.contenders.contains(&CONTENDERS[*at]))
        .collect();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); CONTENDERS.len()];
    for round in 0..args.rounds {
        let server = Seaweed::start(&bench.tools.weed, scratch.join(format!("s3-{round}")))?;
        // Warm the server (first volumes, first connections) with an upload nobody is timed on.
        bench.measure_peer(&server, Contender::S5cmd, &format!("warm-{round}"))?;
        for step in 0..selected.len() {
            let at = selected[(round + step) % selected.len()];
            let contender = CONTENDERS[at];
            let mut attempt = 0;
            let run = loop {
                attempt += 1;
                let tag = format!("{}-r{}-{attempt}", contender.slug(), round + 1);
                let run = bench.measure(&server, contender, &tag, None)?;
                if !run.taken_before_close || attempt == 3 {
                    break run;
                }
                eprintln!(
                    "round {}/{}: {} took the core before its close (a write stalled past the settle time); measuring again",
                    round + 1,
                    args.rounds,
                    contender.label()
                );
            };
            if run.taken_before_close {
                bail!(
                    "{} kept taking the core before its close",
                    contender.label()
                );
            }
            eprintln!(
                "round {}/{}: {:<14} {:>7.2}s  close {:.2} ms, cpu {:.2}s, server cpu {:.2}s, other cpu {:.2}s{}",
                round + 1,
                args.rounds,
                contender.label(),
                run.wall,
                run.close_ms,
                run.client_cpu,
                run.server_cpu,
                run.other_cpu,
                run.capture_ms
                    .map(|capture| format!(
                        ", capture {capture:.0} ms, first part {:.0} ms, read done {:.2}s, peak rss {:.1} MiB",
                        run.first_part_ms.unwrap_or_default(),
                        run.read_done.unwrap_or_default(),
                        run.peak_rss_mib
                    ))
                    .unwrap_or_default()
            );
            runs[at].push(run);
        }
    }

    let summaries: Vec<Option<Summary>> = runs.iter().map(|runs| Summary::of(runs)).collect();
    let s5cmd = summaries[2].as_ref().map(|s5cmd| s5cmd.wall);
    let versus = |wall: f64| s5cmd.map(|s5cmd| wall / s5cmd);
    println!();
    println!(
        "{:<14} {:>8} {:>8} {:>11} {:>6} {:>7} {:>8} {:>9} {:>9}",
        "contender",
        "wall s",
        "x s5cmd",
        "stored MiB",
        "ratio",
        "cpu s",
        "srv cpu",
        "other cpu",
        "peak MiB"
    );
    for (at, contender) in CONTENDERS.iter().enumerate() {
        let Some(summary) = &summaries[at] else {
            continue;
        };
        println!(
            "{:<14} {:>8.2} {:>8} {:>11.1} {:>6.2} {:>7.2} {:>8.2} {:>9.2} {:>9.1}",
            contender.label(),
            summary.wall,
            versus(summary.wall).map_or("-".to_owned(), |ratio| format!("{ratio:.2}")),
            summary.stored as f64 / MIB as f64,
            core_size as f64 / summary.stored.max(1) as f64,
            summary.cpu,
            summary.server_cpu,
            summary.other_cpu,
            summary.peak_rss_mib
        );
    }
    println!(
        "(medians; wall: close → durable; cpu: the contender's user+sys; srv cpu: SeaweedFS's meanwhile; other cpu: anything else on the machine meanwhile, i.e. noise; peak: the largest VmHWM of the rounds, sampled every 20 ms for peers)"
    );

    let mut watcher_json = serde_json::Map::new();
    let mut goals = serde_json::Map::new();
    for (at, mode, limit) in [(0, "zstd", 0.5), (1, "off", 1.1)] {
        let Some(summary) = &summaries[at] else {
            continue;
        };
        let med = |field: fn(&Run) -> Option<f64>| median_of(&runs[at], field);
        println!(
            "coredog {mode:<4}: close() took {:.2} ms; close → `capture a file` {:.0} ms by its log time ({:.1} ms by arrival), → first MiB read {:.1} ms, → first part on the wire {:.1} ms; all read at {:.2}s; durable {:.2}s by the store check, {:.2}s by its log",
            med(|run| Some(run.close_ms)).unwrap_or_default(),
            summary.capture_ms,
            med(|run| run.capture_arrival_ms).unwrap_or_default(),
            med(|run| run.first_read_ms).unwrap_or_default(),
            med(|run| run.first_part_ms).unwrap_or_default(),
            med(|run| run.read_done).unwrap_or_default(),
            summary.wall,
            med(|run| run.durable_by_log).unwrap_or_default()
        );
        watcher_json.insert(
            mode.to_owned(),
            json!({
                "wall_s": round_to(summary.wall, 3),
                "durable_by_log_s": med(|run| run.durable_by_log).map(|v| round_to(v, 3)),
                "close_call_ms": med(|run| Some(run.close_ms)).map(|v| round_to(v, 2)),
                "close_to_capture_ms": round_to(summary.capture_ms, 1),
                "close_to_capture_arrival_ms": med(|run| run.capture_arrival_ms).map(|v| round_to(v, 2)),
                "close_to_first_read_ms": med(|run| run.first_read_ms).map(|v| round_to(v, 2)),
                "close_to_first_part_ms": med(|run| run.first_part_ms).map(|v| round_to(v, 2)),
                "read_done_s": med(|run| run.read_done).map(|v| round_to(v, 3)),
                "peak_rss_mib": round_to(summary.peak_rss_mib, 1),
                "stored_bytes": summary.stored,
                "compression_ratio": round_to(core_size as f64 / summary.stored.max(1) as f64, 3),
                "cpu_s": round_to(summary.cpu, 2),
                "server_cpu_s": round_to(summary.server_cpu, 2),
                "other_cpu_s": round_to(summary.other_cpu, 2),
            }),
        );
        if let Some(ratio) = versus(summary.wall) {
            goals.insert(
                format!("wall_{mode}_le_{limit}x_s5cmd"),
                json!({"value": round_to(ratio, 3), "met": ratio <= limit}),
            );
        }
        goals.insert(
            format!("peak_rss_{mode}_le_64_mib"),
            json!({"value": round_to(summary.peak_rss_mib, 1), "met": summary.peak_rss_mib <= 64.0}),
        );
        goals.insert(
            format!("close_to_capture_{mode}_le_50_ms"),
            json!({"value": round_to(summary.capture_ms, 1), "met": summary.capture_ms <= 50.0}),
        );
    }
    println!("goals:");
    for (name, goal) in &goals {
        println!(
            "  {:<32} {:>8} {}",
            name,
            goal["value"],
            if goal["met"] == true { "met" } else { "MISSED" }
        );
    }

    let mut walls = serde_json::Map::new();
    let mut ratios = serde_json::Map::new();
    let mut peers = serde_json::Map::new();
    for (at, contender) in CONTENDERS.iter().enumerate() {
        let Some(summary) = &summaries[at] else {
            continue;
        };
        walls.insert(
            contender.slug().to_owned(),
            json!(round_to(summary.wall, 3)),
        );
        if let Some(ratio) = versus(summary.wall) {
            ratios.insert(contender.slug().to_owned(), json!(round_to(ratio, 3)));
        }
        if contender.compression().is_none() {
            peers.insert(
                contender.slug().to_owned(),
                json!({
                    "cpu_s": round_to(summary.cpu, 2),
                    "server_cpu_s": round_to(summary.server_cpu, 2),
                    "other_cpu_s": round_to(summary.other_cpu, 2),
                    "peak_rss_mib": round_to(summary.peak_rss_mib, 1),
                }),
            );
        }
    }
    let summary = json!({
        "benchmark": "ship",
        "date": date,
        "machine": machine,
        "versions": versions,
        "rounds": args.rounds,
        "heap_gib": args.size_gib,
        "core_bytes": core_size,
        "watcher_env": args.watcher_env,
        "storage_settings": args.storage_settings,
        "watcher_defaults": {
            "part_size_mib": defaults.storage.part_size_mib,
            "parts_in_flight": defaults.storage.parts_in_flight,
            "compression_level": defaults.storage.compression_level,
            "upload_concurrency": defaults.watcher.upload_concurrency,
        },
        "wall_s": walls,
        "ratio_vs_s5cmd": ratios,
        "watcher": watcher_json,
        "peers": peers,
        "goals": goals,
    });
    println!("{}", serde_json::to_string(&summary)?);

    if let Some(dir) = &args.perf {
        std::fs::create_dir_all(dir)?;
        let server = Seaweed::start(&bench.tools.weed, scratch.join("s3-perf"))?;
        bench.measure_peer(&server, Contender::S5cmd, "warm-perf")?;
        for contender in [Contender::WatcherZstd, Contender::WatcherOff] {
            let mode = contender.compression().unwrap_or_default();
            let data = std::fs::canonicalize(dir)?.join(format!("watcher-{mode}.data"));
            let run = bench.measure(
                &server,
                contender,
                &format!("perf-{mode}"),
                Some(data.as_path()),
            )?;
            println!(
                "perf {mode}: {:.2}s under perf (cpu {:.2}s); top of `perf report --no-children --sort dso,symbol -i {}`:\n{}",
                run.wall,
                run.client_cpu,
                data.display(),
                perf_top(&data)
            );
        }
    }
    Ok(())
}
