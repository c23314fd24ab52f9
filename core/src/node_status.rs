//! What a node's watcher reports about its node, for `kubectl coredog doctor`.
//!
//! The watcher writes it as JSON into the annotation [`NODE_STATUS_ANNOTATION`] of its own pod,
//! at start and whenever it changes, so the plugin can read every node's state with one pod list
//! and no exec or ssh.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The watcher pod annotation that carries [`NodeStatus`].
pub const NODE_STATUS_ANNOTATION: &str = "coredog.io/node-status";

/// The watcher's flag for node setup: the `kernel.core_pattern` it sets on its node.
pub const CORE_PATTERN_FLAG: &str = "--core-pattern";

/// The pattern a watcher container's command line (`command` then `args`) asks it to set, in
/// either spelling clap takes (`--core-pattern P`, `--core-pattern=P`). The plugin reads it to
/// keep an install's node setup on upgrade; a watcher leaving, to tell whether node setup goes on.
pub fn core_pattern_argument<'a>(
    command_line: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut words = command_line.into_iter();
    while let Some(word) = words.next() {
        if word == CORE_PATTERN_FLAG {
            return words.next();
        }
        if let Some(pattern) = word
            .strip_prefix(CORE_PATTERN_FLAG)
            .and_then(|rest| rest.strip_prefix('='))
        {
            return Some(pattern);
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub node: String,
    /// `kernel.core_pattern` as the watcher read it (`None` when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_pattern: Option<String>,
    /// Whether the watcher set the pattern itself (node setup) and what it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_core_pattern: Option<String>,
    /// The directory the watcher watches (the node's dump root as mounted in its pod).
    pub corefile_dir: String,
    /// `ok`, or why storage cannot be reached.
    pub storage: String,
    /// Dumps waiting on this node, and their bytes.
    pub backlog_files: u64,
    pub backlog_bytes: u64,
    pub updated_at: Timestamp,
}

/// Whether a core pattern writes into `mount_path` inside a container: the kernel resolves a
/// pattern that is a path in the crashing process's mount namespace, so the pattern's directory
/// must be the path pods mount their dump directory at. A pattern starting with `|` pipes the
/// core to a program instead, and never reaches CoreDog.
pub fn pattern_writes_into(core_pattern: &str, mount_path: &str) -> bool {
    let pattern = core_pattern.trim();
    if pattern.starts_with('|') || !pattern.starts_with('/') {
        return false;
    }
    match pattern.rsplit_once('/') {
        Some((dir, _file)) => {
            crate::mount_path::same_directory(dir, mount_path.trim_end_matches('/'))
        }
        None => false,
    }
}

/// The kernel keeps `kernel.core_pattern` in a 128-byte buffer that includes the closing NUL.
pub const MAX_CORE_PATTERN_BYTES: usize = 127;

/// Why `pattern` cannot be the `kernel.core_pattern` node setup sets, if it cannot: it must make
/// the kernel write a file CoreDog can pick up, an absolute path (a `|` pipe hands the core to a
/// program instead) naming a file, that fits the kernel's buffer, in printable ASCII so that it
/// survives logs, YAML and the sysctl interface unchanged.
pub fn core_pattern_problem(pattern: &str) -> Option<&'static str> {
    if pattern.starts_with('|') {
        Some("pipes cores to a program; CoreDog needs a file path")
    } else if !pattern.starts_with('/') {
        Some(
            "is not an absolute path; the kernel would write into the crashing process's working directory",
        )
    } else if pattern.ends_with('/') {
        Some("ends with '/' and so names no file")
    } else if pattern.len() > MAX_CORE_PATTERN_BYTES {
        Some("is longer than the kernel's 127 bytes")
    } else if !pattern.bytes().all(|byte| (0x20..=0x7e).contains(&byte)) {
        Some("contains a character that is not printable ASCII")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_core_pattern_argument_in_both_spellings() {
        use super::core_pattern_argument as pattern;
        let words = |line: &'static str| line.split(' ');
        assert_eq!(
            pattern(words(
                "watcher --core-pattern /corefile/core.%p --daemonset d"
            )),
            Some("/corefile/core.%p")
        );
        assert_eq!(
            pattern(words("watcher --core-pattern=/corefile/core.%p")),
            Some("/corefile/core.%p")
        );
        assert_eq!(
            pattern(words("watcher --dir /corefile --core-pattern")),
            None
        );
        assert_eq!(
            pattern(words("watcher --core-patterns=/x --dir /corefile")),
            None
        );
    }

    use super::*;

    #[test]
    fn patterns_and_mount_paths() {
        assert!(pattern_writes_into(
            "/corefile/core.%e.%p.%h.%t",
            "/corefile"
        ));
        assert!(!pattern_writes_into("/corefile/core.%e", "/data/dumps"));
        assert!(!pattern_writes_into(
            "|/usr/lib/systemd/systemd-coredump %P",
            "/corefile"
        ));
        assert!(!pattern_writes_into("core", "/corefile"));
        assert!(!pattern_writes_into("/corefile/sub/core", "/corefile"));
        // The kernel resolves the pattern's directory as a path: spellings of one directory.
        for spelt in [
            "//corefile/core.%p",
            "/corefile/./core.%p",
            "/x/../corefile/core",
        ] {
            assert!(pattern_writes_into(spelt, "/corefile"), "{spelt}");
        }
    }

    #[test]
    fn core_patterns_node_setup_may_set() {
        assert_eq!(core_pattern_problem("/corefile/core.%e.%p.%h.%t"), None);
        for bad in [
            "|/bin/handler %p",
            "core",
            "/corefile/",
            "/corefile/core\u{e9}",
        ] {
            assert!(core_pattern_problem(bad).is_some(), "{bad}");
        }
        assert!(core_pattern_problem(&format!("/{}", "c".repeat(127))).is_some());
    }

    #[test]
    fn status_round_trips() {
        let status = NodeStatus {
            node: "n1".into(),
            core_pattern: Some("/corefile/core.%e.%p.%h.%t".into()),
            previous_core_pattern: None,
            corefile_dir: "/corefile".into(),
            storage: "ok".into(),
            backlog_files: 0,
            backlog_bytes: 0,
            updated_at: "2026-11-27T10:00:00Z".parse().unwrap(),
        };
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains("\"corePattern\""));
        assert_eq!(serde_json::from_str::<NodeStatus>(&json).unwrap(), status);
    }
}
