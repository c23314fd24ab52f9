//! The failure matrix: what must hold when things go wrong, measured on the real binaries.
//!
//! - the watcher killed with SIGKILL at random moments while shipping 50 cores of mixed sizes,
//!   restarted each time: every core stored exactly once, sha256-verified, none deleted early;
//! - the S3 server down for 60 s: nothing lost, the backlog drains, one failure notice;
//! - 10,000 files created in a few seconds across many pod directories (inotify overflows):
//!   every core found;
//! - hostile tenants (symlinks to host files and to the watcher's own config and token, FIFOs,
//!   device nodes, a file that never stops growing, non-ELF files, wrong depths, names with
//!   newlines and non-UTF-8 bytes): none shipped or deleted, the watcher stays healthy;
//! - the webhook under 100,000 fuzzed AdmissionReviews and annotation values: no panic, no denial.
//!
//! The figures are printed as a table at the end, and written to
//! `target/failure-matrix.txt`, which `.ci/run` prints.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coredog_core::config::Config;
use coredog_core::record::DumpRecord;
use coredog_store::Store;
use coredog_tests::{ChildGuard, SeaweedFs, logfmt_value, spawn_until};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first (.ci/run does)",
        path.display()
    );
    path
}

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// An ELF core header followed by `size` bytes, written outside the watched tree.
fn synthetic_core(path: &Path, size: usize, seed: u64) -> String {
    let mut bytes = vec![0u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2;
    bytes[5] = 1;
    bytes[16] = 4;
    let mut rng = Rng(seed | 1);
    bytes.extend((0..size).map(|i| if i % 512 < 64 { rng.next() as u8 } else { 0 }));
    std::fs::write(path, &bytes).unwrap();
    hex::encode(Sha256::digest(&bytes))
}

struct Node {
    s3: SeaweedFs,
    root: tempfile::TempDir,
    scratch: tempfile::TempDir,
    config_path: PathBuf,
    store: Store,
    _config_dir: tempfile::TempDir,
}

fn node(extra: &str) -> Node {
    let s3 = SeaweedFs::start("dumps");
    let config_dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}  DeleteLocalCorefile: true\n{extra}",
        s3.storage_config_yaml("corefiles")
    );
    let config_path = config_dir.path().join("config.yaml");
    std::fs::write(&config_path, &yaml).unwrap();
    let store = Store::from_config(&Config::from_yaml(&yaml).unwrap().storage).unwrap();
    Node {
        s3,
        root: tempfile::tempdir().unwrap(),
        scratch: tempfile::tempdir().unwrap(),
        config_path,
        store,
        _config_dir: config_dir,
    }
}

fn start_watcher(node: &Node) -> (ChildGuard, SocketAddr) {
    let mut command = Command::new(workspace_binary("coredog"));
    command
        .args([
            "watcher",
            "--listen",
            "127.0.0.1:0",
            "--node-name",
            "node-1",
            "--config",
        ])
        .arg(&node.config_path)
        .arg("--dir")
        .arg(node.root.path())
        .env("RUST_LOG", "warn,coredog=info");
    let (guard, line) = spawn_until(
        "watcher",
        &mut command,
        "watcher serving metrics",
        Duration::from_secs(20),
    );
    (
        guard,
        logfmt_value(&line, "address").unwrap().parse().unwrap(),
    )
}

fn container_dir(root: &Path, namespace: &str, pod: &str) -> PathBuf {
    let dir = root.join(namespace).join(pod).join("app");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every object under `prefix`: dump keys and the records.
async fn stored(store: &Store, prefix: &str) -> (Vec<String>, Vec<DumpRecord>) {
    let (mut dumps, mut records) = (Vec::new(), Vec::new());
    let mut next = None;
    loop {
        let Ok(page) = store.list_page(prefix, next.as_deref()).await else {
            return (dumps, records);
        };
        for object in page.objects {
            if object.key.ends_with(".json") {
                if let Ok(bytes) = store.get_bytes(&object.key).await {
                    records.extend(DumpRecord::from_json(&bytes).ok());
                }
            } else {
                dumps.push(object.key);
            }
        }
        next = page.next;
        if next.is_none() {
            return (dumps, records);
        }
    }
}

async fn wait_for(
    store: &Store,
    prefix: &str,
    count: usize,
    timeout: Duration,
) -> (Vec<String>, Vec<DumpRecord>) {
    let deadline = Instant::now() + timeout;
    loop {
        let found = stored(store, prefix).await;
        if found.1.len() >= count || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn decompressed_sha256(store: &Store, record: &DumpRecord) -> String {
    let bytes = store.get_bytes(&record.key).await.unwrap();
    let original = match record.compression {
        coredog_core::object_key::Compression::Zstd => zstd::decode_all(bytes.as_slice()).unwrap(),
        coredog_core::object_key::Compression::None => bytes,
    };
    hex::encode(Sha256::digest(&original))
}

struct Row {
    scenario: &'static str,
    figure: String,
    ok: bool,
}

async fn kills_during_shipping() -> Row {
    let node = node("  partSizeMiB: 5\n  partsInFlight: 1\nWatcher:\n  uploadConcurrency: 2\n");
    let mut rng = Rng(0x5eed);
    let mut expected: BTreeMap<PathBuf, String> = BTreeMap::new();
    for index in 0..50 {
        let size = match index % 5 {
            0 => 30 * 1024 * 1024,
            1 => 8 * 1024 * 1024,
            _ => 64 * 1024 + rng.below(1024 * 1024) as usize,
        };
        let dir = container_dir(node.root.path(), "kill", &format!("pod-{}", index % 7));
        let scratch = node.scratch.path().join(format!("core.{index}"));
        let sha = synthetic_core(&scratch, size, index);
        let target = dir.join(format!("core.app.{index}"));
        std::fs::rename(&scratch, &target).unwrap();
        expected.insert(target, sha);
    }
    let mut kills = 0;
    let started = Instant::now();
    // Kill at random moments for a while (a restarted watcher first lets swept files settle for
    // 2 s, so the pauses are longer than that), then let the last one finish.
    while started.elapsed() < Duration::from_secs(75) {
        let (watcher, _) = start_watcher(&node);
        tokio::time::sleep(Duration::from_millis(2500 + rng.below(4000))).await;
        watcher.signal("KILL");
        drop(watcher);
        kills += 1;
        // No file may be gone without its record.
        let (_, records) = stored(&node.store, "corefiles/kill/").await;
        let stored_paths: Vec<&str> = records.iter().map(|r| r.host_path.as_str()).collect();
        for path in expected.keys() {
            if !path.exists() {
                assert!(
                    stored_paths.contains(&path.to_str().unwrap()),
                    "{} deleted before it was stored",
                    path.display()
                );
            }
        }
    }
    let (_last, _) = start_watcher(&node);
    let (dumps, records) = wait_for(
        &node.store,
        "corefiles/kill/",
        expected.len(),
        Duration::from_secs(180),
    )
    .await;
    let mut verified = 0;
    let by_path: HashMap<&str, &DumpRecord> =
        records.iter().map(|r| (r.host_path.as_str(), r)).collect();
    for (path, sha) in &expected {
        let Some(record) = by_path.get(path.to_str().unwrap()) else {
            continue;
        };
        if &record.sha256 == sha && decompressed_sha256(&node.store, record).await == *sha {
            verified += 1;
        }
    }
    let once = dumps.len() == expected.len() && records.len() == expected.len();
    // A killed upload is aborted by the one that replaces it: no parts are left to bill.
    let Store::S3(s3) = &node.store else {
        panic!("the failure matrix runs against S3")
    };
    let unfinished = s3
        .unfinished_uploads("corefiles/kill/")
        .await
        .unwrap()
        .len();
    Row {
        scenario: "watcher SIGKILLed while shipping 50 cores",
        figure: format!(
            "{verified}/50 stored once and verified after {kills} kills ({} objects, {unfinished} unfinished uploads left)",
            dumps.len() + records.len()
        ),
        ok: verified == 50 && once && unfinished == 0,
    }
}

async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let notices: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = notices.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, notices)
}

async fn storage_outage() -> Row {
    let (address, notices) = receiver().await;
    let mut node = node(&format!(
        "NoticeChannel:\n  - chan: webhook\n    webhookurl: http://{address}/hook\nWatcher:\n  failureNoticeAfterSeconds: 20\n"
    ));
    let (_watcher, _) = start_watcher(&node);
    node.s3.stop();
    let mut expected = BTreeMap::new();
    for index in 0..10 {
        let dir = container_dir(node.root.path(), "outage", &format!("pod-{index}"));
        let scratch = node.scratch.path().join(format!("core.{index}"));
        let sha = synthetic_core(&scratch, 256 * 1024, 100 + index);
        std::fs::rename(&scratch, dir.join("core")).unwrap();
        expected.insert(dir.join("core"), sha);
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let kept = expected.keys().filter(|path| path.exists()).count();
    node.s3.restart();
    let drain_started = Instant::now();
    let (_, records) = wait_for(
        &node.store,
        "corefiles/outage/",
        expected.len(),
        Duration::from_secs(240),
    )
    .await;
    let drained_in = drain_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failure_notices = notices
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n["event"] == "coredump.upload_failing")
        .count();
    let verified = records
        .iter()
        .filter(|r| expected.values().any(|sha| sha == &r.sha256))
        .count();
    Row {
        scenario: "S3 down for 60 s with 10 cores waiting",
        figure: format!(
            "{kept}/10 kept while down, {verified}/10 stored after recovery in {:.0} s, {failure_notices} failure notice(s) for 10 files",
            drained_in.as_secs_f64()
        ),
        ok: kept == 10 && verified == 10 && (1..=10).contains(&failure_notices),
    }
}

async fn file_storm() -> Row {
    let node =
        node("  compression: off\nWatcher:\n  uploadConcurrency: 8\n  rescanIntervalSeconds: 10\n");
    let (_watcher, _) = start_watcher(&node);
    let files = 10_000;
    let mut header = vec![0u8; 64];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = 2;
    header[5] = 1;
    header[16] = 4;
    let created = Instant::now();
    for index in 0..files {
        let dir = container_dir(node.root.path(), "storm", &format!("pod-{}", index % 200));
        let mut bytes = header.clone();
        bytes.extend((index as u64).to_le_bytes());
        std::fs::write(dir.join(format!("core.app.{index}")), bytes).unwrap();
    }
    let created_in = created.elapsed();
    let (_, records) = wait_for(
        &node.store,
        "corefiles/storm/",
        files,
        Duration::from_secs(600),
    )
    .await;
    Row {
        scenario: "10,000 files in 200 pod directories at once",
        figure: format!(
            "{}/{files} found and stored (created in {:.1} s, all stored {:.0} s later)",
            records.len(),
            created_in.as_secs_f64(),
            created.elapsed().as_secs_f64()
        ),
        ok: records.len() == files,
    }
}

async fn hostile_tenants() -> Row {
    let node = node("");
    let (watcher, metrics_address) = start_watcher(&node);
    let root = node.root.path();
    let dir = container_dir(root, "evil", "pod");
    let secret = node.scratch.path().join("shadow");
    std::fs::write(&secret, b"root:$6$x:19000::::::\n").unwrap();
    let mut planted: Vec<PathBuf> = Vec::new();
    let mut plant = |path: PathBuf| planted.push(path);
    for (name, target) in [
        ("core.shadow", secret.clone()),
        ("core.config", node.config_path.clone()),
        (
            "core.token",
            PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        ),
        ("core.etc", PathBuf::from("/etc/passwd")),
    ] {
        std::os::unix::fs::symlink(&target, dir.join(name)).unwrap();
        plant(dir.join(name));
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("core.fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    plant(dir.join("core.fifo"));
    if rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("core.null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(1, 3),
    )
    .is_ok()
    {
        plant(dir.join("core.null"));
    }
    std::fs::write(dir.join("core.txt"), b"plain text").unwrap();
    plant(dir.join("core.txt"));
    std::fs::write(root.join("evil/pod/core"), b"\x7fELF wrong depth").unwrap();
    plant(root.join("evil/pod/core"));
    std::fs::create_dir_all(dir.join("deeper")).unwrap();
    std::fs::write(dir.join("deeper/core"), b"\x7fELF too deep").unwrap();
    plant(dir.join("deeper/core"));
    for name in [&b"core.new\nline"[..], &b"core.\xff\xfe"[..]] {
        let path = dir.join(std::ffi::OsStr::from_bytes(name));
        synthetic_core(&path, 1024, 7);
        plant(path);
    }
    let growing = dir.join("core.growing");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (growing, stop) = (growing.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::File::create(&growing).unwrap();
            let mut header = vec![0u8; 64];
            header[..4].copy_from_slice(b"\x7fELF");
            header[4] = 2;
            header[5] = 1;
            header[16] = 4;
            file.write_all(&header).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                file.write_all(&[1u8; 8192]).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    plant(growing);
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let (dumps, _) = stored(&node.store, "corefiles/").await;
    let intact = planted
        .iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .count();
    let healthy = reqwest::get(format!("http://{metrics_address}/healthz"))
        .await
        .is_ok_and(|r| r.status() == 200);
    let alive = watcher.id() > 0 && healthy;
    let secret_intact = std::fs::read(&secret).unwrap() == b"root:$6$x:19000::::::\n";
    Row {
        scenario: "hostile tenants",
        figure: format!(
            "{} planted, {} shipped, {intact} left intact, watcher healthy: {alive}",
            planted.len(),
            dumps.len()
        ),
        ok: dumps.is_empty() && intact == planted.len() && alive && secret_intact,
    }
}

fn fuzzed_reviews() -> Row {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "generateName": "web-", "annotations": { "coredog.io/inject": "true", "coredog.io/path": "/corefile", "coredog.io/container": "app" } },
        "spec": { "containers": [{ "name": "app", "volumeMounts": [{ "name": "x", "mountPath": "/data" }] }, { "name": "b", "env": [{ "name": "A", "value": "1" }] }], "initContainers": [{ "name": "init" }], "volumes": [{ "name": "x", "emptyDir": {} }] }
    });
    let review = json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": { "group": "", "version": "v1", "kind": "Pod" }, "namespace": "ns", "operation": "CREATE", "object": pod } });
    let base = serde_json::to_vec(&review).unwrap();
    let mut rng = Rng(0xfa22);
    let annotation_values = [
        "true",
        "false",
        "",
        "/",
        "/corefile",
        "/etc",
        "/a/../b",
        "app",
        "app,,b",
        "\u{0}",
        "../../",
        "/corefile/",
        "x".repeat(5000).leak(),
    ];
    let (mut answered, mut rejected, mut denied, mut panicked) = (0u32, 0u32, 0u32, 0u32);
    for round in 0..100_000u32 {
        let body = if round % 2 == 0 {
            let mut body = base.clone();
            for _ in 0..1 + rng.below(6) {
                let at = rng.below(body.len() as u64) as usize;
                body[at] = rng.next() as u8;
            }
            body
        } else {
            let mut value = review.clone();
            for key in [
                "coredog.io/inject",
                "coredog.io/path",
                "coredog.io/container",
            ] {
                let pick = rng.below(annotation_values.len() as u64 + 1) as usize;
                let annotations = &mut value["request"]["object"]["metadata"]["annotations"];
                match annotation_values.get(pick) {
                    Some(text) => annotations[key] = json!(text),
                    None => annotations[key] = json!(format!("{:x}", rng.next())),
                }
            }
            serde_json::to_vec(&value).unwrap()
        };
        match std::panic::catch_unwind(|| {
            coredog::webhook::review::review(&body, "/data/coredog-system/dumps")
        }) {
            Ok(Ok(decision)) => {
                answered += 1;
                if !decision.review.response.allowed {
                    denied += 1;
                }
            }
            Ok(Err(_)) => rejected += 1,
            Err(_) => panicked += 1,
        }
    }
    Row {
        scenario: "webhook: 100,000 fuzzed AdmissionReviews",
        figure: format!(
            "{answered} answered, {rejected} not reviews (400), {denied} denied, {panicked} panics"
        ),
        ok: denied == 0 && panicked == 0 && answered > 50_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_matrix() {
    let mut rows = vec![fuzzed_reviews()];
    rows.push(hostile_tenants().await);
    rows.push(kills_during_shipping().await);
    rows.push(storage_outage().await);
    rows.push(file_storm().await);
    let mut table = String::from("failure matrix\n");
    for row in &rows {
        table.push_str(&format!(
            "  {} {:<44} {}\n",
            if row.ok { "ok  " } else { "FAIL" },
            row.scenario,
            row.figure
        ));
    }
    println!("{table}");
    let target = workspace_binary("coredog")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("failure-matrix.txt");
    let _ = std::fs::write(target, &table);
    assert!(rows.iter().all(|row| row.ok), "{table}");
}
