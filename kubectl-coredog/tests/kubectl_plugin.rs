//! The plugin as kubectl finds and runs it: a real `kubectl` (the one `.ci/tools` installs),
//! with the built binary's directory put first on PATH.

use std::path::Path;
use std::process::{Command, Output};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kubectl-coredog"))
}

/// `kubectl ARGS` with the plugin's directory first on PATH and no cluster configured.
fn kubectl(args: &[&str]) -> Output {
    let dir = binary().parent().expect("the binary has a directory");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.to_owned()];
    paths.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(paths).expect("a valid PATH");
    Command::new(coredog_tests::tool("kubectl"))
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap_or_else(|err| panic!("cannot run kubectl: {err}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn kubectl_lists_the_plugin() {
    let output = kubectl(&["plugin", "list"]);
    let listed = stdout(&output);
    let expected = binary().display().to_string();
    assert!(
        listed.lines().any(|line| line.trim() == expected),
        "kubectl plugin list does not name {expected}:\n{listed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn kubectl_runs_the_plugin() {
    let output = kubectl(&["coredog", "--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = stdout(&output);
    assert!(help.contains("Usage: kubectl coredog"), "{help}");
    for command in ["install", "enable", "doctor", "list", "fetch"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    let output = kubectl(&["coredog", "enable", "--help"]);
    assert!(stdout(&output).contains("Usage: kubectl coredog enable"));
}

#[test]
fn errors_are_one_sentence_and_a_hint_with_a_failing_exit_code() {
    let output = kubectl(&["coredog", "enable", "svc/web"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: unknown workload type \"svc\": use deploy, sts, ds, rs, job or cj (or their full names)\nhint: for example: kubectl coredog enable deploy/web\n"
    );
    let output = kubectl(&["coredog", "enable", "deploy/web", "--path", "/etc/cores"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: --path: path \"/etc/cores\" is /etc or under it"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    let output = kubectl(&["coredog", "status"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("\nhint: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A directory on PATH with the plugin under its own name and as kubectl's completer for it,
/// as a user links it.
fn plugin_dir_with_completer() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["kubectl-coredog", "kubectl_complete-coredog"] {
        std::os::unix::fs::symlink(binary(), dir.path().join(name)).unwrap();
    }
    dir
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.to_owned()];
    paths.extend(std::env::split_paths(&path));
    std::env::join_paths(paths).expect("a valid PATH")
}

#[test]
fn kubectl_completes_the_plugin_through_its_completer() {
    let dir = plugin_dir_with_completer();
    let output = Command::new(coredog_tests::tool("kubectl"))
        .args(["__complete", "coredog", "list", "-o", ""])
        .env("PATH", path_with(dir.path()))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    assert_eq!(lines, ["table", "wide", "json", "yaml", ":4"], "{output:?}");
}

#[test]
fn the_bash_script_completes_by_asking_the_plugin() {
    let dir = plugin_dir_with_completer();
    let script = kubectl(&["coredog", "completion", "bash"]);
    assert!(script.status.success(), "{script:?}");
    let script_path = dir.path().join("completion.bash");
    std::fs::write(&script_path, &script.stdout).unwrap();
    // What bash does on TAB after `kubectl-coredog fetch --r`.
    let on_tab = format!(
        r#"source {script}
COMP_WORDS=(kubectl-coredog fetch --r); COMP_CWORD=2; COMP_TYPE=9
"$(complete -p kubectl-coredog | sed -E 's/.*-F ([^ ]+).*/\1/')" kubectl-coredog --r fetch
printf '%s\n' "${{COMPREPLY[@]}}""#,
        script = script_path.display()
    );
    let output = Command::new("bash")
        .args(["-c", &on_tab])
        .env("PATH", path_with(dir.path()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let offered = stdout(&output);
    assert!(
        offered.lines().any(|line| line == "--raw"),
        "{offered}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for shell in ["zsh", "fish"] {
        let output = kubectl(&["coredog", "completion", shell]);
        assert!(output.status.success(), "{shell}: {output:?}");
        assert!(
            stdout(&output).contains("KUBECTL_COREDOG_COMPLETE"),
            "{shell}"
        );
    }
}

#[test]
fn a_proxy_environment_kubectl_accepts_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    // Nothing listens on port 9: the command fails when it connects, after loading everything.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n  - name: c\n    cluster: {server: \"https://127.0.0.1:9\"}\nusers:\n  - name: u\n    user: {token: t}\ncontexts:\n  - name: a\n    context: {cluster: c, user: u, namespace: shop}\n",
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["status", "--kubeconfig"])
        .arg(&kubeconfig)
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "corp.example,")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: cannot list pods: cannot reach the Kubernetes API server"),
        "{stderr}"
    );
}
