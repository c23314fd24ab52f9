//! A mounted shared filesystem (Tencent CFS, NFS, any POSIX mount) as the store.
//!
//! An object key is a relative path below the mount. A dump is written to a temporary name in
//! its final directory, fsynced, renamed into place and the directory fsynced, so a reader (or
//! a watcher restarted mid-write) never sees a partial dump under its final name. A write that
//! fails or is dropped removes its temporary file. A writer holds a lock on its temporary file,
//! which the kernel lets go when the writer dies: the next write of the same dump (the watcher
//! writes the same key again after a restart) removes the temporary files nobody holds. Id
//! index entries are written without that sweep, which lists their directory: the id index is
//! one flat directory that grows with every dump, and its entries are empty.
//!
//! The share is mounted by the node (or a volume) where the watcher cannot see whether it is:
//! a node whose mount failed at boot leaves an empty directory on its own disk at the mount
//! path, and dumps stored there would be deleted from the dump directory and then lost with
//! the node. So before writing or listing, the mount path's filesystem is checked: a local
//! disk's (ext4, xfs, btrfs, overlay, tmpfs, ...) is refused, a transient error, unless
//! `CFSAllowLocalDisk` says that is meant.
//!
//! The share is writable by the people who read dumps, and the watcher runs as root: a
//! symbolic link planted there (`corefiles/ns` → `/etc`) must not take its writes, or its
//! reads, anywhere else. Every path below the mount path is walked one directory at a time,
//! each opened relative to the one before with `O_NOFOLLOW` ([`open_dir_beneath`]), and files
//! are created, renamed and removed relative to their directory's handle.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags};

use coredog_core::config::StorageConfig;
use jiff::Timestamp;

use crate::{ListPage, ObjectInfo, PartReceiver, Piece, StoreError, abandoned, part_channel};

const PAGE_SIZE: usize = 1000;

/// A core holds the crashed process's memory (keys, tokens, customer data), so nothing stored is
/// readable by everyone who can read the share: the group may read, as the kernel's own cores and
/// systemd-coredump's allow. Readers are given the share's group (a setgid directory passes it
/// on to every file and directory made below it) or a default ACL.
const FILE_MODE: u32 = 0o640;
const DIRECTORY_MODE: u32 = 0o750;

pub struct CfsStore {
    root: PathBuf,
    allow_local_disk: bool,
}

/// Filesystems that only ever live on the machine's own disks or memory (`statfs` magic numbers).
const LOCAL_FILESYSTEMS: [(u32, &str); 9] = [
    (0xEF53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x794C_7630, "overlay"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58F6, "ramfs"),
    (0xF2F5_2010, "f2fs"),
    (0x2FC1_2FC1, "zfs"),
    (0x4d44, "vfat"),
];

/// The local filesystem `path` is on, if it is one of [`LOCAL_FILESYSTEMS`].
fn local_filesystem(path: &Path) -> std::io::Result<Option<&'static str>> {
    let stats = rustix::fs::statfs(path)?;
    // The magic numbers are 32 bits, in a field whose width and sign vary by architecture.
    let kind = stats.f_type as u32;
    Ok(LOCAL_FILESYSTEMS
        .iter()
        .find(|(magic, _)| *magic == kind)
        .map(|(_, name)| *name))
}

/// Refuses to store under `root` when it is not a shared filesystem (see the module's docs).
fn check_shared(root: &Path, allow_local_disk: bool) -> Result<(), StoreError> {
    if allow_local_disk {
        return Ok(());
    }
    let found = local_filesystem(root).map_err(io_error("check the share at", root))?;
    match found {
        None => Ok(()),
        Some(filesystem) => Err(StoreError::Io {
            operation: "check the share at",
            path: root.display().to_string(),
            source: std::io::Error::other(format!(
                "it is on a local disk ({filesystem}), not a shared filesystem: is the share mounted there? (set StorageConfig.CFSAllowLocalDisk: true if a local disk is meant)"
            )),
        }),
    }
}

fn io_error<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        operation,
        path: path.display().to_string(),
        source,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::Io {
            operation: "run blocking file work",
            path: String::new(),
            source: std::io::Error::other(err.to_string()),
        })?
}

/// The directory `relative` (plain components only) names below `root`, made where missing
/// when `create`, reached without following a symbolic link: each component is opened relative
/// to the one before with `O_NOFOLLOW`. A link, or anything else that is not a directory, in
/// the way is an error that says so. The handle is an `O_PATH` one, which needs no more than
/// the search permission `stat` and `open` by path needed; [`readable`] opens it for listing
/// and `fsync`.
fn open_dir_beneath(root: &Path, relative: &Path, create: bool) -> std::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, flags, Mode::empty())?;
    let mut reached = root.to_path_buf();
    for component in relative.components() {
        let name = component.as_os_str();
        reached.push(name);
        let open =
            |dir: &OwnedFd| rustix::fs::openat(dir, name, flags | OFlags::NOFOLLOW, Mode::empty());
        let opened = match open(&dir) {
            // Made only when missing: on NFS a mkdir of a directory that exists, in a parent
            // the watcher may not write to, fails with EACCES or EROFS rather than EEXIST.
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(DIRECTORY_MODE)) {
                    // Another writer may have made it meanwhile.
                    Ok(()) | Err(rustix::io::Errno::EXIST) => open(&dir),
                    Err(err) => Err(err),
                }
            }
            opened => opened,
        };
        dir = match opened {
            Ok(next) => next,
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                return Err(not_followed(&reached));
            }
            Err(err) => return Err(err.into()),
        };
    }
    Ok(dir)
}

/// The directory `dir` (a handle of [`open_dir_beneath`]) opened for reading: to list it or
/// `fsync` it.
fn readable(dir: &OwnedFd) -> std::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, ".", flags, Mode::empty())?)
}

fn not_followed(path: &Path) -> std::io::Error {
    std::io::Error::other(format!(
        "{} is a symbolic link or not a directory, and links on the share are not followed",
        path.display()
    ))
}

/// The plain file `name` in `dir`, opened with `access`: `Ok(None)` when there is none, or a
/// link, a FIFO, a device or anything else but a plain file is in its place (which is never
/// opened, for opening a device can do things).
fn open_plain_file(
    dir: &OwnedFd,
    name: &OsStr,
    access: OFlags,
) -> std::io::Result<Option<(File, std::fs::Metadata)>> {
    let seen = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(seen) => seen,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    if !rustix::fs::FileType::from_raw_mode(seen.st_mode).is_file() {
        return Ok(None);
    }
    // Should the name be swapped for something else after the look, NOFOLLOW keeps a link shut,
    // NONBLOCK a FIFO, NOCTTY a terminal, and the identity check below tells.
    let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let meta = file.metadata()?;
    use std::os::unix::fs::MetadataExt as _;
    let same = meta.is_file() && (meta.dev(), meta.ino()) == (seen.st_dev, seen.st_ino);
    Ok(same.then_some((file, meta)))
}

/// The stored file `key` names, opened for reading without following a symbolic link on the
/// way; `Ok(None)` when there is none, or something other than a plain file is in its place.
fn open_stored(root: &Path, key: &Path) -> std::io::Result<Option<(File, std::fs::Metadata)>> {
    let (Some(parent), Some(name)) = (key.parent(), key.file_name()) else {
        return Ok(None);
    };
    let dir = match open_dir_beneath(root, parent, false) {
        Ok(dir) => dir,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    open_plain_file(&dir, name, OFlags::RDONLY)
}

impl CfsStore {
    pub fn from_config(storage: &StorageConfig) -> Result<Self, StoreError> {
        let root = storage
            .cfs_mount_path
            .as_deref()
            .map(str::trim)
            .filter(|path| !path.is_empty())
            .ok_or_else(|| {
                StoreError::Config("StorageConfig.CFSMountPath is required for cfs".to_owned())
            })?;
        Ok(Self {
            root: root.into(),
            allow_local_disk: storage.cfs_allow_local_disk,
        })
    }

    /// A store at `root`, wherever it is: for tests and demos on a local directory.
    pub fn on_local_disk(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            allow_local_disk: true,
        }
    }

    pub fn describe(&self) -> String {
        format!("cfs:{}", self.root.display())
    }

    /// The file an object key names; keys that would leave the mount are refused.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        if key.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(StoreError::Config(format!(
                "{key:?} is not a plain relative key"
            )));
        }
        Ok(self.root.join(relative))
    }

    pub async fn upload(&self, key: &str, parts: PartReceiver) -> Result<u64, StoreError> {
        self.write(key, parts).await
    }

    /// Writes `key` from `parts`, after removing the temporary files of abandoned writes of
    /// the key, which lists its directory: everywhere but in the id index, one flat directory
    /// that grows with every dump (its entries are empty files).
    async fn write(&self, key: &str, mut parts: PartReceiver) -> Result<u64, StoreError> {
        let path = self.path_of(key)?;
        let relative = Path::new(key);
        let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
            return Err(StoreError::Config(format!("{key:?} names no file")));
        };
        let dir_path = self.root.join(parent);
        let sweep = parent
            .file_name()
            .is_none_or(|dir| dir != coredog_core::object_key::ID_INDEX_DIR);
        // The guard is made where the file is: dropped with the upload (a watcher stopping
        // mid-write), even while the file is being created, or after a failure, it takes the
        // file with it.
        let (file, dir, tmp, mut pending) = {
            let (root, allow_local_disk) = (self.root.clone(), self.allow_local_disk);
            let (parent, name, dir_path) = (parent.to_owned(), name.to_owned(), dir_path.clone());
            blocking(move || {
                check_shared(&root, allow_local_disk)?;
                let dir = open_dir_beneath(&root, &parent, true)
                    .map_err(io_error("create directory", &dir_path))?;
                let dir = Arc::new(dir);
                if sweep {
                    remove_abandoned_temporaries(&dir, &dir_path, &name);
                }
                let (file, tmp, pending) = create_locked_temporary(&dir, &dir_path, &name)?;
                Ok((file, dir, tmp, pending))
            })
            .await?
        };
        let tmp_path = dir_path.join(&tmp);
        let mut file = Some(file);
        let mut size = 0u64;
        let spare = parts.spare_buffers();
        let written = async {
            while let Some(part) = parts.next().await {
                size += part.len() as u64;
                let mut handle = file.take().ok_or_else(|| StoreError::Source {
                    key: key.to_owned(),
                    reason: "file handle lost".to_owned(),
                })?;
                let (tmp_path, spare) = (tmp_path.clone(), spare.clone());
                file = Some(
                    blocking(move || {
                        handle
                            .write_all(&part)
                            .map_err(io_error("write", &tmp_path))?;
                        spare.put(part);
                        Ok(handle)
                    })
                    .await?,
                );
            }
            if !parts.completed() {
                return Err(abandoned(key));
            }
            let handle = file.take();
            let (dir, tmp, name) = (dir.clone(), tmp.clone(), name.to_owned());
            let (tmp_path, path, dir_path) = (tmp_path.clone(), path.clone(), dir_path.clone());
            blocking(move || {
                if let Some(handle) = handle {
                    handle.sync_all().map_err(io_error("fsync", &tmp_path))?;
                }
                rustix::fs::renameat(&*dir, &tmp, &*dir, &name)
                    .map_err(|err| io_error("rename", &path)(err.into()))?;
                readable(&dir)
                    .and_then(|listed| Ok(rustix::fs::fsync(listed)?))
                    .map_err(io_error("fsync directory", &dir_path))?;
                Ok(())
            })
            .await
        }
        .await;
        // Renamed into place or not, the guard's work is done here.
        let leftover = pending.name.take();
        if written.is_err()
            && let Some(tmp) = leftover
        {
            // Removed before the failure is reported, so that a retry finds the directory clean.
            let dir = pending.dir.clone();
            blocking(move || {
                let _ = rustix::fs::unlinkat(&*dir, &tmp, AtFlags::empty());
                Ok(())
            })
            .await?;
        }
        written.map(|()| size)
    }

    pub async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (sender, receiver) = part_channel();
        let uploaded = self.write(key, receiver);
        let fed = async move {
            let _ = sender.send(bytes.to_vec()).await;
            sender.finish();
        };
        let (uploaded, ()) = tokio::join!(uploaded, fed);
        uploaded.map(drop)
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        let root = self.root.clone();
        blocking(move || match open_stored(&root, Path::new(&key)) {
            Ok(Some((_, meta))) => Ok(Some(ObjectInfo {
                key,
                size: meta.len(),
                last_modified: modified(&meta),
            })),
            Ok(None) => Ok(None),
            Err(err) => Err(io_error("stat", &path)(err)),
        })
        .await
    }

    /// Lists files whose key starts with `prefix`, in key order, a page at a time; the
    /// continuation is the last key of the previous page.
    pub async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        let (root, allow_local_disk) = (self.root.clone(), self.allow_local_disk);
        let prefix = prefix.to_owned();
        let after = continuation.map(str::to_owned);
        blocking(move || {
            check_shared(&root, allow_local_disk)?;
            // Only the directory the prefix names is walked, not the whole mount.
            let dir_part = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
            let start = if dir_part.is_empty() {
                root.clone()
            } else {
                root.join(dir_part)
            };
            // The walk itself never enters a link; nor does it start in one.
            match open_dir_beneath(&root, Path::new(dir_part), false) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(ListPage::default());
                }
                Err(err) => return Err(io_error("list", &start)(err)),
            }
            let mut objects = Vec::new();
            let bounds = Bounds {
                prefix: &prefix,
                after: after.as_deref(),
            };
            walk_in_key_order(&root, &start, &bounds, &mut |key, meta| {
                objects.push(ObjectInfo {
                    key: key.to_owned(),
                    size: meta.len(),
                    last_modified: modified(meta),
                });
                // One more than a page tells whether another follows.
                objects.len() <= PAGE_SIZE
            })?;
            let next = (objects.len() > PAGE_SIZE).then(|| objects[PAGE_SIZE - 1].key.clone());
            objects.truncate(PAGE_SIZE);
            Ok(ListPage { objects, next })
        })
        .await
    }

    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        let root = self.root.clone();
        blocking(move || {
            let Some((mut file, meta)) =
                open_stored(&root, Path::new(&key)).map_err(io_error("open", &path))?
            else {
                return Err(StoreError::NotFound(key));
            };
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut bytes)
                .map_err(io_error("read", &path))?;
            Ok(bytes)
        })
        .await
    }

    pub async fn get_range(
        &self,
        key: &str,
        start: u64,
        end_inclusive: u64,
    ) -> Result<bytes::Bytes, StoreError> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
        let key = key.to_owned();
        blocking(move || {
            let Some((mut file, _)) =
                open_stored(&root, Path::new(&key)).map_err(io_error("open", &path))?
            else {
                return Err(StoreError::NotFound(key));
            };
            file.seek(SeekFrom::Start(start))
                .map_err(io_error("seek", &path))?;
            let mut buffer = Vec::new();
            file.take(end_inclusive.saturating_sub(start) + 1)
                .read_to_end(&mut buffer)
                .map_err(io_error("read", &path))?;
            Ok(bytes::Bytes::from(buffer))
        })
        .await
    }
}

impl CfsStore {
    pub async fn read_range(
        &self,
        key: &str,
        start: u64,
        end_inclusive: u64,
        to: &tokio::sync::mpsc::Sender<Piece>,
    ) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt as _;
        const PIECE: u64 = 1024 * 1024;
        let path = self.path_of(key)?;
        let root = self.root.clone();
        let (key, to) = (key.to_owned(), to.clone());
        blocking(move || {
            let Some((file, _)) =
                open_stored(&root, Path::new(&key)).map_err(io_error("open", &path))?
            else {
                return Err(StoreError::NotFound(key));
            };
            let mut at = start;
            while at <= end_inclusive {
                let mut buffer = vec![0u8; PIECE.min(end_inclusive + 1 - at) as usize];
                let read = file
                    .read_at(&mut buffer, at)
                    .map_err(io_error("read", &path))?;
                if read == 0 {
                    return Err(io_error("read", &path)(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the file ends before byte {at}"),
                    )));
                }
                buffer.truncate(read);
                let piece = Piece {
                    offset: at,
                    bytes: bytes::Bytes::from(buffer),
                };
                if to.blocking_send(piece).is_err() {
                    break;
                }
                at += read as u64;
            }
            Ok(())
        })
        .await
    }
}

/// How the names of the temporary files of writes of the file `name` begin.
fn temporary_prefix(name: &OsStr) -> String {
    format!(".{}.tmp-", name.to_string_lossy())
}

fn temporary_name(name: &OsStr) -> OsString {
    // Every watcher container is process 1: two of them on one node (a rolling update with
    // surge) writing the same key must not share a temporary file, nor two writes of one.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}{}-{started:x}-{write}",
        temporary_prefix(name),
        std::process::id()
    )
    .into()
}

/// Attempts at a temporary file another writer's sweep did not take away meanwhile.
const CREATE_ATTEMPTS: usize = 3;

/// A new temporary file in `dir` for the file `name`, locked for as long as it is open (the
/// kernel lets the lock go when the writer dies), and still under its name once locked:
/// another writer's sweep may take a file away in the instant between its creation and its
/// lock. `dir_path` names the directory in errors.
fn create_locked_temporary(
    dir: &Arc<OwnedFd>,
    dir_path: &Path,
    name: &OsStr,
) -> Result<(File, OsString, PendingTemporary), StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tmp = temporary_name(name);
        let tmp_path = dir_path.join(&tmp);
        // A new file only: a name someone else made on the share (a link planted there) is
        // never opened.
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let file = rustix::fs::openat(&**dir, &tmp, flags, Mode::from_raw_mode(FILE_MODE))
            .map(File::from)
            .map_err(|err| io_error("create", &tmp_path)(err.into()))?;
        let pending = PendingTemporary {
            dir: dir.clone(),
            name: Some(tmp.clone()),
        };
        // A share without locks leaves abandoned files to the age rule alone.
        let _ = file.try_lock();
        let created =
            rustix::fs::fstat(&file).map_err(|err| io_error("create", &tmp_path)(err.into()))?;
        let still_there = rustix::fs::statat(&**dir, &tmp, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|now| (now.st_dev, now.st_ino) == (created.st_dev, created.st_ino));
        if still_there || attempt == CREATE_ATTEMPTS {
            return Ok((file, tmp, pending));
        }
    }
}

/// A temporary file not yet renamed into place, removed when dropped.
struct PendingTemporary {
    dir: Arc<OwnedFd>,
    name: Option<OsString>,
}

impl Drop for PendingTemporary {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else { return };
        let dir = self.dir.clone();
        let remove = move || {
            let _ = rustix::fs::unlinkat(&*dir, &name, AtFlags::empty());
        };
        // An unlink on a share that stops answering blocks for as long as the mount's timeout:
        // never on a thread that runs async tasks.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(remove);
            }
            Err(_) => remove(),
        }
    }
}

/// On a share without locks, how long a temporary file may go untouched before its write counts
/// as abandoned: a write in progress touches its file with every part, and two watchers (a
/// rolling update with surge) may write one key at once.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether the write of the temporary file `name` in `dir` is over: nobody holds its lock (the
/// lock taken here goes when the handle does), or, where locks cannot tell, it was left
/// untouched for [`ABANDONED_AFTER`]. Anything but a plain file under the name is not opened.
fn write_is_over(dir: &OwnedFd, name: &OsStr) -> bool {
    // Written to: NFS takes an exclusive lock as a POSIX one, which needs a writable handle.
    let Ok(Some((file, _))) = open_plain_file(dir, name, OFlags::RDWR) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => true,
        Err(std::fs::TryLockError::WouldBlock) => false,
        Err(std::fs::TryLockError::Error(_)) => file
            .metadata()
            .ok()
            .and_then(|meta| meta.modified().ok())
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|untouched| untouched > ABANDONED_AFTER),
    }
}

/// Removes from `dir` the temporary files of earlier writes of the file `name` whose [write is
/// over](write_is_over). Best effort: what cannot be read or removed stays for the next write.
fn remove_abandoned_temporaries(dir: &OwnedFd, dir_path: &Path, name: &OsStr) {
    use std::os::unix::ffi::OsStrExt as _;
    let prefix = temporary_prefix(name);
    let Ok(entries) = readable(dir).and_then(|listed| Ok(rustix::fs::Dir::read_from(listed)?))
    else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = OsStr::from_bytes(entry.file_name().to_bytes());
        let done =
            entry_name.as_bytes().starts_with(prefix.as_bytes()) && write_is_over(dir, entry_name);
        if done && rustix::fs::unlinkat(dir, entry_name, AtFlags::empty()).is_ok() {
            tracing::info!(path = %dir_path.join(entry_name).display(), "removed the temporary file of an abandoned write");
        }
    }
}

fn is_temporary(key: &str) -> bool {
    key.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with('.') && name.contains(".tmp-"))
}

fn modified(meta: &std::fs::Metadata) -> Option<Timestamp> {
    meta.modified()
        .ok()
        .and_then(|time| Timestamp::try_from(time).ok())
}

/// Which keys a listing wants: those starting with `prefix`, after `after`.
struct Bounds<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
}

impl Bounds<'_> {
    /// Whether a directory whose keys all start with `dir_key` (ending in `/`) can hold one.
    fn may_hold(&self, dir_key: &str) -> bool {
        let meets_prefix = dir_key.starts_with(self.prefix) || self.prefix.starts_with(dir_key);
        // Every key below is before `after` when the directory sorts before it and `after` is
        // not below it.
        let all_before = self
            .after
            .is_some_and(|after| dir_key < after && !after.starts_with(dir_key));
        meets_prefix && !all_before
    }

    /// Whether a listing shows the file `key`: under the prefix, after the continuation, and
    /// not a write in progress.
    fn wants(&self, key: &str) -> bool {
        key.starts_with(self.prefix)
            && self.after.is_none_or(|after| key > after)
            && !is_temporary(key)
    }

    /// Whether `key` (a file's, or a directory's ending in `/`) and every key after it sort
    /// past the prefix's keys, which are contiguous: the walk can stop there.
    fn past(&self, key: &str) -> bool {
        key > self.prefix && !key.starts_with(self.prefix) && !self.prefix.starts_with(key)
    }
}

/// Visits the files below `dir` that `bounds` may want, in the order of their keys (as S3
/// lists them: a directory's entries sorted as `name/` and files as `name`), and stops when
/// `visit` returns false. Directories that hold nothing wanted are not entered and only the
/// files listed are stat'ed, so a page costs about a page of `stat`s plus the directory
/// listings on its way, however large the share. Returns whether to go on.
fn walk_in_key_order(
    root: &Path,
    dir: &Path,
    bounds: &Bounds<'_>,
    visit: &mut dyn FnMut(&str, &std::fs::Metadata) -> bool,
) -> Result<bool, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(err) => return Err(io_error("list", dir)(err)),
    };
    let mut found: Vec<(String, PathBuf, bool)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let path = entry.path();
        let Some(key) = path.strip_prefix(root).ok().and_then(Path::to_str) else {
            continue;
        };
        // The type as the directory listing gives it (no stat, where the filesystem says), and
        // never a link's target: a listing shows what is on the mount, nothing it points at.
        // An entry gone since the directory was read is simply not listed.
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(io_error("stat", &path)(err)),
        };
        if kind.is_dir() {
            found.push((format!("{key}/"), path, true));
        } else if kind.is_file() {
            found.push((key.to_owned(), path, false));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, path, is_dir) in found {
        if bounds.past(&key) {
            return Ok(false);
        }
        let go_on = if is_dir {
            !bounds.may_hold(&key) || walk_in_key_order(root, &path, bounds, visit)?
        } else if !bounds.wants(&key) {
            true
        } else {
            // Only the files a page lists are stat'ed, for their size and time.
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => visit(&key, &meta),
                Ok(_) => true,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => true,
                Err(err) => return Err(io_error("stat", &path)(err)),
            }
        };
        if !go_on {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_has_a_temporary_file_of_its_own() {
        let name = OsStr::new("a.core");
        let (first, second) = (temporary_name(name), temporary_name(name));
        assert_ne!(first, second);
        for temporary in [first, second] {
            let key = format!("corefiles/ns/pod/{}", temporary.to_string_lossy());
            assert!(is_temporary(&key), "{key}");
        }
    }

    #[tokio::test]
    async fn a_mount_path_on_a_local_disk_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let Some(filesystem) = local_filesystem(dir.path()).unwrap() else {
            eprintln!("the temporary directory is on a shared filesystem here; nothing to refuse");
            return;
        };
        let config = |allow: bool| StorageConfig {
            protocol: coredog_core::config::Protocol::Cfs,
            cfs_mount_path: Some(dir.path().display().to_string()),
            cfs_allow_local_disk: allow,
            ..StorageConfig::default()
        };
        let refusing = CfsStore::from_config(&config(false)).unwrap();
        let err = refusing
            .put_bytes("corefiles/ns/pod/a.core", b"core")
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(filesystem) && message.contains("CFSAllowLocalDisk"),
            "{message}"
        );
        // Nothing was created on the local disk in the share's place.
        assert!(names_in(dir.path()).is_empty());
        assert!(refusing.list_page("corefiles/", None).await.is_err());

        let allowing = CfsStore::from_config(&config(true)).unwrap();
        allowing
            .put_bytes("corefiles/ns/pod/a.core", b"core")
            .await
            .unwrap();
        let listed = allowing.list_page("corefiles/", None).await.unwrap();
        assert_eq!(listed.objects.len(), 1);
    }

    /// The names in `dir`.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_stored_core_is_not_readable_by_everyone_on_the_share() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = CfsStore::on_local_disk(dir.path());
        store
            .put_bytes("corefiles/ns/pod/app/a.core", b"secrets")
            .await
            .unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let core = dir.path().join("corefiles/ns/pod/app/a.core");
        // The umask may take bits away, never add them.
        assert_eq!(mode(&core) & !FILE_MODE, 0, "{:o}", mode(&core));
        for made in [
            "corefiles",
            "corefiles/ns",
            "corefiles/ns/pod",
            "corefiles/ns/pod/app",
        ] {
            let made = dir.path().join(made);
            assert_eq!(
                mode(&made) & !DIRECTORY_MODE,
                0,
                "{made:?}: {:o}",
                mode(&made)
            );
        }
    }

    #[tokio::test]
    async fn links_planted_on_the_share_are_not_followed() {
        use std::os::unix::fs::symlink;
        let share = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("a.core"), b"not a dump").unwrap();
        let store = CfsStore::on_local_disk(share.path());
        // A reader of the share points a namespace's directory somewhere else on the node...
        std::fs::create_dir(share.path().join("corefiles")).unwrap();
        symlink(elsewhere.path(), share.path().join("corefiles/ns")).unwrap();

        let err = store
            .put_bytes("corefiles/ns/pod/a.core", b"core")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("links on the share are not followed"),
            "{err}"
        );
        assert_eq!(names_in(elsewhere.path()), ["a.core"]);
        assert!(store.head("corefiles/ns/a.core").await.is_err());
        assert!(store.get_bytes("corefiles/ns/a.core").await.is_err());
        let (to, _pieces) = tokio::sync::mpsc::channel(4);
        assert!(
            store
                .read_range("corefiles/ns/a.core", 0, 3, &to)
                .await
                .is_err()
        );
        assert!(store.list_page("corefiles/ns/", None).await.is_err());
        assert!(
            store
                .list_page("corefiles/", None)
                .await
                .unwrap()
                .objects
                .is_empty()
        );

        // ... or a file's name at a file elsewhere: not read, and not written through.
        std::fs::create_dir_all(share.path().join("corefiles/other/pod")).unwrap();
        let planted = share.path().join("corefiles/other/pod/a.core");
        symlink(elsewhere.path().join("a.core"), &planted).unwrap();
        assert_eq!(
            store.head("corefiles/other/pod/a.core").await.unwrap(),
            None
        );
        assert!(matches!(
            store.get_bytes("corefiles/other/pod/a.core").await,
            Err(StoreError::NotFound(_))
        ));
        store
            .put_bytes("corefiles/other/pod/a.core", b"core")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(elsewhere.path().join("a.core")).unwrap(),
            b"not a dump"
        );
        assert!(!std::fs::symlink_metadata(&planted).unwrap().is_symlink());
        assert_eq!(std::fs::read(&planted).unwrap(), b"core");

        // A temporary file's name planted as a link to a file elsewhere is neither opened nor
        // removed by the sweep of abandoned writes.
        let pod = share.path().join("corefiles/other/pod");
        symlink(
            elsewhere.path().join("a.core"),
            pod.join(".a.core.tmp-1-abc-0"),
        )
        .unwrap();
        store
            .put_bytes("corefiles/other/pod/a.core", b"core 2")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(elsewhere.path().join("a.core")).unwrap(),
            b"not a dump"
        );
        assert_eq!(names_in(&pod), [".a.core.tmp-1-abc-0", "a.core"]);

        // Nor is a FIFO opened, under a dump's name or a temporary one.
        for name in ["b.core", ".a.core.tmp-2-abc-0"] {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                pod.join(name),
                rustix::fs::FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
        }
        assert_eq!(
            store.head("corefiles/other/pod/b.core").await.unwrap(),
            None
        );
        store
            .put_bytes("corefiles/other/pod/a.core", b"core 3")
            .await
            .unwrap();
        assert_eq!(
            names_in(&pod),
            [
                ".a.core.tmp-1-abc-0",
                ".a.core.tmp-2-abc-0",
                "a.core",
                "b.core"
            ]
        );
    }

    #[tokio::test]
    async fn a_dropped_write_takes_its_temporary_file_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = CfsStore::on_local_disk(dir.path());
        let (sender, receiver) = part_channel();
        sender.send(b"half a core".to_vec()).await.unwrap();
        // The rest never comes: the watcher stops, dropping the upload.
        let upload = store.upload("corefiles/ns/pod/a.core", receiver);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), upload)
                .await
                .is_err()
        );
        // Removed off the async threads, a moment later.
        let pod = dir.path().join("corefiles/ns/pod");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !names_in(&pod).is_empty() {
            assert!(std::time::Instant::now() < deadline, "{:?}", names_in(&pod));
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        drop(sender);
    }

    #[tokio::test]
    async fn a_write_removes_the_abandoned_temporary_files_of_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("corefiles/ns/pod");
        std::fs::create_dir_all(&pod).unwrap();
        // Left by writers killed a moment ago: nobody holds them.
        for name in [".a.core.tmp-1-abc-0", ".b.core.tmp-1-abc-0"] {
            std::fs::write(pod.join(name), b"half").unwrap();
        }
        // Another watcher's write of the same key, in progress: it holds its file's lock.
        let live = std::fs::File::create(pod.join(".a.core.tmp-7-def-0")).unwrap();
        live.try_lock().unwrap();

        let store = CfsStore::on_local_disk(dir.path());
        let upload = async |key: &str| {
            let (sender, receiver) = part_channel();
            sender.send(b"core".to_vec()).await.unwrap();
            sender.finish();
            store.upload(key, receiver).await.unwrap();
        };
        upload("corefiles/ns/pod/a.core").await;
        assert_eq!(
            names_in(&pod),
            [".a.core.tmp-7-def-0", ".b.core.tmp-1-abc-0", "a.core"]
        );
        // Once that writer is gone, the next write of the key takes its file away.
        drop(live);
        upload("corefiles/ns/pod/a.core").await;
        assert_eq!(names_in(&pod), [".b.core.tmp-1-abc-0", "a.core"]);
        // A record's write sweeps too; an id index entry's does not list the index.
        std::fs::write(pod.join(".a.core.json.tmp-1-abc-0"), b"half").unwrap();
        store
            .put_bytes("corefiles/ns/pod/a.core.json", b"{}")
            .await
            .unwrap();
        assert_eq!(
            names_in(&pod),
            [".b.core.tmp-1-abc-0", "a.core", "a.core.json"]
        );
        let index = dir.path().join("corefiles/.ids");
        std::fs::create_dir_all(&index).unwrap();
        std::fs::write(index.join(".a.id.tmp-1-abc-0"), b"").unwrap();
        store.put_bytes("corefiles/.ids/a.id", b"").await.unwrap();
        assert_eq!(names_in(&index), [".a.id.tmp-1-abc-0", "a.id"]);
    }

    #[tokio::test]
    async fn objects_are_written_atomically_listed_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = CfsStore::on_local_disk(dir.path());
        let (sender, receiver) = part_channel();
        let writer = tokio::spawn(async move {
            for part in [b"hello ".to_vec(), b"world".to_vec()] {
                sender.send(part).await.unwrap();
            }
            sender.finish();
        });
        let size = store
            .upload("corefiles/ns/pod/a.core", receiver)
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(size, 11);
        store
            .put_bytes("corefiles/ns/pod/a.core.json", b"{}")
            .await
            .unwrap();
        store
            .put_bytes("corefiles/ns/other/b.core", b"x")
            .await
            .unwrap();

        let page = store.list_page("corefiles/ns/pod/", None).await.unwrap();
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            ["corefiles/ns/pod/a.core", "corefiles/ns/pod/a.core.json"]
        );
        assert_eq!(
            store
                .list_page("corefiles/", None)
                .await
                .unwrap()
                .objects
                .len(),
            3
        );
        assert_eq!(
            store.get_bytes("corefiles/ns/pod/a.core").await.unwrap(),
            b"hello world"
        );
        assert_eq!(
            &store
                .get_range("corefiles/ns/pod/a.core", 6, 10)
                .await
                .unwrap()[..],
            b"world"
        );
        assert_eq!(
            store
                .head("corefiles/ns/pod/a.core")
                .await
                .unwrap()
                .unwrap()
                .size,
            11
        );
        assert_eq!(store.head("corefiles/none").await.unwrap(), None);
        assert!(matches!(
            store.get_bytes("corefiles/none").await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store.path_of("../etc/passwd").is_err());
        assert!(store.path_of("/etc/passwd").is_err());
    }

    #[tokio::test]
    async fn a_failed_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CfsStore::on_local_disk(dir.path());
        std::fs::write(
            dir.path().join("blocker"),
            b"a file where a directory should be",
        )
        .unwrap();
        let (sender, receiver) = part_channel();
        sender.finish();
        assert!(store.upload("blocker/x.core", receiver).await.is_err());
        let (sender, receiver) = part_channel();
        let abandoned = tokio::spawn(async move {
            sender.send(b"half a core".to_vec()).await.unwrap();
        });
        assert!(matches!(
            store.upload("ok/x.core", receiver).await,
            Err(StoreError::Source { .. })
        ));
        abandoned.await.unwrap();
        let page = store.list_page("", None).await.unwrap();
        assert_eq!(page.objects.len(), 1);
    }

    #[tokio::test]
    async fn listings_come_in_key_order_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = CfsStore::on_local_disk(dir.path());
        // Names whose characters sort before '/' put a directory's files among its siblings'.
        let mut keys = Vec::new();
        for pod in ["web", "web-1", "web.2", "api"] {
            for index in 0..700 {
                keys.push(format!("corefiles/shop/{pod}/{index:04}.core"));
            }
        }
        keys.push("corefiles/shop/web.core".to_owned());
        keys.push("corefiles/other/x.core".to_owned());
        for key in &keys {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        for prefix in ["corefiles/", "corefiles/shop/we", "corefiles/shop/web/"] {
            let mut expected: Vec<&String> =
                keys.iter().filter(|key| key.starts_with(prefix)).collect();
            expected.sort();
            let mut listed = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let page = store.list_page(prefix, next.as_deref()).await.unwrap();
                assert!(page.objects.len() <= PAGE_SIZE);
                listed.extend(page.objects.into_iter().map(|object| object.key));
                next = page.next;
                if next.is_none() {
                    break;
                }
            }
            assert_eq!(listed.iter().collect::<Vec<_>>(), expected, "{prefix}");
        }
    }

    #[tokio::test]
    async fn listings_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = CfsStore::on_local_disk(dir.path());
        for index in 0..(PAGE_SIZE + 5) {
            let path = dir.path().join(format!("p/{index:05}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        let first = store.list_page("p/", None).await.unwrap();
        assert_eq!(first.objects.len(), PAGE_SIZE);
        let second = store.list_page("p/", first.next.as_deref()).await.unwrap();
        assert_eq!(second.objects.len(), 5);
        assert_eq!(second.next, None);
    }
}
