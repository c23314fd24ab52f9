//! What the Kubernetes API knows about the pods on this node, for dump records.
//!
//! Optional and degradable: without API access (or before the first list arrives) records
//! carry what the path and the core say, and nothing is invented. A pod is known by its name,
//! which a new pod takes over once the old one is deleted (a StatefulSet's, a pod recreated by
//! hand): its facts describe a core only when it was made before the core was written.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;

/// How far the node's clock may be behind the API server's, whose time a pod's creation is.
const CLOCK_SKEW: Duration = Duration::from_secs(5);

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
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
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
    /// What is known of the pod that wrote a core at `written` (its mtime): nothing when the
    /// pod of that name now is younger than the core.
    pub fn facts(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        written: Timestamp,
    ) -> PodFacts {
        let pods = self
            .pods
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let made_before = |entry: &PodEntry| {
            entry.created.is_none_or(|created| {
                created <= written.checked_add(CLOCK_SKEW).unwrap_or(Timestamp::MAX)
            })
        };
        match pods
            .get(&(namespace.to_owned(), pod.to_owned()))
            .filter(|entry| made_before(entry))
        {
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
        let written: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        assert_eq!(
            pods.facts("shop", "web", "app", written),
            PodFacts::default()
        );
        pods.upsert(
            "shop",
            "web",
            PodEntry {
                uid: "u1".into(),
                host_ip: Some("10.0.0.7".into()),
                images: BTreeMap::from([("app".into(), "shop/web:1".into())]),
                labels: BTreeMap::from([("app".into(), "web".into())]),
                created: Some("2026-12-07T09:00:00Z".parse().unwrap()),
            },
        );
        let facts = pods.facts("shop", "web", "app", written);
        assert_eq!(facts.uid.as_deref(), Some("u1"));
        assert_eq!(facts.image.as_deref(), Some("shop/web:1"));
        assert_eq!(pods.facts("shop", "web", "sidecar", written).image, None);
        assert!(pods.contains("shop", "web"));
        pods.remove("shop", "web");
        assert!(!pods.contains("shop", "web"));
    }

    /// A StatefulSet's `web-0` crashed, was deleted and made again, with another image, before
    /// its core was described: the new pod's uid and image are not the core's.
    #[test]
    fn a_pod_made_after_the_core_describes_nothing() {
        let pods = PodDirectory::default();
        let recreated = |created: &str| PodEntry {
            uid: "u2".into(),
            images: BTreeMap::from([("app".into(), "shop/web:2".into())]),
            created: Some(created.parse().unwrap()),
            ..PodEntry::default()
        };
        let written: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        pods.upsert("shop", "web-0", recreated("2026-12-07T10:01:00Z"));
        assert_eq!(
            pods.facts("shop", "web-0", "app", written),
            PodFacts::default()
        );
        // Made a moment before, by a clock a little ahead of the node's: the same pod.
        pods.upsert("shop", "web-0", recreated("2026-12-07T10:00:03Z"));
        assert_eq!(
            pods.facts("shop", "web-0", "app", written).uid.as_deref(),
            Some("u2")
        );
    }
}
