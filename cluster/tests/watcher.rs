//! The real `coredog watcher` binary against a real S3 server (SeaweedFS, SigV4 enforced), with
//! cores written by the kernel, a real HTTP receiver for notifications, and hostile tenants.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coredog_core::config::Config;
use coredog_core::record::DumpRecord;
use coredog_store::Store;
use coredog_tests::{ChildGuard, SeaweedFs, WRITE_ONLY_KEYS, logfmt_value, spawn_until};
use sha2::{Digest, Sha256};

/// An HTTP server that records every POST body (a generic `webhook` notice channel).
struct Receiver {
    address: SocketAddr,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let seen = bodies.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    if let Ok(value) = serde_json::from_slice(&body) {
                        seen.lock().unwrap().push(value);
                    }
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            bodies,
            _server: server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

struct Setup {
    s3: SeaweedFs,
    root: tempfile::TempDir,
    config_path: PathBuf,
    store: Store,
    _config_dir: tempfile::TempDir,
}

fn setup(receiver: &Receiver, extra: &str) -> Setup {
    setup_with_keys(receiver, extra, None)
}

/// The watcher's configuration with other S3 keys than the server's all-powerful ones; the
/// setup's `store` keeps those, to look at what was stored.
fn setup_with_keys(receiver: &Receiver, extra: &str, keys: Option<(&str, &str)>) -> Setup {
    let s3 = SeaweedFs::start("dumps");
    let root = tempfile::tempdir().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let store = Store::from_config(
        &Config::from_yaml(&s3.storage_config_yaml("corefiles"))
            .unwrap()
            .storage,
    )
    .unwrap();
    let mut yaml = s3.storage_config_yaml("corefiles");
    if let Some((access_key, secret_key)) = keys {
        yaml = yaml
            .replace(&s3.access_key, access_key)
            .replace(&s3.secret_key, secret_key);
    }
    yaml.push_str("  DeleteLocalCorefile: true\n");
    yaml.push_str(&format!(
        "NoticeChannel:\n  - chan: webhook\n    webhookurl: {}\nWatcher:\n  failureNoticeAfterSeconds: 2\n  rescanIntervalSeconds: 5\n",
        receiver.url()
    ));
    yaml.push_str(extra);
    let config_path = config_dir.path().join("config.yaml");
    std::fs::write(&config_path, &yaml).unwrap();
    Config::from_yaml(&yaml).unwrap();
    Setup {
        s3,
        root,
        config_path,
        store,
        _config_dir: config_dir,
    }
}

fn start_watcher(setup: &Setup) -> (ChildGuard, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coredog"));
    command
        .args([
            "watcher",
            "--listen",
            "127.0.0.1:0",
            "--node-name",
            "node-1",
            "--config",
        ])
        .arg(&setup.config_path)
        .arg("--dir")
        .arg(setup.root.path());
    let (guard, line) = spawn_until(
        "watcher",
        &mut command,
        "watcher serving metrics",
        Duration::from_secs(20),
    );
    let address = logfmt_value(&line, "address").unwrap().parse().unwrap();
    // The first sweep has set its watches once this line is out.
    (guard, address)
}

fn container_dir(root: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    let dir = root.join(namespace).join(pod).join(container);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The seed's crash test: a shell with `ulimit -c unlimited` that kills itself with SIGSEGV in
/// `dir`, so the kernel writes `core` there (this machine's core_pattern is `core`).
fn crash_in(dir: &Path) {
    let status = Command::new("bash")
        .arg("-c")
        .arg("ulimit -c unlimited; kill -11 $$")
        .current_dir(dir)
        .status()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(11)
    );
}

/// A core made by the kernel outside the watched tree, with its sha256.
fn kernel_core(scratch: &Path) -> (PathBuf, String) {
    crash_in(scratch);
    let path = scratch.join("core");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    (path, hex::encode(Sha256::digest(&bytes)))
}

async fn try_records_under(
    store: &Store,
    prefix: &str,
) -> Result<Vec<DumpRecord>, coredog_store::StoreError> {
    let mut records = Vec::new();
    let mut next = None;
    loop {
        let page = store.list_page(prefix, next.as_deref()).await?;
        for object in &page.objects {
            if object.key.ends_with(".json") {
                records.push(DumpRecord::from_json(&store.get_bytes(&object.key).await?).unwrap());
            }
        }
        next = page.next;
        if next.is_none() {
            return Ok(records);
        }
    }
}

async fn records_under(store: &Store, prefix: &str) -> Vec<DumpRecord> {
    try_records_under(store, prefix).await.unwrap()
}

async fn wait_for_records(
    store: &Store,
    prefix: &str,
    count: usize,
    timeout: Duration,
) -> Vec<DumpRecord> {
    let deadline = Instant::now() + timeout;
    loop {
        // A server that was just restarted may not know its bucket yet.
        let records = try_records_under(store, prefix).await.unwrap_or_default();
        if records.len() >= count {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} records under {prefix} after {timeout:?}",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The stored dump, decompressed, and its sha256.
async fn stored_sha256(store: &Store, record: &DumpRecord) -> String {
    let stored = store.get_bytes(&record.key).await.unwrap();
    assert_eq!(stored.len() as u64, record.stored_size);
    let original = match record.compression {
        coredog_core::object_key::Compression::Zstd => zstd::decode_all(stored.as_slice()).unwrap(),
        coredog_core::object_key::Compression::None => stored,
    };
    assert_eq!(original.len() as u64, record.size);
    hex::encode(Sha256::digest(&original))
}

/// Waits for the one core of `dir` (namespace `shop`) to be stored, checks the stored bytes
/// against its record, then waits for the local file to go.
async fn stored_intact_then_removed(setup: &Setup, dir: &Path, within: Duration) {
    let records = wait_for_records(&setup.store, "corefiles/shop/", 1, within).await;
    assert_eq!(
        stored_sha256(&setup.store, &records[0]).await,
        records[0].sha256
    );
    wait_until(
        "the local core to be deleted",
        Duration::from_secs(10),
        || !dir.join("core").exists(),
    )
    .await;
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_core_is_shipped_described_deleted_and_announced() {
    let receiver = Receiver::start().await;
    let setup = setup(&receiver, "");
    let (_watcher, _) = start_watcher(&setup);
    let dir = container_dir(setup.root.path(), "shop", "web-7d9f8b6c5d-x2x4z", "app");

    crash_in(&dir);
    let records =
        wait_for_records(&setup.store, "corefiles/shop/", 1, Duration::from_secs(30)).await;
    let record = &records[0];
    assert_eq!(
        (
            record.namespace.as_str(),
            record.pod.as_str(),
            record.container.as_str()
        ),
        ("shop", "web-7d9f8b6c5d-x2x4z", "app")
    );
    assert_eq!(record.node, "node-1");
    assert_eq!(record.signal, Some(11));
    assert_eq!(record.signal_name.as_deref(), Some("SIGSEGV"));
    assert!(record.exe.ends_with("bash"), "{}", record.exe);
    assert!(record.pid.is_some_and(|pid| pid > 0));
    assert!(
        record
            .cmdline
            .as_deref()
            .is_some_and(|c| c.contains("ulimit")),
        "{:?}",
        record.cmdline
    );
    assert!(
        record
            .key
            .starts_with("corefiles/shop/web-7d9f8b6c5d-x2x4z/"),
        "{}",
        record.key
    );
    assert!(
        record.key.ends_with(&format!(
            "_app_bash_{}_{}.core.zst",
            record.pid.unwrap(),
            record.id
        )),
        "{}",
        record.key
    );
    assert!(
        record.stored_size < record.size,
        "compressed: {} < {}",
        record.stored_size,
        record.size
    );
    assert_eq!(stored_sha256(&setup.store, record).await, record.sha256);

    wait_until(
        "the local core to be deleted",
        Duration::from_secs(10),
        || !dir.join("core").exists(),
    )
    .await;
    wait_until("the notification", Duration::from_secs(10), || {
        !receiver.bodies().is_empty()
    })
    .await;
    let notice = &receiver.bodies()[0];
    assert_eq!(notice["record"]["id"], record.id.as_str());
    assert!(
        notice["downloadUrl"]
            .as_str()
            .unwrap()
            .contains("X-Amz-Signature"),
        "{notice}"
    );
}

/// Keys that may store objects but not read them (a common least-privilege policy) cannot
/// tell whether a dump was stored before a restart: the watcher stores it as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_may_only_write_still_ship_a_core() {
    let receiver = Receiver::start().await;
    let setup = setup_with_keys(&receiver, "", Some(WRITE_ONLY_KEYS));
    let (_watcher, _) = start_watcher(&setup);
    let dir = container_dir(setup.root.path(), "shop", "web-1", "app");

    crash_in(&dir);
    stored_intact_then_removed(&setup, &dir, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_moved_in_is_stored_byte_for_byte() {
    let receiver = Receiver::start().await;
    let setup = setup(&receiver, "");
    let (_watcher, _) = start_watcher(&setup);
    let scratch = tempfile::tempdir().unwrap();
    let (core, sha256) = kernel_core(scratch.path());
    let dir = container_dir(setup.root.path(), "jobs", "batch-abcde", "worker");
    std::fs::rename(core, dir.join("core.bash.4242.batch-abcde.1764237612")).unwrap();

    let records =
        wait_for_records(&setup.store, "corefiles/jobs/", 1, Duration::from_secs(30)).await;
    assert_eq!(records[0].sha256, sha256);
    assert_eq!(records[0].hostname.as_deref(), Some("batch-abcde"));
    assert_eq!(records[0].time.as_second(), 1_764_237_612);
    assert_eq!(stored_sha256(&setup.store, &records[0]).await, sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_are_never_read_shipped_or_deleted() {
    let receiver = Receiver::start().await;
    let setup = setup(&receiver, "");
    let (_watcher, metrics_address) = start_watcher(&setup);
    let root = setup.root.path();
    let dir = container_dir(root, "evil", "pod", "app");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), b"root:$6$secret:19000:0:99999:7:::\n").unwrap();

    std::os::unix::fs::symlink(secret.path(), dir.join("core.shadow")).unwrap();
    std::os::unix::fs::symlink(&setup.config_path, dir.join("core.config")).unwrap();
    std::os::unix::fs::symlink(
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        dir.join("core.token"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("core.fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    std::fs::write(dir.join("core.txt"), b"not an ELF core at all\n").unwrap();
    std::fs::write(
        root.join("evil").join("pod").join("core"),
        b"\x7fELF at the wrong depth",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("deeper")).unwrap();
    std::fs::write(dir.join("deeper").join("core"), b"\x7fELF too deep").unwrap();
    let weird_name = std::ffi::OsStr::from_bytes(b"core.\xff\nname");
    std::fs::write(dir.join(weird_name), b"\x7fELF\x02\x01\x01").unwrap();
    // A file that never stops growing.
    let growing = dir.join("core.growing");
    let stop_growing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (growing, stop) = (growing.clone(), stop_growing.clone());
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
                file.write_all(&[7u8; 4096]).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // A real core among them still ships: the watcher stayed healthy and kept going.
    crash_in(&dir);
    let records =
        wait_for_records(&setup.store, "corefiles/evil/", 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_growing.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();

    let records_now = records_under(&setup.store, "corefiles/").await;
    assert_eq!(
        records_now.len(),
        1,
        "only the real core is stored: {:?}",
        records_now.iter().map(|r| &r.key).collect::<Vec<_>>()
    );
    assert!(records[0].exe.ends_with("bash"));
    for name in [
        "core.shadow",
        "core.config",
        "core.token",
        "etc",
        "core.fifo",
        "core.txt",
        "core.growing",
    ] {
        assert!(
            dir.join(name).symlink_metadata().is_ok(),
            "{name} must not be deleted"
        );
    }
    assert!(dir.join(weird_name).exists());
    assert!(root.join("evil/pod/core").exists() && dir.join("deeper/core").exists());
    assert_eq!(
        std::fs::read(secret.path()).unwrap(),
        b"root:$6$secret:19000:0:99999:7:::\n"
    );

    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{metrics_address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = client
        .get(format!("http://{metrics_address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["symlink", "not_regular", "not_core", "layout"] {
        assert!(
            metrics.contains(&format!(
                "coredog_watcher_files_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason} missing:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("coredog_watcher_cores_uploaded_total 1"),
        "{metrics}"
    );
}

use std::os::unix::ffi::OsStrExt;

/// A synthetic ELF core (header only, then `size` bytes of varied data) written outside the tree.
fn synthetic_core(scratch: &Path, name: &str, size: usize) -> (PathBuf, String) {
    let mut bytes = vec![0u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2;
    bytes[5] = 1;
    bytes[16] = 4;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ size as u64;
    bytes.extend((0..size).map(|i| {
        if i % 4096 < 1024 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        } else {
            0
        }
    }));
    let path = scratch.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, hex::encode(Sha256::digest(&bytes)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_whose_writing_pauses_is_shipped_whole_once_closed() {
    use std::io::Write as _;
    let receiver = Receiver::start().await;
    let setup = setup(&receiver, "");
    let (watcher, _) = start_watcher(&setup);
    // The lease that asks whether a core is still being written is broken with SIGIO, whose
    // default action would end the watcher.
    watcher.signal("IO");
    let scratch = tempfile::tempdir().unwrap();
    let (core, sha256) = synthetic_core(scratch.path(), "whole", 4 * 1024 * 1024);
    let bytes = std::fs::read(core).unwrap();
    let dir = container_dir(setup.root.path(), "shop", "slow-0", "app");
    let local = dir.join("core.slow.9.host.1764237612");
    // As the kernel does while it walks a large sparse mapping: half written, then nothing
    // for longer than a file found by a scan takes to settle, and longer than a rescan.
    let mut writer = std::fs::File::create(&local).unwrap();
    writer.write_all(&bytes[..bytes.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        records_under(&setup.store, "corefiles/shop/")
            .await
            .is_empty(),
        "a core still open for writing was stored"
    );
    assert!(local.exists());
    writer.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(writer);

    let records =
        wait_for_records(&setup.store, "corefiles/shop/", 1, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].sha256, sha256);
    assert_eq!(stored_sha256(&setup.store, &records[0]).await, sha256);
    wait_until(
        "the local core to be deleted",
        Duration::from_secs(10),
        || !local.exists(),
    )
    .await;
}

/// Uncompressed and in small parts, one at a time: an upload still running seconds later.
fn slow_upload_setup(receiver: &Receiver) -> Setup {
    let setup = setup(receiver, "");
    let yaml = std::fs::read_to_string(&setup.config_path).unwrap().replace(
        "  DeleteLocalCorefile: true\n",
        "  DeleteLocalCorefile: true\n  compression: off\n  partSizeMiB: 5\n  partsInFlight: 1\n",
    );
    std::fs::write(&setup.config_path, yaml).unwrap();
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_killed_during_an_upload_ships_the_core_exactly_once_after_restart() {
    let receiver = Receiver::start().await;
    let setup = slow_upload_setup(&receiver);
    let (watcher, _) = start_watcher(&setup);
    let scratch = tempfile::tempdir().unwrap();
    let (core, sha256) = synthetic_core(
        scratch.path(),
        "core.big.77.host.1764237612",
        120 * 1024 * 1024,
    );
    let dir = container_dir(setup.root.path(), "shop", "big-0", "app");
    let local = dir.join("core.big.77.host.1764237612");
    std::fs::rename(core, &local).unwrap();

    // Wait until parts are being uploaded, then kill -9.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        records_under(&setup.store, "corefiles/shop/")
            .await
            .is_empty(),
        "the upload finished before the kill"
    );
    watcher.signal("KILL");
    drop(watcher);
    assert!(local.exists(), "nothing is deleted before it is stored");

    let (_restarted, _) = start_watcher(&setup);
    let records =
        wait_for_records(&setup.store, "corefiles/shop/", 1, Duration::from_secs(90)).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].sha256, sha256);
    assert_eq!(stored_sha256(&setup.store, &records[0]).await, sha256);
    let objects = setup
        .store
        .list_page("corefiles/shop/", None)
        .await
        .unwrap()
        .objects;
    assert_eq!(objects.len(), 2, "one dump and one record: {objects:?}");
    wait_until(
        "the local core to be deleted",
        Duration::from_secs(10),
        || !local.exists(),
    )
    .await;
}

/// Stopped as a pod is (SIGTERM) in the middle of an upload: the upload finishes, is announced
/// and its file removed before the watcher exits, rather than being stored and never told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_stopped_during_an_upload_finishes_and_announces_it() {
    let receiver = Receiver::start().await;
    let setup = slow_upload_setup(&receiver);
    let (mut watcher, _) = start_watcher(&setup);
    let scratch = tempfile::tempdir().unwrap();
    let (core, sha256) = synthetic_core(
        scratch.path(),
        "core.big.78.host.1764237612",
        120 * 1024 * 1024,
    );
    let dir = container_dir(setup.root.path(), "shop", "big-1", "app");
    let local = dir.join("core.big.78.host.1764237612");
    std::fs::rename(core, &local).unwrap();

    // Stopped once the upload is under way (the core settled for 2 s, then a multipart upload
    // began), not yet stored.
    let Store::S3(s3) = &setup.store else {
        unreachable!("the set-up stores into SeaweedFS")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s3
        .unfinished_uploads("corefiles/shop/")
        .await
        .unwrap()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "no upload began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        records_under(&setup.store, "corefiles/shop/")
            .await
            .is_empty(),
        "the upload finished before the watcher was stopped"
    );
    watcher.signal("TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while watcher.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher never stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let records = records_under(&setup.store, "corefiles/shop/").await;
    assert_eq!(records.len(), 1, "stored before the watcher exited");
    assert_eq!(records[0].sha256, sha256);
    assert!(!local.exists(), "removed once stored");
    let notices = receiver.bodies();
    assert!(
        notices
            .iter()
            .any(|notice| notice["record"]["id"] == records[0].id.as_str()),
        "announced before the watcher exited: {notices:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_loses_nothing_and_is_announced_once() {
    let receiver = Receiver::start().await;
    let mut setup = setup(&receiver, "");
    let (_watcher, _) = start_watcher(&setup);
    setup.s3.stop();
    let dir = container_dir(setup.root.path(), "shop", "down-0", "app");
    crash_in(&dir);
    let failing = |bodies: &[serde_json::Value]| {
        bodies
            .iter()
            .filter(|b| b["event"] == "coredump.upload_failing")
            .count()
    };
    wait_until("the failure notice", Duration::from_secs(60), || {
        failing(&receiver.bodies()) >= 1
    })
    .await;
    assert!(
        dir.join("core").exists(),
        "the core stays while storage is down"
    );

    setup.s3.restart();
    stored_intact_then_removed(&setup, &dir, Duration::from_secs(120)).await;
    assert_eq!(
        failing(&receiver.bodies()),
        1,
        "announced once: {:?}",
        receiver.bodies()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_files_at_once_are_all_found() {
    let receiver = Receiver::start().await;
    let setup = setup(&receiver, "");
    let yaml = std::fs::read_to_string(&setup.config_path)
        .unwrap()
        .replace(
            "NoticeChannel:\n  - chan: webhook\n",
            "NoticeChannel:\n  - chan: webhook\n    keyword: nothing-matches\n",
        );
    std::fs::write(&setup.config_path, yaml).unwrap();
    let (_watcher, _) = start_watcher(&setup);
    let scratch = tempfile::tempdir().unwrap();
    let (template, _) = synthetic_core(scratch.path(), "template", 2048);
    let template = std::fs::read(template).unwrap();
    let files = 1500;
    for index in 0..files {
        let dir = container_dir(
            setup.root.path(),
            "storm",
            &format!("pod-{}", index % 50),
            "app",
        );
        let mut bytes = template.clone();
        bytes.extend((index as u32).to_le_bytes());
        std::fs::write(dir.join(format!("core.app.{index}")), bytes).unwrap();
    }
    let records = wait_for_records(
        &setup.store,
        "corefiles/storm/",
        files,
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(records.len(), files);
    wait_until(
        "every local core to be deleted",
        Duration::from_secs(30),
        || {
            (0..50).all(|pod| {
                std::fs::read_dir(setup.root.path().join(format!("storm/pod-{pod}/app")))
                    .unwrap()
                    .next()
                    .is_none()
            })
        },
    )
    .await;
}
