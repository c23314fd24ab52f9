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
    assert!(dir.path().join("config.yaml").exists());
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
