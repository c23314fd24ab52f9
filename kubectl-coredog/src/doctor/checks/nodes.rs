//! The nodes: a ready watcher on each, and what each watcher reports of its node.

use std::collections::BTreeMap;

use crate::when::age;
use coredog_core::node_status::{NODE_STATUS_ANNOTATION, NodeStatus};
use coredog_core::template::human_bytes;
use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, Pod, Taint, Toleration,
};
use kube::ResourceExt as _;

use super::{denied, names, set_operator_holds};
use crate::doctor::{Check, ClusterSnapshot, Lookup};
use crate::install::manifests::{DEFAULT_CORE_PATTERN, NAMESPACE, OS_LABEL, WATCHER};

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_matches = toleration
        .effect
        .as_deref()
        .is_none_or(|effect| effect.is_empty() || effect == taint.effect);
    let key = toleration.key.as_deref().unwrap_or_default();
    let key_matches = match toleration.operator.as_deref() {
        Some("Exists") => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    };
    effect_matches && key_matches
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|condition| condition.status == "True")
}

/// Whether `node` runs another operating system than Linux (by its `kubernetes.io/os`
/// label): no Linux pod runs there, so no watcher is needed either.
fn runs_another_os(node: &Node) -> bool {
    node.labels().get(OS_LABEL).is_some_and(|os| os != "linux")
}

/// The terms of the watcher's nodeSelector `node` does not match.
fn unmatched_selector(node: &Node, node_selector: &BTreeMap<String, String>) -> Vec<String> {
    let labels = node.labels();
    node_selector
        .iter()
        .filter(|(key, value)| labels.get(*key) != Some(*value))
        .map(|(key, value)| format!("{key}={value}"))
        .collect()
}

/// Whether `node` satisfies one requirement of a node selector term, as the scheduler reads it.
fn meets(node: &Node, requirement: &NodeSelectorRequirement, field: bool) -> bool {
    let value = if field {
        (requirement.key == "metadata.name").then(|| node.name_any())
    } else {
        node.labels().get(&requirement.key).cloned()
    };
    let values = requirement.values.as_deref().unwrap_or_default();
    if let Some(holds) = set_operator_holds(&requirement.operator, value.as_deref(), values) {
        return holds;
    }
    let number = |text: &str| text.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.as_deref().and_then(number),
                values.first().and_then(|bound| number(bound)),
            ) else {
                return false;
            };
            if requirement.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Whether the required node affinity of the watcher's pods lets them onto `node`: one of its
/// terms must hold, each requirement of it. No affinity lets them anywhere.
fn affinity_admits(node: &Node, affinity: Option<&NodeSelector>) -> bool {
    let Some(selector) = affinity else {
        return true;
    };
    selector.node_selector_terms.iter().any(|term| {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        // An empty term selects no node.
        !(expressions.is_empty() && fields.is_empty())
            && expressions
                .iter()
                .all(|requirement| meets(node, requirement, false))
            && fields
                .iter()
                .all(|requirement| meets(node, requirement, true))
    })
}

/// Taints every DaemonSet pod tolerates, with their effect, whatever its spec says: the
/// DaemonSet controller adds these tolerations itself.
const DAEMON_SET_TOLERATED: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Why the DaemonSet has no pod on `node`, which its nodeSelector and node affinity pick.
fn no_watcher_reason(node: &Node, tolerations: &[Toleration]) -> String {
    // A node that is down carries not-ready or unreachable taints with both effects: the
    // node, not the watcher's tolerations, is what to look at.
    if !node_ready(node) {
        return "the node is NotReady".to_owned();
    }
    let untolerated: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|taint| taint.effect == "NoSchedule" || taint.effect == "NoExecute")
        .filter(|taint| {
            !DAEMON_SET_TOLERATED.contains(&(taint.key.as_str(), taint.effect.as_str()))
        })
        .filter(|taint| {
            !tolerations
                .iter()
                .any(|toleration| tolerates(toleration, taint))
        })
        .map(|taint| match &taint.value {
            Some(value) => format!("{}={value}:{}", taint.key, taint.effect),
            None => format!("{}:{}", taint.key, taint.effect),
        })
        .collect();
    if !untolerated.is_empty() {
        return format!(
            "taint {} is not tolerated by the watcher",
            untolerated.join(", ")
        );
    }
    "no watcher pod yet (the DaemonSet controller has not created one)".to_owned()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|condition| condition.status == "True")
}

/// Why a pod is not ready, as `kubectl get pods` would show it.
fn pod_state(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let waiting = status
        .and_then(|status| status.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find_map(|container| {
            let state = container.state.as_ref()?;
            state
                .waiting
                .as_ref()
                .and_then(|waiting| waiting.reason.clone())
                .or_else(|| {
                    state
                        .terminated
                        .as_ref()
                        .and_then(|terminated| terminated.reason.clone())
                })
        });
    waiting
        .or_else(|| status.and_then(|status| status.phase.clone()))
        .unwrap_or_else(|| "Unknown".to_owned())
}

pub(super) fn pod_node(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|spec| spec.node_name.clone())
}

pub(super) fn watchers(snapshot: &ClusterSnapshot) -> Check {
    let title = format!("DaemonSet {NAMESPACE}/{WATCHER}");
    let daemon_set = match &snapshot.daemon_set {
        Lookup::Found(daemon_set) => daemon_set,
        Lookup::Missing => {
            return Check::fail(
                format!("{title} is missing: no node ships its dumps"),
                "kubectl coredog install",
            );
        }
        Lookup::Denied(message) => return denied(&title, message),
    };
    let nodes = match &snapshot.nodes {
        Lookup::Found(nodes) => nodes,
        Lookup::Denied(message) => return denied("the nodes", message),
        Lookup::Missing => &Vec::new(),
    };
    let pods = match &snapshot.watcher_pods {
        Lookup::Found(pods) => pods,
        Lookup::Denied(message) => return denied("the watcher pods", message),
        Lookup::Missing => &Vec::new(),
    };
    let pod_spec = daemon_set
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref());
    let tolerations = pod_spec
        .and_then(|spec| spec.tolerations.clone())
        .unwrap_or_default();
    let node_selector = pod_spec
        .and_then(|spec| spec.node_selector.clone())
        .unwrap_or_default();
    let required_affinity = pod_spec
        .and_then(|spec| spec.affinity.as_ref())
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|affinity| {
            affinity
                .required_during_scheduling_ignored_during_execution
                .as_ref()
        });

    let linux: Vec<&Node> = nodes.iter().filter(|node| !runs_another_os(node)).collect();
    let other_os = nodes.len() - linux.len();
    let mut problems = Vec::new();
    // Nodes an operator's nodeSelector keeps the watcher off, on purpose or not.
    let mut left_out = Vec::new();
    let mut tainted = false;
    for node in &linux {
        let name = node.name_any();
        // During a rolling update a node can have two watchers: the ready one counts.
        let on_node: Vec<&Pod> = pods
            .iter()
            .filter(|pod| pod_node(pod).as_deref() == Some(&name))
            .collect();
        match on_node
            .iter()
            .find(|pod| pod_ready(pod))
            .or_else(|| on_node.first())
        {
            None => {
                let unmatched = unmatched_selector(node, &node_selector);
                if !unmatched.is_empty() {
                    left_out.push(format!(
                        "node {name}: no watcher: it does not match the watcher's nodeSelector {}",
                        unmatched.join(",")
                    ));
                    continue;
                }
                if !affinity_admits(node, required_affinity) {
                    left_out.push(format!(
                        "node {name}: no watcher: the watcher's required node affinity leaves it out"
                    ));
                    continue;
                }
                let reason = no_watcher_reason(node, &tolerations);
                tainted |= reason.starts_with("taint");
                problems.push(format!("node {name}: no watcher: {reason}"));
            }
            // Its pod's phase is the last the node reported: the node is what to look at.
            Some(_) if !node_ready(node) => {
                problems.push(format!("node {name}: the node is NotReady"));
            }
            Some(pod) if !pod_ready(pod) => problems.push(format!(
                "node {name}: watcher {} is not ready ({})",
                pod.name_any(),
                pod_state(pod)
            )),
            Some(_) => {}
        }
    }
    let skipped = if other_os > 0 {
        format!(
            " ({other_os} node{} not running Linux skipped)",
            if other_os == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let selected = linux.len() - left_out.len();
    if problems.is_empty() && left_out.is_empty() {
        return Check::ok(format!(
            "the watcher is ready on all {selected} node{}{skipped}",
            if selected == 1 { "" } else { "s" }
        ));
    }
    if selected == 0 && !linux.is_empty() {
        return Check::fail(
            format!(
                "the watcher's nodeSelector and node affinity pick none of the {} node{}: no dump is shipped{skipped}",
                linux.len(),
                if linux.len() == 1 { "" } else { "s" }
            ),
            format!(
                "give the DaemonSet {NAMESPACE}/{WATCHER} a nodeSelector your nodes match (the chart's watcher.nodeSelector)"
            ),
        )
        .details(left_out);
    }
    if problems.is_empty() {
        return Check::warn(format!(
            "the watcher is ready on the {selected} node{} its nodeSelector and node affinity pick; {} node{} left out ship{} no dumps{skipped}",
            if selected == 1 { "" } else { "s" },
            left_out.len(),
            if left_out.len() == 1 { "" } else { "s" },
            if left_out.len() == 1 { "s" } else { "" },
        ))
        .details(left_out);
    }
    let not_ready = problems.len();
    problems.extend(left_out);
    let fix = if tainted {
        "let the watcher tolerate those taints (`kubectl coredog install` tolerates every taint; the chart's watcher.tolerations)".to_owned()
    } else {
        format!(
            "kubectl -n {NAMESPACE} describe pod POD and `kubectl -n {NAMESPACE} logs POD` for the pods named"
        )
    };
    Check::fail(
        format!(
            "the watcher is not ready on {not_ready} of {selected} nodes: their dumps are not shipped{skipped}"
        ),
        fix,
    )
    .details(problems)
}

/// Each watcher's report of its node, by node name (`None`: it has not reported one).
/// A node with two watchers (a rolling update) is reported by the one that is ready, or else
/// by the one that has reported.
pub(super) fn node_reports(pods: &[Pod]) -> BTreeMap<String, Option<NodeStatus>> {
    let mut reports: BTreeMap<String, (bool, Option<NodeStatus>)> = BTreeMap::new();
    for pod in pods {
        let Some(node) = pod_node(pod) else { continue };
        let status = pod
            .annotations()
            .get(NODE_STATUS_ANNOTATION)
            .and_then(|json| serde_json::from_str::<NodeStatus>(json).ok());
        let ready = pod_ready(pod);
        let better = match reports.get(&node) {
            None => true,
            Some((known_ready, known_status)) => {
                (ready, status.is_some()) > (*known_ready, known_status.is_some())
            }
        };
        if better {
            reports.insert(node, (ready, status));
        }
    }
    reports
        .into_iter()
        .map(|(node, (_, status))| (node, status))
        .collect()
}

/// Why the directory of the absolute `pattern` can hold no pod's dump directory, if it cannot:
/// the webhook mounts none at a system directory (`/var/crash`), and the kernel makes no
/// directory, so one named by a specifier (`/corefile/%h`) never exists.
fn unmountable(pattern: &str) -> Option<String> {
    let (dir, _) = pattern.rsplit_once('/')?;
    if dir.contains('%') {
        return Some(format!(
            "its directory {dir} holds a specifier, and the kernel creates no directory"
        ));
    }
    // The kernel resolves `//corefile/.` as `/corefile`: only where it ends up matters.
    let resolved = coredog_core::mount_path::resolved(dir);
    coredog_core::mount_path::MountPath::parse(&resolved)
        .err()
        .map(|err| err.to_string())
}

/// A watcher writes its report every minute: one older than this comes from a watcher that
/// stopped (its node down, or its API access gone) and says nothing of now.
const STALE_REPORT: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// Whether `report` speaks of now ([`STALE_REPORT`]).
pub(super) fn is_current(report: &NodeStatus, now: jiff::Timestamp) -> bool {
    now.duration_since(report.updated_at) <= STALE_REPORT
}

/// Whether `node` needs no watcher: a node whose `kubernetes.io/os` label names another
/// operating system than Linux runs no Linux pod, and no watcher.
pub(super) fn needs_no_watcher(cluster: &ClusterSnapshot, node: &str) -> bool {
    cluster.nodes.found().is_some_and(|nodes| {
        nodes
            .iter()
            .any(|known| known.name_any() == node && runs_another_os(known))
    })
}

pub(super) fn pattern_fix() -> String {
    format!(
        "on each of those nodes run `sysctl -w kernel.core_pattern={DEFAULT_CORE_PATTERN}` (and persist it in /etc/sysctl.d/), or let the watchers set it: kubectl coredog install --node-setup"
    )
}

pub(super) fn node_statuses(snapshot: &ClusterSnapshot) -> Vec<Check> {
    let Some(pods) = snapshot.watcher_pods.found() else {
        return Vec::new();
    };
    let reports = node_reports(pods);
    if reports.is_empty() {
        return Vec::new();
    }
    let mut unknown = Vec::new();
    let mut stale = Vec::new();
    let mut patterns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut storage_failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut storage_ok = 0usize;
    let mut backlog = Vec::new();
    for (node, report) in &reports {
        let Some(report) = report else {
            unknown.push(node.clone());
            continue;
        };
        if !is_current(report, snapshot.now) {
            let report_age = snapshot.now.duration_since(report.updated_at);
            stale.push(format!(
                "node {node}: last report {} ago",
                age(report_age.unsigned_abs())
            ));
            continue;
        }
        match &report.core_pattern {
            Some(pattern) => patterns
                .entry(pattern.clone())
                .or_default()
                .push(node.clone()),
            None => unknown.push(node.clone()),
        }
        if report.storage == "ok" {
            storage_ok += 1;
        } else {
            storage_failures
                .entry(report.storage.clone())
                .or_default()
                .push(node.clone());
        }
        if report.backlog_files > 0 {
            backlog.push(format!(
                "node {node}: {} dump{} ({})",
                report.backlog_files,
                if report.backlog_files == 1 { "" } else { "s" },
                human_bytes(report.backlog_bytes)
            ));
        }
    }
    let mut checks = Vec::new();
    let all = reports.len();
    for (pattern, nodes) in &patterns {
        let on = if nodes.len() == all && all > 1 {
            format!("all {all} nodes")
        } else {
            format!(
                "node{} {}",
                if nodes.len() == 1 { "" } else { "s" },
                names(nodes)
            )
        };
        let trimmed = pattern.trim();
        checks.push(if let Some(program) = trimmed.strip_prefix('|') {
            let program = program.split_whitespace().next().unwrap_or(program);
            Check::fail(
                format!(
                    "kernel.core_pattern pipes cores to {program} on {on}: they never reach CoreDog"
                ),
                pattern_fix(),
            )
            .details(vec![format!("kernel.core_pattern={pattern}")])
        } else if !trimmed.starts_with('/') {
            Check::fail(
                format!(
                    "kernel.core_pattern {pattern:?} on {on} writes cores into the crashing process's working directory, not the dump directory"
                ),
                pattern_fix(),
            )
        } else if let Some(why) = unmountable(trimmed) {
            Check::fail(
                format!("kernel.core_pattern {pattern} on {on} writes where no pod's dump directory can be: {why}"),
                pattern_fix(),
            )
        } else {
            Check::ok(format!("kernel.core_pattern is {pattern} on {on}"))
        });
    }
    if !unknown.is_empty() {
        checks.push(Check::warn(format!(
            "kernel.core_pattern is unknown on node{} {}: the watcher has not reported it (annotation {NODE_STATUS_ANNOTATION})",
            if unknown.len() == 1 { "" } else { "s" },
            names(&unknown)
        )));
    }
    if !stale.is_empty() {
        checks.push(
            Check::warn(format!(
                "watchers stopped reporting (every minute when running) on {} node{}: a node down, or a watcher without API access; a report that old is not counted",
                stale.len(),
                if stale.len() == 1 { "" } else { "s" },
            ))
            .details(stale),
        );
    }
    for (reason, nodes) in &storage_failures {
        // The store's words for a certificate signed by a CA the watchers do not know.
        let fix = if reason.contains("certificate is not trusted here")
            && reason.contains("UnknownIssuer")
        {
            "give the watchers the CA that signs the endpoint's certificate: `kubectl coredog install --storage-ca ca.pem` (the chart: --set-file watcher.storageCA=ca.pem)".to_owned()
        } else {
            format!(
                "check the StorageConfig (`kubectl coredog install --config FILE`), the keys, and that those nodes reach the endpoint; `kubectl -n {NAMESPACE} logs daemonset/{WATCHER}` has the details"
            )
        };
        checks.push(Check::fail(
            format!(
                "storage is unreachable from node{} {}: {reason}",
                if nodes.len() == 1 { "" } else { "s" },
                names(nodes)
            ),
            fix,
        ));
    }
    if storage_ok > 0 && storage_failures.is_empty() {
        checks.push(Check::ok(format!(
            "storage is reachable from {} node{}",
            if storage_ok == all && all > 1 {
                format!("all {all}")
            } else {
                storage_ok.to_string()
            },
            if storage_ok == 1 { "" } else { "s" }
        )));
    }
    if !backlog.is_empty() {
        checks.push(Check::warn("dumps are waiting to be shipped").details(backlog));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_with_two_watchers_is_reported_by_the_ready_one() {
        let watcher = |name: &str, ready: bool, pattern: &str| -> Pod {
            let status = serde_json::json!({"node": "node-1", "corePattern": pattern, "corefileDir": "/corefile", "storage": "ok", "backlogFiles": 0, "backlogBytes": 0, "updatedAt": "2026-12-01T00:00:00Z"});
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "annotations": {NODE_STATUS_ANNOTATION: status.to_string()}},
                "spec": {"nodeName": "node-1", "containers": []},
                "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }))
            .unwrap()
        };
        for pods in [
            vec![
                watcher("new", true, "core"),
                watcher("old", false, "|apport"),
            ],
            vec![
                watcher("old", false, "|apport"),
                watcher("new", true, "core"),
            ],
        ] {
            let reports = node_reports(&pods);
            let report = reports["node-1"].as_ref().expect("a report");
            assert_eq!(report.core_pattern.as_deref(), Some("core"));
        }
    }

    #[test]
    fn tolerations() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let exists_all = Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&exists_all, &taint));
        let equal = Toleration {
            key: Some("dedicated".into()),
            value: Some("gpu".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&equal, &taint));
        let other_value = Toleration {
            value: Some("cpu".into()),
            ..equal.clone()
        };
        assert!(!tolerates(&other_value, &taint));
        let other_effect = Toleration {
            effect: Some("NoExecute".into()),
            ..equal
        };
        assert!(!tolerates(&other_effect, &taint));
    }

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels.iter().copied().collect::<BTreeMap<_, _>>()},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    fn watcher_on(node: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("coredog-watcher-{node}")},
            "spec": {"nodeName": node, "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    fn snapshot(
        node_selector: &[(&str, &str)],
        nodes: Vec<Node>,
        pods: Vec<Pod>,
    ) -> ClusterSnapshot {
        let daemon_set = serde_json::from_value(serde_json::json!({
            "metadata": {"name": WATCHER, "namespace": NAMESPACE},
            "spec": {
                "selector": {},
                "template": {"spec": {
                    "containers": [],
                    "nodeSelector": node_selector.iter().copied().collect::<BTreeMap<_, _>>(),
                    "tolerations": [{"operator": "Exists"}]
                }}
            }
        }))
        .unwrap();
        ClusterSnapshot {
            now: "2026-06-01T00:00:00Z".parse().unwrap(),
            webhook_configuration: Lookup::Missing,
            installed_elsewhere: Vec::new(),
            tls_secret: Lookup::Missing,
            endpoint_slices: Lookup::Missing,
            daemon_set: Lookup::Found(daemon_set),
            nodes: Lookup::Found(nodes),
            watcher_pods: Lookup::Found(pods),
        }
    }

    /// A watcher on `node` whose last report, at `at`, says `pattern`.
    fn reporting(node: &str, pattern: &str, at: &str) -> Pod {
        let mut pod = watcher_on(node);
        let status = serde_json::json!({"node": node, "corePattern": pattern, "corefileDir": "/corefile", "storage": "ok", "backlogFiles": 0, "backlogBytes": 0, "updatedAt": at});
        pod.metadata.annotations = Some(BTreeMap::from([(
            NODE_STATUS_ANNOTATION.to_owned(),
            status.to_string(),
        )]));
        pod
    }

    /// A store whose certificate a CA the watchers do not know signed: the fix is that CA.
    #[test]
    fn an_untrusted_store_certificate_is_mended_with_its_ca() {
        let fix_for = |storage: &str| {
            let mut pod = reporting("node-1", "/corefile/core.%p", "2026-06-01T00:00:00Z");
            let status = serde_json::json!({"node": "node-1", "corePattern": "/corefile/core.%p", "corefileDir": "/corefile", "storage": storage, "backlogFiles": 0, "backlogBytes": 0, "updatedAt": "2026-06-01T00:00:00Z"});
            pod.metadata.annotations = Some(BTreeMap::from([(
                NODE_STATUS_ANNOTATION.to_owned(),
                status.to_string(),
            )]));
            let snapshot = snapshot(&[], vec![node("node-1", &[])], vec![pod]);
            let checks = node_statuses(&snapshot);
            let failed = checks
                .iter()
                .find(|check| check.title.starts_with("storage is unreachable"))
                .unwrap();
            failed.fix.clone().unwrap_or_default()
        };
        let untrusted = fix_for(
            "list objects corefiles/: the storage endpoint's certificate is not trusted here: invalid peer certificate: UnknownIssuer",
        );
        assert!(untrusted.contains("--storage-ca"), "{untrusted}");
        let refused = fix_for("list objects corefiles/: Got HTTP 403: AccessDenied");
        assert!(refused.contains("check the StorageConfig"), "{refused}");
    }

    /// Absolute patterns the kernel follows, but into no directory a pod can mount there.
    #[test]
    fn a_pattern_into_a_system_directory_fails() {
        let verdict = |pattern: &str| {
            let snapshot = snapshot(
                &[],
                vec![node("node-1", &[])],
                vec![reporting("node-1", pattern, "2026-06-01T00:00:00Z")],
            );
            node_statuses(&snapshot).remove(0)
        };
        for unmountable in ["/var/crash/core.%e.%p", "/corefile/%h/core", "/core.%p"] {
            let check = verdict(unmountable);
            assert_eq!(check.level, crate::doctor::Level::Fail, "{check:?}");
            assert!(
                check
                    .title
                    .contains("writes where no pod's dump directory can be"),
                "{check:?}"
            );
        }
        for mountable in ["/corefile/core.%e.%p", "//data/dumps/./core"] {
            let check = verdict(mountable);
            assert_eq!(check.level, crate::doctor::Level::Ok, "{check:?}");
        }
    }

    /// A node that went down keeps its watcher pod as it last was: the node is named, not the
    /// pod, and what its watcher last reported is not taken for now.
    #[test]
    fn a_node_that_went_down_is_named_and_its_last_report_not_counted() {
        let mut down = node("node-2", &[]);
        if let Some(status) = down.status.as_mut() {
            status.conditions = Some(vec![k8s_openapi::api::core::v1::NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                ..Default::default()
            }]);
        }
        let reporting = |node: &str, at: &str| reporting(node, "/corefile/core.%p", at);
        let snapshot = snapshot(
            &[],
            vec![node("node-1", &[]), down],
            vec![
                reporting("node-1", "2026-05-31T23:59:30Z"),
                reporting("node-2", "2026-05-31T23:40:00Z"),
            ],
        );
        let check = watchers(&snapshot);
        assert_eq!(check.level, crate::doctor::Level::Fail, "{check:?}");
        assert_eq!(check.details, ["node node-2: the node is NotReady"]);

        let checks = node_statuses(&snapshot);
        let titles: Vec<&str> = checks.iter().map(|check| check.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "kernel.core_pattern is /corefile/core.%p on node node-1",
                "watchers stopped reporting (every minute when running) on 1 node: a node down, or a watcher without API access; a report that old is not counted",
                "storage is reachable from 1 node",
            ]
        );
        assert_eq!(checks[1].details, ["node node-2: last report 20m0s ago"]);
    }

    #[test]
    fn nodes_not_running_linux_need_no_watcher() {
        let check = watchers(&snapshot(
            &[(OS_LABEL, "linux")],
            vec![
                node("linux-1", &[(OS_LABEL, "linux")]),
                node("windows-1", &[(OS_LABEL, "windows")]),
            ],
            vec![watcher_on("linux-1")],
        ));
        assert_eq!(check.level, crate::doctor::Level::Ok, "{check:?}");
        assert_eq!(
            check.title,
            "the watcher is ready on all 1 node (1 node not running Linux skipped)"
        );
    }

    #[test]
    fn a_node_selector_that_picks_no_node_fails() {
        let check = watchers(&snapshot(
            &[("pool", "apps")],
            vec![node("batch-1", &[("pool", "batch")])],
            vec![],
        ));
        assert_eq!(check.level, crate::doctor::Level::Fail, "{check:?}");
        assert_eq!(
            check.title,
            "the watcher's nodeSelector and node affinity pick none of the 1 node: no dump is shipped"
        );
    }

    #[test]
    fn left_out_nodes_are_not_counted_as_not_ready() {
        let mut not_ready = watcher_on("apps-2");
        not_ready.status = None;
        let check = watchers(&snapshot(
            &[("pool", "apps")],
            vec![
                node("apps-1", &[("pool", "apps")]),
                node("apps-2", &[("pool", "apps")]),
                node("batch-1", &[("pool", "batch")]),
            ],
            vec![watcher_on("apps-1"), not_ready],
        ));
        assert_eq!(check.level, crate::doctor::Level::Fail, "{check:?}");
        assert_eq!(
            check.title,
            "the watcher is not ready on 1 of 2 nodes: their dumps are not shipped"
        );
        assert_eq!(check.details.len(), 2, "{check:?}");
    }

    #[test]
    fn nodes_a_node_selector_leaves_out_are_a_warning() {
        let check = watchers(&snapshot(
            &[(OS_LABEL, "linux"), ("pool", "apps")],
            vec![
                node("apps-1", &[(OS_LABEL, "linux"), ("pool", "apps")]),
                node("batch-1", &[(OS_LABEL, "linux"), ("pool", "batch")]),
            ],
            vec![watcher_on("apps-1")],
        ));
        assert_eq!(check.level, crate::doctor::Level::Warn, "{check:?}");
        assert_eq!(
            check.title,
            "the watcher is ready on the 1 node its nodeSelector and node affinity pick; 1 node left out ships no dumps"
        );
        assert_eq!(
            check.details,
            ["node batch-1: no watcher: it does not match the watcher's nodeSelector pool=apps"]
        );
    }

    #[test]
    fn nodes_the_required_node_affinity_leaves_out_are_a_warning() {
        let mut snapshot = snapshot(
            &[],
            vec![
                node("apps-1", &[("pool", "apps"), ("cpus", "16")]),
                node("batch-1", &[("pool", "batch"), ("cpus", "16")]),
                node("small-1", &[("pool", "apps"), ("cpus", "2")]),
            ],
            vec![watcher_on("apps-1")],
        );
        if let Lookup::Found(daemon_set) = &mut snapshot.daemon_set
            && let Some(spec) = daemon_set
                .spec
                .as_mut()
                .and_then(|spec| spec.template.spec.as_mut())
        {
            spec.affinity = Some(
                serde_json::from_value(serde_json::json!({"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [
                            {"key": "pool", "operator": "In", "values": ["apps"]},
                            {"key": "cpus", "operator": "Gt", "values": ["4"]}
                        ]}
                    ]}
                }}))
                .unwrap(),
            );
        }
        let check = watchers(&snapshot);
        assert_eq!(check.level, crate::doctor::Level::Warn, "{check:?}");
        assert_eq!(
            check.details,
            [
                "node batch-1: no watcher: the watcher's required node affinity leaves it out",
                "node small-1: no watcher: the watcher's required node affinity leaves it out",
            ]
        );
    }

    #[test]
    fn an_empty_node_selector_term_selects_no_node() {
        let node = node("apps-1", &[("pool", "apps")]);
        let selector = |terms: serde_json::Value| -> NodeSelector {
            serde_json::from_value(serde_json::json!({ "nodeSelectorTerms": terms })).unwrap()
        };
        assert!(!affinity_admits(
            &node,
            Some(&selector(serde_json::json!([{}])))
        ));
        assert!(affinity_admits(
            &node,
            Some(&selector(serde_json::json!([
                {},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["apps-1"]}]}
            ])))
        ));
        assert!(affinity_admits(&node, None));
    }

    #[test]
    fn a_cordoned_node_is_not_blamed_on_the_taint_every_daemon_set_tolerates() {
        let mut cordoned = node("apps-1", &[]);
        cordoned.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(vec![Taint {
                key: "node.kubernetes.io/unschedulable".into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            }]),
            unschedulable: Some(true),
            ..Default::default()
        });
        let tolerations: Vec<Toleration> = Vec::new();
        assert_eq!(
            no_watcher_reason(&cordoned, &tolerations),
            "no watcher pod yet (the DaemonSet controller has not created one)"
        );
        // Another taint, not tolerated, is named.
        if let Some(taints) = cordoned.spec.as_mut().and_then(|spec| spec.taints.as_mut()) {
            taints.push(Taint {
                key: "dedicated".into(),
                value: Some("gpu".into()),
                effect: "NoSchedule".into(),
                ..Taint::default()
            });
        }
        assert_eq!(
            no_watcher_reason(&cordoned, &tolerations),
            "taint dedicated=gpu:NoSchedule is not tolerated by the watcher"
        );
    }

    #[test]
    fn a_node_down_is_blamed_on_being_not_ready_whatever_its_taints() {
        let mut down = node("apps-1", &[]);
        down.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(vec![
                Taint {
                    key: "node.kubernetes.io/unreachable".into(),
                    effect: "NoExecute".into(),
                    ..Taint::default()
                },
                Taint {
                    key: "node.kubernetes.io/unreachable".into(),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                },
            ]),
            ..Default::default()
        });
        down.status = None;
        // Tolerating nothing of its own, the watcher still tolerates what the controller adds.
        let tolerations: Vec<Toleration> = Vec::new();
        assert_eq!(
            no_watcher_reason(&down, &tolerations),
            "the node is NotReady"
        );
    }
}
