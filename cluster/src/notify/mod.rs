//! Telling people: chat channels, generic webhooks and CoreSight.
//!
//! (Being written; see the interface below.)

use coredog_core::config::Config;
use coredog_core::record::DumpRecord;
use prometheus_client::registry::Registry;

/// Sends notices for the watcher. Queues and returns at once: a notification never blocks or
/// undoes an upload.
pub struct Notifier {}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Config(String),
}

impl Notifier {
    pub fn from_config(
        _config: &Config,
        _http: reqwest::Client,
        _registry: &mut Registry,
    ) -> Result<Self, NotifyError> {
        Ok(Self {})
    }

    /// A dump and its record are stored; `download_url` is a presigned GET or the CFS path.
    pub fn dump_stored(&self, _record: &DumpRecord, _download_url: &str) {}

    /// Shipping `host_path` has been failing for `failing_for`; announced once per file.
    pub fn upload_failing(
        &self,
        _host_path: &str,
        _reason: &str,
        _failing_for: std::time::Duration,
    ) {
    }

    /// Sends what is queued, waiting at most `timeout`.
    pub async fn shutdown(self, _timeout: std::time::Duration) {}
}
