//! `fetch`: download a dump, decompressed and verified, written atomically, resumable.
//!
//! The stored bytes go to `<FILE>.part` as they arrive, in order, from range reads made a few
//! at a time; a fetch that stops (Ctrl-C, a lost connection) continues from what the part file
//! holds. While they arrive they are decompressed into a temporary file next to `FILE` and
//! hashed; only when the result has the size and SHA-256 its record states does it become
//! `FILE`, by rename. A mismatch leaves no `FILE` behind.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read as _, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use coredog_core::object_key::Compression;
use coredog_core::record::DumpRecord;
use coredog_core::template::human_bytes;
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use tracing::debug;

use crate::error::{UserError, user};
use crate::storage::list::Dump;
use crate::storage::{DumpStorage, storage_error};

/// How a fetch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Bytes per range request.
    pub chunk_size: u64,
    /// Range requests in flight at once.
    pub in_flight: usize,
    /// Keep the stored (compressed) bytes.
    pub raw: bool,
    /// Replace an existing output file.
    pub force: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            chunk_size: 8 * 1024 * 1024,
            in_flight: 4,
            raw: false,
            force: false,
        }
    }
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    /// Bytes written to `path`.
    pub size: u64,
    /// Stored bytes already in the part file when the fetch started.
    pub resumed_from: u64,
    /// Whether the SHA-256 of the core was checked (not for `--raw` zstd dumps).
    pub verified: bool,
}

/// The file name a fetched dump gets by default.
pub fn default_file_name(record: &DumpRecord, raw: bool) -> String {
    let name = record.file_name();
    if raw {
        name.to_owned()
    } else {
        name.strip_suffix(".zst").unwrap_or(name).to_owned()
    }
}

/// `<FILE>.part`.
pub fn part_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where the stored bytes go besides the part file.
enum Sink {
    /// zstd, decompressed into a temporary file next to the output.
    Decode(Box<zstd::stream::write::Decoder<'static, Hashing<BufWriter<NamedTempFile>>>>),
    /// Stored as the kernel wrote it: the stored bytes are the core.
    Plain(Hashing<io::Sink>),
    /// Kept compressed (`--raw`): only the size can be checked.
    Raw,
}

impl Sink {
    fn new(compression: Compression, raw: bool, dir: &Path) -> io::Result<Self> {
        Ok(match (compression, raw) {
            (Compression::None, _) => Self::Plain(Hashing {
                inner: io::sink(),
                hasher: Sha256::new(),
                written: 0,
            }),
            (Compression::Zstd, true) => Self::Raw,
            (Compression::Zstd, false) => {
                let temp = tempfile::Builder::new()
                    .prefix(".coredog-fetch-")
                    .tempfile_in(dir)?;
                Self::Decode(Box::new(zstd::stream::write::Decoder::new(Hashing {
                    inner: BufWriter::with_capacity(1024 * 1024, temp),
                    hasher: Sha256::new(),
                    written: 0,
                })?))
            }
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Decode(decoder) => decoder.write_all(bytes),
            Self::Plain(hashing) => hashing.write_all(bytes),
            Self::Raw => Ok(()),
        }
    }
}

/// Why the bytes fetched are not the dump the record describes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mismatch {
    Size { got: u64, want: u64 },
    Checksum { got: String, want: String },
    Truncated(String),
}

impl Mismatch {
    fn describe(&self) -> String {
        match self {
            Self::Size { got, want } => format!("it is {got} bytes, its record says {want}"),
            Self::Checksum { got, want } => {
                format!("its SHA-256 is {got}, its record says {want}")
            }
            Self::Truncated(reason) => format!("it does not decompress ({reason})"),
        }
    }
}

enum Outcome {
    Done(Fetched),
    Mismatch(Mismatch, u64),
}

/// Downloads `dump` to `output`.
pub async fn fetch<S: DumpStorage>(
    storage: &S,
    dump: &Dump,
    output: &Path,
    options: &FetchOptions,
    progress: &ProgressBar,
) -> anyhow::Result<Fetched> {
    let Some(record) = &dump.record else {
        return Err(user(
            format!(
                "dump {} is incomplete: it has no record, so it cannot be verified",
                dump.id()
            ),
            "the watcher writes the record last: try again in a minute (`kubectl coredog info ID` shows what is known)",
        ));
    };
    if output.exists() && !options.force {
        return Err(user(
            format!("{} already exists", output.display()),
            "pass --force to replace it, or -o another file",
        ));
    }
    let key = &dump.listed.object.key;
    let stored = storage
        .head(key)
        .await
        .map_err(|err| storage_error(err, &format!("read {key}")))?
        .ok_or_else(|| {
            user(
                format!("dump {} is no longer in storage", dump.id()),
                "list the dumps again",
            )
        })?
        .size;
    if stored != record.stored_size {
        return Err(user(
            format!(
                "the stored object of dump {} is {stored} bytes, but its record says {}",
                dump.id(),
                record.stored_size
            ),
            "it may be being uploaded again: try again in a minute",
        ));
    }
    let part = part_path(output);
    let target = Target {
        record,
        key,
        stored,
        output,
        part: &part,
    };
    let mut retried = false;
    loop {
        match fetch_once(storage, &target, options, progress).await? {
            Outcome::Done(fetched) => return Ok(fetched),
            Outcome::Mismatch(mismatch, resumed_from) => {
                // A part file left by a fetch of other bytes is the likely cause: start over once.
                let _ = std::fs::remove_file(&part);
                if resumed_from > 0 && !retried {
                    retried = true;
                    debug!(
                        reason = mismatch.describe(),
                        "resumed download did not verify"
                    );
                    progress.println("the partial download did not verify; starting over");
                    continue;
                }
                return Err(UserError::new(format!(
                    "dump {} failed verification: {}; nothing was written",
                    dump.id(),
                    mismatch.describe()
                ))
                .hint("fetch it again; if it fails again, the stored object is damaged")
                .into());
            }
        }
    }
}

/// What one fetch reads and writes.
struct Target<'a> {
    record: &'a DumpRecord,
    key: &'a str,
    /// Size of the stored object.
    stored: u64,
    output: &'a Path,
    part: &'a Path,
}

async fn fetch_once<S: DumpStorage>(
    storage: &S,
    target: &Target<'_>,
    options: &FetchOptions,
    progress: &ProgressBar,
) -> anyhow::Result<Outcome> {
    let Target {
        record,
        key,
        stored,
        output,
        part,
    } = *target;
    let dir = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let io_error = |what: &str, path: &Path, err: io::Error| {
        UserError::new(format!("cannot {what} {}", path.display()))
            .hint("check the directory exists and is writable, and that the disk has room")
            .cause(err)
    };
    let mut part_file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(part)
        .map_err(|err| io_error("write", part, err))?;
    let mut have = part_file
        .metadata()
        .map_err(|err| io_error("read", part, err))?
        .len();
    if have > stored {
        part_file
            .set_len(0)
            .map_err(|err| io_error("write", part, err))?;
        have = 0;
    }
    let resumed_from = have;
    let mut sink = Sink::new(record.compression, options.raw, &dir)
        .map_err(|err| io_error("write into", &dir, err))?;

    progress.set_length(stored);
    progress.set_position(0);
    if have > 0 {
        progress.println(format!(
            "resuming from {} of {}",
            human_bytes(have),
            human_bytes(stored)
        ));
        let mut reader = File::open(part).map_err(|err| io_error("read", part, err))?;
        let mut buffer = vec![0u8; 1024 * 1024];
        loop {
            let read = reader
                .read(&mut buffer)
                .map_err(|err| io_error("read", part, err))?;
            if read == 0 {
                break;
            }
            if let Err(err) = sink.write(&buffer[..read]) {
                return Ok(Outcome::Mismatch(
                    Mismatch::Truncated(err.to_string()),
                    resumed_from,
                ));
            }
            progress.inc(read as u64);
        }
    }

    let chunk = options.chunk_size.max(1);
    let ranges: Vec<(u64, u64)> = (have..stored)
        .step_by(usize::try_from(chunk).unwrap_or(usize::MAX))
        .map(|start| (start, (start + chunk).min(stored) - 1))
        .collect();
    let mut chunks = stream::iter(ranges)
        .map(|(start, end)| async move {
            storage
                .get_range(key, start, end)
                .await
                .map(|bytes| (start, end, bytes))
        })
        .buffered(options.in_flight.max(1));
    while let Some((start, end, bytes)) = chunks
        .try_next()
        .await
        .map_err(|err| storage_error(err, &format!("download {key}")))?
    {
        if bytes.len() as u64 != end - start + 1 {
            return Err(user(
                format!(
                    "storage returned {} bytes for bytes {start}-{end} of {key}",
                    bytes.len()
                ),
                "the object may have changed while it was read: fetch it again",
            ));
        }
        part_file
            .write_all(&bytes)
            .map_err(|err| io_error("write", part, err))?;
        if let Err(err) = sink.write(&bytes) {
            return Ok(Outcome::Mismatch(
                Mismatch::Truncated(err.to_string()),
                resumed_from,
            ));
        }
        progress.inc(bytes.len() as u64);
    }
    part_file
        .sync_all()
        .map_err(|err| io_error("write", part, err))?;
    let part_len = part_file
        .metadata()
        .map_err(|err| io_error("read", part, err))?
        .len();
    drop(part_file);

    let finished = match sink {
        Sink::Raw => {
            // The size is all a compressed dump can be checked by without decompressing it.
            if part_len != record.stored_size {
                return Ok(Outcome::Mismatch(
                    Mismatch::Size {
                        got: part_len,
                        want: record.stored_size,
                    },
                    resumed_from,
                ));
            }
            commit_rename(part, output, options.force)?;
            Fetched {
                path: output.to_owned(),
                size: part_len,
                resumed_from,
                verified: false,
            }
        }
        Sink::Plain(hashing) => {
            if let Some(mismatch) = verify(record, hashing.written, hashing.hasher) {
                return Ok(Outcome::Mismatch(mismatch, resumed_from));
            }
            commit_rename(part, output, options.force)?;
            Fetched {
                path: output.to_owned(),
                size: stored,
                resumed_from,
                verified: true,
            }
        }
        Sink::Decode(decoder) => {
            let hashing = match decoder.finish() {
                Ok(hashing) => hashing,
                Err(err) => {
                    return Ok(Outcome::Mismatch(
                        Mismatch::Truncated(err.to_string()),
                        resumed_from,
                    ));
                }
            };
            if let Some(mismatch) = verify(record, hashing.written, hashing.hasher) {
                return Ok(Outcome::Mismatch(mismatch, resumed_from));
            }
            let temp = hashing
                .inner
                .into_inner()
                .map_err(|err| io_error("write into", &dir, err.into_error()))?;
            temp.as_file()
                .sync_all()
                .map_err(|err| io_error("write into", &dir, err))?;
            let persisted = if options.force {
                temp.persist(output).map(drop)
            } else {
                temp.persist_noclobber(output).map(drop)
            };
            persisted.map_err(|err| io_error("write", output, err.error))?;
            let _ = std::fs::remove_file(part);
            Fetched {
                path: output.to_owned(),
                size: record.size,
                resumed_from,
                verified: true,
            }
        }
    };
    Ok(Outcome::Done(finished))
}

fn verify(record: &DumpRecord, written: u64, hasher: Sha256) -> Option<Mismatch> {
    if written != record.size {
        return Some(Mismatch::Size {
            got: written,
            want: record.size,
        });
    }
    let got = hex::encode(hasher.finalize());
    if !got.eq_ignore_ascii_case(&record.sha256) {
        return Some(Mismatch::Checksum {
            got,
            want: record.sha256.clone(),
        });
    }
    None
}

/// The part file becomes the output: it is already in the output's directory, so a rename is
/// atomic.
fn commit_rename(part: &Path, output: &Path, force: bool) -> anyhow::Result<()> {
    if !force && output.exists() {
        return Err(user(
            format!("{} appeared while the dump was fetched", output.display()),
            "pass --force to replace it",
        ));
    }
    std::fs::rename(part, output)
        .with_context(|| format!("cannot rename {} to {}", part.display(), output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let record =
            crate::storage::list::tests::record("shop", "web", "2026-11-27T10:00:00Z", "n", 1);
        assert!(default_file_name(&record, false).ends_with(".core"));
        assert!(default_file_name(&record, true).ends_with(".core.zst"));
        assert_eq!(part_path(Path::new("dir/core")), Path::new("dir/core.part"));
    }
}
