//! The path a crash takes on a node, for real, with only the API server and the kubelet
//! emulated:
//!
//! 1. a Deployment-made pod (no name yet, `generateName`, the seed's annotations, two
//!    containers, one selected) goes through the real `coredog webhook` over TLS;
//! 2. the returned patch is applied and the pod validated (strict k8s-openapi round trip and
//!    `kubernetes-validate --strict`);
//! 3. a kubelet stand-in names the pod, expands `subPathExpr` with the downward-API variable as
//!    the kubelet does, creates the host directory and starts the selected container's command
//!    in a private mount namespace where that directory is bind-mounted at the annotated path;
//! 4. the command is the seed's crash test: the kernel writes the core through that mount
//!    (this machine's core_pattern is `core`, relative to the crashing process's directory, so
//!    the command runs in the mount; on a node the pattern is `/corefile/core.%e.%p.%h.%t`);
//! 5. the real watcher ships it to a real SeaweedFS with SigV4, notifies a real HTTP receiver
//!    and deletes the local file;
//! 6. the real plugin (`kubectl coredog list --config ... -o json`, `fetch`) finds it under the
//!    pod's generated name and container, and the fetched bytes match the core's sha256.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use coredog::certs;
use coredog_tests::{SeaweedFs, kubernetes_validate, logfmt_value, spawn_until};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A binary of this workspace, next to the test executable's directory.
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first (.ci/run does)",
        path.display()
    );
    path
}

fn deployment_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "crash-test-6d4cf56db6-",
            "namespace": "default",
            "labels": { "app": "crash-test", "pod-template-hash": "6d4cf56db6" },
            "annotations": {
                "coredog.io/inject": "true",
                "coredog.io/path": "/corefile",
                "coredog.io/container": "app"
            },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "crash-test-6d4cf56db6",
                "uid": "7d3a3e53-8d2b-4b8e-9a61-0c3e3d0f1a22", "controller": true, "blockOwnerDeletion": true }]
        },
        "spec": {
            "containers": [
                { "name": "app", "image": "busybox:1.36", "command": ["sh", "-c", "ulimit -c unlimited; sleep 1; kill -11 $$"] },
                { "name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "infinity"] }
            ],
            "restartPolicy": "Always",
            "securityContext": { "runAsUser": 65534, "runAsGroup": 65534, "runAsNonRoot": true }
        }
    })
}

async fn admit(webhook: SocketAddr, ca_pem: &str, pod: &Value) -> Value {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve("localhost", webhook)
        .build()
        .unwrap();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "e911857d-c318-11e8-bbad-025000000001",
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": "default", "operation": "CREATE", "object": pod
        }
    });
    let answer: Value = client
        .post(format!("https://localhost:{}/mutate", webhook.port()))
        .json(&review)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = &answer["response"];
    assert_eq!(response["allowed"], true);
    assert!(response.get("warnings").is_none(), "{answer}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    patched
}

/// What the kubelet does for one container's mount: expand `subPathExpr` from the container's
/// environment (downward API `metadata.name` → the pod's name) and join it to the hostPath.
fn kubelet_mount_source(pod: &Pod, container: &str) -> (PathBuf, String) {
    let spec = pod.spec.as_ref().unwrap();
    let container = spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .unwrap();
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "coredog-corefile")
        .unwrap();
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    let host = PathBuf::from(&volume.host_path.as_ref().unwrap().path);
    let mut expanded = mount.sub_path_expr.clone().unwrap();
    for env in container.env.iter().flatten() {
        let value = match env
            .value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref())
        {
            Some(field) if field.field_path == "metadata.name" => {
                pod.metadata.name.clone().unwrap()
            }
            _ => env.value.clone().unwrap_or_default(),
        };
        expanded = expanded.replace(&format!("$({})", env.name), &value);
    }
    assert!(!expanded.contains("$("), "unexpanded {expanded}");
    (host.join(expanded), mount.mount_path.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_a_deployment_pod_reaches_storage_and_the_plugin() {
    let work = tempfile::tempdir().unwrap();
    let host_dir = work.path().join("dumps");

    // 1. The webhook, over TLS.
    let issued = certs::issue(&["localhost".to_owned()], 1).unwrap();
    std::fs::write(work.path().join("tls.crt"), &issued.cert_pem).unwrap();
    std::fs::write(work.path().join("tls.key"), &issued.key_pem).unwrap();
    let mut webhook = Command::new(workspace_binary("coredog"));
    webhook
        .args(["webhook", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(work.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(work.path().join("tls.key"))
        .arg("--host-dir")
        .arg(&host_dir);
    let (_webhook, line) = spawn_until(
        "webhook",
        &mut webhook,
        "webhook serving HTTPS",
        Duration::from_secs(20),
    );
    let webhook_address: SocketAddr = logfmt_value(&line, "address").unwrap().parse().unwrap();
    let patched = admit(webhook_address, &issued.ca_pem, &deployment_pod()).await;

    // 2. Strictly valid.
    let mut pod: Pod = serde_json::from_value(patched.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&pod).unwrap(),
        patched,
        "every field is one Kubernetes knows"
    );
    assert_eq!(pod.metadata.name, None);
    let generated = format!("{}{}", pod.metadata.generate_name.clone().unwrap(), "x7k2p");
    pod.metadata.name = Some(generated.clone());
    let file = work.path().join("pod.json");
    std::fs::write(&file, serde_json::to_vec(&pod).unwrap()).unwrap();
    kubernetes_validate("1.30.0", &[file]).unwrap();
    let sidecar = &pod.spec.as_ref().unwrap().containers[1];
    assert!(
        sidecar.volume_mounts.is_none(),
        "only the selected container is injected"
    );

    // 5 (started first, as on a node). SeaweedFS, a receiver and the watcher.
    let s3 = SeaweedFs::start("dumps");
    let notices: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = notices.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_address = listener.local_addr().unwrap();
    let receiver_task = tokio::spawn(async move { axum::serve(listener, receiver).await });
    let config = work.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "{}  DeleteLocalCorefile: true\nNoticeChannel:\n  - chan: webhook\n    webhookurl: http://{receiver_address}/hook\n",
            s3.storage_config_yaml("corefiles")
        ),
    )
    .unwrap();
    std::fs::create_dir_all(&host_dir).unwrap();
    let mut watcher = Command::new(workspace_binary("coredog"));
    watcher
        .args([
            "watcher",
            "--listen",
            "127.0.0.1:0",
            "--node-name",
            "kind-worker",
            "--config",
        ])
        .arg(&config)
        .arg("--dir")
        .arg(&host_dir);
    let (_watcher, _) = spawn_until(
        "watcher",
        &mut watcher,
        "watcher serving metrics",
        Duration::from_secs(20),
    );

    // 3 + 4. The kubelet stand-in runs the selected container in its own mount namespace.
    let (source, mount_path) = kubelet_mount_source(&pod, "app");
    assert_eq!(
        source,
        host_dir.join("default").join(&generated).join("app")
    );
    // As the kubelet makes it: root's, 0755. The watcher opens it to the container's user, who
    // is not root, before the container's process runs.
    std::fs::create_dir_all(&source).unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o755)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&source).unwrap().permissions().mode() & 0o7777 != 0o1777 {
        assert!(
            Instant::now() < deadline,
            "the watcher never opened the container's directory to its user"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let created_mount_point = !Path::new(&mount_path).exists();
    if created_mount_point {
        std::fs::create_dir(&mount_path).unwrap();
    }
    let container = format!(
        "mount --bind '{}' '{mount_path}' && cd '{mount_path}' && exec setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'ulimit -c unlimited; kill -11 $$'",
        source.display()
    );
    let status = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &container,
        ])
        .status()
        .unwrap();
    if created_mount_point {
        let _ = std::fs::remove_dir(&mount_path);
    }
    // `unshare` without `--fork` execs the command, which execs the crashing shell.
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(11),
        "{status}"
    );

    // 6. The plugin finds it under the generated name.
    let plugin = workspace_binary("kubectl-coredog");
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let output = Command::new(&plugin)
            .args(["list", "-A", "-o", "json", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let listed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        if !listed.is_empty() {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "the dump never appeared in `kubectl coredog list`"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(listed.len(), 1);
    let dump = &listed[0];
    assert_eq!(dump["namespace"], "default");
    assert_eq!(dump["pod"], generated.as_str());
    assert_eq!(dump["container"], "app");
    assert_eq!(dump["node"], "kind-worker");
    assert_eq!(dump["signal"], 11);

    let fetched = work.path().join("fetched.core");
    let output = Command::new(&plugin)
        .args(["fetch", dump["id"].as_str().unwrap(), "--config"])
        .arg(&config)
        .arg("-o")
        .arg(&fetched)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&fetched).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        dump["sha256"].as_str().unwrap()
    );

    // The local core is gone, and the receiver was told.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&source).unwrap().next().is_some() || notices.lock().unwrap().is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "local core still there or no notice"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notice = notices.lock().unwrap()[0].clone();
    assert_eq!(notice["record"]["pod"], generated.as_str());
    receiver_task.abort();
}
