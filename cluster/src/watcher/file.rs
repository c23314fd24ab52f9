//! Opening a tenant's file without letting the tenant choose what the watcher opens.
//!
//! The watcher runs privileged and every pod controls the contents of its own dump directory,
//! so a "core" may be a symlink to `/etc/shadow` or the watcher's own token, a FIFO that would
//! block a read forever, a device node, or a hard link. Each path component is opened relative
//! to the previous one without following symlinks; the file itself is first opened `O_PATH`
//! (which opens nothing for I/O) so its type can be checked before it is ever read, then
//! reopened for reading through `/proc/self/fd`, which names that exact inode rather than a path
//! the tenant could swap. Deletion goes through the directory handle and checks that the name
//! still refers to the same inode, unchanged since it was read.
//!
//! A file found by a scan rather than by its close may still be being written: the kernel can
//! pause a core for seconds (walking a large sparse mapping) without changing its size or mtime.
//! [`OpenedFile::being_written`] asks the kernel whether anything holds it open for writing.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use thiserror::Error;

/// Why a file is not read.
#[derive(Debug, Error)]
pub enum Refusal {
    #[error("it is a symbolic link, or sits below one")]
    Symlink,
    #[error("it is not a regular file ({0})")]
    NotRegular(&'static str),
    #[error("it has {0} hard links")]
    HardLinked(u64),
    #[error("it is gone")]
    Gone,
    #[error("it was written to since it was read")]
    Changed,
    #[error("{0}")]
    Io(std::io::Error),
}

impl Refusal {
    /// Label for `coredog_watcher_files_refused_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Symlink => "symlink",
            Self::NotRegular(_) => "not_regular",
            Self::HardLinked(_) => "hard_link",
            Self::Gone => "gone",
            Self::Changed => "changed",
            Self::Io(_) => "io",
        }
    }
}

fn refusal(err: rustix::io::Errno) -> Refusal {
    match err {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => Refusal::Symlink,
        rustix::io::Errno::NOENT => Refusal::Gone,
        other => Refusal::Io(other.into()),
    }
}

/// A file's identity and state when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_nanos: i128,
}

impl Identity {
    fn of(stat: &Stat) -> Self {
        Self {
            device: stat.st_dev,
            inode: stat.st_ino,
            size: u64::try_from(stat.st_size).unwrap_or_default(),
            mtime_nanos: i128::from(stat.st_mtime) * 1_000_000_000 + i128::from(stat.st_mtime_nsec),
        }
    }

    /// Same inode, same size, same mtime: nobody wrote to it in between.
    pub fn unchanged(&self, other: &Self) -> bool {
        self == other
    }
}

/// A regular file opened for reading below the watched root.
#[derive(Debug)]
pub struct OpenedFile {
    pub file: File,
    pub identity: Identity,
    dir: OwnedFd,
    name: OsString,
}

fn kind(stat: &Stat) -> FileType {
    FileType::from_raw_mode(stat.st_mode)
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "unknown",
    }
}

/// Opens `relative` (plain components only) below `root` for reading, refusing anything that
/// is not a regular file with a single link.
pub fn open_beneath(root: &Path, relative: &Path) -> Result<OpenedFile, Refusal> {
    let components: Vec<&OsStr> = relative
        .components()
        .map(|component| match component {
            Component::Normal(part) => Ok(part),
            _ => Err(Refusal::Symlink),
        })
        .collect::<Result<_, _>>()?;
    let Some((name, dirs)) = components.split_last() else {
        return Err(Refusal::NotRegular("directory"));
    };
    let directory = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, directory, Mode::empty()).map_err(refusal)?;
    for part in dirs {
        dir = rustix::fs::openat(&dir, *part, directory, Mode::empty()).map_err(refusal)?;
    }
    let handle = rustix::fs::openat(
        &dir,
        *name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(refusal)?;
    let stat = rustix::fs::fstat(&handle).map_err(refusal)?;
    match kind(&stat) {
        FileType::RegularFile => {}
        FileType::Symlink => return Err(Refusal::Symlink),
        other => return Err(Refusal::NotRegular(kind_name(other))),
    }
    if stat.st_nlink != 1 {
        return Err(Refusal::HardLinked(stat.st_nlink));
    }
    let reopen = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&handle));
    let readable = rustix::fs::open(
        reopen.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(refusal)?;
    let reopened = rustix::fs::fstat(&readable).map_err(refusal)?;
    if (reopened.st_dev, reopened.st_ino) != (stat.st_dev, stat.st_ino)
        || kind(&reopened) != FileType::RegularFile
    {
        return Err(Refusal::Gone);
    }
    Ok(OpenedFile {
        file: File::from(readable),
        identity: Identity::of(&reopened),
        dir,
        name: name.to_os_string(),
    })
}

impl OpenedFile {
    /// The file's identity now (size and mtime change while something writes to it).
    pub fn current(&self) -> Result<Identity, Refusal> {
        rustix::fs::fstat(&self.file)
            .map(|stat| Identity::of(&stat))
            .map_err(refusal)
    }

    /// Whether a process holds the file open for writing, as the kernel does while it writes a
    /// core: a read lease is refused then (`EAGAIN`). Taken and given back at once. `None`
    /// when the kernel cannot tell: no `CAP_LEASE` for another user's file, or a filesystem
    /// without leases (NFS); the file's settling is all there is to go by then.
    ///
    /// A writer opening the file in the instant the lease is held breaks it with `SIGIO` to
    /// this process, whose default action is to end it: the watcher handles `SIGIO` from start.
    pub fn being_written(&self) -> Option<bool> {
        use std::os::fd::AsRawFd as _;
        let fd = self.file.as_raw_fd();
        // SAFETY: `fd` is this file's open descriptor, and F_SETLEASE reads only its integer
        // argument.
        let taken = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) };
        if taken != 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => Some(true),
                _ => None,
            };
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) } != 0 {
            // Held until the file is closed, a writer opening it would wait for the kernel's
            // lease-break time: worth saying.
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot give back the lease on a core; writers opening it wait until it is shipped"
            );
        }
        Some(false)
    }

    /// Removes the file, if its name still refers to the file that was opened.
    pub fn remove(&self) -> Result<(), Refusal> {
        self.check_name()?;
        rustix::fs::unlinkat(&self.dir, self.name.as_os_str(), AtFlags::empty()).map_err(refusal)
    }

    /// Empties the file but keeps its name (`gc_type: truncate`).
    pub fn truncate(&self) -> Result<(), Refusal> {
        self.check_name()?;
        let reopen = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.file)
        );
        let writable = rustix::fs::open(
            reopen.as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(refusal)?;
        rustix::fs::ftruncate(&writable, 0).map_err(refusal)
    }

    fn check_name(&self) -> Result<(), Refusal> {
        let now = rustix::fs::statat(&self.dir, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(refusal)?;
        if (now.st_dev, now.st_ino) != (self.identity.device, self.identity.inode) {
            return Err(Refusal::Gone);
        }
        // Still written to after it was read (and stored): what it holds now is not stored.
        if !self.current()?.unchanged(&self.identity) {
            return Err(Refusal::Changed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("ns/pod/app")).unwrap();
        root
    }

    #[test]
    fn regular_files_open_and_are_removed_by_identity() {
        let root = tree();
        std::fs::write(root.path().join("ns/pod/app/core.1"), b"core").unwrap();
        let opened = open_beneath(root.path(), Path::new("ns/pod/app/core.1")).unwrap();
        assert_eq!(opened.identity.size, 4);
        opened.remove().unwrap();
        assert!(!root.path().join("ns/pod/app/core.1").exists());
    }

    #[test]
    fn a_file_open_for_writing_is_being_written() {
        let root = tree();
        let path = root.path().join("ns/pod/app/core.1");
        let writer = std::fs::File::create(&path).unwrap();
        let opened = open_beneath(root.path(), Path::new("ns/pod/app/core.1")).unwrap();
        assert_eq!(opened.being_written(), Some(true));
        drop(writer);
        assert_eq!(opened.being_written(), Some(false));
        // The probe gave its lease back: a writer may open the file again at once.
        drop(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap(),
        );
    }

    #[test]
    fn a_file_written_to_after_it_was_read_is_not_removed() {
        use std::io::Write as _;
        let root = tree();
        let path = root.path().join("ns/pod/app/core.1");
        std::fs::write(&path, b"core").unwrap();
        let opened = open_beneath(root.path(), Path::new("ns/pod/app/core.1")).unwrap();
        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writer.write_all(b" and more").unwrap();
        drop(writer);
        assert!(matches!(opened.remove(), Err(Refusal::Changed)));
        assert!(matches!(opened.truncate(), Err(Refusal::Changed)));
        assert_eq!(std::fs::read(&path).unwrap(), b"core and more");
    }

    #[test]
    fn a_swapped_name_is_not_removed() {
        let root = tree();
        let path = root.path().join("ns/pod/app/core.1");
        std::fs::write(&path, b"core").unwrap();
        let opened = open_beneath(root.path(), Path::new("ns/pod/app/core.1")).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"another file").unwrap();
        assert!(matches!(opened.remove(), Err(Refusal::Gone)));
        assert!(path.exists());
    }

    #[test]
    fn symlinks_fifos_devices_and_hard_links_are_refused() {
        let root = tree();
        let dir = root.path().join("ns/pod/app");
        symlink("/etc/shadow", dir.join("shadow")).unwrap();
        symlink("/etc", dir.join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::write(dir.join("a"), b"x").unwrap();
        std::fs::hard_link(dir.join("a"), dir.join("b")).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();

        let open = |name: &str| open_beneath(root.path(), &Path::new("ns/pod/app").join(name));
        assert!(matches!(open("shadow"), Err(Refusal::Symlink)));
        assert!(matches!(open("etc/passwd"), Err(Refusal::Symlink)));
        assert!(matches!(open("fifo"), Err(Refusal::NotRegular("fifo"))));
        assert!(matches!(open("a"), Err(Refusal::HardLinked(2))));
        assert!(matches!(open("sub"), Err(Refusal::NotRegular("directory"))));
        assert!(matches!(open("missing"), Err(Refusal::Gone)));
        if rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(1, 3),
        )
        .is_ok()
        {
            assert!(matches!(
                open("null"),
                Err(Refusal::NotRegular("character device"))
            ));
        }

        // A symlinked directory higher up is refused as well.
        std::fs::create_dir_all(root.path().join("real/pod/app")).unwrap();
        std::fs::write(root.path().join("real/pod/app/core"), b"x").unwrap();
        symlink(root.path().join("real"), root.path().join("link")).unwrap();
        assert!(matches!(
            open_beneath(root.path(), Path::new("link/pod/app/core")),
            Err(Refusal::Symlink)
        ));
    }

    #[test]
    fn truncation_keeps_the_name() {
        let root = tree();
        let path = root.path().join("ns/pod/app/core.1");
        std::fs::write(&path, b"core bytes").unwrap();
        let opened = open_beneath(root.path(), Path::new("ns/pod/app/core.1")).unwrap();
        opened.truncate().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
