//! `list-fetch`: `kubectl coredog list` over 10,000 dumps and `kubectl coredog fetch` of a 1 GiB
//! dump from SeaweedFS, against `s5cmd ls` and `s5cmd cp` on the same bucket in the same run.
//!
//! - The bucket: 10,000 small dumps (a few KiB of core, zstd), their id index entries and
//!   records, laid out as the watcher writes them (`CoreKey::to_key`, `CoreKey::id_index_key`,
//!   `CoreKey::record_key`, `DumpRecord` JSON) over
//!   20 namespaces x 25 pods, plus one ~1 GiB core-like dump stored twice: zstd level 1 as the
//!   watcher compresses (`.core.zst`) and uncompressed (`.core`), each with a record stating its
//!   size, stored size and SHA-256, both uploaded through `coredog-store` as the watcher does.
//! - list: `kubectl-coredog list -A` (the default table: the newest 50, with their records) and
//!   `list -A --limit 0 -o json` (every record read), against
//!   `s5cmd ls 's3://bucket/corefiles/*'` (every object listed, nothing read).
//! - fetch: `kubectl-coredog fetch ID -o FILE` (the ID looked up in the id index, range reads,
//!   zstd decompression, SHA-256, sparse write, rename) against `s5cmd cp` of the stored object
//!   (a copy); for zstd also `s5cmd cat | zstd -d -o FILE` (the same file, unverified), and
//!   uncompressed also `s5cmd cp` then `openssl dgst -sha256 FILE` (the copy checked as fetch
//!   checks it; OpenSSL's SHA-256 uses the CPU's SHA extensions, coreutils' `sha256sum` is 8x
//!   slower here).
//! - The server: `weed mini` on loopback with SigV4 enforced, as tests/src/lib.rs starts it.
//! - Rounds alternate the contenders' order; the median round (by wall time) is reported. Each
//!   command starts after `sync`, with no output file in place.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use coredog_core::config::Config;
use coredog_core::object_key::{Compression, CoreKey, DumpId};
use coredog_core::record::{DumpRecord, SCHEMA_VERSION};
use coredog_store::{Store, UploadOptions, part_channel};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::measure::{
    ACCESS_KEY, BUCKET, REGION, SECRET_KEY, Seaweed, children_cpu_seconds, clock_ticks,
    cpu_seconds, peak_rss_mib, round_to,
};
use crate::throttle::ThrottlingProxy;

const MIB: u64 = 1024 * 1024;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const STORE_DIR: &str = "corefiles";
/// Rows `kubectl coredog list` shows by default.
const DEFAULT_LIMIT: usize = 50;
/// Distinct small cores the 10,000 small dumps are made of.
const SMALL_TEMPLATES: usize = 16;
/// Where the big dumps are.
const BIG_NAMESPACE: &str = "checkout";
const BIG_POD: &str = "checkout-api-7d9f6c5b8d-x2x4z";

#[derive(clap::Args)]
pub struct ListFetchArgs {
    /// The `kubectl-coredog` binary to measure.
    #[arg(long, default_value = "target/release/kubectl-coredog")]
    kubectl_coredog: PathBuf,
    /// Where `.ci/tools` installed `weed`.
    #[arg(long, default_value = ".cache/tools/bin")]
    tools_bin: PathBuf,
    /// Where `bench/tools` installed s5cmd.
    #[arg(long, default_value = ".cache/bench-tools/bin")]
    bench_tools_bin: PathBuf,
    /// Small dumps in the bucket (the big ones come on top).
    #[arg(long, default_value_t = 10_000)]
    dumps: usize,
    /// Namespaces the small dumps are spread over.
    #[arg(long, default_value_t = 20)]
    namespaces: usize,
    /// Pods per namespace.
    #[arg(long, default_value_t = 25)]
    pods: usize,
    /// Size of the big core, in GiB.
    #[arg(long, default_value_t = 1.0)]
    size_gib: f64,
    /// Alternating rounds; the median round is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Uploads at once while filling the bucket.
    #[arg(long, default_value_t = 32)]
    upload_concurrency: usize,
    /// After the measured rounds, profile one more run of each plugin command with
    /// `perf record -e cpu-clock -g` (and SeaweedFS meanwhile), writing DIR/<command>.data and
    /// DIR/<command>-weed.data, and print their top symbols (not in the figures).
    #[arg(long, value_name = "DIR")]
    perf: Option<PathBuf>,
    /// Serve the bucket to the commands measured through a proxy that answers each
    /// connection at this many MB/s, as a store does from afar or by its own policy (the
    /// bucket is filled directly).
    #[arg(long, value_name = "MB_PER_S", value_parser = positive_rate)]
    connection_rate: Option<f64>,
    /// Another build of `kubectl-coredog` (the one before a change, say), run for both
    /// fetches in the same rounds as the rest.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Scratch directory (default: a new directory under the system temp dir, removed at the end).
    #[arg(long)]
    scratch: Option<PathBuf>,
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a positive number of MB/s")),
    }
}

// ---------------------------------------------------------------------------------------------
// Core-like content.

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

const PAGE: usize = 4096;
/// One PT_LOAD segment of the big core.
const SEGMENT: usize = 4 << 20;
const SEGMENT_BASE: u64 = 0x7f3a_0000_0000;

#[derive(Clone, Copy)]
enum Kind {
    /// Pages mapped and all zero.
    Zero,
    /// Slab pages: a header and a few small objects.
    Sparse,
    /// Arrays of 64-byte records: vtable, next pointer, id, state, timestamp, name.
    Records,
    /// Log lines, JSON, HTTP headers, environment strings.
    Text,
    /// Compressed or encrypted payloads.
    Random,
    /// Pointer arrays and hash-table buckets.
    Pointers,
}

/// Percent of the core per kind: mostly zeros, some structure, ~12% random.
const MIX: [(Kind, usize); 6] = [
    (Kind::Zero, 44),
    (Kind::Sparse, 12),
    (Kind::Records, 14),
    (Kind::Text, 10),
    (Kind::Random, 12),
    (Kind::Pointers, 8),
];

const WORDS: [&str; 16] = [
    "session", "request", "worker", "cache", "buffer", "upstream", "tenant", "order", "invoice",
    "payment", "account", "shard", "replica", "queue", "message", "stream",
];

struct Content {
    rng: Rng,
    serial: u64,
}

impl Content {
    fn pointer(&mut self) -> u64 {
        SEGMENT_BASE + (self.rng.below(256 * SEGMENT) & !0xF) as u64
    }

    fn kind(&mut self) -> Kind {
        let mut pick = self.rng.below(100);
        for (kind, weight) in MIX {
            if pick < weight {
                return kind;
            }
            pick -= weight;
        }
        Kind::Zero
    }

    /// Fills `segment` with runs of 1 to 16 pages of one kind each.
    fn fill(&mut self, segment: &mut [u8]) {
        let mut at = 0;
        while at < segment.len() {
            let length = (PAGE * (1 + self.rng.below(16))).min(segment.len() - at);
            let kind = self.kind();
            self.fill_kind(kind, &mut segment[at..at + length]);
            at += length;
        }
    }

    fn fill_kind(&mut self, kind: Kind, run: &mut [u8]) {
        match kind {
            Kind::Zero => run.fill(0),
            Kind::Sparse => {
                run.fill(0);
                for page in run.chunks_mut(PAGE) {
                    if page.len() < 128 {
                        continue;
                    }
                    let next = self.pointer();
                    page[..8].copy_from_slice(&0x5AB1_0C00_0000_0001u64.to_le_bytes());
                    page[8..16].copy_from_slice(&next.to_le_bytes());
                    for _ in 0..self.rng.below(4) {
                        let at = 64 + (self.rng.below(page.len() - 96) & !0xF);
                        let value = self.rng.next();
                        page[at..at + 8].copy_from_slice(&value.to_le_bytes());
                        let next = self.pointer();
                        page[at + 8..at + 16].copy_from_slice(&next.to_le_bytes());
                    }
                }
            }
            Kind::Records => {
                let vtable = 0x5566_1a2b_0000u64 + 0x40 * self.rng.below(6) as u64;
                for record in run.chunks_mut(64) {
                    let mut bytes = [0u8; 64];
                    self.serial += 1;
                    let name = WORDS[self.rng.below(WORDS.len())].as_bytes();
                    let next = if self.rng.below(8) == 0 {
                        0
                    } else {
                        self.pointer()
                    };
                    bytes[..8].copy_from_slice(&vtable.to_le_bytes());
                    bytes[8..16].copy_from_slice(&next.to_le_bytes());
                    bytes[16..24].copy_from_slice(&self.serial.to_le_bytes());
                    bytes[24..28].copy_from_slice(&(self.rng.below(5) as u32).to_le_bytes());
                    let stamp = 1_764_237_612_000_000u64 + self.serial * 1_000;
                    bytes[32..40].copy_from_slice(&stamp.to_le_bytes());
                    bytes[40..40 + name.len()].copy_from_slice(name);
                    let take = record.len();
                    record.copy_from_slice(&bytes[..take]);
                }
            }
            Kind::Text => {
                let mut line = String::with_capacity(256);
                let mut at = 0;
                while at < run.len() {
                    line.clear();
                    self.serial += 1;
                    let id = self.serial;
                    let word = WORDS[self.rng.below(WORDS.len())];
                    let _ = match self.rng.below(3) {
                        0 => writeln!(
                            line,
                            "time=2026-11-27T09:{:02}:{:02}.{:03}Z level=info msg=\"request handled\" path=/api/v1/{word}s/{id} status={} duration_ms={} request_id={:016x}",
                            (id / 60_000) % 60,
                            (id / 1_000) % 60,
                            id % 1_000,
                            [200, 200, 201, 404, 500][self.rng.below(5)],
                            self.rng.below(900),
                            self.rng.next()
                        ),
                        1 => writeln!(
                            line,
                            "{{\"id\":{id},\"kind\":\"{word}\",\"owner\":\"user-{}@example.com\",\"active\":true,\"score\":{}}}",
                            self.rng.below(5_000),
                            self.rng.below(100)
                        ),
                        _ => write!(
                            line,
                            "/var/lib/app/{word}/{:08}.dat\0{}_SERVICE_HOST=10.96.{}.{}\0",
                            id % 100_000_000,
                            word.to_uppercase(),
                            self.rng.below(256),
                            self.rng.below(256)
                        ),
                    };
                    let take = line.len().min(run.len() - at);
                    run[at..at + take].copy_from_slice(&line.as_bytes()[..take]);
                    at += take;
                }
            }
            Kind::Random => {
                for word in run.chunks_mut(8) {
                    let value = self.rng.next().to_le_bytes();
                    let take = word.len();
                    word.copy_from_slice(&value[..take]);
                }
            }
            Kind::Pointers => {
                for slot in run.chunks_mut(8) {
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
}

/// An ELF64 core header (`ET_CORE`, x86-64) with one PT_NOTE and `loads` PT_LOAD segments of
/// `load_size` bytes each, and the note, padded to the page where the first PT_LOAD's bytes
/// start.
fn core_header(loads: usize, load_size: usize, rng: &mut Rng) -> Vec<u8> {
    let phnum = 1 + loads;
    let headers = 64 + 56 * phnum;
    let note_size = 2 * PAGE;
    let first_load = (headers + note_size).div_ceil(PAGE) * PAGE;
    let mut out = Vec::with_capacity(first_load);
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out.extend_from_slice(&u16::try_from(phnum).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    let mut phdr = |kind: u32, flags: u32, offset: usize, vaddr: u64, size: usize| {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        out.extend_from_slice(&vaddr.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&(size as u64).to_le_bytes());
        out.extend_from_slice(&(size as u64).to_le_bytes());
        out.extend_from_slice(&(if kind == 1 { PAGE as u64 } else { 1 }).to_le_bytes());
    };
    phdr(4, 0, headers, 0, note_size);
    for load in 0..loads {
        phdr(
            1,
            6,
            first_load + load * load_size,
            SEGMENT_BASE + (load * load_size) as u64,
            load_size,
        );
    }
    // The note: an NT_PRSTATUS-sized block of registers and the process's command line.
    let note_start = out.len();
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&336u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(b"CORE\0\0\0\0");
    out.extend_from_slice(&11u32.to_le_bytes());
    for _ in 0..41 {
        let value = rng.next() & 0x0000_7fff_ffff_ffff;
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(b"/usr/local/bin/checkout-api --listen :8080 --config /etc/app.yaml\0");
    out.resize(note_start + note_size, 0);
    out.resize(first_load, 0);
    out
}

/// Writes a core-like file of about `size` bytes; returns its size.
fn write_big_core(path: &Path, size: u64) -> anyhow::Result<u64> {
    let loads = usize::try_from(size.div_ceil(SEGMENT as u64))?.max(1);
    let mut content = Content {
        rng: Rng(0x00C0_2ED0_6BE4_C400),
        serial: 0,
    };
    let mut out = BufWriter::with_capacity(
        8 << 20,
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let header = core_header(loads, SEGMENT, &mut content.rng);
    out.write_all(&header)?;
    let mut segment = vec![0u8; SEGMENT];
    for _ in 0..loads {
        content.fill(&mut segment);
        out.write_all(&segment)?;
    }
    out.into_inner()
        .map_err(|err| err.into_error())?
        .sync_all()?;
    Ok(std::fs::metadata(path)?.len())
}

/// A small core: the header, one PT_LOAD of 4 to 48 KiB.
fn small_core(seed: u64) -> Vec<u8> {
    let mut content = Content {
        rng: Rng(seed),
        serial: seed * 1_000_000,
    };
    let size = PAGE * (1 + content.rng.below(12));
    let mut core = core_header(1, size, &mut content.rng);
    let start = core.len();
    core.resize(start + size, 0);
    content.fill(&mut core[start..]);
    core
}

// ---------------------------------------------------------------------------------------------
// Tools and processes.

fn tool_version(command: &Path, args: &[&str]) -> String {
    Command::new(command)
        .args(args)
        .stdin(Stdio::null())
        .output()
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
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("cannot run sha256sum")?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .filter(|digest| digest.len() == 64)
        .map(str::to_owned)
        .context("sha256sum said nothing")
}

/// `zstd -<level> -T<workers>`: the frame format and level the watcher writes (it uses the
/// same library with up to 4 workers).
fn zstd_compress(input: &Path, output: &Path, level: i32) -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let status = Command::new("zstd")
        .arg(format!("-{level}"))
        .arg(format!("-T{workers}"))
        .args(["-q", "-f", "-o"])
        .arg(output)
        .arg(input)
        .status()
        .context("cannot run zstd (apt-get install zstd)")?;
    if !status.success() {
        bail!("zstd failed on {}", input.display());
    }
    Ok(())
}

/// Flushes every dirty page on the machine; returns how long that took.
fn sync_disks() -> f64 {
    let started = Instant::now();
    let _ = Command::new("sync").status();
    started.elapsed().as_secs_f64()
}

/// The list-fetch bench's `StorageConfig`.
fn config_yaml(server: &Seaweed) -> String {
    server.storage_config_yaml(STORE_DIR)
}

// ---------------------------------------------------------------------------------------------
// The bucket.

const NAMESPACES: [&str; 20] = [
    "payments",
    "checkout",
    "search",
    "catalog",
    "inventory",
    "shipping",
    "identity",
    "billing",
    "analytics",
    "ads",
    "media",
    "messaging",
    "notifications",
    "orders",
    "pricing",
    "recommendations",
    "reviews",
    "gateway",
    "ledger",
    "risk",
];

const WORKLOADS: [(&str, &str); 5] = [
    ("api", "/usr/local/bin/server"),
    ("worker", "/app/bin/worker"),
    ("ingest", "/usr/bin/python3.12"),
    ("edge", "/usr/sbin/nginx"),
    ("batch", "/opt/java/bin/java"),
];

const SIGNALS: [(u32, &str); 4] = [
    (11, "SIGSEGV"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
];

/// Everything the watcher knows of one dump, from which its key and record are made.
struct DumpSpec {
    namespace: String,
    pod: String,
    container: &'static str,
    exe: &'static str,
    pid: u32,
    time: Timestamp,
    node: String,
    signal: (u32, &'static str),
    image: String,
    workload: &'static str,
}

impl DumpSpec {
    fn host_path(&self) -> String {
        format!(
            "/corefile/{}/{}/{}/core.{}.{}.{}.{}",
            self.namespace,
            self.pod,
            self.container,
            self.exe.rsplit('/').next().unwrap_or(self.exe),
            self.pid,
            self.pod,
            self.time.as_second()
        )
    }

    fn key(&self, size: u64, compression: Compression) -> CoreKey {
        CoreKey {
            store_dir: STORE_DIR.to_owned(),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            time: self.time,
            container: self.container.to_owned(),
            exe: self.exe.to_owned(),
            pid: self.pid,
            id: DumpId::derive(
                &self.node,
                &self.host_path(),
                size,
                i128::from(self.time.as_second()) * 1_000_000_000,
            ),
            compression,
        }
    }

    fn record(&self, key: &CoreKey, size: u64, stored_size: u64, sha256: &str) -> DumpRecord {
        DumpRecord {
            schema_version: SCHEMA_VERSION,
            id: key.id.clone(),
            key: key.to_key(),
            time: self.time,
            uploaded_at: Timestamp::from_second(self.time.as_second() + 2).unwrap_or(self.time),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            container: self.container.to_owned(),
            pod_uid: Some(format!(
                "{:08x}-4d2c-4f1e-9a7b-{:012x}",
                self.pid,
                self.time.as_second()
            )),
            node: self.node.clone(),
            host_ip: Some(format!("10.0.{}.{}", self.pid % 7, 10 + self.pid % 200)),
            image: Some(self.image.clone()),
            labels: [
                ("app".to_owned(), self.workload.to_owned()),
                ("team".to_owned(), self.namespace.clone()),
                ("pod-template-hash".to_owned(), "7d9f6c5b8d".to_owned()),
            ]
            .into(),
            exe: self.exe.to_owned(),
            pid: Some(self.pid),
            signal: Some(self.signal.0),
            signal_name: Some(self.signal.1.to_owned()),
            cmdline: Some(format!(
                "{} --listen :8080 --config /etc/app.yaml",
                self.exe
            )),
            uid: Some(1000),
            hostname: Some(self.pod.clone()),
            size,
            stored_size,
            sha256: sha256.to_owned(),
            compression: key.compression,
            host_path: self.host_path(),
        }
    }
}

/// One object to put.
struct Put {
    key: String,
    body: Arc<Vec<u8>>,
    content_type: &'static str,
}

/// A small core, compressed as the watcher stores it.
struct SmallTemplate {
    zst: Arc<Vec<u8>>,
    size: u64,
    sha256: String,
}

fn small_templates(dir: &Path) -> anyhow::Result<Vec<SmallTemplate>> {
    (0..SMALL_TEMPLATES)
        .map(|index| {
            let raw = dir.join(format!("small-{index}.core"));
            let zst = dir.join(format!("small-{index}.core.zst"));
            let core = small_core(index as u64 + 1);
            std::fs::write(&raw, &core)?;
            zstd_compress(&raw, &zst, 1)?;
            Ok(SmallTemplate {
                zst: Arc::new(std::fs::read(&zst)?),
                size: core.len() as u64,
                sha256: sha256_of(&raw)?,
            })
        })
        .collect()
}

/// The small dumps' objects (each dump before its record) and how many dumps there are.
fn small_dumps(args: &ListFetchArgs, templates: &[SmallTemplate], now: Timestamp) -> Vec<Put> {
    let mut rng = Rng(0x11f3_c0de);
    let span = 30 * 24 * 3600; // the last 30 days
    let step = (span / args.dumps.max(1) as i64).max(1);
    let mut puts = Vec::with_capacity(2 * args.dumps);
    for index in 0..args.dumps {
        let namespace_index = index % args.namespaces;
        let pod_index = (index / args.namespaces) % args.pods;
        let namespace = NAMESPACES[namespace_index % NAMESPACES.len()];
        let namespace = if namespace_index < NAMESPACES.len() {
            namespace.to_owned()
        } else {
            format!("{namespace}-{}", namespace_index / NAMESPACES.len())
        };
        let (workload, exe) = WORKLOADS[pod_index % WORKLOADS.len()];
        let pod = format!(
            "{namespace}-{workload}-{:010x}-{:05x}",
            (namespace_index as u64 * 7_919 + pod_index as u64) * 0x9E37 % 0xff_ffff_ffff,
            (pod_index as u64 * 0x2f1d) % 0xf_ffff
        );
        let spec = DumpSpec {
            pod,
            container: if rng.below(5) == 0 { "sidecar" } else { "app" },
            exe,
            pid: 1 + rng.below(60_000) as u32,
            // Distinct seconds, spread over the span, newest a few minutes ago.
            time: Timestamp::from_second(now.as_second() - 600 - step * index as i64)
                .unwrap_or(now),
            node: format!("node-{:02}", rng.below(12)),
            signal: SIGNALS[rng.below(SIGNALS.len())],
            image: format!(
                "registry.example.com/{namespace}/{workload}:1.{}.{}",
                rng.below(20),
                rng.below(10)
            ),
            workload,
            namespace,
        };
        let template = &templates[index % templates.len()];
        let key = spec.key(template.size, Compression::Zstd);
        let record = spec.record(
            &key,
            template.size,
            template.zst.len() as u64,
            &template.sha256,
        );
        puts.push(Put {
            key: key.to_key(),
            body: template.zst.clone(),
            content_type: "application/zstd",
        });
        puts.push(Put {
            key: key.id_index_key(),
            body: Arc::new(Vec::new()),
            content_type: "application/octet-stream",
        });
        puts.push(Put {
            key: key.record_key(),
            body: Arc::new(record.to_json()),
            content_type: "application/json",
        });
    }
    puts
}

/// Puts `puts` in order of index with `concurrency` at once (a dump before its record: both are
/// taken by the same worker, one after the other).
async fn put_all(store: Arc<Store>, puts: Vec<Put>, concurrency: usize) -> anyhow::Result<()> {
    let puts = Arc::new(puts);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (store, puts, next) = (store.clone(), puts.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let pair = next.fetch_add(1, Ordering::Relaxed);
                if 2 * pair >= puts.len() {
                    return anyhow::Ok(());
                }
                for put in puts.iter().skip(2 * pair).take(2) {
                    store
                        .put_bytes(&put.key, &put.body, put.content_type)
                        .await
                        .with_context(|| format!("cannot put {}", put.key))?;
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// Uploads a file as the watcher uploads a core: parts of `partSizeMiB` into a bounded
/// multipart upload.
async fn upload_file(
    store: &Store,
    key: &str,
    path: &Path,
    content_type: &str,
    part_size: usize,
    options: UploadOptions,
) -> anyhow::Result<u64> {
    let (sender, receiver) = part_channel();
    let path = path.to_owned();
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut file = File::open(&path)?;
        loop {
            let mut part = vec![0u8; part_size];
            let mut filled = 0;
            while filled < part_size {
                let read = file.read(&mut part[filled..])?;
                if read == 0 {
                    break;
                }
                filled += read;
            }
            if filled == 0 {
                break;
            }
            part.truncate(filled);
            if sender.send_blocking(part).is_err() {
                return Ok(());
            }
            if filled < part_size {
                break;
            }
        }
        sender.finish();
        Ok(())
    });
    let stored = store
        .upload(key, content_type, receiver, options)
        .await
        .with_context(|| format!("cannot upload {key}"))?;
    reader.await??;
    Ok(stored)
}

/// A big dump in the bucket.
struct BigDump {
    id: String,
    key: String,
    stored_size: u64,
}

// ---------------------------------------------------------------------------------------------
// Measurements.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    S5cmdLs,
    ListTable,
    ListJson,
    Info,
    S5cmdCpZstd,
    S5cmdCatZstd,
    FetchZstd,
    S5cmdCpNone,
    S5cmdCpSha,
    FetchNone,
    BaselineFetchZstd,
    BaselineFetchNone,
}

const LIST_OPS: [Op; 4] = [Op::S5cmdLs, Op::ListTable, Op::ListJson, Op::Info];
const FETCH_OPS: [Op; 6] = [
    Op::S5cmdCpZstd,
    Op::S5cmdCatZstd,
    Op::FetchZstd,
    Op::S5cmdCpNone,
    Op::S5cmdCpSha,
    Op::FetchNone,
];

impl Op {
    fn slug(self) -> &'static str {
        match self {
            Self::S5cmdLs => "s5cmd_ls",
            Self::ListTable => "list_table",
            Self::ListJson => "list_json_all",
            Self::Info => "info_id",
            Self::S5cmdCpZstd => "s5cmd_cp_zstd",
            Self::S5cmdCatZstd => "s5cmd_cat_zstd_d",
            Self::FetchZstd => "fetch_zstd",
            Self::S5cmdCpNone => "s5cmd_cp_none",
            Self::S5cmdCpSha => "s5cmd_cp_openssl_sha256",
            Self::FetchNone => "fetch_none",
            Self::BaselineFetchZstd => "baseline_fetch_zstd",
            Self::BaselineFetchNone => "baseline_fetch_none",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::S5cmdLs => "s5cmd ls 's3://bench/corefiles/*'",
            Self::ListTable => "kubectl coredog list -A",
            Self::ListJson => "kubectl coredog list -A --limit 0 -o json",
            Self::Info => "kubectl coredog info ID (resolve only)",
            Self::S5cmdCpZstd | Self::S5cmdCpNone => "s5cmd cp s3://bench/KEY FILE",
            Self::S5cmdCatZstd => "s5cmd cat s3://bench/KEY | zstd -d -o FILE",
            Self::S5cmdCpSha => "s5cmd cp ... && openssl dgst -sha256 FILE",
            Self::FetchZstd | Self::FetchNone => "kubectl coredog fetch ID -o FILE",
            Self::BaselineFetchZstd | Self::BaselineFetchNone => "the baseline build, same fetch",
        }
    }

    /// Whether the command writes a file it does not make durable itself.
    fn leaves_dirty_pages(self) -> bool {
        matches!(
            self,
            Self::S5cmdCpZstd | Self::S5cmdCatZstd | Self::S5cmdCpNone | Self::S5cmdCpSha
        )
    }
}

/// One run of one command.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    wall: f64,
    cpu: f64,
    server_cpu: f64,
    peak_rss_mib: f64,
    /// `sync` right after the command (s5cmd cp: the time to make its copy durable; neither
    /// it nor `fetch` fsyncs).
    sync_after: Option<f64>,
}

struct Bench<'a> {
    args: &'a ListFetchArgs,
    server: &'a Seaweed,
    /// Where the commands measured reach the bucket: the server, or the throttling proxy.
    endpoint: String,
    s5cmd: PathBuf,
    config: PathBuf,
    out: PathBuf,
    zstd: BigDump,
    none: BigDump,
    core_size: u64,
    dumps: usize,
    objects: usize,
    ticks: f64,
}

impl Bench<'_> {
    fn output_file(&self, op: Op) -> PathBuf {
        self.out.join(format!("{}.core", op.slug()))
    }

    fn stdout_file(&self, op: Op) -> PathBuf {
        self.out.join(format!("{}.stdout", op.slug()))
    }

    fn clean(&self, op: Op) {
        let output = self.output_file(op);
        let _ = std::fs::remove_file(&output);
        let mut part = output.into_os_string();
        part.push(".part");
        let _ = std::fs::remove_file(part);
        let _ = std::fs::remove_file(self.stdout_file(op));
    }

    fn command(&self, op: Op) -> Command {
        let plugin = |args: &[&str]| {
            let binary = match (op, &self.args.baseline) {
                (Op::BaselineFetchZstd | Op::BaselineFetchNone, Some(baseline)) => baseline,
                _ => &self.args.kubectl_coredog,
            };
            let mut command = Command::new(binary);
            command.args(args).arg("--config").arg(&self.config);
            command
        };
        // The same credentials for s5cmd every time, and nothing from this machine's profiles.
        let with_keys = |command: &mut Command| {
            command
                .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                .env("AWS_REGION", REGION)
                .env("AWS_CONFIG_FILE", self.out.join("aws-config"))
                .env(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    self.out.join("aws-credentials"),
                )
                .env_remove("AWS_PROFILE");
        };
        let s5cmd = |args: &[String]| {
            let mut command = Command::new(&self.s5cmd);
            command.args(["--endpoint-url", &self.endpoint]).args(args);
            with_keys(&mut command);
            command
        };
        // `script` run by sh with s5cmd as $0, the endpoint $1, the object's URL $2, the output $3.
        let s5cmd_script = |script: &str, key: &str, output: &str| {
            let mut command = Command::new("sh");
            command
                .args(["-c", script])
                .arg(&self.s5cmd)
                .arg(&self.endpoint)
                .arg(format!("s3://{BUCKET}/{key}"))
                .arg(output);
            with_keys(&mut command);
            command
        };
        let output = self.output_file(op).display().to_string();
        let mut command = match op {
            Op::S5cmdLs => s5cmd(&["ls".to_owned(), format!("s3://{BUCKET}/{STORE_DIR}/*")]),
            Op::ListTable => plugin(&["list", "-A"]),
            Op::ListJson => plugin(&["list", "-A", "--limit", "0", "-o", "json"]),
            Op::Info => plugin(&["info", &self.zstd.id]),
            Op::S5cmdCpZstd => s5cmd(&[
                "cp".to_owned(),
                format!("s3://{BUCKET}/{}", self.zstd.key),
                output,
            ]),
            // The same file `fetch` makes of a zstd dump, by the shortest pipeline.
            Op::S5cmdCatZstd => s5cmd_script(
                r#""$0" --endpoint-url "$1" cat "$2" | zstd -d -q -f -o "$3""#,
                &self.zstd.key,
                &output,
            ),
            Op::S5cmdCpNone => s5cmd(&[
                "cp".to_owned(),
                format!("s3://{BUCKET}/{}", self.none.key),
                output,
            ]),
            // The copy checked as fetch checks it: the SHA-256 of the whole file, by the fastest
            // common tool.
            Op::S5cmdCpSha => s5cmd_script(
                r#""$0" --endpoint-url "$1" cp "$2" "$3" && openssl dgst -sha256 "$3" >/dev/null"#,
                &self.none.key,
                &output,
            ),
            Op::FetchZstd | Op::BaselineFetchZstd => {
                plugin(&["fetch", &self.zstd.id, "-o", &output])
            }
            Op::FetchNone | Op::BaselineFetchNone => {
                plugin(&["fetch", &self.none.id, "-o", &output])
            }
        };
        command.env_remove("RUST_LOG").stdin(Stdio::null());
        command
    }

    /// Runs `op` once after `sync`, with its output removed before and after; checks what it
    /// produced.
    fn run(&self, op: Op) -> anyhow::Result<Sample> {
        self.clean(op);
        let mut command = self.command(op);
        let stdout = self.stdout_file(op);
        let stderr = self.out.join(format!("{}.stderr", op.slug()));
        command
            .stdout(File::create(&stdout)?)
            .stderr(File::create(&stderr)?);
        sync_disks();
        let children = children_cpu_seconds(self.ticks);
        let server = cpu_seconds(self.server.pid(), self.ticks);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        let pid = child.id();
        let peak = Arc::new(Mutex::new(0.0f64));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, done) = (peak.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let (Some(rss), Ok(mut peak)) = (peak_rss_mib(pid), peak.lock()) {
                        *peak = peak.max(rss);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let status = child.wait()?;
        let wall = started.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        let server_cpu = cpu_seconds(self.server.pid(), self.ticks) - server;
        let cpu = children_cpu_seconds(self.ticks) - children;
        if !status.success() {
            bail!(
                "{command:?} failed ({status}):\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        let sync_after = op.leaves_dirty_pages().then(sync_disks);
        self.check(op, &stdout)?;
        self.clean(op);
        Ok(Sample {
            wall,
            cpu,
            server_cpu,
            peak_rss_mib: peak.lock().map(|peak| *peak).unwrap_or_default(),
            sync_after,
        })
    }

    /// Whether the command did what it is measured for.
    fn check(&self, op: Op, stdout: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(stdout)?;
        let file_size = || std::fs::metadata(self.output_file(op)).map_or(0, |meta| meta.len());
        match op {
            Op::S5cmdLs => {
                let lines = text.lines().count();
                if lines != self.objects {
                    bail!(
                        "s5cmd ls listed {lines} objects, the bucket has {}",
                        self.objects
                    );
                }
            }
            Op::ListTable => {
                let rows = text.lines().count().saturating_sub(1);
                if rows != self.dumps.min(DEFAULT_LIMIT) || text.contains("(incomplete)") {
                    bail!("list -A showed {rows} rows:\n{text}");
                }
            }
            Op::ListJson => {
                let listed: Vec<Value> = serde_json::from_str(&text)?;
                let complete = listed
                    .iter()
                    .filter(|dump| dump.get("incomplete").is_none() && dump["sha256"].is_string())
                    .count();
                if listed.len() != self.dumps || complete != self.dumps {
                    bail!(
                        "list -o json gave {} dumps ({complete} with records), the bucket has {}",
                        listed.len(),
                        self.dumps
                    );
                }
            }
            Op::Info => {
                if !text.contains(&self.zstd.id) {
                    bail!("info printed:\n{text}");
                }
            }
            Op::S5cmdCpZstd | Op::S5cmdCpNone | Op::S5cmdCpSha => {
                let want = if op == Op::S5cmdCpZstd {
                    self.zstd.stored_size
                } else {
                    self.none.stored_size
                };
                if file_size() != want {
                    bail!("s5cmd cp wrote {} bytes, want {want}", file_size());
                }
            }
            Op::S5cmdCatZstd
            | Op::FetchZstd
            | Op::FetchNone
            | Op::BaselineFetchZstd
            | Op::BaselineFetchNone => {
                if file_size() != self.core_size {
                    bail!(
                        "{} wrote {} bytes, want {}",
                        op.label(),
                        file_size(),
                        self.core_size
                    );
                }
            }
        }
        Ok(())
    }

    /// One more run of `op` under `perf record`, and SeaweedFS profiled meanwhile.
    fn profile(&self, op: Op, dir: &Path) -> anyhow::Result<(String, String)> {
        self.clean(op);
        let client_data = dir.join(format!("{}.data", op.slug()));
        let server_data = dir.join(format!("{}-weed.data", op.slug()));
        let mut server_perf = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-g", "-q", "-o"])
            .arg(&server_data)
            .args(["-p", &self.server.pid().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run perf")?;
        std::thread::sleep(Duration::from_millis(500));
        let inner = self.command(op);
        let mut command = Command::new("perf");
        command
            .args(["record", "-e", "cpu-clock", "-g", "-q", "-o"])
            .arg(&client_data)
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args());
        for (name, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        sync_disks();
        let status = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        let _ = Command::new("kill")
            .args(["-INT", &server_perf.id().to_string()])
            .status();
        let _ = server_perf.wait();
        self.clean(op);
        if !status.success() {
            bail!("{command:?} failed under perf ({status})");
        }
        Ok((perf_top(&client_data), perf_top(&server_data)))
    }
}

impl Bench<'_> {
    /// Where one more run of a fetch spends its wall time, from `strace -f -tt -T` of its
    /// fsync, rename and unlink calls: before the first fsync (resolve, download, decompress,
    /// hash, write), in fsync, and after.
    fn timeline(&self, op: Op, dir: &Path) -> anyhow::Result<String> {
        self.clean(op);
        let trace = dir.join(format!("{}.strace", op.slug()));
        let inner = self.command(op);
        let mut command = Command::new("strace");
        command
            .args(["-f", "-tt", "-T", "-e"])
            .arg("trace=execve,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat")
            .arg("-o")
            .arg(&trace)
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args());
        for (name, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        sync_disks();
        let status = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run strace")?;
        self.clean(op);
        if !status.success() {
            bail!("{command:?} failed under strace ({status})");
        }
        let text = std::fs::read_to_string(&trace)?;
        // `PID HH:MM:SS.micros call... <duration>`
        let time = |line: &str| -> Option<f64> {
            let clock = line.split_whitespace().nth(1)?;
            let mut parts = clock.split(':');
            let hours: f64 = parts.next()?.parse().ok()?;
            let minutes: f64 = parts.next()?.parse().ok()?;
            let seconds: f64 = parts.next()?.parse().ok()?;
            Some(hours * 3600.0 + minutes * 60.0 + seconds)
        };
        let duration = |line: &str| -> Option<f64> {
            let (_, tail) = line.trim_end().rsplit_once('<')?;
            tail.strip_suffix('>')?.parse().ok()
        };
        let times: Vec<f64> = text.lines().filter_map(time).collect();
        let (Some(start), Some(end)) = (times.first(), times.last()) else {
            bail!("strace wrote nothing to {}", trace.display());
        };
        let mut first_fsync = *end;
        let (mut fsyncs, mut in_fsync) = (0, 0.0);
        for line in text.lines().filter(|line| line.contains("fsync")) {
            let (Some(at), Some(took)) = (time(line), duration(line)) else {
                continue;
            };
            let began = if line.contains("resumed>") {
                at - took
            } else {
                at
            };
            first_fsync = first_fsync.min(began);
            fsyncs += 1;
            in_fsync += took;
        }
        Ok(format!(
            "{} ({}): {:.2}s before the first fsync (resolve, download, decompress, hash, write), {fsyncs} fsyncs {in_fsync:.2}s, {:.2}s after; {:.2}s in all under strace",
            op.label(),
            op.slug(),
            first_fsync - start,
            (end - first_fsync - in_fsync).max(0.0),
            end - start
        ))
    }
}

/// The top symbols of a profile, flat.
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
                .take(12)
                .map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let symbol = fields.get(3..).map_or(String::new(), |rest| rest.join(" "));
                    format!(
                        "  {:>7} {:<22} {symbol}",
                        fields.first().copied().unwrap_or_default(),
                        fields.get(1).copied().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The run with the median wall time.
fn median(mut samples: Vec<Sample>) -> Sample {
    samples.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    samples[samples.len() / 2]
}

pub fn run(args: &ListFetchArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let weed = args.tools_bin.join("weed");
    let s5cmd = args.bench_tools_bin.join("s5cmd");
    for (tool, installer) in [
        (&weed, ".ci/tools"),
        (&s5cmd, "bench/tools"),
        (
            &args.kubectl_coredog,
            "cargo build --release -p kubectl-coredog",
        ),
    ] {
        if !tool.exists() {
            bail!("{} is missing: run `{installer}`", tool.display());
        }
    }
    if args.rounds == 0
        || args.size_gib <= 0.0
        || args.dumps == 0
        || args.namespaces == 0
        || args.pods == 0
    {
        bail!("--rounds, --size-gib, --dumps, --namespaces and --pods must be positive");
    }
    let (scratch, owned_scratch) = match &args.scratch {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("coredog-bench-list-fetch-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&scratch)?;
    let result = run_in(args, runtime, &weed, s5cmd, &scratch);
    if owned_scratch {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

fn run_in(
    args: &ListFetchArgs,
    runtime: &tokio::runtime::Runtime,
    weed: &Path,
    s5cmd: PathBuf,
    scratch: &Path,
) -> anyhow::Result<()> {
    let versions = json!({
        "weed": tool_version(weed, &["version"]),
        "s5cmd": tool_version(&s5cmd, &["version"]),
        "kubectl_coredog": tool_version(&args.kubectl_coredog, &["--version"]),
        "zstd": tool_version(Path::new("zstd"), &["--version"]),
    });

    // The big core, compressed as the watcher compresses it.
    let started = Instant::now();
    let core = scratch.join("big.core");
    let core_zst = scratch.join("big.core.zst");
    let core_size = write_big_core(&core, (args.size_gib * GIB) as u64)?;
    let core_sha256 = sha256_of(&core)?;
    let defaults = Config::from_yaml(&format!(
        "StorageConfig:\n  S3Bucket: {BUCKET}\n  S3Endpoint: http://127.0.0.1:1\n"
    ))?;
    zstd_compress(&core, &core_zst, defaults.storage.compression_level)?;
    let zst_size = std::fs::metadata(&core_zst)?.len();
    eprintln!(
        "list-fetch: a {:.2} GiB core made and compressed to {:.0} MiB (zstd -{}) in {:.1}s",
        core_size as f64 / GIB,
        zst_size as f64 / MIB as f64,
        defaults.storage.compression_level,
        started.elapsed().as_secs_f64()
    );

    let server = Seaweed::start(weed, scratch.join("s3"))?;
    let proxy = match args.connection_rate {
        Some(rate) => {
            let upstream = server.endpoint();
            let upstream = upstream
                .strip_prefix("http://")
                .unwrap_or(&upstream)
                .parse()
                .context("SeaweedFS's address")?;
            Some(runtime.block_on(ThrottlingProxy::start(upstream, rate * 1e6))?)
        }
        None => None,
    };
    let endpoint = proxy
        .as_ref()
        .map_or_else(|| server.endpoint(), ThrottlingProxy::endpoint);
    let config_path = scratch.join("config.yaml");
    std::fs::write(
        &config_path,
        config_yaml(&server).replace(&server.endpoint(), &endpoint),
    )?;
    let config = Config::from_yaml(&config_yaml(&server))?;
    let store = Arc::new(Store::from_config(&config.storage)?);

    // The bucket.
    let started = Instant::now();
    let now = Timestamp::now();
    let templates = small_templates(scratch)?;
    let puts = small_dumps(args, &templates, now);
    runtime.block_on(put_all(store.clone(), puts, args.upload_concurrency))?;
    eprintln!(
        "list-fetch: {} small dumps and their records put in {:.1}s",
        args.dumps,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut big = Vec::new();
    for (compression, path, minutes_ago, pid) in [
        (Compression::Zstd, &core_zst, 2, 4242),
        (Compression::None, &core, 1, 4243),
    ] {
        let spec = DumpSpec {
            namespace: BIG_NAMESPACE.to_owned(),
            pod: BIG_POD.to_owned(),
            container: "app",
            exe: "/usr/local/bin/checkout-api",
            pid,
            time: Timestamp::from_second(now.as_second() - 60 * minutes_ago).unwrap_or(now),
            node: "node-07".to_owned(),
            signal: SIGNALS[0],
            image: "registry.example.com/checkout/checkout-api:2.14.1".to_owned(),
            workload: "checkout-api",
        };
        let key = spec.key(core_size, compression);
        let content_type = match compression {
            Compression::Zstd => "application/zstd",
            Compression::None => "application/octet-stream",
        };
        let stored_size = runtime.block_on(upload_file(
            &store,
            &key.to_key(),
            path,
            content_type,
            config.storage.part_size(),
            UploadOptions::from_config(&config.storage),
        ))?;
        let record = spec.record(&key, core_size, stored_size, &core_sha256);
        runtime.block_on(store.put_bytes(&key.id_index_key(), &[], "application/octet-stream"))?;
        runtime.block_on(store.put_bytes(
            &key.record_key(),
            &record.to_json(),
            "application/json",
        ))?;
        big.push(BigDump {
            id: key.id.to_string(),
            key: key.to_key(),
            stored_size,
        });
    }
    eprintln!(
        "list-fetch: the big dump stored zstd and uncompressed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_file(&core);
    let _ = std::fs::remove_file(&core_zst);
    let none = big.pop().context("no uncompressed dump")?;
    let zstd = big.pop().context("no zstd dump")?;

    let out = scratch.join("out");
    std::fs::create_dir_all(&out)?;
    let dumps = args.dumps + 2;
    let bench = Bench {
        args,
        server: &server,
        endpoint,
        s5cmd,
        config: config_path,
        out,
        zstd,
        none,
        core_size,
        dumps,
        // Each dump: the core, its id index entry and its record.
        objects: 3 * dumps,
        ticks: clock_ticks(),
    };

    // Warm-up (and a check that every command does what it is measured for), then the rounds.
    let mut fetch_ops = FETCH_OPS.to_vec();
    if args.baseline.is_some() {
        fetch_ops.extend([Op::BaselineFetchZstd, Op::BaselineFetchNone]);
    }
    let all: Vec<Op> = LIST_OPS.iter().chain(&fetch_ops).copied().collect();
    for &op in &all {
        bench
            .run(op)
            .with_context(|| format!("warm-up of {}", op.label()))?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); all.len()];
    for round in 0..args.rounds {
        for ops in [&LIST_OPS[..], &fetch_ops[..]] {
            let mut order = ops.to_vec();
            if round % 2 == 1 {
                order.reverse();
            }
            for op in order {
                let sample = bench.run(op)?;
                let index = all.iter().position(|other| *other == op).unwrap_or(0);
                samples[index].push(sample);
            }
        }
        eprintln!("list-fetch: round {} of {} done", round + 1, args.rounds);
    }
    let medians: Vec<Sample> = samples.into_iter().map(median).collect();
    let of = |op: Op| medians[all.iter().position(|other| *other == op).unwrap_or(0)];

    report(&bench, &versions, zst_size, &of);

    if let Some(dir) = &args.perf {
        std::fs::create_dir_all(dir)?;
        for op in [Op::ListTable, Op::ListJson, Op::FetchZstd, Op::FetchNone] {
            let (client, server) = bench.profile(op, dir)?;
            println!(
                "perf: {} ({}), top symbols of the plugin:\n{client}",
                op.label(),
                op.slug()
            );
            println!("perf: SeaweedFS meanwhile:\n{server}");
            if matches!(op, Op::FetchZstd | Op::FetchNone) {
                println!("strace: {}", bench.timeline(op, dir)?);
            }
        }
    }
    Ok(())
}

fn report(bench: &Bench<'_>, versions: &Value, zst_size: u64, of: &dyn Fn(Op) -> Sample) {
    let args = bench.args;
    let ls = of(Op::S5cmdLs).wall;
    let cp_zstd = of(Op::S5cmdCpZstd).wall;
    let cp_none = of(Op::S5cmdCpNone).wall;
    let mut rows = vec![
        ("list", Op::S5cmdLs, None),
        ("list", Op::ListTable, Some((ls, 1.0))),
        ("list", Op::ListJson, Some((ls, 1.0))),
        ("list", Op::Info, None),
        ("fetch zstd", Op::S5cmdCpZstd, None),
        ("fetch zstd", Op::S5cmdCatZstd, None),
        ("fetch zstd", Op::FetchZstd, Some((cp_zstd, 1.1))),
        ("fetch none", Op::S5cmdCpNone, None),
        ("fetch none", Op::S5cmdCpSha, None),
        ("fetch none", Op::FetchNone, Some((cp_none, 1.1))),
    ];
    if args.baseline.is_some() {
        rows.insert(
            7,
            ("fetch zstd", Op::BaselineFetchZstd, Some((cp_zstd, 1.1))),
        );
        rows.push(("fetch none", Op::BaselineFetchNone, Some((cp_none, 1.1))));
    }
    let through = args
        .connection_rate
        .map(|rate| format!(", each connection answered at {rate} MB/s through a proxy"))
        .unwrap_or_default();
    println!(
        "list-fetch: {} dumps ({} objects, {} namespaces x {} pods) and a {:.2} GiB core stored zstd ({:.0} MiB) and uncompressed, in SeaweedFS {} on loopback, SigV4{through}",
        bench.dumps,
        bench.objects,
        args.namespaces,
        args.pods,
        bench.core_size as f64 / GIB,
        zst_size as f64 / MIB as f64,
        versions["weed"].as_str().unwrap_or_default()
    );
    println!(
        "{} alternating rounds after a warm-up, median round; each command after `sync`; s5cmd {} (cp: 50 MiB parts, 5 at once); plugin fetch: ranges of whole parts (45 MiB) streamed, 4 at once, out-of-order pieces held up to 32 MiB, zstd and SHA-256 on their own threads, sparse write, no fsync",
        args.rounds,
        versions["s5cmd"].as_str().unwrap_or_default()
    );
    println!(
        "{:<11} {:<42} {:>8} {:>7} {:>9} {:>8} {:>9} {:>8}",
        "op", "command", "wall s", "cpu s", "srv cpu s", "peak MiB", "x s5cmd", "goal"
    );
    let mut figures = serde_json::Map::new();
    let mut ratios = serde_json::Map::new();
    let mut goals = serde_json::Map::new();
    for (group, op, against) in rows {
        let sample = of(op);
        let (ratio, goal) = match against {
            Some((reference, limit)) => {
                let ratio = sample.wall / reference;
                let met = ratio <= limit;
                ratios.insert(format!("{}_vs_s5cmd", op.slug()), json!(round_to(ratio, 3)));
                goals.insert(format!("{}_le_{limit:.1}x", op.slug()), json!(met));
                (
                    format!("{ratio:.2}x"),
                    format!("<={limit:.1} {}", if met { "met" } else { "MISSED" }),
                )
            }
            None => (String::new(), String::new()),
        };
        // The pipeline's peak would be the shell's: not comparable.
        let peak = if matches!(op, Op::S5cmdCatZstd | Op::S5cmdCpSha) {
            "-".to_owned()
        } else {
            format!("{:.0}", sample.peak_rss_mib)
        };
        let sync = sample
            .sync_after
            .map(|sync| format!("  (+ sync {sync:.2}s)"))
            .unwrap_or_default();
        println!(
            "{group:<11} {:<42} {:>8.3} {:>7.2} {:>9.2} {peak:>8} {ratio:>9} {goal:>8}{sync}",
            op.label(),
            sample.wall,
            sample.cpu,
            sample.server_cpu,
        );
        let mut figure = json!({
            "wall_s": round_to(sample.wall, 4),
            "cpu_s": round_to(sample.cpu, 3),
            "server_cpu_s": round_to(sample.server_cpu, 3),
            "peak_rss_mib": round_to(sample.peak_rss_mib, 1),
        });
        if let Some(sync) = sample.sync_after {
            figure["sync_after_s"] = json!(round_to(sync, 3));
        }
        if matches!(op, Op::S5cmdCatZstd | Op::S5cmdCpSha)
            && let Some(figure) = figure.as_object_mut()
        {
            figure.remove("peak_rss_mib");
        }
        figures.insert(op.slug().to_owned(), figure);
    }
    let cat = of(Op::S5cmdCatZstd).wall;
    let versus_cat = of(Op::FetchZstd).wall / cat;
    ratios.insert(
        "fetch_zstd_vs_s5cmd_cat_zstd_d".to_owned(),
        json!(round_to(versus_cat, 3)),
    );
    println!(
        "fetch zstd is {versus_cat:.2}x `s5cmd cat | zstd -d -o FILE`, which makes the same file (unverified)"
    );
    let versus_sha = of(Op::FetchNone).wall / of(Op::S5cmdCpSha).wall;
    ratios.insert(
        "fetch_none_vs_s5cmd_cp_openssl_sha256".to_owned(),
        json!(round_to(versus_sha, 3)),
    );
    println!(
        "fetch none is {versus_sha:.2}x `s5cmd cp && openssl dgst -sha256 FILE`, which checks the copy as fetch does"
    );
    if args.baseline.is_some() {
        for (fetch, baseline, what) in [
            (Op::FetchZstd, Op::BaselineFetchZstd, "zstd"),
            (Op::FetchNone, Op::BaselineFetchNone, "none"),
        ] {
            let versus = of(fetch).wall / of(baseline).wall;
            ratios.insert(
                format!("fetch_{what}_vs_baseline"),
                json!(round_to(versus, 3)),
            );
            println!("fetch {what} is {versus:.2}x the baseline build's");
        }
    }
    println!(
        "(cpu: the command's user+sys; srv cpu: SeaweedFS's meanwhile; peak: VmHWM sampled every 10 ms; + sync: `sync` right after the s5cmd commands, what making the file durable would add)"
    );
    println!(
        "{}",
        json!({
            "bench": "list-fetch",
            "dumps": bench.dumps,
            "objects": bench.objects,
            "core_bytes": bench.core_size,
            "stored_zstd_bytes": zst_size,
            "rounds": args.rounds,
            "connection_rate_mb_s": args.connection_rate,
            "median": figures,
            "ratios": ratios,
            "goals": goals,
            "versions": versions,
        })
    );
}
