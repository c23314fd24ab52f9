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

/// Longest name of one directory in the path: Linux refuses longer names (`NAME_MAX`), so the
/// container runtime could not create the mount point and the container would never start.
pub const MAX_NAME_LEN: usize = 255;

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
    #[error(
        "path {0:?} contains a control character, an invisible or non-ASCII space character, or surrounding whitespace"
    )]
    BadCharacter(String),
    #[error("path {0:?} has a directory name longer than {MAX_NAME_LEN} bytes")]
    NameTooLong(String),
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
        // Every misleading character but the ASCII controls is outside ASCII.
        let misleading = raw.bytes().any(|b| b.is_ascii_control())
            || (!raw.is_ascii() && raw.chars().any(is_misleading));
        if misleading || raw.starts_with(' ') || raw.ends_with(' ') {
            return Err(MountPathError::BadCharacter(raw.to_owned()));
        }
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(MountPathError::NotAbsolute(raw.to_owned()));
        };
        if rest.is_empty() {
            return Err(MountPathError::Root(raw.to_owned()));
        }
        let (mut normalised, mut names_fit) = (true, true);
        for part in rest.split('/') {
            normalised &= !(part.is_empty() || part == "." || part == "..");
            names_fit &= part.len() <= MAX_NAME_LEN;
        }
        if !normalised {
            return Err(MountPathError::NotNormalised(raw.to_owned()));
        }
        if !names_fit {
            return Err(MountPathError::NameTooLong(raw.to_owned()));
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

/// A character that makes a path read as another one: control characters, spaces other than
/// the ASCII one (no-break, em, ideographic...), and characters that print as nothing (zero
/// width, direction overrides, the byte order mark, variation selectors, tags). A path with one
/// of them looks like `/corefile` in warnings and listings but never matches a core_pattern
/// written by hand.
fn is_misleading(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Whether the container path `mount_path` names the directory `path` (which is normalised):
/// the container runtime resolves `//corefile/.`, `/x/../corefile` or `corefile` (relative to
/// `/`) to the directory the API server sees as another string.
pub fn same_directory(mount_path: &str, path: &str) -> bool {
    // Mounts are mostly spelt plainly, and two plain spellings name one directory only when
    // they are equal: no parts to compare for each mount of each pod.
    let plain = mount_path.starts_with('/')
        && !mount_path.ends_with('/')
        && !mount_path.contains("//")
        && !mount_path.contains("/.");
    if plain {
        return mount_path == path;
    }
    resolved_parts(mount_path)
        .into_iter()
        .eq(path.split('/').filter(|part| !part.is_empty()))
}

/// The directory names `path` comes to from `/`, as the kernel and the container runtime
/// resolve it: `//corefile/./x/..` is `["corefile"]`.
fn resolved_parts(path: &str) -> Vec<&str> {
    let mut resolved: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                resolved.pop();
            }
            name => resolved.push(name),
        }
    }
    resolved
}

/// `path` resolved from `/` and spelt plainly: `//corefile/./x/..` is `/corefile`.
pub fn resolved(path: &str) -> String {
    ["/", &resolved_parts(path).join("/")].concat()
}

/// Whether the absolute `path` is `dir` or lies below it (`/corefiles` is not under `/corefile`).
pub fn is_at_or_under(path: &str, dir: &str) -> bool {
    match path.strip_prefix(dir) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_spelt_another_way_is_the_same() {
        for spelt in [
            "/corefile",
            "//corefile",
            "/corefile/.",
            "/./corefile//",
            "/x/../corefile",
            "corefile",
            "/../corefile",
        ] {
            assert!(same_directory(spelt, "/corefile"), "{spelt}");
        }
        for other in ["/corefiles", "/corefile/x", "/corefile/x/..y", "/"] {
            assert!(!same_directory(other, "/corefile"), "{other}");
        }
    }

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
    fn paths_that_print_as_another_are_refused() {
        for path in [
            "/corefile\u{200B}",
            "/\u{FEFF}corefile",
            "/core\u{202E}elif",
            "/core\u{00A0}file",
            "/core\u{3000}file",
            "/core\u{00AD}file",
            "/core\u{E0041}file",
        ] {
            assert_eq!(
                MountPath::parse(path),
                Err(MountPathError::BadCharacter(path.to_owned())),
                "{path:?}"
            );
        }
        for path in ["/my cores", "/données/cores", "/コア"] {
            assert!(MountPath::parse(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn directory_names_fit_the_kernel_limit() {
        let longest = format!("/data/{}", "a".repeat(MAX_NAME_LEN));
        assert!(MountPath::parse(&longest).is_ok());
        let too_long = format!("/data/{}/cores", "a".repeat(MAX_NAME_LEN + 1));
        assert_eq!(
            MountPath::parse(&too_long),
            Err(MountPathError::NameTooLong(too_long.clone()))
        );
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
