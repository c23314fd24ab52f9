//! Where CoreDog keeps dumps.
//!
//! Two kinds of storage, one interface ([`Store`]):
//!
//! - [`s3::S3Store`]: AWS S3 and every S3-compatible service (Tencent COS, Aliyun OSS, MinIO,
//!   SeaweedFS, ...), through rust-s3's multipart calls under CoreDog's own bounded pipeline.
//! - [`cfs::CfsStore`]: a mounted shared filesystem (Tencent CFS, NFS): the object key is a
//!   path below the mount, written to a temporary name, fsynced and renamed.
//!
//! Uploads are streamed: the caller sends parts through a channel and the store uploads at most
//! `parts_in_flight` of them at once, so memory stays at
//! `part_size × (parts_in_flight + 2)` whatever the dump's size. Part buffers go back to the
//! sender once stored ([`PartSender::buffer`]), so a long upload reuses the same few buffers
//! instead of asking the allocator for a fresh one per part. Every part is retried with
//! exponential backoff and jitter; an upload that fails for good is aborted (no orphan parts)
//! and reported, and the caller retries it later.

pub mod cfs;
mod retry;
pub mod s3;

use coredog_core::config::{Protocol, StorageConfig};
use jiff::Timestamp;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use thiserror::Error;

use tokio::sync::mpsc;

pub use retry::RetryPolicy;

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<Timestamp>,
}

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub next: Option<String>,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("{operation} {key}: {source}")]
    S3 {
        operation: &'static str,
        key: String,
        source: ::s3::error::S3Error,
    },
    /// The endpoint showed a certificate this machine does not trust: no use trying again
    /// until the CA is trusted (the system's store or `SSL_CERT_FILE`) or the endpoint fixed.
    #[error("{operation} {key}: the storage endpoint's certificate is not trusted here: {problem}")]
    UntrustedCertificate {
        operation: &'static str,
        key: String,
        problem: String,
        /// Signed by a CA this machine does not know (rather than expired, or for another
        /// name): trusting that CA would mend it.
        unknown_issuer: bool,
    },
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("the upload of {key} was given no data source: {reason}")]
    Source { key: String, reason: String },
}

impl StoreError {
    /// Whether trying again later may succeed: an S3 store was unreachable, busy or failing
    /// rather than refusing (permissions, a missing object), or a filesystem store failed at
    /// all (its errors are taken as passing: a mount that comes back); never a configuration
    /// error.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::S3 { source, .. } => s3::is_transient(source),
            Self::Io { .. } => true,
            Self::Config(_)
            | Self::UntrustedCertificate { .. }
            | Self::NotFound(_)
            | Self::Source { .. } => false,
        }
    }

    /// The store answered but refused to tell or to do it: the credentials lack the
    /// permission (HTTP 401 or 403).
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            Self::S3 {
                source: ::s3::error::S3Error::HttpFailWithBody(401 | 403, _),
                ..
            }
        )
    }

    /// A short label for metrics (`failures_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::S3 { .. } => "s3",
            Self::UntrustedCertificate { .. } => "tls",
            Self::Io { .. } => "io",
            Self::NotFound(_) => "not_found",
            Self::Source { .. } => "source",
        }
    }
}

/// Bytes of an object read by [`Store::read_range`], and where in the object they belong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub bytes: Bytes,
}

/// How an upload is streamed.
#[derive(Debug, Clone, Copy)]
pub struct UploadOptions {
    /// Parts uploaded at once.
    pub parts_in_flight: usize,
    pub retry: RetryPolicy,
    /// The source is larger than one part: start the multipart upload before the first part
    /// is filled, so the upload begins the moment the source is found. Without it, the store
    /// waits for a second part and sends a dump that fits one part as a single PUT.
    pub multipart_at_once: bool,
}

impl UploadOptions {
    pub fn from_config(storage: &StorageConfig) -> Self {
        Self {
            parts_in_flight: storage.parts_in_flight.max(1) as usize,
            retry: RetryPolicy::patient(),
            multipart_at_once: false,
        }
    }
}

/// The upload a part was sent to has stopped (failed); its error says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the upload stopped before all parts were sent")]
pub struct UploadClosed;

/// The producer's end of an upload: parts in order, then [`PartSender::finish`]. Dropping it
/// without `finish` (the source failed, or changed while being read) aborts the upload, so a
/// partial dump never becomes an object.
pub struct PartSender {
    parts: mpsc::Sender<Vec<u8>>,
    finished: Arc<AtomicBool>,
    spare: SpareBuffers,
}

impl PartSender {
    /// An empty buffer of at least `capacity` bytes for the next part: one the store has
    /// finished with when there is one.
    pub fn buffer(&self, capacity: usize) -> Vec<u8> {
        let mut buffer = self.spare.take().unwrap_or_default();
        buffer.clear();
        buffer.reserve_exact(capacity);
        buffer
    }

    /// Sends the next part; waits while the store has no room for it. `Err` when the upload has
    /// already failed (its error comes from the upload future).
    pub fn send_blocking(&self, part: Vec<u8>) -> Result<(), UploadClosed> {
        self.parts.blocking_send(part).map_err(|_| UploadClosed)
    }

    pub async fn send(&self, part: Vec<u8>) -> Result<(), UploadClosed> {
        self.parts.send(part).await.map_err(|_| UploadClosed)
    }

    /// Every part has been sent: the upload may complete.
    pub fn finish(self) {
        self.finished.store(true, Ordering::Release);
    }
}

/// The store's end of an upload.
pub struct PartReceiver {
    parts: mpsc::Receiver<Vec<u8>>,
    finished: Arc<AtomicBool>,
    spare: SpareBuffers,
}

impl PartReceiver {
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.parts.recv().await
    }

    /// Where a stored part's buffer goes back to the sender.
    pub fn spare_buffers(&self) -> SpareBuffers {
        self.spare.clone()
    }

    /// After [`PartReceiver::next`] returned `None`: whether the producer finished, rather than
    /// gave up.
    pub fn completed(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

/// Creates the part channel of one upload. Its capacity is one part: with the part being
/// filled by the sender and `parts_in_flight` parts being uploaded, that is the memory bound.
pub fn part_channel() -> (PartSender, PartReceiver) {
    let (parts, receiver) = mpsc::channel(1);
    let finished = Arc::new(AtomicBool::new(false));
    let spare = SpareBuffers::default();
    (
        PartSender {
            parts,
            finished: finished.clone(),
            spare: spare.clone(),
        },
        PartReceiver {
            parts: receiver,
            finished,
            spare,
        },
    )
}

/// Part buffers the store has finished with, waiting to be filled again. Never holds more than
/// the parts that can be alive at once, since only those are ever returned.
#[derive(Clone, Default)]
pub struct SpareBuffers(Arc<Mutex<Vec<Vec<u8>>>>);

impl SpareBuffers {
    pub fn put(&self, buffer: Vec<u8>) {
        if let Ok(mut spare) = self.0.lock() {
            spare.push(buffer);
        }
    }

    /// Takes the buffer back from a sent part when nothing else holds it any more.
    pub fn put_bytes(&self, part: Bytes) {
        if let Ok(buffer) = part.try_into_mut() {
            self.put(buffer.into());
        }
    }

    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok()?.pop()
    }
}

fn abandoned(key: &str) -> StoreError {
    StoreError::Source {
        key: key.to_owned(),
        reason: "the source stopped before the last part".to_owned(),
    }
}

/// The storage a config names.
pub enum Store {
    S3(s3::S3Store),
    Cfs(cfs::CfsStore),
}

impl Store {
    /// Opens the storage `storage` describes, with credentials from the config, the files it
    /// names, the environment, or (for S3 without static keys) the provider chain.
    pub fn from_config(storage: &StorageConfig) -> Result<Self, StoreError> {
        match storage.protocol {
            Protocol::Cfs => Ok(Self::Cfs(cfs::CfsStore::from_config(storage)?)),
            Protocol::S3 | Protocol::Cos | Protocol::Oss => {
                Ok(Self::S3(s3::S3Store::from_config(storage)?))
            }
        }
    }

    /// `s3://bucket at https://endpoint` or `cfs:/mnt/cfs`: for logs, never with secrets.
    pub fn describe(&self) -> String {
        match self {
            Self::S3(store) => store.describe(),
            Self::Cfs(store) => store.describe(),
        }
    }

    /// Streams the parts received on `parts` into the object `key`; completes only when the
    /// sender finished. Returns the stored size
    /// once the object is complete and durable; on error nothing is left behind (the multipart
    /// upload is aborted, the temporary file removed).
    pub async fn upload(
        &self,
        key: &str,
        content_type: &str,
        parts: PartReceiver,
        options: UploadOptions,
    ) -> Result<u64, StoreError> {
        match self {
            Self::S3(store) => store.upload(key, content_type, parts, options).await,
            Self::Cfs(store) => store.upload(key, parts).await,
        }
    }

    /// Stores a small object in one request (records), retried.
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<(), StoreError> {
        match self {
            Self::S3(store) => store.put_bytes(key, bytes, content_type).await,
            Self::Cfs(store) => store.put_bytes(key, bytes).await,
        }
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        match self {
            Self::S3(store) => store.head(key).await,
            Self::Cfs(store) => store.head(key).await,
        }
    }

    /// One page (up to 1000 objects) of the keys under `prefix`, in key order.
    pub async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        self.list_page_after(prefix, continuation, None).await
    }

    /// [`Store::list_page`], starting after the key `start_after` (which need not exist) when
    /// there is no continuation yet.
    pub async fn list_page_after(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        start_after: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        match self {
            Self::S3(store) => store.list_page(prefix, continuation, start_after).await,
            Self::Cfs(store) => store.list_page(prefix, continuation.or(start_after)).await,
        }
    }

    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Self::S3(store) => store.get_bytes(key).await,
            Self::Cfs(store) => store.get_bytes(key).await,
        }
    }

    /// Bytes `start..=end_inclusive` of `key`.
    pub async fn get_range(
        &self,
        key: &str,
        start: u64,
        end_inclusive: u64,
    ) -> Result<bytes::Bytes, StoreError> {
        match self {
            Self::S3(store) => store.get_range(key, start, end_inclusive).await,
            Self::Cfs(store) => store.get_range(key, start, end_inclusive).await,
        }
    }

    /// Streams bytes `start..=end_inclusive` of `key` to `to` as they arrive, each piece with
    /// its offset, without holding the range in memory. A read that breaks off is continued
    /// from where it stopped. Returns early, without error, when `to` is closed.
    pub async fn read_range(
        &self,
        key: &str,
        start: u64,
        end_inclusive: u64,
        to: &mpsc::Sender<Piece>,
    ) -> Result<(), StoreError> {
        match self {
            Self::S3(store) => store.read_range(key, start, end_inclusive, to).await,
            Self::Cfs(store) => store.read_range(key, start, end_inclusive, to).await,
        }
    }

    /// Where people download `key`: a presigned GET valid for `expires_seconds`, or the path
    /// on the shared filesystem.
    pub async fn download_url(
        &self,
        key: &str,
        expires_seconds: u32,
    ) -> Result<String, StoreError> {
        match self {
            Self::S3(store) => store.presign_get(key, expires_seconds).await,
            Self::Cfs(store) => Ok(store.path_of(key)?.display().to_string()),
        }
    }
}
