//! The dump record: the JSON document that describes one stored dump.
//!
//! It is stored next to the dump (see [`crate::object_key`]) and is the single source for
//! notifications, CoreSight, Kubernetes Events and the plugin's `list`, `info` and `fetch`.
//! Fields are camelCase; optional facts (what the core's notes or the Kubernetes API could not
//! tell) are omitted rather than invented, but for `pid` and `signal`, which every record lists
//! and which are `null` when unknown.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::object_key::{Compression, DumpId};

/// The version of the record's shape; readers accept records of this version or older.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DumpRecord {
    pub schema_version: u32,
    pub id: DumpId,
    /// The dump object's key (the record is at this key with `.json` appended).
    pub key: String,
    /// When the process crashed: the core's own time (`%t`) or, failing that, the file's mtime.
    pub time: Timestamp,
    pub uploaded_at: Timestamp,

    pub namespace: String,
    pub pod: String,
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// The crashed executable (a path where the core says it, else the command name).
    pub exe: String,
    /// `null` when unknown, never left out: every record has the fields `list -o json` names.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub signal: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The hostname the crashed process saw (`%h`), usually the pod's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,

    /// Size of the core as the kernel wrote it.
    pub size: u64,
    /// Size of the stored object.
    pub stored_size: u64,
    /// SHA-256 of the core as the kernel wrote it (before compression), lowercase hex.
    pub sha256: String,
    pub compression: Compression,
    /// The file's path on the node, as the watcher found it.
    pub host_path: String,
}

impl DumpRecord {
    pub fn to_json(&self) -> Vec<u8> {
        // A record is plain data: serialising it cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// `namespace/pod`, as logs and messages name a pod.
    pub fn pod_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.pod)
    }

    /// The file name under which the dump is stored (the last part of its key).
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> DumpRecord {
        DumpRecord {
            schema_version: SCHEMA_VERSION,
            id: DumpId::derive("node-1", "/corefile/shop/web/app/core", 4096, 7),
            key: "corefiles/shop/web/20261127T100012Z_app_server_42_0123456789abcdef.core.zst"
                .to_owned(),
            time: "2026-11-27T10:00:12Z".parse().unwrap(),
            uploaded_at: "2026-11-27T10:00:13Z".parse().unwrap(),
            namespace: "shop".to_owned(),
            pod: "web".to_owned(),
            container: "app".to_owned(),
            pod_uid: Some("5f0c".to_owned()),
            node: "node-1".to_owned(),
            host_ip: Some("10.0.0.7".to_owned()),
            image: Some("shop/web:1.2".to_owned()),
            labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
            exe: "/usr/bin/server".to_owned(),
            pid: Some(42),
            signal: Some(11),
            signal_name: Some("SIGSEGV".to_owned()),
            cmdline: Some("server --port 80".to_owned()),
            uid: Some(1000),
            hostname: Some("web".to_owned()),
            size: 4096,
            stored_size: 512,
            sha256: "ab".repeat(32),
            compression: Compression::Zstd,
            host_path: "/corefile/shop/web/app/core".to_owned(),
        }
    }

    #[test]
    fn records_round_trip_as_camel_case_json() {
        let record = sample();
        let json = record.to_json();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        for field in [
            "schemaVersion",
            "id",
            "key",
            "time",
            "uploadedAt",
            "namespace",
            "pod",
            "container",
            "podUid",
            "node",
            "exe",
            "pid",
            "signal",
            "signalName",
            "size",
            "storedSize",
            "sha256",
            "compression",
            "hostPath",
        ] {
            assert!(value.get(field).is_some(), "missing {field}");
        }
        assert_eq!(value["time"], "2026-11-27T10:00:12Z");
        assert_eq!(value["compression"], "zstd");
        assert_eq!(DumpRecord::from_json(&json).unwrap(), record);
        assert_eq!(
            record.file_name(),
            "20261127T100012Z_app_server_42_0123456789abcdef.core.zst"
        );
        assert_eq!(record.pod_ref(), "shop/web");
    }

    /// Unknown facts are left out, but for the pid and signal every record lists (`null`).
    #[test]
    fn unknown_facts_are_omitted_or_null() {
        let mut record = sample();
        record.pid = None;
        record.signal = None;
        record.image = None;
        record.labels.clear();
        let value: serde_json::Value = serde_json::from_slice(&record.to_json()).unwrap();
        assert_eq!(value["pid"], serde_json::Value::Null);
        assert!(value.as_object().unwrap().contains_key("pid"));
        assert!(value.as_object().unwrap().contains_key("signal"));
        assert!(value.get("image").is_none());
        assert!(value.get("labels").is_none());
        assert_eq!(DumpRecord::from_json(&record.to_json()).unwrap(), record);
    }
}
