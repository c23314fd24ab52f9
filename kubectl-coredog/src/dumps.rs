//! `list`, `info` and `fetch` over an opened storage.

use std::path::PathBuf;

use jiff::Timestamp;

use crate::cli::{FetchArgs, InfoArgs, ListArgs, OutputFormat};
use crate::error::user;
use crate::fetch::{FetchOptions, default_file_name, fetch};
use crate::kube_client::Scope;
use crate::output::{Console, bytes_bar};
use crate::storage::list::{self, Dump, Filters};
use crate::storage::resolve::resolve;
use crate::storage::{DumpStorage, info, storage_error};

fn nothing_found(scope: &Scope) -> String {
    match scope {
        Scope::Namespace(namespace) => format!("No dumps found in {namespace} namespace."),
        Scope::All => "No dumps found.".to_owned(),
    }
}

pub async fn list_command<S: DumpStorage>(
    storage: &S,
    store_dir: &str,
    args: &ListArgs,
    scope: &Scope,
    now: Timestamp,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let filters = Filters::from_args(&args.filters, scope, now)?;
    let listing = list::list(storage, store_dir, &filters, args.limit())
        .await
        .map_err(|err| storage_error(err, "list the dumps"))?;
    let table = matches!(args.output, OutputFormat::Table | OutputFormat::Wide);
    if listing.dumps.is_empty() && table {
        console.note(&nothing_found(scope));
        return Ok(());
    }
    console.print(&list::render(&listing.dumps, args.output)?)?;
    if listing.matched > listing.dumps.len() {
        console.note(&format!(
            "showing the newest {} of {} dumps; --limit 0 shows all",
            listing.dumps.len(),
            listing.matched
        ));
    }
    Ok(())
}

/// The dump an ID prefix names, with its record.
async fn find<S: DumpStorage>(
    storage: &S,
    store_dir: &str,
    scope: &Scope,
    id: &str,
) -> anyhow::Result<Dump> {
    let filters = Filters {
        namespace: scope.namespace().map(str::to_owned),
        ..Filters::default()
    };
    let listed = resolve(storage, store_dir, &filters, id).await?;
    let record = list::read_record(storage, &listed).await;
    Ok(Dump { listed, record })
}

pub async fn info_command<S: DumpStorage>(
    storage: &S,
    store_dir: &str,
    args: &InfoArgs,
    scope: &Scope,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let dump = find(storage, store_dir, scope, &args.id).await?;
    console.print(&info::render(&dump, args.output)?)
}

/// Where `fetch` looks: `listing` for `--latest` (like `list`), `ids` for an ID (every
/// namespace unless `-n` was given: IDs are unique across namespaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchScopes {
    pub listing: Scope,
    pub ids: Scope,
}

pub async fn fetch_command<S: DumpStorage>(
    storage: &S,
    store_dir: &str,
    args: &FetchArgs,
    scopes: &FetchScopes,
    now: Timestamp,
    options: FetchOptions,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let scope = &scopes.listing;
    let dump = match &args.id {
        Some(_) if !args.filters.is_empty() => {
            return Err(user(
                "--pod, --container, --exe, --node, --since and --until choose a dump with --latest; an ID names one already",
                "drop the filters, or drop the ID and add --latest",
            ));
        }
        Some(id) => find(storage, store_dir, &scopes.ids, id).await?,
        None => {
            let filters = Filters::from_args(&args.filters, scope, now)?;
            let listing = list::list(storage, store_dir, &filters, 1)
                .await
                .map_err(|err| storage_error(err, "list the dumps"))?;
            let newest = listing.dumps.into_iter().next().ok_or_else(|| {
                user(
                    nothing_found(scope).trim_end_matches('.').to_owned(),
                    "`kubectl coredog list -A` shows every dump",
                )
            })?;
            if abandoned(&newest, now) {
                let listing = list::list(storage, store_dir, &filters, LATEST_CANDIDATES)
                    .await
                    .map_err(|err| storage_error(err, "list the dumps"))?;
                newest_complete(listing.dumps, now, console).unwrap_or(newest)
            } else {
                newest
            }
        }
    };
    let file_name = match &dump.record {
        Some(record) => default_file_name(record, args.raw),
        None => format!("{}.core", dump.id()),
    };
    // Into a directory as `cp` does: under the dump's own name.
    let output = match &args.output {
        Some(dir) if dir.is_dir() => dir.join(file_name),
        Some(path) => path.clone(),
        None => PathBuf::from(file_name),
    };
    let progress = bytes_bar(0, &format!("fetching {}", dump.id()));
    let options = FetchOptions {
        raw: args.raw,
        force: args.force,
        ..options
    };
    // Interrupted, the fetch is dropped, which removes its temporary file and cuts the part
    // file back to what was verified, for the next run to continue from.
    let result = tokio::select! {
        result = fetch(storage, &dump, &output, &options, &progress) => result,
        () = interrupted() => Err(user(
            "interrupted",
            format!(
                "run the same command again: it continues from {}",
                crate::fetch::part_path(&output).display()
            ),
        )),
    };
    progress.finish_and_clear();
    let fetched = result?;
    let what = match (&dump.record, fetched.compressed) {
        (Some(record), true) => format!(
            "stored bytes of {}/{} {} (compressed; SHA-256 of the core verified)",
            record.namespace, record.pod, record.container
        ),
        (Some(record), false) => format!(
            "core of {}/{} {} ({}), SHA-256 verified",
            record.namespace,
            record.pod,
            record.container,
            record.signal_name.as_deref().unwrap_or("signal unknown")
        ),
        (None, ..) => "dump".to_owned(),
    };
    console.line(&format!(
        "{}: {} {what}",
        fetched.path.display(),
        coredog_core::template::human_bytes(fetched.size)
    ))
}

/// How long a dump may go without its record before `fetch --latest` takes it for one whose
/// storing never finished (the watcher writes the record right after the core).
const RECORD_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// The dumps `fetch --latest` looks through for a complete one.
const LATEST_CANDIDATES: usize = 20;

/// Whether `dump` has no record and has had none for longer than [`RECORD_GRACE`].
fn abandoned(dump: &Dump, now: Timestamp) -> bool {
    dump.record.is_none()
        && dump.listed.object.last_modified.is_some_and(|stored| {
            let age = now.duration_since(stored);
            age.is_positive() && age.unsigned_abs() > RECORD_GRACE
        })
}

/// The newest dump of `dumps` (newest first) with its record, passing over those whose storing
/// never finished, with a note for each; `None` when one still being stored comes first, or
/// none is complete.
fn newest_complete(dumps: Vec<Dump>, now: Timestamp, console: &mut Console<'_>) -> Option<Dump> {
    let mut passed_over = Vec::new();
    for dump in dumps {
        if dump.record.is_some() {
            for id in passed_over {
                console.note(&format!(
                    "passing over dump {id}: it has had no record for over {} minutes (its storing never finished)",
                    RECORD_GRACE.as_secs() / 60
                ));
            }
            return Some(dump);
        }
        if !abandoned(&dump, now) {
            return None;
        }
        passed_over.push(dump.id().to_owned());
    }
    None
}

/// Ctrl-C, a closed terminal (SIGHUP) or a `kill` (SIGTERM). A signal that cannot be listened
/// for never comes.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let one = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut signals) => {
                signals.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = one(SignalKind::interrupt()) => {}
        () = one(SignalKind::terminate()) => {}
        () = one(SignalKind::hangup()) => {}
    }
}

#[cfg(test)]
mod tests {
    /// A closed terminal stops a fetch as Ctrl-C does (and leaves the process alive to clean
    /// up after it).
    #[tokio::test]
    async fn a_hangup_interrupts() {
        let waiting = tokio::spawn(super::interrupted());
        // Listening before the signal comes.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let sent = std::process::Command::new("kill")
            .arg("-HUP")
            .arg(std::process::id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("not interrupted within 10 s")
            .unwrap();
    }
}
