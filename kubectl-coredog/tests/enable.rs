//! `enable` / `disable` against a mock API server: the exact requests, patch bodies and
//! content types, and what is printed.

mod support;

use kubectl_coredog::cli::DryRun;
use kubectl_coredog::enable::{Change, Targets, run};
use kubectl_coredog::kube_client::Scope;
use kubectl_coredog::workload::{WorkloadKind, parse_refs};
use serde_json::{Value, json};
use support::{Captured, api_server, list, not_found, ok, status};

fn deployment(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "shop/web"}, {"name": "sidecar", "image": "proxy"}]}
            }
        }
    })
}

fn shop() -> Scope {
    Scope::Namespace("shop".into())
}

fn refs(args: &[&str]) -> Targets {
    Targets::Named(parse_refs(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>()).unwrap())
}

#[tokio::test]
async fn enable_merge_patches_the_pod_template() {
    let (client, server) = api_server(|request| match request.method.as_str() {
        "GET" => ok(deployment("web", json!({}))),
        _ => ok(deployment("web", json!({}))),
    });
    let mut captured = Captured::default();
    let change = Change::enable(Some("/corefile"), Some(&["app".to_owned()])).unwrap();
    run(
        &client,
        &shop(),
        &refs(&["deploy/web"]),
        &change,
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    let lines: Vec<String> = log.iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            "GET /apis/apps/v1/namespaces/shop/deployments/web",
            // Whether the webhook's namespaceSelector leaves the namespace out: the installed one,
            // else (unreadable here) the default one, against the namespace's labels.
            "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
            "GET /api/v1/namespaces/shop",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/web",
        ]
    );
    let patch = &log[3];
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        patch.query.get("fieldManager").map(String::as_str),
        Some("kubectl-coredog")
    );
    assert!(!patch.query.contains_key("dryRun"));
    assert_eq!(
        patch.body,
        json!({"spec": {"template": {"metadata": {"annotations": {
            "coredog.io/inject": "true",
            "coredog.io/path": "/corefile",
            "coredog.io/container": "app"
        }}}}})
    );
    assert_eq!(
        captured.stdout(),
        "deployment.apps/web enabled: coredog.io/container=app, coredog.io/inject=true, coredog.io/path=/corefile; a rollout of its pods follows\n"
    );
    assert_eq!(captured.stderr(), "");
}

#[tokio::test]
async fn enable_again_changes_only_what_is_given() {
    let enabled = json!({"coredog.io/inject": "true", "coredog.io/path": "/data/dumps", "coredog.io/container": "app"});
    let (client, server) = api_server(move |_| ok(deployment("web", enabled.clone())));
    let mut captured = Captured::default();
    // --container alone: the path the workload has stays.
    let change = Change::enable(None, Some(&["sidecar".to_owned()])).unwrap();
    run(
        &client,
        &shop(),
        &refs(&["deploy/web"]),
        &change,
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap();
    // Neither: nothing to change.
    let change = Change::enable(None, None).unwrap();
    run(
        &client,
        &shop(),
        &refs(&["deploy/web"]),
        &change,
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    let lines: Vec<String> = log.iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            "GET /apis/apps/v1/namespaces/shop/deployments/web",
            // Whether the webhook's namespaceSelector leaves the namespace out: the installed one,
            // else (unreadable here) the default one, against the namespace's labels.
            "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
            "GET /api/v1/namespaces/shop",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/web",
            "GET /apis/apps/v1/namespaces/shop/deployments/web",
            "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
            "GET /api/v1/namespaces/shop",
        ]
    );
    assert_eq!(
        log[3].body,
        json!({"spec": {"template": {"metadata": {"annotations": {
            "coredog.io/inject": "true",
            "coredog.io/path": "/data/dumps",
            "coredog.io/container": "sidecar"
        }}}}})
    );
    assert_eq!(
        captured.stdout(),
        "deployment.apps/web enabled: coredog.io/container=sidecar (was app); a rollout of its pods follows\n\
         deployment.apps/web unchanged (already enabled)\n"
    );
}

#[tokio::test]
async fn disable_removes_the_annotations_with_null() {
    let cronjob = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "shop"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {
            "metadata": {"annotations": {"coredog.io/inject": "true", "coredog.io/path": "/corefile"}},
            "spec": {"containers": [{"name": "job", "image": "x"}], "restartPolicy": "Never"}
        }}}}
    });
    let answer = cronjob.clone();
    let (client, server) = api_server(move |_| ok(answer.clone()));
    let mut captured = Captured::default();
    run(
        &client,
        &shop(),
        &refs(&["cj/nightly"]),
        &Change::Disable,
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].line(),
        "PATCH /apis/batch/v1/namespaces/shop/cronjobs/nightly"
    );
    assert_eq!(
        log[1].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        log[1].body,
        json!({"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"annotations": {
            "coredog.io/inject": null,
            "coredog.io/path": null,
            "coredog.io/container": null
        }}}}}}})
    );
    assert_eq!(
        captured.stdout(),
        "cronjob.batch/nightly disabled: coredog.io/inject removed, coredog.io/path removed; applies to its next runs\n"
    );
}

#[tokio::test]
async fn a_selector_patches_only_what_changes() {
    let statefulset = |name: &str, annotations: Value| {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"serviceName": name, "selector": {"matchLabels": {"app": "db"}}, "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [{"name": "db", "image": "postgres"}]}
            }}
        })
    };
    let done = statefulset(
        "db-a",
        json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"}),
    );
    let todo = statefulset("db-b", json!({}));
    let (client, server) = api_server(move |request| match request.method.as_str() {
        "GET" => list("StatefulSet", vec![done.clone(), todo.clone()]),
        _ => ok(todo.clone()),
    });
    let targets = Targets::Selected {
        kind: WorkloadKind::StatefulSet,
        selector: "app=db".into(),
    };
    let mut captured = Captured::default();
    let change = Change::enable(Some("/corefile"), Some(&[])).unwrap();
    run(
        &client,
        &shop(),
        &targets,
        &change,
        DryRun::Server,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    assert_eq!(
        log[0].line(),
        "GET /apis/apps/v1/namespaces/shop/statefulsets"
    );
    assert_eq!(
        log[0].query.get("labelSelector").map(String::as_str),
        Some("app=db")
    );
    assert_eq!(log.len(), 4);
    assert_eq!(
        log[1].line(),
        "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook"
    );
    assert_eq!(log[2].line(), "GET /api/v1/namespaces/shop");
    assert_eq!(
        log[3].line(),
        "PATCH /apis/apps/v1/namespaces/shop/statefulsets/db-b"
    );
    assert_eq!(log[3].query.get("dryRun").map(String::as_str), Some("All"));
    assert_eq!(
        captured.stdout(),
        "statefulset.apps/db-a unchanged (already enabled)\nstatefulset.apps/db-b enabled (server dry run): coredog.io/inject=true, coredog.io/path=/corefile; a rollout of its pods follows\n"
    );
}

#[tokio::test]
async fn a_client_dry_run_shows_the_patch_and_sends_none() {
    let (client, server) = api_server(|_| ok(deployment("web", json!({}))));
    let mut captured = Captured::default();
    let change = Change::enable(Some("/data/dumps"), Some(&[])).unwrap();
    run(
        &client,
        &shop(),
        &refs(&["deployments.apps/web"]),
        &change,
        DryRun::Client,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    assert!(log.iter().all(|request| request.method == "GET"), "{log:?}");
    assert_eq!(
        captured.stdout(),
        "deployment.apps/web patch (dry run): {\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"coredog.io/container\":null,\"coredog.io/inject\":\"true\",\"coredog.io/path\":\"/data/dumps\"}}}}}\n"
    );
}

#[tokio::test]
async fn missing_workloads_and_unknown_containers_fail_clearly() {
    let (client, server) = api_server(|request| {
        if request.path.ends_with("/missing") {
            not_found("deployments.apps \"missing\"")
        } else {
            ok(deployment("web", json!({})))
        }
    });
    let mut captured = Captured::default();
    let change = Change::enable(Some("/corefile"), Some(&["worker".to_owned()])).unwrap();
    let err = run(
        &client,
        &shop(),
        &refs(&["deploy/missing", "deploy/web"]),
        &change,
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap_err();
    drop(client);
    let log = server.await.unwrap();
    assert!(log.iter().all(|request| request.method == "GET"), "{log:?}");
    let explained = kubectl_coredog::error::explain(&err);
    assert_eq!(explained.message, "2 of 2 workloads could not be enabled");
    assert_eq!(
        captured.stderr(),
        "error: deployment.apps/missing not found in namespace shop\nerror: deployment.apps/web: --container worker matches none of its containers (app, sidecar)\nhint: name containers of the pod template, or give --container \"\" to select all\n"
    );
}

#[tokio::test]
async fn a_started_job_cannot_change_and_says_what_to_do() {
    let opted_in = json!({"coredog.io/inject": "true", "coredog.io/path": "/corefile"});
    for (change, annotations, hint) in [
        (
            Change::enable(Some("/corefile"), Some(&[])).unwrap(),
            json!({}),
            "opt in the CronJob that creates it, or re-create the Job with the annotations",
        ),
        (
            Change::Disable,
            opted_in.clone(),
            "opt out the CronJob that creates it, or re-create the Job without the annotations",
        ),
    ] {
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "once", "namespace": "shop"},
            "spec": {"template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [{"name": "job", "image": "x"}], "restartPolicy": "Never"}
            }}
        });
        let (client, server) = api_server(move |request| match request.method.as_str() {
            "GET" => ok(job.clone()),
            _ => status(
                422,
                "Invalid",
                "Job.batch \"once\" is invalid: spec.template: field is immutable",
            ),
        });
        let mut captured = Captured::default();
        let result = run(
            &client,
            &shop(),
            &refs(&["job/once"]),
            &change,
            DryRun::None,
            &mut captured.console(),
        )
        .await;
        drop(client);
        server.await.unwrap();
        assert!(result.is_err());
        assert_eq!(
            captured.stderr(),
            format!(
                "error: job.batch/once: Kubernetes does not let a Job's pod template change once it exists\nhint: {hint}\n"
            )
        );
    }
}

#[tokio::test]
async fn a_selector_with_all_namespaces_patches_each_in_its_namespace() {
    let in_namespace = |name: &str, namespace: &str| {
        let mut workload = deployment(name, json!({}));
        workload["metadata"]["namespace"] = json!(namespace);
        workload
    };
    let (web, dns) = (
        in_namespace("web", "shop"),
        in_namespace("coredns", "kube-system"),
    );
    let (client, server) = api_server(move |request| match request.method.as_str() {
        "GET" => list("Deployment", vec![web.clone(), dns.clone()]),
        _ if request.path.contains("/kube-system/") => ok(dns.clone()),
        _ => ok(web.clone()),
    });
    let targets = Targets::Selected {
        kind: WorkloadKind::Deployment,
        selector: "tier=front".into(),
    };
    let mut captured = Captured::default();
    let change = Change::enable(Some("/corefile"), Some(&[])).unwrap();
    run(
        &client,
        &Scope::All,
        &targets,
        &change,
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let lines: Vec<String> = server.await.unwrap().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            "GET /apis/apps/v1/deployments",
            "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
            "GET /api/v1/namespaces/shop",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/web",
            "PATCH /apis/apps/v1/namespaces/kube-system/deployments/coredns",
        ]
    );
    assert!(
        captured.stderr().contains(
            "the webhook leaves namespace kube-system out (always): its workloads will not get a dump directory"
        ),
        "{}",
        captured.stderr()
    );
}

#[tokio::test]
async fn named_workloads_need_a_namespace() {
    let (client, server) = api_server(|_| ok(deployment("web", json!({}))));
    let mut captured = Captured::default();
    let err = run(
        &client,
        &Scope::All,
        &refs(&["deploy/web"]),
        &Change::Disable,
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap_err();
    drop(client);
    assert!(server.await.unwrap().is_empty(), "nothing is sent");
    assert_eq!(
        kubectl_coredog::error::explain(&err).message,
        "a workload cannot be named across all namespaces (-A)"
    );
}

#[tokio::test]
async fn a_workload_another_one_controls_is_left_alone() {
    let replica_set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d9f", "namespace": "shop", "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
            "uid": "0c7a9a3e-52a1-4f8f-9d0b-3a3c0c8f6a11", "controller": true
        }]},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "shop/web"}]}
        }}
    });
    let (client, server) = api_server(move |_| ok(replica_set.clone()));
    let mut captured = Captured::default();
    let change = Change::enable(Some("/corefile"), Some(&[])).unwrap();
    let err = run(
        &client,
        &shop(),
        &refs(&["rs/web-7d9f"]),
        &change,
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap_err();
    drop(client);
    let log = server.await.unwrap();
    assert!(log.iter().all(|request| request.method == "GET"), "{log:?}");
    assert_eq!(
        kubectl_coredog::error::explain(&err).message,
        "1 of 1 workloads could not be enabled"
    );
    assert_eq!(
        captured.stderr(),
        "error: replicaset.apps/web-7d9f is managed by Deployment web: a change to its pod template would be undone, or start a rollout nobody asked for\nhint: kubectl coredog enable deployment/web -n shop --path /corefile --container \"\"\n"
    );
}

#[tokio::test]
async fn a_workload_an_operator_controls_is_patched_with_a_warning() {
    let mut managed = deployment("web", json!({}));
    managed["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "example.com/v1", "kind": "WebApp", "name": "web",
        "uid": "0c7a9a3e-52a1-4f8f-9d0b-3a3c0c8f6a11", "controller": true
    }]);
    let (client, server) = api_server(move |_| ok(managed.clone()));
    let mut captured = Captured::default();
    let change = Change::enable(Some("/corefile"), Some(&[])).unwrap();
    run(
        &client,
        &shop(),
        &refs(&["deploy/web"]),
        &change,
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let lines: Vec<String> = server.await.unwrap().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            "GET /apis/apps/v1/namespaces/shop/deployments/web",
            // Whether the webhook's namespaceSelector leaves the namespace out: the installed one,
            // else (unreadable here) the default one, against the namespace's labels.
            "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
            "GET /api/v1/namespaces/shop",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/web",
        ]
    );
    assert!(
        captured
            .stderr()
            .contains("deployment.apps/web is managed by WebApp web, which may undo this change"),
        "{}",
        captured.stderr()
    );
}

/// A namespace the installed webhook's namespaceSelector leaves out (its Pod Security level,
/// its opt-out label, the chart's excludeNamespaces) is said at once, not found out after the
/// rollout; the selector is the one installed, so an older one without a Pod Security term
/// says nothing of it.
#[tokio::test]
async fn enabling_in_a_namespace_the_webhook_leaves_out_warns() {
    let webhook_configuration = |pod_security_term: bool, excluded: &str| {
        let mut expressions = vec![
            json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "coredog-system", excluded]}),
            json!({"key": "coredog.io/webhook", "operator": "NotIn", "values": ["disabled"]}),
        ];
        if pod_security_term {
            expressions.push(json!({"key": "pod-security.kubernetes.io/enforce", "operator": "NotIn", "values": ["baseline", "restricted"]}));
        }
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "coredog-webhook"},
            "webhooks": [{"name": "inject.coredog.io", "admissionReviewVersions": ["v1"], "clientConfig": {},
                          "sideEffects": "None", "namespaceSelector": {"matchExpressions": expressions}}]
        })
    };
    for (pod_security_term, excluded, labels, said) in [
        (
            true,
            "batch",
            json!({"pod-security.kubernetes.io/enforce": "restricted"}),
            Some("pod-security.kubernetes.io/enforce NotIn (baseline, restricted)"),
        ),
        (
            true,
            "batch",
            json!({"coredog.io/webhook": "disabled"}),
            Some("coredog.io/webhook NotIn (disabled)"),
        ),
        (
            true,
            "shop",
            json!({}),
            Some("kubernetes.io/metadata.name NotIn"),
        ),
        (
            false,
            "batch",
            json!({"pod-security.kubernetes.io/enforce": "baseline"}),
            None,
        ),
    ] {
        let mut labels = labels;
        labels["kubernetes.io/metadata.name"] = json!("shop");
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": labels}});
        let configuration = webhook_configuration(pod_security_term, excluded);
        let (client, _server) = api_server(move |request| {
            if request.path == "/api/v1/namespaces/shop" {
                ok(namespace.clone())
            } else if request.path.contains("/mutatingwebhookconfigurations/") {
                ok(configuration.clone())
            } else {
                ok(deployment("web", json!({})))
            }
        });
        let mut captured = Captured::default();
        let change = Change::enable(Some("/corefile"), None).unwrap();
        run(
            &client,
            &shop(),
            &refs(&["deploy/web"]),
            &change,
            DryRun::None,
            &mut captured.console(),
        )
        .await
        .unwrap();
        let stderr = captured.stderr();
        match said {
            Some(said) => assert!(
                stderr.contains(&format!("the webhook leaves namespace shop out ({said}")),
                "{stderr}"
            ),
            None => assert!(!stderr.contains("leaves namespace"), "{stderr}"),
        }
    }

    // A configuration this user may not read: the selector install writes.
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop",
        "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}});
    let (client, _server) = api_server(move |request| {
        if request.path == "/api/v1/namespaces/shop" {
            ok(namespace.clone())
        } else if request.path.contains("/mutatingwebhookconfigurations/") {
            status(403, "Forbidden", "forbidden")
        } else {
            ok(deployment("web", json!({})))
        }
    });
    let mut captured = Captured::default();
    run(
        &client,
        &shop(),
        &refs(&["deploy/web"]),
        &Change::enable(Some("/corefile"), None).unwrap(),
        DryRun::None,
        &mut captured.console(),
    )
    .await
    .unwrap();
    assert!(
        captured.stderr().contains(
            "the webhook leaves namespace shop out (pod-security.kubernetes.io/enforce NotIn"
        ),
        "{}",
        captured.stderr()
    );
}
