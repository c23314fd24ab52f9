//! How a pod opts in to core dump collection, and how the webhook records what it did.
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     coredog.io/inject: "true"        # required, exactly "true"
//!     coredog.io/path: /corefile       # required, see mount_path
//!     coredog.io/container: app,worker # optional; empty or absent = every container
//! ```

use std::collections::BTreeMap;

use thiserror::Error;

use crate::mount_path::{MountPath, MountPathError};

/// What every CoreDog annotation and label key starts with.
pub const PREFIX: &str = "coredog.io/";
/// `"true"` opts the pod in.
pub const INJECT: &str = "coredog.io/inject";
/// The absolute path at which the chosen containers see their dump directory.
pub const PATH: &str = "coredog.io/path";
/// Comma-separated container names; absent or empty selects all containers and init containers.
pub const CONTAINER: &str = "coredog.io/container";
/// Written by the webhook: the comma-separated containers it gave a dump directory.
pub const INJECTED: &str = "coredog.io/injected";
/// Namespace label that turns the webhook off for a whole namespace.
pub const WEBHOOK_NAMESPACE_LABEL: &str = "coredog.io/webhook";
/// The value of [`WEBHOOK_NAMESPACE_LABEL`] that turns the webhook off.
pub const WEBHOOK_DISABLED: &str = "disabled";
/// The namespace label by which Pod Security admission enforces a level.
pub const POD_SECURITY_ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The Pod Security levels that forbid hostPath volumes: a pod given its dump directory there
/// would be rejected, so the webhook is never sent those namespaces' pods.
pub const LEVELS_FORBIDDING_HOST_PATH: [&str; 2] = ["baseline", "restricted"];

/// Which containers of an opted-in pod receive the dump directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerSelection {
    /// Every container and init container (never ephemeral containers).
    All,
    /// Only these names, in the order given, without duplicates.
    Named(Vec<String>),
}

impl ContainerSelection {
    /// Parses the value of [`CONTAINER`]; blanks around names and empty entries are ignored.
    pub fn parse(raw: &str) -> Self {
        let mut names: Vec<String> = Vec::new();
        for name in raw
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            if !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
        if names.is_empty() {
            Self::All
        } else {
            Self::Named(names)
        }
    }

    pub fn selects(&self, container: &str) -> bool {
        match self {
            Self::All => true,
            Self::Named(names) => names.iter().any(|name| name == container),
        }
    }
}

/// What an opted-in pod asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionRequest {
    pub path: MountPath,
    pub containers: ContainerSelection,
}

/// A pod that asked for injection but cannot have it. The message becomes an admission warning.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OptInError {
    #[error("{INJECT} is {0:?}; it must be \"true\" to opt in")]
    InjectNotTrue(String),
    #[error("{PATH} is required when {INJECT} is \"true\"")]
    MissingPath,
    #[error("{PATH}: {0}")]
    BadPath(#[from] MountPathError),
}

/// Reads a pod's annotations.
///
/// `Ok(None)`: the pod did not opt in (no [`INJECT`], or `"false"`), and nothing is said.
/// `Err`: the pod tried to opt in and the reason it cannot be served is worth telling its owner.
pub fn read_opt_in(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<InjectionRequest>, OptInError> {
    read_opt_in_with(|key| annotations.get(key).map(String::as_str))
}

/// [`read_opt_in`] over any annotation lookup (the webhook reads borrowed annotations).
pub fn read_opt_in_with<'a>(
    annotation: impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<InjectionRequest>, OptInError> {
    let Some(inject) = annotation(INJECT) else {
        return Ok(None);
    };
    match inject {
        "true" => {}
        other if is_opt_out(other) => return Ok(None),
        // Said back in a warning and a log line: a few words of it, not all of a huge value.
        other => return Err(OptInError::InjectNotTrue(shortened(other, 64))),
    }
    let raw_path = annotation(PATH).ok_or(OptInError::MissingPath)?;
    let path = MountPath::parse(raw_path)?;
    let containers =
        annotation(CONTAINER).map_or(ContainerSelection::All, ContainerSelection::parse);
    Ok(Some(InjectionRequest { path, containers }))
}

/// Whether a `coredog.io/inject` value says no: empty, or `false` however it is spelt
/// (`False`, ` FALSE `), which is no reason to warn. Anything else but `"true"` asked for
/// injection and is told why it got none.
pub fn is_opt_out(inject: &str) -> bool {
    inject.is_empty() || inject.trim().eq_ignore_ascii_case("false")
}

/// `text`, cut to at most `limit` characters with `…` where it was cut.
fn shortened(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opt_out_is_silent_and_a_stray_value_said_in_brief() {
        for spelt in ["false", "False", "FALSE", " false "] {
            assert_eq!(
                read_opt_in(&annotations(&[(INJECT, spelt)])),
                Ok(None),
                "{spelt:?}"
            );
        }
        let long = "x".repeat(10_000);
        let Err(OptInError::InjectNotTrue(said)) = read_opt_in(&annotations(&[(INJECT, &long)]))
        else {
            panic!("a stray value is an error");
        };
        assert_eq!(said.chars().count(), 65);
    }

    #[test]
    fn every_key_is_under_the_prefix() {
        for key in [INJECT, PATH, CONTAINER, INJECTED, WEBHOOK_NAMESPACE_LABEL] {
            assert!(key.starts_with(PREFIX), "{key}");
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pods_without_the_annotation_are_not_opted_in() {
        assert_eq!(read_opt_in(&annotations(&[])), Ok(None));
        assert_eq!(read_opt_in(&annotations(&[(PATH, "/corefile")])), Ok(None));
        assert_eq!(read_opt_in(&annotations(&[(INJECT, "false")])), Ok(None));
    }

    #[test]
    fn opt_in_needs_exactly_true_and_a_path() {
        assert_eq!(
            read_opt_in(&annotations(&[(INJECT, "yes"), (PATH, "/corefile")])),
            Err(OptInError::InjectNotTrue("yes".to_owned()))
        );
        assert_eq!(
            read_opt_in(&annotations(&[(INJECT, "true")])),
            Err(OptInError::MissingPath)
        );
        assert!(matches!(
            read_opt_in(&annotations(&[(INJECT, "true"), (PATH, "/etc")])),
            Err(OptInError::BadPath(MountPathError::Reserved { .. }))
        ));
    }

    #[test]
    fn a_valid_opt_in_selects_containers() {
        let request = read_opt_in(&annotations(&[
            (INJECT, "true"),
            (PATH, "/corefile"),
            (CONTAINER, " app, worker,,app "),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(request.path.as_str(), "/corefile");
        assert_eq!(
            request.containers,
            ContainerSelection::Named(vec!["app".to_owned(), "worker".to_owned()])
        );
        assert!(request.containers.selects("worker"));
        assert!(!request.containers.selects("sidecar"));
    }

    #[test]
    fn an_empty_container_list_selects_all() {
        assert_eq!(ContainerSelection::parse(""), ContainerSelection::All);
        assert_eq!(ContainerSelection::parse(" , "), ContainerSelection::All);
        assert!(ContainerSelection::All.selects("anything"));
    }
}
