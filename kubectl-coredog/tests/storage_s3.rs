//! `list`, `info` and `fetch` as users run them, against a real S3 server (SeaweedFS, SigV4
//! enforced), with `--config FILE` and no cluster at all.

use std::path::Path;
use std::process::{Command, Output};

use coredog_core::config::Config;
use coredog_core::object_key::{Compression, CoreKey, DumpId, record_key_for};
use coredog_core::record::DumpRecord;
use coredog_store::Store;
use coredog_tests::SeaweedFs;
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};

fn kubectl_coredog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-coredog"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("the plugin runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Bytes that hardly compress.
fn core_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Whose a dump is, in namespace shop.
struct Shape<'a> {
    id: &'a str,
    pod: &'a str,
    time: &'a str,
    container: &'a str,
    exe: &'a str,
    node: &'a str,
}

impl<'a> Shape<'a> {
    fn of(id: &'a str, pod: &'a str, time: &'a str) -> Self {
        Self {
            id,
            pod,
            time,
            container: "app",
            exe: "/usr/bin/server",
            node: "node-1",
        }
    }
}

/// Stores a zstd dump and (unless `with_record` is false) its record, as the watcher does.
async fn store_dump(
    store: &Store,
    shape: &Shape<'_>,
    core: &[u8],
    with_record: bool,
) -> DumpRecord {
    let Shape {
        id,
        pod,
        time,
        container,
        exe,
        node,
    } = *shape;
    let key = CoreKey {
        store_dir: "corefiles".into(),
        namespace: "shop".into(),
        pod: pod.into(),
        time: time.parse().unwrap(),
        container: container.into(),
        exe: exe.into(),
        pid: 7,
        id: DumpId::parse(id).unwrap(),
        compression: Compression::Zstd,
    };
    let stored = zstd::encode_all(core, 1).unwrap();
    let record = DumpRecord {
        schema_version: 1,
        id: key.id.clone(),
        key: key.to_key(),
        time: key.time,
        uploaded_at: key.time,
        namespace: "shop".into(),
        pod: pod.into(),
        container: container.into(),
        pod_uid: None,
        node: node.into(),
        host_ip: None,
        image: None,
        labels: Default::default(),
        exe: exe.into(),
        pid: Some(7),
        signal: Some(6),
        signal_name: Some("SIGABRT".into()),
        cmdline: None,
        uid: None,
        hostname: None,
        size: core.len() as u64,
        stored_size: stored.len() as u64,
        sha256: hex::encode(Sha256::digest(core)),
        compression: Compression::Zstd,
        host_path: "/corefile/shop/web/app/core".into(),
    };
    store
        .put_bytes(&record.key, &stored, "application/zstd")
        .await
        .unwrap();
    if with_record {
        store
            .put_bytes(
                &record_key_for(&record.key),
                &record.to_json(),
                "application/json",
            )
            .await
            .unwrap();
    }
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_info_and_fetch_against_s3() {
    let server = SeaweedFs::start("dumps");
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yaml");
    let config_text = server.storage_config_yaml("corefiles");
    std::fs::write(&config_path, &config_text).unwrap();
    let config = Config::from_yaml(&config_text).unwrap();
    let store = Store::from_config(&config.storage).unwrap();

    // 20 MiB that hardly compress: three 8 MiB range reads, fetched in parallel.
    let big = core_bytes(20 * 1024 * 1024 + 17, 5);
    let record = store_dump(
        &store,
        &Shape::of("0123456789abcdef", "web-1", "2026-11-27T10:00:12Z"),
        &big,
        true,
    )
    .await;
    store_dump(
        &store,
        &Shape::of("89abcdef01234567", "web-2", "2026-11-27T11:00:00Z"),
        &core_bytes(10, 6),
        false,
    )
    .await;
    let config_arg = config_path.display().to_string();

    let output = kubectl_coredog(&["list", "-A", "--config", &config_arg]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "\
TIME                   NAMESPACE   POD     CONTAINER   EXE      SIG       SIZE       NODE           ID
2026-11-27T11:00:00Z   shop        web-2   app         server   -         -          (incomplete)   89abcdef01234567
2026-11-27T10:00:12Z   shop        web-1   app         server   SIGABRT   20.0 MiB   node-1         0123456789abcdef
"
    );

    // Without a kubeconfig there is no current namespace: every namespace is listed.
    let everywhere = kubectl_coredog(&["list", "--config", &config_arg]);
    assert_eq!(text(&everywhere.stdout), text(&output.stdout));

    let output = kubectl_coredog(&[
        "list",
        "-n",
        "shop",
        "--pod",
        "web-1",
        "-o",
        "json",
        "--config",
        &config_arg,
    ]);
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([serde_json::to_value(&record).unwrap()])
    );

    let output = kubectl_coredog(&["info", "0123", "-o", "json", "--config", &config_arg]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(DumpRecord::from_json(&output.stdout).unwrap(), record);

    let out = dir.path().join("web-1.core");
    let output = kubectl_coredog(&[
        "fetch",
        "0123",
        "-o",
        out.to_str().unwrap(),
        "--config",
        &config_arg,
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "{}: 20.0 MiB core of shop/web-1 app (SIGABRT), SHA-256 verified\n",
            out.display()
        )
    );
    assert!(
        std::fs::read(&out).unwrap() == big,
        "the fetched core is the stored one"
    );

    // A partial download left behind is continued.
    let stored = store
        .get_range(&record.key, 0, 9 * 1024 * 1024 - 1)
        .await
        .unwrap();
    let resumed = dir.path().join("resumed.core");
    std::fs::write(dir.path().join("resumed.core.part"), &stored).unwrap();
    let output = kubectl_coredog(&[
        "fetch",
        "0123456789abcdef",
        "-o",
        resumed.to_str().unwrap(),
        "--config",
        &config_arg,
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(std::fs::read(&resumed).unwrap() == big);
    assert!(!Path::new(&format!("{}.part", resumed.display())).exists());

    // A record that does not match the bytes: an error, and no file.
    let mut wrong = record.clone();
    wrong.sha256 = "11".repeat(32);
    store
        .put_bytes(
            &record_key_for(&record.key),
            &wrong.to_json(),
            "application/json",
        )
        .await
        .unwrap();
    let bad = dir.path().join("bad.core");
    let output = kubectl_coredog(&[
        "fetch",
        "0123",
        "-o",
        bad.to_str().unwrap(),
        "--config",
        &config_arg,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: dump 0123456789abcdef failed verification: its SHA-256 is "),
        "{stderr}"
    );
    assert!(stderr.contains("\nhint: "), "{stderr}");
    assert!(!bad.exists());

    // Wrong keys: one sentence and a hint.
    std::fs::write(
        &config_path,
        config_text.replace(&server.secret_key, "not-the-secret"),
    )
    .unwrap();
    let output = kubectl_coredog(&["list", "-A", "--config", &config_arg]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: cannot list the dumps: list objects corefiles/: Got HTTP 403: SignatureDoesNotMatch ("),
        "{stderr}"
    );
    assert!(
        stderr.contains("\nhint: the storage refused the credentials: check the keys"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_paging_and_damaged_bytes_against_s3() {
    let server = SeaweedFs::start("dumps");
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yaml");
    let config_text = server.storage_config_yaml("corefiles");
    std::fs::write(&config_path, &config_text).unwrap();
    let config = Config::from_yaml(&config_text).unwrap();
    let store = Store::from_config(&config.storage).unwrap();

    // More dumps than one ListObjectsV2 page holds, a minute apart, of two containers, two
    // executables and two nodes.
    const DUMPS: u64 = 1005;
    let base: jiff::Timestamp = "2026-11-27T00:00:00Z".parse().unwrap();
    let shapes: Vec<(String, String, String, &str, &str, &str)> = (0..DUMPS)
        .map(|i| {
            (
                format!("{:016x}", 0x1000_0000_0000_0000u64 + i),
                format!("web-{}", i % 4),
                (base + jiff::SignedDuration::from_secs(60 * i as i64)).to_string(),
                if i % 5 == 0 { "sidecar" } else { "app" },
                if i % 7 == 0 {
                    "/bin/worker"
                } else {
                    "/usr/bin/server"
                },
                if i % 3 == 0 { "node-2" } else { "node-1" },
            )
        })
        .collect();
    futures_util::stream::iter(&shapes)
        .for_each_concurrent(16, |(id, pod, time, container, exe, node)| {
            let store = &store;
            async move {
                let shape = Shape {
                    id,
                    pod,
                    time,
                    container,
                    exe,
                    node,
                };
                store_dump(store, &shape, id.as_bytes(), true).await;
            }
        })
        .await;
    let config_arg = config_path.display().to_string();
    let listed = |filters: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["list", "-o", "json", "--config", &config_arg];
        args.extend_from_slice(filters);
        let output = kubectl_coredog(&args);
        assert!(
            output.status.success(),
            "{filters:?}: {}",
            text(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let count = |rule: &dyn Fn(u64) -> bool| (0..DUMPS).filter(|&i| rule(i)).count();

    let all = listed(&["-A"]);
    assert_eq!(all.len(), DUMPS as usize, "every page is read");
    assert_eq!(all[0]["id"], shapes[DUMPS as usize - 1].0, "newest first");
    assert_eq!(
        listed(&["-A", "--container", "sidecar"]).len(),
        count(&|i| i % 5 == 0)
    );
    assert_eq!(
        listed(&["-A", "--exe", "worker"]).len(),
        count(&|i| i % 7 == 0)
    );
    assert_eq!(
        listed(&["-A", "--node", "node-2"]).len(),
        count(&|i| i % 3 == 0)
    );
    assert_eq!(
        listed(&["-n", "shop", "--pod", "web-1", "--exe", "server"]).len(),
        count(&|i| i % 4 == 1 && i % 7 != 0)
    );
    // At or after 10:00, before 12:00: minutes 600 to 719.
    assert_eq!(
        listed(&[
            "-A",
            "--since",
            "2026-11-27T10:00:00Z",
            "--until",
            "2026-11-27T12:00:00Z"
        ])
        .len(),
        120
    );
    let output = kubectl_coredog(&["list", "-A", "--config", &config_arg]);
    assert_eq!(text(&output.stdout).lines().count(), 51, "a table shows 50");
    assert!(
        text(&output.stderr).contains("showing the newest 50 of 1005 dumps; --limit 0 shows all"),
        "{}",
        text(&output.stderr)
    );

    // The stored bytes of one dump damaged in place, its size kept: fetched raw or not, the
    // damage is found and nothing is written.
    let victim = &all[10];
    let key = victim["key"].as_str().unwrap();
    let mut stored = store
        .get_range(key, 0, victim["storedSize"].as_u64().unwrap() - 1)
        .await
        .unwrap()
        .to_vec();
    let middle = stored.len() / 2;
    stored[middle] ^= 0x20;
    store
        .put_bytes(key, &stored, "application/zstd")
        .await
        .unwrap();
    for raw in [false, true] {
        let out = dir.path().join("damaged");
        let mut args = vec![
            "fetch",
            victim["id"].as_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--config",
            &config_arg,
        ];
        if raw {
            args.push("--raw");
        }
        let output = kubectl_coredog(&args);
        assert_eq!(output.status.code(), Some(1), "raw: {raw}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: dump {} failed verification: ",
                victim["id"].as_str().unwrap()
            )),
            "raw: {raw}: {stderr}"
        );
        assert!(!out.exists(), "raw: {raw}");
    }
}
