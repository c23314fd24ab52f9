//! `status`: the workloads and pods that opted in (and the live pods of an opted-in workload
//! made before it opted in), whether their pods really carry the dump directory (pods created
//! before the webhook, or while it was unreachable, do not), and how many dumps each has in
//! storage. A workload's dumps include those of its pods that are gone,
//! known by the names controllers give their pods ([`made_by`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context as _;
use coredog_core::annotations::{
    CONTAINER, ContainerSelection, INJECT, INJECTED, InjectionRequest, read_opt_in,
};
use coredog_core::layout::{POD_NAME_ENV, POD_NAME_FIELD, VOLUME_NAME};
use coredog_core::mount_path::same_directory;
use coredog_core::object_key::{CoreKey, listing_prefix};
use futures_util::stream::{self, StreamExt as _};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt as _};
use serde::Serialize;

use crate::cli::OutputFormat;
use crate::kube_client::{Scope, list_all};
use crate::output::{Console, table, to_json, to_yaml};
use crate::storage::DumpStorage;
use crate::storage::list::RECORD_CONCURRENCY;
use crate::workload::{self, Workload, WorkloadKind, controller_of};

/// Whether a pod carries the dump directory, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Injection {
    pub injected: bool,
    /// The containers the webhook gave a dump directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What would mend it, for a pod without the dump directory.
    #[serde(skip)]
    pub cause: Option<NotInjected>,
}

/// Why a pod has no dump directory, by what mends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotInjected {
    /// The pod does not ask for it (made before its workload opted in), or asks wrongly.
    NotOptedIn,
    /// The webhook refuses this pod as it is (a container named that does not exist, a mount
    /// already at the path): a new pod would be refused too.
    Refused,
    /// It asked, and the webhook did not see it (created before the webhook, or while the
    /// webhook was unreachable): a new pod gets it.
    Missed,
}

/// Why the webhook gives a pod that asks for it no dump directory at all, if it does: the
/// rules of its patch (cluster/src/webhook/inject.rs), over the pod as stored.
fn refusal(pod: &Pod, request: &InjectionRequest) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let own_volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|volume| volume.name == VOLUME_NAME);
    if own_volume.is_some_and(|volume| volume.host_path.is_none()) {
        return Some(format!(
            "the pod has a volume named {VOLUME_NAME} that is not a hostPath: the webhook skips it"
        ));
    }
    let containers: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .collect();
    if let ContainerSelection::Named(names) = &request.containers {
        let unknown: Vec<&str> = names
            .iter()
            .filter(|name| !containers.iter().any(|c| &&c.name == name))
            .map(String::as_str)
            .collect();
        if unknown.len() == names.len() {
            let present: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
            return Some(format!(
                "{CONTAINER} names {}, no container of the pod (it has {}): the webhook skips it",
                unknown.join(", "),
                present.join(", ")
            ));
        }
    }
    let path = request.path.as_str();
    let selected: Vec<&&Container> = containers
        .iter()
        .filter(|c| request.containers.selects(&c.name))
        .collect();
    let blocked: Vec<String> = selected
        .iter()
        // A container that has the mount already was injected, whatever else it has.
        .filter(|c| {
            !c.volume_mounts
                .iter()
                .flatten()
                .any(|mount| mount.name == VOLUME_NAME)
        })
        .filter_map(|c| {
            let mounted =
                c.volume_mounts.iter().flatten().any(|mount| {
                    mount.name != VOLUME_NAME && same_directory(&mount.mount_path, path)
                });
            let device = c
                .volume_devices
                .iter()
                .flatten()
                .any(|device| same_directory(&device.device_path, path));
            // A variable of the webhook's name that holds anything but the pod's name conflicts;
            // as for the kubelet, the last definition of that name is the one that counts.
            let conflicting_env = c
                .env
                .iter()
                .flatten()
                .rfind(|env| env.name == POD_NAME_ENV)
                .is_some_and(|env| {
                    env.value_from
                        .as_ref()
                        .and_then(|source| source.field_ref.as_ref())
                        .is_none_or(|field| field.field_path != POD_NAME_FIELD)
                });
            if mounted {
                Some(format!("{} already mounts a volume at {path}", c.name))
            } else if device {
                Some(format!("{} has a volume device at {path}", c.name))
            } else if conflicting_env {
                Some(format!("{} defines {POD_NAME_ENV} itself", c.name))
            } else {
                None
            }
        })
        .collect();
    (!selected.is_empty() && blocked.len() == selected.len())
        .then(|| format!("{}: the webhook skips the pod", blocked.join("; ")))
}

/// A pod that runs or is about to, and is not on its way out (a pod being deleted after a
/// restart keeps its phase until it is gone).
pub fn live(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && matches!(
            pod.status
                .as_ref()
                .and_then(|status| status.phase.as_deref()),
            Some("Running" | "Pending")
        )
}

/// How a workload's pods are re-created with the pod template it has now.
fn recreate_hint(workload: &Workload) -> String {
    if let Some(command) = workload.rollout_command() {
        command
    } else {
        match workload.kind {
            WorkloadKind::Job | WorkloadKind::CronJob => "its next pods get it".to_owned(),
            _ => "delete the pod to have it re-created".to_owned(),
        }
    }
}

/// Reads what the webhook did to a pod.
pub fn injection(pod: &Pod) -> Injection {
    let annotations = pod.annotations();
    let has_volume = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.volumes.as_ref())
        .is_some_and(|volumes| volumes.iter().any(|volume| volume.name == VOLUME_NAME));
    let recorded = annotations.get(INJECTED);
    if has_volume && let Some(recorded) = recorded {
        return Injection {
            injected: true,
            containers: recorded
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
            reason: None,
            cause: None,
        };
    }
    let (reason, cause) = match read_opt_in(annotations) {
        Err(err) => (err.to_string(), NotInjected::NotOptedIn),
        Ok(None) => ("not opted in".to_owned(), NotInjected::NotOptedIn),
        Ok(Some(request)) => match refusal(pod, &request) {
            Some(why) => (why, NotInjected::Refused),
            None if has_volume || recorded.is_some() => (
                format!(
                    "only partly injected (volume {VOLUME_NAME} or annotation {INJECTED} missing)"
                ),
                NotInjected::Missed,
            ),
            None => (
                "created before the webhook or while it was unreachable (restart it), or in a namespace the webhook leaves out"
                    .to_owned(),
                NotInjected::Missed,
            ),
        },
    };
    Injection {
        injected: false,
        containers: Vec::new(),
        reason: Some(reason),
        cause: Some(cause),
    }
}

/// Why a pod of an opted-in workload that does not ask for the dump directory itself has none.
pub const PREDATES_OPT_IN: &str = "created before its workload opted in";

/// Whether the pod itself asks for the dump directory; one of an opted-in workload that does
/// not was made before the workload opted in.
pub fn asks_for_injection(pod: &Pod) -> bool {
    opted_in(pod.annotations())
}

fn opted_in(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(INJECT)
        .is_some_and(|value| !coredog_core::annotations::is_opt_out(value))
}

/// A pod's workload, following ReplicaSets to their Deployment and Jobs to their CronJob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub kind: WorkloadKind,
    pub name: String,
}

/// Who controls whom, from the ReplicaSets and Jobs listed.
#[derive(Debug, Default)]
pub struct Owners {
    /// `(namespace, ReplicaSet or Job name)` → its own controller.
    parents: HashMap<(String, String, WorkloadKind), Owner>,
}

impl Owners {
    fn learn(&mut self, workloads: &[Workload]) {
        for workload in workloads {
            let parent = match workload.controller() {
                Some((kind, name)) if kind == "Deployment" => Owner {
                    kind: WorkloadKind::Deployment,
                    name,
                },
                Some((kind, name)) if kind == "CronJob" => Owner {
                    kind: WorkloadKind::CronJob,
                    name,
                },
                _ => continue,
            };
            self.parents.insert(
                (workload.namespace(), workload.name(), workload.kind),
                parent,
            );
        }
    }

    pub fn of_pod(&self, pod: &Pod) -> Option<Owner> {
        let (kind, name) = controller_of(&pod.metadata)?;
        let namespace = pod.namespace().unwrap_or_default();
        let direct = match kind.as_str() {
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "Job" => WorkloadKind::Job,
            _ => return None,
        };
        Some(
            self.parents
                .get(&(namespace, name.clone(), direct))
                .cloned()
                .unwrap_or(Owner { kind: direct, name }),
        )
    }

    /// Whether a workload is controlled by another one (whose row stands for it).
    fn is_owned(&self, workload: &Workload) -> bool {
        self.parents
            .contains_key(&(workload.namespace(), workload.name(), workload.kind))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub namespace: String,
    pub name: String,
    pub workload: Option<String>,
    pub node: Option<String>,
    pub phase: String,
    pub injection: Injection,
    /// `None` when storage could not be read.
    pub dumps: Option<usize>,
}

impl PodStatus {
    /// Running or about to (pods on their way out are not listed at all).
    fn is_live(&self) -> bool {
        self.phase == "Running" || self.phase == "Pending"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    pub namespace: String,
    pub workload: String,
    pub path: Option<String>,
    pub containers: String,
    pub pods: usize,
    pub injected_pods: usize,
    pub dumps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub workloads: Vec<WorkloadStatus>,
    pub pods: Vec<PodStatus>,
    /// `ok`, or why dumps could not be counted.
    pub storage: String,
}

/// Storage to count dumps in, or why there is none.
pub enum StatusStorage<'a, S> {
    Open { storage: &'a S, store_dir: &'a str },
    Unavailable(String),
}

/// Dumps in storage by pod name, in one namespace.
type DumpsByPod = BTreeMap<String, usize>;

/// How many dumps each pod of `namespace` has in storage, by pod name: pods long gone
/// included.
async fn dumps_by_pod<S: DumpStorage>(
    storage: &S,
    store_dir: &str,
    namespace: &str,
) -> Result<DumpsByPod, String> {
    let prefix = listing_prefix(store_dir, Some(namespace), None);
    let mut counts = BTreeMap::new();
    let mut continuation: Option<String> = None;
    loop {
        let page = storage
            .list_page(&prefix, continuation.as_deref(), None)
            .await
            .map_err(|err| err.to_string())?;
        for key in page
            .objects
            .iter()
            .filter_map(|object| CoreKey::parse(&object.key))
        {
            *counts.entry(key.pod).or_default() += 1;
        }
        match page.next {
            Some(next) => continuation = Some(next),
            None => return Ok(counts),
        }
    }
}

/// The characters Kubernetes draws random name parts from (`rand.SafeEncodeString`): the
/// suffix of a `generateName`, and a ReplicaSet's pod-template hash.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The longest `generateName` the API server keeps before adding its 5 random characters.
const GENERATE_NAME_KEPT: usize = 58;

/// Whether `kind` `name` may have made a pod named `pod`, by the names controllers give their
/// pods: `<deployment>-<template hash>-<suffix>`, `<statefulset>-<ordinal>`,
/// `<daemonset|replicaset|job>-<suffix>`, `<cronjob>-<scheduled minute>-<suffix>` (a Job's
/// completion index may come before the suffix). A name too long for that was cut to 58
/// characters before the suffix.
fn made_by(kind: WorkloadKind, name: &str, pod: &str) -> bool {
    let drawn = |part: &str| !part.is_empty() && part.bytes().all(|b| NAME_ALPHABET.contains(&b));
    let suffix = |part: &str| part.len() == 5 && drawn(part);
    let number = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let base = format!("{name}-");
    if pod.len() == GENERATE_NAME_KEPT + 5
        && let (Some(kept), Some(random)) =
            (pod.get(..GENERATE_NAME_KEPT), pod.get(GENERATE_NAME_KEPT..))
        && suffix(random)
    {
        // What was kept of `<name>-<more>-` must have the shape `<more>` has for the kind.
        let Some(more) = kept.strip_prefix(&base) else {
            return kind != WorkloadKind::StatefulSet && base.starts_with(kept);
        };
        let parts: Vec<&str> = more.strip_suffix('-').unwrap_or(more).split('-').collect();
        let cut = |part: &str| part.is_empty() || drawn(part);
        let digits = |part: &str| part.is_empty() || number(part);
        return match (kind, parts.as_slice()) {
            (WorkloadKind::DaemonSet | WorkloadKind::ReplicaSet | WorkloadKind::Job, [""]) => true,
            (WorkloadKind::Deployment, [hash]) => hash.len() <= 10 && cut(hash),
            (WorkloadKind::Job, [index]) => digits(index),
            (WorkloadKind::CronJob, [minute]) => digits(minute),
            (WorkloadKind::CronJob, [minute, index]) => number(minute) && digits(index),
            _ => false,
        };
    }
    let Some(rest) = pod.strip_prefix(&base) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    match (kind, parts.as_slice()) {
        (WorkloadKind::Deployment, [hash, random]) => {
            hash.len() <= 10 && drawn(hash) && suffix(random)
        }
        (WorkloadKind::StatefulSet, [ordinal]) => number(ordinal),
        (WorkloadKind::DaemonSet | WorkloadKind::ReplicaSet | WorkloadKind::Job, [random]) => {
            suffix(random)
        }
        (WorkloadKind::Job, [index, random]) => number(index) && suffix(random),
        (WorkloadKind::CronJob, [minute, random]) => number(minute) && suffix(random),
        (WorkloadKind::CronJob, [minute, index, random]) => {
            number(minute) && number(index) && suffix(random)
        }
        _ => false,
    }
}

/// Which of `workloads` (of the pod's namespace, none controlled by another) made the pod
/// named `pod`: of those whose pods are named so, the one with the longest name (`web-api`,
/// not `web`, made `web-api-7d9f8b6c5d-x2x4z`).
fn maker<'a>(pod: &str, workloads: &[&'a Workload]) -> Option<&'a Workload> {
    workloads
        .iter()
        .copied()
        .filter(|workload| made_by(workload.kind, &workload.name(), pod))
        .max_by_key(|workload| workload.name().len())
}

pub async fn collect<S: DumpStorage>(
    client: &Client,
    scope: &Scope,
    storage: StatusStorage<'_, S>,
) -> anyhow::Result<Status> {
    // Pods before their makers: a ReplicaSet or Job made meanwhile (a rollout) is then
    // listed with its pods, rather than missed while its first pods are not.
    let pods_api: Api<Pod> = match scope {
        Scope::Namespace(namespace) => Api::namespaced(client.clone(), namespace),
        Scope::All => Api::all(client.clone()),
    };
    let all_pods = list_all(&pods_api, &ListParams::default())
        .await
        .context("cannot list pods")?;
    let mut workloads = Vec::new();
    let mut owners = Owners::default();
    for kind in WorkloadKind::ALL {
        let listed = workload::list(client, scope, kind, None)
            .await
            .with_context(|| format!("cannot list {}", kind.plural_name()))?;
        if matches!(kind, WorkloadKind::ReplicaSet | WorkloadKind::Job) {
            owners.learn(&listed);
        }
        workloads.extend(listed);
    }
    // Which workload each existing pod belongs to, by its owner: its dumps are that workload's.
    let owner_of_pod: HashMap<(String, String), String> = all_pods
        .iter()
        .filter_map(|pod| {
            let owner = owners.of_pod(pod)?;
            let key = (pod.namespace().unwrap_or_default(), pod.name_any());
            Some((key, format!("{}/{}", owner.kind, owner.name)))
        })
        .collect();
    // The pods that opted in, and those of a workload that did which predate its opt-in (they
    // carry no annotation, and are just as much without a dump directory).
    // Finished pods are history: only live ones are listed for their workload's sake.
    let opted_in_workloads: HashMap<(String, String), &Workload> = workloads
        .iter()
        .filter(|workload| opted_in(&workload.template_annotations()))
        .map(|workload| {
            (
                (workload.namespace(), workload.reference().to_string()),
                workload,
            )
        })
        .collect();
    let opted_in_workload_of = |pod: &Pod| {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        let owner = owner_of_pod.get(&key)?;
        opted_in_workloads.get(&(key.0, owner.clone())).copied()
    };
    let pods: Vec<Pod> = all_pods
        .into_iter()
        // Pods on their way out (a rollout under way) are left out: their successors count.
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            opted_in(pod.annotations()) || (live(pod) && opted_in_workload_of(pod).is_some())
        })
        .collect();

    // One listing per namespace with anything opted in, rather than one per pod: a workload's
    // dumps include those of its pods that are gone (replaced by a rollout, finished jobs).
    let roots: Vec<&Workload> = workloads
        .iter()
        .filter(|workload| !owners.is_owned(workload))
        .collect();
    let namespaces: BTreeSet<String> = pods
        .iter()
        .map(|pod| pod.namespace().unwrap_or_default())
        .chain(
            roots
                .iter()
                .filter(|workload| opted_in(&workload.template_annotations()))
                .map(|workload| workload.namespace()),
        )
        .collect();
    let (dumps, storage_state): (HashMap<String, DumpsByPod>, String) = match storage {
        StatusStorage::Open { storage, store_dir } => {
            let listed: Vec<(String, Result<DumpsByPod, String>)> = stream::iter(namespaces)
                .map(|namespace| async move {
                    let counts = dumps_by_pod(storage, store_dir, &namespace).await;
                    (namespace, counts)
                })
                .buffered(RECORD_CONCURRENCY)
                .collect()
                .await;
            let failure = listed
                .iter()
                .find_map(|(_, counts)| counts.as_ref().err().cloned());
            (
                listed
                    .into_iter()
                    .filter_map(|(namespace, counts)| Some((namespace, counts.ok()?)))
                    .collect(),
                failure.map_or_else(|| "ok".to_owned(), |err| format!("unreachable: {err}")),
            )
        }
        StatusStorage::Unavailable(reason) => (HashMap::new(), format!("unreachable: {reason}")),
    };

    let mut pod_rows: Vec<PodStatus> = pods
        .iter()
        .map(|pod| PodStatus {
            dumps: dumps
                .get(&pod.namespace().unwrap_or_default())
                .map(|counts| counts.get(&pod.name_any()).copied().unwrap_or(0)),
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            workload: owner_of_pod
                .get(&(pod.namespace().unwrap_or_default(), pod.name_any()))
                .cloned(),
            node: pod.spec.as_ref().and_then(|spec| spec.node_name.clone()),
            phase: pod
                .status
                .as_ref()
                .and_then(|status| status.phase.clone())
                .unwrap_or_else(|| "Unknown".to_owned()),
            injection: {
                let mut injection = injection(pod);
                if !asks_for_injection(pod)
                    && let Some(workload) = opted_in_workload_of(pod)
                {
                    injection.reason =
                        Some(format!("{PREDATES_OPT_IN}: {}", recreate_hint(workload)));
                }
                injection
            },
        })
        .collect();
    pod_rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut workload_rows: Vec<WorkloadStatus> = roots
        .iter()
        .copied()
        .filter(|workload| opted_in(&workload.template_annotations()))
        .map(|workload| {
            let reference = workload.reference().to_string();
            let namespace = workload.namespace();
            let mine: Vec<&PodStatus> = pod_rows
                .iter()
                .filter(|pod| {
                    pod.namespace == namespace && pod.workload.as_deref() == Some(&reference)
                })
                .collect();
            let (path, containers, problem) = match read_opt_in(&workload.template_annotations()) {
                Ok(Some(request)) => (
                    Some(request.path.to_string()),
                    match request.containers {
                        coredog_core::annotations::ContainerSelection::All => "all".to_owned(),
                        coredog_core::annotations::ContainerSelection::Named(names) => {
                            names.join(",")
                        }
                    },
                    None,
                ),
                Ok(None) => (None, "-".to_owned(), None),
                Err(err) => (None, "-".to_owned(), Some(err.to_string())),
            };
            let running: Vec<&&PodStatus> = mine.iter().filter(|pod| pod.is_live()).collect();
            let workload_dumps = dumps.get(&namespace).map(|counts| {
                let neighbours: Vec<&Workload> = roots
                    .iter()
                    .copied()
                    .filter(|other| other.namespace() == namespace)
                    .collect();
                counts
                    .iter()
                    .filter(|(pod, _)| {
                        // An existing pod by its owner, one that is gone by its name.
                        match owner_of_pod.get(&(namespace.clone(), (*pod).clone())) {
                            Some(owner) => *owner == reference,
                            None => maker(pod, &neighbours)
                                .is_some_and(|made| std::ptr::eq(made, workload)),
                        }
                    })
                    .map(|(_, count)| count)
                    .sum()
            });
            WorkloadStatus {
                namespace,
                workload: reference,
                path,
                containers,
                pods: running.len(),
                injected_pods: running.iter().filter(|pod| pod.injection.injected).count(),
                dumps: workload_dumps,
                problem,
            }
        })
        .collect();
    workload_rows.sort_by(|a, b| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)));
    Ok(Status {
        workloads: workload_rows,
        pods: pod_rows,
        storage: storage_state,
    })
}

fn dumps_cell(dumps: Option<usize>) -> String {
    dumps.map_or_else(|| "unreachable".to_owned(), |count| count.to_string())
}

pub fn render(status: &Status, format: OutputFormat) -> anyhow::Result<String> {
    let wide = match format {
        OutputFormat::Json => return to_json(status),
        OutputFormat::Yaml => return to_yaml(status),
        OutputFormat::Table => false,
        OutputFormat::Wide => true,
    };
    let mut text = String::new();
    if !status.workloads.is_empty() {
        let rows: Vec<Vec<String>> = status
            .workloads
            .iter()
            .map(|w| {
                vec![
                    w.namespace.clone(),
                    w.workload.clone(),
                    w.path.clone().unwrap_or_else(|| {
                        w.problem
                            .as_ref()
                            .map_or_else(|| "-".to_owned(), |problem| format!("invalid: {problem}"))
                    }),
                    w.containers.clone(),
                    format!("{}/{}", w.injected_pods, w.pods),
                    dumps_cell(w.dumps),
                ]
            })
            .collect();
        text.push_str(&table(
            &[
                "NAMESPACE",
                "WORKLOAD",
                "PATH",
                "CONTAINERS",
                "INJECTED",
                "DUMPS",
            ],
            &rows,
        ));
    }
    if !status.pods.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        let mut headers = vec![
            "NAMESPACE",
            "POD",
            "WORKLOAD",
            "STATUS",
            "INJECTED",
            "DUMPS",
        ];
        if wide {
            headers.extend(["NODE", "CONTAINERS"]);
        }
        let rows: Vec<Vec<String>> = status
            .pods
            .iter()
            .map(|pod| {
                let injected = if pod.injection.injected {
                    "yes".to_owned()
                } else if wide {
                    format!(
                        "no: {}",
                        pod.injection.reason.as_deref().unwrap_or("unknown")
                    )
                } else {
                    "no".to_owned()
                };
                let mut row = vec![
                    pod.namespace.clone(),
                    pod.name.clone(),
                    pod.workload.clone().unwrap_or_else(|| "-".to_owned()),
                    pod.phase.clone(),
                    injected,
                    dumps_cell(pod.dumps),
                ];
                if wide {
                    row.push(pod.node.clone().unwrap_or_else(|| "-".to_owned()));
                    row.push(if pod.injection.containers.is_empty() {
                        "-".to_owned()
                    } else {
                        pod.injection.containers.join(",")
                    });
                }
                row
            })
            .collect();
        text.push_str(&table(&headers, &rows));
    }
    Ok(text)
}

pub async fn run<S: DumpStorage>(
    client: &Client,
    scope: &Scope,
    storage: StatusStorage<'_, S>,
    format: OutputFormat,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let status = collect(client, scope, storage).await?;
    let table = matches!(format, OutputFormat::Table | OutputFormat::Wide);
    if table && status.workloads.is_empty() && status.pods.is_empty() {
        console.note(&match scope {
            Scope::Namespace(namespace) => {
                format!("No opted-in workloads or pods found in {namespace} namespace.")
            }
            Scope::All => "No opted-in workloads or pods found.".to_owned(),
        });
        return Ok(());
    }
    console.print(&render(&status, format)?)?;
    if table {
        if status.storage != "ok" {
            console.note(&format!("dumps: storage {}", status.storage));
        }
        let missing = status
            .pods
            .iter()
            .filter(|pod| !pod.injection.injected && pod.is_live())
            .count();
        if missing > 0 {
            console.note(&format!(
                "{missing} running or pending pod(s) that opted in, or whose workload did, have no dump directory: `-o wide` says why, and what mends it"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;

    fn pod(annotations: serde_json::Value, volume: bool) -> Pod {
        let volumes = if volume {
            serde_json::json!([{"name": VOLUME_NAME, "hostPath": {"path": "/data/x"}}])
        } else {
            serde_json::json!([])
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "annotations": annotations},
            "spec": {"containers": [{"name": "app"}], "volumes": volumes}
        }))
        .unwrap()
    }

    #[test]
    fn pods_are_known_by_the_names_their_controllers_give() {
        use WorkloadKind::*;
        assert!(made_by(Deployment, "web", "web-7d9f8b6c5d-x2x4z"));
        assert!(!made_by(Deployment, "web", "web-api-7d9f8b6c5d-x2x4z"));
        assert!(!made_by(Deployment, "web", "web-x2x4z"));
        assert!(!made_by(Deployment, "web", "webapp-7d9f8b6c5d-x2x4z"));
        assert!(made_by(StatefulSet, "db", "db-0"));
        assert!(!made_by(StatefulSet, "db", "db-a"));
        assert!(made_by(DaemonSet, "agent", "agent-x2x4z"));
        assert!(made_by(Job, "migrate", "migrate-x2x4z"));
        assert!(made_by(Job, "shard", "shard-3-x2x4z"));
        assert!(made_by(CronJob, "nightly", "nightly-29411520-x2x4z"));
        assert!(!made_by(CronJob, "nightly", "nightly-x2x4z"));
        assert!(!made_by(Deployment, "web", "web"));
        // Random parts are drawn from an alphabet without vowels: a Job's `migrate` is no hash.
        assert!(!made_by(Deployment, "web", "web-migrate-x2x4z"));
        assert!(!made_by(DaemonSet, "agent", "agent-abcde"));
        // Names too long for their pods were cut to 58 characters before the suffix.
        let long = "payments-reconciliation-service-for-eu-central-1"; // 48
        let replica_set = format!("{long}-6d4cf56db6");
        let pod = format!("{}x2x4z", &format!("{replica_set}-")[..58]);
        assert_eq!(pod.len(), 63);
        assert!(made_by(Deployment, long, &pod));
        let very_long = "a-daemon-set-whose-name-is-longer-than-fifty-eight-characters-x";
        let pod = format!("{}x2x4z", &very_long[..58]);
        assert!(made_by(DaemonSet, very_long, &pod));
        assert!(!made_by(StatefulSet, very_long, &pod));
        // A long-named Job's pod is not the pod of a Deployment or DaemonSet whose name
        // begins its name.
        let job = "web-reindex-the-whole-catalogue-after-the-schema-migration";
        let pod = format!("{}x2x4z", &format!("{job}-")[..58]);
        assert!(made_by(Job, job, &pod));
        assert!(!made_by(Deployment, "web", &pod));
        assert!(!made_by(DaemonSet, "web", &pod));
    }

    #[test]
    fn the_longest_matching_name_made_the_pod() {
        let workload = |kind: WorkloadKind, name: &str| Workload {
            kind,
            object: kube::api::DynamicObject {
                types: None,
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some("shop".to_owned()),
                    ..ObjectMeta::default()
                },
                data: serde_json::Value::Null,
            },
        };
        let web = workload(WorkloadKind::Deployment, "web");
        let web_api = workload(WorkloadKind::DaemonSet, "web-api");
        let all = [&web, &web_api];
        let made = |pod: &str| maker(pod, &all).map(Workload::name);
        assert_eq!(made("web-api-x2x4z").as_deref(), Some("web-api"));
        assert_eq!(made("web-7d9f8b6c5d-x2x4z").as_deref(), Some("web"));
        assert_eq!(made("api-x2x4z"), None);
    }

    #[test]
    fn injection_needs_volume_and_annotation() {
        let injected = pod(
            serde_json::json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile", "coredog.io/injected": "app"}),
            true,
        );
        assert_eq!(
            injection(&injected),
            Injection {
                injected: true,
                containers: vec!["app".into()],
                reason: None,
                cause: None,
            }
        );
        let old = pod(
            serde_json::json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"}),
            false,
        );
        let missed = injection(&old);
        assert!(missed.reason.unwrap().contains("restart it"));
        assert_eq!(missed.cause, Some(NotInjected::Missed));
        let bad = pod(
            serde_json::json!({"coredog.io/inject": "true", "coredog.io/path": "/etc"}),
            false,
        );
        let invalid = injection(&bad);
        assert!(invalid.reason.unwrap().contains("/etc"));
        assert_eq!(invalid.cause, Some(NotInjected::NotOptedIn));
    }

    #[test]
    fn a_pod_the_webhook_refuses_is_told_apart_from_one_it_missed() {
        let named = pod(
            serde_json::json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile", "coredog.io/container": "api"}),
            false,
        );
        let refused = injection(&named);
        assert_eq!(refused.cause, Some(NotInjected::Refused));
        let reason = refused.reason.unwrap();
        assert!(
            reason.contains("api") && reason.contains("it has app"),
            "{reason}"
        );

        let mut mounted = pod(
            serde_json::json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"}),
            false,
        );
        if let Some(spec) = mounted.spec.as_mut() {
            spec.containers[0].volume_mounts =
                Some(vec![k8s_openapi::api::core::v1::VolumeMount {
                    name: "scratch".into(),
                    mount_path: "/corefile/".into(),
                    ..Default::default()
                }]);
        }
        let refused = injection(&mounted);
        assert_eq!(refused.cause, Some(NotInjected::Refused));
        assert!(
            refused
                .reason
                .unwrap()
                .contains("already mounts a volume at /corefile")
        );

        // Spelt another way, the same directory.
        if let Some(spec) = mounted.spec.as_mut() {
            spec.containers[0].volume_mounts.as_mut().unwrap()[0].mount_path = "//corefile".into();
        }
        assert_eq!(injection(&mounted).cause, Some(NotInjected::Refused));

        // A block device at the path.
        let mut device = pod(
            serde_json::json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"}),
            false,
        );
        if let Some(spec) = device.spec.as_mut() {
            spec.containers[0].volume_devices =
                Some(vec![k8s_openapi::api::core::v1::VolumeDevice {
                    name: "block".into(),
                    device_path: "/corefile".into(),
                }]);
        }
        let refused = injection(&device);
        assert_eq!(refused.cause, Some(NotInjected::Refused));
        assert!(
            refused
                .reason
                .unwrap()
                .contains("has a volume device at /corefile")
        );

        // The pod-name variable the webhook would add itself is no conflict; another value is.
        let with_env = |env: serde_json::Value| -> Pod {
            let mut pod = pod(
                serde_json::json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"}),
                false,
            );
            if let Some(spec) = pod.spec.as_mut() {
                spec.containers[0].env = Some(vec![serde_json::from_value(env).unwrap()]);
            }
            pod
        };
        let own = with_env(serde_json::json!({"name": "COREDOG_POD_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}));
        assert_eq!(injection(&own).cause, Some(NotInjected::Missed));
        let other = with_env(serde_json::json!({"name": "COREDOG_POD_NAME", "value": "x"}));
        assert_eq!(injection(&other).cause, Some(NotInjected::Refused));

        // A volume of the webhook's name that is not a hostPath makes it leave the pod alone.
        let mut volume_taken: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop",
                "annotations": {"coredog.io/inject": "true", "coredog.io/path": "/corefile"}},
            "spec": {"containers": [{"name": "app"}], "volumes": [{"name": VOLUME_NAME, "emptyDir": {}}]}
        }))
        .unwrap();
        let refused = injection(&volume_taken);
        assert_eq!(refused.cause, Some(NotInjected::Refused));
        volume_taken.metadata.annotations = None;
        assert_eq!(
            injection(&volume_taken).cause,
            Some(NotInjected::NotOptedIn)
        );
    }
}
