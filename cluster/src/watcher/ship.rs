//! Shipping one core: open it safely, describe it from its notes, stream it (hashed and
//! compressed) into storage, write its id index entry and its record, then — and only then —
//! remove the local file and announce it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coredog_core::config::{Config, GcType};
use coredog_core::layout::DumpLocation;
use coredog_core::object_key::{Compression, CoreKey, DumpId};
use coredog_core::record::{DumpRecord, SCHEMA_VERSION};
use coredog_core::signal;
use coredog_store::{PartSender, Store, StoreError, UploadClosed, UploadOptions, part_channel};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::{debug, info, warn};

use super::elf::{CoreInfo, ElfError, read_core_info};
use super::file::{Identity, OpenedFile, Refusal, open_beneath};
use super::pods::{PodDirectory, PodFacts};

/// Bytes read from the core per read call.
const READ_BUFFER: usize = 1024 * 1024;
/// Input bytes each zstd worker compresses at a time.
const ZSTD_JOB_SIZE: u32 = 512 * 1024;
/// The highest zstd level compressed by more than one worker (see `read_into_parts`).
const HIGHEST_LEVEL_FOR_MANY_WORKERS: i32 = 9;

#[derive(Debug, Error)]
pub enum ShipError {
    /// Not a core, or not a file the watcher may read: never read, shipped or deleted.
    #[error("refused: {message}")]
    Refused {
        reason: &'static str,
        message: String,
    },
    /// Still being written: taken again once it stops changing.
    #[error("the file changed while it was being read")]
    Changing,
    /// Storage failed; the file stays and is retried later.
    #[error("{0}")]
    Failed(String),
}

impl ShipError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused { reason, .. } => reason,
            Self::Changing => "changing",
            Self::Failed(_) => "storage",
        }
    }
}

fn refused(reason: &'static str, message: impl ToString) -> ShipError {
    ShipError::Refused {
        reason,
        message: message.to_string(),
    }
}

/// What shipping a file did.
#[derive(Debug)]
pub struct Shipped {
    pub record: DumpRecord,
    /// The record was already in storage (a restart between storing and deleting).
    pub already_stored: bool,
    pub local: LocalFile,
    /// The file stored, as it was opened.
    pub identity: Identity,
    pub download_url: String,
}

/// What became of the local file once its dump was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalFile {
    /// Kept, as configured (`DeleteLocalCorefile: false`).
    Kept,
    /// Removed, or truncated (`gc_type: truncate`).
    Removed,
    /// Left in place: written to since it was read, so what it holds now is not what was
    /// stored, and is shipped as a new file.
    Changed,
    /// It was to be removed and could not be: why.
    NotRemoved(String),
}

/// Everything shipping needs, shared by every shipping task.
pub struct Shipper {
    pub root: PathBuf,
    pub node: String,
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    pub pods: PodDirectory,
}

/// What the core's file name says when the pattern is `core.%e.%p.%h.%t`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NameFacts {
    pub exe: Option<String>,
    pub pid: Option<u32>,
    pub hostname: Option<String>,
    pub time: Option<Timestamp>,
}

/// Reads `core.%e.%p.%h.%t` (and its prefixes, such as `core.%p`) from a file name. The
/// executable name may itself contain dots, so the pid is the last all-digit part that has a
/// hostname after it.
pub fn parse_core_name(name: &str) -> NameFacts {
    let Some(rest) = name.strip_prefix("core.") else {
        return NameFacts::default();
    };
    let mut parts: Vec<&str> = rest.split('.').collect();
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let mut facts = NameFacts::default();
    if parts.len() >= 2 && parts.last().is_some_and(|last| digits(last)) {
        let seconds: i64 = parts
            .last()
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        // Times before 2001 are not `%t`; they are the pid of `core.%e.%p`.
        if seconds > 978_307_200 {
            facts.time = Timestamp::from_second(seconds).ok();
            parts.pop();
        }
    }
    if parts.len() == 1 && digits(parts[0]) {
        facts.pid = parts[0].parse().ok();
        return facts;
    }
    let pid_at = (1..parts.len()).rev().find(|&at| digits(parts[at]));
    match pid_at {
        Some(at) => {
            facts.exe = Some(parts[..at].join("."));
            facts.pid = parts[at].parse().ok();
            let host = parts[at + 1..].join(".");
            facts.hostname = (!host.is_empty()).then_some(host);
        }
        None => facts.exe = Some(parts.join(".")).filter(|exe| !exe.is_empty()),
    }
    facts
}

/// S3 takes at most this many parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// The part size for an upload of at most `worst` bytes: the configured one, or as many whole
/// MiB as keep it within [`MAX_PARTS`] (part 10,001 would be refused, and the core retried for
/// ever). Only uploads of tens of GiB need more, and they upload fewer parts at once
/// ([`parts_in_flight_for`]) so that their buffers stay within the configured budget.
fn part_size_for(worst: u64, configured: usize) -> usize {
    const MIB: u64 = 1024 * 1024;
    let needed = worst.div_ceil(MAX_PARTS).div_ceil(MIB).saturating_mul(MIB);
    usize::try_from(needed).map_or(configured, |needed| needed.max(configured))
}

/// Parts uploaded at once with parts of `part_size`: the configured number, or for the larger
/// parts of a huge core as many as keep its buffers, `part_size x (in flight + 2)`, within the
/// configured parts' (one at least), so that a core of hundreds of GiB does not take the
/// watcher past its memory limit.
fn parts_in_flight_for(
    part_size: usize,
    configured_size: usize,
    configured_in_flight: usize,
) -> usize {
    if part_size <= configured_size {
        return configured_in_flight;
    }
    let budget = configured_size.saturating_mul(configured_in_flight + 2);
    (budget / part_size)
        .saturating_sub(2)
        .clamp(1, configured_in_flight)
}

/// Extents of a file looked at before the rest is taken for data.
const MAX_EXTENTS: usize = 100_000;

/// The most bytes the upload of `file` (`size` bytes) can take. Stored as it is, its size.
/// With zstd, its data at worst as large as it is, plus the fraction of a percent zstd can
/// add, and its holes (which read as zeros) at a ratio zstd always beats by far: a core is
/// often mostly holes, since memory mapped but never touched is skipped by the kernel rather
/// than written, and sizing its parts by its length made parts (and memory) grow for nothing.
fn worst_stored_size(file: &std::fs::File, size: u64, compression: Compression) -> u64 {
    if compression == Compression::None {
        return size;
    }
    let worst = |data: u64| {
        let holes = size - data;
        data.saturating_add(data / 128)
            .saturating_add(holes / 1024)
            .saturating_add(1024 * 1024)
    };
    let mut data = 0u64;
    let mut at = 0u64;
    for _ in 0..MAX_EXTENTS {
        if at >= size {
            return worst(data);
        }
        let start = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(at)) {
            Ok(start) => start.min(size),
            // No data past `at`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => return worst(data),
            // No SEEK_DATA here: all of it counts as data.
            Err(_) => return worst(data + (size - at)),
        };
        let end = rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(start))
            .map_or(size, |end| end.clamp(start, size));
        data += end - start;
        at = end.max(start + 1);
    }
    worst(data + size.saturating_sub(at))
}

/// Feeds parts of exactly `part_size` bytes (the last one shorter) to an upload.
struct PartWriter {
    buffer: Vec<u8>,
    part_size: usize,
    sender: PartSender,
    written: u64,
}

impl PartWriter {
    fn flush_part(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let next = self.sender.buffer(self.part_size);
        let part = std::mem::replace(&mut self.buffer, next);
        self.sender.send_blocking(part).map_err(|UploadClosed| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, UploadClosed)
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.part_size - self.buffer.len();
        let take = room.min(data.len());
        self.buffer.extend_from_slice(&data[..take]);
        self.written += take as u64;
        if self.buffer.len() == self.part_size {
            self.flush_part()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What reading the core produced.
struct ReadOutcome {
    sha256: String,
    stored_size: u64,
}

#[derive(Debug, Error)]
enum ReadError {
    #[error("the file changed while it was being read")]
    Changing,
    #[error("the upload stopped")]
    UploadStopped,
    #[error("reading the core: {0}")]
    Io(std::io::Error),
}

fn io_read_error(err: std::io::Error) -> ReadError {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        ReadError::UploadStopped
    } else {
        ReadError::Io(err)
    }
}

/// Reads `opened` from start to the size it had when opened, hashing the original bytes and
/// compressing them into parts. Runs on a blocking thread.
fn read_into_parts(
    opened: &OpenedFile,
    compression: Compression,
    level: i32,
    part_size: usize,
    sender: PartSender,
) -> Result<ReadOutcome, ReadError> {
    use std::os::unix::fs::FileExt;
    let size = opened.identity.size;
    let writer = PartWriter {
        buffer: sender.buffer(part_size),
        part_size,
        sender,
        written: 0,
    };
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut copy = |sink: &mut dyn Write| -> Result<(), ReadError> {
        let mut offset = 0u64;
        while offset < size {
            let want = READ_BUFFER.min(usize::try_from(size - offset).unwrap_or(READ_BUFFER));
            let got = opened
                .file
                .read_at(&mut buffer[..want], offset)
                .map_err(ReadError::Io)?;
            if got == 0 {
                return Err(ReadError::Changing);
            }
            hasher.update(&buffer[..got]);
            sink.write_all(&buffer[..got]).map_err(io_read_error)?;
            offset += got as u64;
        }
        Ok(())
    };
    let mut writer = match compression {
        Compression::Zstd => {
            let mut encoder =
                zstd::stream::write::Encoder::new(writer, level).map_err(ReadError::Io)?;
            // Worker threads compress while this one reads and hashes: one per two CPUs the
            // watcher may use (its cgroup's quota counts), since this thread and the upload
            // keep the others busy. Above level 9 a worker's match tables take tens of MiB:
            // one worker, so that memory does not grow with the node's CPUs.
            let workers = if level > HIGHEST_LEVEL_FOR_MANY_WORKERS {
                1
            } else {
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4)) as u32
            };
            encoder.multithread(workers).map_err(ReadError::Io)?;
            // Each worker holds its job's input and output; zstd's own job size at fast
            // levels (2 MiB, a few jobs queued per worker) would cost more than the parts.
            encoder
                .set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
                .map_err(ReadError::Io)?;
            copy(&mut encoder)?;
            encoder.finish().map_err(io_read_error)?
        }
        Compression::None => {
            let mut writer = writer;
            copy(&mut writer)?;
            writer
        }
    };
    if !opened
        .current()
        .is_ok_and(|now| now.unchanged(&opened.identity))
    {
        return Err(ReadError::Changing);
    }
    writer.flush_part().map_err(io_read_error)?;
    let stored_size = writer.written;
    writer.sender.finish();
    Ok(ReadOutcome {
        sha256: hex::encode(hasher.finalize()),
        stored_size,
    })
}

impl Shipper {
    /// Ships the file at `relative` (below the watched root).
    pub async fn ship(&self, relative: &Path) -> Result<Shipped, ShipError> {
        let location =
            DumpLocation::from_relative(relative).map_err(|err| refused("layout", err))?;
        let host_path = self.root.join(relative);
        let host_path_text = host_path.display().to_string();
        let (root, rel) = (self.root.clone(), relative.to_path_buf());
        let (opened, info) =
            tokio::task::spawn_blocking(move || -> Result<(OpenedFile, CoreInfo), ShipError> {
                let opened = open_beneath(&root, &rel).map_err(|err: Refusal| match err {
                    // Out of descriptors or memory, a stale NFS handle: the file may be fine
                    // next time, so it is retried rather than refused until a restart.
                    Refusal::Io(io) => ShipError::Failed(format!("opening the file: {io}")),
                    refusal => refused(refusal.reason(), refusal),
                })?;
                // Still open for writing: found by a scan while the kernel writes it, before
                // its close is reported.
                if opened.being_written() == Some(true) {
                    return Err(ShipError::Changing);
                }
                let info = read_core_info(&opened.file).map_err(|err| match err {
                    ElfError::NotElf | ElfError::NotCore(_) => refused("not_core", err),
                    ElfError::Io(io) => {
                        ShipError::Failed(format!("reading the core's notes: {io}"))
                    }
                })?;
                Ok((opened, info))
            })
            .await
            .map_err(|err| ShipError::Failed(format!("shipping task failed: {err}")))??;
        info!("capture a file:{host_path_text}");
        info!(
            "resolved pod from webhook path: {}/{}",
            location.namespace, location.pod
        );

        let identity: Identity = opened.identity;
        let storage = &self.config.storage;
        let compression = storage.compression.compression();
        let name = parse_core_name(&location.file_name);
        let mtime =
            Timestamp::from_nanosecond(identity.mtime_nanos).unwrap_or_else(|_| Timestamp::now());
        let exe = info
            .exe
            .clone()
            .or_else(|| info.command.clone())
            .or_else(|| name.exe.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        let pid = info.pid.or(name.pid);
        let key = CoreKey {
            store_dir: storage.store_dir.clone(),
            namespace: location.namespace.clone(),
            pod: location.pod.clone(),
            time: name.time.unwrap_or(mtime),
            container: location.container.clone(),
            exe: exe.clone(),
            pid: pid.unwrap_or(0),
            id: DumpId::derive(
                &self.node,
                &host_path_text,
                identity.size,
                identity.mtime_nanos,
            ),
            compression,
        };
        let (core_key, record_key) = (key.to_key(), key.record_key());

        // The id comes from the file's size and mtime as opened: a record under it describes
        // this very file, and what is removed below is the file that was opened.
        match self.stored_record(&record_key).await? {
            Some(record) => {
                info!(key = %core_key, "already stored before a restart: {host_path_text}");
                self.finish(record, true, opened, &host_path_text, &core_key)
                    .await
            }
            None => {
                // Read before the upload, which may outlast the pod (a Job's, cleaned up).
                let pod = self.pods.facts(
                    &location.namespace,
                    &location.pod,
                    &location.container,
                    mtime,
                );
                let (outcome, opened_back) = self.upload(opened, &core_key, compression).await?;
                let record = self.record(
                    &key,
                    &core_key,
                    &location,
                    &info,
                    &name,
                    identity,
                    &outcome,
                    pod,
                    &host_path_text,
                    exe,
                    pid,
                );
                // The id index entry before the record: a complete dump is always findable
                // by its id (one whose entry would be too long a name by a listing).
                if let Some(index_key) = key.id_index_key_that_fits() {
                    self.store
                        .put_bytes(&index_key, &[], "application/octet-stream")
                        .await
                        .map_err(|err| {
                            ShipError::Failed(format!("storing the id index entry: {err}"))
                        })?;
                } else {
                    debug!(key = %core_key, "no id index entry: its name would be too long");
                }
                self.store
                    .put_bytes(&record_key, &record.to_json(), "application/json")
                    .await
                    .map_err(|err| ShipError::Failed(format!("storing the record: {err}")))?;
                info!(key = %core_key, size = record.size, stored = record.stored_size, "uploaded corefile: {host_path_text}");
                self.finish(record, false, opened_back, &host_path_text, &core_key)
                    .await
            }
        }
    }

    /// Removes the file at `relative` that was stored as `stored` and could not be removed
    /// then, without asking the store again (keys that may only write cannot tell). `None`
    /// when another file has its name now: that one is to be shipped.
    pub async fn remove_stored(
        &self,
        relative: &Path,
        stored: Identity,
    ) -> Result<Option<LocalFile>, ShipError> {
        let (root, rel, gc_type) = (
            self.root.clone(),
            relative.to_path_buf(),
            self.config.gc_type,
        );
        let host_path = self.root.join(relative).display().to_string();
        tokio::task::spawn_blocking(move || {
            let opened = match open_beneath(&root, &rel) {
                Ok(opened) => opened,
                Err(Refusal::Gone) => return Ok(Some(LocalFile::Removed)),
                Err(Refusal::Io(io)) => {
                    return Err(ShipError::Failed(format!("opening the file: {io}")));
                }
                // A link or a special file now: not what was stored, and refused when shipped.
                Err(_) => return Ok(None),
            };
            if opened.identity != stored {
                return Ok(None);
            }
            Ok(Some(remove_local(&opened, gc_type, &host_path)))
        })
        .await
        .map_err(|err| ShipError::Failed(format!("removing task failed: {err}")))?
    }

    /// The record stored under `record_key`, if any. A store that cannot tell (unreachable,
    /// failing, not trusted) is a failure: taken for "not stored", it would have the dump
    /// uploaded and announced again. One that refuses to tell (credentials that may write but
    /// not read) is taken for "not stored", and the dump is stored as a new one.
    async fn stored_record(&self, record_key: &str) -> Result<Option<DumpRecord>, ShipError> {
        let cannot_tell = |err: StoreError| {
            if err.is_refused() || matches!(err, StoreError::NotFound(_)) {
                debug!(error = %err, "cannot read the record; storing the dump");
                Ok(None)
            } else {
                Err(ShipError::Failed(format!("reading the record: {err}")))
            }
        };
        match self.store.head(record_key).await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(None),
            Err(err) => return cannot_tell(err),
        }
        match self.store.get_bytes(record_key).await {
            // A record that does not parse is written again, with its dump.
            Ok(bytes) => Ok(DumpRecord::from_json(&bytes).ok()),
            Err(err) => cannot_tell(err),
        }
    }

    async fn upload(
        &self,
        opened: OpenedFile,
        core_key: &str,
        compression: Compression,
    ) -> Result<(ReadOutcome, OpenedFile), ShipError> {
        let storage = &self.config.storage;
        let (sender, receiver) = part_channel();
        let size = opened.identity.size;
        let (level, configured) = (storage.compression_level_in_use(), storage.part_size());
        let (part_size, opened) = tokio::task::spawn_blocking(move || {
            let worst = worst_stored_size(&opened.file, size, compression);
            (part_size_for(worst, configured), opened)
        })
        .await
        .map_err(|err| ShipError::Failed(format!("sizing task failed: {err}")))?;
        let reader = tokio::task::spawn_blocking(move || {
            let outcome = read_into_parts(&opened, compression, level, part_size, sender);
            (outcome, opened)
        });
        let content_type = match compression {
            Compression::Zstd => "application/zstd",
            Compression::None => "application/octet-stream",
        };
        let configured_options = UploadOptions::from_config(storage);
        let options = UploadOptions {
            // Parts larger than configured are for cores far larger than one part.
            multipart_at_once: size > configured as u64,
            parts_in_flight: parts_in_flight_for(
                part_size,
                configured,
                configured_options.parts_in_flight,
            ),
            ..configured_options
        };
        let (read, uploaded) = tokio::join!(
            reader,
            self.store.upload(core_key, content_type, receiver, options)
        );
        let (outcome, opened) =
            read.map_err(|err| ShipError::Failed(format!("reading task failed: {err}")))?;
        match (outcome, uploaded) {
            (Ok(outcome), Ok(_)) => Ok((outcome, opened)),
            (Err(ReadError::Changing), _) => Err(ShipError::Changing),
            (_, Err(err)) => Err(ShipError::Failed(err.to_string())),
            (Err(err), Ok(_)) => Err(ShipError::Failed(err.to_string())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        key: &CoreKey,
        core_key: &str,
        location: &DumpLocation,
        info: &CoreInfo,
        name: &NameFacts,
        identity: Identity,
        outcome: &ReadOutcome,
        pod: PodFacts,
        host_path: &str,
        exe: String,
        pid: Option<u32>,
    ) -> DumpRecord {
        DumpRecord {
            schema_version: SCHEMA_VERSION,
            id: key.id.clone(),
            key: core_key.to_owned(),
            time: key.time,
            uploaded_at: Timestamp::now(),
            namespace: location.namespace.clone(),
            pod: location.pod.clone(),
            container: location.container.clone(),
            pod_uid: pod.uid,
            node: self.node.clone(),
            host_ip: pod.host_ip,
            image: pod.image,
            labels: pod.labels,
            exe,
            pid,
            signal: info.signal,
            signal_name: info.signal.and_then(signal::name),
            cmdline: info.cmdline.clone(),
            uid: info.uid,
            hostname: name.hostname.clone(),
            size: identity.size,
            stored_size: outcome.stored_size,
            sha256: outcome.sha256.clone(),
            compression: key.compression,
            host_path: host_path.to_owned(),
        }
    }

    async fn finish(
        &self,
        record: DumpRecord,
        already_stored: bool,
        opened: OpenedFile,
        host_path: &str,
        core_key: &str,
    ) -> Result<Shipped, ShipError> {
        let identity = opened.identity;
        let mut local = LocalFile::Kept;
        if self.config.deletes_local_corefile() {
            let (gc_type, path) = (self.config.gc_type, host_path.to_owned());
            local = tokio::task::spawn_blocking(move || remove_local(&opened, gc_type, &path))
                .await
                .map_err(|err| ShipError::Failed(err.to_string()))?;
        }
        let download_url = match self
            .store
            .download_url(core_key, self.config.storage.presigned_url_expire_seconds)
            .await
        {
            Ok(url) => url,
            Err(err) => {
                warn!(error = %err, "cannot make a download link");
                core_key.to_owned()
            }
        };
        Ok(Shipped {
            record,
            already_stored,
            local,
            identity,
            download_url,
        })
    }
}

/// Removes (or truncates) a stored core's file, and says so.
fn remove_local(opened: &OpenedFile, gc_type: GcType, host_path: &str) -> LocalFile {
    let removed = match gc_type {
        GcType::Rm => opened.remove(),
        GcType::Truncate => opened.truncate(),
    };
    match removed {
        Ok(()) => {
            match gc_type {
                GcType::Rm => info!("deleted local corefile: {host_path}"),
                GcType::Truncate => info!("truncated local corefile: {host_path}"),
            }
            LocalFile::Removed
        }
        // Removed meanwhile, or another file has its name now (the watcher looks again).
        Err(Refusal::Gone) => {
            info!("local corefile already gone: {host_path}");
            LocalFile::Removed
        }
        Err(Refusal::Changed) => {
            warn!(
                "local corefile written to after it was stored, kept to be stored again: {host_path}"
            );
            LocalFile::Changed
        }
        Err(err) => LocalFile::NotRemoved(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_only_for_cores_that_would_need_more_than_s3_allows() {
        const MIB: usize = 1024 * 1024;
        const GIB: u64 = 1024 * 1024 * 1024;
        assert_eq!(part_size_for(0, 5 * MIB), 5 * MIB);
        assert_eq!(part_size_for(40 * GIB, 5 * MIB), 5 * MIB);
        for worst in [50 * GIB, 100 * GIB, 1024 * GIB] {
            let part = part_size_for(worst, 5 * MIB);
            assert_eq!(part % MIB, 0);
            assert!(worst.div_ceil(part as u64) <= MAX_PARTS, "{worst}: {part}");
            // No larger than it must be.
            assert!(part == 5 * MIB || worst.div_ceil((part - MIB) as u64) > MAX_PARTS);
        }
        assert_eq!(part_size_for(100 * GIB, 64 * MIB), 64 * MIB);
    }

    #[test]
    fn larger_parts_upload_fewer_at_once() {
        const MIB: usize = 1024 * 1024;
        // 5 MiB x (3 + 2) = 25 MiB configured.
        assert_eq!(parts_in_flight_for(5 * MIB, 5 * MIB, 3), 3);
        assert_eq!(parts_in_flight_for(6 * MIB, 5 * MIB, 3), 2);
        assert_eq!(parts_in_flight_for(16 * MIB, 5 * MIB, 3), 1);
        assert_eq!(parts_in_flight_for(525 * MIB, 5 * MIB, 3), 1);
        // Never more than configured, whatever the budget.
        assert_eq!(parts_in_flight_for(10 * MIB, 8 * MIB, 1), 1);
    }

    #[test]
    fn a_sparse_core_is_sized_by_its_data_not_its_length() {
        use std::os::unix::fs::FileExt as _;
        const MIB: u64 = 1024 * 1024;
        const GIB: u64 = 1024 * MIB;
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("core")).unwrap();
        // 200 GiB long, 2 MiB of it written, at the start and far in: a core of large
        // mappings mostly never touched.
        let size = 200 * GIB;
        file.set_len(size).unwrap();
        file.write_all_at(&vec![7u8; MIB as usize], 0).unwrap();
        file.write_all_at(&vec![7u8; MIB as usize], 150 * GIB)
            .unwrap();
        let worst = worst_stored_size(&file, size, Compression::Zstd);
        assert!(worst < GIB, "{worst}");
        assert!(worst >= 2 * MIB + (size - 2 * MIB) / 1024, "{worst}");
        assert_eq!(part_size_for(worst, 5 * MIB as usize), 5 * MIB as usize);
        // Stored as it is, every byte is uploaded; by its length it would need 21 MiB parts.
        assert_eq!(worst_stored_size(&file, size, Compression::None), size);
        assert_eq!(
            part_size_for(size + size / 128, 5 * MIB as usize),
            21 * MIB as usize
        );
    }

    #[test]
    fn zstd_beats_the_bound_on_holes() {
        // The bound takes holes at 1/1024 of their length; zeros, as holes read, do far better,
        // with the encoder set as the watcher sets it.
        use std::io::Write as _;
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        encoder.multithread(2).unwrap();
        encoder
            .set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
            .unwrap();
        encoder.write_all(&zeros).unwrap();
        let compressed = encoder.finish().unwrap();
        assert!(
            compressed.len() * 1024 < zeros.len() / 16,
            "{}",
            compressed.len()
        );
    }

    #[test]
    fn core_names() {
        let facts = parse_core_name("core.server.42.web-7d9f.1764237612");
        assert_eq!(facts.exe.as_deref(), Some("server"));
        assert_eq!(facts.pid, Some(42));
        assert_eq!(facts.hostname.as_deref(), Some("web-7d9f"));
        assert_eq!(facts.time.map(|t| t.as_second()), Some(1_764_237_612));

        let facts = parse_core_name("core.python3.11.7.host.1764237612");
        assert_eq!(
            (facts.exe.as_deref(), facts.pid),
            (Some("python3.11"), Some(7))
        );

        assert_eq!(parse_core_name("core.1234").pid, Some(1234));
        assert_eq!(parse_core_name("core"), NameFacts::default());
        assert_eq!(parse_core_name("core.sh").exe.as_deref(), Some("sh"));
        let facts = parse_core_name("core.sh.77");
        assert_eq!(
            (facts.exe.as_deref(), facts.pid, facts.time),
            (Some("sh"), Some(77), None)
        );
    }
}
