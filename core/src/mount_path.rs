//! Which in-container paths may receive the dump directory.
//!
//! The path comes from a pod annotation, so it is tenant input: it must be an absolute, already
//! normalised path, and it must not shadow a directory the container's own system relies on
//! (mounting a host directory over `/etc` or `/usr` would break the container or hand it a
//! writable system directory).

use std::fmt;

use thiserror::Error;

/// Directories that a dump directory may neither replace nor be mounted under.
pub const FORBIDDEN_PREFIXES: &[&str] = &[
    "/etc", "/usr", "/bin", "/sbin", "/var", "/root", "/home", "/boot", "/proc", "/sys", "/dev",
    "/lib", "/lib64", "/run",
];

/// Longest accepted path; far more than any real dump directory needs, and it keeps the
/// annotation from carrying megabytes into every log line.
pub const MAX_LEN: usize = 1024;

/// A validated absolute mount path such as `/corefile`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountPath(String);

/// Why a mount path was refused. The message is shown to the user as an admission warning.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MountPathError {
    #[error("path is empty")]
    Empty,
    #[error("path is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("path {0:?} is not absolute (it must start with '/')")]
    NotAbsolute(String),
    #[error("path {0:?} contains a control character or surrounding whitespace")]
    BadCharacter(String),
    #[error("path {0:?} is not normalised (no '.', '..', '//' or trailing '/')")]
    NotNormalised(String),
    #[error("path {0:?} would replace the container's root directory")]
    Root(String),
    #[error("path {path:?} is {prefix} or under it, which is reserved for the container's system")]
    Reserved { path: String, prefix: &'static str },
}

impl MountPath {
    /// Validates `raw` as a dump directory mount path.
    pub fn parse(raw: &str) -> Result<Self, MountPathError> {
        if raw.is_empty() {
            return Err(MountPathError::Empty);
        }
        if raw.len() > MAX_LEN {
            return Err(MountPathError::TooLong);
        }
        if raw.chars().any(char::is_control) || raw.trim() != raw {
            return Err(MountPathError::BadCharacter(raw.to_owned()));
        }
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(MountPathError::NotAbsolute(raw.to_owned()));
        };
        if rest.is_empty() {
            return Err(MountPathError::Root(raw.to_owned()));
        }
        if rest
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(MountPathError::NotNormalised(raw.to_owned()));
        }
        if let Some(prefix) = FORBIDDEN_PREFIXES
            .iter()
            .find(|prefix| is_at_or_under(raw, prefix))
        {
            return Err(MountPathError::Reserved {
                path: raw.to_owned(),
                prefix,
            });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` (an absolute path) is this path or lies below it.
    pub fn contains(&self, other: &str) -> bool {
        is_at_or_under(other, &self.0)
    }
}

impl fmt::Display for MountPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_at_or_under(path: &str, dir: &str) -> bool {
    match path.strip_prefix(dir) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommended_paths_pass() {
        for path in [
            "/corefile",
            "/data/dumps",
            "/app/coredumps",
            "/opt/app/cores",
            "/varnish",
        ] {
            assert_eq!(
                MountPath::parse(path).map(|p| p.0),
                Ok(path.to_owned()),
                "{path}"
            );
        }
    }

    #[test]
    fn reserved_directories_and_their_children_are_refused() {
        for prefix in FORBIDDEN_PREFIXES {
            assert!(matches!(
                MountPath::parse(prefix),
                Err(MountPathError::Reserved { .. })
            ));
            let child = format!("{prefix}/cores");
            assert!(matches!(
                MountPath::parse(&child),
                Err(MountPathError::Reserved { .. })
            ));
        }
        assert_eq!(
            MountPath::parse("/"),
            Err(MountPathError::Root("/".to_owned()))
        );
    }

    #[test]
    fn unnormalised_paths_are_refused() {
        for path in [
            "/corefile/",
            "//corefile",
            "/a//b",
            "/a/./b",
            "/a/../etc",
            "/..",
            "/.",
            "/corefile/..",
        ] {
            assert!(
                matches!(
                    MountPath::parse(path),
                    Err(MountPathError::NotNormalised(_))
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(MountPath::parse(""), Err(MountPathError::Empty));
        assert!(matches!(
            MountPath::parse("corefile"),
            Err(MountPathError::NotAbsolute(_))
        ));
        assert!(matches!(
            MountPath::parse("/core\nfile"),
            Err(MountPathError::BadCharacter(_))
        ));
        assert!(matches!(
            MountPath::parse("/corefile "),
            Err(MountPathError::BadCharacter(_))
        ));
        assert!(matches!(
            MountPath::parse(" /corefile"),
            Err(MountPathError::BadCharacter(_))
        ));
        assert!(matches!(
            MountPath::parse("/core\0"),
            Err(MountPathError::BadCharacter(_))
        ));
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(MountPath::parse(&long), Err(MountPathError::TooLong));
    }

    #[test]
    fn contains_respects_component_boundaries() {
        let path = MountPath::parse("/corefile").unwrap();
        assert!(path.contains("/corefile"));
        assert!(path.contains("/corefile/core.1"));
        assert!(!path.contains("/corefiles/core.1"));
    }

    proptest::proptest! {
        #[test]
        fn accepted_paths_are_absolute_normal_and_unreserved(raw in "\\PC{0,40}") {
            if let Ok(path) = MountPath::parse(&raw) {
                proptest::prop_assert!(path.as_str().starts_with('/'));
                proptest::prop_assert!(!path.as_str().split('/').skip(1).any(|c| c.is_empty() || c == "." || c == ".."));
                proptest::prop_assert!(!FORBIDDEN_PREFIXES.iter().any(|p| is_at_or_under(path.as_str(), p)));
            }
        }
    }
}
