//! Where a dump and its record live in storage.
//!
//! ```text
//! <StoreDir>/<namespace>/<pod>/<UTC time>_<container>_<exe>_<pid>_<id>.core.zst
//! <StoreDir>/<namespace>/<pod>/<UTC time>_<container>_<exe>_<pid>_<id>.core.zst.json
//! ```
//!
//! The record (`.json`) is written last: a dump without its record is incomplete. The id is
//! derived from what identifies the file on its node, so shipping the same file again after a
//! crash of the watcher overwrites the same two objects instead of adding a duplicate.
//!
//! A key carries enough to list dumps without reading their records (time, namespace, pod,
//! container, exe, pid, id), and [`CoreKey::parse`] reads it back.
//!
//! Finding a dump by its id must not mean listing every dump, so each dump also has an empty
//! entry in an id index, written before its record:
//!
//! ```text
//! <StoreDir>/.ids/<id>_<namespace>_<pod>_<UTC time>_<container>_<exe>_<pid>_<id>.core.zst.id
//! ```
//!
//! Namespaces and pod names are DNS names, without `_`, so the entry reads back unambiguously;
//! the entries are one flat directory, which S3-compatible servers list as cheaply as any. The
//! `.id` suffix keeps them out of anything that looks for `*.core.zst` or `*.core` files.
//! Listing `<StoreDir>/.ids/<id or a prefix of it>` answers in one request however many dumps
//! there are. Namespaces are DNS labels and never start with a dot, so the index cannot collide
//! with one, and it sorts before every namespace: a listing of all namespaces starts after it
//! ([`after_id_index`]). It lives under `StoreDir`, so lifecycle rules that expire dumps expire
//! their entries too.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Suffix of every record object.
pub const RECORD_SUFFIX: &str = ".json";
const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";
const MAX_EXE_LEN: usize = 64;
/// The longest id index entry name written (see [`CoreKey::id_index_key_that_fits`]).
pub const MAX_ID_INDEX_NAME: usize = 200;

/// The short, stable identity of one dump: 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DumpId(String);

impl DumpId {
    pub const LEN: usize = 16;

    /// Derives the id from the file's identity on its node: the same file found again (after a
    /// restart, or by a rescan) gets the same id.
    pub fn derive(node: &str, host_path: &str, size: u64, mtime_nanos: i128) -> Self {
        let mut hasher = Sha256::new();
        for part in [node.as_bytes(), host_path.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.update(size.to_le_bytes());
        hasher.update(mtime_nanos.to_le_bytes());
        let digest = hasher.finalize();
        Self(hex::encode(&digest[..Self::LEN / 2]))
    }

    /// Accepts an id as printed by `kubectl coredog list`.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == Self::LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DumpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the dump's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    None,
}

impl Compression {
    /// The ending of the dump object's key.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Zstd => ".core.zst",
            Self::None => ".core",
        }
    }
}

/// The normalised `StoreDir`: no leading or trailing '/', empty for the bucket's root.
pub fn store_prefix(store_dir: &str) -> String {
    store_dir.trim_matches('/').to_owned()
}

/// The prefix under which every dump of a namespace (and optionally a pod) is stored.
pub fn listing_prefix(store_dir: &str, namespace: Option<&str>, pod: Option<&str>) -> String {
    let mut prefix = store_prefix(store_dir);
    for part in [namespace, pod].into_iter().map_while(|part| part) {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
    }
    if !prefix.is_empty() {
        prefix.push('/');
    }
    prefix
}

/// The id index's directory under `StoreDir`.
pub const ID_INDEX_DIR: &str = ".ids";
/// Suffix of every id index entry.
pub const ID_INDEX_SUFFIX: &str = ".id";

/// The prefix of the id index entries of every dump whose id starts with `id_prefix`.
pub fn id_index_prefix(store_dir: &str, id_prefix: &str) -> String {
    format!(
        "{}{ID_INDEX_DIR}/{id_prefix}",
        listing_prefix(store_dir, None, None)
    )
}

/// Where a listing of every namespace under `StoreDir` starts (S3's `start-after`): past the
/// id index, whose keys continue with hex digits only, and before any namespace, which starts
/// with a lowercase letter or a digit.
pub fn after_id_index(store_dir: &str) -> String {
    format!("{}{ID_INDEX_DIR}/~", listing_prefix(store_dir, None, None))
}

/// The fields a dump object's key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreKey {
    pub store_dir: String,
    pub namespace: String,
    pub pod: String,
    pub time: Timestamp,
    pub container: String,
    pub exe: String,
    pub pid: u32,
    pub id: DumpId,
    pub compression: Compression,
}

impl CoreKey {
    /// The dump object's key. `exe` is made safe for a key here, so any executable name goes.
    pub fn to_key(&self) -> String {
        let file = format!(
            "{}_{}_{}_{}_{}{}",
            self.time.strftime(TIME_FORMAT),
            self.container,
            safe_exe(&self.exe),
            self.pid,
            self.id,
            self.compression.extension()
        );
        let mut key = listing_prefix(&self.store_dir, Some(&self.namespace), Some(&self.pod));
        key.push_str(&file);
        key
    }

    /// The record object's key: the dump's key with `.json` appended.
    pub fn record_key(&self) -> String {
        record_key_for(&self.to_key())
    }

    /// [`Self::id_index_key`] when its name is short enough to be a file name on a share: the
    /// namespace, pod, container and executable it repeats can make it longer than the 255
    /// bytes a filesystem allows (a CFS write adds a temporary name's ~30 more). A dump without
    /// its entry is found by listing instead.
    pub fn id_index_key_that_fits(&self) -> Option<String> {
        let key = self.id_index_key();
        let name_len = key.rsplit('/').next().map_or(0, str::len);
        (name_len <= MAX_ID_INDEX_NAME).then_some(key)
    }

    /// The dump's entry in the id index (see the module documentation).
    pub fn id_index_key(&self) -> String {
        let key = self.to_key();
        let file = key.rsplit('/').next().unwrap_or_default();
        format!(
            "{}_{}_{}_{file}{ID_INDEX_SUFFIX}",
            id_index_prefix(&self.store_dir, self.id.as_str()),
            self.namespace,
            self.pod
        )
    }

    /// Reads an id index entry back to the dump it names. `None` when `key` is not an entry of
    /// the index under `store_dir`, or names a dump of another id.
    pub fn from_id_index_key(store_dir: &str, key: &str) -> Option<Self> {
        let entry = key
            .strip_prefix(&id_index_prefix(store_dir, ""))?
            .strip_suffix(ID_INDEX_SUFFIX)?;
        let (id, rest) = entry.split_once('_')?;
        let (namespace, rest) = rest.split_once('_')?;
        let (pod, file) = rest.split_once('_')?;
        let mut core = listing_prefix(store_dir, Some(namespace), Some(pod));
        core.push_str(file);
        let core = Self::parse(&core)?;
        (core.id.as_str() == id && core.store_dir == store_prefix(store_dir)).then_some(core)
    }

    /// Reads a dump object's key back. `None` for anything that is not one (records included).
    pub fn parse(key: &str) -> Option<Self> {
        let (compression, stem) =
            if let Some(stem) = key.strip_suffix(Compression::Zstd.extension()) {
                (Compression::Zstd, stem)
            } else {
                (
                    Compression::None,
                    key.strip_suffix(Compression::None.extension())?,
                )
            };
        let mut parts = stem.rsplitn(4, '/');
        let file = parts.next()?;
        let pod = parts.next()?.to_owned();
        let namespace = parts.next()?.to_owned();
        let store_dir = parts.next().unwrap_or_default().to_owned();

        let (time, rest) = file.split_once('_')?;
        let (container, rest) = rest.split_once('_')?;
        let (rest, id) = rest.rsplit_once('_')?;
        let (exe, pid) = rest.rsplit_once('_')?;
        let time = jiff::fmt::strtime::parse(TIME_FORMAT, time)
            .ok()?
            .to_datetime()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp();
        Some(Self {
            store_dir,
            namespace,
            pod,
            time,
            container: container.to_owned(),
            exe: exe.to_owned(),
            pid: pid.parse().ok()?,
            id: DumpId::parse(id)?,
            compression,
        })
    }
}

/// The record object's key for a dump object's key.
pub fn record_key_for(core_key: &str) -> String {
    format!("{core_key}{RECORD_SUFFIX}")
}

/// An executable name as it may appear in a key: ASCII letters, digits, `.`, `-`, `_` and `+`;
/// anything else becomes `-`. Never empty.
pub fn safe_exe(exe: &str) -> String {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    let safe: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_EXE_LEN)
        .collect();
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        "unknown".to_owned()
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CoreKey {
        CoreKey {
            store_dir: "corefiles".to_owned(),
            namespace: "shop".to_owned(),
            pod: "web-7d9f-x2x4z".to_owned(),
            time: "2026-11-27T10:00:12Z".parse().unwrap(),
            container: "app".to_owned(),
            exe: "/usr/bin/my_server".to_owned(),
            pid: 42,
            id: DumpId::derive("node-1", "/corefile/shop/web/app/core", 10, 5),
            compression: Compression::Zstd,
        }
    }

    #[test]
    fn an_id_index_entry_fits_a_file_name_or_is_not_written() {
        assert_eq!(key().id_index_key_that_fits(), Some(key().id_index_key()));
        let long = CoreKey {
            namespace: "n".repeat(63),
            pod: "p".repeat(63),
            container: "c".repeat(63),
            exe: format!("/{}", "e".repeat(80)),
            ..key()
        };
        assert!(long.to_key().rsplit('/').next().unwrap().len() < 200);
        assert_eq!(long.id_index_key_that_fits(), None);
    }

    #[test]
    fn keys_follow_the_layout_and_parse_back() {
        let key = key();
        let text = key.to_key();
        assert_eq!(
            text,
            format!(
                "corefiles/shop/web-7d9f-x2x4z/20261127T100012Z_app_my_server_42_{}.core.zst",
                key.id
            )
        );
        assert_eq!(key.record_key(), format!("{text}.json"));
        let mut parsed = CoreKey::parse(&text).unwrap();
        parsed.exe = key.exe.clone();
        assert_eq!(parsed, key);
        assert_eq!(CoreKey::parse(&key.record_key()), None);
    }

    #[test]
    fn id_index_entries_name_their_dump_and_sort_before_every_namespace() {
        let key = key();
        let entry = key.id_index_key();
        assert_eq!(
            entry,
            format!(
                "corefiles/.ids/{}_shop_web-7d9f-x2x4z_20261127T100012Z_app_my_server_42_{}.core.zst.id",
                key.id, key.id
            )
        );
        assert!(entry.starts_with(&id_index_prefix("corefiles", &key.id.as_str()[..4])));
        let mut back = CoreKey::from_id_index_key("corefiles", &entry).unwrap();
        back.exe = key.exe.clone();
        assert_eq!(back, key);
        // Not an entry: the dump itself, another StoreDir, an id that does not match.
        assert_eq!(CoreKey::from_id_index_key("corefiles", &key.to_key()), None);
        assert_eq!(CoreKey::from_id_index_key("other", &entry), None);
        let forged = entry.replacen(key.id.as_str(), "0000000000000000", 1);
        assert_eq!(CoreKey::from_id_index_key("corefiles", &forged), None);

        let after = after_id_index("corefiles");
        assert!(entry < after);
        let ffff = id_index_prefix("corefiles", "ffffffffffffffff") + "_z_z_z";
        assert!(ffff < after);
        for namespace in ["0ns", "a", "default", "kube-system"] {
            assert!(listing_prefix("corefiles", Some(namespace), None) > after);
        }

        let mut root = key.clone();
        root.store_dir = String::new();
        let entry = root.id_index_key();
        assert!(entry.starts_with(".ids/"), "{entry}");
        assert_eq!(
            CoreKey::from_id_index_key("", &entry).map(|k| k.to_key()),
            Some(root.to_key())
        );
        assert!(entry < after_id_index(""));
    }

    #[test]
    fn keys_without_store_dir_or_compression() {
        let mut key = key();
        key.store_dir = "/".to_owned();
        key.compression = Compression::None;
        key.exe = "a b/c\u{e9}".to_owned();
        let text = key.to_key();
        assert!(text.starts_with("shop/web-7d9f-x2x4z/"), "{text}");
        assert!(text.ends_with(".core"), "{text}");
        let parsed = CoreKey::parse(&text).unwrap();
        assert_eq!(parsed.store_dir, "");
        assert_eq!(parsed.exe, "c-");
        assert_eq!(parsed.compression, Compression::None);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = DumpId::derive("n", "/p", 1, 2);
        assert_eq!(a, DumpId::derive("n", "/p", 1, 2));
        assert_ne!(a, DumpId::derive("n", "/p", 1, 3));
        assert_ne!(
            DumpId::derive("ab", "c", 1, 2),
            DumpId::derive("a", "bc", 1, 2)
        );
        assert_eq!(a.as_str().len(), DumpId::LEN);
        assert_eq!(DumpId::parse(a.as_str()), Some(a));
        assert_eq!(DumpId::parse("xyz"), None);
    }

    #[test]
    fn listing_prefixes() {
        assert_eq!(listing_prefix("corefiles/", None, None), "corefiles/");
        assert_eq!(listing_prefix("", Some("shop"), None), "shop/");
        assert_eq!(
            listing_prefix("a/b", Some("shop"), Some("web")),
            "a/b/shop/web/"
        );
        assert_eq!(listing_prefix("", None, None), "");
    }

    #[test]
    fn exe_names_are_made_safe() {
        assert_eq!(safe_exe(""), "unknown");
        assert_eq!(safe_exe(".."), "unknown");
        assert_eq!(safe_exe("/bin/sh"), "sh");
        assert_eq!(safe_exe(&"x".repeat(100)).len(), MAX_EXE_LEN);
    }

    proptest::proptest! {
        #[test]
        fn any_exe_round_trips_to_its_safe_form(exe in "\\PC{0,80}", pid in 0u32..) {
            let mut key = key();
            key.exe = exe.clone();
            key.pid = pid;
            let parsed = CoreKey::parse(&key.to_key()).expect("a key we built parses");
            proptest::prop_assert_eq!(parsed.exe, safe_exe(&exe));
            proptest::prop_assert_eq!(parsed.pid, pid);
        }
    }
}
