//! The Helm chart in `charts/`: linted, rendered for every values file in `tests/values/`,
//! validated against the Kubernetes API schemas, and checked for the contract the webhook and
//! the watcher rely on (names, flags, paths, security, no secret outside a Secret).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use coredog_tests::{kubernetes_validate, tool, workspace_root};
use serde_json::Value;

const RELEASE: &str = "coredog";
const NAMESPACE: &str = "coredog-system";
const DEFAULT_HOST_DIR: &str = "/data/coredog-system/dumps";

fn chart() -> PathBuf {
    workspace_root().join("charts")
}

fn values(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("tests/values")
        .join(format!("{name}.yaml"));
    assert!(path.exists(), "missing values file {}", path.display());
    path
}

/// Every values file under `tests/values/`, sorted.
fn values_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("tests/values"))
        .expect("tests/values")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected the values files, found {files:?}"
    );
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs helm; returns stdout on success, stdout and stderr on failure.
fn helm(args: &[String]) -> Result<String, String> {
    let output = Command::new(tool("helm"))
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("coredog-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("coredog-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("coredog-helm-data"),
        )
        .output()
        .map_err(|err| format!("cannot run helm: {err}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "helm {args:?} failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `helm template <release> charts -n coredog-system [-f values] [--set s]...`.
fn template(release: &str, values_file: Option<&Path>, sets: &[&str]) -> Result<String, String> {
    let mut args: Vec<String> = vec![
        "template".into(),
        release.into(),
        chart().display().to_string(),
        "-n".into(),
        NAMESPACE.into(),
    ];
    if let Some(file) = values_file {
        args.push("-f".into());
        args.push(file.display().to_string());
    }
    for set in sets {
        args.push("--set".into());
        args.push((*set).into());
    }
    helm(&args)
}

/// A rendered chart: its text and its objects.
struct Render {
    text: String,
    objects: Vec<Value>,
}

fn render(values_file: Option<&Path>, sets: &[&str]) -> Render {
    render_release(RELEASE, values_file, sets)
}

fn render_release(release: &str, values_file: Option<&Path>, sets: &[&str]) -> Render {
    let text = template(release, values_file, sets).unwrap_or_else(|err| panic!("{err}"));
    let objects = parse_documents(&text);
    assert!(!objects.is_empty(), "nothing rendered:\n{text}");
    Render { text, objects }
}

/// Every non-empty document of a multi-document YAML text, as JSON. Helm separates documents
/// with `---` lines; a block scalar's lines are indented, so none of them is a separator.
fn parse_documents(text: &str) -> Vec<Value> {
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
        .map(|document| serde_yaml::from_str::<serde_yaml::Value>(document).expect("rendered YAML"))
        .filter(|document| !document.is_null())
        .map(|document| serde_json::to_value(document).expect("YAML as JSON"))
        .collect()
}

impl Render {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name} in:\n{}", self.text))
    }

    fn webhook_configuration(&self) -> &Value {
        let all = self.all("MutatingWebhookConfiguration");
        assert_eq!(all.len(), 1, "one MutatingWebhookConfiguration");
        let configuration = all[0];
        let webhooks = configuration["webhooks"].as_array().expect("webhooks");
        assert_eq!(webhooks.len(), 1, "one webhook");
        &webhooks[0]
    }

    fn webhook_container(&self) -> &Value {
        container(self.get("Deployment", "coredog-webhook"), "webhook")
    }

    fn watcher(&self) -> &Value {
        self.get("DaemonSet", "coredog-watcher")
    }

    fn watcher_container(&self) -> &Value {
        container(self.watcher(), "watcher")
    }

    /// The decoded `key` of Secret `name`.
    fn secret_value(&self, name: &str, key: &str) -> String {
        let secret = self.get("Secret", name);
        let encoded = secret["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("Secret {name} has no data.{key}"));
        String::from_utf8(base64_decode(encoded)).expect("UTF-8 secret")
    }
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {workload:#}"))
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|arg| arg.as_str().expect("string arg").to_owned())
        .collect()
}

/// The value following `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|arg| arg == flag)
        .and_then(|at| args.get(at + 1))
        .map(String::as_str)
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect()
}

fn volume<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn mount<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == name)
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let [_, a, b, c] = acc.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..chunk.len() - 1]);
    }
    out
}

/// The credentials a values file holds: those in its config text and its structured values.
fn secrets_in(values_file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(values_file).expect("values file");
    let values: serde_yaml::Value = serde_yaml::from_str(&text).expect("values YAML");
    let mut found = Vec::new();
    let credentials = &values["storage"]["credentials"];
    for key in ["accessKeyId", "secretAccessKey"] {
        if let Some(value) = credentials[key].as_str() {
            found.push(value.to_owned());
        }
    }
    if let Some(config) = values["config"]["coredog"].as_str() {
        let config: serde_yaml::Value = serde_yaml::from_str(config).expect("config YAML");
        let storage = &config["StorageConfig"];
        for key in ["s3AccesskeyID", "s3SecretAccessKey"] {
            if let Some(value) = storage[key].as_str() {
                found.push(value.to_owned());
            }
        }
        if let Some(token) = config["CoreSight"]["token"].as_str() {
            found.push(token.to_owned());
        }
        // A robot's URL is its credential.
        for channel in config["NoticeChannel"].as_sequence().into_iter().flatten() {
            if let Some(url) = channel["webhookurl"].as_str() {
                found.push(url.to_owned());
            }
        }
    }
    found.retain(|value| !value.is_empty());
    found
}

#[test]
fn helm_lint_strict_passes_for_every_values_file() {
    let mut failures = Vec::new();
    let mut runs: Vec<Vec<String>> = vec![vec![]];
    for file in values_files() {
        runs.push(vec!["-f".into(), file.display().to_string()]);
    }
    for extra in runs {
        let mut args: Vec<String> = vec![
            "lint".into(),
            "--strict".into(),
            chart().display().to_string(),
            "-n".into(),
            NAMESPACE.into(),
        ];
        args.extend(extra);
        if let Err(err) = helm(&args) {
            failures.push(err);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_render_is_valid_for_kubernetes_1_28_and_1_33() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut cases: Vec<Option<PathBuf>> = vec![None];
    cases.extend(values_files().into_iter().map(Some));
    for case in &cases {
        let render = render(case.as_deref(), &[]);
        let name = case.as_deref().map_or("default.yaml".to_owned(), file_name);
        let file = dir.path().join(name);
        std::fs::write(&file, &render.text).unwrap();
        files.push(file);
    }
    for version in ["1.28.0", "1.33.0"] {
        if let Err(report) = kubernetes_validate(version, &files) {
            panic!("the chart's objects are not valid for Kubernetes {version}:\n{report}");
        }
    }
}

#[test]
fn kubernetes_validate_checks_every_document_of_a_file() {
    // The renders above are multi-document files: make sure a bad object in the middle of one,
    // after a kind without a schema, is still caught.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("multi.yaml");
    std::fs::write(
        &file,
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: a}\nspec: {selfSigned: {}}\n\
         ---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b, bogus: 1}\n---\n",
    )
    .unwrap();
    let report = kubernetes_validate("1.33.0", &[file]).unwrap_err();
    assert!(report.contains("bogus"), "{report}");
}

#[test]
fn no_secret_material_outside_secrets_and_no_configmap() {
    for file in values_files() {
        let render = render(Some(&file), &[]);
        let secrets = secrets_in(&file);
        for object in &render.objects {
            assert_ne!(
                object["kind"],
                "ConfigMap",
                "{}: the chart renders no ConfigMap",
                file_name(&file)
            );
            if object["kind"] == "Secret" {
                continue;
            }
            let text = object.to_string();
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{}: {secret:?} appears in {} {}",
                    file_name(&file),
                    object["kind"],
                    object["metadata"]["name"]
                );
            }
            assert!(!text.contains("-----BEGIN"), "key material in {object:#}");
            assert!(
                !text.contains("StorageConfig"),
                "{}: the configuration appears in {} {}",
                file_name(&file),
                object["kind"],
                object["metadata"]["name"]
            );
        }
    }
}

#[test]
fn the_legacy_values_file_is_rendered_into_the_config_secret_unchanged() {
    let file = values("legacy");
    let values: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let expected = values["config"]["coredog"].as_str().unwrap();
    let render = render(Some(&file), &[]);
    assert_eq!(
        render.secret_value("coredog-config", "config.yaml"),
        expected
    );
    assert!(expected.contains("s3AccesskeyID: \"your_ak\""));
    // The watcher reads exactly that Secret's config.yaml.
    let watcher = render.watcher();
    assert_eq!(
        volume(watcher, "config")["secret"]["secretName"],
        "coredog-config"
    );
    let config_mount = mount(render.watcher_container(), "config").unwrap();
    assert_eq!(config_mount["mountPath"], "/etc/coredog");
    assert_eq!(config_mount["readOnly"], true);
    let args = args(render.watcher_container());
    assert_eq!(flag(&args, "--config"), Some("/etc/coredog/config.yaml"));
    assert_eq!(flag(&args, "--dir"), Some("/corefile"));
    assert_eq!(flag(&args, "--listen"), Some("[::]:9090"));
    assert_eq!(args[0], "watcher");
    // Old values files hold no structured credentials: no credentials Secret, no env.
    assert!(
        render
            .find("Secret", "coredog-storage-credentials")
            .is_none()
    );
    assert!(env(render.watcher_container(), "AWS_ACCESS_KEY_ID").is_none());
}

#[test]
fn a_values_file_of_the_go_chart_installs_unchanged() {
    let file = values("go-chart");
    let values: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let render = render(Some(&file), &[]);

    // The Go image takes none of these arguments: CoreDog's runs instead, however its
    // registry is spelt.
    for workload in [render.watcher_container(), render.webhook_container()] {
        let image = workload["image"].as_str().unwrap();
        assert!(image.starts_with("ghcr.io/coredog-io/coredog:"), "{image}");
    }
    for spelt in [
        "docker.io/coderflyfyf/coredog",
        "mirror.example:5000/coderflyfyf/coredog",
        "harbor.corp/dockerhub-proxy/coderflyfyf/coredog",
    ] {
        let repository = format!("image.repository={spelt}");
        let render = self::render(Some(&file), &[&repository, "image.tag=v1.0.7"]);
        let image = render.watcher_container()["image"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            image.starts_with("ghcr.io/coredog-io/coredog:"),
            "{spelt}: {image}"
        );
    }
    // corefileVolume.hostPath.path is the dump directory, for the watcher and the webhook.
    assert_eq!(
        volume(render.watcher(), "corefile")["hostPath"]["path"],
        "/data/crash-dumps"
    );
    assert_eq!(
        flag(&args(render.webhook_container()), "--host-dir"),
        Some("/data/crash-dumps")
    );
    // Its namespace selector narrows CoreDog's, which still leaves the system namespaces out.
    let expressions = render.webhook_configuration()["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap()
        .clone();
    let keys: Vec<&str> = expressions
        .iter()
        .map(|expression| expression["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "kubernetes.io/metadata.name",
            "coredog.io/webhook",
            "pod-security.kubernetes.io/enforce",
            "coredog.io/enabled"
        ]
    );
    assert_eq!(strings(&expressions[3]["values"]), ["true"]);
    // The configuration is the watcher's, read as it is.
    let text = values["config"]["coredog"].as_str().unwrap();
    assert_eq!(render.secret_value("coredog-config", "config.yaml"), text);
    let config = coredog_core::config::Config::from_yaml(text).unwrap();
    assert!(config.storage.delete_local_corefile);
    assert_eq!(config.notice_channels.len(), 1);
}

#[test]
fn webhook_enabled_false_installs_the_watchers_only() {
    let render = render(None, &["webhook.enabled=false"]);
    let kinds: BTreeSet<&str> = render
        .objects
        .iter()
        .map(|object| object["kind"].as_str().unwrap())
        .collect();
    assert!(render.all("MutatingWebhookConfiguration").is_empty());
    assert!(render.find("Deployment", "coredog-webhook").is_none());
    assert!(render.find("Service", "coredog-webhook").is_none());
    assert!(render.find("ServiceAccount", "coredog-webhook").is_none());
    assert!(kinds.contains("DaemonSet"), "{kinds:?}");
    render.watcher_container();
}

#[test]
fn host_directories_the_webhook_would_refuse_are_refused_at_install() {
    for dir in [
        "/data//dumps",
        "/data/./dumps",
        "/data/../dumps",
        "dumps",
        "/",
    ] {
        let set = format!("hostDir={dir}");
        let err = template(RELEASE, None, &[&set]).expect_err(dir);
        assert!(err.contains("hostDir"), "{dir}: {err}");
    }
    let render = render(None, &["hostDir=/var/lib/dumps/"]);
    assert_eq!(
        volume(render.watcher(), "corefile")["hostPath"]["path"],
        "/var/lib/dumps"
    );
}

#[test]
fn excluded_namespaces_that_look_like_numbers_stay_names() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(
        &file,
        "webhook:\n  excludeNamespaces: [\"2024\", \"yes\", \"batch\"]\n",
    )
    .unwrap();
    let render = render(Some(&file), &[]);
    let names = &render.webhook_configuration()["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(
        names["values"],
        serde_json::json!(["kube-system", NAMESPACE, "2024", "yes", "batch"])
    );
}

#[test]
fn the_webhook_configuration_never_blocks_and_skips_system_namespaces() {
    let render = render(None, &[]);
    let webhook = render.webhook_configuration();
    assert_eq!(webhook["name"], "inject.coredog.io");
    assert_eq!(webhook["failurePolicy"], "Ignore");
    assert_eq!(webhook["sideEffects"], "None");
    assert_eq!(webhook["timeoutSeconds"], 5);
    assert_eq!(webhook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(webhook["matchPolicy"], "Equivalent");
    assert_eq!(
        strings(&webhook["admissionReviewVersions"]),
        ["v1", "v1beta1"]
    );
    let service = &webhook["clientConfig"]["service"];
    assert_eq!(service["name"], "coredog-webhook");
    assert_eq!(service["namespace"], NAMESPACE);
    assert_eq!(service["path"], "/mutate");
    assert_eq!(service["port"], 443);
    let rules = webhook["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(strings(&rules[0]["operations"]), ["CREATE"]);
    assert_eq!(strings(&rules[0]["apiGroups"]), [""]);
    assert_eq!(strings(&rules[0]["apiVersions"]), ["v1"]);
    assert_eq!(strings(&rules[0]["resources"]), ["pods"]);
    assert_eq!(rules[0]["scope"], "Namespaced");
    let expressions = webhook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    let by_key = |key: &str| {
        expressions
            .iter()
            .find(|e| e["key"] == key)
            .unwrap_or_else(|| panic!("no namespaceSelector expression for {key}"))
    };
    let names = by_key("kubernetes.io/metadata.name");
    assert_eq!(names["operator"], "NotIn");
    let excluded = strings(&names["values"]);
    assert!(excluded.contains(&"kube-system") && excluded.contains(&NAMESPACE));
    let label = by_key("coredog.io/webhook");
    assert_eq!(label["operator"], "NotIn");
    assert_eq!(strings(&label["values"]), ["disabled"]);
    // Pod Security levels that forbid hostPath: injected pods would be rejected there.
    let pod_security = by_key("pod-security.kubernetes.io/enforce");
    assert_eq!(pod_security["operator"], "NotIn");
    assert_eq!(strings(&pod_security["values"]), ["baseline", "restricted"]);

    // The Service sends port 443 to the container's https port.
    let service = render.get("Service", "coredog-webhook");
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["port"], 443);
    assert_eq!(port["targetPort"], "https");
    let container = render.webhook_container();
    let ports = container["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "https" && p["containerPort"] == 8443)
    );

    // Values can make it stricter and exclude more.
    let render = self::render(Some(&values("oss")), &[]);
    let webhook = render.webhook_configuration();
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert!(webhook.to_string().contains("\"monitoring\""));
}

#[test]
fn the_default_render_templates_no_certificate_and_lets_the_webhook_make_its_own() {
    let render = render(None, &[]);
    assert!(
        !render.text.contains("caBundle"),
        "no caBundle is templated"
    );
    assert!(!render.text.contains("-----BEGIN"), "no key or certificate");
    assert!(!render.text.contains("genCA"));
    for kind in ["Certificate", "Issuer"] {
        assert!(render.all(kind).is_empty(), "no {kind} without certManager");
    }
    assert!(render.find("Secret", "coredog-webhook-tls").is_none());
    let container = render.webhook_container();
    let args = args(container);
    assert_eq!(args[0], "webhook");
    assert_eq!(flag(&args, "--listen"), Some("[::]:8443"));
    assert_eq!(flag(&args, "--cert-secret"), Some("coredog-webhook-tls"));
    assert_eq!(
        flag(&args, "--webhook-configuration"),
        Some("coredog-webhook")
    );
    assert_eq!(flag(&args, "--service"), Some("coredog-webhook"));
    assert_eq!(flag(&args, "--tls-cert"), None);
    assert_eq!(flag(&args, "--log-format"), Some("logfmt"));
    assert_eq!(
        env(container, "POD_NAMESPACE").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );

    // Least privilege: the TLS Secret by name (create cannot be), its own configuration by name.
    let role = render.get("Role", "coredog-webhook");
    let rules = role["rules"].as_array().unwrap();
    for rule in rules {
        assert_eq!(strings(&rule["resources"]), ["secrets"]);
        let verbs = strings(&rule["verbs"]);
        if verbs == ["create"] {
            assert!(rule.get("resourceNames").is_none());
        } else {
            // What the webhook does to its certificate Secret: read it and replace it, its
            // owner reference included, which the OwnerReferencesPermissionEnforcement
            // admission plugin (OpenShift) allows only to who may delete the Secret.
            assert_eq!(strings(&rule["resourceNames"]), ["coredog-webhook-tls"]);
            assert_eq!(verbs, ["get", "update", "delete"]);
        }
    }
    // Its own configuration, read and patched for the caBundle; no other, and no listing.
    let cluster_role = render.get("ClusterRole", "coredog-webhook");
    let rules = cluster_role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        strings(&rules[0]["apiGroups"]),
        ["admissionregistration.k8s.io"]
    );
    assert_eq!(
        strings(&rules[0]["resources"]),
        ["mutatingwebhookconfigurations"]
    );
    assert_eq!(strings(&rules[0]["resourceNames"]), ["coredog-webhook"]);
    assert_eq!(strings(&rules[0]["verbs"]), ["get", "patch"]);
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        let binding = render.get(kind, "coredog-webhook");
        assert_eq!(binding["subjects"][0]["name"], "coredog-webhook");
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    }
}

#[test]
fn the_webhook_runs_locked_down_and_highly_available() {
    let render = render(None, &[]);
    let deployment = render.get("Deployment", "coredog-webhook");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "coredog-webhook");
    assert!(render.find("ServiceAccount", "coredog-webhook").is_some());
    let term = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        term["labelSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let container = render.webhook_container();
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert!(security["capabilities"].get("add").is_none());
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path);
        assert_eq!(get["port"], "https");
        assert_eq!(get["scheme"], "HTTPS");
    }
    let resources = &container["resources"];
    assert_eq!(resources["requests"]["cpu"], "50m");
    assert_eq!(resources["requests"]["memory"], "32Mi");
    assert_eq!(resources["limits"]["memory"], "128Mi");
    let budget = render.get("PodDisruptionBudget", "coredog-webhook");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    // One replica: a budget would block node drains.
    let single = self::render(None, &["webhook.replicas=1"]);
    assert!(single.all("PodDisruptionBudget").is_empty());
}

#[test]
fn the_watcher_and_the_webhook_agree_on_the_host_directory() {
    for (values_file, host_dir) in [
        (None, DEFAULT_HOST_DIR),
        (Some(values("node-setup")), "/var/coredog/dumps"),
    ] {
        let render = render(values_file.as_deref(), &[]);
        let webhook_args = args(render.webhook_container());
        assert_eq!(flag(&webhook_args, "--host-dir"), Some(host_dir));
        let host_path = &volume(render.watcher(), "corefile")["hostPath"];
        assert_eq!(host_path["path"], host_dir);
        assert_eq!(host_path["type"], "DirectoryOrCreate");
        assert_eq!(
            mount(render.watcher_container(), "corefile").unwrap()["mountPath"],
            "/corefile"
        );
    }
    // A trailing '/' is the same directory to both.
    let render = render(None, &["hostDir=/srv/dumps/"]);
    assert_eq!(
        flag(&args(render.webhook_container()), "--host-dir"),
        Some("/srv/dumps")
    );
    assert_eq!(
        volume(render.watcher(), "corefile")["hostPath"]["path"],
        "/srv/dumps"
    );
}

#[test]
fn the_watcher_is_unprivileged_without_node_setup() {
    let render = render(None, &[]);
    let watcher = render.watcher();
    assert_eq!(watcher["spec"]["updateStrategy"]["type"], "RollingUpdate");
    let pod = &watcher["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "coredog-watcher");
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert_eq!(tolerations.len(), 1);
    assert_eq!(tolerations[0]["operator"], "Exists");
    assert!(tolerations[0].get("key").is_none(), "tolerates every taint");
    let container = render.watcher_container();
    let security = &container["securityContext"];
    assert_ne!(security["privileged"], true);
    assert_eq!(security["runAsUser"], 0);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(
        strings(&security["capabilities"]["add"]),
        ["DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "LEASE"]
    );
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    let args = args(container);
    for absent in ["--core-pattern", "--state-dir", "--daemonset"] {
        assert_eq!(flag(&args, absent), None, "{absent} without nodeSetup");
    }
    assert!(mount(container, "state").is_none());
    for (name, path) in [
        ("NODE_NAME", "spec.nodeName"),
        ("HOST_IP", "status.hostIP"),
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env(container, name).unwrap_or_else(|| panic!("no env {name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], path);
    }
    let ports = container["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == 9090)
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], "metrics");
    }
    let resources = &container["resources"];
    assert_eq!(resources["requests"]["cpu"], "20m");
    assert_eq!(resources["requests"]["memory"], "64Mi");
    assert_eq!(resources["limits"]["memory"], "256Mi");

    // RBAC: read pods, record events, patch its own pod, read its DaemonSet by name.
    let cluster_role = render.get("ClusterRole", "coredog-watcher");
    let rules = cluster_role["rules"].as_array().unwrap();
    let verbs_for = |group: &str, resource: &str| -> Vec<&str> {
        rules
            .iter()
            .filter(|r| {
                strings(&r["apiGroups"]).contains(&group)
                    && strings(&r["resources"]).contains(&resource)
            })
            .flat_map(|r| strings(&r["verbs"]))
            .collect()
    };
    assert_eq!(verbs_for("", "pods"), ["list", "watch"]);
    assert!(verbs_for("", "events").is_empty());
    assert_eq!(verbs_for("events.k8s.io", "events"), ["create", "patch"]);
    assert!(!cluster_role.to_string().contains("secrets"));
    let role = render.get("Role", "coredog-watcher");
    let role_rules = role["rules"].as_array().unwrap();
    assert!(
        role_rules
            .iter()
            .any(|r| strings(&r["resources"]) == ["pods"] && strings(&r["verbs"]) == ["patch"])
    );
    assert!(
        role_rules
            .iter()
            .any(|r| strings(&r["resources"]) == ["daemonsets"]
                && strings(&r["verbs"]) == ["get"]
                && strings(&r["resourceNames"]) == ["coredog-watcher"])
    );
}

#[test]
fn node_setup_runs_the_watcher_privileged_with_the_core_pattern() {
    let render = render(Some(&values("node-setup")), &[]);
    let container = render.watcher_container();
    assert_eq!(container["securityContext"]["privileged"], true);
    let args = args(container);
    assert_eq!(
        flag(&args, "--core-pattern"),
        Some("/data/dumps/core.%e.%p.%h.%t")
    );
    assert_eq!(flag(&args, "--state-dir"), Some("/var/lib/coredog"));
    assert_eq!(flag(&args, "--daemonset"), Some("coredog-watcher"));
    assert_eq!(
        mount(container, "state").unwrap()["mountPath"],
        "/var/lib/coredog"
    );
    let state = &volume(render.watcher(), "state")["hostPath"];
    assert_eq!(state["path"], "/var/lib/coredog-state");
    assert_eq!(state["type"], "DirectoryOrCreate");
    // The IRSA role reaches the watcher's ServiceAccount; no static keys anywhere.
    let account = render.get("ServiceAccount", "coredog-watcher");
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/coredog-watcher"
    );
    assert!(env(container, "AWS_ACCESS_KEY_ID").is_none());
    assert!(
        render
            .find("Secret", "coredog-storage-credentials")
            .is_none()
    );

    // Defaults.
    let render = self::render(None, &["nodeSetup.enabled=true"]);
    let args = self::args(render.watcher_container());
    assert_eq!(
        flag(&args, "--core-pattern"),
        Some("/corefile/core.%e.%p.%h.%t")
    );
    assert_eq!(
        volume(render.watcher(), "state")["hostPath"]["path"],
        "/var/lib/coredog"
    );
}

#[test]
fn the_schema_holds_the_core_pattern_to_what_the_kernel_accepts() {
    let longest = format!("/{}", "c".repeat(126));
    assert!(
        template(
            RELEASE,
            None,
            &[&format!("nodeSetup.corePattern={longest}")]
        )
        .is_ok()
    );
    for bad in [
        format!("/{}", "c".repeat(127)),
        "core.%e.%p".to_owned(),
        "|/usr/bin/handler %p".to_owned(),
        // A directory, which the watcher refuses to set.
        "/corefile/".to_owned(),
    ] {
        let err = template(RELEASE, None, &[&format!("nodeSetup.corePattern={bad}")])
            .expect_err(&format!("corePattern {bad:?} must be refused"));
        assert!(err.contains("corePattern"), "{err}");
    }
    // The Go system's script hook, which the watcher would refuse at start.
    let err = template(
        RELEASE,
        None,
        &["config.coredog=CustomHandler:\n  enabled: false\n"],
    )
    .unwrap_err();
    assert!(err.contains("CustomHandler is not supported"), "{err}");
    for bad in [
        "hostDir=relative/dir",
        "hostDir=/",
        "logFormat=xml",
        "webhook.failurePolicy=Never",
    ] {
        assert!(
            template(RELEASE, None, &[bad]).is_err(),
            "{bad} must be refused"
        );
    }
}

#[test]
fn cert_manager_mode_mounts_the_issued_certificate() {
    let render = render(Some(&values("cert-manager")), &[]);
    let configuration = render.get("MutatingWebhookConfiguration", "coredog-webhook");
    assert_eq!(
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/coredog-webhook")
    );
    assert!(!render.text.contains("caBundle"));
    let certificate = render.get("Certificate", "coredog-webhook");
    assert_eq!(certificate["spec"]["secretName"], "coredog-webhook-tls");
    assert_eq!(
        strings(&certificate["spec"]["dnsNames"]),
        [
            format!("coredog-webhook.{NAMESPACE}.svc"),
            format!("coredog-webhook.{NAMESPACE}.svc.cluster.local")
        ]
    );
    // selfSigned Issuer -> CA Certificate -> CA Issuer -> serving Certificate.
    let ca_issuer_name = certificate["spec"]["issuerRef"]["name"].as_str().unwrap();
    let ca_issuer = render.get("Issuer", ca_issuer_name);
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"].as_str().unwrap();
    let ca = render
        .all("Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("the CA Certificate");
    assert_eq!(ca["spec"]["isCA"], true);
    let root = render.get("Issuer", ca["spec"]["issuerRef"]["name"].as_str().unwrap());
    assert!(root["spec"].get("selfSigned").is_some());

    let container = render.webhook_container();
    let args = args(container);
    assert_eq!(flag(&args, "--tls-cert"), Some("/tls/tls.crt"));
    assert_eq!(flag(&args, "--tls-key"), Some("/tls/tls.key"));
    for absent in ["--cert-secret", "--webhook-configuration", "--service"] {
        assert_eq!(flag(&args, absent), None, "{absent} with cert-manager");
    }
    let tls = mount(container, "tls").expect("tls mount");
    assert_eq!(tls["mountPath"], "/tls");
    assert_eq!(tls["readOnly"], true);
    assert_eq!(
        volume(render.get("Deployment", "coredog-webhook"), "tls")["secret"]["secretName"],
        "coredog-webhook-tls"
    );
    // The webhook needs no API access then.
    assert!(render.find("Role", "coredog-webhook").is_none());
    assert!(render.find("ClusterRole", "coredog-webhook").is_none());

    // An issuer of the user's: no Issuer of the chart's own.
    let render = self::render(Some(&values("cert-manager-issuer")), &[]);
    assert!(render.all("Issuer").is_empty());
    let certificates = render.all("Certificate");
    assert_eq!(certificates.len(), 1);
    let issuer = &certificates[0]["spec"]["issuerRef"];
    assert_eq!(issuer["name"], "corporate-ca");
    assert_eq!(issuer["kind"], "ClusterIssuer");

    // An external issuer, of its own group and kind.
    let render = self::render(
        Some(&values("cert-manager-issuer")),
        &[
            "certManager.issuerRef.kind=AWSPCAClusterIssuer",
            "certManager.issuerRef.group=awspca.cert-manager.io",
        ],
    );
    let issuer = &render.all("Certificate")[0]["spec"]["issuerRef"];
    assert_eq!(issuer["kind"], "AWSPCAClusterIssuer");
    assert_eq!(issuer["group"], "awspca.cert-manager.io");
}

#[test]
fn an_existing_config_secret_replaces_the_rendered_one() {
    let render = render(Some(&values("existing-secret")), &[]);
    assert!(render.find("Secret", "coredog-config").is_none());
    assert!(render.all("Secret").is_empty(), "no Secret at all");
    let watcher = render.watcher();
    assert_eq!(
        volume(watcher, "config")["secret"]["secretName"],
        "my-coredog-config"
    );
    let annotations = &watcher["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations.get("checksum/config").is_none());
    // User tolerations replace the default.
    let tolerations = &watcher["spec"]["template"]["spec"]["tolerations"];
    assert_eq!(tolerations.as_array().unwrap().len(), 1);
    assert_eq!(tolerations[0]["key"], "dedicated");
}

#[test]
fn structured_credentials_go_to_their_own_secret_and_reach_the_watcher_as_env() {
    let render = render(Some(&values("s3")), &[]);
    assert_eq!(
        render.secret_value("coredog-storage-credentials", "AWS_ACCESS_KEY_ID"),
        "AKIAS3TESTACCESSKEY1"
    );
    assert_eq!(
        render.secret_value("coredog-storage-credentials", "AWS_SECRET_ACCESS_KEY"),
        "s3TestSecretKeyDoNotLeak0123456789abcdef"
    );
    let config = render.secret_value("coredog-config", "config.yaml");
    assert!(!config.contains("AKIAS3TESTACCESSKEY1"));
    let container = render.watcher_container();
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        let reference = &env(container, name).unwrap()["valueFrom"]["secretKeyRef"];
        assert_eq!(reference["name"], "coredog-storage-credentials");
        assert_eq!(reference["key"], name);
    }
    assert_eq!(flag(&args(container), "--log-format"), Some("json"));
    assert_eq!(
        flag(&args(render.webhook_container()), "--log-format"),
        Some("json")
    );

    // A Secret of the user's, with its own key names.
    let render = self::render(Some(&values("oss")), &[]);
    assert!(
        render
            .find("Secret", "coredog-storage-credentials")
            .is_none()
    );
    let container = render.watcher_container();
    for (name, key) in [
        ("AWS_ACCESS_KEY_ID", "access-key-id"),
        ("AWS_SECRET_ACCESS_KEY", "access-key-secret"),
    ] {
        let reference = &env(container, name).unwrap()["valueFrom"]["secretKeyRef"];
        assert_eq!(reference["name"], "oss-keys");
        assert_eq!(reference["key"], key);
    }

    // Nothing at all by default.
    let render = self::render(None, &[]);
    assert!(
        render
            .find("Secret", "coredog-storage-credentials")
            .is_none()
    );
    assert!(env(render.watcher_container(), "AWS_ACCESS_KEY_ID").is_none());

    // Half a key pair is refused.
    let err = template(RELEASE, None, &["storage.credentials.accessKeyId=AKIA"]).unwrap_err();
    assert!(err.contains("go together"), "{err}");
}

#[test]
fn the_cfs_share_is_mounted_into_the_watcher() {
    let render = render(Some(&values("cfs")), &[]);
    let watcher = render.watcher();
    assert_eq!(volume(watcher, "cfs")["nfs"]["path"], "/coredumps");
    assert_eq!(
        mount(render.watcher_container(), "cfs").unwrap()["mountPath"],
        "/mnt/cfs"
    );
    let pod = &watcher["spec"]["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-credentials");
    assert_eq!(
        render.get("Deployment", "coredog-webhook")["spec"]["template"]["spec"]["imagePullSecrets"]
            [0]["name"],
        "registry-credentials"
    );
}

#[test]
fn every_object_carries_the_standard_labels() {
    let mut cases: Vec<Option<PathBuf>> = vec![None];
    cases.extend(values_files().into_iter().map(Some));
    for case in cases {
        let render = render(case.as_deref(), &[]);
        let label = case.as_deref().map_or("default".to_owned(), file_name);
        for object in &render.objects {
            let what = format!("{label}: {} {}", object["kind"], object["metadata"]["name"]);
            let labels = &object["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/name"], "coredog", "{what}");
            assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{what}");
            assert_eq!(labels["app.kubernetes.io/version"], "0.1.0", "{what}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{what}");
            assert_eq!(labels["helm.sh/chart"], "coredog-0.1.0", "{what}");
            let component = labels["app.kubernetes.io/component"].as_str();
            assert!(
                matches!(component, Some("webhook" | "watcher")),
                "{what}: component {component:?}"
            );
            // Every object is the chart's own: no hook that `helm uninstall` would leave behind.
            assert!(
                object["metadata"]["annotations"]
                    .get("helm.sh/hook")
                    .is_none(),
                "{what}"
            );
            if let Some(namespace) = object["metadata"]["namespace"].as_str() {
                assert_eq!(namespace, NAMESPACE, "{what}");
            }
            if matches!(object["kind"].as_str(), Some("Deployment" | "DaemonSet")) {
                let selector = &object["spec"]["selector"]["matchLabels"];
                let expected: BTreeSet<&str> = [
                    "app.kubernetes.io/name",
                    "app.kubernetes.io/instance",
                    "app.kubernetes.io/component",
                ]
                .into();
                let keys: BTreeSet<&str> = selector
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(keys, expected, "{what}");
                let pod_labels = &object["spec"]["template"]["metadata"]["labels"];
                for key in expected {
                    assert_eq!(pod_labels[key], selector[key], "{what}");
                }
            }
        }
        // The docs select the watcher pods by component.
        let watcher_pod_labels = &render.watcher()["spec"]["template"]["metadata"]["labels"];
        assert_eq!(watcher_pod_labels["app.kubernetes.io/component"], "watcher");
    }
}

/// An image pinned by digest: its tag is no label value, the chart's version is.
#[test]
fn an_image_pinned_by_digest_is_labelled_with_the_charts_version() {
    let digest = format!("image.tag=0.1.0@sha256:{}", "0".repeat(64));
    let render = render(None, &[&digest]);
    let image = render.watcher_container()["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(image.ends_with(&digest["image.tag=".len()..]), "{image}");
    for object in &render.objects {
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/version"],
            "0.1.0"
        );
    }
    let render = self::render(None, &["image.tag=1.2.3-rc.1"]);
    assert_eq!(
        render.watcher()["metadata"]["labels"]["app.kubernetes.io/version"],
        "1.2.3-rc.1"
    );
}

#[test]
fn another_release_name_prefixes_every_name_consistently() {
    let render = render_release("crashes", None, &["nodeSetup.enabled=true"]);
    let webhook = "crashes-coredog-webhook";
    let deployment = render.get("Deployment", webhook);
    let args = args(container(deployment, "webhook"));
    assert_eq!(
        flag(&args, "--cert-secret"),
        Some("crashes-coredog-webhook-tls")
    );
    assert_eq!(flag(&args, "--webhook-configuration"), Some(webhook));
    assert_eq!(flag(&args, "--service"), Some(webhook));
    render.get("Service", webhook);
    render.get("MutatingWebhookConfiguration", webhook);
    assert_eq!(
        render.webhook_configuration()["clientConfig"]["service"]["name"],
        webhook
    );
    assert_eq!(
        strings(&render.get("Role", webhook)["rules"][1]["resourceNames"]),
        ["crashes-coredog-webhook-tls"]
    );
    assert_eq!(
        strings(&render.get("ClusterRole", webhook)["rules"][0]["resourceNames"]),
        [webhook]
    );
    let watcher = render.get("DaemonSet", "crashes-coredog-watcher");
    assert_eq!(
        flag(&self::args(container(watcher, "watcher")), "--daemonset"),
        Some("crashes-coredog-watcher")
    );
    assert_eq!(
        volume(watcher, "config")["secret"]["secretName"],
        "crashes-coredog-config"
    );
    render.get("Secret", "crashes-coredog-config");
    for object in &render.objects {
        let name = object["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("crashes-coredog-"), "{name}");
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/instance"],
            "crashes"
        );
    }
}

/// NOTES.txt, as `helm install` prints it (a client-side dry run needs no cluster).
fn notes(sets: &[&str]) -> String {
    let mut args: Vec<String> = vec![
        "install".into(),
        "--dry-run=client".into(),
        RELEASE.into(),
        chart().display().to_string(),
        "-n".into(),
        NAMESPACE.into(),
    ];
    for set in sets {
        args.push("--set".into());
        args.push((*set).into());
    }
    let output = helm(&args).unwrap_or_else(|err| panic!("{err}"));
    let start = output.find("NOTES:").expect("helm prints NOTES");
    output[start..].to_owned()
}

#[test]
fn the_notes_say_what_to_do_next() {
    let text = notes(&[]);
    for needle in [
        "nodeSetup.enabled=true",
        "sysctl -w kernel.core_pattern=/corefile/core.%e.%p.%h.%t",
        "inside the crashing container",
        "coredog.io/inject: \"true\"",
        "coredog.io/path: /corefile",
        "coredog.io/container:",
        "ulimit -c unlimited",
        "kubectl coredog doctor",
        "my-bucket-1234567890",
    ] {
        assert!(text.contains(needle), "NOTES lack {needle:?}:\n{text}");
    }
    let text = notes(&[
        "nodeSetup.enabled=true",
        "nodeSetup.corePattern=/dumps/core.%e.%p",
        "certManager.enabled=true",
    ]);
    assert!(text.contains("/dumps/core.%e.%p"), "{text}");
    assert!(text.contains("coredog.io/path: /dumps "), "{text}");
    assert!(!text.contains("sysctl -w"), "{text}");
    assert!(text.contains("--enable-certificate-owner-ref"), "{text}");
}

#[test]
fn storage_cas_go_to_a_configmap_the_watchers_trust_and_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certificate =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
    let values = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        let values = serde_json::json!({ "watcher": { "storageCA": pem } });
        std::fs::write(&path, serde_yaml::to_string(&values).unwrap()).unwrap();
        path
    };
    let with_ca = render(Some(&values("ca.yaml", certificate)), &[]);
    let config_map = with_ca.get("ConfigMap", "coredog-storage-ca");
    assert_eq!(config_map["data"]["ca.crt"], certificate);
    let watcher = with_ca.watcher_container();
    assert_eq!(
        env(watcher, "SSL_CERT_FILE").unwrap()["value"],
        "/etc/coredog/storage-ca/ca.crt"
    );
    assert_eq!(
        mount(watcher, "storage-ca").unwrap()["mountPath"],
        "/etc/coredog/storage-ca"
    );
    assert_eq!(
        volume(with_ca.watcher(), "storage-ca")["configMap"]["name"],
        "coredog-storage-ca"
    );

    let with_key = format!(
        "{certificate}-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA\n-----END PRIVATE KEY-----\n"
    );
    let err = template(RELEASE, Some(&values("key.yaml", &with_key)), &[]).unwrap_err();
    assert!(err.contains("storageCA"), "{err}");
    let err = template(
        RELEASE,
        Some(&values("text.yaml", "not a certificate")),
        &[],
    )
    .unwrap_err();
    assert!(err.contains("storageCA"), "{err}");
    // Without it, nothing of it.
    let plain = render(None, &[]);
    assert!(plain.find("ConfigMap", "coredog-storage-ca").is_none());
    assert!(env(plain.watcher_container(), "SSL_CERT_FILE").is_none());
}
