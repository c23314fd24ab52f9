//! The workloads whose pod templates can opt in, named as kubectl names them, and reading them
//! uniformly whatever their kind.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DynamicObject, ListParams, ObjectMeta};
use kube::{Api, Client, ResourceExt as _};
use thiserror::Error;

use crate::kube_client::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkloadRefError {
    #[error(
        "unknown workload type {0:?}: use deploy, sts, ds, rs, job or cj (or their full names)"
    )]
    UnknownKind(String),
    #[error(
        "pods cannot be opted in one by one: annotate the workload that creates them (deploy, sts, ds, rs, job or cj)"
    )]
    Pod,
    #[error("{0:?} names no workload: write TYPE/NAME (e.g. deploy/web) or TYPE NAME...")]
    MissingName(String),
    #[error(
        "there is no need to specify a type as a separate argument when passing arguments in TYPE/NAME form (got {0:?})"
    )]
    Mixed(String),
    #[error("name no workload: give TYPE/NAME arguments, or -l SELECTOR with --kind TYPE")]
    Nothing,
}

impl WorkloadKind {
    pub const ALL: [Self; 6] = [
        Self::Deployment,
        Self::StatefulSet,
        Self::DaemonSet,
        Self::ReplicaSet,
        Self::Job,
        Self::CronJob,
    ];

    /// Reads a type as kubectl accepts it: short name, singular, plural, each optionally with
    /// its group (`deployments.apps`, `deployment.v1.apps`).
    pub fn parse(word: &str) -> Result<Self, WorkloadRefError> {
        let lower = word.to_ascii_lowercase();
        let (resource, group) = lower.split_once('.').unwrap_or((&lower, ""));
        let kind = match resource {
            "deploy" | "deployment" | "deployments" => Self::Deployment,
            "sts" | "statefulset" | "statefulsets" => Self::StatefulSet,
            "ds" | "daemonset" | "daemonsets" => Self::DaemonSet,
            "rs" | "replicaset" | "replicasets" => Self::ReplicaSet,
            "job" | "jobs" => Self::Job,
            "cj" | "cronjob" | "cronjobs" => Self::CronJob,
            "po" | "pod" | "pods" => return Err(WorkloadRefError::Pod),
            _ => return Err(WorkloadRefError::UnknownKind(word.to_owned())),
        };
        let expected = kind.group();
        if group.is_empty() || group == expected || group == format!("v1.{expected}") {
            Ok(kind)
        } else {
            Err(WorkloadRefError::UnknownKind(word.to_owned()))
        }
    }

    fn group(self) -> &'static str {
        match self {
            Self::Job | Self::CronJob => "batch",
            _ => "apps",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        match self {
            Self::Deployment => ApiResource::erase::<Deployment>(&()),
            Self::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Self::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Self::ReplicaSet => ApiResource::erase::<ReplicaSet>(&()),
            Self::Job => ApiResource::erase::<Job>(&()),
            Self::CronJob => ApiResource::erase::<CronJob>(&()),
        }
    }

    /// The type as kubectl prints it (`deployment.apps`).
    pub fn resource_name(self) -> &'static str {
        match self {
            Self::Deployment => "deployment.apps",
            Self::StatefulSet => "statefulset.apps",
            Self::DaemonSet => "daemonset.apps",
            Self::ReplicaSet => "replicaset.apps",
            Self::Job => "job.batch",
            Self::CronJob => "cronjob.batch",
        }
    }

    /// The resource as kubectl names a list of it (`deployments.apps`).
    pub fn plural_name(self) -> String {
        let resource = self.api_resource();
        format!("{}.{}", resource.plural, resource.group)
    }

    /// Where the pod template is in the object.
    pub fn template_path(self) -> &'static [&'static str] {
        match self {
            Self::CronJob => &["spec", "jobTemplate", "spec", "template"],
            _ => &["spec", "template"],
        }
    }

    /// What a change of the pod template does to the pods.
    pub fn rollout_note(self) -> &'static str {
        match self {
            Self::Deployment | Self::StatefulSet | Self::DaemonSet => {
                "a rollout of its pods follows"
            }
            Self::ReplicaSet => {
                "pods it creates from now on get it; a ReplicaSet does not replace running pods, delete them to re-create them"
            }
            Self::Job => "pods it creates from now on get it",
            Self::CronJob => "applies to its next runs",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.resource_name())
    }
}

/// A workload named on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub name: String,
}

impl WorkloadRef {
    pub fn parse(arg: &str) -> Result<Self, WorkloadRefError> {
        let Some((kind, name)) = arg.split_once('/') else {
            return Err(WorkloadRefError::MissingName(arg.to_owned()));
        };
        if name.is_empty() || name.contains('/') {
            return Err(WorkloadRefError::MissingName(arg.to_owned()));
        }
        Ok(Self {
            kind: WorkloadKind::parse(kind)?,
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.resource_name(), self.name)
    }
}

/// The workloads a command line names: `TYPE/NAME...` or `TYPE NAME...`.
pub fn parse_refs(args: &[String]) -> Result<Vec<WorkloadRef>, WorkloadRefError> {
    let Some(first) = args.first() else {
        return Err(WorkloadRefError::Nothing);
    };
    if first.contains('/') {
        return args.iter().map(|arg| WorkloadRef::parse(arg)).collect();
    }
    let kind = WorkloadKind::parse(first)?;
    if args.len() == 1 {
        return Err(WorkloadRefError::MissingName(first.clone()));
    }
    args[1..]
        .iter()
        .map(|name| {
            if name.contains('/') {
                Err(WorkloadRefError::Mixed(name.clone()))
            } else {
                Ok(WorkloadRef {
                    kind,
                    name: name.clone(),
                })
            }
        })
        .collect()
}

/// A workload read from the cluster.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub object: DynamicObject,
}

/// The kind and name of the object's controlling owner, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<(String, String)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| (owner.kind.clone(), owner.name.clone()))
}

impl Workload {
    /// What a change of its pod template does to its pods: [`WorkloadKind::rollout_note`],
    /// unless its update strategy is `OnDelete`, which replaces no pod by itself.
    pub fn rollout_note(&self) -> &'static str {
        let rolling_kind = matches!(
            self.kind,
            WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet
        );
        if self.paused() {
            "it is paused: its pods get it once it is resumed (kubectl rollout resume)"
        } else if rolling_kind && !self.rolls_out() {
            "its update strategy is OnDelete: pods get it when they are deleted and re-created"
        } else {
            self.kind.rollout_note()
        }
    }

    /// Whether it replaces its pods when its pod template changes.
    pub fn rolls_out(&self) -> bool {
        matches!(
            self.kind,
            WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet
        ) && self.object.data["spec"]["updateStrategy"]["type"] != "OnDelete"
            && !self.paused()
    }

    /// A paused Deployment rolls nothing out, and refuses `rollout restart`, until resumed.
    pub fn paused(&self) -> bool {
        self.kind == WorkloadKind::Deployment && self.object.data["spec"]["paused"] == true
    }

    /// How to have its pods re-created with its pod template as it is now, when a rollout
    /// does it: `rollout restart`, after `rollout resume` for a paused Deployment (which
    /// refuses a restart, and rolls out by itself only a template changed while paused).
    pub fn rollout_command(&self) -> Option<String> {
        let rollout = |verb: &str| {
            format!(
                "kubectl -n {} rollout {verb} {}/{}",
                self.namespace(),
                self.kind.resource_name(),
                self.name()
            )
        };
        if self.paused() {
            Some(format!("{} && {}", rollout("resume"), rollout("restart")))
        } else if self.rolls_out() {
            Some(rollout("restart"))
        } else {
            None
        }
    }

    pub fn name(&self) -> String {
        self.object.name_any()
    }

    pub fn namespace(&self) -> String {
        self.object.namespace().unwrap_or_default()
    }

    /// The kind and name of the object that controls this one (a Deployment for its
    /// ReplicaSets, a CronJob for its Jobs), if any.
    pub fn controller(&self) -> Option<(String, String)> {
        controller_of(&self.object.metadata)
    }

    pub fn reference(&self) -> WorkloadRef {
        WorkloadRef {
            kind: self.kind,
            name: self.name(),
        }
    }

    fn at_path(&self, path: &[&str]) -> Option<&serde_json::Value> {
        path.iter()
            .try_fold(&self.object.data, |value, key| value.get(key))
    }

    /// The pod template; `None` when the object has none (which the API server never sends).
    pub fn template(&self) -> Option<PodTemplateSpec> {
        let value = self.at_path(self.kind.template_path())?;
        serde_json::from_value(value.clone()).ok()
    }

    pub fn template_annotations(&self) -> BTreeMap<String, String> {
        self.template()
            .and_then(|template| template.metadata)
            .and_then(|metadata| metadata.annotations)
            .unwrap_or_default()
    }

    /// Names of the template's containers and init containers.
    pub fn container_names(&self) -> Vec<String> {
        let Some(spec) = self.template().and_then(|template| template.spec) else {
            return Vec::new();
        };
        spec.init_containers
            .unwrap_or_default()
            .into_iter()
            .chain(spec.containers)
            .map(|container| container.name)
            .collect()
    }

    /// The selector of its pods (a CronJob's pods are found through its Jobs instead).
    pub fn selector(&self) -> Option<LabelSelector> {
        let value = self.at_path(&["spec", "selector"])?;
        serde_json::from_value(value.clone()).ok()
    }
}

pub async fn get(
    client: &Client,
    namespace: &str,
    reference: &WorkloadRef,
) -> Result<Workload, kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &reference.kind.api_resource());
    let object = api.get(&reference.name).await?;
    Ok(Workload {
        kind: reference.kind,
        object,
    })
}

pub async fn list(
    client: &Client,
    scope: &Scope,
    kind: WorkloadKind,
    label_selector: Option<&str>,
) -> Result<Vec<Workload>, kube::Error> {
    let resource = kind.api_resource();
    let api: Api<DynamicObject> = match scope {
        Scope::Namespace(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::All => Api::all_with(client.clone(), &resource),
    };
    let mut params = ListParams::default();
    if let Some(selector) = label_selector {
        params = params.labels(selector);
    }
    let items = crate::kube_client::list_all(&api, &params).await?;
    Ok(items
        .into_iter()
        .map(|object| Workload { kind, object })
        .collect())
}

/// A label selector in the query syntax (`a=b,c in (d,e),!f`).
pub fn selector_query(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default().join(",");
        let key = &expression.key;
        parts.push(match expression.operator.as_str() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.clone(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn kubectl_spellings() {
        for (word, kind) in [
            ("deploy", WorkloadKind::Deployment),
            ("Deployment", WorkloadKind::Deployment),
            ("deployments.apps", WorkloadKind::Deployment),
            ("deployment.v1.apps", WorkloadKind::Deployment),
            ("sts", WorkloadKind::StatefulSet),
            ("statefulsets.apps", WorkloadKind::StatefulSet),
            ("ds", WorkloadKind::DaemonSet),
            ("rs", WorkloadKind::ReplicaSet),
            ("job", WorkloadKind::Job),
            ("jobs.batch", WorkloadKind::Job),
            ("cj", WorkloadKind::CronJob),
            ("cronjob", WorkloadKind::CronJob),
        ] {
            assert_eq!(WorkloadKind::parse(word), Ok(kind), "{word}");
        }
        assert_eq!(
            WorkloadKind::parse("deployments.batch"),
            Err(WorkloadRefError::UnknownKind("deployments.batch".into()))
        );
        assert_eq!(
            WorkloadKind::parse("svc").map(|_| ()),
            Err(WorkloadRefError::UnknownKind("svc".into()))
        );
        assert_eq!(WorkloadKind::parse("pod"), Err(WorkloadRefError::Pod));
    }

    #[test]
    fn references() {
        let refs = parse_refs(&strings(&["deploy/web", "cj/nightly"])).unwrap();
        assert_eq!(refs[0].to_string(), "deployment.apps/web");
        assert_eq!(refs[1].to_string(), "cronjob.batch/nightly");
        let refs = parse_refs(&strings(&["sts", "db", "cache"])).unwrap();
        assert_eq!(
            refs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["statefulset.apps/db", "statefulset.apps/cache"]
        );
        assert_eq!(
            parse_refs(&strings(&["sts", "ds/x"])),
            Err(WorkloadRefError::Mixed("ds/x".into()))
        );
        assert_eq!(
            parse_refs(&strings(&["deploy/"])),
            Err(WorkloadRefError::MissingName("deploy/".into()))
        );
        assert_eq!(
            parse_refs(&strings(&["deploy"])),
            Err(WorkloadRefError::MissingName("deploy".into()))
        );
        assert_eq!(parse_refs(&[]), Err(WorkloadRefError::Nothing));
    }

    #[test]
    fn templates_are_found_for_every_kind() {
        let template = serde_json::json!({
            "metadata": {"annotations": {"coredog.io/inject": "true"}},
            "spec": {"containers": [{"name": "app"}], "initContainers": [{"name": "init"}]}
        });
        let deployment = Workload {
            kind: WorkloadKind::Deployment,
            object: serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"template": template, "selector": {"matchLabels": {"app": "web"}}}
            }))
            .unwrap(),
        };
        assert_eq!(
            deployment.template_annotations()["coredog.io/inject"],
            "true"
        );
        assert_eq!(deployment.container_names(), ["init", "app"]);
        assert_eq!(selector_query(&deployment.selector().unwrap()), "app=web");
        let cronjob = Workload {
            kind: WorkloadKind::CronJob,
            object: serde_json::from_value(serde_json::json!({
                "metadata": {"name": "nightly"},
                "spec": {"jobTemplate": {"spec": {"template": template}}}
            }))
            .unwrap(),
        };
        assert_eq!(cronjob.container_names(), ["init", "app"]);
        assert!(cronjob.selector().is_none());
    }

    #[test]
    fn selector_expressions() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"a": "b"},
            "matchExpressions": [
                {"key": "c", "operator": "In", "values": ["d", "e"]},
                {"key": "f", "operator": "NotIn", "values": ["g"]},
                {"key": "h", "operator": "Exists"},
                {"key": "i", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(selector_query(&selector), "a=b,c in (d,e),f notin (g),h,!i");
    }
}
