//! What both storage benchmarks measure of a process: CPU time and peak memory from `/proc`;
//! and the S3 server they both measure against.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use coredog_tests::{WeedPorts, weed_identities, weed_mini, weed_serves, weed_stores};

use crate::Server;

/// The bucket and the one identity of the benchmarks' S3 server.
pub const BUCKET: &str = "bench";
pub const ACCESS_KEY: &str = "AKIDCOREDOGBENCH";
pub const SECRET_KEY: &str = "coredog-bench-secret-key-0123456789";
pub const REGION: &str = "us-east-1";

/// User + system CPU seconds of this process's reaped children.
pub fn children_cpu_seconds(ticks: f64) -> f64 {
    stat_fields("self")
        .map(|fields| (fields[13] + fields[14]) as f64 / ticks)
        .unwrap_or(0.0)
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a live process.
pub fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    stat_fields(&pid.to_string())
        .map(|fields| (fields[11] + fields[12]) as f64 / ticks)
        .unwrap_or(0.0)
}

/// `VmHWM` (peak resident set) of a live process, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn round_to(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Fields of `/proc/<pid>/stat` after the command name (field 3 is index 0).
pub fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect(),
    )
}

/// `weed mini` as the tests start it (`coredog_tests::weed_mini`): loopback only, SigV4
/// enforced for one identity, one bucket. Stopped, and its directory removed, when dropped.
pub struct Seaweed {
    process: Server,
    dir: PathBuf,
    port: u16,
}

impl Seaweed {
    /// Starts the server with its data and log in `dir`; returns once the bucket exists.
    pub fn start(weed: &Path, dir: PathBuf) -> anyhow::Result<Self> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let identities = dir.join("identities.json");
        std::fs::write(
            &identities,
            weed_identities("bench", ACCESS_KEY, SECRET_KEY),
        )?;
        let ports = WeedPorts::free();
        let log = File::create(dir.join("weed.log"))?;
        let child = weed_mini(weed, &data, &identities, BUCKET, &ports)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", weed.display()))?;
        let mut server = Self {
            process: Server(child),
            dir,
            port: ports.s3(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !weed_serves(&ports, BUCKET) {
            if let Some(status) = server.process.0.try_wait()? {
                bail!(
                    "weed mini exited ({status}); see {}",
                    server.dir.join("weed.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("SeaweedFS S3 did not come up on port {}", server.port);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if !weed_stores(&ports) {
            bail!(
                "SeaweedFS on port {} cannot store a file; free disk under {} is the usual cause",
                server.port,
                server.dir.display()
            );
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A `StorageConfig` block for this server's bucket under `store_dir`.
    pub fn storage_config_yaml(&self, store_dir: &str) -> String {
        format!(
            "StorageConfig:\n  protocol: s3\n  s3AccesskeyID: {ACCESS_KEY}\n  s3SecretAccessKey: {SECRET_KEY}\n  s3Region: {REGION}\n  S3Bucket: {BUCKET}\n  S3Endpoint: {}\n  StoreDir: {store_dir}\n",
            self.endpoint()
        )
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
