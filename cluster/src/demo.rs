//! `coredog demo`: the real pipeline on one machine, with no cluster and no cloud account.
//!
//! It lays out a node's dump directory for a pod `demo/demo-pod` with a container `app`,
//! starts the real watcher on it (storage: a local directory through the CFS store, or the
//! storage a `--config` names), makes a real process crash there with `ulimit -c unlimited`, and
//! waits for the kernel's core to be stored with its record. When this machine's
//! `kernel.core_pattern` sends cores elsewhere, it says so and takes a core of a live process
//! with gdb's `gcore` instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use coredog_core::config::Config;
use coredog_core::record::DumpRecord;
use coredog_core::template::human_bytes;
use coredog_store::Store;
use prometheus_client::registry::Registry;

use crate::notify::Notifier;
use crate::watcher::discover::Discovery;
use crate::watcher::pods::PodDirectory;
use crate::watcher::ship::Shipper;
use crate::watcher::{Pacing, Watcher, WatcherMetrics};

const NAMESPACE: &str = "demo";
const POD: &str = "demo-pod";
const CONTAINER: &str = "app";

/// What the demo needs to know.
pub struct DemoOptions {
    /// Where to lay out the node directory, the storage and the config; a new temporary
    /// directory when `None`.
    pub dir: Option<PathBuf>,
    /// A config whose storage to use instead of a local directory.
    pub config: Option<PathBuf>,
}

/// How the demo gets a core.
enum CoreSource {
    /// The kernel writes `core` into the crashing process's working directory.
    Kernel,
    /// `core_pattern` sends cores elsewhere (`|systemd-coredump`, an absolute path): gcore.
    Gcore(String),
}

fn core_source() -> CoreSource {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let pattern = pattern.trim();
    if pattern.starts_with('|') || pattern.starts_with('/') || pattern.is_empty() {
        CoreSource::Gcore(pattern.to_owned())
    } else {
        CoreSource::Kernel
    }
}

/// Runs the demo and prints what happened. Returns the stored record.
pub async fn run(options: DemoOptions) -> anyhow::Result<DumpRecord> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    // The directory is kept afterwards, so that the plugin commands printed at the end work.
    let base = match options.dir {
        Some(dir) => dir,
        None => tempfile_dir()?,
    };
    let node_dir = base.join("node");
    let container_dir = node_dir.join(NAMESPACE).join(POD).join(CONTAINER);
    std::fs::create_dir_all(&container_dir)
        .with_context(|| format!("cannot create {}", container_dir.display()))?;
    let config_path = base.join("config.yaml");
    let yaml = match &options.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            let storage = base.join("storage");
            std::fs::create_dir_all(&storage)?;
            format!(
                "StorageConfig:\n  protocol: cfs\n  CFSMountPath: {}\n  CFSAllowLocalDisk: true\n  StoreDir: corefiles\n  DeleteLocalCorefile: true\n",
                storage.display()
            )
        }
    };
    let config = Config::from_yaml(&yaml).context("invalid demo configuration")?;
    write_private(&config_path, &yaml)?;
    let store = Arc::new(Store::from_config(&config.storage).context("cannot open storage")?);
    println!("CoreDog demo in {}", base.display());
    println!("  node dump directory  {}", node_dir.display());
    println!("  storage              {}", store.describe());

    let mut registry = Registry::default();
    let metrics = WatcherMetrics::register(&mut registry);
    let notifier = Arc::new(Notifier::from_config(
        &config,
        reqwest::Client::new(),
        &mut registry,
    )?);
    let config = Arc::new(config);
    let (found_tx, found_rx) = tokio::sync::mpsc::channel(64);
    let discovery =
        tokio::spawn(Discovery::new(node_dir.clone(), Duration::from_secs(60)).run(found_tx));
    let watcher = Watcher {
        shipper: Arc::new(Shipper {
            root: node_dir.clone(),
            node: "demo-node".to_owned(),
            store: store.clone(),
            config: config.clone(),
            pods: PodDirectory::default(),
        }),
        notifier,
        metrics,
        pacing: Pacing::from_config(&config),
        kube: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watching = tokio::spawn(watcher.run(found_rx, async move {
        let _ = stop_rx.await;
    }));
    // Let the first sweep set its watches before anything crashes.
    tokio::time::sleep(Duration::from_millis(300)).await;

    match core_source() {
        CoreSource::Kernel => {
            println!(
                "\ncrashing `sh -c 'ulimit -c unlimited; kill -SEGV $$'` in {POD}/{CONTAINER} ..."
            );
            crash(&container_dir)?;
        }
        CoreSource::Gcore(pattern) => {
            println!(
                "\nthis machine's kernel.core_pattern is {pattern:?}, so the kernel would not write the core into the container's directory;\ntaking a core of a live process with gcore instead ..."
            );
            gcore(&container_dir)?;
        }
    }

    let prefix = coredog_core::object_key::listing_prefix(
        &config.storage.store_dir,
        Some(NAMESPACE),
        Some(POD),
    );
    let record = wait_for_record(&store, &prefix, started_at, Duration::from_secs(45)).await;
    let _ = stop_tx.send(());
    let _ = watching.await;
    discovery.abort();
    let record = record?;

    print_record(&record, &store).await;
    let local_gone = std::fs::read_dir(&container_dir)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(false);
    println!(
        "\nlocal core removed from the node directory: {}",
        if local_gone {
            "yes"
        } else {
            "no (DeleteLocalCorefile is off)"
        }
    );
    println!("\nretrieve it as you would from a cluster:");
    println!(
        "  kubectl coredog list --config {} -A",
        config_path.display()
    );
    println!(
        "  kubectl coredog fetch {} --config {} -o ./core",
        record.id,
        config_path.display()
    );
    println!("\ndone in {:.1}s", started.elapsed().as_secs_f64());
    Ok(record)
}

/// A new directory of a name nobody could have guessed, readable by its owner only: it holds a
/// core and, with `--config`, storage keys.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("coredog-demo-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .context("cannot create a directory for the demo")?;
    Ok(dir.keep())
}

/// Writes `text` to a file only its owner may read, never through a link someone left there.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn crash(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::process::ExitStatusExt as _;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -c unlimited; kill -SEGV $$")
        .current_dir(dir)
        .status()
        .context("cannot run sh")?;
    if status.signal() != Some(11) {
        bail!("the demo process did not crash with SIGSEGV ({status})");
    }
    if !status.core_dumped() {
        bail!(
            "the kernel wrote no core for the crash: the hard core size limit may be 0 (`ulimit -Hc`), or kernel.core_pattern {:?} names a directory that does not exist",
            std::fs::read_to_string("/proc/sys/kernel/core_pattern")
                .unwrap_or_default()
                .trim()
        );
    }
    Ok(())
}

fn gcore(dir: &Path) -> anyhow::Result<()> {
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(dir)
        .spawn()
        .context("cannot start a process to take a core of")?;
    let output = std::process::Command::new("gcore")
        .arg("-o")
        .arg(dir.join("core"))
        .arg(child.id().to_string())
        .output();
    let _ = child.kill();
    let _ = child.wait();
    let output = output.context(
        "gcore is not installed (Debian: apt-get install gdb); no core can be made on this machine",
    )?;
    if !output.status.success() {
        bail!(
            "gcore failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The record of this run's dump: one stored after `since` (a store used before holds earlier
/// runs' dumps under the same pod).
async fn wait_for_record(
    store: &Store,
    prefix: &str,
    since: jiff::Timestamp,
    timeout: Duration,
) -> anyhow::Result<DumpRecord> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(page) = store.list_page(prefix, None).await {
            // Keys start with the crash's time: the newest last.
            for object in page
                .objects
                .iter()
                .rev()
                .filter(|o| o.key.ends_with(".json"))
            {
                if let Ok(bytes) = store.get_bytes(&object.key).await {
                    let record = DumpRecord::from_json(&bytes)
                        .context("the stored record does not parse")?;
                    if record.uploaded_at >= since {
                        return Ok(record);
                    }
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no dump was stored within {}s; see the log lines above",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn print_record(record: &DumpRecord, store: &Store) {
    let unknown = || "-".to_owned();
    let rows = [
        ("ID", record.id.to_string()),
        ("TIME", record.time.to_string()),
        ("NAMESPACE", record.namespace.clone()),
        ("POD", record.pod.clone()),
        ("CONTAINER", record.container.clone()),
        ("EXE", record.exe.clone()),
        (
            "PID",
            record.pid.map_or_else(unknown, |pid| pid.to_string()),
        ),
        (
            "SIGNAL",
            match (&record.signal_name, record.signal) {
                (Some(name), Some(number)) => format!("{name} ({number})"),
                _ => unknown(),
            },
        ),
        ("CMDLINE", record.cmdline.clone().unwrap_or_else(unknown)),
        ("SIZE", human_bytes(record.size)),
        (
            "STORED",
            format!(
                "{} ({})",
                human_bytes(record.stored_size),
                format!("{:?}", record.compression).to_lowercase()
            ),
        ),
        ("SHA256", record.sha256.clone()),
        ("KEY", record.key.clone()),
    ];
    println!("\nstored dump:");
    for (name, value) in rows {
        println!("  {name:<10} {value}");
    }
    if let Ok(location) = store.download_url(&record.key, 3600).await {
        println!("  {:<10} {location}", "LOCATION");
    }
}
