//! Dumps as the watcher stores them (the object and its record), for tests over storage in
//! memory.

use std::collections::BTreeMap;

use coredog_core::object_key::{Compression, CoreKey, DumpId, record_key_for};
use coredog_core::record::DumpRecord;
use kubectl_coredog::storage::memory::MemoryStorage;
use sha2::{Digest, Sha256};

pub const STORE_DIR: &str = "corefiles";

pub struct Stored {
    pub record: DumpRecord,
    pub core: Vec<u8>,
    pub stored: Vec<u8>,
}

pub fn dump(
    id: &str,
    (namespace, pod, container): (&str, &str, &str),
    time: &str,
    node: &str,
    core: Vec<u8>,
    compression: Compression,
) -> Stored {
    let key = CoreKey {
        store_dir: STORE_DIR.into(),
        namespace: namespace.into(),
        pod: pod.into(),
        time: time.parse().unwrap(),
        container: container.into(),
        exe: "/usr/bin/server".into(),
        pid: 42,
        id: DumpId::parse(id).unwrap(),
        compression,
    };
    let stored = match compression {
        Compression::Zstd => zstd::encode_all(core.as_slice(), 1).unwrap(),
        Compression::None => core.clone(),
    };
    let record = DumpRecord {
        schema_version: 1,
        id: key.id.clone(),
        key: key.to_key(),
        time: key.time,
        uploaded_at: key.time,
        namespace: namespace.into(),
        pod: pod.into(),
        container: container.into(),
        pod_uid: Some("5f0c".into()),
        node: node.into(),
        host_ip: Some("10.0.0.7".into()),
        image: Some("shop/web:1.2".into()),
        labels: BTreeMap::from([("app".into(), "web".into())]),
        exe: "/usr/bin/server".into(),
        pid: Some(42),
        signal: Some(11),
        signal_name: Some("SIGSEGV".into()),
        cmdline: Some("server --port 80".into()),
        uid: Some(1000),
        hostname: Some(pod.into()),
        size: core.len() as u64,
        stored_size: stored.len() as u64,
        sha256: hex::encode(Sha256::digest(&core)),
        compression,
        host_path: format!("/corefile/{namespace}/{pod}/{container}/core.server.42"),
    };
    Stored {
        record,
        core,
        stored,
    }
}

pub fn put(storage: &MemoryStorage, stored: &Stored, with_record: bool) {
    storage.put(&stored.record.key, stored.stored.clone());
    if with_record {
        storage.put(&record_key_for(&stored.record.key), stored.record.to_json());
    }
}
