//! `list`: the dumps in storage, newest first, like `coredumpctl list`.
//!
//! A listing reads as little as the filters allow: a namespace (and pod) narrows the prefix
//! listed; the key alone gives time, namespace, pod, container, executable, pid and id; the
//! listing itself tells which dumps have their record. Records are fetched, a bounded number
//! at a time, only for the rows shown, or for every candidate when a filter needs them
//! (`--node`).

use std::collections::HashSet;

use coredog_core::object_key::{
    CoreKey, RECORD_SUFFIX, after_id_index, listing_prefix, record_key_for, safe_exe,
};
use coredog_core::record::DumpRecord;
use coredog_core::template::human_bytes;
use coredog_store::{ObjectInfo, StoreError};
use futures_util::stream::{self, StreamExt as _};
use jiff::Timestamp;
use serde_json::{Value, json};
use tracing::debug;

use super::DumpStorage;
use crate::cli::{DumpFilterArgs, OutputFormat};
use crate::error::user;
use crate::kube_client::Scope;
use crate::output::{table, to_json, to_yaml};
use crate::when::parse_when;

/// Records fetched at once.
pub const RECORD_CONCURRENCY: usize = 16;

/// What a listing selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    /// In its key form ([`safe_exe`]).
    pub exe: Option<String>,
    pub node: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl Filters {
    pub fn from_args(args: &DumpFilterArgs, scope: &Scope, now: Timestamp) -> anyhow::Result<Self> {
        let when = |flag: &str, value: &Option<String>| -> anyhow::Result<Option<Timestamp>> {
            value
                .as_deref()
                .map(|text| {
                    parse_when(text, now).map_err(|err| {
                        user(
                            format!("--{flag}: {err}"),
                            format!("for example --{flag} 2h"),
                        )
                    })
                })
                .transpose()
        };
        Ok(Self {
            namespace: scope.namespace().map(str::to_owned),
            pod: args.pod.clone(),
            container: args.container.clone(),
            exe: args.exe.as_deref().map(safe_exe),
            node: args.node.clone(),
            since: when("since", &args.since)?,
            until: when("until", &args.until)?,
        })
    }

    /// The narrowest prefix that holds every dump these filters can select.
    pub fn prefix(&self, store_dir: &str) -> String {
        let pod = self.namespace.as_ref().and(self.pod.as_deref());
        listing_prefix(store_dir, self.namespace.as_deref(), pod)
    }

    /// Whether a dump's key passes the filters that need no record.
    pub fn matches_key(&self, key: &CoreKey) -> bool {
        let same =
            |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        same(&self.namespace, &key.namespace)
            && same(&self.pod, &key.pod)
            && same(&self.container, &key.container)
            && same(&self.exe, &key.exe)
            && self.since.is_none_or(|since| key.time >= since)
            && self.until.is_none_or(|until| key.time < until)
    }

    pub fn needs_records(&self) -> bool {
        self.node.is_some()
    }

    pub fn matches_record(&self, record: Option<&DumpRecord>) -> bool {
        match &self.node {
            None => true,
            Some(node) => record.is_some_and(|record| &record.node == node),
        }
    }
}

/// A dump found in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: CoreKey,
    pub object: ObjectInfo,
    /// Whether `<key>.json` was listed next to it.
    pub has_record: bool,
}

/// A dump with its record, if it has one that could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub listed: Listed,
    pub record: Option<DumpRecord>,
}

impl Dump {
    pub fn id(&self) -> &str {
        self.listed.key.id.as_str()
    }

    /// The record's JSON, or for an incomplete dump what its key tells, marked incomplete.
    pub fn to_json(&self) -> Value {
        match &self.record {
            Some(record) => serde_json::to_value(record).unwrap_or(Value::Null),
            None => {
                let key = &self.listed.key;
                json!({
                    "id": key.id,
                    "key": self.listed.object.key,
                    "time": key.time,
                    "namespace": key.namespace,
                    "pod": key.pod,
                    "container": key.container,
                    "exe": key.exe,
                    "pid": key.pid,
                    "storedSize": self.listed.object.size,
                    "compression": key.compression,
                    "incomplete": true,
                })
            }
        }
    }
}

/// Every dump under the filters' prefix that passes the key-level filters, newest first.
pub async fn scan<S: DumpStorage>(
    storage: &S,
    store_dir: &str,
    filters: &Filters,
) -> Result<Vec<Listed>, StoreError> {
    let prefix = filters.prefix(store_dir);
    // A listing of every namespace skips the id index, which sorts before them all.
    let start_after = filters
        .namespace
        .is_none()
        .then(|| after_id_index(store_dir));
    let mut dumps = Vec::new();
    let mut records = HashSet::new();
    let mut continuation: Option<String> = None;
    loop {
        let page = storage
            .list_page(&prefix, continuation.as_deref(), start_after.as_deref())
            .await?;
        for object in page.objects {
            if let Some(core_key) = object.key.strip_suffix(RECORD_SUFFIX) {
                records.insert(core_key.to_owned());
            } else if let Some(key) = CoreKey::parse(&object.key) {
                if filters.matches_key(&key) {
                    dumps.push((key, object));
                }
            } else {
                debug!(key = %object.key, "not a dump's key");
            }
        }
        match page.next {
            Some(next) => continuation = Some(next),
            None => break,
        }
    }
    let mut listed: Vec<Listed> = dumps
        .into_iter()
        .map(|(key, object)| Listed {
            has_record: records.contains(&object.key),
            key,
            object,
        })
        .collect();
    listed.sort_by(|a, b| {
        b.key
            .time
            .cmp(&a.key.time)
            .then_with(|| a.object.key.cmp(&b.object.key))
    });
    Ok(listed)
}

/// Reads the record of a dump that has one. A record that cannot be read or parsed leaves the
/// dump incomplete rather than failing the listing.
pub async fn read_record<S: DumpStorage>(storage: &S, listed: &Listed) -> Option<DumpRecord> {
    if !listed.has_record {
        return None;
    }
    let key = record_key_for(&listed.object.key);
    match storage.get_bytes(&key).await {
        Ok(bytes) => match DumpRecord::from_json(&bytes) {
            Ok(record) => Some(record),
            Err(err) => {
                debug!(%key, error = %err, "unreadable record");
                None
            }
        },
        Err(err) => {
            debug!(%key, error = %err, "record not read");
            None
        }
    }
}

/// The records of `listed`, read [`RECORD_CONCURRENCY`] at a time, in order.
pub async fn with_records<S: DumpStorage>(storage: &S, listed: Vec<Listed>) -> Vec<Dump> {
    stream::iter(listed)
        .map(|listed| async move {
            let record = read_record(storage, &listed).await;
            Dump { listed, record }
        })
        .buffered(RECORD_CONCURRENCY)
        .collect()
        .await
}

/// The dumps a listing shows, and how many matched in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub dumps: Vec<Dump>,
    pub matched: usize,
}

/// The newest `limit` dumps (0: all) that pass the filters.
pub async fn list<S: DumpStorage>(
    storage: &S,
    store_dir: &str,
    filters: &Filters,
    limit: usize,
) -> Result<Listing, StoreError> {
    let listed = scan(storage, store_dir, filters).await?;
    let limit = if limit == 0 { usize::MAX } else { limit };
    if filters.needs_records() {
        let dumps: Vec<Dump> = with_records(storage, listed)
            .await
            .into_iter()
            .filter(|dump| filters.matches_record(dump.record.as_ref()))
            .collect();
        let matched = dumps.len();
        return Ok(Listing {
            dumps: dumps.into_iter().take(limit).collect(),
            matched,
        });
    }
    let matched = listed.len();
    let shown: Vec<Listed> = listed.into_iter().take(limit).collect();
    Ok(Listing {
        dumps: with_records(storage, shown).await,
        matched,
    })
}

pub const HEADERS: [&str; 9] = [
    "TIME",
    "NAMESPACE",
    "POD",
    "CONTAINER",
    "EXE",
    "SIG",
    "SIZE",
    "NODE",
    "ID",
];
pub const WIDE_HEADERS: [&str; 3] = ["KEY", "STORED", "SHA256"];

pub fn row(dump: &Dump, wide: bool) -> Vec<String> {
    let key = &dump.listed.key;
    let record = dump.record.as_ref();
    let signal = record.map_or_else(
        || "-".to_owned(),
        |record| match (&record.signal_name, record.signal) {
            (Some(name), _) => name.clone(),
            (None, Some(number)) => number.to_string(),
            (None, None) => "-".to_owned(),
        },
    );
    let mut row = vec![
        key.time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        key.namespace.clone(),
        key.pod.clone(),
        key.container.clone(),
        key.exe.clone(),
        signal,
        record.map_or_else(|| "-".to_owned(), |record| human_bytes(record.size)),
        record.map_or_else(|| "(incomplete)".to_owned(), |record| record.node.clone()),
        key.id.to_string(),
    ];
    if wide {
        row.push(dump.listed.object.key.clone());
        row.push(human_bytes(dump.listed.object.size));
        row.push(record.map_or_else(|| "-".to_owned(), |record| record.sha256.clone()));
    }
    row
}

pub fn render(dumps: &[Dump], format: OutputFormat) -> anyhow::Result<String> {
    match format {
        OutputFormat::Table | OutputFormat::Wide => {
            let wide = format == OutputFormat::Wide;
            let mut headers: Vec<&str> = HEADERS.to_vec();
            if wide {
                headers.extend(WIDE_HEADERS);
            }
            let rows: Vec<Vec<String>> = dumps.iter().map(|dump| row(dump, wide)).collect();
            Ok(table(&headers, &rows))
        }
        OutputFormat::Json => to_json(&dumps.iter().map(Dump::to_json).collect::<Vec<_>>()),
        OutputFormat::Yaml => to_yaml(&dumps.iter().map(Dump::to_json).collect::<Vec<_>>()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use coredog_core::object_key::{Compression, DumpId};

    use super::*;
    use crate::storage::memory::MemoryStorage;

    pub(crate) fn record(namespace: &str, pod: &str, time: &str, node: &str, n: u32) -> DumpRecord {
        let key = CoreKey {
            store_dir: "corefiles".into(),
            namespace: namespace.into(),
            pod: pod.into(),
            time: time.parse().unwrap(),
            container: "app".into(),
            exe: "/usr/bin/server".into(),
            pid: 40 + n,
            id: DumpId::derive(node, &format!("/core.{n}"), 1, i128::from(n)),
            compression: Compression::Zstd,
        };
        DumpRecord {
            schema_version: 1,
            id: key.id.clone(),
            key: key.to_key(),
            time: key.time,
            uploaded_at: key.time,
            namespace: namespace.into(),
            pod: pod.into(),
            container: "app".into(),
            pod_uid: None,
            node: node.into(),
            host_ip: None,
            image: None,
            labels: Default::default(),
            exe: "/usr/bin/server".into(),
            pid: Some(40 + n),
            signal: Some(11),
            signal_name: Some("SIGSEGV".into()),
            cmdline: None,
            uid: None,
            hostname: None,
            size: 4096 * u64::from(n + 1),
            stored_size: 3,
            sha256: "ab".repeat(32),
            compression: Compression::Zstd,
            host_path: format!("/corefile/{namespace}/{pod}/app/core.{n}"),
        }
    }

    pub(crate) fn storage_with(records: &[DumpRecord], without_record: &[usize]) -> MemoryStorage {
        let storage = MemoryStorage::with_page_size(3);
        for (index, record) in records.iter().enumerate() {
            storage.put(&record.key, b"zst".to_vec());
            if !without_record.contains(&index) {
                storage.put(&record_key_for(&record.key), record.to_json());
            }
        }
        storage.put("corefiles/README", b"not a dump".to_vec());
        storage
    }

    fn sample() -> Vec<DumpRecord> {
        vec![
            record("shop", "web-1", "2026-11-27T10:00:00Z", "node-1", 0),
            record("shop", "web-2", "2026-11-27T12:00:00Z", "node-2", 1),
            record("ops", "agent-x", "2026-11-27T11:00:00Z", "node-1", 2),
            record("shop", "web-1", "2026-11-26T09:00:00Z", "node-2", 3),
        ]
    }

    #[tokio::test]
    async fn newest_first_across_pages_with_incomplete_dumps() {
        let records = sample();
        let storage = storage_with(&records, &[2]);
        let listing = list(&storage, "corefiles", &Filters::default(), 0)
            .await
            .unwrap();
        let ids: Vec<&str> = listing.dumps.iter().map(Dump::id).collect();
        assert_eq!(
            ids,
            [
                records[1].id.as_str(),
                records[2].id.as_str(),
                records[0].id.as_str(),
                records[3].id.as_str()
            ]
        );
        assert_eq!(listing.matched, 4);
        assert!(listing.dumps[1].record.is_none());
        let requests = storage.take_requests();
        assert_eq!(
            requests.iter().filter(|r| r.starts_with("list ")).count(),
            3,
            "{requests:?}"
        );
        // The dump without a record is known to be incomplete from the listing alone.
        assert_eq!(requests.iter().filter(|r| r.starts_with("get ")).count(), 3);
    }

    #[tokio::test]
    async fn a_namespace_lists_only_its_prefix_and_records_only_for_shown_rows() {
        let records = sample();
        let storage = storage_with(&records, &[]);
        let filters = Filters {
            namespace: Some("shop".into()),
            ..Filters::default()
        };
        let listing = list(&storage, "corefiles", &filters, 1).await.unwrap();
        assert_eq!(listing.matched, 3);
        assert_eq!(listing.dumps.len(), 1);
        assert_eq!(listing.dumps[0].id(), records[1].id.as_str());
        let requests = storage.take_requests();
        assert!(
            requests
                .iter()
                .all(|r| !r.starts_with("list ") || r == "list corefiles/shop/"),
            "{requests:?}"
        );
        assert_eq!(
            requests
                .iter()
                .filter(|r| r.starts_with("get "))
                .collect::<Vec<_>>(),
            [&format!("get {}.json", records[1].key)]
        );
        let pod = Filters {
            namespace: Some("shop".into()),
            pod: Some("web-1".into()),
            ..Filters::default()
        };
        assert_eq!(pod.prefix("corefiles"), "corefiles/shop/web-1/");
    }

    #[tokio::test]
    async fn key_filters_and_record_filters() {
        let records = sample();
        let storage = storage_with(&records, &[]);
        let now: Timestamp = "2026-11-27T12:30:00Z".parse().unwrap();
        let args = DumpFilterArgs {
            since: Some("3h".into()),
            exe: Some("/opt/bin/server".into()),
            ..DumpFilterArgs::default()
        };
        let filters = Filters::from_args(&args, &Scope::All, now).unwrap();
        let listing = list(&storage, "corefiles", &filters, 0).await.unwrap();
        assert_eq!(listing.matched, 3);
        let filters = Filters {
            node: Some("node-2".into()),
            ..Filters::default()
        };
        let listing = list(&storage, "corefiles", &filters, 1).await.unwrap();
        assert_eq!(listing.matched, 2);
        assert_eq!(listing.dumps[0].id(), records[1].id.as_str());
        let filters = Filters {
            container: Some("sidecar".into()),
            ..Filters::default()
        };
        assert_eq!(
            list(&storage, "corefiles", &filters, 0)
                .await
                .unwrap()
                .matched,
            0
        );
        assert!(
            Filters::from_args(
                &DumpFilterArgs {
                    until: Some("soon".into()),
                    ..DumpFilterArgs::default()
                },
                &Scope::All,
                now
            )
            .is_err()
        );
    }
}
