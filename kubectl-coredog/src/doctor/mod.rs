//! `doctor [WORKLOAD]`: checks the installation end to end, and one workload if named, and
//! says how to fix each failure. Everything is read first into a snapshot; the checks are pure
//! functions of it ([`checks`]), so each verdict is tested without a cluster.

pub mod certs;
pub mod checks;
pub mod exec;

use std::future::Future;

use jiff::Timestamp;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt as _};
use serde::Serialize;

use crate::error::{is_forbidden, is_not_found, kube_message};
use crate::install::manifests::{NAMESPACE, RELEASE, TLS_SECRET, WATCHER, WEBHOOK};
use crate::kube_client::list_all;
use crate::output::Console;
use crate::workload::{self, Workload, WorkloadKind, WorkloadRef, controller_of, selector_query};
use exec::CoreLimitProbe;

/// Pods of a workload whose containers are probed for their core size limit: enough to see a pattern
/// without an exec per replica of a large workload.
const PROBED_PODS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn mark(self) -> &'static str {
        match self {
            Self::Ok => "✔",
            Self::Warn => "⚠",
            Self::Fail => "✘",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub level: Level,
    pub title: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(title: impl Into<String>) -> Self {
        Self {
            level: Level::Ok,
            title: title.into(),
            details: Vec::new(),
            fix: None,
        }
    }

    pub fn warn(title: impl Into<String>) -> Self {
        Self {
            level: Level::Warn,
            ..Self::ok(title)
        }
    }

    pub fn fail(title: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            level: Level::Fail,
            fix: Some(fix.into()),
            ..Self::ok(title)
        }
    }

    pub fn details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// An object read from the cluster, or why it is not there.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    Found(T),
    Missing,
    /// The API server refused (its message).
    Denied(String),
}

impl<T> Lookup<T> {
    pub fn found(&self) -> Option<&T> {
        match self {
            Self::Found(value) => Some(value),
            _ => None,
        }
    }
}

/// Reads through `read`: a 404 is [`Lookup::Missing`], a 401/403 [`Lookup::Denied`]; anything
/// else (the cluster is unreachable) ends the command.
async fn lookup<T>(
    what: &str,
    read: impl Future<Output = Result<T, kube::Error>>,
) -> anyhow::Result<Lookup<T>> {
    match read.await {
        Ok(value) => Ok(Lookup::Found(value)),
        Err(err) if is_not_found(&err) => Ok(Lookup::Missing),
        Err(err) if is_forbidden(&err) => Ok(Lookup::Denied(kube_message(&err))),
        Err(err) => Err(anyhow::Error::new(err).context(format!("cannot read {what}"))),
    }
}

/// Everything the installation checks look at.
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    pub now: Timestamp,
    pub webhook_configuration: Lookup<MutatingWebhookConfiguration>,
    /// When CoreDog's webhook configuration is not under its default name: the CoreDog
    /// installations found under others (a Helm release of another name), as
    /// `<configuration> (release R, namespace N)`.
    pub installed_elsewhere: Vec<String>,
    pub tls_secret: Lookup<Secret>,
    pub endpoint_slices: Lookup<Vec<EndpointSlice>>,
    pub daemon_set: Lookup<DaemonSet>,
    pub nodes: Lookup<Vec<Node>>,
    pub watcher_pods: Lookup<Vec<Pod>>,
}

/// A container's core size limit, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreLimit {
    pub pod: String,
    pub container: String,
    pub limit: Result<exec::CoreLimitReading, String>,
}

/// Everything the checks of one workload look at.
#[derive(Debug, Clone)]
pub struct WorkloadSnapshot {
    pub reference: WorkloadRef,
    pub namespace: String,
    pub workload: Lookup<Workload>,
    pub pods: Vec<Pod>,
    /// Why its pods (or a CronJob's jobs) could not be listed.
    pub pods_denied: Option<String>,
    pub namespace_object: Lookup<Namespace>,
    pub limits: Vec<CoreLimit>,
}

pub async fn gather_cluster(client: &Client, now: Timestamp) -> anyhow::Result<ClusterSnapshot> {
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let webhook_configuration = lookup(
        "the MutatingWebhookConfiguration",
        configurations.get(WEBHOOK),
    )
    .await?;
    let installed_elsewhere = match webhook_configuration {
        Lookup::Missing => installations_elsewhere(&configurations).await,
        _ => Vec::new(),
    };
    Ok(ClusterSnapshot {
        now,
        webhook_configuration,
        installed_elsewhere,
        tls_secret: lookup("the webhook's TLS Secret", secrets.get(TLS_SECRET)).await?,
        endpoint_slices: lookup("the webhook's endpoints", async {
            slices
                .list(
                    &ListParams::default().labels(&format!("kubernetes.io/service-name={WEBHOOK}")),
                )
                .await
                .map(|list| list.items)
        })
        .await?,
        daemon_set: lookup("the watcher DaemonSet", daemon_sets.get(WATCHER)).await?,
        nodes: lookup("the nodes", list_all(&nodes, &ListParams::default())).await?,
        watcher_pods: lookup(
            "the watcher pods",
            list_all(
                &pods,
                &ListParams::default().labels(&format!(
                    "app.kubernetes.io/component=watcher,app.kubernetes.io/instance={RELEASE}"
                )),
            ),
        )
        .await?,
    })
}

/// CoreDog's webhook configurations under other names than the default (the chart's labels
/// say whose); none when they cannot be listed.
async fn installations_elsewhere(
    configurations: &Api<MutatingWebhookConfiguration>,
) -> Vec<String> {
    let part_of = ListParams::default().labels("app.kubernetes.io/part-of=coredog");
    let Ok(found) = configurations.list(&part_of).await else {
        return Vec::new();
    };
    found
        .items
        .iter()
        .map(|configuration| {
            let release = configuration
                .labels()
                .get("app.kubernetes.io/instance")
                .map_or("?", String::as_str);
            let namespace = configuration
                .webhooks
                .iter()
                .flatten()
                .find_map(|webhook| webhook.client_config.service.as_ref())
                .map_or("?", |service| service.namespace.as_str());
            format!(
                "{} (release {release}, namespace {namespace})",
                configuration.name_any()
            )
        })
        .collect()
}

/// The pods of a workload: by its selector, or for a CronJob through the Jobs it created.
async fn workload_pods(client: &Client, workload: &Workload) -> kube::Result<Vec<Pod>> {
    let namespace = workload.namespace();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let selector = if workload.kind == WorkloadKind::CronJob {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        let names: Vec<String> = list_all(&jobs, &ListParams::default())
            .await?
            .into_iter()
            .filter(|job| {
                job.owner_references()
                    .iter()
                    .any(|owner| owner.kind == "CronJob" && owner.name == workload.name())
            })
            .map(|job| job.name_any())
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        format!("job-name in ({})", names.join(","))
    } else {
        match workload.selector() {
            Some(selector) => selector_query(&selector),
            None => return Ok(Vec::new()),
        }
    };
    let mut found = list_all(&pods, &ListParams::default().labels(&selector)).await?;
    // A selector may match other workloads' pods too (a canary sharing `app=web`): only the
    // workload's own are judged.
    if workload.kind != WorkloadKind::CronJob {
        found.retain(|pod| controlled_by(pod, workload));
    }
    Ok(found)
}

/// Whether `workload` controls `pod`: directly, or for a Deployment through its ReplicaSet,
/// which the Deployment controller names `<deployment>-<pod-template-hash>`.
fn controlled_by(pod: &Pod, workload: &Workload) -> bool {
    let Some((kind, name)) = controller_of(&pod.metadata) else {
        return false;
    };
    if workload.kind != WorkloadKind::Deployment {
        return kind == workload.kind.api_resource().kind && name == workload.name();
    }
    let hash = pod.labels().get("pod-template-hash");
    kind == "ReplicaSet"
        && name
            .strip_prefix(&workload.name())
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| hash.is_some_and(|hash| hash == rest))
}

/// The containers of a running pod that the workload's annotation selects.
fn probed_containers(
    pod: &Pod,
    selection: &coredog_core::annotations::ContainerSelection,
) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|spec| spec.containers.iter())
        .map(|container| container.name.clone())
        .filter(|name| selection.selects(name))
        .collect()
}

pub async fn gather_workload(
    client: &Client,
    reference: &WorkloadRef,
    namespace: &str,
    probe: &impl CoreLimitProbe,
) -> anyhow::Result<WorkloadSnapshot> {
    let found = lookup(
        &reference.to_string(),
        workload::get(client, namespace, reference),
    )
    .await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace_object =
        lookup(&format!("namespace {namespace}"), namespaces.get(namespace)).await?;
    let mut snapshot = WorkloadSnapshot {
        reference: reference.clone(),
        namespace: namespace.to_owned(),
        workload: Lookup::Missing,
        pods: Vec::new(),
        pods_denied: None,
        namespace_object,
        limits: Vec::new(),
    };
    let workload = match found {
        Lookup::Found(workload) => workload,
        other => {
            snapshot.workload = other;
            return Ok(snapshot);
        }
    };
    match workload_pods(client, &workload).await {
        Ok(pods) => snapshot.pods = pods,
        Err(err) if is_forbidden(&err) => snapshot.pods_denied = Some(kube_message(&err)),
        Err(err) => {
            return Err(anyhow::Error::new(err).context(match workload.kind {
                WorkloadKind::CronJob => {
                    format!("cannot list the jobs and pods of {}", workload.reference())
                }
                _ => format!("cannot list the pods of {}", workload.reference()),
            }));
        }
    }
    let selection = coredog_core::annotations::read_opt_in(&workload.template_annotations())
        .ok()
        .flatten()
        .map(|request| request.containers);
    if let Some(selection) = selection {
        // Not pods on their way out: a rollout's old pods would take the probes' places.
        let running = snapshot.pods.iter().filter(|pod| {
            crate::status::live(pod)
                && pod
                    .status
                    .as_ref()
                    .and_then(|status| status.phase.as_deref())
                    == Some("Running")
        });
        for pod in running.take(PROBED_PODS) {
            // PID 1 is the pause process of a pod sharing its process namespace, and the
            // node's init in one using the host's.
            let shares_processes = pod.spec.as_ref().is_some_and(|spec| {
                spec.share_process_namespace == Some(true) || spec.host_pid == Some(true)
            });
            for container in probed_containers(pod, &selection) {
                let limit = probe
                    .core_limit(namespace, &pod.name_any(), &container, !shares_processes)
                    .await;
                snapshot.limits.push(CoreLimit {
                    pod: pod.name_any(),
                    container,
                    limit,
                });
            }
        }
    }
    snapshot.workload = Lookup::Found(workload);
    Ok(snapshot)
}

/// How the checks came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    pub failures: usize,
    pub warnings: usize,
}

impl Verdict {
    pub fn of(checks: &[Check]) -> Self {
        Self {
            failures: checks.iter().filter(|c| c.level == Level::Fail).count(),
            warnings: checks.iter().filter(|c| c.level == Level::Warn).count(),
        }
    }

    pub fn passed(self) -> bool {
        self.failures == 0
    }

    /// The process's exit code: non-zero when anything failed.
    pub fn exit_code(self) -> u8 {
        u8::from(!self.passed())
    }
}

pub fn render(checks: &[Check]) -> String {
    let mut text = String::new();
    for check in checks {
        text.push_str(&format!("{} {}\n", check.level.mark(), check.title));
        for detail in &check.details {
            text.push_str(&format!("    {detail}\n"));
        }
        if check.level != Level::Ok
            && let Some(fix) = &check.fix
        {
            text.push_str(&format!("    fix: {fix}\n"));
        }
    }
    let verdict = Verdict::of(checks);
    let plural =
        |count: usize, word: &str| format!("{count} {word}{}", if count == 1 { "" } else { "s" });
    text.push('\n');
    text.push_str(&match (verdict.failures, verdict.warnings) {
        (0, 0) => "No problems found.\n".to_owned(),
        (0, warnings) => format!("No problems found, {}.\n", plural(warnings, "warning")),
        (failures, 0) => format!("{} found.\n", plural(failures, "problem")),
        (failures, warnings) => format!(
            "{} and {} found.\n",
            plural(failures, "problem"),
            plural(warnings, "warning")
        ),
    });
    text
}

/// Runs every check.
pub async fn check_all(
    client: &Client,
    workload: Option<(&WorkloadRef, &str)>,
    probe: &impl CoreLimitProbe,
    now: Timestamp,
) -> anyhow::Result<Vec<Check>> {
    let cluster = gather_cluster(client, now).await?;
    let mut all = checks::cluster_checks(&cluster);
    if let Some((reference, namespace)) = workload {
        let snapshot = gather_workload(client, reference, namespace, probe).await?;
        all.extend(checks::workload_checks(&cluster, &snapshot));
    }
    Ok(all)
}

/// Runs every check and prints the checklist.
pub async fn run(
    client: &Client,
    workload: Option<(&WorkloadRef, &str)>,
    probe: &impl CoreLimitProbe,
    now: Timestamp,
    console: &mut Console<'_>,
) -> anyhow::Result<Verdict> {
    let all = check_all(client, workload, probe, now).await?;
    console.print(&render(&all))?;
    Ok(Verdict::of(&all))
}

/// The checks as one document, for `-o json|yaml`: `checks` (each `level` ok, warn or fail,
/// `title`, and `details` and `fix` when there are), and the counts of failures and warnings.
pub fn document(checks: &[Check]) -> serde_json::Value {
    let verdict = Verdict::of(checks);
    serde_json::json!({
        "checks": checks,
        "failures": verdict.failures,
        "warnings": verdict.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-o json`: the checks as they are, and the counts the exit code follows.
    #[test]
    fn the_checks_as_one_document() {
        let checks = [
            Check::ok("the webhook is ready"),
            Check::fail("no watcher on node-2", "tolerate its taint").details(vec![
                "node node-2: taint dedicated=gpu:NoSchedule".to_owned(),
            ]),
        ];
        assert_eq!(
            document(&checks),
            serde_json::json!({
                "checks": [
                    {"level": "ok", "title": "the webhook is ready"},
                    {
                        "level": "fail",
                        "title": "no watcher on node-2",
                        "details": ["node node-2: taint dedicated=gpu:NoSchedule"],
                        "fix": "tolerate its taint"
                    }
                ],
                "failures": 1,
                "warnings": 0
            })
        );
    }
}
