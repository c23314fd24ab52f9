//! The core size limit inside a container, through the API server's exec.
//!
//! A process started by exec gets the limits the container runtime gives new processes, not
//! those of the workload's process: a server started as `sh -c "ulimit -c unlimited && exec
//! ./server"` dumps core while `ulimit -c` in a new shell still says 0, and the other way round.
//! So the limit is read from `/proc/1/limits`, the container's main process, and only when that
//! cannot be read (no `cat` in the image, or PID 1 is not the container's: the pause process
//! of a pod sharing its process namespace, the node's init with `hostPID`) from a new shell,
//! and said so.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::AttachParams;
use kube::{Api, Client};
use tokio::io::AsyncReadExt as _;

const EXEC_TIMEOUT: Duration = Duration::from_secs(15);

/// The soft limit on the size of a core dump (`RLIMIT_CORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreSizeLimit {
    Unlimited,
    /// 0: no core is written at all.
    Off,
    /// A limit, in the unit it was read in (bytes, or a shell's blocks).
    Limited(String),
}

/// Which process the limit is that of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// The container's PID 1: the workload's own process (or the shell that starts it).
    MainProcess,
    /// A shell started for the check, which has the runtime's limits, not the workload's.
    NewShell,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreLimitReading {
    pub limit: CoreSizeLimit,
    pub source: LimitSource,
}

/// Reads the core size limit in a container; `Err` says why it could not (often: the image
/// has neither `cat` nor a shell).
pub trait CoreLimitProbe {
    /// `main_process_is_pid_one` is false for pods that share their process namespace, whose
    /// PID 1 is the pause process, and for pods that use the host's (`hostPID`), whose PID 1 is
    /// the node's init.
    fn core_limit(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        main_process_is_pid_one: bool,
    ) -> impl Future<Output = Result<CoreLimitReading, String>>;
}

/// The soft core size limit in the text of a `/proc/<pid>/limits` file.
pub fn parse_proc_limits(text: &str) -> Option<CoreSizeLimit> {
    let line = text
        .lines()
        .find(|line| line.starts_with("Max core file size"))?;
    let soft = line
        .strip_prefix("Max core file size")?
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(CoreSizeLimit::Unlimited),
        "0" => Some(CoreSizeLimit::Off),
        bytes => bytes
            .parse::<u64>()
            .ok()
            .map(|bytes| CoreSizeLimit::Limited(format!("{bytes} bytes"))),
    }
}

/// The limit a shell's `ulimit -c` printed.
pub fn parse_ulimit(text: &str) -> Result<CoreSizeLimit, String> {
    match text.trim() {
        "unlimited" => Ok(CoreSizeLimit::Unlimited),
        "0" => Ok(CoreSizeLimit::Off),
        other => match other.parse::<u64>() {
            Ok(blocks) => Ok(CoreSizeLimit::Limited(format!("{blocks} blocks"))),
            Err(_) => Err(format!("unexpected output {other:?}")),
        },
    }
}

/// The probe through the cluster (needs `create pods/exec`).
pub struct KubeExec {
    pub client: Client,
}

impl KubeExec {
    /// Runs `command` in the container; its standard output, or why it failed.
    async fn run(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        command: &[&str],
    ) -> Result<String, String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let run = async {
            let params = AttachParams::default()
                .container(container)
                .stdin(false)
                .stdout(true)
                .stderr(true);
            let mut process = pods
                .exec(pod, command.iter().copied(), &params)
                .await
                .map_err(|err| crate::error::kube_message(&err))?;
            // Both streams are read at once: the client buffers little of either, and a
            // command that fills stderr would otherwise stall with its stdout unread.
            let read = |stream: Option<tokio::io::ReadHalf<tokio::io::SimplexStream>>| async move {
                let mut text = String::new();
                if let Some(mut reader) = stream {
                    reader
                        .read_to_string(&mut text)
                        .await
                        .map_err(|err: std::io::Error| err.to_string())?;
                }
                Ok::<_, String>(text)
            };
            let (stdout, stderr) = tokio::join!(read(process.stdout()), read(process.stderr()));
            let (stdout, stderr) = (stdout?, stderr.unwrap_or_default());
            let status = match process.take_status() {
                Some(status) => status.await,
                None => None,
            };
            let _ = process.join().await;
            if let Some(status) = status
                && status.status.as_deref() == Some("Failure")
            {
                return Err(status
                    .message
                    .filter(|message| !message.is_empty())
                    .map_or_else(
                        || "the command failed".to_owned(),
                        |message| shown(&message),
                    ));
            }
            if stdout.trim().is_empty() {
                Err(match stderr.lines().find(|line| !line.trim().is_empty()) {
                    Some(line) => shown(line.trim()),
                    None => "no output".to_owned(),
                })
            } else {
                Ok(stdout)
            }
        };
        tokio::time::timeout(EXEC_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()))
    }
}

/// What a container printed, fit for the user's terminal: the container is the tenant's, and
/// its control characters (escape sequences among them) show as `?`.
fn shown(text: &str) -> String {
    coredog_core::template::on_one_line(text).into_owned()
}

impl CoreLimitProbe for KubeExec {
    async fn core_limit(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        main_process_is_pid_one: bool,
    ) -> Result<CoreLimitReading, String> {
        if main_process_is_pid_one
            && let Ok(text) = self
                .run(namespace, pod, container, &["cat", "/proc/1/limits"])
                .await
            && let Some(limit) = parse_proc_limits(&text)
        {
            return Ok(CoreLimitReading {
                limit,
                source: LimitSource::MainProcess,
            });
        }
        let text = self
            .run(namespace, pod, container, &["sh", "-c", "ulimit -c"])
            .await?;
        Ok(CoreLimitReading {
            limit: parse_ulimit(&text)?,
            source: LimitSource::NewShell,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
";

    #[test]
    fn reads_the_soft_core_limit_of_a_process() {
        assert_eq!(parse_proc_limits(LIMITS), Some(CoreSizeLimit::Off));
        let unlimited = LIMITS.replace(
            "Max core file size        0  ",
            "Max core file size        unlimited",
        );
        assert_eq!(
            parse_proc_limits(&unlimited),
            Some(CoreSizeLimit::Unlimited)
        );
        let limited = LIMITS.replace(
            "Max core file size        0  ",
            "Max core file size        1048576",
        );
        assert_eq!(
            parse_proc_limits(&limited),
            Some(CoreSizeLimit::Limited("1048576 bytes".to_owned()))
        );
        assert_eq!(parse_proc_limits("no limits here"), None);
    }

    #[test]
    fn reads_what_a_shell_says() {
        assert_eq!(parse_ulimit("unlimited\n"), Ok(CoreSizeLimit::Unlimited));
        assert_eq!(parse_ulimit("0\n"), Ok(CoreSizeLimit::Off));
        assert_eq!(
            parse_ulimit("2048"),
            Ok(CoreSizeLimit::Limited("2048 blocks".to_owned()))
        );
        assert!(parse_ulimit("sh: ulimit: not found").is_err());
    }
}
