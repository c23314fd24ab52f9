//! Finding a dump by its ID or any unique prefix of it, as git finds a commit.

use coredog_core::object_key::{CoreKey, DumpId, id_index_prefix};
use coredog_store::{ObjectInfo, StoreError};
use tracing::debug;

use super::list::{Filters, Listed, scan};
use super::{DumpStorage, storage_error};
use crate::error::{UserError, user};

/// Candidates named in an ambiguity error.
const MAX_NAMED: usize = 10;

/// `prefix` as IDs are spelt (lowercase), or why it cannot be the start of one.
fn id_prefix(prefix: &str) -> anyhow::Result<String> {
    let wanted = prefix.trim().to_ascii_lowercase();
    if wanted.is_empty()
        || wanted.len() > DumpId::LEN
        || !wanted.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(user(
            format!("{prefix:?} is not a dump ID: IDs are up to 16 hexadecimal digits"),
            "copy the ID column of `kubectl coredog list`",
        ));
    }
    Ok(wanted)
}

/// The one dump whose ID starts with `prefix`.
pub fn pick(prefix: &str, candidates: Vec<Listed>) -> anyhow::Result<Listed> {
    let wanted = id_prefix(prefix)?;
    let mut matching: Vec<Listed> = candidates
        .into_iter()
        .filter(|listed| listed.key.id.as_str().starts_with(&wanted))
        .collect();
    match matching.len() {
        0 => Err(user(
            format!("no dump has an ID starting with {wanted}"),
            "`kubectl coredog list -A` shows every dump and its ID",
        )),
        1 => Ok(matching.remove(0)),
        count => {
            let named: Vec<String> = matching
                .iter()
                .take(MAX_NAMED)
                .map(|listed| {
                    format!(
                        "{} ({}/{}, {})",
                        listed.key.id, listed.key.namespace, listed.key.pod, listed.key.time
                    )
                })
                .collect();
            let more = if count > MAX_NAMED {
                format!(" and {} more", count - MAX_NAMED)
            } else {
                String::new()
            };
            Err(UserError::new(format!(
                "ID prefix {wanted} is ambiguous: it matches {count} dumps: {}{more}",
                named.join(", ")
            ))
            .hint("give more characters of the ID")
            .into())
        }
    }
}

/// Finds the dump `prefix` names among those `filters` select: in the id index (one listing of
/// the entries that start with `prefix`, however many dumps there are), and by listing every
/// dump when the index has none (dumps stored before the index existed, or whose entry was
/// removed). An entry whose dump is gone is ignored.
pub async fn resolve<S: DumpStorage>(
    storage: &S,
    store_dir: &str,
    filters: &Filters,
    prefix: &str,
) -> anyhow::Result<Listed> {
    let wanted = id_prefix(prefix)?;
    let indexed = indexed(storage, store_dir, filters, &wanted)
        .await
        .map_err(|err| storage_error(err, "look the ID up"))?;
    if !indexed.is_empty() {
        let mut chosen = pick(prefix, indexed)?;
        let core_key = chosen.object.key.clone();
        match storage.head(&core_key).await {
            Ok(Some(object)) => {
                chosen.object = object;
                return Ok(chosen);
            }
            Ok(None) => debug!(key = %core_key, "an id index entry names a dump that is gone"),
            Err(err) => return Err(storage_error(err, &format!("read {core_key}"))),
        }
    }
    let candidates = scan(storage, store_dir, filters)
        .await
        .map_err(|err| storage_error(err, "list the dumps"))?;
    pick(prefix, candidates)
}

/// The dumps whose id index entries start with `wanted`. Their objects are not read yet: the
/// size and time come from the one that is picked.
async fn indexed<S: DumpStorage>(
    storage: &S,
    store_dir: &str,
    filters: &Filters,
    wanted: &str,
) -> Result<Vec<Listed>, StoreError> {
    let prefix = id_index_prefix(store_dir, wanted);
    let mut found = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let page = storage
            .list_page(&prefix, continuation.as_deref(), None)
            .await?;
        for object in page.objects {
            let Some(key) = CoreKey::from_id_index_key(store_dir, &object.key) else {
                continue;
            };
            if filters.matches_key(&key) {
                found.push(Listed {
                    object: ObjectInfo {
                        key: key.to_key(),
                        size: 0,
                        last_modified: None,
                    },
                    key,
                    // The entry is written before the record; reading it tells.
                    has_record: true,
                });
            }
        }
        match page.next {
            Some(next) => continuation = Some(next),
            None => return Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use coredog_core::object_key::CoreKey;
    use coredog_store::ObjectInfo;

    use super::*;

    fn listed(id: &str) -> Listed {
        let key = format!("corefiles/shop/web/20261127T100012Z_app_server_42_{id}.core.zst");
        Listed {
            key: CoreKey::parse(&key).unwrap(),
            object: ObjectInfo {
                key,
                size: 1,
                last_modified: None,
            },
            has_record: true,
        }
    }

    #[test]
    fn unique_prefixes_resolve() {
        let candidates = vec![listed("0123456789abcdef"), listed("0124000000000000")];
        assert_eq!(
            pick("0123", candidates.clone()).unwrap().key.id.as_str(),
            "0123456789abcdef"
        );
        assert_eq!(
            pick("0124000000000000", candidates.clone())
                .unwrap()
                .key
                .id
                .as_str(),
            "0124000000000000"
        );
        assert_eq!(
            pick("0123456789ABCDEF", candidates)
                .unwrap()
                .key
                .id
                .as_str(),
            "0123456789abcdef"
        );
    }

    #[test]
    fn ambiguous_and_unknown_prefixes_are_errors() {
        let candidates = vec![listed("0123456789abcdef"), listed("0124000000000000")];
        let err = pick("012", candidates.clone()).unwrap_err();
        let explained = crate::error::explain(&err);
        assert!(
            explained.message.starts_with("ID prefix 012 is ambiguous: it matches 2 dumps: 0123456789abcdef (shop/web, 2026-11-27T10:00:12Z), 0124000000000000"),
            "{explained:?}"
        );
        assert_eq!(
            explained.hint.as_deref(),
            Some("give more characters of the ID")
        );
        let err = pick("ff", candidates.clone()).unwrap_err();
        assert!(format!("{err:#}").contains("no dump has an ID starting with ff"));
        assert!(pick("xyz", candidates.clone()).is_err());
        assert!(pick("", candidates).is_err());
    }
}
