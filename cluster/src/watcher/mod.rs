//! The node watcher: every core found, shipped compressed and verified, deleted only when safe,
//! announced once.
//!
//! Data flows one way: [`discover`] finds files → this module decides when each is ready and
//! runs at most `uploadConcurrency` [`ship`] tasks → the store → notices. A file that fails to
//! ship stays on disk and is retried with backoff; a file that is refused (not a core, not a
//! regular file, wrong place) is logged once and never touched.

pub mod discover;
pub mod elf;
pub mod file;
pub mod housekeeping;
pub mod kube;
pub mod pods;
pub mod ship;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::notify::Notifier;
use discover::Found;
use file::Identity;
use ship::{LocalFile, ShipError, Shipped, Shipper};

type Labels = [(&'static str, &'static str); 1];

/// The watcher's Prometheus metrics (`coredog_watcher_*`).
#[derive(Clone)]
pub struct WatcherMetrics {
    detected: Counter,
    uploaded: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    upload_duration: Histogram,
    failures: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    backlog_files: Gauge,
    backlog_bytes: Gauge,
}

impl WatcherMetrics {
    /// Cores on this node not yet stored, and their bytes.
    pub fn backlog(&self) -> (u64, u64) {
        let files = u64::try_from(self.backlog_files.get()).unwrap_or_default();
        let bytes = u64::try_from(self.backlog_bytes.get()).unwrap_or_default();
        (files, bytes)
    }

    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            detected: Counter::default(),
            uploaded: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            upload_duration: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            failures: Family::default(),
            refused: Family::default(),
            backlog_files: Gauge::default(),
            backlog_bytes: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("coredog_watcher");
        registry.register(
            "cores_detected",
            "Files found that may be cores",
            metrics.detected.clone(),
        );
        registry.register(
            "cores_uploaded",
            "Cores stored with their record",
            metrics.uploaded.clone(),
        );
        registry.register("bytes_in", "Bytes of cores read", metrics.bytes_in.clone());
        registry.register(
            "bytes_out",
            "Bytes stored (after compression)",
            metrics.bytes_out.clone(),
        );
        registry.register(
            "upload_duration_seconds",
            "From taking a core to its record being stored",
            metrics.upload_duration.clone(),
        );
        registry.register(
            "upload_failures",
            "Failed shipping attempts by reason",
            metrics.failures.clone(),
        );
        registry.register(
            "files_refused",
            "Files never read, by reason",
            metrics.refused.clone(),
        );
        registry.register(
            "backlog_files",
            "Cores on this node not yet stored",
            metrics.backlog_files.clone(),
        );
        registry.register(
            "backlog_bytes",
            "Bytes of cores not yet stored",
            metrics.backlog_bytes.clone(),
        );
        metrics
    }
}

/// How long a stopping watcher lets its uploads in flight finish, unless told otherwise: a
/// pod's default grace period (60 s in the chart) less the time the last notices take.
pub const DEFAULT_SHUTDOWN_DRAIN_SECONDS: u64 = 45;

/// How the watcher paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub upload_concurrency: usize,
    /// A swept file must keep its size and mtime this long before it is taken.
    pub settle: Duration,
    /// First retry after a failure; doubles up to `max_retry`.
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// A file failing this long is announced.
    pub failure_notice_after: Duration,
    /// At shutdown, how long the uploads in flight may take to finish (and be announced).
    pub shutdown_drain: Duration,
}

impl Pacing {
    pub fn from_config(config: &coredog_core::config::Config) -> Self {
        Self {
            upload_concurrency: config.watcher.upload_concurrency.max(1) as usize,
            settle: Duration::from_secs(2),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(300),
            failure_notice_after: Duration::from_secs(u64::from(
                config.watcher.failure_notice_after_seconds,
            )),
            shutdown_drain: Duration::from_secs(DEFAULT_SHUTDOWN_DRAIN_SECONDS),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime_nanos: i128,
    inode: u64,
    regular: bool,
}

impl Seen {
    /// An empty regular file holds no core (special files are refused, not passed over).
    fn is_empty_file(&self) -> bool {
        self.regular && self.size == 0
    }
}

fn seen(root: &Path, relative: &Path) -> Option<Seen> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(root.join(relative)).ok()?;
    Some(Seen {
        size: meta.size(),
        mtime_nanos: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        inode: meta.ino(),
        regular: meta.file_type().is_file(),
    })
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Found by a scan; taken once it stops changing.
    Settling {
        since: Instant,
    },
    Queued,
    Shipping,
    Retrying {
        at: Instant,
    },
    /// Stored, and kept on the node (`DeleteLocalCorefile: false`).
    Stored,
    /// Never to be read; logged once.
    Refused,
}

/// A file whose shipping keeps failing.
#[derive(Debug, Clone, Copy)]
struct Failing {
    attempts: u32,
    since: Instant,
    announced: bool,
    /// The file stored, when removing it is what fails (not storing it).
    removing: Option<Identity>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    seen: Seen,
    failing: Option<Failing>,
    /// Refused before, in an earlier form: a tenant rewriting a file that is no core gets
    /// one warning, not one per rewrite.
    refused_before: bool,
}

/// Lets the process survive SIGIO, with which a writer opening a file breaks the lease that
/// asks whether the file is still being written (file.rs); its default action would end the
/// process. Tokio's handler stays for the process's lifetime, and installing it again is
/// harmless: call it before anything can take a lease.
pub fn handle_lease_breaks() {
    if let Err(err) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::io()) {
        warn!(error = %err, "cannot handle SIGIO; files found by a scan are judged by settling only");
    }
}

/// Decides when each found file ships, and runs the shipping tasks.
pub struct Watcher {
    pub shipper: Arc<Shipper>,
    pub notifier: Arc<Notifier>,
    pub metrics: WatcherMetrics,
    pub pacing: Pacing,
    /// Publishes `CoreDumped` events when the API is reachable.
    pub kube: Option<kube::KubeLink>,
}

/// What a task did with a file.
enum Attempt {
    Ship(Box<Result<Shipped, ShipError>>),
    /// Removing a stored file again: `None` when another file has its name now.
    Removal(Result<Option<LocalFile>, ShipError>),
}

type Finished = (PathBuf, Attempt, Duration);

impl Watcher {
    /// Runs until `found` closes or `shutdown` resolves, then gives the uploads in flight
    /// [`Pacing::shutdown_drain`] to finish, so that what they store is announced and removed.
    /// Shipping still in progress after that is dropped: nothing was deleted, and the next
    /// start ships it again to the same keys.
    pub async fn run(self, mut found: mpsc::Receiver<Found>, shutdown: impl Future<Output = ()>) {
        handle_lease_breaks();
        let root = self.shipper.root.clone();
        let mut files: HashMap<PathBuf, Entry> = HashMap::new();
        let mut queue: VecDeque<PathBuf> = VecDeque::new();
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut ticks = 0u64;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                report = found.recv() => match report {
                    Some(report) => self.on_found(&root, report, &mut files, &mut queue),
                    None => break,
                },
                Some(finished) = running.join_next(), if !running.is_empty() => {
                    if let Ok(finished) = finished {
                        self.on_finished(&root, finished, &mut files);
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    self.on_tick(&root, &mut files, &mut queue, ticks.is_multiple_of(40));
                }
                () = &mut shutdown => break,
            }
            while running.len() < self.pacing.upload_concurrency {
                let Some(relative) = queue.pop_front() else {
                    break;
                };
                // Queued once, then dropped or rescheduled before its turn: not to ship now.
                let Some(entry) = files
                    .get_mut(&relative)
                    .filter(|entry| matches!(entry.state, State::Queued))
                else {
                    continue;
                };
                entry.state = State::Shipping;
                let removing = entry.failing.and_then(|failing| failing.removing);
                let shipper = self.shipper.clone();
                running.spawn(async move {
                    let started = Instant::now();
                    let attempt = async {
                        match removing {
                            Some(stored) => {
                                Attempt::Removal(shipper.remove_stored(&relative, stored).await)
                            }
                            None => Attempt::Ship(Box::new(shipper.ship(&relative).await)),
                        }
                    };
                    // A panic would end the task without saying which file it had, leaving
                    // the file "shipping" until a restart: it is a failure of this file.
                    let attempt = AssertUnwindSafe(attempt)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            let panicked = ShipError::Failed("shipping it panicked".to_owned());
                            Attempt::Ship(Box::new(Err(panicked)))
                        });
                    (relative, attempt, started.elapsed())
                });
            }
        }
        if running.is_empty() {
            return;
        }
        info!(
            in_flight = running.len(),
            "stopping: finishing the uploads in flight"
        );
        let drained = tokio::time::timeout(self.pacing.shutdown_drain, async {
            while let Some(finished) = running.join_next().await {
                if let Ok(finished) = finished {
                    self.on_finished(&root, finished, &mut files);
                }
            }
        })
        .await;
        if drained.is_err() {
            warn!(
                in_flight = running.len(),
                "stopping with uploads unfinished; the next start ships those files again"
            );
        }
    }

    fn on_found(
        &self,
        root: &Path,
        report: Found,
        files: &mut HashMap<PathBuf, Entry>,
        queue: &mut VecDeque<PathBuf>,
    ) {
        let closed = matches!(report, Found::Closed(_));
        let relative = report.relative().to_path_buf();
        let Some(now_seen) = seen(root, &relative) else {
            self.forget(files, &relative);
            return;
        };
        let entry = files.get(&relative).copied();
        let fresh = match entry {
            None => true,
            Some(Entry {
                state: State::Queued | State::Shipping,
                ..
            }) => false,
            // A file rewritten since it was stored or refused is a new file.
            Some(Entry {
                state: State::Stored | State::Refused,
                seen,
                ..
            }) => seen != now_seen,
            Some(Entry {
                state: State::Settling { .. },
                ..
            }) => closed,
            Some(Entry {
                state: State::Retrying { .. },
                ..
            }) => false,
        };
        if !fresh {
            return;
        }
        // An empty file holds no core: one truncated once stored (`gc_type: truncate`), whose
        // closing is reported like any other, or one not written yet.
        if now_seen.is_empty_file() {
            self.forget(files, &relative);
            return;
        }
        if entry.is_none() {
            self.metrics.detected.inc();
        }
        let state = if closed {
            queue.push_back(relative.clone());
            State::Queued
        } else {
            State::Settling {
                since: Instant::now(),
            }
        };
        files.insert(
            relative,
            Entry {
                state,
                seen: now_seen,
                failing: None,
                refused_before: entry.is_some_and(|entry| {
                    entry.refused_before || matches!(entry.state, State::Refused)
                }),
            },
        );
    }

    fn on_tick(
        &self,
        root: &Path,
        files: &mut HashMap<PathBuf, Entry>,
        queue: &mut VecDeque<PathBuf>,
        sweep_gone: bool,
    ) {
        let now = Instant::now();
        let mut gone = Vec::new();
        let (mut backlog_files, mut backlog_bytes) = (0i64, 0i64);
        for (relative, entry) in files.iter_mut() {
            match entry.state {
                State::Settling { since } if now.duration_since(since) >= self.pacing.settle => {
                    match seen(root, relative) {
                        None => gone.push(relative.clone()),
                        // Empty: nothing to ship until it is written (and reported again).
                        Some(current) if current.is_empty_file() => gone.push(relative.clone()),
                        Some(current) if current == entry.seen => {
                            entry.state = State::Queued;
                            queue.push_back(relative.clone());
                        }
                        Some(current) => {
                            entry.state = State::Settling { since: now };
                            entry.seen = current;
                        }
                    }
                }
                State::Retrying { at } if at <= now => {
                    entry.state = State::Queued;
                    queue.push_back(relative.clone());
                }
                State::Stored | State::Refused if sweep_gone && seen(root, relative).is_none() => {
                    gone.push(relative.clone());
                }
                _ => {}
            }
            let stored = matches!(entry.state, State::Stored | State::Refused)
                || entry
                    .failing
                    .is_some_and(|failing| failing.removing.is_some());
            if !stored {
                backlog_files += 1;
                backlog_bytes += i64::try_from(entry.seen.size).unwrap_or(i64::MAX);
            }
        }
        for relative in gone {
            self.forget(files, &relative);
        }
        self.metrics.backlog_files.set(backlog_files);
        self.metrics.backlog_bytes.set(backlog_bytes);
    }

    /// Drops a file's entry (it is gone or done with). A failure announced for it is
    /// forgotten, so that a file of that name failing later is announced again.
    fn forget(&self, files: &mut HashMap<PathBuf, Entry>, relative: &Path) {
        let announced = files
            .remove(relative)
            .and_then(|entry| entry.failing)
            .is_some_and(|failing| failing.announced);
        if announced {
            self.notifier
                .upload_failure_over(&self.shipper.root.join(relative).display().to_string());
        }
    }

    fn on_finished(
        &self,
        root: &Path,
        (relative, attempt, took): Finished,
        files: &mut HashMap<PathBuf, Entry>,
    ) {
        let result = match attempt {
            Attempt::Ship(result) => *result,
            Attempt::Removal(result) => return self.on_removed(root, relative, result, files),
        };
        let host_path = root.join(&relative).display().to_string();
        let previous = files.get(&relative).copied();
        match result {
            Ok(shipped) => {
                let recovered = previous
                    .and_then(|entry| entry.failing)
                    .is_some_and(|failing| failing.announced);
                if recovered {
                    self.notifier.upload_failure_over(&host_path);
                }
                // Stored before (a restart, or a removal tried again): counted and announced
                // then.
                if !shipped.already_stored {
                    self.metrics.uploaded.inc();
                    self.metrics.bytes_in.inc_by(shipped.record.size);
                    self.metrics.bytes_out.inc_by(shipped.record.stored_size);
                    self.metrics.upload_duration.observe(took.as_secs_f64());
                    self.notifier
                        .dump_stored(&shipped.record, &shipped.download_url);
                    if let Some(kube) = &self.kube {
                        let (kube, record) = (kube.clone(), shipped.record.clone());
                        tokio::spawn(async move { kube.announce(&record).await });
                    }
                }
                self.after_storing(root, relative, shipped.local, shipped.identity, files);
            }
            Err(ShipError::Refused { reason, message }) => {
                self.metrics
                    .refused
                    .get_or_create(&[("reason", reason)])
                    .inc();
                match files.get_mut(&relative) {
                    Some(entry) if entry.refused_before => {
                        debug!(reason, "refused file again {host_path:?}: {message}");
                        entry.state = State::Refused;
                    }
                    Some(entry) => {
                        warn!(reason, "refused file {host_path:?}: {message}");
                        entry.state = State::Refused;
                    }
                    None => warn!(reason, "refused file {host_path:?}: {message}"),
                }
            }
            Err(ShipError::Changing) => {
                match (seen(root, &relative), files.get_mut(&relative)) {
                    (Some(current), Some(entry)) => {
                        // Held open without a write since it settled (the kernel pausing, or a
                        // tenant keeping it open for good): not worth a line every two seconds.
                        if current == entry.seen {
                            debug!("still open for writing, waiting: {host_path}");
                        } else {
                            info!("still being written, waiting for it to settle: {host_path}");
                        }
                        entry.state = State::Settling {
                            since: Instant::now(),
                        };
                        entry.seen = current;
                    }
                    _ => {
                        self.forget(files, &relative);
                    }
                }
            }
            Err(err @ ShipError::Failed(_)) => {
                self.count_failure(err.reason());
                let Some(entry) = files.get_mut(&relative) else {
                    return;
                };
                let (attempt, pause) = self.retry_later(entry, None);
                if let Some(failing) = &mut entry.failing {
                    let failing_for = failing.since.elapsed();
                    if !failing.announced && failing_for >= self.pacing.failure_notice_after {
                        self.notifier
                            .upload_failing(&host_path, &err.to_string(), failing_for);
                        failing.announced = true;
                    }
                }
                warn!(attempt, retry_in_s = pause.as_secs(), error = %err, "store a corefile error: {host_path}");
            }
        }
    }

    /// What follows a stored core: its entry goes with its file, stays while the file is kept,
    /// or waits to remove it again. A file left behind fills the node's disk: removing it is
    /// tried again, with the backoff of a failed upload, until it goes; the dump is safe.
    fn after_storing(
        &self,
        root: &Path,
        relative: PathBuf,
        local: LocalFile,
        stored: Identity,
        files: &mut HashMap<PathBuf, Entry>,
    ) {
        match local {
            LocalFile::Removed | LocalFile::Changed => {
                self.forget(files, &relative);
                // Another file may have taken the name meanwhile; its own report came while
                // this one was being shipped, and was passed over.
                if let Some(now) = seen(root, &relative)
                    && !now.is_empty_file()
                {
                    self.metrics.detected.inc();
                    files.insert(
                        relative,
                        Entry {
                            state: State::Settling {
                                since: Instant::now(),
                            },
                            seen: now,
                            failing: None,
                            refused_before: false,
                        },
                    );
                }
            }
            LocalFile::Kept => {
                if let Some(entry) = files.get_mut(&relative) {
                    entry.state = State::Stored;
                }
            }
            LocalFile::NotRemoved(error) => {
                self.count_failure("remove");
                let Some(entry) = files.get_mut(&relative) else {
                    return;
                };
                let (attempt, pause) = self.retry_later(entry, Some(stored));
                let host_path = root.join(&relative).display().to_string();
                warn!(
                    attempt,
                    retry_in_s = pause.as_secs(),
                    error,
                    "stored, but could not remove local corefile: {host_path}"
                );
            }
        }
    }

    /// After removing a stored core's file again.
    fn on_removed(
        &self,
        root: &Path,
        relative: PathBuf,
        result: Result<Option<LocalFile>, ShipError>,
        files: &mut HashMap<PathBuf, Entry>,
    ) {
        let Some(stored) = files
            .get(&relative)
            .and_then(|entry| entry.failing)
            .and_then(|failing| failing.removing)
        else {
            return;
        };
        match result {
            Ok(Some(local)) => self.after_storing(root, relative, local, stored, files),
            // Not the file stored: this one is shipped on the next tick.
            Ok(None) => {
                if let Some(entry) = files.get_mut(&relative) {
                    entry.failing = None;
                    entry.state = State::Retrying { at: Instant::now() };
                }
            }
            Err(err) => {
                self.count_failure(err.reason());
                let Some(entry) = files.get_mut(&relative) else {
                    return;
                };
                let (attempt, pause) = self.retry_later(entry, Some(stored));
                let host_path = root.join(&relative).display().to_string();
                warn!(attempt, retry_in_s = pause.as_secs(), error = %err, "could not remove local corefile: {host_path}");
            }
        }
    }

    fn count_failure(&self, reason: &'static str) {
        self.metrics
            .failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Schedules another attempt at `entry`, later with each failure in a row of the same
    /// kind (storing it, or `removing` the file stored): returns the attempt that failed and
    /// the pause.
    fn retry_later(&self, entry: &mut Entry, removing: Option<Identity>) -> (u32, Duration) {
        let now = Instant::now();
        if entry
            .failing
            .is_some_and(|failing| failing.removing.is_some() != removing.is_some())
        {
            entry.failing = None;
        }
        let failing = entry.failing.get_or_insert(Failing {
            attempts: 0,
            since: now,
            announced: false,
            removing,
        });
        failing.attempts += 1;
        let pause = self
            .pacing
            .first_retry
            .saturating_mul(1u32 << (failing.attempts - 1).min(10))
            .min(self.pacing.max_retry);
        entry.state = State::Retrying { at: now + pause };
        (failing.attempts, pause)
    }
}

#[cfg(test)]
mod tests {
    use coredog_core::config::Config;
    use coredog_store::Store;

    use super::*;
    use crate::watcher::pods::PodDirectory;

    /// A watcher of `root` that stores into a CFS directory and removes what it stored, with
    /// `more` configuration.
    fn watcher_into_cfs(
        root: &Path,
        storage: &Path,
        more: &str,
        registry: &mut Registry,
    ) -> Watcher {
        let config = Config::from_yaml(&format!(
            "StorageConfig:\n  protocol: cfs\n  CFSMountPath: {}\n  CFSAllowLocalDisk: true\n  StoreDir: corefiles\n  DeleteLocalCorefile: true\n{more}",
            storage.display()
        ))
        .unwrap();
        Watcher {
            shipper: Arc::new(Shipper {
                root: root.to_owned(),
                node: "node-1".to_owned(),
                store: Arc::new(Store::from_config(&config.storage).unwrap()),
                config: Arc::new(config.clone()),
                pods: PodDirectory::default(),
            }),
            notifier: Arc::new(
                Notifier::from_config(&config, reqwest::Client::new(), registry).unwrap(),
            ),
            metrics: WatcherMetrics::register(registry),
            pacing: Pacing::from_config(&config),
            kube: None,
        }
    }

    #[tokio::test]
    async fn a_stored_dump_is_announced_on_its_pod() {
        let dir = tempfile::tempdir().unwrap();
        let (root, storage) = (dir.path().join("node"), dir.path().join("storage"));
        let relative = PathBuf::from("shop/web-1/app/core.server.42");
        std::fs::create_dir_all(root.join("shop/web-1/app")).unwrap();
        std::fs::create_dir_all(&storage).unwrap();
        std::fs::write(
            root.join(&relative),
            elf::tests::synthetic_core(11, 42, "/usr/bin/server"),
        )
        .unwrap();
        let mut registry = Registry::default();
        let (link, mut api) = kube::tests::mock_link();
        let mut watcher = watcher_into_cfs(&root, &storage, "", &mut registry);
        watcher.kube = Some(link);
        let (found, found_rx) = mpsc::channel(4);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watching = tokio::spawn(watcher.run(found_rx, async move {
            let _ = stopped.await;
        }));
        found.send(Found::Closed(relative.clone())).await.unwrap();

        let (request, respond) = tokio::time::timeout(Duration::from_secs(30), api.next_request())
            .await
            .expect("no event within 30 s")
            .unwrap();
        assert_eq!(
            request.uri().path(),
            "/apis/events.k8s.io/v1/namespaces/shop/events"
        );
        let event = kube::tests::body_json(request).await;
        assert_eq!(event["reason"], "CoreDumped");
        assert_eq!(event["regarding"]["name"], "web-1");
        assert!(event["note"].as_str().unwrap().contains("SIGSEGV"));
        respond.send_response(
            http::Response::builder()
                .status(201)
                .body(::kube::client::Body::from(
                    serde_json::to_vec(&event).unwrap(),
                ))
                .unwrap(),
        );
        assert!(!root.join(&relative).exists(), "stored, then removed");
        let _ = stop.send(());
        watching.await.unwrap();
    }

    /// Sets or clears a file's immutable flag (`chattr +i`); false where this filesystem or
    /// user cannot.
    fn set_immutable(path: &Path, immutable: bool) -> bool {
        use rustix::fs::IFlags;
        let Ok(file) = std::fs::File::open(path) else {
            return false;
        };
        let Ok(flags) = rustix::fs::ioctl_getflags(&file) else {
            return false;
        };
        let flags = if immutable {
            flags | IFlags::IMMUTABLE
        } else {
            flags - IFlags::IMMUTABLE
        };
        rustix::fs::ioctl_setflags(&file, flags).is_ok()
    }

    fn metric(registry: &Registry, line_start: &str) -> Option<f64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(line_start))
            .and_then(|value| value.trim().parse().ok())
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what} within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A core that cannot be removed once stored (here immutable) stays queued: removing it
    /// is tried again until it goes, without asking the store, uploading or announcing again.
    #[tokio::test]
    async fn a_stored_core_that_could_not_be_removed_is_removed_later() {
        let dir = tempfile::tempdir().unwrap();
        let (root, storage) = (dir.path().join("node"), dir.path().join("storage"));
        let relative = PathBuf::from("shop/web-1/app/core.server.42");
        let core = root.join(&relative);
        std::fs::create_dir_all(core.parent().unwrap()).unwrap();
        std::fs::create_dir_all(&storage).unwrap();
        std::fs::write(&core, elf::tests::synthetic_core(11, 42, "/usr/bin/server")).unwrap();
        assert!(
            set_immutable(&core, true),
            "cannot make {} immutable: this test needs root (CAP_LINUX_IMMUTABLE) and a filesystem with inode flags",
            core.display()
        );
        struct Mutable(PathBuf);
        impl Drop for Mutable {
            fn drop(&mut self) {
                set_immutable(&self.0, false);
            }
        }
        let mutable = Mutable(core.clone());

        let mut registry = Registry::default();
        let mut watcher = watcher_into_cfs(&root, &storage, "", &mut registry);
        watcher.pacing.first_retry = Duration::from_millis(50);
        let (found, found_rx) = mpsc::channel(4);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watching = tokio::spawn(watcher.run(found_rx, async move {
            let _ = stopped.await;
        }));
        found.send(Found::Closed(relative.clone())).await.unwrap();

        let removal_failures = "coredog_watcher_upload_failures_total{reason=\"remove\"} ";
        wait_until("a failed removal", || {
            metric(&registry, removal_failures).is_some_and(|failed| failed >= 1.0)
        })
        .await;
        // The store is not asked again (keys that may only write could not tell): with its
        // record gone, the dump is neither uploaded nor announced again.
        for record in walk(&storage).iter().filter(|path| path.ends_with(".json")) {
            std::fs::remove_file(record).unwrap();
        }
        wait_until("three more failed removals", || {
            metric(&registry, removal_failures).is_some_and(|failed| failed >= 4.0)
        })
        .await;
        assert!(core.exists());
        // Stored, so not in the backlog of cores waiting to be stored, which two ticks of the
        // watcher (250 ms apart) have counted since.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            metric(&registry, "coredog_watcher_backlog_files "),
            Some(0.0)
        );
        drop(mutable);
        wait_until("the core removed", || !core.exists()).await;
        assert_eq!(
            metric(&registry, "coredog_watcher_cores_uploaded_total "),
            Some(1.0)
        );
        let stored = walk(&storage);
        assert_eq!(
            stored.iter().filter(|path| path.ends_with(".json")).count(),
            0,
            "stored again: {stored:?}"
        );
        let _ = stop.send(());
        watching.await.unwrap();
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path.display().to_string());
            }
        }
        found
    }

    /// Truncating a stored core closes it, which is reported like a core's closing: the empty
    /// file is not taken for a new file, nor refused as one that is not a core.
    #[tokio::test]
    async fn a_core_truncated_once_stored_is_not_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let (root, storage) = (dir.path().join("node"), dir.path().join("storage"));
        std::fs::create_dir_all(root.join("shop/web-1/app")).unwrap();
        std::fs::create_dir_all(&storage).unwrap();
        let mut registry = Registry::default();
        let watcher = watcher_into_cfs(&root, &storage, "gc_type: truncate\n", &mut registry);
        let (found, found_rx) = mpsc::channel(4);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watching = tokio::spawn(watcher.run(found_rx, async move {
            let _ = stopped.await;
        }));
        // Ships a core and waits until the watcher is done with it.
        let ship = async |pid: u32, uploaded: f64| {
            let relative = PathBuf::from(format!("shop/web-1/app/core.server.{pid}"));
            let core = root.join(&relative);
            let content = elf::tests::synthetic_core(11, pid, "/usr/bin/server");
            std::fs::write(&core, content).unwrap();
            found.send(Found::Closed(relative.clone())).await.unwrap();
            wait_until("the core stored", || {
                metric(&registry, "coredog_watcher_cores_uploaded_total ") == Some(uploaded)
            })
            .await;
            assert_eq!(std::fs::metadata(&core).unwrap().len(), 0, "not truncated");
            relative
        };
        let first = ship(42, 1.0).await;
        // What inotify reports when the truncating descriptor closes; reports are handled in
        // turn, so it is handled before the next core is.
        found.send(Found::Closed(first)).await.unwrap();
        ship(43, 2.0).await;
        assert_eq!(
            metric(&registry, "coredog_watcher_cores_detected_total "),
            Some(2.0)
        );
        assert_eq!(
            metric(&registry, "coredog_watcher_cores_uploaded_total "),
            Some(2.0)
        );
        let refused = metric(
            &registry,
            "coredog_watcher_files_refused_total{reason=\"not_core\"} ",
        );
        assert_eq!(refused, None, "a truncated core was refused");
        let _ = stop.send(());
        watching.await.unwrap();
    }

    /// A tenant rewriting a file that is no core, over and over: refused each time, warned of
    /// once.
    #[tokio::test]
    async fn a_file_refused_again_and_again_is_warned_of_once() {
        let (logs, _logging) = coredog_tests::CapturedLogs::start(tracing::Level::WARN);
        let dir = tempfile::tempdir().unwrap();
        let (root, storage) = (dir.path().join("node"), dir.path().join("storage"));
        std::fs::create_dir_all(root.join("shop/web-1/app")).unwrap();
        std::fs::create_dir_all(&storage).unwrap();
        let mut registry = Registry::default();
        let watcher = watcher_into_cfs(&root, &storage, "", &mut registry);
        let (found, found_rx) = mpsc::channel(4);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watching = tokio::spawn(watcher.run(found_rx, async move {
            let _ = stopped.await;
        }));
        let relative = PathBuf::from("shop/web-1/app/notes.txt");
        for round in 1..=3 {
            std::fs::write(root.join(&relative), "x".repeat(round)).unwrap();
            found.send(Found::Closed(relative.clone())).await.unwrap();
            wait_until("the file refused", || {
                metric(
                    &registry,
                    "coredog_watcher_files_refused_total{reason=\"not_core\"} ",
                ) == Some(round as f64)
            })
            .await;
        }
        let _ = stop.send(());
        watching.await.unwrap();
        let logged = logs.text();
        assert_eq!(logged.matches("refused file").count(), 1, "{logged}");
        assert!(root.join(&relative).exists(), "never removed");
    }
}
