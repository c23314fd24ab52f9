//! Storage in memory, with a log of the requests made: what the storage commands are tested
//! against when no S3 server is needed to show a behaviour.

use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::sync::Mutex;

use bytes::Bytes;
use coredog_store::{ListPage, ObjectInfo, Piece, StoreError};

use super::DumpStorage;

/// Bytes per piece of a range read.
const MEMORY_PIECE: usize = 300;

pub struct MemoryStorage {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    /// When objects were stored, where a test says so.
    stored_at: Mutex<BTreeMap<String, jiff::Timestamp>>,
    requests: Mutex<Vec<String>>,
    page_size: usize,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::with_page_size(1000)
    }
}

impl MemoryStorage {
    pub fn with_page_size(page_size: usize) -> Self {
        Self {
            objects: Mutex::new(BTreeMap::new()),
            stored_at: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(Vec::new()),
            page_size: page_size.max(1),
        }
    }

    pub fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        if let Ok(mut objects) = self.objects.lock() {
            objects.insert(key.to_owned(), bytes.into());
        }
    }

    /// Gives `key` a `Last-Modified`.
    pub fn set_stored_at(&self, key: &str, at: jiff::Timestamp) {
        if let Ok(mut stored_at) = self.stored_at.lock() {
            stored_at.insert(key.to_owned(), at);
        }
    }

    fn stored_at(&self, key: &str) -> Option<jiff::Timestamp> {
        self.stored_at.lock().ok()?.get(key).copied()
    }

    pub fn remove(&self, key: &str) {
        if let Ok(mut objects) = self.objects.lock() {
            objects.remove(key);
        }
    }

    /// The requests made so far, as `list <prefix>`, `get <key>`, `range <key> <start>-<end>`,
    /// `head <key>`; and forgets them.
    pub fn take_requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .map(|mut requests| std::mem::take(&mut *requests))
            .unwrap_or_default()
    }

    fn log(&self, request: String) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request);
        }
    }

    fn object(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.objects
            .lock()
            .ok()
            .and_then(|objects| objects.get(key).cloned())
            .ok_or_else(|| StoreError::NotFound(key.to_owned()))
    }
}

impl DumpStorage for MemoryStorage {
    fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        start_after: Option<&str>,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send {
        self.log(match start_after {
            Some(after) if continuation.is_none() => format!("list {prefix} after {after}"),
            _ => format!("list {prefix}"),
        });
        let continuation = continuation.or(start_after);
        let page = self
            .objects
            .lock()
            .map(|objects| {
                let mut keys = objects
                    .iter()
                    .filter(|(key, _)| key.starts_with(prefix))
                    .filter(|(key, _)| continuation.is_none_or(|after| key.as_str() > after));
                let objects: Vec<ObjectInfo> = keys
                    .by_ref()
                    .take(self.page_size)
                    .map(|(key, bytes)| ObjectInfo {
                        key: key.clone(),
                        size: bytes.len() as u64,
                        last_modified: self.stored_at(key),
                    })
                    .collect();
                let next = if keys.next().is_some() {
                    objects.last().map(|last| last.key.clone())
                } else {
                    None
                };
                ListPage { objects, next }
            })
            .unwrap_or_default();
        ready(Ok(page))
    }

    fn get_bytes(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send {
        self.log(format!("get {key}"));
        ready(self.object(key))
    }

    /// Sends the range in small pieces, yielding between them, so that ranges read at once
    /// arrive interleaved as they do from a server.
    fn read_range(
        &self,
        key: &str,
        start: u64,
        end_inclusive: u64,
        to: &tokio::sync::mpsc::Sender<Piece>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.log(format!("range {key} {start}-{end_inclusive}"));
        let range = self.object(key).map(|bytes| {
            let len = bytes.len() as u64;
            let start = start.min(len) as usize;
            let end = end_inclusive.saturating_add(1).min(len) as usize;
            (start, Bytes::copy_from_slice(&bytes[start..end.max(start)]))
        });
        async move {
            let (start, bytes) = range?;
            let mut at = 0;
            while at < bytes.len() {
                let piece = bytes.slice(at..(at + MEMORY_PIECE).min(bytes.len()));
                let offset = (start + at) as u64;
                at += piece.len();
                if to
                    .send(Piece {
                        offset,
                        bytes: piece,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Ok(())
        }
    }

    fn head(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectInfo>, StoreError>> + Send {
        self.log(format!("head {key}"));
        let info = self.object(key).ok().map(|bytes| ObjectInfo {
            key: key.to_owned(),
            size: bytes.len() as u64,
            last_modified: self.stored_at(key),
        });
        ready(Ok(info))
    }
}
