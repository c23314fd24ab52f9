//! Where dumps live on the node.
//!
//! ```text
//! <hostDir>/<namespace>/<pod>/<container>/<core file>
//! ```
//!
//! The webhook mounts `<hostDir>/<namespace>` into the pod as one hostPath volume and gives each
//! chosen container the sub-directory `$(COREDOG_POD_NAME)/<container>` through `subPathExpr`:
//! the kubelet expands the pod's real name, which does not exist yet at admission time for pods
//! made from `generateName` (every Deployment, ReplicaSet, Job and DaemonSet pod).
//!
//! The watcher sees `<hostDir>` at its own mount point and maps every file back to its pod with
//! [`DumpLocation::from_relative`]. Only files at exactly the container depth are dumps.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

/// The default root of the layout on every node.
pub const DEFAULT_HOST_DIR: &str = "/data/coredog-system/dumps";
/// The name of the hostPath volume the webhook adds (operators grep for it).
pub const VOLUME_NAME: &str = "coredog-corefile";
/// The downward-API variable that carries the pod's real name into `subPathExpr`.
pub const POD_NAME_ENV: &str = "COREDOG_POD_NAME";
/// The pod field [`POD_NAME_ENV`] is taken from (`valueFrom.fieldRef.fieldPath`).
pub const POD_NAME_FIELD: &str = "metadata.name";

/// Validates the node directory that holds every namespace's dumps (`--host-dir`), returned
/// without a trailing `/`. It goes into every injected pod's hostPath, which the API server
/// refuses when it is relative or holds `..`: a bad value would make every opted-in pod fail
/// to be created, so it is refused when the webhook starts instead.
pub fn parse_host_dir(raw: &str) -> Result<String, LayoutError> {
    let trimmed = raw.strip_suffix('/').unwrap_or(raw);
    let plain = trimmed.strip_prefix('/').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
    });
    if plain && !raw.chars().any(char::is_control) {
        Ok(trimmed.to_owned())
    } else {
        Err(LayoutError::BadHostDir(raw.to_owned()))
    }
}

/// The host directory of one namespace: the source of the hostPath volume.
pub fn namespace_host_dir(host_dir: &str, namespace: &str) -> String {
    [host_dir.trim_end_matches('/'), "/", namespace].concat()
}

/// The `subPathExpr` that places a container in `<pod>/<container>` of the namespace volume.
pub fn sub_path_expr(container: &str) -> String {
    ["$(", POD_NAME_ENV, ")/", container].concat()
}

/// A dump's place in the layout: whose it is, and its file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DumpLocation {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub file_name: String,
}

/// Why a path is not a dump's place. The watcher logs these once and leaves the file alone.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    #[error("not at the container depth <namespace>/<pod>/<container>/<file> (depth {0})")]
    WrongDepth(usize),
    #[error("a path component is not plain (absolute, '.', '..')")]
    NotPlain,
    #[error("a path component is not valid UTF-8")]
    NotUtf8,
    #[error("{what} {value:?} is not a valid Kubernetes name")]
    BadName { what: &'static str, value: String },
    #[error("file name {0:?} contains a control character")]
    BadFileName(String),
    #[error(
        "host directory {0:?} is not an absolute, normalised path below / (no '.', '..' or '//')"
    )]
    BadHostDir(String),
}

/// How deep below the layout root a path is, or `None` when it is not plain.
pub fn depth(relative: &Path) -> Option<usize> {
    let mut count = 0;
    for component in relative.components() {
        match component {
            Component::Normal(_) => count += 1,
            _ => return None,
        }
    }
    Some(count)
}

/// Layout depth of a namespace directory, a pod directory, a container directory and a dump.
pub const NAMESPACE_DEPTH: usize = 1;
pub const POD_DEPTH: usize = 2;
pub const CONTAINER_DEPTH: usize = 3;
pub const DUMP_DEPTH: usize = 4;

impl DumpLocation {
    /// Maps a path relative to the layout root back to the dump's namespace, pod and container.
    pub fn from_relative(relative: &Path) -> Result<Self, LayoutError> {
        let parts: Vec<&OsStr> = relative
            .components()
            .map(|component| match component {
                Component::Normal(part) => Ok(part),
                _ => Err(LayoutError::NotPlain),
            })
            .collect::<Result<_, _>>()?;
        let [namespace, pod, container, file_name] = parts[..] else {
            return Err(LayoutError::WrongDepth(parts.len()));
        };
        let text = |part: &OsStr| part.to_str().map(str::to_owned).ok_or(LayoutError::NotUtf8);
        let location = Self {
            namespace: text(namespace)?,
            pod: text(pod)?,
            container: text(container)?,
            file_name: text(file_name)?,
        };
        check_name("namespace", &location.namespace, is_dns_label)?;
        check_name("pod", &location.pod, is_dns_subdomain)?;
        check_name("container", &location.container, is_dns_label)?;
        if location.file_name.chars().any(char::is_control) {
            return Err(LayoutError::BadFileName(location.file_name));
        }
        Ok(location)
    }

    /// The path of this dump relative to the layout root.
    pub fn relative_path(&self) -> PathBuf {
        [&self.namespace, &self.pod, &self.container, &self.file_name]
            .iter()
            .collect()
    }
}

fn check_name(what: &'static str, value: &str, valid: fn(&str) -> bool) -> Result<(), LayoutError> {
    if valid(value) {
        Ok(())
    } else {
        Err(LayoutError::BadName {
            what,
            value: value.to_owned(),
        })
    }
}

/// RFC 1123 label: what Kubernetes requires of namespace and container names.
pub fn is_dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// RFC 1123 subdomain: what Kubernetes requires of pod names.
pub fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_follow_the_layout() {
        assert_eq!(
            namespace_host_dir("/data/coredog-system/dumps/", "shop"),
            "/data/coredog-system/dumps/shop"
        );
        assert_eq!(sub_path_expr("app"), "$(COREDOG_POD_NAME)/app");
    }

    #[test]
    fn host_dirs_are_absolute_and_normalised() {
        assert_eq!(
            parse_host_dir("/data/coredog-system/dumps/").as_deref(),
            Ok("/data/coredog-system/dumps")
        );
        assert_eq!(parse_host_dir("/cores").as_deref(), Ok("/cores"));
        for bad in [
            "",
            "/",
            "//",
            "/data//",
            "dumps",
            "./dumps",
            "/data/../etc",
            "/data/./dumps",
            "/data//dumps",
            "/data/du\nmps",
        ] {
            assert_eq!(
                parse_host_dir(bad),
                Err(LayoutError::BadHostDir(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_dump_maps_back_to_its_pod() {
        let location = DumpLocation::from_relative(Path::new(
            "shop/web-7d9f-x2x4z/app/core.server.42.node.1700000000",
        ))
        .unwrap();
        assert_eq!(location.namespace, "shop");
        assert_eq!(location.pod, "web-7d9f-x2x4z");
        assert_eq!(location.container, "app");
        assert_eq!(location.file_name, "core.server.42.node.1700000000");
        assert_eq!(
            location.relative_path(),
            Path::new("shop/web-7d9f-x2x4z/app/core.server.42.node.1700000000")
        );
    }

    #[test]
    fn only_the_container_depth_holds_dumps() {
        for (path, depth) in [
            ("shop/pod/core", 3),
            ("shop/pod/app/sub/core", 5),
            ("core", 1),
        ] {
            assert_eq!(
                DumpLocation::from_relative(Path::new(path)),
                Err(LayoutError::WrongDepth(depth))
            );
        }
        assert_eq!(
            DumpLocation::from_relative(Path::new("shop/../app/core")),
            Err(LayoutError::NotPlain)
        );
        assert_eq!(depth(Path::new("a/b/c")), Some(3));
        assert_eq!(depth(Path::new("/a")), None);
    }

    #[test]
    fn hostile_names_are_refused() {
        assert!(matches!(
            DumpLocation::from_relative(Path::new("Shop/pod/app/core")),
            Err(LayoutError::BadName {
                what: "namespace",
                ..
            })
        ));
        assert!(matches!(
            DumpLocation::from_relative(Path::new("shop/pod/app/co\nre")),
            Err(LayoutError::BadFileName(_))
        ));
        use std::os::unix::ffi::OsStrExt;
        let non_utf8 = Path::new(OsStr::from_bytes(b"shop/pod/app/core\xff"));
        assert_eq!(
            DumpLocation::from_relative(non_utf8),
            Err(LayoutError::NotUtf8)
        );
    }

    #[test]
    fn kubernetes_names() {
        assert!(is_dns_label("app-1"));
        assert!(!is_dns_label("-app"));
        assert!(!is_dns_label("App"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("web.v1-abc"));
        assert!(!is_dns_subdomain("web..v1"));
    }
}
