//! One workload: opted in, admitted by its namespace, its pods injected, its path where the
//! kernel writes, and core dumps allowed in its containers.

use std::collections::BTreeMap;

use coredog_core::annotations::{
    ContainerSelection, LEVELS_FORBIDDING_HOST_PATH, POD_SECURITY_ENFORCE_LABEL, WEBHOOK_DISABLED,
    WEBHOOK_NAMESPACE_LABEL, read_opt_in,
};
use coredog_core::mount_path::MountPath;
use coredog_core::node_status::pattern_writes_into;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt as _;

use super::nodes::{is_current, needs_no_watcher, node_reports, pattern_fix, pod_node};
use super::{denied, names, set_operator_holds};
use crate::doctor::exec::{CoreSizeLimit, LimitSource};
use crate::doctor::{Check, ClusterSnapshot, Level, Lookup, WorkloadSnapshot};
use crate::install::manifests::{NAMESPACE, WATCHER, WEBHOOK_NAME};
use crate::status::{NotInjected, PREDATES_OPT_IN, asks_for_injection, injection, live};
use crate::workload::{Workload, WorkloadKind};

pub fn workload_checks(cluster: &ClusterSnapshot, snapshot: &WorkloadSnapshot) -> Vec<Check> {
    let reference = &snapshot.reference;
    let namespace = &snapshot.namespace;
    let workload = match &snapshot.workload {
        Lookup::Found(workload) => workload,
        Lookup::Missing => {
            return vec![Check::fail(
                format!("{reference} not found in namespace {namespace}"),
                "check the name, and the namespace (-n)",
            )];
        }
        Lookup::Denied(message) => return vec![denied(&reference.to_string(), message)],
    };
    let enable =
        |path: &str| format!("kubectl coredog enable {reference} -n {namespace} --path {path}");
    let mut checks = Vec::new();
    let request = match read_opt_in(&workload.template_annotations()) {
        Ok(Some(request)) => {
            let containers = match &request.containers {
                ContainerSelection::All => "every container".to_owned(),
                ContainerSelection::Named(names) => format!("containers {}", names.join(", ")),
            };
            checks.push(Check::ok(format!(
                "{reference} opted in: dump directory at {} for {containers}",
                request.path
            )));
            Some(request)
        }
        Ok(None) => {
            checks.push(Check::fail(
                format!("{reference} has not opted in"),
                enable("/corefile"),
            ));
            None
        }
        Err(err) => {
            checks.push(Check::fail(
                format!("{reference} cannot be served: {err}"),
                enable("/corefile"),
            ));
            None
        }
    };
    checks.push(namespace_check(cluster, snapshot));
    // Pods of a workload that has not opted in have nothing to carry.
    if request.is_some() {
        checks.push(injected_pods(snapshot, workload));
    }
    // Without its pods, the nodes they run on are unknown.
    if request.is_some()
        && snapshot.pods_denied.is_none()
        && let Some(check) = pods_without_a_watcher(cluster, snapshot)
    {
        checks.push(check);
    }
    if let Some(request) = &request
        && snapshot.pods_denied.is_none()
        && let Some(check) = pattern_matches_path(cluster, snapshot, request.path.as_str())
    {
        checks.push(check);
    }
    if let Some(check) = core_limits(snapshot) {
        checks.push(check);
    }
    checks
}

/// The namespaceSelector of CoreDog's webhook entry, as installed.
fn webhook_namespace_selector(cluster: &ClusterSnapshot) -> Option<&LabelSelector> {
    let configuration = cluster.webhook_configuration.found()?;
    let webhooks = configuration.webhooks.as_deref()?;
    webhooks
        .iter()
        .find(|webhook| webhook.name == WEBHOOK_NAME)?
        .namespace_selector
        .as_ref()
}

/// The first term of `selector` that `labels` do not satisfy, as `kubectl` would write it.
pub(crate) fn unmet_term(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    for (key, value) in selector.match_labels.iter().flatten() {
        if labels.get(key) != Some(value) {
            return Some(format!("{key}={value}"));
        }
    }
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.as_deref().unwrap_or_default();
        let value = labels.get(&expression.key).map(String::as_str);
        // An operator the API server would not accept selects nothing to check against.
        let met = set_operator_holds(&expression.operator, value, values).unwrap_or(true);
        if !met {
            return Some(format!(
                "{} {} ({})",
                expression.key,
                expression.operator,
                values.join(", ")
            ));
        }
    }
    None
}

fn namespace_check(cluster: &ClusterSnapshot, snapshot: &WorkloadSnapshot) -> Check {
    let namespace = &snapshot.namespace;
    if namespace == "kube-system" || namespace == NAMESPACE {
        return Check::fail(
            format!("the webhook never injects pods in namespace {namespace}"),
            "run the workload in another namespace",
        );
    }
    let object = match &snapshot.namespace_object {
        Lookup::Found(object) => object,
        Lookup::Missing => {
            return Check::warn(format!("namespace {namespace} not found"));
        }
        Lookup::Denied(message) => return denied(&format!("namespace {namespace}"), message),
    };
    let labels = object.labels();
    if labels.get(WEBHOOK_NAMESPACE_LABEL).map(String::as_str) == Some(WEBHOOK_DISABLED) {
        return Check::fail(
            format!(
                "namespace {namespace} is labelled {WEBHOOK_NAMESPACE_LABEL}={WEBHOOK_DISABLED}: the webhook skips its pods"
            ),
            format!("kubectl label namespace {namespace} {WEBHOOK_NAMESPACE_LABEL}-"),
        );
    }
    // The selector as installed: the chart's excludeNamespaces, a selector of its own.
    if let Some(term) =
        webhook_namespace_selector(cluster).and_then(|selector| unmet_term(selector, labels))
    {
        if term.starts_with(POD_SECURITY_ENFORCE_LABEL) {
            return Check::fail(
                format!(
                    "namespace {namespace} enforces a Pod Security level that forbids the dump directory's hostPath volume ({term}): the webhook leaves it out and its pods are never injected"
                ),
                format!(
                    "kubectl label namespace {namespace} {POD_SECURITY_ENFORCE_LABEL}=privileged --overwrite, then re-create the pods"
                ),
            );
        }
        let fix = if term.starts_with("kubernetes.io/metadata.name ") {
            "the webhook configuration leaves this namespace out: take it out of the chart's webhook.excludeNamespaces, or run the workload in another namespace".to_owned()
        } else {
            format!(
                "label namespace {namespace} to match the webhook's namespaceSelector ({term}), or change the selector (the chart's webhook.namespaceSelector)"
            )
        };
        return Check::fail(
            format!(
                "the webhook's namespaceSelector leaves namespace {namespace} out ({term}): its pods are never injected"
            ),
            fix,
        );
    }
    let forbids = |mode: &str| {
        labels
            .get(&format!("pod-security.kubernetes.io/{mode}"))
            .filter(|level| LEVELS_FORBIDDING_HOST_PATH.contains(&level.as_str()))
            .cloned()
    };
    let fix = format!(
        "kubectl label namespace {namespace} {POD_SECURITY_ENFORCE_LABEL}=privileged --overwrite"
    );
    if let Some(level) = forbids("enforce") {
        return Check::fail(
            format!(
                "namespace {namespace} enforces Pod Security \"{level}\", which forbids the dump directory's hostPath volume: injected pods are rejected"
            ),
            fix,
        );
    }
    let noisy: Vec<String> = ["warn", "audit"]
        .iter()
        .filter_map(|mode| forbids(mode).map(|level| format!("{mode}={level}")))
        .collect();
    if !noisy.is_empty() {
        return Check::warn(format!(
            "namespace {namespace} has Pod Security {}: every injected pod is reported for its hostPath volume",
            noisy.join(", ")
        ))
        .with_fix(fix);
    }
    Check::ok(format!(
        "no Pod Security label of namespace {namespace} forbids hostPath volumes"
    ))
}

fn injected_pods(snapshot: &WorkloadSnapshot, workload: &Workload) -> Check {
    let reference = &snapshot.reference;
    if let Some(message) = &snapshot.pods_denied {
        return denied(
            &format!(
                "the pods of {reference} (their dump directory, their nodes' core_pattern and their core limits)"
            ),
            message,
        );
    }
    let pods: Vec<&Pod> = snapshot.pods.iter().filter(|pod| live(pod)).collect();
    if pods.is_empty() {
        return Check::warn(format!("{reference} has no running pods to check"));
    }
    let mut missing = Vec::new();
    let mut refused = false;
    for pod in &pods {
        let injection = injection(pod);
        if injection.injected {
            continue;
        }
        refused |= injection.cause == Some(NotInjected::Refused);
        let reason = if asks_for_injection(pod) {
            injection.reason.unwrap_or_default()
        } else {
            PREDATES_OPT_IN.to_owned()
        };
        missing.push(format!("{}: {reason}", pod.name_any()));
    }
    if missing.is_empty() {
        return Check::ok(format!(
            "all {} running pod{} of {reference} carry the dump directory",
            pods.len(),
            if pods.len() == 1 { "" } else { "s" }
        ));
    }
    let namespace = &snapshot.namespace;
    let kind = workload.kind;
    let fix = if refused {
        // A new pod would be refused the same way: the annotations must change first.
        format!(
            "correct coredog.io/container or coredog.io/path (kubectl coredog enable {reference} -n {namespace} --path PATH --container NAMES), then re-create the pods"
        )
    } else if let Some(command) = workload.rollout_command() {
        format!("{command} (the webhook injects the new pods)")
    } else if kind == WorkloadKind::CronJob {
        "its next runs get the dump directory".to_owned()
    } else if kind == WorkloadKind::Job {
        "the pods it creates from now on get the dump directory (a deleted pod may count against its backoffLimit)".to_owned()
    } else {
        format!(
            "delete those pods so that their controller re-creates them: kubectl -n {namespace} delete pod NAME"
        )
    };
    Check::fail(
        format!(
            "{} of {} running pods of {reference} have no dump directory",
            missing.len(),
            pods.len()
        ),
        fix,
    )
    .details(missing)
}

/// The nodes the workload's pods run on, each once.
fn nodes_of_running_pods(snapshot: &WorkloadSnapshot) -> Vec<String> {
    let mut nodes: Vec<String> = snapshot
        .pods
        .iter()
        .filter(|pod| live(pod))
        .filter_map(pod_node)
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// The nodes its running pods are on that have no watcher: their dumps stay there.
fn pods_without_a_watcher(cluster: &ClusterSnapshot, snapshot: &WorkloadSnapshot) -> Option<Check> {
    let watched = node_reports(cluster.watcher_pods.found()?);
    let mut unwatched = nodes_of_running_pods(snapshot);
    unwatched.retain(|node| !watched.contains_key(node) && !needs_no_watcher(cluster, node));
    (!unwatched.is_empty()).then(|| {
        Check::fail(
            format!(
                "pods of {} run on node{} {} without a watcher: their dumps are not shipped",
                snapshot.reference,
                if unwatched.len() == 1 { "" } else { "s" },
                names(&unwatched)
            ),
            format!(
                "let the DaemonSet {NAMESPACE}/{WATCHER} run there (its nodeSelector, affinity and tolerations; the chart's watcher.nodeSelector and watcher.tolerations), or keep {} off those nodes",
                snapshot.reference
            ),
        )
    })
}

/// Whether the core_pattern of the nodes its pods run on writes into the workload's path.
fn pattern_matches_path(
    cluster: &ClusterSnapshot,
    snapshot: &WorkloadSnapshot,
    path: &str,
) -> Option<Check> {
    let reports = node_reports(cluster.watcher_pods.found()?);
    let mut nodes = nodes_of_running_pods(snapshot);
    if nodes.is_empty() {
        nodes = reports.keys().cloned().collect();
    }
    let mut unknown = Vec::new();
    let mut wrong: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut right = Vec::new();
    for node in nodes {
        // A node without a watcher is a check of its own.
        let Some(report) = reports.get(&node) else {
            continue;
        };
        // What a watcher that stopped reporting last said is not taken for now.
        match report
            .as_ref()
            .filter(|report| is_current(report, cluster.now))
            .and_then(|report| report.core_pattern.clone())
        {
            None => unknown.push(node),
            Some(pattern) if pattern_writes_into(&pattern, path) => right.push(node),
            Some(pattern) => wrong.entry(pattern).or_default().push(node),
        }
    }
    if let Some((pattern, nodes)) = wrong.iter().next() {
        // A directory with a specifier is one the kernel does not make: no path to offer.
        let directory = pattern
            .trim()
            .rsplit_once('/')
            .map(|(dir, _)| dir.to_owned())
            .filter(|dir| !dir.contains('%') && MountPath::parse(dir).is_ok());
        let fix = match directory {
            Some(dir) => format!(
                "kubectl coredog enable {} -n {} --path {dir} (or change kernel.core_pattern on those nodes)",
                snapshot.reference, snapshot.namespace
            ),
            None => pattern_fix(),
        };
        let details: Vec<String> = wrong
            .iter()
            .map(|(pattern, nodes)| format!("kernel.core_pattern={pattern} on {}", names(nodes)))
            .collect();
        return Some(
            Check::fail(
                format!(
                    "kernel.core_pattern on node{} {} does not write into {path}: dumps of {} never reach CoreDog",
                    if nodes.len() == 1 { "" } else { "s" },
                    names(nodes),
                    snapshot.reference
                ),
                fix,
            )
            .details(details),
        );
    }
    if !unknown.is_empty() {
        return Some(Check::warn(format!(
            "whether kernel.core_pattern writes into {path} is unknown on node{} {}",
            if unknown.len() == 1 { "" } else { "s" },
            names(&unknown)
        )));
    }
    (!right.is_empty()).then(|| {
        Check::ok(format!(
            "kernel.core_pattern writes into {path} on the node{} of its pods ({})",
            if right.len() == 1 { "" } else { "s" },
            names(&right)
        ))
    })
}

fn core_limits(snapshot: &WorkloadSnapshot) -> Option<Check> {
    if snapshot.limits.is_empty() {
        return None;
    }
    let mut disabled = Vec::new();
    let mut small = Vec::new();
    let mut unknown = Vec::new();
    let mut from_a_shell = Vec::new();
    let mut allowed = 0usize;
    for limit in &snapshot.limits {
        let at = format!("{}/{}", limit.pod, limit.container);
        match &limit.limit {
            Ok(reading) => {
                if reading.source == LimitSource::NewShell {
                    from_a_shell.push(at.clone());
                }
                match &reading.limit {
                    CoreSizeLimit::Unlimited => allowed += 1,
                    CoreSizeLimit::Off => disabled.push(at),
                    CoreSizeLimit::Limited(size) => small.push(format!("{at} ({size})")),
                }
            }
            Err(reason) => unknown.push(format!("{at}: {reason}")),
        }
    }
    // Read from a new shell, a limit says what the runtime gives new processes, which the
    // workload's process may have changed.
    let shell_note = (!from_a_shell.is_empty()).then(|| {
        format!(
            "read from a new shell in {} (the main process's limits could not be read), which may not be the workload's",
            names(&from_a_shell)
        )
    });
    let check = if !disabled.is_empty() {
        Check::fail(
            format!(
                "core dumps are off (core size limit 0) in {}",
                names(&disabled)
            ),
            "raise the limit where the process starts, e.g. command: [\"sh\", \"-c\", \"ulimit -c unlimited && exec ./server\"]",
        )
    } else if !small.is_empty() {
        Check::warn(format!(
            "the core size limit is low in {}: larger dumps are cut short",
            names(&small)
        ))
        .with_fix("ulimit -c unlimited where the process starts")
    } else if !unknown.is_empty() {
        Check::warn(
            "the core size limit could not be read in some containers (an image without cat or a shell?)",
        )
        .details(unknown.clone())
    } else {
        Check::ok(format!(
            "core dumps are unlimited in the {allowed} container{} checked",
            if allowed == 1 { "" } else { "s" }
        ))
    };
    let mut details = check.details.clone();
    if check.level == Level::Fail {
        details.extend(unknown);
    }
    details.extend(shell_note);
    Some(check.details(details))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::WorkloadRef;

    fn workload(kind: WorkloadKind, strategy: &str) -> Workload {
        let kind_name = match kind {
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Deployment => "Deployment",
            _ => "StatefulSet",
        };
        Workload {
            kind,
            object: serde_json::from_value(serde_json::json!({
                "apiVersion": "apps/v1", "kind": kind_name,
                "metadata": {"name": "db", "namespace": "shop"},
                "spec": {"updateStrategy": {"type": strategy}}
            }))
            .unwrap(),
        }
    }

    fn pod(name: &str, annotations: serde_json::Value, terminating: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        if terminating {
            pod.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
        }
        pod
    }

    fn snapshot(pods: Vec<Pod>) -> WorkloadSnapshot {
        WorkloadSnapshot {
            reference: WorkloadRef {
                kind: WorkloadKind::StatefulSet,
                name: "db".into(),
            },
            namespace: "shop".into(),
            workload: Lookup::Missing,
            pods,
            pods_denied: None,
            namespace_object: Lookup::Missing,
            limits: Vec::new(),
        }
    }

    fn opted_in(extra: &[(&str, &str)]) -> serde_json::Value {
        let mut annotations =
            serde_json::json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"});
        for (key, value) in extra {
            annotations[*key] = serde_json::json!(value);
        }
        annotations
    }

    #[test]
    fn pods_it_may_not_list_are_a_warning() {
        let mut denied = snapshot(Vec::new());
        denied.pods_denied = Some("pods is forbidden".into());
        let check = injected_pods(
            &denied,
            &workload(WorkloadKind::StatefulSet, "RollingUpdate"),
        );
        assert_eq!(check.level, Level::Warn, "{check:?}");
        assert!(check.title.contains("cannot read the pods of"), "{check:?}");
    }

    #[test]
    fn pods_on_their_way_out_are_not_counted() {
        let snapshot = snapshot(vec![pod("db-0", opted_in(&[]), true)]);
        let check = injected_pods(
            &snapshot,
            &workload(WorkloadKind::StatefulSet, "RollingUpdate"),
        );
        assert_eq!(check.level, Level::Warn, "{check:?}");
    }

    /// Pods on a Windows node need no watcher; a watcher that stopped reporting says nothing
    /// of its node's core_pattern now.
    #[test]
    fn the_nodes_of_its_pods_are_judged_by_what_is_known_now() {
        use coredog_core::node_status::NODE_STATUS_ANNOTATION;
        let on = |pod: &mut Pod, node: &str| {
            pod.spec.as_mut().unwrap().node_name = Some(node.to_owned());
        };
        let mut linux = pod("db-0", opted_in(&[]), false);
        on(&mut linux, "linux-1");
        let mut windows = pod("db-1", opted_in(&[]), false);
        on(&mut windows, "windows-1");
        let snapshot = snapshot(vec![linux, windows]);
        let watcher: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "coredog-watcher-x", "annotations": {NODE_STATUS_ANNOTATION: serde_json::json!({
                "node": "linux-1", "corePattern": "/corefile/core.%p", "corefileDir": "/corefile",
                "storage": "ok", "backlogFiles": 0, "backlogBytes": 0, "updatedAt": "2026-06-01T00:00:00Z"
            }).to_string()}},
            "spec": {"nodeName": "linux-1", "containers": []}
        }))
        .unwrap();
        let node = |name: &str, os: &str| -> k8s_openapi::api::core::v1::Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {"kubernetes.io/os": os}}
            }))
            .unwrap()
        };
        let cluster = |now: &str| ClusterSnapshot {
            now: now.parse().unwrap(),
            webhook_configuration: Lookup::Missing,
            installed_elsewhere: Vec::new(),
            tls_secret: Lookup::Missing,
            endpoint_slices: Lookup::Missing,
            daemon_set: Lookup::Missing,
            nodes: Lookup::Found(vec![node("linux-1", "linux"), node("windows-1", "windows")]),
            watcher_pods: Lookup::Found(vec![watcher.clone()]),
        };
        let fresh = cluster("2026-06-01T00:01:00Z");
        assert!(pods_without_a_watcher(&fresh, &snapshot).is_none());
        let check = pattern_matches_path(&fresh, &snapshot, "/corefile").unwrap();
        assert_eq!(check.level, Level::Ok, "{check:?}");
        let later = cluster("2026-06-01T01:00:00Z");
        let check = pattern_matches_path(&later, &snapshot, "/corefile").unwrap();
        assert_eq!(check.level, Level::Warn, "{check:?}");
    }

    #[test]
    fn the_fix_for_pods_without_the_directory_depends_on_why() {
        let rolling = workload(WorkloadKind::StatefulSet, "RollingUpdate");
        let missed = snapshot(vec![pod("db-0", opted_in(&[]), false)]);
        let check = injected_pods(&missed, &rolling);
        assert!(
            check.fix.as_deref().unwrap().contains("rollout restart"),
            "{check:?}"
        );

        // OnDelete: a restart replaces nothing.
        let check = injected_pods(&missed, &workload(WorkloadKind::StatefulSet, "OnDelete"));
        assert!(
            check.fix.as_deref().unwrap().contains("delete those pods"),
            "{check:?}"
        );

        // A paused Deployment refuses a restart, and its ReplicaSet would re-create deleted
        // pods as they were: resumed first, then restarted.
        let mut paused = workload(WorkloadKind::Deployment, "RollingUpdate");
        paused.object.data["spec"]["paused"] = serde_json::json!(true);
        let check = injected_pods(&missed, &paused);
        assert_eq!(
            check.fix.as_deref(),
            Some(
                "kubectl -n shop rollout resume deployment.apps/db && kubectl -n shop rollout restart deployment.apps/db (the webhook injects the new pods)"
            )
        );
        assert_eq!(
            paused.rollout_note(),
            "it is paused: its pods get it once it is resumed (kubectl rollout resume)"
        );

        // The webhook refuses these pods as they are: re-creating them changes nothing.
        let refused = snapshot(vec![pod(
            "db-0",
            opted_in(&[("coredog.io/container", "api")]),
            false,
        )]);
        let check = injected_pods(&refused, &rolling);
        assert_eq!(check.level, Level::Fail);
        let fix = check.fix.as_deref().unwrap();
        assert!(
            fix.contains("coredog.io/container") && !fix.contains("rollout restart"),
            "{fix}"
        );
    }
}

#[cfg(test)]
mod selector_tests {
    use super::*;
    use crate::workload::WorkloadRef;

    #[test]
    fn a_namespace_the_installed_selector_leaves_out_is_a_failure() {
        let configuration: k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "coredog-webhook"},
                "webhooks": [{
                    "name": WEBHOOK_NAME,
                    "admissionReviewVersions": ["v1"],
                    "clientConfig": {},
                    "sideEffects": "None",
                    "namespaceSelector": {"matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "coredog-system", "batch"]},
                        {"key": POD_SECURITY_ENFORCE_LABEL, "operator": "NotIn", "values": LEVELS_FORBIDDING_HOST_PATH}
                    ]}
                }]
            }))
            .unwrap();
        let cluster = ClusterSnapshot {
            now: jiff::Timestamp::UNIX_EPOCH,
            webhook_configuration: Lookup::Found(configuration),
            installed_elsewhere: Vec::new(),
            tls_secret: Lookup::Missing,
            endpoint_slices: Lookup::Missing,
            daemon_set: Lookup::Missing,
            nodes: Lookup::Missing,
            watcher_pods: Lookup::Missing,
        };
        let snapshot = |namespace: &str| {
            let mut labels = serde_json::json!({"kubernetes.io/metadata.name": namespace});
            if namespace == "secure" {
                labels[POD_SECURITY_ENFORCE_LABEL] = "restricted".into();
            }
            WorkloadSnapshot {
                reference: WorkloadRef {
                    kind: WorkloadKind::Deployment,
                    name: "web".into(),
                },
                namespace: namespace.to_owned(),
                workload: Lookup::Missing,
                pods: Vec::new(),
                pods_denied: None,
                namespace_object: Lookup::Found(
                    serde_json::from_value(serde_json::json!({
                        "metadata": {"name": namespace, "labels": labels}
                    }))
                    .unwrap(),
                ),
                limits: Vec::new(),
            }
        };
        let check = namespace_check(&cluster, &snapshot("batch"));
        assert_eq!(check.level, Level::Fail, "{check:?}");
        assert!(
            check.title.contains("leaves namespace batch out"),
            "{check:?}"
        );
        assert!(check.fix.unwrap().contains("webhook.excludeNamespaces"));
        let check = namespace_check(&cluster, &snapshot("secure"));
        assert_eq!(check.level, Level::Fail, "{check:?}");
        assert!(check.title.contains("Pod Security"), "{check:?}");
        assert!(
            check
                .fix
                .unwrap()
                .contains("pod-security.kubernetes.io/enforce=privileged"),
        );
        assert_eq!(
            namespace_check(&cluster, &snapshot("shop")).level,
            Level::Ok
        );
    }

    #[test]
    fn label_selectors_are_read_as_the_api_server_reads_them() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"team": "shop"},
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "batch"]},
                {"key": "coredog.io/enabled", "operator": "In", "values": ["true"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "env", "operator": "Exists"}
            ]
        }))
        .unwrap();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect()
        };
        let good = [
            ("team", "shop"),
            ("kubernetes.io/metadata.name", "web"),
            ("coredog.io/enabled", "true"),
            ("env", "prod"),
        ];
        assert_eq!(unmet_term(&selector, &labels(&good)), None);
        let mut batch = good;
        batch[1] = ("kubernetes.io/metadata.name", "batch");
        assert_eq!(
            unmet_term(&selector, &labels(&batch)).as_deref(),
            Some("kubernetes.io/metadata.name NotIn (kube-system, batch)")
        );
        assert_eq!(
            unmet_term(&selector, &labels(&good[1..])).as_deref(),
            Some("team=shop")
        );
        let mut no_opt_in = good.to_vec();
        no_opt_in.remove(2);
        assert_eq!(
            unmet_term(&selector, &labels(&no_opt_in)).as_deref(),
            Some("coredog.io/enabled In (true)")
        );
        let mut legacy = good.to_vec();
        legacy.push(("legacy", "yes"));
        assert!(unmet_term(&selector, &labels(&legacy)).is_some());
        assert!(unmet_term(&selector, &labels(&good[..3])).is_some());
    }
}
