//! The krew plugin manifest: `krew/render.sh` fills `krew/coredog.yaml.tmpl` from release
//! archives laid out exactly as the release workflow makes them, and the result is what krew
//! needs to install `kubectl coredog` on every platform.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use coredog_tests::workspace_root;
use serde_json::Value;

const PLATFORMS: [(&str, &str); 4] = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
];

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Builds `kubectl-coredog_<os>_<arch>.tar.gz` in `dist` the way the release workflow does:
/// `kubectl-coredog` and `LICENSE` at the archive's root. Each binary differs, so each archive
/// has its own sha256.
fn build_archives(dist: &Path) {
    for (os, arch) in PLATFORMS {
        let stage = dist.join(format!("stage-{os}-{arch}"));
        std::fs::create_dir_all(&stage).unwrap();
        std::fs::write(
            stage.join("kubectl-coredog"),
            format!("#!/bin/sh\necho kubectl-coredog for {os}/{arch}\n"),
        )
        .unwrap();
        std::fs::copy(workspace_root().join("LICENSE"), stage.join("LICENSE")).unwrap();
        run(Command::new("tar")
            .arg("-czf")
            .arg(dist.join(format!("kubectl-coredog_{os}_{arch}.tar.gz")))
            .arg("-C")
            .arg(&stage)
            .args(["kubectl-coredog", "LICENSE"]));
    }
}

fn render(version: &str, dist: &Path) -> std::process::Output {
    Command::new("bash")
        .arg(workspace_root().join("krew/render.sh"))
        .arg(version)
        .arg(dist)
        .output()
        .expect("run krew/render.sh")
}

fn sha256(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .expect("a sum")
        .to_owned()
}

fn archive_entries(path: &Path) -> BTreeSet<String> {
    run(Command::new("tar").arg("-tzf").arg(path))
        .lines()
        .map(|line| line.trim_start_matches("./").to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn the_rendered_manifest_is_what_krew_installs() {
    let dir = tempfile::tempdir().unwrap();
    let dist: PathBuf = dir.path().to_owned();
    build_archives(&dist);
    let output = render("v0.1.0", &dist);
    assert!(
        output.status.success(),
        "krew/render.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(!text.contains("{{"), "placeholders left:\n{text}");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("manifest YAML");
    let manifest: Value = serde_json::to_value(yaml).unwrap();

    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "coredog");
    let spec = &manifest["spec"];
    let version = spec["version"].as_str().expect("spec.version");
    assert!(version.starts_with('v'), "{version}");
    assert_eq!(version, "v0.1.0");
    assert_eq!(spec["homepage"], "https://github.com/coredog-io/coredog");
    let short = spec["shortDescription"].as_str().expect("shortDescription");
    assert!(!short.is_empty() && short.len() <= 80, "{short:?}");
    assert!(
        spec["description"]
            .as_str()
            .is_some_and(|d| d.len() > short.len()),
        "a description longer than the short one"
    );

    let platforms = spec["platforms"].as_array().expect("platforms");
    assert_eq!(platforms.len(), PLATFORMS.len());
    let mut seen = BTreeSet::new();
    for platform in platforms {
        let labels = &platform["selector"]["matchLabels"];
        let os = labels["os"].as_str().expect("os label");
        let arch = labels["arch"].as_str().expect("arch label");
        assert!(
            PLATFORMS.contains(&(os, arch)),
            "unexpected platform {os}/{arch}"
        );
        assert!(seen.insert((os, arch)), "{os}/{arch} listed twice");

        let archive_name = format!("kubectl-coredog_{os}_{arch}.tar.gz");
        assert_eq!(
            platform["uri"],
            format!(
                "https://github.com/coredog-io/coredog/releases/download/v0.1.0/{archive_name}"
            )
        );
        let archive = dist.join(&archive_name);
        let sum = platform["sha256"].as_str().expect("sha256");
        assert!(
            sum.len() == 64
                && sum
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{os}/{arch}: {sum:?} is not 64 lowercase hex digits"
        );
        assert_eq!(
            sum,
            sha256(&archive),
            "{os}/{arch}: sha256 of {archive_name}"
        );

        let entries = archive_entries(&archive);
        let bin = platform["bin"].as_str().expect("bin");
        assert_eq!(bin, "kubectl-coredog");
        assert!(
            entries.contains(bin),
            "{archive_name} lacks {bin}: {entries:?}"
        );
        let files = platform["files"].as_array().expect("files");
        assert!(!files.is_empty());
        let mut from_all = BTreeSet::new();
        for file in files {
            let from = file["from"].as_str().expect("files[].from");
            assert!(
                entries.contains(from),
                "{archive_name} lacks {from}: {entries:?}"
            );
            assert_eq!(file["to"], ".");
            from_all.insert(from);
        }
        assert_eq!(from_all, BTreeSet::from(["kubectl-coredog", "LICENSE"]));
    }
}

#[test]
fn render_refuses_missing_archives_and_bad_versions() {
    let dir = tempfile::tempdir().unwrap();
    build_archives(dir.path());
    let output = render("0.1.0", dir.path());
    assert!(!output.status.success(), "a version without the leading v");
    assert!(String::from_utf8_lossy(&output.stderr).contains("VERSION"));

    std::fs::remove_file(dir.path().join("kubectl-coredog_darwin_arm64.tar.gz")).unwrap();
    let output = render("v0.1.0", dir.path());
    assert!(!output.status.success(), "a missing archive");
    assert!(String::from_utf8_lossy(&output.stderr).contains("kubectl-coredog_darwin_arm64"));
}

#[test]
fn the_release_workflow_builds_the_archives_the_manifest_names() {
    let workflow = std::fs::read_to_string(workspace_root().join(".github/workflows/release.yaml"))
        .expect("release workflow");
    let workflow: serde_yaml::Value = serde_yaml::from_str(&workflow).expect("workflow YAML");
    let text = serde_yaml::to_string(&workflow).unwrap();
    for needle in [
        "kubectl-coredog_${os}_${arch}.tar.gz",
        "krew/render.sh",
        "helm package",
        "LICENSE",
    ] {
        assert!(
            text.contains(needle),
            "release.yaml does not mention {needle}"
        );
    }
    for (target, os, arch) in [
        ("x86_64-unknown-linux-gnu", "linux", "amd64"),
        ("aarch64-unknown-linux-gnu", "linux", "arm64"),
        ("x86_64-apple-darwin", "darwin", "amd64"),
        ("aarch64-apple-darwin", "darwin", "arm64"),
    ] {
        assert!(
            text.contains(target),
            "release.yaml does not build {target}"
        );
        assert!(
            text.contains(&format!("os: {os}")) && text.contains(&format!("arch: {arch}")),
            "release.yaml does not name {os}/{arch}"
        );
    }
}
