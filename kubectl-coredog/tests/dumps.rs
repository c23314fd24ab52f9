//! `list`, `info` and `fetch` over storage in memory: the tables and JSON they print, ID
//! prefixes, and fetch's parallel range reads, resume, decompression and verification.

mod stored;
mod support;

use std::path::Path;

use clap::Parser as _;
use coredog_core::object_key::{Compression, CoreKey, record_key_for};
use jiff::Timestamp;
use kubectl_coredog::cli::{Cli, Command, FetchArgs, InfoArgs, ListArgs};
use kubectl_coredog::dumps::{FetchScopes, fetch_command, info_command, list_command};
use kubectl_coredog::fetch::FetchOptions;
use kubectl_coredog::kube_client::Scope;
use kubectl_coredog::storage::memory::MemoryStorage;
use serde_json::{Value, json};
use stored::{STORE_DIR, Stored, dump, put};
use support::Captured;

/// Bytes that hardly compress and do not repeat.
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

/// Three dumps, the middle one without its record.
fn sample() -> (MemoryStorage, Vec<Stored>) {
    let storage = MemoryStorage::with_page_size(2);
    let dumps = vec![
        dump(
            "0123456789abcdef",
            ("shop", "web-7d9f-x2x4z", "app"),
            "2026-11-27T10:00:12Z",
            "node-1",
            core_bytes(5000, 1),
            Compression::Zstd,
        ),
        dump(
            "0129000000000000",
            ("shop", "web-7d9f-x2x4z", "app"),
            "2026-11-27T11:30:00Z",
            "node-1",
            core_bytes(100, 2),
            Compression::Zstd,
        ),
        dump(
            "fedcba9876543210",
            ("ops", "agent-0", "agent"),
            "2026-11-26T08:00:00Z",
            "node-2",
            core_bytes(3 * 1024 * 1024, 3),
            Compression::None,
        ),
    ];
    put(&storage, &dumps[0], true);
    put(&storage, &dumps[1], false);
    put(&storage, &dumps[2], true);
    (storage, dumps)
}

fn parse(args: &[&str]) -> Command {
    let mut argv = vec!["kubectl-coredog"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap().command
}

fn list_args(args: &[&str]) -> ListArgs {
    let mut all = vec!["list"];
    all.extend_from_slice(args);
    match parse(&all) {
        Command::List(args) => args,
        _ => unreachable!(),
    }
}

fn info_args(args: &[&str]) -> InfoArgs {
    let mut all = vec!["info"];
    all.extend_from_slice(args);
    match parse(&all) {
        Command::Info(args) => args,
        _ => unreachable!(),
    }
}

fn fetch_args(args: &[&str]) -> FetchArgs {
    let mut all = vec!["fetch"];
    all.extend_from_slice(args);
    match parse(&all) {
        Command::Fetch(args) => args,
        _ => unreachable!(),
    }
}

fn now() -> Timestamp {
    "2026-11-27T12:00:00Z".parse().unwrap()
}

async fn list(storage: &MemoryStorage, args: &[&str], scope: Scope) -> Captured {
    let mut captured = Captured::default();
    list_command(
        storage,
        STORE_DIR,
        &list_args(args),
        &scope,
        now(),
        &mut captured.console(),
    )
    .await
    .unwrap();
    captured
}

#[tokio::test]
async fn list_prints_a_table_newest_first_with_incomplete_dumps() {
    let (storage, _) = sample();
    let captured = list(&storage, &[], Scope::All).await;
    assert_eq!(
        captured.stdout(),
        "\
TIME                   NAMESPACE   POD              CONTAINER   EXE      SIG       SIZE      NODE           ID
2026-11-27T11:30:00Z   shop        web-7d9f-x2x4z   app         server   -         -         (incomplete)   0129000000000000
2026-11-27T10:00:12Z   shop        web-7d9f-x2x4z   app         server   SIGSEGV   4.9 KiB   node-1         0123456789abcdef
2026-11-26T08:00:00Z   ops         agent-0          agent       server   SIGSEGV   3.0 MiB   node-2         fedcba9876543210
"
    );
    assert_eq!(captured.stderr(), "");
}

#[tokio::test]
async fn list_wide_adds_key_stored_size_and_checksum() {
    let (storage, dumps) = sample();
    let captured = list(
        &storage,
        &[
            "-o", "wide", "--limit", "1", "--exe", "server", "--until", "1h",
        ],
        Scope::Namespace("shop".into()),
    )
    .await;
    let stored = coredog_core::template::human_bytes(dumps[0].stored.len() as u64);
    let header = "TIME                   NAMESPACE   POD              CONTAINER   EXE      SIG       SIZE      NODE     ID                 KEY";
    let stdout = captured.stdout();
    assert!(stdout.starts_with(header), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "   {}   {stored}   {}\n",
            dumps[0].record.key, dumps[0].record.sha256
        )),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 2);
    // Only the shop prefix was listed, and only the shown row's record read.
    let requests = storage.take_requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.starts_with("list "))
            .all(|r| r == "list corefiles/shop/"),
        "{requests:?}"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.starts_with("get "))
            .collect::<Vec<_>>(),
        [&format!("get {}.json", dumps[0].record.key)]
    );
}

#[tokio::test]
async fn list_json_is_an_array_of_records() {
    let (storage, dumps) = sample();
    let captured = list(
        &storage,
        &["-o", "json", "--since", "2026-11-27T00:00:00Z"],
        Scope::Namespace("shop".into()),
    )
    .await;
    let value: serde_json::Value = serde_json::from_str(&captured.stdout()).unwrap();
    let expected = serde_json::json!([
        {
            "id": "0129000000000000",
            "key": dumps[1].record.key,
            "time": "2026-11-27T11:30:00Z",
            "namespace": "shop",
            "pod": "web-7d9f-x2x4z",
            "container": "app",
            "exe": "server",
            "pid": 42,
            "storedSize": dumps[1].stored.len(),
            "compression": "zstd",
            "incomplete": true
        },
        serde_json::to_value(&dumps[0].record).unwrap()
    ]);
    assert_eq!(value, expected);
    for field in [
        "id",
        "key",
        "time",
        "namespace",
        "pod",
        "container",
        "node",
        "exe",
        "pid",
        "signal",
        "size",
        "sha256",
    ] {
        assert!(value[1].get(field).is_some(), "{field}");
    }
}

#[tokio::test]
async fn list_filters_on_the_node_read_records_and_say_when_rows_are_left_out() {
    let (storage, _) = sample();
    let captured = list(&storage, &["--node", "node-1"], Scope::All).await;
    assert_eq!(
        captured.stdout().lines().count(),
        2,
        "{}",
        captured.stdout()
    );
    assert!(captured.stdout().contains("0123456789abcdef"));
    let captured = list(&storage, &["--limit", "2"], Scope::All).await;
    assert_eq!(
        captured.stderr(),
        "showing the newest 2 of 3 dumps; --limit 0 shows all\n"
    );
    let captured = list(
        &storage,
        &["--pod", "nothing"],
        Scope::Namespace("shop".into()),
    )
    .await;
    assert_eq!(captured.stdout(), "");
    assert_eq!(captured.stderr(), "No dumps found in shop namespace.\n");
}

#[tokio::test]
async fn info_prints_the_record() {
    let (storage, dumps) = sample();
    let mut captured = Captured::default();
    info_command(
        &storage,
        STORE_DIR,
        &info_args(&["0123"]),
        &Scope::All,
        &mut captured.console(),
    )
    .await
    .unwrap();
    let stored = dumps[0].stored.len();
    assert_eq!(
        captured.stdout(),
        format!(
            "          ID: 0123456789abcdef
        Time: 2026-11-27T10:00:12Z
    Uploaded: 2026-11-27T10:00:12Z
         Pod: shop/web-7d9f-x2x4z
   Container: app
     Pod UID: 5f0c
        Node: node-1
     Host IP: 10.0.0.7
       Image: shop/web:1.2
      Labels: app=web
  Executable: /usr/bin/server
Command line: server --port 80
         PID: 42
         UID: 1000
    Hostname: web-7d9f-x2x4z
      Signal: 11 (SIGSEGV)
        Size: 4.9 KiB (5000 bytes)
      Stored: {} ({stored} bytes, compression zstd)
      SHA256: {}
         Key: {}
   Host path: /corefile/shop/web-7d9f-x2x4z/app/core.server.42
",
            coredog_core::template::human_bytes(stored as u64),
            dumps[0].record.sha256,
            dumps[0].record.key
        )
    );
    let mut captured = Captured::default();
    info_command(
        &storage,
        STORE_DIR,
        &info_args(&["fedcba", "-o", "yaml"]),
        &Scope::All,
        &mut captured.console(),
    )
    .await
    .unwrap();
    assert!(
        captured.stdout().contains("node: node-2\n"),
        "{}",
        captured.stdout()
    );
}

#[tokio::test]
async fn id_prefixes_must_be_unique() {
    let (storage, _) = sample();
    let mut captured = Captured::default();
    let err = info_command(
        &storage,
        STORE_DIR,
        &info_args(&["012"]),
        &Scope::All,
        &mut captured.console(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        kubectl_coredog::error::explain(&err).to_string(),
        "error: ID prefix 012 is ambiguous: it matches 2 dumps: 0129000000000000 (shop/web-7d9f-x2x4z, 2026-11-27T11:30:00Z), 0123456789abcdef (shop/web-7d9f-x2x4z, 2026-11-27T10:00:12Z)\nhint: give more characters of the ID"
    );
    let err = info_command(
        &storage,
        STORE_DIR,
        &info_args(&["fedc"]),
        &Scope::Namespace("shop".into()),
        &mut captured.console(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("no dump has an ID starting with fedc"));
}

fn small_chunks() -> FetchOptions {
    FetchOptions {
        chunk_size: 1000,
        in_flight: 4,
        ..FetchOptions::default()
    }
}

async fn fetch(
    storage: &MemoryStorage,
    args: &[&str],
    options: FetchOptions,
) -> anyhow::Result<Captured> {
    let mut captured = Captured::default();
    fetch_command(
        storage,
        STORE_DIR,
        &fetch_args(args),
        &FetchScopes {
            listing: Scope::Namespace("shop".into()),
            ids: Scope::All,
        },
        now(),
        options,
        &mut captured.console(),
    )
    .await
    .map(|()| captured)
}

fn ranges(storage: &MemoryStorage) -> Vec<String> {
    storage
        .take_requests()
        .into_iter()
        .filter(|r| r.starts_with("range "))
        .map(|r| r.rsplit(' ').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn fetch_decompresses_verifies_and_writes_atomically() {
    let (storage, dumps) = sample();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    let out_arg = out.display().to_string();
    storage.take_requests();
    let captured = fetch(&storage, &["0123", "-o", &out_arg], small_chunks())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), dumps[0].core);
    assert_eq!(
        captured.stdout(),
        format!("{out_arg}: 4.9 KiB core of shop/web-7d9f-x2x4z app (SIGSEGV), SHA-256 verified\n")
    );
    let stored = dumps[0].stored.len();
    let expected: Vec<String> = (0..stored)
        .step_by(1000)
        .map(|start| format!("{start}-{}", (start + 1000).min(stored) - 1))
        .collect();
    assert_eq!(ranges(&storage), expected);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        [std::ffi::OsString::from("core")],
        "no part or temporary file is left"
    );

    let err = fetch(&storage, &["0123", "-o", &out_arg], small_chunks())
        .await
        .unwrap_err();
    assert!(
        kubectl_coredog::error::explain(&err)
            .hint
            .unwrap()
            .contains("--force")
    );
    fetch(
        &storage,
        &["0123", "-o", &out_arg, "--force"],
        small_chunks(),
    )
    .await
    .unwrap();

    // Into a directory, as `cp` does: under the dump's own name.
    let into = dir.path().join("dumps");
    std::fs::create_dir(&into).unwrap();
    fetch(
        &storage,
        &["0123", "-o", into.to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap();
    let name = kubectl_coredog::fetch::default_file_name(&dumps[0].record, false);
    assert_eq!(std::fs::read(into.join(name)).unwrap(), dumps[0].core);
}

#[tokio::test]
async fn fetch_resumes_from_the_part_file() {
    let (storage, dumps) = sample();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("resumed.core");
    let part = dir.path().join("resumed.core.part");
    std::fs::write(&part, &dumps[0].stored[..2500]).unwrap();
    storage.take_requests();
    fetch(
        &storage,
        &["0123456789abcdef", "-o", out.to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), dumps[0].core);
    let requested = ranges(&storage);
    assert_eq!(
        requested.first().map(String::as_str),
        Some("2500-3499"),
        "{requested:?}"
    );
    assert!(!part.exists());
}

#[tokio::test]
async fn a_part_file_of_other_bytes_is_discarded_and_the_fetch_starts_over() {
    let (storage, dumps) = sample();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    std::fs::write(dir.path().join("core.part"), vec![0x5a; 1200]).unwrap();
    storage.take_requests();
    fetch(
        &storage,
        &["0123", "-o", out.to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), dumps[0].core);
    // The download may have begun before the part file failed to decompress; the fetch that
    // produced the file started from the first byte.
    let ranges = ranges(&storage);
    assert!(ranges.iter().any(|range| range == "0-999"), "{ranges:?}");
}

#[tokio::test]
async fn an_id_with_filters_is_refused() {
    let (storage, _) = sample();
    let err = fetch(&storage, &["0123", "--pod", "web"], small_chunks())
        .await
        .unwrap_err();
    let explained = kubectl_coredog::error::explain(&err);
    assert!(
        explained.message.ends_with("an ID names one already"),
        "{explained:?}"
    );
    assert!(
        storage.take_requests().is_empty(),
        "nothing is read from storage"
    );
}

#[tokio::test]
async fn damaged_stored_bytes_are_detected_raw_or_not() {
    let (storage, dumps) = sample();
    let mut damaged = dumps[0].stored.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    storage.put(&dumps[0].record.key, damaged);
    let dir = tempfile::tempdir().unwrap();
    for args in [vec!["--raw"], vec![]] {
        let out = dir.path().join("core");
        let mut all = vec!["0123", "-o", out.to_str().unwrap()];
        all.extend(args.iter().copied());
        let err = fetch(&storage, &all, small_chunks()).await.unwrap_err();
        let explained = kubectl_coredog::error::explain(&err);
        assert!(
            explained
                .message
                .starts_with("dump 0123456789abcdef failed verification: "),
            "{args:?}: {explained:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?}: no output, part or temporary file"
        );
    }
}

#[tokio::test]
async fn a_checksum_mismatch_is_an_error_and_writes_nothing() {
    let (storage, dumps) = sample();
    let mut record = dumps[0].record.clone();
    record.sha256 = "00".repeat(32);
    storage.put(&record_key_for(&record.key), record.to_json());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    let err = fetch(
        &storage,
        &["0123", "-o", out.to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap_err();
    let explained = kubectl_coredog::error::explain(&err);
    assert!(
        explained.message.starts_with(&format!(
            "dump 0123456789abcdef failed verification: its SHA-256 is {}, its record says {}; nothing was written",
            dumps[0].record.sha256,
            "00".repeat(32)
        )),
        "{explained:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no output, part or temporary file"
    );
}

#[tokio::test]
async fn a_resumed_raw_fetch_is_checked_and_starts_over_on_other_bytes() {
    let (storage, dumps) = sample();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("core.zst");
    let part = dir.path().join("core.zst.part");
    let args = ["0123", "--raw", "-o", raw.to_str().unwrap()];

    // An interrupted fetch of this dump: continued, and the whole checked in passing.
    std::fs::write(&part, &dumps[0].stored[..2000]).unwrap();
    storage.take_requests();
    let captured = fetch(&storage, &args, small_chunks()).await.unwrap();
    assert_eq!(std::fs::read(&raw).unwrap(), dumps[0].stored);
    assert!(
        ranges(&storage)
            .iter()
            .all(|range| !range.starts_with("0-")),
        "resumed"
    );
    assert!(
        captured
            .stdout()
            .contains("compressed; SHA-256 of the core verified"),
        "{}",
        captured.stdout()
    );

    // What a killed fetch of another dump to the same file, or one with holes, leaves.
    std::fs::remove_file(&raw).unwrap();
    let mut other = dumps[0].stored.clone();
    other[10..1010].fill(0);
    std::fs::write(&part, &other).unwrap();
    storage.take_requests();
    fetch(&storage, &args, small_chunks()).await.unwrap();
    assert_eq!(std::fs::read(&raw).unwrap(), dumps[0].stored);
    assert!(ranges(&storage).iter().any(|range| range == "0-999"));
}

#[tokio::test]
async fn fetch_raw_keeps_the_stored_bytes_and_plain_dumps_are_verified_too() {
    let (storage, dumps) = sample();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("core.zst");
    fetch(
        &storage,
        &["0123", "--raw", "-o", raw.to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&raw).unwrap(), dumps[0].stored);

    // Uncompressed, 3 MiB: the default 48 MiB ranges make it one range read.
    let plain = dir.path().join("agent.core");
    storage.take_requests();
    fetch(
        &storage,
        &["fedcba9876543210", "-o", plain.to_str().unwrap()],
        FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&plain).unwrap(), dumps[2].core);
    assert_eq!(ranges(&storage), [format!("0-{}", 3 * 1024 * 1024 - 1)]);
}

#[tokio::test]
async fn fetch_latest_uses_the_list_filters_and_refuses_incomplete_dumps() {
    let (storage, _) = sample();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("latest");
    let err = fetch(
        &storage,
        &["--latest", "-o", out.to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        kubectl_coredog::error::explain(&err).to_string(),
        "error: dump 0129000000000000 is incomplete: it has no record, so it cannot be verified\nhint: the watcher writes the record last: try again in a minute (`kubectl coredog info ID` shows what is known)"
    );
    fetch(
        &storage,
        &["--latest", "--until", "1h", "-o", out.to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap();
    assert!(Path::new(&out).exists());

    // Without a record for 25 minutes, its storing never finished: --latest passes it over,
    // and says so.
    let (storage, dumps) = sample();
    storage.set_stored_at(
        &dumps[1].record.key,
        "2026-11-27T11:35:00Z".parse().unwrap(),
    );
    let out = dir.path().join("latest-complete");
    let captured = fetch(
        &storage,
        &["--latest", "-o", out.to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), dumps[0].core);
    assert!(
        captured
            .stderr()
            .contains("passing over dump 0129000000000000"),
        "{}",
        captured.stderr()
    );
    // Stored 5 minutes ago, it may be being stored still: asked for again later, not passed over.
    storage.set_stored_at(
        &dumps[1].record.key,
        "2026-11-27T11:55:00Z".parse().unwrap(),
    );
    let err = fetch(
        &storage,
        &["--latest", "-o", dir.path().join("again").to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("is incomplete"), "{err}");
}

/// Zero pages inside and at the end of a core, as real cores have them.
fn core_with_zero_pages() -> Vec<u8> {
    let mut core = core_bytes(64 * 1024, 9);
    core.extend(std::iter::repeat_n(0u8, 256 * 1024));
    core.extend(core_bytes(10_000, 10));
    // A run of zeros that ends inside a block, then a trailing hole.
    core.extend(std::iter::repeat_n(0u8, 300 * 1024 + 17));
    core
}

#[tokio::test]
async fn zero_pages_become_holes_and_the_fetched_core_is_byte_for_byte() {
    use std::os::unix::fs::MetadataExt as _;
    let storage = MemoryStorage::with_page_size(2);
    let core = core_with_zero_pages();
    let zstd = dump(
        "aaaa000000000001",
        ("shop", "web-1", "app"),
        "2026-11-27T10:00:12Z",
        "node-1",
        core.clone(),
        Compression::Zstd,
    );
    let plain = dump(
        "bbbb000000000002",
        ("shop", "web-2", "app"),
        "2026-11-27T10:00:13Z",
        "node-1",
        core.clone(),
        Compression::None,
    );
    put(&storage, &zstd, true);
    put(&storage, &plain, true);
    let dir = tempfile::tempdir().unwrap();
    for (id, chunks) in [
        ("aaaa", small_chunks()),
        ("bbbb", small_chunks()),
        ("bbbb", FetchOptions::default()),
    ] {
        let out = dir.path().join(format!("{id}-{}.core", chunks.chunk_size));
        fetch(&storage, &[id, "-o", out.to_str().unwrap()], chunks)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), core, "{id}");
        let meta = std::fs::metadata(&out).unwrap();
        assert_eq!(meta.len(), core.len() as u64);
        assert!(
            meta.blocks() * 512 < core.len() as u64 / 2,
            "{id}: {} bytes allocated for {} bytes with 556 KiB of zeros",
            meta.blocks() * 512,
            core.len()
        );
    }
}

/// What the watcher writes besides the dump and its record: the id index entry.
fn index(storage: &MemoryStorage, stored: &Stored) {
    let key = CoreKey::parse(&stored.record.key).unwrap();
    storage.put(&key.id_index_key(), Vec::new());
}

#[tokio::test]
async fn ids_are_looked_up_in_the_index_without_listing_every_dump() {
    let (storage, dumps) = sample();
    for stored in &dumps {
        index(&storage, stored);
    }
    storage.take_requests();
    let mut captured = Captured::default();
    info_command(
        &storage,
        STORE_DIR,
        &info_args(&["0123", "-o", "json"]),
        &Scope::All,
        &mut captured.console(),
    )
    .await
    .unwrap();
    assert!(captured.stdout().contains("\"id\": \"0123456789abcdef\""));
    let requests = storage.take_requests();
    let lists: Vec<&String> = requests.iter().filter(|r| r.starts_with("list ")).collect();
    assert_eq!(lists, ["list corefiles/.ids/0123"], "{requests:?}");

    // Ambiguity is still told, from the index alone.
    let err = info_command(
        &storage,
        STORE_DIR,
        &info_args(&["012"]),
        &Scope::All,
        &mut Captured::default().console(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("ID prefix 012 is ambiguous: it matches 2 dumps"));
    // `-n` applies to what the index finds.
    let err = info_command(
        &storage,
        STORE_DIR,
        &info_args(&["fedc"]),
        &Scope::Namespace("shop".into()),
        &mut Captured::default().console(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("no dump has an ID starting with fedc"));

    // The index is not a dump: `list -A` skips it without listing it.
    storage.take_requests();
    let mut captured = Captured::default();
    list_command(
        &storage,
        STORE_DIR,
        &list_args(&["-A", "-o", "json"]),
        &Scope::All,
        now(),
        &mut captured.console(),
    )
    .await
    .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&captured.stdout()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let requests = storage.take_requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.starts_with("list "))
            .all(|r| r.starts_with("list corefiles/")),
        "{requests:?}"
    );
    assert!(
        requests.contains(&"list corefiles/ after corefiles/.ids/~".to_owned()),
        "{requests:?}"
    );
}

#[tokio::test]
async fn an_index_entry_whose_dump_is_gone_falls_back_to_a_listing() {
    let (storage, dumps) = sample();
    // An entry for a dump deleted since, sharing the prefix of a dump stored before the index.
    let mut gone = CoreKey::parse(&dumps[0].record.key).unwrap();
    gone.pod = "deleted".into();
    storage.put(&gone.id_index_key(), Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("core");
    fetch(
        &storage,
        &["0123456789abcdef", "-o", out.to_str().unwrap()],
        small_chunks(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), dumps[0].core);
}

/// The configuration install keeps in the cluster may name key files: paths in the watcher's
/// pod, not on the machine the plugin runs on. They are not read there; the keys come from the
/// environment or the credentials Secret instead.
#[tokio::test]
async fn key_files_named_by_the_cluster_configuration_are_not_read_locally() {
    let encoded = |text: &str| {
        serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec())).unwrap()
    };
    let config = "StorageConfig:\n  protocol: s3\n  S3Bucket: dumps\n  S3Endpoint: http://127.0.0.1:9\n  s3AccesskeyIDFile: /etc/coredog/keys/ak\n  s3SecretAccessKeyFile: /etc/coredog/keys/sk\n";
    let (client, server) = support::api_server(move |request| match request.path.as_str() {
        "/api/v1/namespaces/coredog-system/secrets/coredog-config" => {
            support::ok(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "coredog-config", "namespace": "coredog-system"},
                "data": {"config.yaml": encoded(config)}
            }))
        }
        "/api/v1/namespaces/coredog-system/secrets/coredog-storage-credentials" => {
            support::ok(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "coredog-storage-credentials", "namespace": "coredog-system"},
                "data": {"AWS_ACCESS_KEY_ID": encoded("AKIDFROMSECRET"), "AWS_SECRET_ACCESS_KEY": encoded("secret")}
            }))
        }
        _ => support::not_found("object"),
    });
    let storage = kubectl_coredog::storage::storage_config(None, Some(&client))
        .await
        .unwrap();
    drop(client);
    assert_eq!(storage.access_key_id_file, None);
    assert_eq!(storage.secret_access_key_file, None);
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        assert_eq!(storage.access_key_id.as_deref(), Some("AKIDFROMSECRET"));
        let requested: Vec<String> = server.await.unwrap().iter().map(|r| r.line()).collect();
        assert_eq!(
            requested,
            [
                "GET /api/v1/namespaces/coredog-system/secrets/coredog-config",
                "GET /api/v1/namespaces/coredog-system/secrets/coredog-storage-credentials"
            ]
        );
    }
    kubectl_coredog::storage::open(&storage).unwrap();

    // Without a credentials Secret one may read, the key files are dropped all the same: the
    // provider chain (or the environment) is what is left.
    let (client, _server) = support::api_server(move |request| match request.path.as_str() {
        "/api/v1/namespaces/coredog-system/secrets/coredog-config" => {
            support::ok(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "coredog-config", "namespace": "coredog-system"},
                "data": {"config.yaml": encoded(config)}
            }))
        }
        _ => support::not_found("object"),
    });
    let storage = kubectl_coredog::storage::storage_config(None, Some(&client))
        .await
        .unwrap();
    assert_eq!(storage.access_key_id_file, None);
    assert_eq!(storage.secret_access_key_file, None);
}

/// A watcher DaemonSet as a Helm release renders it, with the configuration Secret and the key
/// Secret (and its keys) its values name.
fn release_watcher(namespace: &str, name: &str, config_secret: &str, keys: &str) -> Value {
    let key = |variable: &str, key: &str| json!({"name": variable, "valueFrom": {"secretKeyRef": {"name": keys, "key": key}}});
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "coredog", "app.kubernetes.io/component": "watcher"}},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/component": "watcher"}},
            "template": {"spec": {
                "containers": [{"name": "watcher", "env": [
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    key("AWS_ACCESS_KEY_ID", "ak"),
                    key("AWS_SECRET_ACCESS_KEY", "sk"),
                ]}],
                "volumes": [
                    {"name": "corefile", "hostPath": {"path": "/data/coredog-system/dumps"}},
                    {"name": "config", "secret": {"secretName": config_secret}}
                ]
            }}
        }
    })
}

/// A Helm release under another name and namespace (and a configuration Secret of the user's
/// own, `config.existingSecret`) is found through its watcher: the Secrets it mounts are read.
#[tokio::test]
async fn a_release_under_other_names_is_found_through_its_watcher() {
    let encoded = |text: &str| {
        serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec())).unwrap()
    };
    let config = "StorageConfig:\n  protocol: s3\n  S3Bucket: team-dumps\n  S3Endpoint: http://127.0.0.1:9\n";
    let (client, server) = support::api_server(move |request| match request.path.as_str() {
        // Someone with rights in the release's namespace only.
        "/api/v1/namespaces/coredog-system/secrets/coredog-config" => {
            support::status(403, "Forbidden", "secrets \"coredog-config\" is forbidden")
        }
        "/apis/apps/v1/daemonsets" => support::list(
            "DaemonSet",
            vec![release_watcher(
                "monitoring",
                "dumps-coredog-watcher",
                "dumps-settings",
                "s3-keys",
            )],
        ),
        "/api/v1/namespaces/monitoring/secrets/dumps-settings" => support::ok(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "dumps-settings", "namespace": "monitoring"},
            "data": {"config.yaml": encoded(config)}
        })),
        "/api/v1/namespaces/monitoring/secrets/s3-keys" => support::ok(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s3-keys", "namespace": "monitoring"},
            "data": {"ak": encoded("AKIDOFTHERELEASE"), "sk": encoded("secret")}
        })),
        _ => support::not_found("object"),
    });
    let storage = kubectl_coredog::storage::storage_config(None, Some(&client))
        .await
        .unwrap();
    drop(client);
    assert_eq!(storage.bucket(), Some("team-dumps"));
    let requests = server.await.unwrap();
    let lines: Vec<String> = requests.iter().map(|r| r.line()).collect();
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        assert_eq!(storage.access_key_id.as_deref(), Some("AKIDOFTHERELEASE"));
        assert_eq!(
            lines,
            [
                "GET /api/v1/namespaces/coredog-system/secrets/coredog-config",
                "GET /apis/apps/v1/daemonsets",
                "GET /api/v1/namespaces/monitoring/secrets/dumps-settings",
                "GET /api/v1/namespaces/monitoring/secrets/s3-keys",
            ]
        );
    }
    assert_eq!(
        requests[1].query.get("labelSelector").map(String::as_str),
        Some("app.kubernetes.io/part-of=coredog,app.kubernetes.io/component=watcher")
    );
}

/// No CoreDog under install's names and none (or several) elsewhere: the error says which.
#[tokio::test]
async fn no_release_or_several_are_named_as_such() {
    let error_with = |watchers: Vec<Value>, listing_allowed: bool| async move {
        let (client, _server) =
            support::api_server(
                move |request| match (request.path.as_str(), listing_allowed) {
                    ("/apis/apps/v1/daemonsets", true) => {
                        support::list("DaemonSet", watchers.clone())
                    }
                    ("/apis/apps/v1/daemonsets", false) => {
                        support::status(403, "Forbidden", "daemonsets is forbidden")
                    }
                    _ => support::not_found("object"),
                },
            );
        let err = kubectl_coredog::storage::storage_config(None, Some(&client))
            .await
            .unwrap_err();
        format!("{err:#}")
    };
    let none = error_with(Vec::new(), true).await;
    assert!(
        none.contains("Secret coredog-system/coredog-config) is not in this cluster"),
        "{none}"
    );
    let not_allowed = error_with(Vec::new(), false).await;
    assert!(
        not_allowed.contains("you may not list DaemonSets to find a Helm release elsewhere"),
        "{not_allowed}"
    );
    let several = error_with(
        vec![
            release_watcher("a", "a-coredog-watcher", "a-coredog-config", "a-keys"),
            release_watcher("b", "coredog-watcher", "b-config", "b-keys"),
        ],
        true,
    )
    .await;
    assert!(
        several.contains(
            "CoreDog runs 2 times in this cluster (watchers a/a-coredog-watcher, b/coredog-watcher)"
        ),
        "{several}"
    );
}
