//! Test support for running CoreDog's real components: locating the tools `.ci/tools` installs,
//! starting processes that are stopped when the test ends, and reading what they log.
//!
//! Tests that need a tool fail with a message that says how to install it, never skip: a test
//! that silently skips proves nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The path of a tool installed by `.ci/tools` (or found in `COREDOG_TOOLS_BIN`).
///
/// # Panics
/// When the tool is missing, with the command that installs it.
pub fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("COREDOG_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/tools/bin"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "test tool {name} is missing at {}: run `.ci/tools` (or `.ci/run`) to install it",
        path.display()
    );
    path
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard {
    pub child: Child,
    name: String,
}

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the process (`libc`-free: through `kill(1)`).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("[{}] stopped", self.name);
    }
}

/// Starts `command` with its stderr (and stdout) echoed into the test's output, and waits until
/// it logs a line containing `ready_marker`. Returns the guard and that line.
///
/// # Panics
/// When the process cannot start, exits, or does not log the marker within `timeout`.
pub fn spawn_until(
    name: &str,
    command: &mut Command,
    ready_marker: &str,
    timeout: Duration,
) -> (ChildGuard, String) {
    let (guard, line, _later) = spawn_logged(name, command, ready_marker, timeout);
    (guard, line)
}

/// What a process logs, a line at a time.
pub struct LogLines {
    name: String,
    lines: mpsc::Receiver<String>,
}

impl LogLines {
    /// The first line from now on that contains `needle`.
    ///
    /// # Panics
    /// When the process exits, or logs no such line within `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let name = &self.name;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{name} did not log {needle:?} within {timeout:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{name} exited before logging {needle:?}")
                }
            }
        }
    }
}

/// [`spawn_until`], and the lines logged after the ready line.
///
/// # Panics
/// As [`spawn_until`].
pub fn spawn_logged(
    name: &str,
    command: &mut Command,
    ready_marker: &str,
    timeout: Duration,
) -> (ChildGuard, String, LogLines) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
    let (sender, receiver) = mpsc::channel::<String>();
    for stream in [
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let sender = sender.clone();
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("[{label}] {line}");
                let _ = sender.send(line);
            }
        });
    }
    drop(sender);
    let guard = ChildGuard {
        child,
        name: name.to_owned(),
    };
    let logs = LogLines {
        name: name.to_owned(),
        lines: receiver,
    };
    let ready = logs.wait_for(ready_marker, timeout);
    (guard, ready, logs)
}

/// The value of `key=value` in a logfmt line.
pub fn logfmt_value(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next().map(str::to_owned)
    } else {
        rest.split_whitespace().next().map(str::to_owned)
    }
}

/// Runs `kubernetes-validate --strict` for `version` over `files`; returns its output on failure.
pub fn kubernetes_validate(version: &str, files: &[PathBuf]) -> Result<(), String> {
    let output = Command::new(tool("kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", version])
        .args(files)
        .output()
        .map_err(|err| format!("cannot run kubernetes-validate: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A free TCP port on 127.0.0.1 (bound once and released: good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|err| panic!("no free port: {err}"))
}

/// The status code of a plain, unsigned `GET path` on 127.0.0.1:`port`, if anything answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    http_request_status(port, "GET", path, b"")
}

/// The status of one plain HTTP/1.1 request with `body` to `127.0.0.1:<port>`, `None` when
/// nothing answered.
pub fn http_request_status(port: u16, method: &str, path: &str, body: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    stream.write_all(body).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The ports `weed mini` listens on, each free when chosen.
#[derive(Debug, Clone, Copy)]
pub struct WeedPorts([u16; 10]);

impl WeedPorts {
    /// Its flags, in the order of the ports.
    const FLAGS: [&str; 10] = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ];

    /// Ten distinct ports nothing listens on, below the range the kernel hands out to outgoing
    /// connections: `weed mini` binds its ports one after another over seconds while its parts
    /// connect to each other, and a port from that range (as `free_port` gives) could be taken
    /// by one of those connections first, leaving S3 never to come up.
    pub fn free() -> Self {
        let below = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32768);
        let low = 10_000u16.min(below / 2);
        let mut state = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |now| now.as_nanos() as u64);
        let mut held = Vec::new();
        let mut ports = [0u16; 10];
        let mut chosen = 0;
        for _ in 0..100_000 {
            if chosen == ports.len() {
                return Self(ports);
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let port = low + (state % u64::from(below - low)) as u16;
            // Held until all are chosen, so that none is chosen twice.
            if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                held.push(listener);
                ports[chosen] = port;
                chosen += 1;
            }
        }
        assert!(
            chosen == ports.len(),
            "no ten free ports between {low} and {below}"
        );
        Self(ports)
    }

    pub fn s3(&self) -> u16 {
        self.0[6]
    }

    pub fn filer(&self) -> u16 {
        self.0[4]
    }
}

/// The S3 identities file for one identity allowed everything.
pub fn weed_identities(name: &str, access_key: &str, secret_key: &str) -> String {
    serde_json::json!({
        "identities": [{
            "name": name,
            "credentials": [{ "accessKey": access_key, "secretKey": secret_key }],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]
    })
    .to_string()
}

/// `weed mini` on loopback only, serving `bucket` (created at start) from `data`, with SigV4
/// enforced for the identities in the file `identities`.
pub fn weed_mini(
    weed: &Path,
    data: &Path,
    identities: &Path,
    bucket: &str,
    ports: &WeedPorts,
) -> Command {
    let mut command = Command::new(weed);
    command
        .arg("mini")
        .arg(format!("-dir={}", data.display()))
        .args([
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
        ])
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
        .args(
            WeedPorts::FLAGS
                .iter()
                .zip(ports.0)
                .map(|(flag, port)| format!("-{flag}={port}")),
        )
        .arg(format!("-s3.config={}", identities.display()))
        .arg(format!("-bucket={bucket}"))
        // Fixed capacity: left to itself, `weed mini` sizes volumes from the disk and, with
        // less free space than one volume, starts with none and accepts no write at all.
        .args(["-master.volumeSizeLimitMB=64", "-volume.max=64"]);
    command
}

/// Whether `weed mini` on `ports` serves `bucket`: unsigned requests are refused once S3 is up
/// and enforcing auth, and the bucket exists once the filer lists its directory (S3 cannot
/// tell that without signing).
pub fn weed_serves(ports: &WeedPorts, bucket: &str) -> bool {
    http_status(ports.s3(), &format!("/{bucket}")) == Some(403)
        && http_status(ports.filer(), &format!("/buckets/{bucket}/")) == Some(200)
}

/// Whether `weed mini` on `ports` can store a file: one written and removed through the filer.
/// A server that answers but cannot store (a full disk) would otherwise show up only as
/// uploads that never finish.
pub fn weed_stores(ports: &WeedPorts) -> bool {
    let probe = "/coredog-probe";
    let stored = http_request_status(ports.filer(), "PUT", probe, b"probe");
    let _ = http_request_status(ports.filer(), "DELETE", probe, b"");
    matches!(stored, Some(200 | 201))
}

/// Keys of the identity [`SeaweedFs`] lets write objects and nothing else.
pub const WRITE_ONLY_KEYS: (&str, &str) =
    ("AKIDCOREDOGWRITER", "coredog-test-writer-key-0123456789");

/// A real S3 server: SeaweedFS (`weed mini`) on loopback, with SigV4 authentication enforced
/// for one identity allowed everything and one that may only write ([`WRITE_ONLY_KEYS`]), and
/// one bucket created at start. Stopped when dropped; [`SeaweedFs::stop`]
/// and [`SeaweedFs::restart`] take it down and bring it back with the same data and ports, for
/// outage tests.
pub struct SeaweedFs {
    process: Option<ChildGuard>,
    dir: tempfile::TempDir,
    ports: WeedPorts,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl SeaweedFs {
    pub fn start(bucket: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("no temp dir: {err}"));
        let access_key = "AKIDCOREDOGTEST".to_owned();
        let secret_key = "coredog-test-secret-key-0123456789".to_owned();
        let mut identities: serde_json::Value =
            serde_json::from_str(&weed_identities("coredog", &access_key, &secret_key))
                .unwrap_or_else(|err| panic!("identities are not JSON: {err}"));
        if let Some(all) = identities["identities"].as_array_mut() {
            let (writer_key, writer_secret) = WRITE_ONLY_KEYS;
            all.push(serde_json::json!({
                "name": "writer",
                "credentials": [{ "accessKey": writer_key, "secretKey": writer_secret }],
                "actions": ["Write"],
            }));
        }
        std::fs::write(dir.path().join("identities.json"), identities.to_string())
            .unwrap_or_else(|err| panic!("cannot write identities: {err}"));
        let mut server = Self {
            process: None,
            dir,
            ports: WeedPorts::free(),
            bucket: bucket.to_owned(),
            access_key,
            secret_key,
        };
        server.restart();
        server
    }

    pub fn s3_port(&self) -> u16 {
        self.ports.s3()
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port())
    }

    /// A CoreDog `StorageConfig` block for this server.
    pub fn storage_config_yaml(&self, store_dir: &str) -> String {
        format!(
            "StorageConfig:\n  protocol: s3\n  s3AccesskeyID: {}\n  s3SecretAccessKey: {}\n  s3Region: us-east-1\n  S3Bucket: {}\n  S3Endpoint: {}\n  StoreDir: {store_dir}\n",
            self.access_key,
            self.secret_key,
            self.bucket,
            self.endpoint()
        )
    }

    /// Takes the server down (its data stays).
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts (or starts again) the server and waits until S3 answers.
    pub fn restart(&mut self) {
        self.process = None;
        let data = self.dir.path().join("data");
        let _ = std::fs::create_dir_all(&data);
        let mut command = weed_mini(
            &tool("weed"),
            &data,
            &self.dir.path().join("identities.json"),
            &self.bucket,
            &self.ports,
        );
        let (guard, _) = spawn_until("seaweedfs", &mut command, "S3", Duration::from_secs(30));
        self.process = Some(guard);
        let s3 = self.s3_port();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !weed_serves(&self.ports, &self.bucket) {
            assert!(
                std::time::Instant::now() < deadline,
                "SeaweedFS S3 did not come up on port {s3}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // S3 answers before a volume server restarted on old data has registered again: a
        // store fails for a moment then.
        while !weed_stores(&self.ports) {
            assert!(
                std::time::Instant::now() < deadline,
                "SeaweedFS on port {s3} cannot store a file; free disk under {} is the usual cause",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kubernetes_validate_refuses_what_kubernetes_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        let bad = dir.path().join("bad.json");
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"b","volumeMounts":[{"name":"v","mountPath":"/c","subPathExpr":"$(X)/a"}]}],"volumes":[{"name":"v","hostPath":{"path":"/d","type":"DirectoryOrCreate"}}]}}"#;
        std::fs::write(&good, pod).unwrap();
        std::fs::write(&bad, pod.replace("subPathExpr", "subPathExpression")).unwrap();
        assert_eq!(super::kubernetes_validate("1.30.0", &[good]), Ok(()));
        let report = super::kubernetes_validate("1.30.0", &[bad]).unwrap_err();
        assert!(report.contains("subPathExpression"), "{report}");
    }

    #[test]
    fn logfmt_values() {
        let line = r#"time=1 level=info msg="webhook serving" address=127.0.0.1:8443 note="a b""#;
        assert_eq!(
            super::logfmt_value(line, "address").as_deref(),
            Some("127.0.0.1:8443")
        );
        assert_eq!(super::logfmt_value(line, "note").as_deref(), Some("a b"));
        assert_eq!(super::logfmt_value(line, "missing"), None);
    }
}

/// Log lines of this thread, kept for a test to read: `tracing` events at `level` and above,
/// plain text, while the guard lives. A current-thread tokio runtime's tasks log here too.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn start(level: tracing::Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut kept) = self.0.lock() {
            kept.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
