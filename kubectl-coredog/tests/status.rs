//! `status` against a mock API server and storage in memory: which pods really carry the dump
//! directory, their workloads through ReplicaSets and Jobs, and their dumps.

mod support;

use kubectl_coredog::cli::OutputFormat;
use kubectl_coredog::kube_client::Scope;
use kubectl_coredog::status::{StatusStorage, run};
use kubectl_coredog::storage::memory::MemoryStorage;
use serde_json::{Value, json};
use support::{Captured, Recorded, api_server, list};

fn owner(kind: &str, name: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true}])
}

fn template(annotations: Value) -> Value {
    json!({"metadata": {"annotations": annotations}, "spec": {"containers": [{"name": "app", "image": "x"}]}})
}

fn pod(name: &str, owner_kind: &str, owner_name: &str, injected: bool, phase: &str) -> Value {
    let mut annotations = json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"});
    let mut volumes = json!([]);
    if injected {
        annotations["coredog.io/injected"] = json!("app");
        volumes = json!([{"name": "coredog-corefile", "hostPath": {"path": "/data/coredog-system/dumps/shop"}}]);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations, "ownerReferences": owner(owner_kind, owner_name)},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "x"}], "volumes": volumes},
        "status": {"phase": phase}
    })
}

fn cluster(request: &Recorded) -> (u16, Value) {
    let opted = json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"});
    match request.path.rsplit('/').next().unwrap_or_default() {
        "deployments" => list(
            "Deployment",
            vec![
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"selector": {}, "template": template(opted.clone())}}),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"},
                   "spec": {"selector": {}, "template": template(json!({}))}}),
            ],
        ),
        "replicasets" => list(
            "ReplicaSet",
            vec![json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "web-7d9f", "namespace": "shop", "ownerReferences": owner("Deployment", "web")},
                   "spec": {"selector": {}, "template": template(opted.clone())}})],
        ),
        "jobs" => list(
            "Job",
            vec![json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": "nightly-290", "namespace": "shop", "ownerReferences": owner("CronJob", "nightly")},
                   "spec": {"template": template(json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile", "coredog.io/container": "app"}))}})],
        ),
        "cronjobs" => list(
            "CronJob",
            vec![
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "shop"},
                   "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template(json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile", "coredog.io/container": "app"}))}}}}),
            ],
        ),
        "pods" => list(
            "Pod",
            vec![
                pod("web-7d9f-aaaaa", "ReplicaSet", "web-7d9f", true, "Running"),
                pod("web-7d9f-bbbbb", "ReplicaSet", "web-7d9f", false, "Running"),
                // Created before web opted in: no annotation at all, and no dump directory.
                json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "web-7d9f-ccccc", "namespace": "shop", "ownerReferences": owner("ReplicaSet", "web-7d9f")},
                   "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
                pod("nightly-290-xyz", "Job", "nightly-290", true, "Succeeded"),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other", "namespace": "shop"},
                   "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
            ],
        ),
        _ => list("Any", vec![]),
    }
}

fn storage() -> MemoryStorage {
    let storage = MemoryStorage::default();
    for (pod, file) in [
        (
            "web-7d9f-aaaaa",
            "20261127T100012Z_app_server_42_0123456789abcdef.core.zst",
        ),
        (
            "web-7d9f-aaaaa",
            "20261127T110012Z_app_server_43_0123456789abcde0.core.zst",
        ),
        (
            "nightly-290-xyz",
            "20261127T030000Z_app_job_7_fedcba9876543210.core.zst",
        ),
        // A pod of web's previous rollout, gone since: still web's.
        (
            "web-6c5b8d-zzzzz",
            "20261126T100012Z_app_server_40_0123456789abcde1.core.zst",
        ),
        // api did not opt in (any more): its dumps are no row's.
        (
            "api-5f6d-ccccc",
            "20261126T100012Z_app_api_9_0123456789abcde2.core.zst",
        ),
    ] {
        storage.put(&format!("corefiles/shop/{pod}/{file}"), b"x".to_vec());
        storage.put(&format!("corefiles/shop/{pod}/{file}.json"), b"{}".to_vec());
    }
    storage
}

#[tokio::test]
async fn status_shows_workloads_pods_injection_and_dumps() {
    let (client, server) = api_server(cluster);
    let storage = storage();
    let mut captured = Captured::default();
    run(
        &client,
        &Scope::Namespace("shop".into()),
        StatusStorage::Open {
            storage: &storage,
            store_dir: "corefiles",
        },
        OutputFormat::Table,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    assert_eq!(
        log.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            "GET /api/v1/namespaces/shop/pods",
            "GET /apis/apps/v1/namespaces/shop/deployments",
            "GET /apis/apps/v1/namespaces/shop/statefulsets",
            "GET /apis/apps/v1/namespaces/shop/daemonsets",
            "GET /apis/apps/v1/namespaces/shop/replicasets",
            "GET /apis/batch/v1/namespaces/shop/jobs",
            "GET /apis/batch/v1/namespaces/shop/cronjobs",
        ]
    );
    assert_eq!(
        captured.stdout(),
        "\
NAMESPACE   WORKLOAD                PATH        CONTAINERS   INJECTED   DUMPS
shop        cronjob.batch/nightly   /corefile   app          0/0        1
shop        deployment.apps/web     /corefile   all          1/3        3

NAMESPACE   POD               WORKLOAD                STATUS      INJECTED   DUMPS
shop        nightly-290-xyz   cronjob.batch/nightly   Succeeded   yes        1
shop        web-7d9f-aaaaa    deployment.apps/web     Running     yes        2
shop        web-7d9f-bbbbb    deployment.apps/web     Running     no         0
shop        web-7d9f-ccccc    deployment.apps/web     Running     no         0
"
    );
    assert_eq!(
        captured.stderr(),
        "2 running or pending pod(s) that opted in, or whose workload did, have no dump directory: `-o wide` says why, and what mends it\n"
    );
    let requests = storage.take_requests();
    assert_eq!(requests.len(), 1, "one listing per namespace: {requests:?}");
}

#[tokio::test]
async fn unreachable_storage_is_a_column_not_a_failure() {
    let (client, server) = api_server(cluster);
    let mut captured = Captured::default();
    run::<MemoryStorage>(
        &client,
        &Scope::Namespace("shop".into()),
        StatusStorage::Unavailable(
            "cannot find the dump storage: you may not read Secret coredog-system/coredog-config"
                .into(),
        ),
        OutputFormat::Wide,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    server.await.unwrap();
    let stdout = captured.stdout();
    assert!(
        stdout.contains(
            "shop        deployment.apps/web     /corefile   all          1/3        unreachable\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("web-7d9f-bbbbb    deployment.apps/web     Running     no: created before the webhook or while it was unreachable (restart it), or in a namespace the webhook leaves out   unreachable   node-1   -\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("web-7d9f-ccccc    deployment.apps/web     Running     no: created before its workload opted in: kubectl -n shop rollout restart deployment.apps/web                       unreachable   -        -\n"),
        "{stdout}"
    );
    assert!(captured.stderr().starts_with(
        "dumps: storage unreachable: cannot find the dump storage: you may not read Secret coredog-system/coredog-config\n"
    ));

    let (client, server) = api_server(cluster);
    let mut captured = Captured::default();
    run::<MemoryStorage>(
        &client,
        &Scope::Namespace("shop".into()),
        StatusStorage::Unavailable("down".into()),
        OutputFormat::Json,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    server.await.unwrap();
    let status: Value = serde_json::from_str(&captured.stdout()).unwrap();
    assert_eq!(status["storage"], "unreachable: down");
    assert_eq!(status["pods"][2]["injection"]["injected"], false);
    assert_eq!(status["pods"][2]["dumps"], Value::Null);
    assert_eq!(status["workloads"][1]["injectedPods"], 1);
}

#[tokio::test]
async fn pods_are_listed_a_page_at_a_time() {
    let (client, server) = api_server(|request| {
        if !request.path.ends_with("/pods") {
            return cluster(request);
        }
        let (name, next) = match request.query.get("continue").map(String::as_str) {
            None => ("web-7d9f-aaaaa", Some("page-2")),
            Some("page-2") => ("web-7d9f-bbbbb", None),
            Some(other) => panic!("unexpected continue token {other}"),
        };
        let (code, mut answer) = list(
            "Pod",
            vec![pod(name, "ReplicaSet", "web-7d9f", true, "Running")],
        );
        if let Some(next) = next {
            answer["metadata"]["continue"] = json!(next);
        }
        (code, answer)
    });
    let mut captured = Captured::default();
    run::<MemoryStorage>(
        &client,
        &Scope::Namespace("shop".into()),
        StatusStorage::Unavailable("down".into()),
        OutputFormat::Table,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    let pod_requests: Vec<&Recorded> = log.iter().filter(|r| r.path.ends_with("/pods")).collect();
    assert_eq!(pod_requests.len(), 2);
    assert_eq!(
        pod_requests[0].query.get("limit").map(String::as_str),
        Some("500")
    );
    let stdout = captured.stdout();
    assert!(
        stdout.contains("web-7d9f-aaaaa") && stdout.contains("web-7d9f-bbbbb"),
        "{stdout}"
    );
}
