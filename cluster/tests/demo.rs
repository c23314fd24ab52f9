//! `coredog demo`, the README's first command, from a clean directory.

use std::process::Command;

#[test]
fn the_demo_ships_a_real_crash_and_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_coredog"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        started.elapsed().as_secs() < 60,
        "the demo took {:?}",
        started.elapsed()
    );
    for expected in [
        "NAMESPACE  demo",
        "POD        demo-pod",
        "CONTAINER  app",
        "SIGSEGV (11)",
        "kubectl coredog fetch",
        "local core removed from the node directory: yes",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let stored: Vec<_> = walk(&dir.path().join("storage"));
    assert_eq!(
        stored.iter().filter(|p| p.ends_with(".core.zst")).count(),
        1,
        "{stored:?}"
    );
    assert_eq!(
        stored
            .iter()
            .filter(|p| p.ends_with(".core.zst.json"))
            .count(),
        1,
        "{stored:?}"
    );
    // It may hold storage keys: its owner's alone.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("config.yaml"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "{mode:o}");

    // Again on the same storage: this run's dump is the one shown, not the first run's.
    let fetched_id = |stdout: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix("kubectl coredog fetch "))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .unwrap()
    };
    let again = Command::new(env!("CARGO_BIN_EXE_coredog"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(again.status.success());
    let second = String::from_utf8_lossy(&again.stdout);
    assert_ne!(fetched_id(&stdout), fetched_id(&second), "{second}");
    let stored = walk(&dir.path().join("storage"));
    assert_eq!(
        stored.iter().filter(|p| p.ends_with(".core.zst")).count(),
        2,
        "{stored:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}
