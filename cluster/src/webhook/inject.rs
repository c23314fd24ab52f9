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

use std::collections::BTreeMap;

use coredog_core::annotations::{ContainerSelection, INJECTED, InjectionRequest};
use coredog_core::layout::{POD_NAME_ENV, VOLUME_NAME, namespace_host_dir, sub_path_expr};
use serde::Serialize;

use super::pod_view::{ContainerView, PodView, VolumeView};

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

/// One JSONPatch operation. The webhook only ever adds; the values are typed rather than
/// `serde_json::Value` trees, which cost more to build than the rest of a review.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Add {
    op: &'static str,
    pub path: String,
    pub value: Addition,
}

/// What an [`Add`] adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Addition {
    PodNameEnv(PodNameEnv),
    Mount(Mount),
    Volume(Volume),
    Text(String),
    Annotations(BTreeMap<&'static str, String>),
    /// A list the pod did not have, holding the one item.
    List([Box<Addition>; 1]),
}

/// `COREDOG_POD_NAME` from the downward API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodNameEnv {
    name: &'static str,
    value_from: EnvSource,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvSource {
    field_ref: FieldRef,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct FieldRef {
    api_version: &'static str,
    field_path: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    name: &'static str,
    mount_path: String,
    sub_path_expr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    name: &'static str,
    host_path: HostPath,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct HostPath {
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Add {
    fn new(path: String, value: Addition) -> Self {
        Self {
            op: "add",
            path,
            value,
        }
    }
}

/// The outcome of planning one pod.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// JSONPatch operations; empty when nothing needs adding.
    pub operations: Vec<Add>,
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
    EnvConflict,
}

fn is_pod_name_env(container: &ContainerView<'_>) -> Option<bool> {
    let env = container
        .env
        .as_ref()?
        .iter()
        .find(|env| env.name == POD_NAME_ENV)?;
    let from_pod_name = env
        .value_from
        .as_ref()
        .and_then(|source| source.field_ref.as_ref())
        .is_some_and(|field| field.field_path == "metadata.name");
    Some(from_pod_name)
}

fn container_state(container: &ContainerView<'_>, path: &str) -> ContainerState {
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    let env = is_pod_name_env(container);
    if mounts.iter().any(|mount| mount.name == VOLUME_NAME) {
        return ContainerState::AlreadyInjected {
            needs_env: env.is_none(),
            has_env_list: container.env.is_some(),
        };
    }
    if let Some(mount) = mounts
        .iter()
        .find(|mount| mount.mount_path.trim_end_matches('/') == path)
    {
        return ContainerState::MountConflict(mount.name.to_string());
    }
    if env == Some(false) {
        return ContainerState::EnvConflict;
    }
    ContainerState::Ready {
        needs_env: env.is_none(),
        has_env_list: container.env.is_some(),
        has_mount_list: container.volume_mounts.is_some(),
    }
}

fn pod_name_env() -> Addition {
    Addition::PodNameEnv(PodNameEnv {
        name: POD_NAME_ENV,
        value_from: EnvSource {
            field_ref: FieldRef {
                api_version: "v1",
                field_path: "metadata.name",
            },
        },
    })
}

/// Adds `value` to the list at `list_path`, creating the list when the pod has none.
fn append(list_path: &str, list_exists: bool, value: Addition) -> Add {
    if list_exists {
        Add::new(format!("{list_path}/-"), value)
    } else {
        Add::new(list_path.to_owned(), Addition::List([Box::new(value)]))
    }
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
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
    let spec = &spec;
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

    let mut container_ops = Vec::new();
    let mut newly_injected = 0;
    for (field, list) in groups {
        for (index, container) in list.iter().enumerate() {
            if !request.containers.selects(&container.name) {
                continue;
            }
            let base = format!("/spec/{field}/{index}");
            match container_state(container, path) {
                ContainerState::Ready {
                    needs_env,
                    has_env_list,
                    has_mount_list,
                } => {
                    if needs_env {
                        container_ops.push(append(&format!("{base}/env"), has_env_list, pod_name_env()));
                    }
                    container_ops.push(append(
                        &format!("{base}/volumeMounts"),
                        has_mount_list,
                        Addition::Mount(Mount {
                            name: VOLUME_NAME,
                            mount_path: path.to_owned(),
                            sub_path_expr: sub_path_expr(&container.name),
                        }),
                    ));
                    plan.injected.push(container.name.to_string());
                    newly_injected += 1;
                }
                ContainerState::AlreadyInjected {
                    needs_env,
                    has_env_list,
                } => {
                    if needs_env {
                        container_ops.push(append(&format!("{base}/env"), has_env_list, pod_name_env()));
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

    let volumes = spec.volumes.as_deref();
    match volumes.and_then(|list| list.iter().find(|volume| volume.name == VOLUME_NAME)) {
        None => plan.operations.push(append(
            "/spec/volumes",
            volumes.is_some(),
            Addition::Volume(Volume {
                name: VOLUME_NAME,
                host_path: HostPath {
                    path: namespace_host_dir(host_dir, namespace),
                    kind: "DirectoryOrCreate",
                },
            }),
        )),
        Some(VolumeView {
            host_path: Some(_), ..
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
    plan.operations.extend(container_ops);

    let injected = plan.injected.join(",");
    if pod.metadata.annotation(INJECTED) != Some(injected.as_str()) {
        plan.operations.push(if pod.metadata.annotations.is_some() {
            Add::new(
                format!("/metadata/annotations/{}", pointer_escape(INJECTED)),
                Addition::Text(injected),
            )
        } else {
            Add::new(
                "/metadata/annotations".to_owned(),
                Addition::Annotations(BTreeMap::from([(INJECTED, injected)])),
            )
        });
    }
    if newly_injected == 0 && plan.operations.is_empty() {
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
            serde_json::from_value(serde_json::to_value(&plan.operations).unwrap()).unwrap();
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
        let view: PodView<'_> = serde_json::from_str(&text).unwrap();
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

    #[test]
    fn a_container_with_its_own_pod_name_variable_is_skipped() {
        let pod = opted_in(
            json!({ "coredog.io/inject": "true", "coredog.io/path": "/corefile" }),
            json!([{ "name": "app", "env": [{ "name": "COREDOG_POD_NAME", "value": "fixed" }] }]),
        );
        let plan = plan_for(&pod);
        assert!(plan.operations.is_empty());
        assert_eq!(plan.skips, [SkipReason::EnvConflict]);
    }

    #[test]
    fn a_foreign_volume_with_our_name_blocks_injection() {
        let pod = pod(json!({
            "metadata": { "name": "p", "annotations": { "coredog.io/inject": "true", "coredog.io/path": "/corefile" } },
            "spec": { "containers": [{ "name": "app" }], "volumes": [{ "name": "coredog-corefile", "emptyDir": {} }] }
        }));
        let plan = plan_for(&pod);
        assert!(plan.operations.is_empty());
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
        assert!(again.operations.is_empty(), "{:?}", again.operations);
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
    fn pointer_keys_are_escaped() {
        assert_eq!(
            pointer_escape("coredog.io/injected"),
            "coredog.io~1injected"
        );
        assert_eq!(pointer_escape("a~b"), "a~0b");
    }
}
