//! Removing the empty directories of pods that are gone, so the inotify watches (and the
//! tree a rescan walks) do not grow with every pod that ever ran on the node.
//!
//! Only empty directories are removed (`rmdir` refuses anything else), only for pods the API
//! no longer lists, and only when the directory has not changed for the grace period: the
//! kubelet creates a container's directory just before it mounts it, and a pod the watcher has
//! not heard of yet is not a pod that is gone.

use std::path::Path;
use std::time::{Duration, SystemTime};

use tracing::{debug, info};

use super::pods::PodDirectory;

/// One pass over `root`; returns how many pod directories were removed.
pub fn remove_gone_pod_dirs(root: &Path, pods: &PodDirectory, grace: Duration) -> usize {
    if !pods.is_synced() {
        return 0;
    }
    let now = SystemTime::now();
    let old_enough = |path: &Path| {
        std::fs::symlink_metadata(path)
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() >= grace)
    };
    let mut removed = 0;
    for namespace in plain_dirs(root) {
        for pod in plain_dirs(&namespace) {
            let (Some(ns_name), Some(pod_name)) = (name_of(&namespace), name_of(&pod)) else {
                continue;
            };
            if pods.contains(&ns_name, &pod_name) || !old_enough(&pod) {
                continue;
            }
            for container in plain_dirs(&pod) {
                if old_enough(&container) {
                    let _ = std::fs::remove_dir(&container);
                }
            }
            match std::fs::remove_dir(&pod) {
                Ok(()) => {
                    removed += 1;
                    info!("removed the empty directory of gone pod {ns_name}/{pod_name}");
                }
                Err(err) => debug!(pod = %pod.display(), error = %err, "pod directory kept"),
            }
        }
    }
    removed
}

fn plain_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default()
}

fn name_of(path: &Path) -> Option<String> {
    path.file_name()
        .and_then(|name| name.to_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watcher::pods::PodEntry;

    #[test]
    fn only_empty_directories_of_gone_pods_go() {
        let root = tempfile::tempdir().unwrap();
        for (pod, with_core) in [
            ("alive", false),
            ("gone-empty", false),
            ("gone-with-core", true),
        ] {
            let dir = root.path().join("shop").join(pod).join("app");
            std::fs::create_dir_all(&dir).unwrap();
            if with_core {
                std::fs::write(dir.join("core"), b"x").unwrap();
            }
        }
        let pods = PodDirectory::default();
        assert_eq!(
            remove_gone_pod_dirs(root.path(), &pods, Duration::ZERO),
            0,
            "nothing before the first sync"
        );
        pods.replace_all([(("shop".to_owned(), "alive".to_owned()), PodEntry::default())]);
        assert_eq!(
            remove_gone_pod_dirs(root.path(), &pods, Duration::from_secs(3600)),
            0,
            "nothing within the grace period"
        );
        pods.set_synced(false);
        assert_eq!(
            remove_gone_pod_dirs(root.path(), &pods, Duration::ZERO),
            0,
            "nothing while the pod watch is failing"
        );
        pods.set_synced(true);
        assert_eq!(remove_gone_pod_dirs(root.path(), &pods, Duration::ZERO), 1);
        assert!(root.path().join("shop/alive/app").exists());
        assert!(!root.path().join("shop/gone-empty").exists());
        assert!(root.path().join("shop/gone-with-core/app/core").exists());
    }
}
