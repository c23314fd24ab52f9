//! `doctor` against a mock API server: what it reads, and its checklist and exit code for a
//! healthy and a broken cluster. Certificates are made here the way the webhook makes its own.

mod support;

use std::sync::Mutex;

use jiff::Timestamp;
use kubectl_coredog::doctor::exec::{CoreLimitProbe, CoreLimitReading, CoreSizeLimit, LimitSource};
use kubectl_coredog::doctor::{Verdict, run};
use kubectl_coredog::workload::WorkloadRef;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use support::{Captured, Recorded, api_server, list, not_found, ok};

struct Pki {
    ca_pem: String,
    cert_pem: String,
}

/// A CA and a serving certificate for the webhook's Service, valid in `[from, until)` (y, m, d).
fn pki(from: (i32, u8, u8), until: (i32, u8, u8)) -> Pki {
    let not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    let not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "coredog-webhook-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec![
        "coredog-webhook.coredog-system.svc".to_owned(),
        "coredog-webhook.coredog-system.svc.cluster.local".to_owned(),
    ])
    .unwrap();
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
    }
}

fn base64(text: &str) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec())).unwrap()
}

fn webhook_configuration(ca_bundle: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "coredog-webhook"},
        "webhooks": [{
            "name": "inject.coredog.io",
            "admissionReviewVersions": ["v1", "v1beta1"],
            "clientConfig": {
                "service": {"name": "coredog-webhook", "namespace": "coredog-system", "path": "/mutate", "port": 443},
                "caBundle": base64(ca_bundle)
            },
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "coredog-system"]},
                {"key": "coredog.io/webhook", "operator": "NotIn", "values": ["disabled"]}
            ]}
        }]
    })
}

fn tls_secret(pki: &Pki) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "coredog-webhook-tls", "namespace": "coredog-system"},
        "type": "kubernetes.io/tls",
        "data": {"ca.crt": base64(&pki.ca_pem), "tls.crt": base64(&pki.cert_pem), "tls.key": base64("key")}
    })
}

fn endpoint_slices(ready: &[bool]) -> (u16, Value) {
    let endpoints: Vec<Value> = ready
        .iter()
        .enumerate()
        .map(|(index, ready)| json!({"addresses": [format!("10.0.0.{}", index + 1)], "conditions": {"ready": ready}}))
        .collect();
    list(
        "EndpointSlice",
        vec![json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "coredog-webhook-abcde", "namespace": "coredog-system",
                         "labels": {"kubernetes.io/service-name": "coredog-webhook"}},
            "addressType": "IPv4",
            "endpoints": endpoints
        })],
    )
}

fn daemon_set(tolerations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "coredog-watcher", "namespace": "coredog-system"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/component": "watcher"}},
            "template": {"spec": {"containers": [{"name": "watcher", "image": "coredog"}], "tolerations": tolerations}}
        }
    })
}

fn node(name: &str, taints: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn node_status(node: &str, pattern: &str, storage: &str, backlog: u64) -> String {
    json!({
        "node": node, "corePattern": pattern, "corefileDir": "/corefile", "storage": storage,
        "backlogFiles": backlog, "backlogBytes": backlog * 1024 * 1024,
        "updatedAt": "2026-06-01T00:00:00Z"
    })
    .to_string()
}

fn watcher_pod(name: &str, node: &str, status: Option<String>) -> Value {
    let annotations = match status {
        Some(status) => json!({"coredog.io/node-status": status}),
        None => json!({}),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "coredog-system", "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "watcher", "image": "coredog"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"coredog.io/inject": "true", "coredog.io/path": "/corefile"}},
                "spec": {"containers": [{"name": "app", "image": "shop/web"}]}
            }
        }
    })
}

fn namespace(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": labels}})
}

fn app_pod(name: &str, node: &str, injected: bool) -> Value {
    let (annotations, volumes) = if injected {
        (
            json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile", "coredog.io/injected": "app"}),
            json!([{"name": "coredog-corefile", "hostPath": {"path": "/data/coredog-system/dumps/shop"}}]),
        )
    } else {
        (
            json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"}),
            json!([]),
        )
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5d"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5d", "uid": "rs-1", "controller": true}]
        },
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "shop/web"}], "volumes": volumes},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

/// A pod of another Deployment, `web-canary`, whose pods carry `app=web` too.
fn canary_pod(name: &str, node: &str) -> Value {
    let mut pod = app_pod(name, node, false);
    pod["metadata"]["labels"]["pod-template-hash"] = json!("5c6d7f8b9c");
    pod["metadata"]["ownerReferences"][0]["name"] = json!("web-canary-5c6d7f8b9c");
    pod
}

/// The objects of one cluster, answered by path.
struct Cluster {
    webhook_configuration: Option<Value>,
    tls_secret: Option<Value>,
    endpoint_slices: (u16, Value),
    daemon_set: Value,
    nodes: Vec<Value>,
    watcher_pods: Vec<Value>,
    namespace: Value,
    app_pods: Vec<Value>,
}

fn serve(cluster: Cluster) -> impl Fn(&Recorded) -> (u16, Value) + Send + 'static {
    move |request| match request.path.as_str() {
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook" => {
            cluster
                .webhook_configuration
                .clone()
                .map_or_else(|| not_found("mutatingwebhookconfigurations"), ok)
        }
        "/api/v1/namespaces/coredog-system/secrets/coredog-webhook-tls" => cluster
            .tls_secret
            .clone()
            .map_or_else(|| not_found("secrets"), ok),
        "/apis/discovery.k8s.io/v1/namespaces/coredog-system/endpointslices" => {
            cluster.endpoint_slices.clone()
        }
        "/apis/apps/v1/namespaces/coredog-system/daemonsets/coredog-watcher" => {
            ok(cluster.daemon_set.clone())
        }
        "/api/v1/nodes" => list("Node", cluster.nodes.clone()),
        "/api/v1/namespaces/coredog-system/pods" => list("Pod", cluster.watcher_pods.clone()),
        "/apis/apps/v1/namespaces/shop/deployments/web" => ok(deployment()),
        "/api/v1/namespaces/shop" => ok(cluster.namespace.clone()),
        "/api/v1/namespaces/shop/pods" => list("Pod", cluster.app_pods.clone()),
        other => panic!("unexpected request {other}"),
    }
}

/// Core size limits by pod, and the calls made.
struct Probe {
    answers: Vec<(&'static str, Result<CoreLimitReading, String>)>,
    calls: Mutex<Vec<String>>,
}

fn main_process(limit: CoreSizeLimit) -> Result<CoreLimitReading, String> {
    Ok(CoreLimitReading {
        limit,
        source: LimitSource::MainProcess,
    })
}

impl CoreLimitProbe for Probe {
    async fn core_limit(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        main_process_is_pid_one: bool,
    ) -> Result<CoreLimitReading, String> {
        let shared = if main_process_is_pid_one {
            ""
        } else {
            " (processes shared)"
        };
        self.calls
            .lock()
            .unwrap()
            .push(format!("{namespace}/{pod}/{container}{shared}"));
        self.answers
            .iter()
            .find(|(name, _)| *name == pod)
            .map(|(_, answer)| answer.clone())
            .unwrap_or_else(|| Err("no answer".to_owned()))
    }
}

fn now(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[tokio::test]
async fn a_healthy_cluster_passes() {
    let pki = pki((2026, 1, 1), (2027, 1, 1));
    let pattern = "/corefile/core.%e.%p.%h.%t";
    let (client, server) = api_server(serve(Cluster {
        webhook_configuration: Some(webhook_configuration(&pki.ca_pem)),
        tls_secret: Some(tls_secret(&pki)),
        endpoint_slices: endpoint_slices(&[true, true]),
        daemon_set: daemon_set(json!([{"operator": "Exists"}])),
        nodes: vec![
            node("node-1", json!([])),
            node(
                "node-2",
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            ),
        ],
        watcher_pods: vec![
            watcher_pod(
                "coredog-watcher-a",
                "node-1",
                Some(node_status("node-1", pattern, "ok", 0)),
            ),
            watcher_pod(
                "coredog-watcher-b",
                "node-2",
                Some(node_status("node-2", pattern, "ok", 0)),
            ),
        ],
        namespace: namespace(json!({"kubernetes.io/metadata.name": "shop"})),
        app_pods: vec![app_pod("web-1", "node-1", true), {
            // Its PID 1 is the pause process: the limit comes from a new shell.
            let mut pod = app_pod("web-2", "node-2", true);
            pod["spec"]["shareProcessNamespace"] = json!(true);
            pod
        }],
    }));
    let probe = Probe {
        answers: vec![
            ("web-1", main_process(CoreSizeLimit::Unlimited)),
            (
                "web-2",
                Ok(CoreLimitReading {
                    limit: CoreSizeLimit::Unlimited,
                    source: LimitSource::NewShell,
                }),
            ),
        ],
        calls: Mutex::new(Vec::new()),
    };
    let reference = WorkloadRef::parse("deploy/web").unwrap();
    let mut captured = Captured::default();
    let verdict = run(
        &client,
        Some((&reference, "shop")),
        &probe,
        now("2026-06-01T00:00:00Z"),
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    assert_eq!(
        log.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
            "GET /api/v1/namespaces/coredog-system/secrets/coredog-webhook-tls",
            "GET /apis/discovery.k8s.io/v1/namespaces/coredog-system/endpointslices",
            "GET /apis/apps/v1/namespaces/coredog-system/daemonsets/coredog-watcher",
            "GET /api/v1/nodes",
            "GET /api/v1/namespaces/coredog-system/pods",
            "GET /apis/apps/v1/namespaces/shop/deployments/web",
            "GET /api/v1/namespaces/shop",
            "GET /api/v1/namespaces/shop/pods",
        ]
    );
    assert_eq!(
        log[2].query.get("labelSelector").map(String::as_str),
        Some("kubernetes.io/service-name=coredog-webhook")
    );
    assert_eq!(
        log[5].query.get("labelSelector").map(String::as_str),
        Some("app.kubernetes.io/component=watcher,app.kubernetes.io/instance=coredog")
    );
    assert_eq!(
        log[8].query.get("labelSelector").map(String::as_str),
        Some("app=web")
    );
    assert_eq!(
        *probe.calls.lock().unwrap(),
        ["shop/web-1/app", "shop/web-2/app (processes shared)"]
    );
    assert_eq!(
        captured.stdout(),
        "\
✔ MutatingWebhookConfiguration coredog-webhook is present (failurePolicy Ignore)
✔ the caBundle holds the CA that signed the webhook's certificate (Secret coredog-system/coredog-webhook-tls)
✔ the webhook's certificate is valid until 2027-01-01 (214 days)
✔ Service coredog-system/coredog-webhook has 2 ready endpoints
✔ the watcher is ready on all 2 nodes
✔ kernel.core_pattern is /corefile/core.%e.%p.%h.%t on all 2 nodes
✔ storage is reachable from all 2 nodes
✔ deployment.apps/web opted in: dump directory at /corefile for every container
✔ no Pod Security label of namespace shop forbids hostPath volumes
✔ all 2 running pods of deployment.apps/web carry the dump directory
✔ kernel.core_pattern writes into /corefile on the nodes of its pods (node-1, node-2)
✔ core dumps are unlimited in the 2 containers checked
    read from a new shell in web-2/app (the main process's limits could not be read), which may not be the workload's

No problems found.
"
    );
    assert!(verdict.passed());
    assert_eq!(verdict.exit_code(), 0);
}

#[tokio::test]
async fn a_broken_cluster_fails_with_a_fix_for_each_problem() {
    let trusted = pki((2026, 1, 1), (2027, 1, 1));
    let served = pki((2026, 1, 1), (2027, 1, 1));
    let (client, server) = api_server(serve(Cluster {
        webhook_configuration: Some(webhook_configuration(&trusted.ca_pem)),
        tls_secret: Some(tls_secret(&served)),
        endpoint_slices: endpoint_slices(&[false]),
        daemon_set: daemon_set(
            json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]),
        ),
        nodes: vec![
            node("node-1", json!([])),
            node(
                "node-2",
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            ),
            node("node-3", json!([])),
        ],
        watcher_pods: vec![
            watcher_pod(
                "coredog-watcher-a",
                "node-1",
                Some(node_status(
                    "node-1",
                    "|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h",
                    "AccessDenied: bucket dumps",
                    2,
                )),
            ),
            watcher_pod("coredog-watcher-c", "node-3", None),
        ],
        namespace: namespace(json!({"pod-security.kubernetes.io/enforce": "baseline"})),
        app_pods: vec![
            app_pod("web-1", "node-1", true),
            app_pod("web-2", "node-3", false),
            app_pod("web-3", "node-2", true),
            // Matches the selector; not the workload's, so neither counted nor probed.
            canary_pod("web-canary-1", "node-1"),
        ],
    }));
    let probe = Probe {
        answers: vec![
            ("web-3", main_process(CoreSizeLimit::Unlimited)),
            ("web-1", main_process(CoreSizeLimit::Off)),
            (
                "web-2",
                Err("exec: \"sh\": executable file not found in $PATH".into()),
            ),
        ],
        calls: Mutex::new(Vec::new()),
    };
    let reference = WorkloadRef::parse("deploy/web").unwrap();
    let mut captured = Captured::default();
    let verdict = run(
        &client,
        Some((&reference, "shop")),
        &probe,
        now("2026-06-01T00:00:00Z"),
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    server.await.unwrap();
    assert_eq!(
        captured.stdout(),
        "\
✔ MutatingWebhookConfiguration coredog-webhook is present (failurePolicy Ignore)
✘ the webhook's caBundle does not hold the CA in Secret coredog-system/coredog-webhook-tls: the API server rejects the webhook's certificate, and pods are admitted without a dump directory
    fix: kubectl -n coredog-system rollout restart deployment/coredog-webhook (the webhook writes its CA there at start)
✔ the webhook's certificate is valid until 2027-01-01 (214 days)
✘ Service coredog-system/coredog-webhook has no ready endpoint: the API server cannot call the webhook, and pods are admitted without a dump directory
    fix: kubectl -n coredog-system get pods -l app.kubernetes.io/component=webhook, and `kubectl -n coredog-system logs deployment/coredog-webhook`
✘ the watcher is not ready on 1 of 3 nodes: their dumps are not shipped
    node node-2: no watcher: taint dedicated=gpu:NoSchedule is not tolerated by the watcher
    fix: let the watcher tolerate those taints (`kubectl coredog install` tolerates every taint; the chart's watcher.tolerations)
✘ kernel.core_pattern pipes cores to /usr/lib/systemd/systemd-coredump on node node-1: they never reach CoreDog
    kernel.core_pattern=|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h
    fix: on each of those nodes run `sysctl -w kernel.core_pattern=/corefile/core.%e.%p.%h.%t` (and persist it in /etc/sysctl.d/), or let the watchers set it: kubectl coredog install --node-setup
⚠ kernel.core_pattern is unknown on node node-3: the watcher has not reported it (annotation coredog.io/node-status)
✘ storage is unreachable from node node-1: AccessDenied: bucket dumps
    fix: check the StorageConfig (`kubectl coredog install --config FILE`), the keys, and that those nodes reach the endpoint; `kubectl -n coredog-system logs daemonset/coredog-watcher` has the details
⚠ dumps are waiting to be shipped
    node node-1: 2 dumps (2.0 MiB)
✔ deployment.apps/web opted in: dump directory at /corefile for every container
✘ namespace shop enforces Pod Security \"baseline\", which forbids the dump directory's hostPath volume: injected pods are rejected
    fix: kubectl label namespace shop pod-security.kubernetes.io/enforce=privileged --overwrite
✘ 1 of 3 running pods of deployment.apps/web have no dump directory
    web-2: created before the webhook or while it was unreachable (restart it), or in a namespace the webhook leaves out
    fix: kubectl -n shop rollout restart deployment.apps/web (the webhook injects the new pods)
✘ pods of deployment.apps/web run on node node-2 without a watcher: their dumps are not shipped
    fix: let the DaemonSet coredog-system/coredog-watcher run there (its nodeSelector, affinity and tolerations; the chart's watcher.nodeSelector and watcher.tolerations), or keep deployment.apps/web off those nodes
✘ kernel.core_pattern on node node-1 does not write into /corefile: dumps of deployment.apps/web never reach CoreDog
    kernel.core_pattern=|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h on node-1
    fix: on each of those nodes run `sysctl -w kernel.core_pattern=/corefile/core.%e.%p.%h.%t` (and persist it in /etc/sysctl.d/), or let the watchers set it: kubectl coredog install --node-setup
✘ core dumps are off (core size limit 0) in web-1/app
    web-2/app: exec: \"sh\": executable file not found in $PATH
    fix: raise the limit where the process starts, e.g. command: [\"sh\", \"-c\", \"ulimit -c unlimited && exec ./server\"]

10 problems and 2 warnings found.
"
    );
    assert_eq!(verdict.failures, 10);
    assert_eq!(verdict.exit_code(), 1);
}

/// Doctor without a workload against a cluster without CoreDog under its default names, whose
/// lists (but for `answer`'s) are empty: what it printed, and its verdict.
async fn without_default_names(
    answer: impl Fn(&Recorded) -> Option<(u16, Value)> + Send + 'static,
) -> (String, Verdict) {
    let (client, server) = api_server(move |request| {
        if let Some(answered) = answer(request) {
            return answered;
        }
        match request.path.as_str() {
            "/api/v1/nodes" => list("Node", vec![node("node-1", json!([]))]),
            path if path.ends_with("s") && !path.contains("/coredog-") => list("Any", vec![]),
            _ => not_found("anything"),
        }
    });
    let probe = Probe {
        answers: vec![],
        calls: Mutex::new(Vec::new()),
    };
    let mut captured = Captured::default();
    let verdict = run(
        &client,
        None,
        &probe,
        now("2026-06-01T00:00:00Z"),
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    server.await.unwrap();
    (captured.stdout(), verdict)
}

#[tokio::test]
async fn a_cluster_without_coredog_says_install_it() {
    let (stdout, verdict) = without_default_names(|_| None).await;
    assert!(
        stdout.starts_with("✘ MutatingWebhookConfiguration coredog-webhook is missing: no pod gets a dump directory\n    fix: kubectl coredog install\n"),
        "{stdout}"
    );
    assert!(stdout.contains("✘ DaemonSet coredog-system/coredog-watcher is missing: no node ships its dumps\n    fix: kubectl coredog install\n"));
    assert_eq!(verdict.exit_code(), 1);
}

/// A Helm release of another name, in another namespace: said so, and that another install
/// would make a second CoreDog, rather than "install it".
#[tokio::test]
async fn coredog_under_other_names_is_named_not_installed_again() {
    let elsewhere = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "obs-coredog-webhook", "labels": {
            "app.kubernetes.io/part-of": "coredog", "app.kubernetes.io/instance": "obs"
        }},
        "webhooks": [{
            "name": "inject.coredog.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"name": "obs-coredog-webhook", "namespace": "observability"}}
        }]
    });
    let (stdout, verdict) = without_default_names(move |request| {
        (request.path == "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")
            .then(|| {
                assert_eq!(
                    request.query.get("labelSelector").map(String::as_str),
                    Some("app.kubernetes.io/part-of=coredog")
                );
                list("MutatingWebhookConfiguration", vec![elsewhere.clone()])
            })
    })
    .await;
    assert_eq!(
        stdout,
        "\
✘ CoreDog is installed under other names than the plugin reads (MutatingWebhookConfiguration coredog-webhook in namespace coredog-system): it cannot check it
    obs-coredog-webhook (release obs, namespace observability)
    fix: doctor reads the default names (status, list, info and fetch find the release through its watcher): install the chart as release coredog in namespace coredog-system to have it checked; do not also run `kubectl coredog install`, which adds a second CoreDog

1 problem found.
"
    );
    assert_eq!(verdict.exit_code(), 1);
}

#[tokio::test]
async fn certificates_near_their_end_warn_and_expired_ones_fail() {
    let pki = pki((2026, 1, 1), (2027, 1, 1));
    for (today, line, exit_code) in [
        (
            "2026-12-20T00:00:00Z",
            "⚠ the webhook's certificate expires on 2027-01-01, in 12 days\n    fix: kubectl -n coredog-system delete secret coredog-webhook-tls && kubectl -n coredog-system rollout restart deployment/coredog-webhook (the webhook makes a new certificate at start)\n",
            0,
        ),
        (
            "2027-02-01T00:00:00Z",
            "✘ the webhook's certificate expired on 2027-01-01: the API server refuses it\n    fix: kubectl -n coredog-system delete secret coredog-webhook-tls && kubectl -n coredog-system rollout restart deployment/coredog-webhook (the webhook makes a new certificate at start)\n",
            1,
        ),
    ] {
        let pattern = "/corefile/core.%e.%p.%h.%t";
        let (client, server) = api_server(serve(Cluster {
            webhook_configuration: Some(webhook_configuration(&pki.ca_pem)),
            tls_secret: Some(tls_secret(&pki)),
            endpoint_slices: endpoint_slices(&[true]),
            daemon_set: daemon_set(json!([{"operator": "Exists"}])),
            nodes: vec![node("node-1", json!([]))],
            watcher_pods: vec![watcher_pod(
                "coredog-watcher-a",
                "node-1",
                Some(node_status("node-1", pattern, "ok", 0)),
            )],
            namespace: namespace(json!({})),
            app_pods: vec![],
        }));
        let probe = Probe {
            answers: vec![],
            calls: Mutex::new(Vec::new()),
        };
        let mut captured = Captured::default();
        let verdict = run(&client, None, &probe, now(today), &mut captured.console())
            .await
            .unwrap();
        drop(client);
        server.await.unwrap();
        let stdout = captured.stdout();
        assert!(stdout.contains(line), "{stdout}");
        assert_eq!(verdict.exit_code(), exit_code, "{stdout}");
    }
}

#[tokio::test]
async fn a_renewal_with_two_cas_passes_and_a_foreign_certificate_fails() {
    let old = pki((2025, 1, 1), (2026, 2, 1));
    let new = pki((2026, 1, 1), (2027, 1, 1));
    let both = format!("{}{}", old.ca_pem, new.ca_pem);
    let renewed = Pki {
        ca_pem: both.clone(),
        cert_pem: new.cert_pem.clone(),
    };
    let foreign = Pki {
        ca_pem: old.ca_pem.clone(),
        cert_pem: new.cert_pem.clone(),
    };
    for (secret, line) in [
        (
            &renewed,
            "✔ the caBundle holds the CA that signed the webhook's certificate (Secret coredog-system/coredog-webhook-tls)\n",
        ),
        (
            &foreign,
            "✘ tls.crt of Secret coredog-system/coredog-webhook-tls is not signed by its ca.crt: the signature does not verify",
        ),
    ] {
        let (client, server) = api_server(serve(Cluster {
            webhook_configuration: Some(webhook_configuration(&both)),
            tls_secret: Some(tls_secret(secret)),
            endpoint_slices: endpoint_slices(&[true]),
            daemon_set: daemon_set(json!([{"operator": "Exists"}])),
            nodes: vec![],
            watcher_pods: vec![],
            namespace: namespace(json!({})),
            app_pods: vec![],
        }));
        let probe = Probe {
            answers: vec![],
            calls: Mutex::new(Vec::new()),
        };
        let mut captured = Captured::default();
        run(
            &client,
            None,
            &probe,
            now("2026-06-01T00:00:00Z"),
            &mut captured.console(),
        )
        .await
        .unwrap();
        drop(client);
        server.await.unwrap();
        assert!(captured.stdout().contains(line), "{}", captured.stdout());
    }
}
