//! What the messages say and whom a crash concerns: keyword matching, the workload a pod belongs
//! to, and the texts of follow-ups and upload failures. Pure functions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use coredog_core::record::DumpRecord;
use coredog_core::template::inert;

/// Whether a channel with `keyword` announces this crash. The keyword is a case-sensitive
/// substring of one of the crash's names or label values, or a whole label written
/// `key=value`: people filter on a namespace, a team or an executable, and the names they
/// filter on are case-sensitive in Kubernetes too. Label keys alone are not matched: nearly
/// every pod has `app` or `app.kubernetes.io/name`, and a keyword `app` would catch them all.
pub fn keyword_matches(keyword: &str, record: &DumpRecord) -> bool {
    if keyword.is_empty() {
        return true;
    }
    let names = [
        &record.namespace,
        &record.pod,
        &record.container,
        &record.node,
        &record.exe,
    ];
    names
        .into_iter()
        .chain(record.labels.values())
        .any(|field| field.contains(keyword))
        || keyword
            .split_once('=')
            .is_some_and(|(key, value)| record.labels.get(key).is_some_and(|label| label == value))
}

/// The crashes that are "the same crash again": one workload's container running one executable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    pub workload: String,
    pub container: String,
    pub exe: String,
}

impl WorkloadKey {
    pub fn of(record: &DumpRecord) -> Self {
        Self {
            namespace: record.namespace.clone(),
            workload: workload_name(&record.pod, &record.labels),
            container: record.container.clone(),
            exe: record.exe.clone(),
        }
    }
}

/// The name of the workload a pod belongs to: the `app.kubernetes.io/name` or `app` label when
/// the pod has one, else the pod's name without the suffixes its controller added.
pub fn workload_name(pod: &str, labels: &BTreeMap<String, String>) -> String {
    ["app.kubernetes.io/name", "app"]
        .iter()
        .filter_map(|key| labels.get(*key))
        .map(|value| value.trim())
        .find(|value| !value.is_empty())
        .map_or_else(|| strip_controller_suffixes(pod).to_owned(), str::to_owned)
}

/// The characters Kubernetes uses for generated name suffixes and pod-template hashes
/// (`rand.SafeEncodeString`: no vowels, no digits that look like letters).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `web-7d9f8b6c5d-x2x4z` (Deployment) → `web`, `agent-x2x4z` (DaemonSet, Job) → `agent`,
/// `db-0` (StatefulSet) → `db`, `backup-28912345-abcde` (CronJob) → `backup`.
fn strip_controller_suffixes(pod: &str) -> &str {
    let Some((rest, last)) = split_last(pod) else {
        return pod;
    };
    // The random suffix is generated from the safe alphabet, but pods named by hand in the
    // same shape (`job-abcde`) are meant the same way, so any five lowercase letters or digits
    // count.
    let random = last.len() == 5
        && last
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if random {
        let Some((owner, hash)) = split_last(rest) else {
            return rest;
        };
        // Older Kubernetes wrote decimal template hashes; CronJobs put the scheduled minute
        // there. Words of the owner's own name ("frontend") have vowels and stay.
        let hash_like = (6..=10).contains(&hash.len())
            && (hash.bytes().all(|b| SAFE_ALPHABET.contains(&b))
                || hash.bytes().all(|b| b.is_ascii_digit()));
        return if hash_like { owner } else { rest };
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return rest;
    }
    pod
}

/// `a-b-c` → (`a-b`, `c`), when both sides are non-empty.
fn split_last(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('-')
        .filter(|(rest, last)| !rest.is_empty() && !last.is_empty())
}

/// A message's text followed by the configured `messageLabels`, one `key: value` a line.
pub fn with_labels(text: &str, labels: &BTreeMap<String, String>) -> String {
    let mut out = text.trim_end().to_owned();
    for (key, value) in labels {
        let _ = write!(out, "\n{key}: {value}");
    }
    out
}

/// The message that closes an aggregation window: `crash-test in default: 7 more core dumps in
/// the last 5m (latest: <file>)`. `first_announced` is false when even the first crash was held
/// back by the rate limit, so none of them was announced before.
pub fn follow_up_text(
    key: &WorkloadKey,
    count: u32,
    first_announced: bool,
    span: Duration,
    latest_file: &str,
    latest_url: &str,
) -> String {
    let more = if first_announced { " more" } else { "" };
    let dumps = if count == 1 {
        "core dump"
    } else {
        "core dumps"
    };
    let mut text = format!(
        "{} in {}: {count}{more} {dumps} in the last {} (latest: {})",
        key.workload,
        key.namespace,
        human_duration(span),
        inert(latest_file)
    );
    let _ = write!(
        text,
        "\nContainer: {}\nExecutable: {}",
        key.container,
        inert(&key.exe)
    );
    if !latest_url.is_empty() {
        let _ = write!(text, "\nDownload: {latest_url}");
    }
    text
}

/// The one message sent when a dump cannot be stored for a while.
pub fn upload_failing_text(host_path: &str, reason: &str, failing_for: Duration) -> String {
    format!(
        "CoreDog cannot store {} for {}: {}. The file stays on the node and is retried.",
        inert(host_path),
        human_duration(failing_for),
        inert(reason)
    )
}

/// `300 s` → `5m`, `90 s` → `1m30s`, `3600 s` → `1h`: spans as people say them.
pub fn human_duration(span: Duration) -> String {
    let total = span.as_secs_f64().round() as u64;
    if total == 0 {
        return "0s".to_owned();
    }
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let mut out = String::new();
    for (value, unit) in [(hours, 'h'), (minutes, 'm'), (seconds, 's')] {
        if value > 0 {
            let _ = write!(out, "{value}{unit}");
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use coredog_core::object_key::{Compression, DumpId};
    use coredog_core::record::SCHEMA_VERSION;

    pub(crate) fn record(namespace: &str, pod: &str) -> DumpRecord {
        DumpRecord {
            schema_version: SCHEMA_VERSION,
            id: DumpId::derive("node-1", "/corefile/x/core", 4096, 7),
            key: format!("corefiles/{namespace}/{pod}/20261127T100012Z_app_server_42.core.zst"),
            time: "2026-11-27T10:00:12Z".parse().unwrap(),
            uploaded_at: "2026-11-27T10:00:13Z".parse().unwrap(),
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container: "app".to_owned(),
            pod_uid: None,
            node: "node-1".to_owned(),
            host_ip: None,
            image: None,
            labels: BTreeMap::from([("team".to_owned(), "Payments".to_owned())]),
            exe: "/usr/bin/server".to_owned(),
            pid: Some(42),
            signal: Some(11),
            signal_name: Some("SIGSEGV".to_owned()),
            cmdline: None,
            uid: None,
            hostname: None,
            size: 4096,
            stored_size: 512,
            sha256: "ab".repeat(32),
            compression: Compression::Zstd,
            host_path: "/corefile/x/core".to_owned(),
        }
    }

    #[test]
    fn keywords_match_names_and_label_values_case_sensitively() {
        let crash = record("shop", "web-7d9f8b6c5d-x2x4z");
        for keyword in [
            "",
            "shop",
            "web-7d9f",
            "app",
            "node-1",
            "bin/serv",
            "Pay",
            "team=Payments",
        ] {
            assert!(keyword_matches(keyword, &crash), "{keyword}");
        }
        // Not a label's key alone, nor part of one written key=value.
        for keyword in [
            "pay",
            "SHOP",
            "billing",
            "SIGSEGV",
            "corefile",
            "team",
            "team=Pay",
            "eam=Payments",
        ] {
            assert!(!keyword_matches(keyword, &crash), "{keyword}");
        }
    }

    #[test]
    fn workload_names_drop_controller_suffixes() {
        let none = BTreeMap::new();
        for (pod, workload) in [
            ("web-7d9f8b6c5d-x2x4z", "web"),
            ("crash-test-6b7c9d4f8-qwz2k", "crash-test"),
            ("api-v2-5f6d7c8b9b-abcde", "api-v2"),
            ("web-frontend-x2x4z", "web-frontend"),
            ("db-0", "db"),
            ("redis-cluster-12", "redis-cluster"),
            ("job-abcde", "job"),
            ("backup-28912345-k8z2n", "backup"),
            ("standalone", "standalone"),
            ("my-pod", "my-pod"),
            ("-0", "-0"),
            ("x-", "x-"),
        ] {
            assert_eq!(workload_name(pod, &none), workload, "{pod}");
        }
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        let pod = "web-7d9f8b6c5d-x2x4z";
        assert_eq!(
            workload_name(pod, &labels(&[("app", "shop-web")])),
            "shop-web"
        );
        assert_eq!(
            workload_name(
                pod,
                &labels(&[("app", "x"), ("app.kubernetes.io/name", "storefront")])
            ),
            "storefront"
        );
        assert_eq!(workload_name(pod, &labels(&[("app", " ")])), "web");
    }

    #[test]
    fn the_workload_key_separates_containers_and_executables() {
        let a = record("shop", "web-7d9f8b6c5d-x2x4z");
        let mut b = record("shop", "web-7d9f8b6c5d-k8z2n");
        assert_eq!(WorkloadKey::of(&a), WorkloadKey::of(&b));
        b.exe = "/usr/bin/other".to_owned();
        assert_ne!(WorkloadKey::of(&a), WorkloadKey::of(&b));
        let mut c = record("shop", "web-7d9f8b6c5d-k8z2n");
        c.container = "sidecar".to_owned();
        assert_ne!(WorkloadKey::of(&a), WorkloadKey::of(&c));
        assert_ne!(
            WorkloadKey::of(&a),
            WorkloadKey::of(&record("staging", "web-7d9f8b6c5d-x2x4z"))
        );
    }

    #[test]
    fn texts() {
        let labels = BTreeMap::from([
            ("cluster".to_owned(), "prod-1".to_owned()),
            ("region".to_owned(), "eu".to_owned()),
        ]);
        assert_eq!(
            with_labels("Pod: a/b\n", &labels),
            "Pod: a/b\ncluster: prod-1\nregion: eu"
        );
        assert_eq!(with_labels("Pod: a/b\n", &BTreeMap::new()), "Pod: a/b");

        let key = WorkloadKey {
            namespace: "default".to_owned(),
            workload: "crash-test".to_owned(),
            container: "app".to_owned(),
            exe: "/bin/crash".to_owned(),
        };
        let text = follow_up_text(&key, 7, true, Duration::from_secs(300), "f.core.zst", "");
        assert_eq!(
            text,
            "crash-test in default: 7 more core dumps in the last 5m (latest: f.core.zst)\nContainer: app\nExecutable: /bin/crash"
        );
        let text = follow_up_text(&key, 1, false, Duration::from_secs(61), "f", "https://dl");
        assert!(
            text.starts_with("crash-test in default: 1 core dump in the last 1m1s (latest: f)"),
            "{text}"
        );
        assert!(text.ends_with("\nDownload: https://dl"), "{text}");

        assert_eq!(
            upload_failing_text(
                "/corefile/a/core",
                "bucket not found",
                Duration::from_secs(300)
            ),
            "CoreDog cannot store /corefile/a/core for 5m: bucket not found. The file stays on the node and is retried."
        );
        // The tenant names its files: a newline in one starts no line of the message.
        let forged = "/corefile/a/core\nDownload: https://elsewhere.example/";
        assert!(!upload_failing_text(forged, "x", Duration::from_secs(1)).contains('\n'));
        assert!(
            !follow_up_text(&key, 2, false, Duration::from_secs(1), forged, "")
                .contains("\nDownload")
        );
    }

    #[test]
    fn durations() {
        for (seconds, text) in [
            (0.0, "0s"),
            (0.4, "0s"),
            (1.6, "2s"),
            (59.0, "59s"),
            (300.0, "5m"),
            (90.0, "1m30s"),
            (3600.0, "1h"),
            (3725.0, "1h2m5s"),
        ] {
            assert_eq!(human_duration(Duration::from_secs_f64(seconds)), text);
        }
    }
}
