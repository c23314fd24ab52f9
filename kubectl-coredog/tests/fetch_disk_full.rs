//! A fetch whose disk fills up while it decompresses says so, and keeps its part file.
//!
//! Its own test binary: the file size limit that stands in for a full disk (RLIMIT_FSIZE,
//! writes past it fail with EFBIG) holds for the whole process.

mod stored;
mod support;

use clap::Parser as _;
use coredog_core::object_key::Compression;
use kubectl_coredog::cli::{Cli, Command};
use kubectl_coredog::dumps::{FetchScopes, fetch_command};
use kubectl_coredog::fetch::FetchOptions;
use kubectl_coredog::kube_client::Scope;
use kubectl_coredog::storage::memory::MemoryStorage;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use stored::{STORE_DIR, dump, put};
use support::Captured;

const LIMIT: u64 = 1024 * 1024;

#[tokio::test]
async fn a_full_disk_is_reported_as_such_and_the_download_is_kept() {
    // Past the limit the kernel sends SIGXFSZ, which ends the process unless it is handled;
    // handled, the write fails with EFBIG as it would with ENOSPC.
    let _handled = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(
        rustix::process::Signal::XFSZ.as_raw(),
    ))
    .unwrap();
    // Compresses to a few KiB and decompresses to far more than the limit and than the
    // decompressed chunks queued for the writer, so the decompressor is still at work when the
    // writer stops (no zero blocks: they would be left as holes rather than written).
    let core: Vec<u8> = (0..64 * LIMIT).map(|i| (i % 251) as u8 + 1).collect();
    let dumped = dump(
        "00aa00aa00aa00aa",
        ("shop", "web-0", "app"),
        "2026-11-27T10:00:00Z",
        "node-1",
        core,
        Compression::Zstd,
    );
    assert!(dumped.stored.len() < 64 * 1024 && dumped.core.len() as u64 > LIMIT);
    let storage = MemoryStorage::with_page_size(100);
    put(&storage, &dumped, true);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("core");

    let limits = getrlimit(Resource::Fsize);
    setrlimit(
        Resource::Fsize,
        Rlimit {
            current: Some(LIMIT),
            maximum: limits.maximum,
        },
    )
    .unwrap();
    let argv = [
        "kubectl-coredog",
        "fetch",
        "00aa",
        "-o",
        output.to_str().unwrap(),
    ];
    let Command::Fetch(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let mut captured = Captured::default();
    let fetched = fetch_command(
        &storage,
        STORE_DIR,
        &args,
        &FetchScopes {
            listing: Scope::Namespace("shop".into()),
            ids: Scope::All,
        },
        "2026-11-27T12:00:00Z".parse().unwrap(),
        FetchOptions::default(),
        &mut captured.console(),
    )
    .await;
    setrlimit(Resource::Fsize, limits).unwrap();

    // What the user is told: `explain` is what main prints.
    let err = kubectl_coredog::error::explain(&fetched.unwrap_err()).to_string();
    assert!(err.contains("cannot write"), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert!(!err.contains("verification"), "{err}");
    assert!(!output.exists());
    // Kept for a resume once there is room (up to its last complete range); a dump taken
    // for damaged has its part file deleted.
    assert!(
        dir.path().join("core.part").exists(),
        "the download is kept"
    );
}
