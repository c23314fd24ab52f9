//! Finding files at the dump depth of `<root>/<namespace>/<pod>/<container>/<file>`.
//!
//! The kernel writes a core as the crashing process's user, and the kubelet makes a container's
//! directory root's, `0755`: a container running as any other user would crash without a core.
//! So every container directory found is made writable to every user, sticky as `/tmp` is
//! (`1777`): with inotify, within milliseconds of the kubelet making it, which is normally well
//! before the runtime has started the container's process (a race, not a guarantee); without a
//! watch on its pod directory, at the next rescan.
//!
//! inotify watches every directory down to the container depth, including directories created
//! later. A file is complete when the kernel closes it (`IN_CLOSE_WRITE`), which is how a core
//! dump ends; a file found any other way (the sweep at start, a periodic rescan, the rescan
//! after an inotify queue overflow, a file moved in) is reported as swept and taken only once
//! it stops changing. Watches never follow symlinks and never go below the container depth, so
//! a tenant cannot point the watcher at the rest of the node.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use coredog_core::layout::{CONTAINER_DEPTH, DUMP_DEPTH, depth};
use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How a file was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The writer closed it: complete now.
    Closed(PathBuf),
    /// Seen by a scan: complete once its size and mtime stop changing.
    Swept(PathBuf),
}

impl Found {
    pub fn relative(&self) -> &Path {
        match self {
            Self::Closed(path) | Self::Swept(path) => path,
        }
    }
}

/// Watches `root` and sends what it finds (paths relative to `root`) until `found` closes.
pub struct Discovery {
    root: PathBuf,
    rescan_every: Duration,
}

impl Discovery {
    pub fn new(root: impl Into<PathBuf>, rescan_every: Duration) -> Self {
        Self {
            root: root.into(),
            rescan_every,
        }
    }

    /// Without inotify (the node's `fs.inotify.max_user_instances` used up by other agents)
    /// cores are found by the periodic rescan alone: late rather than never.
    pub async fn run(self, found: mpsc::Sender<Found>) -> std::io::Result<()> {
        let inotify = match Inotify::init() {
            Ok(inotify) => inotify,
            Err(err) => {
                warn!(error = %err, every_s = self.rescan_every.as_secs(), "cannot use inotify (raise fs.inotify.max_user_instances); finding cores by the periodic rescan only");
                let mut tree = Tree::unwatched(self.root.clone());
                let mut rescan = tokio::time::interval(self.rescan_every);
                loop {
                    tokio::select! {
                        _ = rescan.tick() => tree.scan(Path::new(""), &found).await,
                        () = found.closed() => return Ok(()),
                    }
                }
            }
        };
        let mut tree = Tree {
            root: self.root.clone(),
            inotify_watches: Some(inotify.watches()),
            dirs: HashMap::new(),
            unwatched: HashSet::new(),
        };
        let mut events = inotify.into_event_stream(vec![0u8; 64 * 1024])?;
        // Watches first, then the sweep: a file written between the two is seen by both, never by
        // neither.
        tree.scan(Path::new(""), &found).await;
        info!(root = %self.root.display(), directories = tree.dirs.len(), "watching for core files");
        let mut rescan = tokio::time::interval(self.rescan_every);
        rescan.tick().await;
        loop {
            tokio::select! {
                event = events.next() => {
                    let Some(event) = event else { return Ok(()) };
                    let event = match event {
                        Ok(event) => event,
                        Err(err) => {
                            warn!(error = %err, "reading inotify events failed; rescanning");
                            tree.scan(Path::new(""), &found).await;
                            continue;
                        }
                    };
                    if event.mask.contains(EventMask::Q_OVERFLOW) {
                        warn!("inotify queue overflowed; rescanning the whole tree");
                        tree.scan(Path::new(""), &found).await;
                        continue;
                    }
                    if event.mask.contains(EventMask::IGNORED) {
                        tree.dirs.remove(&event.wd);
                        continue;
                    }
                    let Some(dir) = tree.dirs.get(&event.wd).cloned() else { continue };
                    let Some(name) = event.name else { continue };
                    let relative = dir.join(name);
                    let Some(at) = depth(&relative) else { continue };
                    if event.mask.contains(EventMask::ISDIR) {
                        if at <= CONTAINER_DEPTH {
                            tree.scan(&relative, &found).await;
                        }
                    } else if at <= DUMP_DEPTH {
                        let report = if event.mask.contains(EventMask::CLOSE_WRITE) && at == DUMP_DEPTH {
                            Found::Closed(relative)
                        } else {
                            Found::Swept(relative)
                        };
                        if found.send(report).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                _ = rescan.tick() => {
                    debug!("periodic rescan");
                    tree.scan(Path::new(""), &found).await;
                }
                () = found.closed() => return Ok(()),
            }
        }
    }
}

struct Tree {
    root: PathBuf,
    /// `None` without inotify: every directory is listed, none watched.
    inotify_watches: Option<inotify::Watches>,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    /// Directories listed without a watch (the watch limit was reached), said once each.
    unwatched: HashSet<PathBuf>,
}

/// Whether adding a watch failed for want of watches (`fs.inotify.max_user_watches`, shared by
/// every process of the user on the node) or kernel memory, not because of the directory.
fn out_of_watches(err: &std::io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(err),
        Some(rustix::io::Errno::NOSPC | rustix::io::Errno::NOMEM)
    )
}

impl Tree {
    fn unwatched(root: PathBuf) -> Self {
        Self {
            root,
            inotify_watches: None,
            dirs: HashMap::new(),
            unwatched: HashSet::new(),
        }
    }

    /// Watches `relative` and every directory below it down to the container depth, and reports
    /// every file at the dump depth.
    async fn scan(&mut self, relative: &Path, found: &mpsc::Sender<Found>) {
        let mut pending = vec![relative.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Some(at) = depth(&dir) else { continue };
            let full = self.root.join(&dir);
            let mask = if at == CONTAINER_DEPTH {
                WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE
            } else {
                WatchMask::CREATE | WatchMask::MOVED_TO
            } | WatchMask::DONT_FOLLOW
                | WatchMask::ONLYDIR;
            // Without inotify every directory is listed at every rescan, as said at the start.
            if let Some(watches) = &mut self.inotify_watches {
                match watches.add(&full, mask) {
                    Ok(wd) => {
                        self.dirs.insert(wd, dir.clone());
                        self.unwatched.remove(&dir);
                    }
                    // Listed all the same, now and at every rescan: its cores are found late
                    // rather than never.
                    Err(err) if out_of_watches(&err) => {
                        if self.unwatched.insert(dir.clone()) {
                            warn!(dir = %full.display(), error = %err, "cannot watch a dump directory: the node is out of inotify watches (raise fs.inotify.max_user_watches); its cores are found by the periodic rescan only");
                        }
                    }
                    Err(err) => {
                        debug!(dir = %full.display(), error = %err, "cannot watch");
                        continue;
                    }
                }
            }
            if at == CONTAINER_DEPTH {
                match open_to_every_user(&full) {
                    Ok(true) => {
                        debug!(dir = %full.display(), "container dump directory opened to every user")
                    }
                    Ok(false) => {}
                    Err(err) => {
                        warn!(dir = %full.display(), error = %err, "cannot let every user of the container write its dump directory; a process that does not run as root cannot dump core there")
                    }
                }
            }
            let entries = match std::fs::read_dir(&full) {
                Ok(entries) => entries,
                Err(err) => {
                    debug!(dir = %full.display(), error = %err, "cannot list");
                    continue;
                }
            };
            for entry in entries.flatten() {
                // `file_type` does not follow symlinks: a linked directory is not entered.
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let child = dir.join(entry.file_name());
                if kind.is_dir() && at < CONTAINER_DEPTH {
                    pending.push(child);
                } else if !kind.is_dir() && found.send(Found::Swept(child)).await.is_err() {
                    // Files above the dump depth are reported too: the shipper refuses them, once,
                    // with the reason.
                    return;
                }
            }
        }
    }
}

/// The mode of a container's dump directory (see the module's docs).
pub const CONTAINER_DIR_MODE: u32 = 0o1777;

/// Gives `dir` [`CONTAINER_DIR_MODE`] unless it has it; whether it had to. A symlink is not
/// followed.
fn open_to_every_user(dir: &Path) -> std::io::Result<bool> {
    use rustix::fs::{Mode, OFlags};
    let handle = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if rustix::fs::fstat(&handle)?.st_mode & 0o7777 == CONTAINER_DIR_MODE {
        return Ok(false);
    }
    rustix::fs::fchmod(&handle, Mode::from_raw_mode(CONTAINER_DIR_MODE))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without inotify, a scan still reports every file at the dump depth.
    #[tokio::test]
    async fn a_scan_without_inotify_finds_the_cores() {
        let root = tempfile::tempdir().unwrap();
        let container = root.path().join("ns/pod/app");
        std::fs::create_dir_all(&container).unwrap();
        std::fs::write(container.join("core"), b"core").unwrap();
        let (found, mut reports) = mpsc::channel(16);
        let mut tree = Tree::unwatched(root.path().to_path_buf());
        tree.scan(Path::new(""), &found).await;
        drop(found);
        assert_eq!(
            reports.recv().await,
            Some(Found::Swept(PathBuf::from("ns/pod/app/core")))
        );
        assert_eq!(reports.recv().await, None);
    }

    #[tokio::test]
    async fn container_directories_are_opened_to_every_user_and_links_left_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let pod = root.path().join("ns/pod");
        // As the kubelet makes them: root's, 0755.
        let kubelet_makes = |dir: &Path| {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        kubelet_makes(&pod);
        kubelet_makes(&pod.join("app"));
        kubelet_makes(outside.path());
        std::os::unix::fs::symlink(outside.path(), pod.join("linked")).unwrap();
        let mode = |dir: &Path| std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
        let becomes_open = |dir: PathBuf| async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while mode(&dir) != CONTAINER_DIR_MODE {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{dir:?}: {:o}",
                    mode(&dir)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };

        let (found, reports) = mpsc::channel(16);
        let discovery =
            tokio::spawn(Discovery::new(root.path(), Duration::from_secs(3600)).run(found));
        becomes_open(pod.join("app")).await;
        // A container started after the watcher.
        kubelet_makes(&pod.join("worker"));
        becomes_open(pod.join("worker")).await;
        assert_eq!(mode(outside.path()), 0o755);
        assert_eq!(mode(&pod), 0o755);
        // Asked to open a link to a directory, it refuses rather than follow it.
        assert!(open_to_every_user(&pod.join("linked")).is_err());
        assert_eq!(mode(outside.path()), 0o755);

        drop(reports);
        discovery.await.unwrap().unwrap();
    }

    #[test]
    fn only_a_lack_of_watches_lets_a_directory_be_listed_unwatched() {
        let errno =
            |errno: rustix::io::Errno| std::io::Error::from_raw_os_error(errno.raw_os_error());
        assert!(out_of_watches(&errno(rustix::io::Errno::NOSPC)));
        assert!(out_of_watches(&errno(rustix::io::Errno::NOMEM)));
        // A symlink or a file where a directory was (ONLYDIR | DONT_FOLLOW), or one gone.
        assert!(!out_of_watches(&errno(rustix::io::Errno::NOTDIR)));
        assert!(!out_of_watches(&errno(rustix::io::Errno::NOENT)));
        assert!(!out_of_watches(&errno(rustix::io::Errno::ACCESS)));
    }
}
