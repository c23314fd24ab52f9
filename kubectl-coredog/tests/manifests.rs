//! `install --dry-run=client -o yaml` against the Helm chart: the same objects as
//! `helm template coredog charts -n coredog-system` renders, valid for Kubernetes 1.28 and 1.33.
//!
//! The chart's own config text is passed to the plugin with `--config`, so that even the config
//! Secret and the checksum annotations must match. The only differences allowed are named in
//! [`normalise`]: the labels naming the tool, and the namespace Helm leaves to
//! `--create-namespace`.

use std::path::{Path, PathBuf};
use std::process::Command;

use coredog_core::config::PLACEHOLDER_BUCKET;
use coredog_tests::{kubernetes_validate, tool, workspace_root};
use serde_json::Value;

const NAMESPACE: &str = "coredog-system";

fn helm(sets: &[&str]) -> String {
    let scratch = std::env::temp_dir().join("kubectl-coredog-helm");
    // The chart's default configuration, in a bucket of the user's: the example's is refused.
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(workspace_root().join("charts/values.yaml")).unwrap(),
    )
    .unwrap();
    let default_config = values["config"]["coredog"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        default_config.replace(PLACEHOLDER_BUCKET, "dumps-1234567890"),
    )
    .unwrap();
    let mut command = Command::new(tool("helm"));
    command
        .args(["template", "coredog"])
        .arg(workspace_root().join("charts"))
        .args(["-n", NAMESPACE])
        .arg("--set-file")
        .arg(format!("config.coredog={}", config.display()))
        .env("HELM_CACHE_HOME", scratch.join("cache"))
        .env("HELM_CONFIG_HOME", scratch.join("config"))
        .env("HELM_DATA_HOME", scratch.join("data"));
    // `file:KEY=PATH` sets a value from a file, as `--set-file` does.
    for set in sets {
        match set.strip_prefix("file:") {
            Some(from_file) => command.args(["--set-file", from_file]),
            None => command.args(["--set", set]),
        };
    }
    let output = command.output().expect("helm runs");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Runs the plugin with no cluster at all (a kubeconfig that does not exist).
fn plugin(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubectl-coredog"));
    command
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the plugin runs")
}

/// Every non-empty document of a YAML stream, as JSON.
fn documents(text: &str) -> Vec<Value> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
        .iter()
        .map(|document| serde_yaml::from_str::<serde_yaml::Value>(document).expect("YAML"))
        .filter(|document| !document.is_null())
        .map(|document| serde_json::to_value(document).expect("YAML as JSON"))
        .collect()
}

fn identity(object: &Value) -> (String, String, String) {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    (
        text(&object["kind"]),
        text(&object["metadata"]["name"]),
        text(&object["metadata"]["namespace"]),
    )
}

/// The differences that are inherent to the tool that made the objects, and nothing else.
fn normalise(object: &mut Value) {
    fn strip_labels(labels: &mut Value) {
        if let Some(labels) = labels.as_object_mut() {
            labels.remove("helm.sh/chart");
            labels.remove("app.kubernetes.io/managed-by");
        }
    }
    strip_labels(&mut object["metadata"]["labels"]);
    if object["spec"]["template"]["metadata"].is_object() {
        strip_labels(&mut object["spec"]["template"]["metadata"]["labels"]);
    }
    // The chart writes 0400, an octal number to Kubernetes' YAML 1.1 reader and a string to
    // this test's YAML 1.2 one; the plugin writes the number itself.
    let volumes = &mut object["spec"]["template"]["spec"]["volumes"];
    for volume in volumes.as_array_mut().into_iter().flatten() {
        let mode = &mut volume["secret"]["defaultMode"];
        if let Some(octal) = mode
            .as_str()
            .and_then(|text| u64::from_str_radix(text, 8).ok())
        {
            *mode = Value::from(octal);
        }
    }
}

/// The chart's default config text, taken from the Secret it renders.
fn chart_config(objects: &[Value]) -> String {
    let secret = objects
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "coredog-config")
        .expect("the chart renders coredog-config");
    let bytes: k8s_openapi::ByteString =
        serde_json::from_value(secret["data"]["config.yaml"].clone()).expect("base64");
    String::from_utf8(bytes.0).expect("UTF-8")
}

struct Pair {
    chart: Vec<Value>,
    plugin: Vec<Value>,
    plugin_text: String,
    _dir: tempfile::TempDir,
}

fn render_both(helm_sets: &[&str], plugin_args: &[&str], env: &[(&str, &str)]) -> Pair {
    let chart = documents(&helm(helm_sets));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, chart_config(&chart)).unwrap();
    let mut args = vec!["install", "--dry-run=client", "-o", "yaml", "--config"];
    let config_arg = config.display().to_string();
    args.push(&config_arg);
    args.extend_from_slice(plugin_args);
    let output = plugin(&args, env);
    assert!(
        output.status.success(),
        "install --dry-run=client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plugin_text = String::from_utf8(output.stdout).unwrap();
    Pair {
        chart,
        plugin: documents(&plugin_text),
        plugin_text,
        _dir: dir,
    }
}

fn assert_same_objects(pair: &Pair) {
    let mut chart_ids: Vec<_> = pair.chart.iter().map(identity).collect();
    let mut plugin_ids: Vec<_> = pair
        .plugin
        .iter()
        .map(identity)
        .filter(|(kind, name, _)| !(kind == "Namespace" && name == NAMESPACE))
        .collect();
    chart_ids.sort();
    plugin_ids.sort();
    assert_eq!(plugin_ids, chart_ids, "the same (kind, name, namespace)");
    for chart_object in &pair.chart {
        let id = identity(chart_object);
        let plugin_object = pair
            .plugin
            .iter()
            .find(|o| identity(o) == id)
            .unwrap_or_else(|| panic!("no {id:?}"));
        let (mut ours, mut theirs) = (plugin_object.clone(), chart_object.clone());
        normalise(&mut ours);
        normalise(&mut theirs);
        let mut differences = Vec::new();
        diff(&ours, &theirs, String::new(), &mut differences);
        assert!(
            differences.is_empty(),
            "{id:?} differs from the chart:\n{}",
            differences.join("\n")
        );
    }
}

/// Where two JSON values differ, as `path: plugin != chart` lines.
fn diff(ours: &Value, theirs: &Value, path: String, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let null = Value::Null;
                diff(
                    a.get(key).unwrap_or(&null),
                    b.get(key).unwrap_or(&null),
                    format!("{path}/{key}"),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, format!("{path}/{index}"), out);
            }
        }
        _ if ours != theirs => out.push(format!("{path}: plugin {ours} != chart {theirs}")),
        _ => {}
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_default_install_is_the_chart() {
    let pair = render_both(&[], &[], &[]);
    assert_same_objects(&pair);

    // The parts the webhook and the watcher rely on, spelt out.
    for objects in [&pair.plugin, &pair.chart] {
        let webhook =
            &find(objects, "MutatingWebhookConfiguration", "coredog-webhook")["webhooks"][0];
        assert_eq!(webhook["failurePolicy"], "Ignore");
        assert_eq!(webhook["sideEffects"], "None");
        assert_eq!(webhook["timeoutSeconds"], 5);
        assert_eq!(webhook["reinvocationPolicy"], "IfNeeded");
        assert_eq!(
            webhook["admissionReviewVersions"],
            serde_json::json!(["v1", "v1beta1"])
        );
        assert_eq!(
            webhook["rules"],
            serde_json::json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}])
        );
        assert_eq!(
            webhook["namespaceSelector"]["matchExpressions"][0]["values"],
            serde_json::json!(["kube-system", NAMESPACE])
        );
        let daemon_set = find(objects, "DaemonSet", "coredog-watcher");
        let pod = &daemon_set["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["hostPath"]["path"],
            "/data/coredog-system/dumps"
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"][0]["mountPath"],
            "/corefile"
        );
        let deployment = find(objects, "Deployment", "coredog-webhook");
        assert_eq!(deployment["spec"]["replicas"], 2);
        let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(
            args,
            &serde_json::json!([
                "webhook",
                "--listen",
                "[::]:8443",
                "--host-dir",
                "/data/coredog-system/dumps",
                "--cert-secret",
                "coredog-webhook-tls",
                "--webhook-configuration",
                "coredog-webhook",
                "--service",
                "coredog-webhook",
                "--log-format",
                "logfmt"
            ])
        );
    }
    // Inherent differences, and only those.
    let namespace = find(&pair.plugin, "Namespace", NAMESPACE);
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    let deployment = find(&pair.plugin, "Deployment", "coredog-webhook");
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl-coredog"
    );
    assert!(
        deployment["metadata"]["labels"]
            .get("helm.sh/chart")
            .is_none()
    );
}

#[test]
fn node_setup_credentials_and_failure_policy_are_the_chart_too() {
    let pair = render_both(
        &[
            "nodeSetup.enabled=true",
            "storage.credentials.accessKeyId=AKIDEXAMPLE",
            "storage.credentials.secretAccessKey=secret-example",
            "webhook.failurePolicy=Fail",
        ],
        &["--node-setup", "--webhook-failure-policy", "Fail"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret-example"),
        ],
    );
    assert_same_objects(&pair);
    let container = &find(&pair.plugin, "DaemonSet", "coredog-watcher")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(container["securityContext"]["privileged"], true);
}

#[test]
fn storage_cas_are_the_chart_too() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let ca = ca.display().to_string();
    let pair = render_both(
        &[&format!("file:watcher.storageCA={ca}")],
        &["--storage-ca", &ca],
        &[],
    );
    assert_same_objects(&pair);
    let config_map = find(&pair.plugin, "ConfigMap", "coredog-storage-ca");
    assert_eq!(config_map["data"]["ca.crt"], pem.as_str());
    let file = dir.path().join("storage-ca.yaml");
    std::fs::write(&file, &pair.plugin_text).unwrap();
    for version in ["1.28.0", "1.33.0"] {
        if let Err(report) = kubernetes_validate(version, std::slice::from_ref(&file)) {
            panic!("not valid for Kubernetes {version}:\n{report}");
        }
    }
}

#[test]
fn the_manifests_are_valid_for_kubernetes_1_28_and_1_33() {
    for (name, args, env) in [
        ("default", vec![], vec![]),
        (
            "node-setup",
            vec!["--node-setup"],
            vec![("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")],
        ),
    ] {
        let pair = render_both(&[], &args, &env);
        let dir = tempfile::tempdir().unwrap();
        let file: PathBuf = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &pair.plugin_text).unwrap();
        for version in ["1.28.0", "1.33.0"] {
            if let Err(report) = kubernetes_validate(version, std::slice::from_ref(&file)) {
                panic!("{name} is not valid for Kubernetes {version}:\n{report}");
            }
        }
    }
}

#[test]
fn dry_run_names_what_would_be_applied_without_a_cluster() {
    let output = plugin(
        &[
            "install",
            "--dry-run=client",
            "--bucket",
            "dumps",
            "--region",
            "eu-west-1",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with("namespace/coredog-system serverside-applied (dry run)\n"),
        "{text}"
    );
    assert!(text.contains(
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/coredog-webhook serverside-applied (dry run)\n"
    ));
}

#[test]
fn install_explains_what_is_missing() {
    let output = plugin(&["install", "--dry-run=client"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr,
        "error: install needs to know where to store dumps\nhint: pass --bucket NAME [--region REGION] [--endpoint URL], or --config FILE\n"
    );
    let output = plugin(
        &[
            "install",
            "--dry-run=client",
            "--config",
            "/nonexistent/config.yaml",
        ],
        &[],
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("error: cannot read --config /nonexistent/config.yaml: No such file"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "StorageConfig:\n  S3Bucket: b\n  DeleteLocalCorefiles: true\n",
    )
    .unwrap();
    let output = plugin(
        &[
            "install",
            "--dry-run=client",
            "--config",
            Path::new(&bad).to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("DeleteLocalCorefiles"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
}

#[test]
fn a_cfs_install_mounts_the_share_and_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "StorageConfig:\n  protocol: cfs\n  CFSMountPath: /mnt/cfs\n  StoreDir: corefiles\n  DeleteLocalCorefile: true\n",
    )
    .unwrap();
    let config_arg = config.display().to_string();
    for (nfs, expected) in [
        (
            None,
            serde_json::json!({"name": "cfs", "hostPath": {"path": "/mnt/cfs", "type": "Directory"}}),
        ),
        (
            Some("10.0.0.9:/coredumps"),
            serde_json::json!({"name": "cfs", "nfs": {"server": "10.0.0.9", "path": "/coredumps"}}),
        ),
    ] {
        let mut args = vec![
            "install",
            "--dry-run=client",
            "-o",
            "yaml",
            "--config",
            &config_arg,
        ];
        if let Some(nfs) = nfs {
            args.extend(["--cfs-nfs", nfs]);
        }
        let output = plugin(&args, &[]);
        assert!(
            output.status.success(),
            "{nfs:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let objects = documents(&text);
        let pod = &find(&objects, "DaemonSet", "coredog-watcher")["spec"]["template"]["spec"];
        let volumes = pod["volumes"].as_array().unwrap();
        assert!(volumes.contains(&expected), "{nfs:?}: {volumes:?}");
        let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .any(|mount| mount["name"] == "cfs" && mount["mountPath"] == "/mnt/cfs"),
            "{mounts:?}"
        );
        let file = dir.path().join("cfs.yaml");
        std::fs::write(&file, &text).unwrap();
        for version in ["1.28.0", "1.33.0"] {
            if let Err(report) = kubernetes_validate(version, std::slice::from_ref(&file)) {
                panic!("{nfs:?} is not valid for Kubernetes {version}:\n{report}");
            }
        }
    }
    let output = plugin(
        &[
            "install",
            "--dry-run=client",
            "--bucket",
            "dumps",
            "--cfs-nfs",
            "10.0.0.9:/coredumps",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).starts_with("error: --cfs-nfs is for protocol cfs"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
