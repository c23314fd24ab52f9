//! What the Kubernetes API knows about the pods on this node, for dump records.
//!
//! Optional and degradable: without API access (or before the first list arrives) records
//! carry what the path and the core say, and nothing is invented.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// Facts about a pod and one of its containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub uid: Option<String>,
    pub host_ip: Option<String>,
    pub image: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// One pod as the directory keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodEntry {
    pub uid: String,
    pub host_ip: Option<String>,
    /// Container name → image.
    pub images: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The pods of this node by `(namespace, name)`, kept current by whoever feeds it.
#[derive(Debug, Clone, Default)]
pub struct PodDirectory {
    pods: Arc<RwLock<HashMap<(String, String), PodEntry>>>,
    /// Whether the directory follows the API: a full list has arrived and the watch has not
    /// failed since. Otherwise "unknown" does not mean "gone".
    synced: Arc<std::sync::atomic::AtomicBool>,
}

impl PodDirectory {
    pub fn facts(&self, namespace: &str, pod: &str, container: &str) -> PodFacts {
        let pods = self
            .pods
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match pods.get(&(namespace.to_owned(), pod.to_owned())) {
            Some(entry) => PodFacts {
                uid: Some(entry.uid.clone()),
                host_ip: entry.host_ip.clone(),
                image: entry.images.get(container).cloned(),
                labels: entry.labels.clone(),
            },
            None => PodFacts::default(),
        }
    }

    /// Whether the pod is known to exist (for housekeeping of pod directories).
    pub fn contains(&self, namespace: &str, pod: &str) -> bool {
        let pods = self
            .pods
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pods.contains_key(&(namespace.to_owned(), pod.to_owned()))
    }

    pub fn upsert(&self, namespace: &str, pod: &str, entry: PodEntry) {
        let mut pods = self
            .pods
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pods.insert((namespace.to_owned(), pod.to_owned()), entry);
    }

    pub fn remove(&self, namespace: &str, pod: &str) {
        let mut pods = self
            .pods
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pods.remove(&(namespace.to_owned(), pod.to_owned()));
    }

    /// Replaces everything (a fresh list from the API).
    pub fn replace_all(&self, entries: impl IntoIterator<Item = ((String, String), PodEntry)>) {
        let mut pods = self
            .pods
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *pods = entries.into_iter().collect();
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Says whether the directory follows the API: not while its watch is failing (pods created
    /// meanwhile are missing), again once the watch delivers again.
    pub fn set_synced(&self, synced: bool) {
        self.synced
            .store(synced, std::sync::atomic::Ordering::Release);
    }

    /// Whether the directory reflects the API (a full list has arrived, the watch is live).
    pub fn is_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_come_from_known_pods_only() {
        let pods = PodDirectory::default();
        assert_eq!(pods.facts("shop", "web", "app"), PodFacts::default());
        pods.upsert(
            "shop",
            "web",
            PodEntry {
                uid: "u1".into(),
                host_ip: Some("10.0.0.7".into()),
                images: BTreeMap::from([("app".into(), "shop/web:1".into())]),
                labels: BTreeMap::from([("app".into(), "web".into())]),
            },
        );
        let facts = pods.facts("shop", "web", "app");
        assert_eq!(facts.uid.as_deref(), Some("u1"));
        assert_eq!(facts.image.as_deref(), Some("shop/web:1"));
        assert_eq!(pods.facts("shop", "web", "sidecar").image, None);
        assert!(pods.contains("shop", "web"));
        pods.remove("shop", "web");
        assert!(!pods.contains("shop", "web"));
    }
}
