//! The kind e2e test (`tests/e2e/run.sh`) cannot run here (no Docker engine), but what it
//! applies can be checked: its Kubernetes manifests are valid, its Helm values render, and the
//! crash test's shell survives Kubernetes' `$(VAR)` expansion.

use std::path::PathBuf;
use std::process::Command;

use coredog_tests::{kubernetes_validate, tool, workspace_root};

fn manifests() -> PathBuf {
    workspace_root().join("tests/e2e/manifests")
}

#[test]
fn the_e2e_manifests_are_valid_kubernetes_objects() {
    let files: Vec<PathBuf> = ["seaweedfs.yaml", "receiver.yaml", "crash-test.yaml"]
        .iter()
        .map(|name| manifests().join(name))
        .collect();
    for version in ["1.28.0", "1.33.0"] {
        if let Err(report) = kubernetes_validate(version, &files) {
            panic!("e2e manifests are not valid for Kubernetes {version}:\n{report}");
        }
    }
}

#[test]
fn the_crash_test_kills_its_own_shell() {
    let text = std::fs::read_to_string(manifests().join("crash-test.yaml")).unwrap();
    let deployment: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let pod = &deployment["spec"]["template"];
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["coredog.io/inject"].as_str(), Some("true"));
    assert_eq!(annotations["coredog.io/path"].as_str(), Some("/corefile"));
    assert_eq!(annotations["coredog.io/container"].as_str(), Some("app"));
    // Not PID 1, which cannot be killed by a signal it has no handler for.
    assert_eq!(pod["spec"]["shareProcessNamespace"].as_bool(), Some(true));
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["name"].as_str(), Some("app"));
    let script = container["command"][2].as_str().unwrap();
    // Kubernetes turns "$$" into "$": the shell must receive `kill -11 $$`.
    assert_eq!(
        kubernetes_expand(script),
        "ulimit -c unlimited; sleep 5; kill -11 $$"
    );
}

/// Kubernetes' expansion of a container command with no variables defined: `$$` is an
/// escaped `$`, `$(NAME)` of an unknown name stays as written.
fn kubernetes_expand(input: &str) -> String {
    let mut out = String::new();
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek() == Some(&'$') {
            chars.next();
        }
        out.push(c);
    }
    out
}

#[test]
fn the_e2e_values_render_a_valid_release() {
    let output = Command::new(tool("helm"))
        .arg("template")
        .arg("coredog")
        .arg(workspace_root().join("charts"))
        .args(["-n", "coredog-system", "-f"])
        .arg(manifests().join("coredog-values.yaml"))
        .args(["--set", "image.tag=e2e"])
        .output()
        .expect("run helm");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("--core-pattern"), "nodeSetup is on");
    assert!(text.contains("failurePolicy: Fail"));
    assert!(text.contains("coredog-storage-credentials"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e2e-release.yaml");
    std::fs::write(&file, text).unwrap();
    kubernetes_validate("1.33.0", &[file]).unwrap_or_else(|report| panic!("{report}"));
}
