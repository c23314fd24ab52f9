//! Test support for running CoreDog's real components: locating the tools `.ci/tools` installs,
//! starting processes that are stopped when the test ends, and reading what they log.
//!
//! Tests that need a tool fail with a message that says how to install it, never skip: a test
//! that silently skips proves nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The path of a tool installed by `.ci/tools` (or found in `COREDOG_TOOLS_BIN`).
///
/// # Panics
/// When the tool is missing, with the command that installs it.
pub fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("COREDOG_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/tools/bin"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "test tool {name} is missing at {}: run `.ci/tools` (or `.ci/run`) to install it",
        path.display()
    );
    path
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard {
    pub child: Child,
    name: String,
}

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the process (`libc`-free: through `kill(1)`).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("[{}] stopped", self.name);
    }
}

/// Starts `command` with its stderr (and stdout) echoed into the test's output, and waits until
/// it logs a line containing `ready_marker`. Returns the guard and that line.
///
/// # Panics
/// When the process cannot start, exits, or does not log the marker within `timeout`.
pub fn spawn_until(
    name: &str,
    command: &mut Command,
    ready_marker: &str,
    timeout: Duration,
) -> (ChildGuard, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
    let (sender, receiver) = mpsc::channel::<String>();
    for stream in [
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let sender = sender.clone();
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("[{label}] {line}");
                let _ = sender.send(line);
            }
        });
    }
    drop(sender);
    let guard = ChildGuard {
        child,
        name: name.to_owned(),
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) if line.contains(ready_marker) => return (guard, line),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name} did not log {ready_marker:?} within {timeout:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{name} exited before logging {ready_marker:?}")
            }
        }
    }
}

/// The value of `key=value` in a logfmt line.
pub fn logfmt_value(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next().map(str::to_owned)
    } else {
        rest.split_whitespace().next().map(str::to_owned)
    }
}

/// Runs `kubernetes-validate --strict` for `version` over `files`; returns its output on failure.
pub fn kubernetes_validate(version: &str, files: &[PathBuf]) -> Result<(), String> {
    let output = Command::new(tool("kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", version])
        .args(files)
        .output()
        .map_err(|err| format!("cannot run kubernetes-validate: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kubernetes_validate_refuses_what_kubernetes_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        let bad = dir.path().join("bad.json");
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"b","volumeMounts":[{"name":"v","mountPath":"/c","subPathExpr":"$(X)/a"}]}],"volumes":[{"name":"v","hostPath":{"path":"/d","type":"DirectoryOrCreate"}}]}}"#;
        std::fs::write(&good, pod).unwrap();
        std::fs::write(&bad, pod.replace("subPathExpr", "subPathExpression")).unwrap();
        assert_eq!(super::kubernetes_validate("1.30.0", &[good]), Ok(()));
        let report = super::kubernetes_validate("1.30.0", &[bad]).unwrap_err();
        assert!(report.contains("subPathExpression"), "{report}");
    }

    #[test]
    fn logfmt_values() {
        let line = r#"time=1 level=info msg="webhook serving" address=127.0.0.1:8443 note="a b""#;
        assert_eq!(
            super::logfmt_value(line, "address").as_deref(),
            Some("127.0.0.1:8443")
        );
        assert_eq!(super::logfmt_value(line, "note").as_deref(), Some("a b"));
        assert_eq!(super::logfmt_value(line, "missing"), None);
    }
}
