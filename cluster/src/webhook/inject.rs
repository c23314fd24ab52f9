//! What the webhook adds to an opted-in pod, as a JSONPatch. Pure: a pod in, a plan out.
//!
//! For the selected containers it adds one hostPath volume (`coredog-corefile` →
//! `<hostDir>/<namespace>`), and in each container the downward-API variable
//! `COREDOG_POD_NAME` and a mount of that volume at the annotated path with
//! `subPathExpr: $(COREDOG_POD_NAME)/<container>`. Whatever is already there is left alone, so
//! applying the plan to its own result adds nothing (reinvocation, re-admission).
//!
//! A container that cannot be served (another volume already mounted at the path, or its own
//! `COREDOG_POD_NAME`) is skipped with a warning; the rest of the pod is still injected.

use std::fmt;
use std::io::Write as _;

use coredog_core::annotations::{ContainerSelection, INJECTED, InjectionRequest};
use coredog_core::layout::{
    POD_NAME_ENV, POD_NAME_FIELD, VOLUME_NAME, namespace_host_dir, sub_path_expr,
};
use coredog_core::mount_path::same_directory;

use super::pod_view::{ContainerView, PodView, VolumeView};
use super::review::write_json_str;

/// Why a pod or a container got nothing; the label of the skip metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    NotOptedIn,
    NotPodCreate,
    InvalidAnnotation,
    MountConflict,
    EnvConflict,
    VolumeConflict,
    NoMatchingContainer,
    AlreadyInjected,
    InternalError,
}

impl SkipReason {
    /// Every reason, in declaration order (`reason as usize` is its index).
    pub const ALL: [Self; 9] = [
        Self::NotOptedIn,
        Self::NotPodCreate,
        Self::InvalidAnnotation,
        Self::MountConflict,
        Self::EnvConflict,
        Self::VolumeConflict,
        Self::NoMatchingContainer,
        Self::AlreadyInjected,
        Self::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOptedIn => "not_opted_in",
            Self::NotPodCreate => "not_pod_create",
            Self::InvalidAnnotation => "invalid_annotation",
            Self::MountConflict => "mount_conflict",
            Self::EnvConflict => "env_conflict",
            Self::VolumeConflict => "volume_conflict",
            Self::NoMatchingContainer => "no_matching_container",
            Self::AlreadyInjected => "already_injected",
            Self::InternalError => "internal_error",
        }
    }
}

/// JSONPatch `add` operations, written as JSON while they are planned: building typed values
/// and serialising them cost more than the rest of a review.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Patch {
    /// `[` and the operations so far, comma-separated; empty before the first.
    json: Vec<u8>,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }

    /// Adds the value `write_value` writes at `path`. Paths are written as they are: every
    /// path the webhook adds at is made of field names, indices, `-` and
    /// `coredog.io~1injected`, none of which needs escaping in JSON.
    fn add(&mut self, path: fmt::Arguments<'_>, write_value: impl FnOnce(&mut Vec<u8>)) {
        self.separate();
        let json = &mut self.json;
        json.extend_from_slice(br#"{"op":"add","path":""#);
        // Writing into a Vec cannot fail.
        let _ = json.write_fmt(path);
        json.extend_from_slice(br#"","value":"#);
        write_value(json);
        json.push(b'}');
    }

    /// Adds an item to the list at `list`, creating the list when the pod has none.
    fn append(
        &mut self,
        list: fmt::Arguments<'_>,
        list_exists: bool,
        write_item: impl FnOnce(&mut Vec<u8>),
    ) {
        if list_exists {
            self.add(format_args!("{list}/-"), write_item);
        } else {
            self.add(list, |json| {
                json.push(b'[');
                write_item(json);
                json.push(b']');
            });
        }
    }

    /// Opens the list before the first operation, separates the next ones.
    fn separate(&mut self) {
        if self.json.is_empty() {
            // Most patches fit; growing from nothing took a handful of copies.
            self.json.reserve(1024);
            self.json.push(b'[');
        } else {
            self.json.push(b',');
        }
    }

    /// The JSONPatch document; `None` when there is nothing to add.
    pub fn into_json(mut self) -> Option<Vec<u8>> {
        if self.json.is_empty() {
            return None;
        }
        self.json.push(b']');
        Some(self.json)
    }
}

/// `COREDOG_POD_NAME` from the downward API.
fn write_pod_name_env(json: &mut Vec<u8>) {
    json.extend_from_slice(br#"{"name":"#);
    write_json_str(json, POD_NAME_ENV);
    json.extend_from_slice(br#","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"#);
    write_json_str(json, POD_NAME_FIELD);
    json.extend_from_slice(b"}}}");
}

fn write_mount(json: &mut Vec<u8>, path: &str, container: &str) {
    json.extend_from_slice(br#"{"name":"#);
    write_json_str(json, VOLUME_NAME);
    json.extend_from_slice(br#","mountPath":"#);
    write_json_str(json, path);
    json.extend_from_slice(br#","subPathExpr":"#);
    write_json_str(json, &sub_path_expr(container));
    json.push(b'}');
}

fn write_volume(json: &mut Vec<u8>, host_dir: &str, namespace: &str) {
    json.extend_from_slice(br#"{"name":"#);
    write_json_str(json, VOLUME_NAME);
    json.extend_from_slice(br#","hostPath":{"path":"#);
    write_json_str(json, &namespace_host_dir(host_dir, namespace));
    json.extend_from_slice(br#","type":"DirectoryOrCreate"}}"#);
}

/// The outcome of planning one pod.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// What to add; empty when nothing needs adding.
    pub patch: Patch,
    /// Containers that have the dump directory once the patch is applied.
    pub injected: Vec<String>,
    /// Sentences for the pod's owner (admission warnings).
    pub warnings: Vec<String>,
    /// What was skipped, for metrics.
    pub skips: Vec<SkipReason>,
}

impl Plan {
    fn skip(&mut self, reason: SkipReason, warning: String) {
        self.skips.push(reason);
        self.warnings.push(warning);
    }
}

enum ContainerState {
    Ready {
        needs_env: bool,
        has_env_list: bool,
        has_mount_list: bool,
    },
    AlreadyInjected {
        needs_env: bool,
        has_env_list: bool,
    },
    MountConflict(String),
    DeviceConflict,
    EnvConflict,
}

fn container_state(container: &ContainerView<'_>, path: &str) -> ContainerState {
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    let env = container.pod_name_env;
    if mounts.iter().any(|mount| mount.name == VOLUME_NAME) {
        return ContainerState::AlreadyInjected {
            needs_env: env.is_none(),
            has_env_list: container.has_env_list,
        };
    }
    if let Some(mount) = mounts
        .iter()
        .find(|mount| same_directory(&mount.mount_path, path))
    {
        return ContainerState::MountConflict(mount.name.to_string());
    }
    // The API server refuses a mount at a block device's path.
    if container
        .device_paths
        .iter()
        .any(|device| same_directory(device, path))
    {
        return ContainerState::DeviceConflict;
    }
    if env == Some(false) {
        return ContainerState::EnvConflict;
    }
    ContainerState::Ready {
        needs_env: env.is_none(),
        has_env_list: container.has_env_list,
        has_mount_list: container.volume_mounts.is_some(),
    }
}

/// A key as a JSON pointer token (RFC 6901: `~` and `/` escaped).
struct PointerToken<'a>(&'a str);

impl fmt::Display for PointerToken<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in self.0.split_inclusive(['~', '/']) {
            if let Some(head) = part.strip_suffix('~') {
                write!(out, "{head}~0")?;
            } else if let Some(head) = part.strip_suffix('/') {
                write!(out, "{head}~1")?;
            } else {
                out.write_str(part)?;
            }
        }
        Ok(())
    }
}

/// Plans the injection of `request` into `pod`, created in `namespace`.
pub fn plan(
    pod: &PodView<'_>,
    namespace: &str,
    host_dir: &str,
    request: &InjectionRequest,
) -> Plan {
    let mut plan = Plan::default();
    let spec = match pod.spec() {
        Ok(Some(spec)) => spec,
        Ok(None) => {
            plan.skip(
                SkipReason::InternalError,
                "coredog: the pod has no spec".to_owned(),
            );
            return plan;
        }
        Err(err) => {
            plan.skip(
                SkipReason::InternalError,
                format!("coredog: cannot read the pod's spec: {err}"),
            );
            return plan;
        }
    };
    let path = request.path.as_str();
    let groups = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];

    if let ContainerSelection::Named(names) = &request.containers {
        for name in names {
            let known = groups
                .iter()
                .any(|(_, list)| list.iter().any(|c| &c.name == name));
            if !known {
                plan.skip(
                    SkipReason::NoMatchingContainer,
                    format!("coredog: coredog.io/container names {name:?}, which matches no container of this pod"),
                );
            }
        }
    }

    let mut newly_injected = 0;
    for (field, list) in groups {
        for (index, container) in list.iter().enumerate() {
            if !request.containers.selects(&container.name) {
                continue;
            }
            match container_state(container, path) {
                ContainerState::Ready {
                    needs_env,
                    has_env_list,
                    has_mount_list,
                } => {
                    if needs_env {
                        plan.patch.append(
                            format_args!("/spec/{field}/{index}/env"),
                            has_env_list,
                            write_pod_name_env,
                        );
                    }
                    plan.patch.append(
                        format_args!("/spec/{field}/{index}/volumeMounts"),
                        has_mount_list,
                        |json| write_mount(json, path, &container.name),
                    );
                    plan.injected.push(container.name.to_string());
                    newly_injected += 1;
                }
                ContainerState::AlreadyInjected {
                    needs_env,
                    has_env_list,
                } => {
                    if needs_env {
                        plan.patch.append(
                            format_args!("/spec/{field}/{index}/env"),
                            has_env_list,
                            write_pod_name_env,
                        );
                    }
                    plan.injected.push(container.name.to_string());
                }
                ContainerState::MountConflict(volume) => plan.skip(
                    SkipReason::MountConflict,
                    format!(
                        "coredog: container {:?} already mounts volume {volume:?} at {path}; it gets no dump directory",
                        container.name
                    ),
                ),
                ContainerState::DeviceConflict => plan.skip(
                    SkipReason::MountConflict,
                    format!(
                        "coredog: container {:?} has a volume device at {path}; it gets no dump directory",
                        container.name
                    ),
                ),
                ContainerState::EnvConflict => plan.skip(
                    SkipReason::EnvConflict,
                    format!(
                        "coredog: container {:?} defines {POD_NAME_ENV} itself; it gets no dump directory",
                        container.name
                    ),
                ),
            }
        }
    }

    if plan.injected.is_empty() {
        if plan.skips.is_empty() {
            plan.skip(
                SkipReason::NoMatchingContainer,
                "coredog: no container was selected for a dump directory".to_owned(),
            );
        }
        return plan;
    }

    // The volume is added after the mounts that use it: the API server applies a patch whole.
    let volumes = spec.volumes.as_deref();
    match volumes.and_then(|list| list.iter().find(|volume| volume.name == VOLUME_NAME)) {
        None => plan
            .patch
            .append(format_args!("/spec/volumes"), volumes.is_some(), |json| {
                write_volume(json, host_dir, namespace)
            }),
        Some(VolumeView {
            host_path: true, ..
        }) => {}
        Some(_) => {
            let mut refused = Plan::default();
            refused.skip(
                SkipReason::VolumeConflict,
                format!("coredog: the pod already has a volume named {VOLUME_NAME:?} that is not a hostPath; nothing was injected"),
            );
            return refused;
        }
    }

    let injected = plan.injected.join(",");
    if pod.metadata.annotation(INJECTED) != Some(injected.as_str()) {
        if pod.metadata.annotations.is_some() {
            plan.patch.add(
                format_args!("/metadata/annotations/{}", PointerToken(INJECTED)),
                |json| write_json_str(json, &injected),
            );
        } else {
            plan.patch
                .add(format_args!("/metadata/annotations"), |json| {
                    json.push(b'{');
                    write_json_str(json, INJECTED);
                    json.push(b':');
                    write_json_str(json, &injected);
                    json.push(b'}');
                });
        }
    }
    if newly_injected == 0 && plan.patch.is_empty() {
        plan.skips.push(SkipReason::AlreadyInjected);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use coredog_core::annotations::read_opt_in;
    use coredog_core::layout::DEFAULT_HOST_DIR;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn request(pod: &Pod) -> InjectionRequest {
        read_opt_in(pod.metadata.annotations.as_ref().unwrap())
            .unwrap()
            .unwrap()
    }

    fn apply(pod: &Pod, plan: &Plan) -> Pod {
        let mut doc = serde_json::to_value(pod).unwrap();
        let patch: json_patch::Patch =
            serde_json::from_slice(&plan.patch.clone().into_json().unwrap()).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    fn opted_in(annotations: Value, containers: Value) -> Pod {
        pod(json!({
            "metadata": { "generateName": "web-7d9f-", "annotations": annotations },
            "spec": { "containers": containers }
        }))
    }

    fn plan_for(pod: &Pod) -> Plan {
        let text = serde_json::to_string(pod).unwrap();
        let view = PodView::parse(&text).unwrap();
        plan(&view, "shop", DEFAULT_HOST_DIR, &request(pod))
    }

    #[test]
    fn a_deployment_pod_gets_volume_env_mount_and_annotation() {
        let pod = opted_in(
            json!({ "coredog.io/inject": "true", "coredog.io/path": "/corefile" }),
            json!([{ "name": "app", "image": "app:1" }]),
        );
        let plan = plan_for(&pod);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        assert_eq!(plan.injected, ["app"]);
        let patched = apply(&pod, &plan);
        let spec = patched.spec.as_ref().unwrap();
        let volume = &spec.volumes.as_ref().unwrap()[0];
        assert_eq!(volume.name, "coredog-corefile");
        let host_path = volume.host_path.as_ref().unwrap();
        assert_eq!(host_path.path, "/data/coredog-system/dumps/shop");
        assert_eq!(host_path.type_.as_deref(), Some("DirectoryOrCreate"));
        let container = &spec.containers[0];
        let env = &container.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "COREDOG_POD_NAME");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.name"
        );
        let mount = &container.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.mount_path, "/corefile");
        assert_eq!(
            mount.sub_path_expr.as_deref(),
            Some("$(COREDOG_POD_NAME)/app")
        );
        assert_eq!(
            patched.metadata.annotations.unwrap()["coredog.io/injected"],
            "app"
        );
    }

    #[test]
    fn only_selected_containers_and_init_containers_are_injected() {
        let pod = pod(json!({
            "metadata": { "name": "p", "annotations": { "coredog.io/inject": "true", "coredog.io/path": "/data/dumps", "coredog.io/container": "worker,setup,ghost" } },
            "spec": {
                "initContainers": [{ "name": "setup", "env": [{ "name": "A", "value": "1" }] }],
                "containers": [{ "name": "app" }, { "name": "worker", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
                "volumes": [{ "name": "data", "emptyDir": {} }]
            }
        }));
        let plan = plan_for(&pod);
        assert_eq!(plan.injected, ["setup", "worker"]);
        assert_eq!(plan.skips, [SkipReason::NoMatchingContainer]);
        assert!(
            plan.warnings[0].contains("\"ghost\""),
            "{:?}",
            plan.warnings
        );
        let patched = apply(&pod, &plan);
        let spec = patched.spec.unwrap();
        assert!(spec.containers[0].volume_mounts.is_none());
        assert_eq!(spec.containers[1].volume_mounts.as_ref().unwrap().len(), 2);
        let init = &spec.init_containers.unwrap()[0];
        assert_eq!(init.env.as_ref().unwrap().len(), 2);
        assert_eq!(
            init.volume_mounts.as_ref().unwrap()[0]
                .sub_path_expr
                .as_deref(),
            Some("$(COREDOG_POD_NAME)/setup")
        );
        assert_eq!(spec.volumes.unwrap().len(), 2);
        assert_eq!(
            patched.metadata.annotations.unwrap()["coredog.io/injected"],
            "setup,worker"
        );
    }

    #[test]
    fn a_container_with_a_mount_at_the_path_is_skipped_with_a_warning() {
        let pod = opted_in(
            json!({ "coredog.io/inject": "true", "coredog.io/path": "/corefile" }),
            json!([
                { "name": "app", "volumeMounts": [{ "name": "cores", "mountPath": "/corefile/" }] },
                { "name": "sidecar" }
            ]),
        );
        let plan = plan_for(&pod);
        assert_eq!(plan.injected, ["sidecar"]);
        assert_eq!(plan.skips, [SkipReason::MountConflict]);
        assert!(plan.warnings[0].contains("\"app\"") && plan.warnings[0].contains("\"cores\""));
        apply(&pod, &plan);
    }

    /// The API server refuses a pod with a mount at a volume device's path.
    #[test]
    fn a_container_with_a_volume_device_at_the_path_is_skipped_with_a_warning() {
        let pod = opted_in(
            json!({ "coredog.io/inject": "true", "coredog.io/path": "/corefile" }),
            json!([
                { "name": "app", "volumeDevices": [{ "name": "block", "devicePath": "/corefile" }] },
                { "name": "sidecar", "volumeDevices": [{ "name": "block", "devicePath": "/dev/xvda" }] }
            ]),
        );
        let plan = plan_for(&pod);
        assert_eq!(plan.injected, ["sidecar"]);
        assert_eq!(plan.skips, [SkipReason::MountConflict]);
        assert!(
            plan.warnings[0].contains("\"app\"") && plan.warnings[0].contains("volume device"),
            "{:?}",
            plan.warnings
        );
        apply(&pod, &plan);
    }

    #[test]
    fn a_mount_spelt_another_way_is_the_same_directory() {
        for spelt in ["//corefile", "/corefile/.", "/./corefile//"] {
            let pod = opted_in(
                json!({ "coredog.io/inject": "true", "coredog.io/path": "/corefile" }),
                json!([{ "name": "app", "volumeMounts": [{ "name": "cores", "mountPath": spelt }] }]),
            );
            let plan = plan_for(&pod);
            assert_eq!(plan.skips, [SkipReason::MountConflict], "{spelt}");
            assert!(plan.injected.is_empty(), "{spelt}");
        }
    }

    #[test]
    fn a_container_with_its_own_pod_name_variable_is_skipped() {
        let pod = opted_in(
            json!({ "coredog.io/inject": "true", "coredog.io/path": "/corefile" }),
            json!([{ "name": "app", "env": [{ "name": "COREDOG_POD_NAME", "value": "fixed" }] }]),
        );
        let plan = plan_for(&pod);
        assert!(plan.patch.is_empty());
        assert_eq!(plan.skips, [SkipReason::EnvConflict]);
    }

    #[test]
    fn a_foreign_volume_with_our_name_blocks_injection() {
        let pod = pod(json!({
            "metadata": { "name": "p", "annotations": { "coredog.io/inject": "true", "coredog.io/path": "/corefile" } },
            "spec": { "containers": [{ "name": "app" }], "volumes": [{ "name": "coredog-corefile", "emptyDir": {} }] }
        }));
        let plan = plan_for(&pod);
        assert!(plan.patch.is_empty());
        assert!(plan.injected.is_empty());
        assert_eq!(plan.skips, [SkipReason::VolumeConflict]);
    }

    #[test]
    fn injection_is_idempotent() {
        let pod = opted_in(
            json!({ "coredog.io/inject": "true", "coredog.io/path": "/corefile" }),
            json!([{ "name": "app" }, { "name": "worker", "env": [] }]),
        );
        let once = apply(&pod, &plan_for(&pod));
        let again = plan_for(&once);
        assert!(again.patch.is_empty(), "{:?}", again.patch);
        assert_eq!(again.injected, ["app", "worker"]);
        assert_eq!(again.skips, [SkipReason::AlreadyInjected]);
        assert!(again.warnings.is_empty());
    }

    #[test]
    fn a_new_container_on_reinvocation_is_injected_alone() {
        let pod = opted_in(
            json!({ "coredog.io/inject": "true", "coredog.io/path": "/corefile" }),
            json!([{ "name": "app" }]),
        );
        let mut once = apply(&pod, &plan_for(&pod));
        once.spec
            .as_mut()
            .unwrap()
            .containers
            .push(serde_json::from_value(json!({ "name": "proxy" })).unwrap());
        let again = plan_for(&once);
        let twice = apply(&once, &again);
        let spec = twice.spec.as_ref().unwrap();
        assert_eq!(spec.volumes.as_ref().unwrap().len(), 1);
        assert_eq!(spec.containers[0].volume_mounts.as_ref().unwrap().len(), 1);
        assert_eq!(spec.containers[1].volume_mounts.as_ref().unwrap().len(), 1);
        assert_eq!(
            twice.metadata.annotations.unwrap()["coredog.io/injected"],
            "app,proxy"
        );
    }

    #[test]
    fn every_skip_reason_is_listed_at_its_index() {
        for (index, reason) in SkipReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, index, "{}", reason.as_str());
        }
    }

    #[test]
    fn pointer_keys_are_escaped() {
        assert_eq!(
            PointerToken("coredog.io/injected").to_string(),
            "coredog.io~1injected"
        );
        assert_eq!(PointerToken("a~b/c//").to_string(), "a~0b~1c~1~1");
        assert_eq!(PointerToken("").to_string(), "");
    }
}
