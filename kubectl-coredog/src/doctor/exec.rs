//! `ulimit -c` inside a container, through the API server's exec.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::AttachParams;
use kube::{Api, Client};
use tokio::io::AsyncReadExt as _;

const EXEC_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `ulimit -c` in a container; `Err` says why it could not (often: the image has no shell).
pub trait CoreLimitProbe {
    fn core_limit(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> impl Future<Output = Result<String, String>>;
}

/// The probe through the cluster (needs `create pods/exec`).
pub struct KubeExec {
    pub client: Client,
}

impl CoreLimitProbe for KubeExec {
    async fn core_limit(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<String, String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let run = async {
            let params = AttachParams::default()
                .container(container)
                .stdin(false)
                .stdout(true)
                .stderr(true);
            let mut process = pods
                .exec(pod, ["sh", "-c", "ulimit -c"], &params)
                .await
                .map_err(|err| crate::error::kube_message(&err))?;
            let mut stdout = String::new();
            if let Some(mut reader) = process.stdout() {
                reader
                    .read_to_string(&mut stdout)
                    .await
                    .map_err(|err| err.to_string())?;
            }
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
                    .unwrap_or_else(|| "the command failed".to_owned()));
            }
            let value = stdout.trim().to_owned();
            if value.is_empty() {
                Err("no output".to_owned())
            } else {
                Ok(value)
            }
        };
        tokio::time::timeout(EXEC_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()))
    }
}
