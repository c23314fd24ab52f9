//! The real `coredog webhook` on loopback over HTTPS with a freshly issued CA: real-shaped
//! AdmissionReviews in, JSONPatches out, applied to the pod and validated strictly (k8s-openapi
//! round trip and `kubernetes-validate --strict` for Kubernetes 1.30).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use coredog::certs;
use coredog_tests::{ChildGuard, LogLines, kubernetes_validate, logfmt_value, spawn_logged};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

const V1: &str = "admission.k8s.io/v1";
const V1BETA1: &str = "admission.k8s.io/v1beta1";

struct Webhook {
    process: ChildGuard,
    /// What the webhook logs after its ready line.
    logs: LogLines,
    address: SocketAddr,
    certs_dir: tempfile::TempDir,
    client: reqwest::Client,
    ca_pem: String,
}

/// Writes a certificate pair the way the kubelet lays out a Secret volume: a timestamped
/// directory, a `..data` symlink to it, and `tls.crt`/`tls.key` symlinks through `..data`.
fn write_secret_volume(dir: &Path, generation: &str, issued: &certs::IssuedCertificates) {
    let data = dir.join(generation);
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("tls.crt"), &issued.cert_pem).unwrap();
    std::fs::write(data.join("tls.key"), &issued.key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(generation, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), link).unwrap();
        }
    }
}

fn client_trusting(ca_pem: &str, address: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve("localhost", address)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

impl Webhook {
    fn start() -> Self {
        Self::start_logging("logfmt")
    }

    /// A webhook that logs in `format` (`--log-format`).
    fn start_logging(format: &str) -> Self {
        let certs_dir = tempfile::tempdir().unwrap();
        let issued = certs::issue(&["localhost".to_owned()], 30).unwrap();
        write_secret_volume(certs_dir.path(), "..2026_11_27_10_00_00.1", &issued);
        let mut command = Command::new(env!("CARGO_BIN_EXE_coredog"));
        command
            .args([
                "webhook",
                "--listen",
                "127.0.0.1:0",
                "--host-dir",
                "/data/coredog-system/dumps",
                "--log-format",
                format,
            ])
            .arg("--tls-cert")
            .arg(certs_dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(certs_dir.path().join("tls.key"));
        let (process, line, logs) = spawn_logged(
            "webhook",
            &mut command,
            "webhook serving HTTPS",
            Duration::from_secs(20),
        );
        let address = match serde_json::from_str::<Value>(&line) {
            Ok(json) => json["address"].as_str().map(str::to_owned),
            Err(_) => logfmt_value(&line, "address"),
        };
        let address: SocketAddr = address.unwrap().parse().unwrap();
        Self {
            process,
            logs,
            address,
            client: client_trusting(&issued.ca_pem, address),
            ca_pem: issued.ca_pem.clone(),
            certs_dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.address.port())
    }

    async fn post(&self, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url("/mutate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn review(&self, version: &str, operation: &str, pod: &Value) -> Value {
        let response = self
            .post(serde_json::to_vec(&review_request(version, operation, pod)).unwrap())
            .await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["apiVersion"], version);
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(
            answer["response"]["uid"],
            "b1f0c8e2-7a4d-4a7e-9f55-2f9d3c4e5a61"
        );
        assert_eq!(
            answer["response"]["allowed"], true,
            "the webhook never denies: {answer}"
        );
        answer["response"].clone()
    }
}

fn review_request(version: &str, operation: &str, pod: &Value) -> Value {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    json!({
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": "b1f0c8e2-7a4d-4a7e-9f55-2f9d3c4e5a61",
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "requestKind": { "group": "", "version": "v1", "kind": "Pod" },
            "requestResource": { "group": "", "version": "v1", "resource": "pods" },
            "name": pod["metadata"]["name"].as_str().unwrap_or(""),
            "namespace": namespace,
            "operation": operation,
            "userInfo": { "username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"] },
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" }
        }
    })
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn apply(pod: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    patched
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Deserialises into k8s-openapi's `Pod` and checks that nothing was dropped on the way: every
/// field the patched pod carries is one Kubernetes knows.
fn strict_pod(value: &Value) -> Pod {
    let pod: Pod = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(
        without_nulls(&serde_json::to_value(&pod).unwrap()),
        without_nulls(value)
    );
    pod
}

fn validate_for_kubernetes_1_30(pods: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = pods
        .iter()
        .enumerate()
        .map(|(index, pod)| {
            // The API server names a generateName pod after admission; so does this copy.
            let mut pod = without_nulls(pod);
            if pod["metadata"].get("name").is_none() {
                let prefix = pod["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or("pod-")
                    .to_owned();
                pod["metadata"]["name"] = json!(format!("{prefix}x2x4z"));
            }
            let path = dir.path().join(format!("pod-{index}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(&pod).unwrap()).unwrap();
            path
        })
        .collect();
    if let Err(report) = kubernetes_validate("1.30.0", &files) {
        panic!("kubernetes-validate --strict refused a patched pod:\n{report}");
    }
}

fn mounts_of<'a>(
    pod: &'a Pod,
    container: &str,
) -> Vec<&'a k8s_openapi::api::core::v1::VolumeMount> {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container)
        .unwrap()
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name == "coredog-corefile")
        .collect()
}

#[tokio::test]
async fn a_deployment_pod_is_injected_under_its_real_name() {
    let webhook = Webhook::start();
    let pod = fixture("deployment-pod.json");
    let response = webhook.review(V1, "CREATE", &pod).await;
    assert!(response.get("warnings").is_none(), "{response}");
    let patched = apply(&pod, &response);
    let typed = strict_pod(&patched);

    let volume = typed
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "coredog-corefile")
        .unwrap();
    let host_path = volume.host_path.as_ref().unwrap();
    assert_eq!(host_path.path, "/data/coredog-system/dumps/default");
    assert_eq!(host_path.type_.as_deref(), Some("DirectoryOrCreate"));

    let app_mounts = mounts_of(&typed, "app");
    assert_eq!(app_mounts.len(), 1);
    assert_eq!(app_mounts[0].mount_path, "/corefile");
    assert_eq!(
        app_mounts[0].sub_path_expr.as_deref(),
        Some("$(COREDOG_POD_NAME)/app")
    );
    assert!(
        mounts_of(&typed, "sidecar").is_empty(),
        "sidecar was not selected"
    );

    let app = &typed.spec.as_ref().unwrap().containers[0];
    let env = app
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "COREDOG_POD_NAME")
        .unwrap();
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
    assert_eq!(
        typed.metadata.annotations.as_ref().unwrap()["coredog.io/injected"],
        "app"
    );
    assert_eq!(
        typed.metadata.name, None,
        "the webhook never invents a pod name"
    );

    // Reinvocation: the patched pod comes back and gets nothing more.
    let again = webhook.review(V1, "CREATE", &patched).await;
    assert!(again.get("patch").is_none(), "{again}");

    validate_for_kubernetes_1_30(&[patched]);
}

#[tokio::test]
async fn selected_containers_and_init_containers_of_a_multi_container_pod() {
    let webhook = Webhook::start();
    let pod = fixture("multi-container-pod.json");
    let response = webhook.review(V1, "CREATE", &pod).await;
    let warnings = response["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].as_str().unwrap().contains("\"ghost\""));
    let patched = apply(&pod, &response);
    let typed = strict_pod(&patched);
    for (container, injected) in [
        ("migrate", true),
        ("warmup", false),
        ("worker", true),
        ("exporter", false),
    ] {
        let mounts = mounts_of(&typed, container);
        assert_eq!(mounts.len(), usize::from(injected), "{container}");
        if injected {
            assert_eq!(mounts[0].mount_path, "/app/coredumps");
            assert_eq!(
                mounts[0].sub_path_expr.as_deref(),
                Some(format!("$(COREDOG_POD_NAME)/{container}").as_str())
            );
        }
    }
    let worker = &typed.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        worker.env.as_ref().unwrap().len(),
        2,
        "existing env is kept"
    );
    assert_eq!(
        worker.volume_mounts.as_ref().unwrap().len(),
        2,
        "existing mounts are kept"
    );
    assert_eq!(
        typed.spec.as_ref().unwrap().volumes.as_ref().unwrap().len(),
        2
    );
    assert_eq!(
        typed.metadata.annotations.as_ref().unwrap()["coredog.io/injected"],
        "migrate,worker"
    );
    validate_for_kubernetes_1_30(&[patched]);
}

#[tokio::test]
async fn a_container_with_a_mount_at_the_path_is_skipped_and_the_pod_stays_valid() {
    let webhook = Webhook::start();
    let pod = fixture("existing-mount-pod.json");
    let response = webhook.review(V1, "CREATE", &pod).await;
    let warning = response["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("\"old\"") && warning.contains("/corefile"),
        "{warning}"
    );
    let patched = apply(&pod, &response);
    let typed = strict_pod(&patched);
    assert!(mounts_of(&typed, "old").is_empty());
    assert_eq!(mounts_of(&typed, "new").len(), 1);
    validate_for_kubernetes_1_30(&[patched]);
}

#[tokio::test]
async fn bad_paths_are_warnings_and_the_pod_is_admitted_unchanged() {
    let webhook = Webhook::start();
    for path in [
        "/",
        "/etc",
        "/var/log/cores",
        "relative",
        "/a/../etc",
        "/corefile/",
        "/core\nfile",
        "/usr",
    ] {
        let mut pod = fixture("deployment-pod.json");
        pod["metadata"]["annotations"]["coredog.io/path"] = json!(path);
        let response = webhook.review(V1, "CREATE", &pod).await;
        assert!(response.get("patch").is_none(), "{path}: {response}");
        let warnings = response["warnings"].as_array().unwrap();
        assert!(
            warnings[0].as_str().unwrap().contains("coredog.io/path"),
            "{path}: {warnings:?}"
        );
    }
    let mut pod = fixture("deployment-pod.json");
    pod["metadata"]["annotations"]["coredog.io/inject"] = json!("yes");
    let response = webhook.review(V1, "CREATE", &pod).await;
    assert!(
        response["warnings"][0]
            .as_str()
            .unwrap()
            .contains("coredog.io/inject")
    );
}

#[tokio::test]
async fn pods_that_did_not_opt_in_and_other_operations_get_nothing() {
    let webhook = Webhook::start();
    let mut pod = fixture("deployment-pod.json");
    pod["metadata"]["annotations"] = json!({});
    let response = webhook.review(V1, "CREATE", &pod).await;
    assert_eq!(
        response,
        json!({ "uid": "b1f0c8e2-7a4d-4a7e-9f55-2f9d3c4e5a61", "allowed": true })
    );
    let response = webhook
        .review(V1, "UPDATE", &fixture("deployment-pod.json"))
        .await;
    assert!(response.get("patch").is_none());
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_are_both_served() {
    let webhook = Webhook::start();
    let body = serde_json::to_vec(&review_request(
        V1,
        "CREATE",
        &fixture("deployment-pod.json"),
    ))
    .unwrap();
    for version in [
        reqwest::tls::Version::TLS_1_2,
        reqwest::tls::Version::TLS_1_3,
    ] {
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(webhook.ca_pem.as_bytes()).unwrap(),
            )
            .resolve("localhost", webhook.address)
            .min_tls_version(version)
            .max_tls_version(version)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let response = client
            .post(webhook.url("/mutate"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|err| panic!("{version:?}: {err}"));
        assert_eq!(response.status(), 200, "{version:?}");
    }
}

#[tokio::test]
async fn v1beta1_reviews_are_answered_in_v1beta1() {
    let webhook = Webhook::start();
    let pod = fixture("deployment-pod.json");
    let response = webhook.review(V1BETA1, "CREATE", &pod).await;
    strict_pod(&apply(&pod, &response));
}

#[tokio::test]
async fn bodies_that_are_not_admission_reviews_get_400() {
    let webhook = Webhook::start();
    for body in [
        b"{\"apiVersion\": ".to_vec(),
        b"not json at all".to_vec(),
        Vec::new(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
        br#"{"apiVersion":"v1","kind":"Pod","metadata":{}}"#.to_vec(),
    ] {
        let response = webhook.post(body.clone()).await;
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(&body));
        assert!(!response.text().await.unwrap().is_empty());
    }
    // Still serving after all that.
    webhook
        .review(V1, "CREATE", &fixture("deployment-pod.json"))
        .await;
}

#[tokio::test]
async fn a_body_too_large_to_be_a_review_gets_400() {
    let webhook = Webhook::start();
    let response = webhook.post(vec![b' '; 9 * 1024 * 1024]).await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("not an AdmissionReview")
    );
}

#[tokio::test]
async fn a_pod_left_without_a_dump_directory_is_logged_as_operators_grep_for() {
    let webhook = Webhook::start();
    let mut pod = fixture("deployment-pod.json");
    pod["metadata"]["annotations"]["coredog.io/path"] = json!("/etc/cores");
    webhook.review(V1, "CREATE", &pod).await;
    let line = webhook
        .logs
        .wait_for("Skip injection", Duration::from_secs(10));
    assert!(
        line.contains(
            r#"level=info msg="Skip injection for pod default/crash-test-7d9f8b6c5d-* - Reason: coredog.io/path: path \"/etc/cores\" is /etc or under it"#
        ),
        "{line}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_a_line() {
    let webhook = Webhook::start_logging("json");
    let mut pod = fixture("deployment-pod.json");
    pod["metadata"]["annotations"]["coredog.io/container"] = json!("app,missing");
    webhook.review(V1, "CREATE", &pod).await;
    let line = webhook
        .logs
        .wait_for("Skip injection", Duration::from_secs(10));
    let logged: Value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"));
    assert_eq!(logged["level"], "INFO", "{line}");
    let message = logged["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Skip injection for pod default/crash-test-7d9f8b6c5d-* - Reason: ")
            && message.contains("missing"),
        "{line}"
    );
}

/// Stopping (SIGTERM from the kubelet), the webhook is unready at once but answers the API
/// servers that have not yet seen its endpoint go, on the connections they hold and on new
/// ones; then it exits.
#[tokio::test]
async fn a_stopping_webhook_answers_until_its_endpoint_is_gone() {
    let webhook = Webhook::start();
    let pod = fixture("deployment-pod.json");
    // A keep-alive connection, open before the signal.
    webhook.review(V1, "CREATE", &pod).await;
    webhook.process.signal("TERM");
    webhook.logs.wait_for("not ready", Duration::from_secs(5));
    let ready = webhook
        .client
        .get(webhook.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let answer = webhook.review(V1, "CREATE", &pod).await;
    assert!(answer.get("patch").is_some(), "{answer}");
    // Each connection is retired after its answer, so clients reconnect to pods that stay.
    let review = serde_json::to_vec(&review_request(V1, "CREATE", &pod)).unwrap();
    let answered = webhook.post(review).await;
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.headers()["connection"], "close");
    let new_connection = client_trusting(&webhook.ca_pem, webhook.address);
    let healthy = new_connection
        .get(webhook.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
    webhook
        .logs
        .wait_for("webhook stopped", Duration::from_secs(20));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let webhook = Webhook::start();
    let pod = fixture("deployment-pod.json");
    let injected = apply(&pod, &webhook.review(V1, "CREATE", &pod).await);
    // Reinvoked after another webhook's change: nothing to add, nothing counted twice.
    let again = webhook.review(V1, "CREATE", &injected).await;
    assert!(again.get("patch").is_none(), "{again}");
    let mut pod = fixture("deployment-pod.json");
    pod["metadata"]["annotations"]["coredog.io/path"] = json!("/etc");
    webhook.review(V1, "CREATE", &pod).await;

    for path in ["/healthz", "/readyz"] {
        let response = webhook.client.get(webhook.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = webhook
        .client
        .get(webhook.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "coredog_webhook_requests_total{result=\"patched\"} 1",
        "coredog_webhook_requests_total{result=\"allowed\"} 2",
        "coredog_webhook_injections_total 1",
        "coredog_webhook_skips_total{reason=\"invalid_annotation\"} 1",
        "coredog_webhook_skips_total{reason=\"already_injected\"} 1",
        "coredog_webhook_request_duration_seconds_count 3",
        // Series that saw nothing yet are there, at zero.
        "coredog_webhook_requests_total{result=\"bad_request\"} 0",
        "coredog_webhook_skips_total{reason=\"volume_conflict\"} 0",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_renewed_secret_is_served_without_a_restart() {
    let webhook = Webhook::start();
    let renewed = certs::issue(&["localhost".to_owned()], 30).unwrap();
    let trusting_renewed = client_trusting(&renewed.ca_pem, webhook.address);
    assert!(
        trusting_renewed
            .get(webhook.url("/healthz"))
            .send()
            .await
            .is_err(),
        "the renewed CA must not be trusted before the swap"
    );
    write_secret_volume(
        webhook.certs_dir.path(),
        "..2026_11_27_11_00_00.2",
        &renewed,
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        // A new connection each time: a kept-alive one would still speak the old certificate.
        let fresh = client_trusting(&renewed.ca_pem, webhook.address);
        if fresh.get(webhook.url("/healthz")).send().await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
