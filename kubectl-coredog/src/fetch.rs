//! `fetch`: download a dump, decompressed and verified, written atomically, resumable.
//!
//! The stored bytes go to `<FILE>.part` as they arrive, in order, from range reads made a few
//! at a time; a fetch that stops (Ctrl-C, a lost connection) continues from what the part file
//! holds. While they arrive they are decompressed into a temporary file next to `FILE` and
//! hashed; only when the result has the size and SHA-256 its record states does it become
//! `FILE`, by rename. A mismatch leaves no `FILE` behind.
//!
//! Downloading, decompressing, and hashing + writing run at the same time (the network on the
//! runtime, the other two on threads of their own), and zero blocks are left as holes. Nothing
//! is fsynced: like `cp` or `s5cmd`, a fetch is done when the file is complete and in place.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use coredog_core::object_key::Compression;
use coredog_core::record::DumpRecord;
use coredog_core::template::human_bytes;
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::error::{UserError, user};
use crate::storage::list::Dump;
use crate::storage::{DumpStorage, storage_error};
use coredog_store::Piece;

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

/// The most bytes one range request asks for.
const RANGE_AT_MOST: u64 = 48 * 1024 * 1024;

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            chunk_size: RANGE_AT_MOST,
            in_flight: 4,
            raw: false,
            force: false,
        }
    }
}

impl FetchOptions {
    /// Options for dumps stored in multipart parts of `part_size` bytes: each range is whole
    /// parts. A range that cuts a part in two makes the server read that part for both, and
    /// fewer, larger ranges cost it less again (see bench/README.md, fetch).
    pub fn for_parts(part_size: u64) -> Self {
        let parts = (RANGE_AT_MOST / part_size.max(1)).max(1);
        Self {
            chunk_size: parts * part_size.max(1),
            ..Self::default()
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
    /// Whether `path` holds the stored, compressed bytes (`--raw`).
    pub compressed: bool,
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
    let part_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
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
    let mode = match (record.compression, options.raw) {
        (Compression::None, _) => Mode::Plain,
        (Compression::Zstd, true) => Mode::Raw,
        (Compression::Zstd, false) => Mode::Decode,
    };
    progress.set_length(stored);
    progress.set_position(0);
    if have > 0 {
        progress.println(format!(
            "resuming from {} of {}",
            human_bytes(have),
            human_bytes(stored)
        ));
    }

    // The network side only downloads, ranges at once, each streamed as it arrives. One
    // thread writes the pieces into the part file where they belong and passes them on in
    // order, decompressing them; another hashes the core and writes it out.
    let ranges = Ranges {
        from: have,
        size: options.chunk_size.max(1),
        end: stored,
    };
    let (pieces_out, pieces_in) = tokio::sync::mpsc::channel(PIECES_QUEUED);
    let in_flight = options.in_flight.max(1);
    let window = Arc::new(Semaphore::new(in_flight));
    let stages = {
        let (part, dir, progress) = (part.to_owned(), dir.clone(), progress.clone());
        let window = window.clone();
        tokio::task::spawn_blocking(move || {
            let staged = run_stages(
                mode, part_file, &part, ranges, &dir, pieces_in, &window, &progress,
            );
            // Nothing more will be let in; a download waiting for room stops.
            window.close();
            staged
        })
    };
    let downloaded = download(storage, key, ranges, in_flight, &window, pieces_out).await;
    let staged = stages
        .await
        .map_err(|err| anyhow::anyhow!("the fetch's writer stopped: {err}"))?;
    downloaded?;
    let staged = match staged {
        Ok(staged) => staged,
        Err(StageError::Io { what, path, source }) => {
            return Err(io_error(what, &path, source).into());
        }
        Err(StageError::Corrupt(reason)) => {
            return Ok(Outcome::Mismatch(Mismatch::Truncated(reason), resumed_from));
        }
        // The download failed first; its error was returned above.
        Err(StageError::Stopped) => {
            return Err(anyhow::anyhow!("the download of {key} stopped"));
        }
    };

    let Staged {
        written,
        hasher,
        decoded,
    } = staged;
    if let Some(mismatch) = verify(record, written, hasher) {
        return Ok(Outcome::Mismatch(mismatch, resumed_from));
    }
    match decoded {
        // The stored bytes are the core, or kept as stored: the part file becomes the output.
        None => commit_rename(part, output, options.force)?,
        Some(temp) => {
            let persisted = if options.force {
                temp.persist(output).map(drop)
            } else {
                temp.persist_noclobber(output).map(drop)
            };
            persisted.map_err(|err| io_error("write", output, err.error))?;
            let _ = std::fs::remove_file(part);
        }
    }
    let compressed = mode == Mode::Raw;
    Ok(Outcome::Done(Fetched {
        path: output.to_owned(),
        size: if compressed { stored } else { written },
        resumed_from,
        compressed,
    }))
}

fn io_error(what: &str, path: &Path, err: io::Error) -> UserError {
    UserError::new(format!("cannot {what} {}", path.display()))
        .hint("check the directory exists and is writable, and that the disk has room")
        .cause(err)
}

/// Pieces of the download waiting for the writer; they are the size of the network's reads.
const PIECES_QUEUED: usize = 32;

/// How bytes `from..end` of the stored object are cut into ranges of `size` bytes.
#[derive(Debug, Clone, Copy)]
struct Ranges {
    from: u64,
    size: u64,
    end: u64,
}

impl Ranges {
    fn count(&self) -> usize {
        usize::try_from(self.end.saturating_sub(self.from).div_ceil(self.size)).unwrap_or(0)
    }

    /// First and last byte of range `index`.
    fn bounds(&self, index: usize) -> (u64, u64) {
        let start = self.from + index as u64 * self.size;
        (start, (start + self.size).min(self.end) - 1)
    }

    fn index_of(&self, offset: u64) -> usize {
        usize::try_from((offset - self.from) / self.size).unwrap_or(usize::MAX)
    }
}

/// Reads `ranges` of `key`, `in_flight` at once, streaming every piece to the writer. A range
/// starts only when `window` lets it in: the writer lets a range in for each range it has
/// finished, so no more than `in_flight` ranges are open at once, in the part file as in the
/// writer's memory. Stops early when the writer has stopped (it says why).
async fn download<S: DumpStorage>(
    storage: &S,
    key: &str,
    ranges: Ranges,
    in_flight: usize,
    window: &Semaphore,
    pieces: tokio::sync::mpsc::Sender<Piece>,
) -> anyhow::Result<()> {
    let pieces = &pieces;
    stream::iter(0..ranges.count())
        .then(|index| async move {
            let admitted = window.acquire().await.ok()?;
            admitted.forget();
            Some(index)
        })
        .map(|admitted| async move {
            match admitted {
                Some(index) => {
                    let (start, end) = ranges.bounds(index);
                    storage.read_range(key, start, end, pieces).await
                }
                // The window is closed: the writer stopped.
                None => Ok(()),
            }
        })
        .buffer_unordered(in_flight)
        .try_collect::<()>()
        .await
        .map_err(|err| storage_error(err, &format!("download {key}")))
}

/// What becomes of the stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Stored as the kernel wrote it: the stored bytes are the core.
    Plain,
    /// zstd, decompressed into a temporary file next to the output.
    Decode,
    /// Kept compressed (`--raw`), and checked by decompressing them without writing the core.
    Raw,
}

/// The core as checked: its size and hash, and where it was written.
struct Staged {
    written: u64,
    hasher: Sha256,
    /// The decompressed core, when it is not the part file itself.
    decoded: Option<NamedTempFile>,
}

#[derive(Debug)]
enum StageError {
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The stored bytes do not decompress.
    Corrupt(String),
    /// The download ended before every byte arrived.
    Stopped,
}

/// A failure of the decompressor: the stored bytes do not decompress, unless what failed is
/// handing its output on, which means the writing thread stopped; its error says why (a full
/// disk is not a damaged dump, and the download in the part file is kept).
fn decode_error(err: io::Error) -> StageError {
    if err.kind() == io::ErrorKind::BrokenPipe {
        StageError::Stopped
    } else {
        StageError::Corrupt(err.to_string())
    }
}

fn stage_io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StageError + 'a {
    move |source| StageError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Bytes handed from the decompressor to the thread that hashes and writes them.
const DECODED_CHUNK: usize = 4 * 1024 * 1024;

/// Bytes of the part file read back at a time, to be decompressed or hashed: few enough to
/// stay in the CPU's cache between the read and their use, in one buffer used again and again.
const READ_BACK: usize = 256 * 1024;

/// What is passed on, in order, to be decompressed or hashed.
enum Due {
    /// Bytes in hand: a piece as it arrived, or decompressed output.
    Bytes(Bytes),
    /// Bytes already in the part file, read there by whoever needs them.
    InPart(std::ops::Range<u64>),
}

/// The blocking side of a fetch. This thread writes each piece into the part file at its
/// offset and passes the bytes on in order: to the decompressor, or straight to the second
/// thread, which hashes the core and writes it out. Pieces that arrive ahead of the bytes due
/// wait in memory up to [`AHEAD_BUDGET`], past it in the part file only, read back when their
/// turn comes; each range finished lets another into `window`. The front of a resumed part
/// file was checked by an earlier fetch only if it is read again here first.
#[allow(clippy::too_many_arguments)]
fn run_stages(
    mode: Mode,
    part_file: File,
    part: &Path,
    ranges: Ranges,
    dir: &Path,
    mut pieces: tokio::sync::mpsc::Receiver<Piece>,
    window: &Semaphore,
    progress: &ProgressBar,
) -> Result<Staged, StageError> {
    let have = ranges.from;
    let mut part_out = SparseFile::new(part_file, have, mode == Mode::Plain);
    let decoded = match mode {
        Mode::Decode => Some(
            tempfile::Builder::new()
                .prefix(".coredog-fetch-")
                .tempfile_in(dir)
                .map_err(stage_io("write into", dir))?,
        ),
        Mode::Plain | Mode::Raw => None,
    };
    let decoded_path = decoded.as_ref().map(|temp| temp.path().to_owned());
    let part_reader = part_out.file.try_clone().map_err(stage_io("read", part))?;
    let (to_check, checked_in) = std::sync::mpsc::sync_channel::<Due>(4);
    let checker_part_reader = part_reader.try_clone().map_err(stage_io("read", part))?;
    let checker_part = part.to_owned();
    let checker = std::thread::spawn(
        move || -> Result<(u64, Sha256, Option<NamedTempFile>), StageError> {
            let mut hasher = Sha256::new();
            let mut written = 0u64;
            let mut out = match decoded {
                Some(temp) => {
                    let file = temp.reopen().map_err(stage_io("write into", temp.path()))?;
                    Some((SparseFile::new(file, 0, true), temp))
                }
                None => None,
            };
            let mut take = |bytes: &[u8]| -> Result<(), StageError> {
                hasher.update(bytes);
                if let Some((file, temp)) = &mut out {
                    file.write_at(written, bytes)
                        .map_err(stage_io("write", temp.path()))?;
                }
                written += bytes.len() as u64;
                Ok(())
            };
            let mut scratch = Vec::new();
            for due in checked_in {
                match due {
                    Due::Bytes(bytes) => take(&bytes)?,
                    Due::InPart(range) => read_part(
                        &checker_part_reader,
                        &checker_part,
                        range,
                        &mut scratch,
                        &mut take,
                    )?,
                }
            }
            if let Some((file, temp)) = &mut out {
                file.settle().map_err(stage_io("write", temp.path()))?;
            }
            Ok((written, hasher, out.map(|(_, temp)| temp)))
        },
    );
    let mut decoder = match mode {
        Mode::Decode | Mode::Raw => Some(
            zstd::stream::write::Decoder::new(Forward {
                buffer: Vec::with_capacity(DECODED_CHUNK),
                to: to_check.clone(),
            })
            .map_err(|err| StageError::Corrupt(err.to_string()))?,
        ),
        Mode::Plain => None,
    };
    let mut scratch = Vec::new();
    let mut pass_on = |due: Due| -> Result<(), StageError> {
        match &mut decoder {
            Some(decoder) => {
                let mut decode = |bytes: &[u8]| decoder.write_all(bytes).map_err(decode_error);
                match due {
                    Due::Bytes(bytes) => decode(&bytes),
                    Due::InPart(range) => {
                        read_part(&part_reader, part, range, &mut scratch, decode)
                    }
                }
            }
            // Plain: the stored bytes are the core.
            None => to_check.send(due).map_err(|_| StageError::Stopped),
        }
    };

    // Bytes before `front` are in the part file; bytes before `passed` have been passed on.
    let mut front = have;
    let mut passed = 0;
    let mut ahead = Ahead::new(AHEAD_BUDGET);
    let mut received = vec![0u64; ranges.count()];
    let mut next_range = 0;
    let mut staged = (|| {
        ahead.pass_due(&mut passed, front, &mut pass_on)?;
        progress.inc(have);
        while let Some(Piece { offset, bytes }) = pieces.blocking_recv() {
            let len = bytes.len() as u64;
            part_out
                .write_at(offset, &bytes)
                .map_err(stage_io("write", part))?;
            if offset == passed {
                pass_on(Due::Bytes(bytes))?;
                passed += len;
            } else {
                ahead.hold(offset, bytes);
            }
            let index = ranges.index_of(offset);
            if let Some(count) = received.get_mut(index) {
                *count += len;
            }
            while next_range < received.len() {
                let (start, end) = ranges.bounds(next_range);
                if received[next_range] < end + 1 - start {
                    break;
                }
                front = end + 1;
                next_range += 1;
                window.add_permits(1);
            }
            ahead.pass_due(&mut passed, front, &mut pass_on)?;
            progress.inc(len);
        }
        Ok(())
    })();
    // What a resumed fetch may trust is the front: past it, ranges may have holes.
    let complete = next_range == received.len();
    if complete {
        staged = staged.and_then(|()| part_out.settle().map_err(stage_io("write", part)));
    } else {
        let _ = part_out.file.set_len(front);
        if staged.is_ok() {
            staged = Err(StageError::Stopped);
        }
    }
    if staged.is_ok()
        && let Some(decoder) = decoder.take()
    {
        staged = decoder
            .finish()
            .map_err(decode_error)
            .and_then(|forward| forward.flush_rest().map_err(|_| StageError::Stopped));
    }
    drop(decoder);
    drop(to_check);
    let checked = checker.join().unwrap_or_else(|_| {
        Err(StageError::Io {
            what: "write",
            path: decoded_path.clone().unwrap_or_else(|| part.to_owned()),
            source: io::Error::other("the writing thread panicked"),
        })
    });
    // An error of the writing thread explains a stop of this one.
    if let (Err(StageError::Stopped), Err(err)) = (&staged, &checked) {
        return Err(match err {
            StageError::Io { what, path, source } => StageError::Io {
                what,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            StageError::Corrupt(reason) => StageError::Corrupt(reason.clone()),
            StageError::Stopped => StageError::Stopped,
        });
    }
    staged?;
    let (written, hasher, decoded) = checked?;
    Ok(Staged {
        written,
        hasher,
        decoded,
    })
}

/// Out-of-order pieces held in memory: up to this many bytes; later ones wait in the part
/// file only. Four ranges in flight mostly finish together, so without a budget up to three
/// of them would be held. Ranges ahead are not held back to fit the budget: a store that
/// serves each connection at a limited rate would then send at the rate of fewer
/// connections (twice as slow, measured: bench/README.md, list-fetch).
const AHEAD_BUDGET: usize = 32 * 1024 * 1024;

/// Pieces that arrived ahead of the bytes due, by offset.
struct Ahead {
    pieces: BTreeMap<u64, Bytes>,
    held: usize,
    budget: usize,
}

impl Ahead {
    fn new(budget: usize) -> Self {
        Self {
            pieces: BTreeMap::new(),
            held: 0,
            budget,
        }
    }

    /// Keeps `bytes` (already in the part file) in memory if the budget allows.
    fn hold(&mut self, offset: u64, bytes: Bytes) {
        if self.held + bytes.len() <= self.budget {
            self.held += bytes.len();
            self.pieces.insert(offset, bytes);
        }
    }

    /// Passes on every byte due that is at hand: held pieces, and what is in the part file
    /// before `front` but was not held.
    fn pass_due(
        &mut self,
        passed: &mut u64,
        front: u64,
        pass_on: &mut dyn FnMut(Due) -> Result<(), StageError>,
    ) -> Result<(), StageError> {
        loop {
            if let Some(bytes) = self.pieces.remove(passed) {
                self.held -= bytes.len();
                *passed += bytes.len() as u64;
                pass_on(Due::Bytes(bytes))?;
            } else if *passed < front {
                let next_held = self.pieces.range(*passed..).next().map(|(&at, _)| at);
                let until = next_held.map_or(front, |next| next.min(front));
                pass_on(Due::InPart(*passed..until))?;
                *passed = until;
            } else {
                return Ok(());
            }
        }
    }
}

/// Hands bytes `range` of the part file, all written, to `sink` a buffer at a time. The file
/// may end before them in a trailing hole: those bytes are zeros.
fn read_part(
    file: &File,
    path: &Path,
    range: std::ops::Range<u64>,
    scratch: &mut Vec<u8>,
    mut sink: impl FnMut(&[u8]) -> Result<(), StageError>,
) -> Result<(), StageError> {
    use std::os::unix::fs::FileExt as _;
    scratch.resize(READ_BACK, 0);
    let mut at = range.start;
    while at < range.end {
        let want = usize::try_from(range.end - at).map_or(READ_BACK, |left| left.min(READ_BACK));
        let buffer = &mut scratch[..want];
        let mut filled = 0;
        while filled < want {
            match file.read_at(&mut buffer[filled..], at + filled as u64) {
                Ok(0) => {
                    buffer[filled..].fill(0);
                    filled = want;
                }
                Ok(read) => filled += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(stage_io("read", path)(err)),
            }
        }
        sink(buffer)?;
        at += want as u64;
    }
    Ok(())
}

/// The decompressor's output, handed on in chunks of [`DECODED_CHUNK`] bytes.
struct Forward {
    buffer: Vec<u8>,
    to: std::sync::mpsc::SyncSender<Due>,
}

impl Forward {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(DECODED_CHUNK));
        self.to
            .send(Due::Bytes(Bytes::from(full)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the writer stopped"))
    }

    fn flush_rest(mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

impl Write for Forward {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = (DECODED_CHUNK - self.buffer.len()).min(data.len());
        self.buffer.extend_from_slice(&data[..take]);
        if self.buffer.len() == DECODED_CHUNK {
            self.send()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Blocks checked for zeros when writing sparsely: the filesystem's block size.
const SPARSE_BLOCK: usize = 4096;

/// Whether `block` is all zeros. Most blocks of a core are not, and show it in their first
/// bytes: the check stops at the first 32 that are not zero (each 32 compared at once).
fn is_zero(block: &[u8]) -> bool {
    let mut words = block.chunks_exact(32);
    words
        .by_ref()
        .all(|word| word.iter().fold(0u8, |acc, &byte| acc | byte) == 0)
        && words.remainder().iter().all(|&byte| byte == 0)
}

/// A file in which whole blocks of zeros become holes, as `cp` and `zstd -d` leave them: a core
/// is often a third zero pages, which then cost neither disk nor the time to write them.
struct SparseFile {
    file: File,
    /// How long the file is meant to be: the end of the furthest bytes written, holes included.
    len: u64,
    /// Where the file's data ends (short of `len` after a trailing hole).
    end: u64,
    sparse: bool,
}

impl SparseFile {
    fn new(file: File, len: u64, sparse: bool) -> Self {
        Self {
            file,
            len,
            end: len,
            sparse,
        }
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let stop = offset + bytes.len() as u64;
        self.len = self.len.max(stop);
        if !self.sparse {
            self.file.write_all_at(bytes, offset)?;
            self.end = self.end.max(stop);
            return Ok(());
        }
        // Blocks aligned to the file's, so that a zero block is a whole hole; runs of non-zero
        // blocks are written with one call each.
        let mut run_start: Option<usize> = None;
        let mut at = 0;
        while at < bytes.len() {
            let block_end =
                (at + SPARSE_BLOCK - ((offset as usize + at) % SPARSE_BLOCK)).min(bytes.len());
            let zero = is_zero(&bytes[at..block_end]);
            match (zero, run_start) {
                (false, None) => run_start = Some(at),
                (true, Some(start)) => {
                    self.write_run(offset, &bytes[start..at], start)?;
                    run_start = None;
                }
                _ => {}
            }
            at = block_end;
        }
        if let Some(start) = run_start {
            self.write_run(offset, &bytes[start..], start)?;
        }
        Ok(())
    }

    fn write_run(&mut self, offset: u64, run: &[u8], within: usize) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let at = offset + within as u64;
        self.file.write_all_at(run, at)?;
        self.end = self.end.max(at + run.len() as u64);
        Ok(())
    }

    /// Extends the file over a trailing hole, so its length is what was written.
    fn settle(&mut self) -> io::Result<()> {
        if self.end < self.len {
            self.file.set_len(self.len)?;
            self.end = self.len;
        }
        Ok(())
    }
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

    #[test]
    fn ranges_are_whole_parts() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(FetchOptions::for_parts(5 * MIB).chunk_size, 45 * MIB);
        assert_eq!(FetchOptions::for_parts(16 * MIB).chunk_size, 48 * MIB);
        assert_eq!(FetchOptions::for_parts(64 * MIB).chunk_size, 64 * MIB);
        assert_eq!(FetchOptions::for_parts(0).chunk_size, RANGE_AT_MOST);
    }

    /// A part file read back across buffers and past its end (a trailing hole, zeros).
    #[test]
    fn the_part_file_is_read_back_in_order_with_zeros_past_its_end() {
        let mut file = tempfile::tempfile().unwrap();
        let written: Vec<u8> = (0..300_000u32).map(|at| (at % 251) as u8 + 1).collect();
        file.write_all(&written).unwrap();
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        read_part(
            &file,
            Path::new("part"),
            100..700_000,
            &mut scratch,
            |bytes| {
                out.extend_from_slice(bytes);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(out.len(), 699_900);
        assert_eq!(out[..299_900], written[100..]);
        assert!(out[299_900..].iter().all(|&byte| byte == 0));
    }

    /// Every range in flight streams at once: before the first range is complete, pieces of
    /// all of them have reached the writer (a store with connections of limited rate sends
    /// at the rate of all of them).
    #[tokio::test]
    async fn ranges_in_flight_stream_at_once() {
        let content: Vec<u8> = (0..12_000u32).map(|at| (at % 251) as u8).collect();
        let storage = crate::storage::memory::MemoryStorage::default();
        storage.put("core", content.clone());
        let ranges = Ranges {
            from: 0,
            size: 3_000,
            end: content.len() as u64,
        };
        let window = Semaphore::new(ranges.count());
        let (pieces_out, mut pieces_in) = tokio::sync::mpsc::channel(PIECES_QUEUED);
        let writer = tokio::spawn(async move {
            let (mut first_range_left, mut streaming) = (3_000u64, [false; 4]);
            let mut out = vec![0u8; 12_000];
            while let Some(Piece { offset, bytes }) = pieces_in.recv().await {
                let index = ranges.index_of(offset);
                if first_range_left > 0 {
                    streaming[index] = true;
                }
                if index == 0 {
                    first_range_left -= bytes.len() as u64;
                }
                let at = usize::try_from(offset).unwrap();
                out[at..at + bytes.len()].copy_from_slice(&bytes);
            }
            (out, streaming)
        });
        download(&storage, "core", ranges, 4, &window, pieces_out)
            .await
            .unwrap();
        let (out, streaming) = writer.await.unwrap();
        assert_eq!(out, content);
        assert_eq!(streaming, [true; 4], "ranges that sent nothing meanwhile");
    }

    /// Pieces arriving out of order, over a budget that holds only some of them, are passed
    /// on in order: the held ones from memory, the others read back from the part file.
    #[test]
    fn pieces_ahead_are_passed_on_in_order_from_memory_or_the_part_file() {
        let content: Vec<u8> = (0..80u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&content).unwrap();
        let piece = |index: usize| {
            (
                index as u64 * 10,
                Bytes::copy_from_slice(&content[index * 10..][..10]),
            )
        };
        // Two ranges of four pieces; the second range finishes first.
        let arrivals = [4, 5, 6, 7, 1, 2, 0, 3];
        let mut ahead = Ahead::new(25);
        let (mut passed, mut front, mut received) = (0u64, 0u64, [false; 8]);
        let mut out = Vec::new();
        let mut read_from_file = 0;
        for index in arrivals {
            let (offset, bytes) = piece(index);
            received[index] = true;
            if offset == passed {
                passed += bytes.len() as u64;
                out.extend_from_slice(&bytes);
            } else {
                ahead.hold(offset, bytes);
            }
            assert!(ahead.held <= 25);
            for range in 0..2 {
                if received[..(range + 1) * 4].iter().all(|&got| got) {
                    front = (range as u64 + 1) * 40;
                }
            }
            let mut scratch = Vec::new();
            let mut pass_on = |due: Due| match due {
                Due::Bytes(bytes) => {
                    out.extend_from_slice(&bytes);
                    Ok(())
                }
                Due::InPart(range) => {
                    read_from_file += range.end - range.start;
                    read_part(&file, Path::new("part"), range, &mut scratch, |bytes| {
                        out.extend_from_slice(bytes);
                        Ok(())
                    })
                }
            };
            ahead.pass_due(&mut passed, front, &mut pass_on).unwrap();
        }
        assert_eq!(out, content);
        assert!(ahead.pieces.is_empty() && ahead.held == 0);
        assert!(read_from_file > 0, "the budget held every piece");
        assert!(read_from_file < 60, "no piece was held");
    }
}
