//! Node setup: the watcher sets `kernel.core_pattern` itself, so nobody has to log into a node.
//!
//! With `--core-pattern`, the (privileged) watcher writes the pattern into
//! `/proc/sys/kernel/core_pattern` at every start ([`apply`]). The value is not persistent, so a
//! rebooted node gets it back when its watcher starts again. Before the first change the original
//! value is saved to `<state-dir>/previous-core-pattern` on the node; that file is never
//! overwritten afterwards, because after a restart the "current" value is our own pattern and
//! saving it would lose the original for good.
//!
//! On SIGTERM the watcher calls [`restore_if_setup_ended`], which puts the original back only when
//! CoreDog is being uninstalled, or upgraded with node setup turned off. A rolling update also
//! stops every watcher, and restoring then would send the cores of any crash in the gap to the
//! old place, so the watcher asks the API server whether its DaemonSet still exists and still
//! sets a pattern. Whenever the answer is unclear it keeps our pattern: a pattern left behind
//! after an uninstall is a nuisance, lost cores are not recoverable.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coredog_core::node_status::{core_pattern_argument, core_pattern_problem};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::Api;
use thiserror::Error;
use tracing::{info, warn};

/// Where the kernel exposes the pattern.
pub const PROC_CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// The file in the state directory that remembers the node's original pattern.
pub const PREVIOUS_PATTERN_FILE: &str = "previous-core-pattern";

/// How long the question to the API server may take: the kubelet's grace period is short and the
/// watcher still has to drain its uploads.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum NodeSetupError {
    #[error("core pattern {pattern:?} {reason}")]
    InvalidPattern {
        pattern: String,
        reason: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("wrote {wanted:?} to {path} but it reads back {found:?}")]
    NotTaken {
        path: PathBuf,
        wanted: String,
        found: String,
    },
}

/// The files node setup works on; tests point them at temporary files.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    /// Normally [`PROC_CORE_PATTERN`].
    pub core_pattern: PathBuf,
    /// A node directory that survives the watcher's pod (a hostPath), for the original pattern.
    pub state_dir: PathBuf,
}

impl NodeFiles {
    /// The real kernel setting, with the original pattern remembered under `state_dir`.
    pub fn on_node(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            core_pattern: PathBuf::from(PROC_CORE_PATTERN),
            state_dir: state_dir.into(),
        }
    }

    pub fn previous_pattern_file(&self) -> PathBuf {
        self.state_dir.join(PREVIOUS_PATTERN_FILE)
    }

    /// The original pattern saved before CoreDog first changed it, if any.
    pub fn remembered(&self) -> Result<Option<String>, NodeSetupError> {
        let path = self.previous_pattern_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(strip_newline(&text).to_owned())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NodeSetupError::Read { path, source }),
        }
    }
}

/// What [`apply`] found and did, for the node status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The node's original pattern, when CoreDog has replaced it (now or before a restart).
    pub previous: Option<String>,
    /// The pattern in force now.
    pub current: String,
    /// Whether this call wrote the pattern.
    pub changed: bool,
}

/// What [`restore_if_setup_ended`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// Node setup ends (uninstalled, or turned off): this original pattern was written back.
    Restored(String),
    /// The DaemonSet is still there and still sets a pattern (a rolling update or a restart):
    /// ours stays.
    KeptRestart,
    /// CoreDog never changed this node's pattern.
    NothingRemembered,
    /// The API server gave no usable answer; our pattern stays. The reason says why.
    Undecided(String),
}

/// Reads the kernel's pattern (without the newline procfs adds), or `None` when unreadable.
pub fn read_core_pattern(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| strip_newline(&text).to_owned())
}

/// Checks that `pattern` makes the kernel write a file CoreDog can pick up
/// ([`core_pattern_problem`]).
pub fn validate_pattern(pattern: &str) -> Result<(), NodeSetupError> {
    match core_pattern_problem(pattern) {
        Some(reason) => Err(NodeSetupError::InvalidPattern {
            pattern: pattern.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Sets the kernel's pattern to `desired`, first saving the node's original pattern unless one
/// is already saved.
pub fn apply(files: &NodeFiles, desired: &str) -> Result<Applied, NodeSetupError> {
    validate_pattern(desired)?;
    let current = read_pattern(&files.core_pattern)?;
    if current == desired {
        return Ok(Applied {
            previous: files.remembered()?,
            current,
            changed: false,
        });
    }
    let previous = match files.remembered()? {
        Some(saved) => saved,
        None => {
            write_atomically(&files.state_dir, PREVIOUS_PATTERN_FILE, &current)?;
            current.clone()
        }
    };
    write_pattern(&files.core_pattern, desired)?;
    info!(previous = %previous, was = %current, core_pattern = %desired, "set kernel.core_pattern");
    Ok(Applied {
        previous: Some(previous),
        current: desired.to_owned(),
        changed: true,
    })
}

/// Called on SIGTERM: puts the node's original pattern back if, and only if, the DaemonSet
/// `daemonset` in `namespace` is gone, being deleted, or no longer sets a pattern (its pods are
/// being replaced by watchers without node setup, which would never restore it).
pub async fn restore_if_setup_ended(
    client: &kube::Client,
    namespace: &str,
    daemonset: &str,
    files: &NodeFiles,
) -> Result<Restored, NodeSetupError> {
    let Some(previous) = files.remembered()? else {
        return Ok(Restored::NothingRemembered);
    };
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let why = match tokio::time::timeout(API_TIMEOUT, api.get(daemonset)).await {
        Ok(Ok(found)) => match &found.metadata.deletion_timestamp {
            Some(when) => format!(
                "DaemonSet {namespace}/{daemonset} is being deleted since {}",
                when.0
            ),
            None => match sets_core_pattern(&found) {
                Some(false) => format!(
                    "DaemonSet {namespace}/{daemonset} no longer sets kernel.core_pattern: node setup is turned off"
                ),
                Some(true) => {
                    info!(
                        daemonset,
                        "DaemonSet still sets kernel.core_pattern: a restart, keeping it"
                    );
                    return Ok(Restored::KeptRestart);
                }
                None => {
                    return Ok(undecided(format!(
                        "DaemonSet {namespace}/{daemonset} came without its pods' spec"
                    )));
                }
            },
        },
        Ok(Err(kube::Error::Api(status))) if is(&status, "NotFound", 404) => {
            format!("DaemonSet {namespace}/{daemonset} no longer exists")
        }
        // `helm uninstall` removes the watcher's Role and ServiceAccount along with the
        // DaemonSet, so a refusal at this moment means the install is being taken apart.
        Ok(Err(kube::Error::Api(status)))
            if is(&status, "Unauthorized", 401) || is(&status, "Forbidden", 403) =>
        {
            format!(
                "the API server refuses to show DaemonSet {namespace}/{daemonset} ({}), as it does once the uninstall has removed the watcher's access",
                status.code
            )
        }
        Ok(Err(err)) => {
            return Ok(undecided(format!(
                "cannot read DaemonSet {namespace}/{daemonset}: {err}"
            )));
        }
        Err(_) => {
            return Ok(undecided(format!(
                "no answer about DaemonSet {namespace}/{daemonset} within {API_TIMEOUT:?}"
            )));
        }
    };
    write_pattern(&files.core_pattern, &previous)?;
    let state = files.previous_pattern_file();
    if let Err(source) = std::fs::remove_file(&state) {
        return Err(NodeSetupError::Write {
            path: state,
            source,
        });
    }
    sync_dir(&files.state_dir);
    info!(reason = %why, core_pattern = %previous, "node setup ended: restored kernel.core_pattern");
    Ok(Restored::Restored(previous))
}

/// Whether a container of the DaemonSet's pods is given a pattern to set; `None` without
/// their spec to tell.
fn sets_core_pattern(daemon_set: &DaemonSet) -> Option<bool> {
    let pod = daemon_set.spec.as_ref()?.template.spec.as_ref()?;
    Some(pod.containers.iter().any(|container| {
        let command_line = container.command.iter().chain(&container.args).flatten();
        core_pattern_argument(command_line.map(String::as_str)).is_some()
    }))
}

fn undecided(reason: String) -> Restored {
    warn!(reason = %reason, "cannot tell the end of node setup from a restart: keeping kernel.core_pattern");
    Restored::Undecided(reason)
}

/// Matches an API error by its reason, or by its code when the reason is empty; a body that
/// was not a Kubernetes `Status` (a proxy's page) never counts as a decisive answer.
fn is(status: &kube::core::Status, reason: &str, code: u16) -> bool {
    status.reason == reason || (status.reason.is_empty() && status.code == code)
}

fn strip_newline(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

fn read_pattern(path: &Path) -> Result<String, NodeSetupError> {
    std::fs::read_to_string(path)
        .map(|text| strip_newline(&text).to_owned())
        .map_err(|source| NodeSetupError::Read {
            path: path.to_owned(),
            source,
        })
}

/// procfs takes the value in one `write`; reading it back catches a kernel that refused it
/// silently (a read-only `/proc/sys` without privileges fails loudly, but not every runtime).
fn write_pattern(path: &Path, pattern: &str) -> Result<(), NodeSetupError> {
    std::fs::write(path, pattern).map_err(|source| NodeSetupError::Write {
        path: path.to_owned(),
        source,
    })?;
    let found = read_pattern(path)?;
    if found != pattern {
        return Err(NodeSetupError::NotTaken {
            path: path.to_owned(),
            wanted: pattern.to_owned(),
            found,
        });
    }
    Ok(())
}

/// Writes `dir/name` so that a crash or power loss leaves either no file or the whole value,
/// never an empty file that would later "restore" an empty pattern.
fn write_atomically(dir: &Path, name: &str, value: &str) -> Result<(), NodeSetupError> {
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| NodeSetupError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(failed(dir))?;
    let mut file = std::fs::File::create(&temp).map_err(failed(&temp))?;
    file.write_all(format!("{value}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed(&temp))?;
    drop(file);
    std::fs::rename(&temp, &target).map_err(failed(&target))?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename or removal in `dir` durable; a failure only weakens durability, so it is
/// logged rather than returned.
fn sync_dir(dir: &Path) {
    if let Err(err) = std::fs::File::open(dir).and_then(|handle| handle.sync_all()) {
        warn!(dir = %dir.display(), error = %err, "cannot sync directory");
    }
}
