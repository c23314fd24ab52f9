//! `enable` and `disable`: CoreDog's annotations on workloads' pod templates, by merge patch.
//!
//! The template, not the pods, carries the opt-in, so that every pod the workload creates from
//! now on is injected by the webhook; the change of template is what rolls the pods.

use std::collections::BTreeMap;

use anyhow::Context as _;
use coredog_core::annotations::{CONTAINER, ContainerSelection, INJECT, PATH};
use coredog_core::mount_path::MountPath;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Map, Value, json};

use crate::cli::{DryRun, WorkloadSelection};
use crate::doctor::checks::unmet_term;
use crate::error::{UserError, kube_message, user};
use crate::install::manifests::{WEBHOOK, WEBHOOK_NAME};
use crate::kube_client::Scope;
use crate::output::Console;
use crate::workload::{self, Workload, WorkloadKind, WorkloadRef, parse_refs};

/// The field manager of every change this plugin makes.
pub const FIELD_MANAGER: &str = "kubectl-coredog";

/// Namespaces the webhook never sees (its namespaceSelector).
const EXCLUDED_NAMESPACES: [&str; 2] = ["kube-system", crate::install::manifests::NAMESPACE];

/// The workloads a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    Named(Vec<WorkloadRef>),
    Selected {
        kind: WorkloadKind,
        selector: String,
    },
}

impl Targets {
    pub fn from_args(selection: &WorkloadSelection) -> anyhow::Result<Self> {
        let Some(selector) = &selection.selector else {
            if selection.kind.is_some() {
                return Err(user(
                    "--kind goes with -l SELECTOR",
                    "name workloads as TYPE/NAME, or add -l SELECTOR",
                ));
            }
            return parse_refs(&selection.workloads)
                .map(Self::Named)
                .map_err(|err| {
                    user(
                        err.to_string(),
                        "for example: kubectl coredog enable deploy/web",
                    )
                });
        };
        let kind_word = match (&selection.kind, selection.workloads.as_slice()) {
            (Some(kind), []) => kind.as_str(),
            (None, [kind]) if !kind.contains('/') => kind.as_str(),
            (None, []) => {
                return Err(user(
                    "-l SELECTOR needs the type of workload to select",
                    "add --kind deploy (or sts, ds, rs, job, cj)",
                ));
            }
            _ => {
                return Err(user(
                    "name workloads or select them with -l, not both",
                    "for example: kubectl coredog enable -l app=web --kind deploy",
                ));
            }
        };
        let kind = WorkloadKind::parse(kind_word)
            .map_err(|err| user(err.to_string(), "for example: --kind deploy"))?;
        Ok(Self::Selected {
            kind,
            selector: selector.clone(),
        })
    }
}

/// The mount path of a workload that opts in without `--path`.
pub const DEFAULT_PATH: &str = "/corefile";

/// What to do to the annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// What is `None` was not given: a workload already opted in keeps its own, another gets
    /// the default ([`Change::for_template`]).
    Enable {
        path: Option<MountPath>,
        /// Empty: every container.
        containers: Option<Vec<String>>,
    },
    Disable,
}

impl Change {
    /// `--path` and `--container` as given (`None`: left out).
    pub fn enable(path: Option<&str>, containers: Option<&[String]>) -> anyhow::Result<Self> {
        let path = path
            .map(|path| {
                MountPath::parse(path).map_err(|err| {
                    user(
                        format!("--path: {err}"),
                        "use a dedicated directory such as /corefile, /data/dumps or /app/coredumps",
                    )
                })
            })
            .transpose()?;
        let containers = containers.map(|containers| {
            let mut names: Vec<String> = Vec::new();
            for name in containers.iter().map(|name| name.trim()) {
                if !name.is_empty() && !names.iter().any(|known| known == name) {
                    names.push(name.to_owned());
                }
            }
            names
        });
        Ok(Self::Enable { path, containers })
    }

    /// The change for a workload whose pod template has the annotations `current`: what was
    /// not given stays as the workload has it, so that `enable --container worker` on a
    /// workload enabled at `/data/dumps` keeps its path.
    pub fn for_template(&self, current: &BTreeMap<String, String>) -> Self {
        match self {
            Self::Disable => Self::Disable,
            Self::Enable { path, containers } => {
                let path = path.clone().or_else(|| {
                    current
                        .get(PATH)
                        .and_then(|path| MountPath::parse(path).ok())
                });
                let containers = containers.clone().or_else(|| {
                    current
                        .get(CONTAINER)
                        .map(|raw| match ContainerSelection::parse(raw) {
                            ContainerSelection::All => Vec::new(),
                            ContainerSelection::Named(names) => names,
                        })
                });
                Self::Enable { path, containers }
            }
        }
    }

    /// Every CoreDog annotation, with the value it should have (`None`: absent).
    pub fn desired(&self) -> BTreeMap<&'static str, Option<String>> {
        match self {
            Self::Enable { path, containers } => BTreeMap::from([
                (INJECT, Some("true".to_owned())),
                (
                    PATH,
                    Some(
                        path.as_ref()
                            .map_or(DEFAULT_PATH.to_owned(), |p| p.to_string()),
                    ),
                ),
                (
                    CONTAINER,
                    containers
                        .as_ref()
                        .filter(|names| !names.is_empty())
                        .map(|names| names.join(",")),
                ),
            ]),
            Self::Disable => BTreeMap::from([(INJECT, None), (PATH, None), (CONTAINER, None)]),
        }
    }

    /// The flags that were given, as they are typed: for a command printed as a hint.
    fn flags(&self) -> String {
        let Self::Enable { path, containers } = self else {
            return String::new();
        };
        let mut flags = String::new();
        if let Some(path) = path {
            flags.push_str(&format!(" --path {path}"));
        }
        match containers.as_deref() {
            Some([]) => flags.push_str(" --container \"\""),
            Some(names) => flags.push_str(&format!(" --container {}", names.join(","))),
            None => {}
        }
        flags
    }

    /// The merge patch that sets [`Change::desired`] on a workload's pod template.
    pub fn patch(&self, kind: WorkloadKind) -> Value {
        let annotations: Map<String, Value> = self
            .desired()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.map_or(Value::Null, Value::String)))
            .collect();
        let mut patch = json!({"metadata": {"annotations": annotations}});
        for key in kind.template_path().iter().rev() {
            patch = json!({ *key: patch });
        }
        patch
    }

    fn verb(&self) -> &'static str {
        match self {
            Self::Enable { .. } => "enabled",
            Self::Disable => "disabled",
        }
    }

    /// The plugin's command that makes this change.
    fn command(&self) -> &'static str {
        match self {
            Self::Enable { .. } => "enable",
            Self::Disable => "disable",
        }
    }
}

/// How the annotations would change, as `key=value (was old)` / `key removed` phrases.
pub fn describe_changes(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<&'static str, Option<String>>,
) -> Vec<String> {
    desired
        .iter()
        .filter_map(|(key, want)| {
            let have = current.get(*key);
            match (have, want) {
                (Some(have), Some(want)) if have == want => None,
                (None, None) => None,
                (Some(have), Some(want)) => Some(format!("{key}={want} (was {have})")),
                (None, Some(want)) => Some(format!("{key}={want}")),
                (Some(_), None) => Some(format!("{key} removed")),
            }
        })
        .collect()
}

pub async fn run(
    client: &Client,
    scope: &Scope,
    targets: &Targets,
    change: &Change,
    dry_run: DryRun,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let mut failures = 0usize;
    let workloads = match (targets, scope) {
        (Targets::Named(_), Scope::All) => {
            return Err(user(
                "a workload cannot be named across all namespaces (-A)",
                "give its namespace with -n, or select workloads in every namespace with -A -l SELECTOR --kind KIND",
            ));
        }
        (Targets::Named(refs), Scope::Namespace(namespace)) => {
            let mut found = Vec::new();
            for reference in refs {
                match workload::get(client, namespace, reference).await {
                    Ok(workload) => found.push(workload),
                    Err(err) if crate::error::is_not_found(&err) => {
                        failures += 1;
                        console.note(&format!(
                            "error: {reference} not found in namespace {namespace}"
                        ));
                    }
                    Err(err) => {
                        return Err(anyhow::Error::new(err)
                            .context(format!("cannot read {reference} in namespace {namespace}")));
                    }
                }
            }
            found
        }
        (Targets::Selected { kind, selector }, scope) => {
            let found = workload::list(client, scope, *kind, Some(selector))
                .await
                .with_context(|| {
                    format!(
                        "cannot list {} matching {selector:?} in {}",
                        kind.plural_name(),
                        where_(scope)
                    )
                })?;
            if found.is_empty() {
                console.note(&match scope {
                    Scope::Namespace(namespace) => {
                        format!("No resources found in {namespace} namespace.")
                    }
                    Scope::All => "No resources found.".to_owned(),
                });
            }
            found
        }
    };
    if matches!(change, Change::Enable { .. }) {
        let namespaces: std::collections::BTreeSet<String> =
            workloads.iter().map(Workload::namespace).collect();
        // The installed one; where it cannot be read, the one `install` and the chart write.
        let selector = installed_namespace_selector(client)
            .await
            .unwrap_or_else(crate::install::manifests::namespace_selector);
        for namespace in &namespaces {
            let why = if EXCLUDED_NAMESPACES.contains(&namespace.as_str()) {
                Some("always".to_owned())
            } else {
                left_out_by(&selector, client, namespace).await
            };
            if let Some(why) = why {
                console.warn(&format!(
                    "the webhook leaves namespace {namespace} out ({why}): its workloads will not get a dump directory"
                ));
            }
        }
    }
    let total = workloads.len() + failures;
    for workload in &workloads {
        if let Err(err) = apply_change(client, workload, change, dry_run, console).await {
            failures += 1;
            console.note(&crate::error::explain(&err).to_string());
        }
    }
    if failures > 0 {
        return Err(UserError::new(format!(
            "{failures} of {total} workloads could not be {}",
            change.verb()
        ))
        .hint("see the errors above")
        .into());
    }
    Ok(())
}

/// The namespaceSelector of the webhook as installed; `None` when it cannot be read (not
/// installed, or not this user's to read).
async fn installed_namespace_selector(client: &Client) -> Option<LabelSelector> {
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let configuration = match configurations.get_opt(WEBHOOK).await {
        Ok(found) => found?,
        Err(err) => {
            tracing::debug!(error = %err, "cannot read the webhook configuration");
            return None;
        }
    };
    configuration
        .webhooks?
        .into_iter()
        .find(|webhook| webhook.name == WEBHOOK_NAME)?
        .namespace_selector
}

/// The term of the installed `selector` that leaves `namespace` out, by its labels; `None`
/// when it is in, or when the namespace cannot be read.
async fn left_out_by(selector: &LabelSelector, client: &Client, namespace: &str) -> Option<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels = match namespaces.get_opt(namespace).await {
        Ok(found) => found?.metadata.labels.unwrap_or_default(),
        Err(err) => {
            tracing::debug!(namespace, error = %err, "cannot read the namespace's labels");
            return None;
        }
    };
    unmet_term(selector, &labels)
}

async fn apply_change(
    client: &Client,
    workload: &Workload,
    change: &Change,
    dry_run: DryRun,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let reference = workload.reference();
    let controller = workload.controller();
    let replaced_by_owner = matches!(
        (
            workload.kind,
            controller.as_ref().map(|(kind, _)| kind.as_str())
        ),
        (WorkloadKind::ReplicaSet, Some("Deployment")) | (WorkloadKind::Job, Some("CronJob"))
    );
    if let Some((kind, name)) = controller.as_ref().filter(|_| !replaced_by_owner) {
        console.warn(&format!(
            "{reference} is managed by {kind} {name}, which may undo this change: make it there if {kind} can carry pod annotations"
        ));
    }
    if let Some((kind, name)) = controller.filter(|_| replaced_by_owner) {
        return Err(user(
            format!(
                "{reference} is managed by {kind} {name}: a change to its pod template would be undone, or start a rollout nobody asked for"
            ),
            format!(
                "kubectl coredog {} {}/{name} -n {}{}",
                change.command(),
                kind.to_ascii_lowercase(),
                workload.namespace(),
                change.flags()
            ),
        ));
    }
    let current = workload.template_annotations();
    let given_containers = matches!(
        change,
        Change::Enable {
            containers: Some(_),
            ..
        }
    );
    let change = &change.for_template(&current);
    if let Change::Enable {
        containers: Some(containers),
        ..
    } = change
    {
        if given_containers {
            check_containers(workload, containers, console)?;
        } else if let Err(err) = check_containers(workload, containers, console) {
            // Kept from the workload, not typed now: said, and left to the user to mend.
            console.warn(&format!(
                "{} (its coredog.io/container as it is; --container changes it)",
                crate::error::explain(&err).message
            ));
        }
    }
    let changes = describe_changes(&current, &change.desired());
    if changes.is_empty() {
        let state = match change {
            Change::Enable { .. } => "already enabled",
            Change::Disable => "not enabled",
        };
        return console.line(&format!("{reference} unchanged ({state})"));
    }
    let patch = change.patch(workload.kind);
    if dry_run == DryRun::Client {
        return console.line(&format!("{reference} patch{}: {patch}", dry_run.suffix()));
    }
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &workload.namespace(),
        &workload.kind.api_resource(),
    );
    let mut params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    if dry_run == DryRun::Server {
        params = params.dry_run();
    }
    api.patch(&reference.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|err| patch_error(&reference, change, err))?;
    console.line(&format!(
        "{reference} {}{}: {}; {}",
        change.verb(),
        dry_run.suffix(),
        changes.join(", "),
        workload.rollout_note()
    ))
}

/// `namespace shop`, or `every namespace`.
fn where_(scope: &Scope) -> String {
    match scope {
        Scope::Namespace(namespace) => format!("namespace {namespace}"),
        Scope::All => "every namespace".to_owned(),
    }
}

fn patch_error(reference: &WorkloadRef, change: &Change, err: kube::Error) -> anyhow::Error {
    let invalid = matches!(&err, kube::Error::Api(status) if status.code == 422);
    if invalid && reference.kind == WorkloadKind::Job {
        let hint = match change {
            Change::Enable { .. } => {
                "opt in the CronJob that creates it, or re-create the Job with the annotations"
            }
            Change::Disable => {
                "opt out the CronJob that creates it, or re-create the Job without the annotations"
            }
        };
        return UserError::new(format!(
            "{reference}: Kubernetes does not let a Job's pod template change once it exists"
        ))
        .hint(hint)
        .into();
    }
    UserError::new(format!("{reference}: {}", kube_message(&err)))
        .hint("check the workload with `kubectl get` and try again")
        .into()
}

fn check_containers(
    workload: &Workload,
    wanted: &[String],
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let known = workload.container_names();
    let missing: Vec<&String> = wanted.iter().filter(|name| !known.contains(name)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = |names: &[&String]| {
        names
            .iter()
            .map(|name| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let known_refs: Vec<&String> = known.iter().collect();
    if missing.len() == wanted.len() {
        return Err(user(
            format!(
                "{}: --container {} matches none of its containers ({})",
                workload.reference(),
                list(&missing),
                list(&known_refs)
            ),
            "name containers of the pod template, or give --container \"\" to select all",
        ));
    }
    console.warn(&format!(
        "{}: no container named {} (it has {}); the webhook skips that name",
        workload.reference(),
        list(&missing),
        list(&known_refs)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_target_the_pod_template() {
        let change = Change::enable(
            Some("/corefile"),
            Some(&["app".into(), " worker".into(), "app".into()]),
        )
        .unwrap();
        assert_eq!(
            change.patch(WorkloadKind::Deployment),
            json!({"spec": {"template": {"metadata": {"annotations": {
                "coredog.io/inject": "true",
                "coredog.io/path": "/corefile",
                "coredog.io/container": "app,worker"
            }}}}})
        );
        assert_eq!(
            Change::Disable.patch(WorkloadKind::CronJob),
            json!({"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"annotations": {
                "coredog.io/inject": null,
                "coredog.io/path": null,
                "coredog.io/container": null
            }}}}}}})
        );
        let all = Change::enable(Some("/data/dumps"), Some(&[])).unwrap();
        assert_eq!(
            all.patch(WorkloadKind::Job)["spec"]["template"]["metadata"]["annotations"]["coredog.io/container"],
            Value::Null
        );
    }

    #[test]
    fn paths_are_validated_before_anything_is_patched() {
        let err = Change::enable(Some("/etc/cores"), None).unwrap_err();
        let explained = crate::error::explain(&err);
        assert!(
            explained
                .message
                .starts_with("--path: path \"/etc/cores\" is /etc"),
            "{explained:?}"
        );
        assert!(explained.hint.is_some());
    }

    #[test]
    fn changes_are_described() {
        let current = BTreeMap::from([
            (INJECT.to_owned(), "true".to_owned()),
            (PATH.to_owned(), "/data".to_owned()),
            (CONTAINER.to_owned(), "app".to_owned()),
        ]);
        let change = Change::enable(Some("/corefile"), Some(&[])).unwrap();
        assert_eq!(
            describe_changes(&current, &change.for_template(&current).desired()),
            [
                "coredog.io/container removed",
                "coredog.io/path=/corefile (was /data)"
            ]
        );
        // What is not given stays as the workload has it.
        let containers_only = Change::enable(None, Some(&["worker".into()])).unwrap();
        assert_eq!(
            describe_changes(&current, &containers_only.for_template(&current).desired()),
            ["coredog.io/container=worker (was app)"]
        );
        let nothing = Change::enable(None, None).unwrap();
        assert!(describe_changes(&current, &nothing.for_template(&current).desired()).is_empty());
        // A workload not opted in yet gets the default path and every container.
        assert_eq!(
            nothing.for_template(&BTreeMap::new()).desired(),
            BTreeMap::from([
                (INJECT, Some("true".to_owned())),
                (PATH, Some(DEFAULT_PATH.to_owned())),
                (CONTAINER, None),
            ])
        );
        assert!(describe_changes(&BTreeMap::new(), &Change::Disable.desired()).is_empty());
    }

    #[test]
    fn selections() {
        let selection =
            |workloads: &[&str], selector: Option<&str>, kind: Option<&str>| WorkloadSelection {
                workloads: workloads.iter().map(|w| (*w).to_owned()).collect(),
                selector: selector.map(str::to_owned),
                kind: kind.map(str::to_owned),
            };
        assert_eq!(
            Targets::from_args(&selection(&[], Some("app=web"), Some("deploy"))).unwrap(),
            Targets::Selected {
                kind: WorkloadKind::Deployment,
                selector: "app=web".into()
            }
        );
        assert_eq!(
            Targets::from_args(&selection(&["sts"], Some("app=db"), None)).unwrap(),
            Targets::Selected {
                kind: WorkloadKind::StatefulSet,
                selector: "app=db".into()
            }
        );
        assert!(Targets::from_args(&selection(&[], Some("a=b"), None)).is_err());
        assert!(Targets::from_args(&selection(&["deploy/x"], Some("a=b"), Some("ds"))).is_err());
        assert!(Targets::from_args(&selection(&[], None, Some("ds"))).is_err());
        assert!(Targets::from_args(&selection(&[], None, None)).is_err());
    }
}
