//! `install` and `uninstall` against a mock API server: server-side apply with the plugin's
//! field manager and forced conflicts, the objects in order, upgrades that keep what the last
//! install stored, and the deletes of uninstall.

mod support;

use clap::Parser as _;
use coredog_core::config::Config;
use kubectl_coredog::cli::{Cli, Command, InstallArgs, UninstallArgs};
use kubectl_coredog::install::{install, manifests, settings, uninstall};
use serde_json::{Value, json};
use support::{Captured, Recorded, api_server, not_found, ok, status};

fn parse(args: &[&str]) -> Command {
    let mut argv = vec!["kubectl-coredog"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap().command
}

fn install_args(args: &[&str]) -> InstallArgs {
    let mut all = vec!["install"];
    all.extend_from_slice(args);
    match parse(&all) {
        Command::Install(args) => args,
        _ => unreachable!(),
    }
}

fn uninstall_args(args: &[&str]) -> UninstallArgs {
    let mut all = vec!["uninstall"];
    all.extend_from_slice(args);
    match parse(&all) {
        Command::Uninstall(args) => args,
        _ => unreachable!(),
    }
}

/// Answers an apply with what was applied, plus what the API server adds.
fn echo_apply(request: &Recorded) -> (u16, Value) {
    let mut object = request.body.clone();
    object["metadata"]["managedFields"] = json!([{"manager": "kubectl-coredog"}]);
    object["metadata"]["uid"] = json!("0000");
    ok(object)
}

const APPLY_PATHS: [&str; 17] = [
    "/api/v1/namespaces/coredog-system",
    "/apis/policy/v1/namespaces/coredog-system/poddisruptionbudgets/coredog-webhook",
    "/api/v1/namespaces/coredog-system/serviceaccounts/coredog-webhook",
    "/api/v1/namespaces/coredog-system/serviceaccounts/coredog-watcher",
    "/api/v1/namespaces/coredog-system/secrets/coredog-config",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles/coredog-webhook",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles/coredog-watcher",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/coredog-webhook",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/coredog-watcher",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/coredog-system/roles/coredog-webhook",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/coredog-system/roles/coredog-watcher",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/coredog-system/rolebindings/coredog-webhook",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/coredog-system/rolebindings/coredog-watcher",
    "/api/v1/namespaces/coredog-system/services/coredog-webhook",
    "/apis/apps/v1/namespaces/coredog-system/daemonsets/coredog-watcher",
    "/apis/apps/v1/namespaces/coredog-system/deployments/coredog-webhook",
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
];

#[tokio::test]
async fn install_applies_every_object_server_side_in_order() {
    let (client, server) = api_server(|request| match request.method.as_str() {
        "GET" => not_found("secrets \"coredog-storage-credentials\""),
        _ => echo_apply(request),
    });
    let args = install_args(&["--bucket", "dumps", "--region", "eu-west-1"]);
    let no_env = |_: &str| None;
    let mut captured = Captured::default();
    install(Some(&client), &args, &no_env, &mut captured.console())
        .await
        .unwrap();
    drop(client);
    let log = server.await.unwrap();

    assert_eq!(
        log[..4].iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            // An upgrade keeps what the flags do not name.
            "GET /api/v1/namespaces/coredog-system/secrets/coredog-config",
            "GET /apis/apps/v1/namespaces/coredog-system/daemonsets/coredog-watcher",
            "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
            "GET /api/v1/namespaces/coredog-system/secrets/coredog-storage-credentials",
        ]
    );
    let applies = &log[4..];
    assert_eq!(
        applies.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        APPLY_PATHS
    );
    let mut expected_console = Captured::default();
    let expected = manifests::build(
        &settings(&args, None, &no_env, &mut expected_console.console())
            .await
            .unwrap(),
    )
    .unwrap();
    for (request, manifest) in applies.iter().zip(&expected) {
        assert_eq!(request.method, "PATCH", "{}", request.path);
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{}",
            request.path
        );
        assert_eq!(
            request.query.get("fieldManager").map(String::as_str),
            Some("kubectl-coredog")
        );
        assert_eq!(request.query.get("force").map(String::as_str), Some("true"));
        assert!(!request.query.contains_key("dryRun"));
        assert_eq!(request.body, manifest.object, "{}", request.path);
    }
    let config = &applies[4].body;
    assert_eq!(config["kind"], "Secret");
    let webhook = &applies[16].body["webhooks"][0];
    assert!(
        webhook["clientConfig"].get("caBundle").is_none(),
        "the webhook owns caBundle"
    );
    let stdout = captured.stdout();
    assert!(
        stdout.starts_with("namespace/coredog-system serverside-applied\npoddisruptionbudget.policy/coredog-webhook serverside-applied\n"),
        "{stdout}"
    );
    assert!(stdout.contains("CoreDog is installed in namespace coredog-system."));
}

/// The configuration an upgrade with `flags` applies over `installed`, and what it said.
async fn config_after_upgrade(
    installed: &str,
    flags: &[&str],
    env: fn(&str) -> Option<String>,
) -> (Config, String) {
    let stored = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "coredog-config", "namespace": "coredog-system"},
        "data": {"config.yaml": k8s_openapi::ByteString(installed.as_bytes().to_vec())}
    });
    let (client, server) = api_server(move |request| match request.method.as_str() {
        "GET" if request.path.ends_with("/secrets/coredog-config") => ok(stored.clone()),
        "GET" => not_found("not installed"),
        _ => echo_apply(request),
    });
    let args = install_args(flags);
    let mut captured = Captured::default();
    install(Some(&client), &args, &env, &mut captured.console())
        .await
        .unwrap();
    drop(client);
    let log = server.await.unwrap();
    let applied = log
        .iter()
        .find(|r| r.path.ends_with("/secrets/coredog-config") && r.method == "PATCH")
        .unwrap();
    let decoded: k8s_openapi::ByteString =
        serde_json::from_value(applied.body["data"]["config.yaml"].clone()).unwrap();
    let config = Config::from_yaml(&String::from_utf8(decoded.0).unwrap()).unwrap();
    (config, captured.stderr())
}

/// Why an upgrade with `flags` over `installed` is refused, as printed.
async fn upgrade_refused(installed: &str, flags: &[&str]) -> String {
    let stored = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "coredog-config", "namespace": "coredog-system"},
        "data": {"config.yaml": k8s_openapi::ByteString(installed.as_bytes().to_vec())}
    });
    let (client, _server) = api_server(move |request| match request.method.as_str() {
        "GET" if request.path.ends_with("/secrets/coredog-config") => ok(stored.clone()),
        "GET" => not_found("not installed"),
        _ => echo_apply(request),
    });
    let no_env = |_: &str| None;
    let mut captured = Captured::default();
    let err = install(
        Some(&client),
        &install_args(flags),
        &no_env,
        &mut captured.console(),
    )
    .await
    .unwrap_err();
    kubectl_coredog::error::explain(&err).to_string()
}

/// `install --bucket NEW` on an install made from a config file moves the bucket and keeps
/// the rest: its notice channels, region and tuning. Another protocol drops what belonged to
/// the old store; a share keeps being one when only its store directory changes.
#[tokio::test]
async fn a_storage_flag_on_an_upgrade_changes_that_setting_only() {
    let installed = "StorageConfig:\n  S3Bucket: old\n  s3Region: us-east-1\n  S3Endpoint: https://s3.example\n  s3AccesskeyID: AKIDOLD\n  s3SecretAccessKey: old\n  StoreDir: dumps\n  DeleteLocalCorefile: false\nNoticeChannel:\n  - chan: slack\n    webhookurl: https://hooks.slack.com/services/T/B/X\n";
    let no_env = |_: &str| None;
    let (config, said) = config_after_upgrade(installed, &["--bucket", "moved"], no_env).await;
    assert_eq!(config.storage.bucket.as_deref(), Some("moved"));
    assert_eq!(config.storage.region.as_deref(), Some("us-east-1"));
    assert_eq!(config.storage.access_key_id.as_deref(), Some("AKIDOLD"));
    assert_eq!(config.storage.store_dir, "dumps");
    assert!(!config.storage.delete_local_corefile);
    assert_eq!(config.notice_channels.len(), 1);
    assert!(said.contains("is kept"), "{said}");

    let (config, _) = config_after_upgrade(
        installed,
        &["--protocol", "cos", "--region", "ap-nanjing"],
        no_env,
    )
    .await;
    assert_eq!(config.storage.protocol, coredog_core::config::Protocol::Cos);
    assert_eq!(config.storage.region.as_deref(), Some("ap-nanjing"));
    assert_eq!(config.storage.endpoint, None);
    assert_eq!(config.storage.access_key_id, None);
    assert_eq!(config.storage.bucket.as_deref(), Some("old"));
    assert_eq!(config.notice_channels.len(), 1);

    let share = "StorageConfig:\n  protocol: cfs\n  CFSMountPath: /mnt/cfs\n  StoreDir: dumps\n";
    let (config, _) = config_after_upgrade(share, &["--store-dir", "cores"], no_env).await;
    assert_eq!(config.storage.protocol, coredog_core::config::Protocol::Cfs);
    assert_eq!(config.storage.cfs_mount_path.as_deref(), Some("/mnt/cfs"));
    assert_eq!(config.storage.store_dir, "cores");

    // Moving to another kind of store needs to know where it is, and leaves the old keys.
    let refused = upgrade_refused(installed, &["--protocol", "oss"]).await;
    assert!(
        refused.contains("pass --region REGION or --endpoint URL"),
        "{refused}"
    );
    let (_, said) = config_after_upgrade(
        installed,
        &[
            "--protocol",
            "oss",
            "--endpoint",
            "oss-cn-hangzhou.aliyuncs.com",
        ],
        no_env,
    )
    .await;
    // No credentials Secret here: nothing to say of one.
    assert!(!said.contains("are removed"), "{said}");
    // A share has no region or endpoint.
    let refused = upgrade_refused(share, &["--region", "us-east-1"]).await;
    assert!(refused.contains("pass --bucket NAME"), "{refused}");

    // Keys in the environment, where the configuration names its own: said, not hidden.
    let env_keys = |name: &str| Some(format!("{name}-value"));
    let (_, said) = config_after_upgrade(installed, &["--bucket", "moved"], env_keys).await;
    assert!(said.contains("are not used"), "{said}");
}

#[tokio::test]
async fn an_upgrade_keeps_the_stored_config_and_credentials() {
    let config_text = "StorageConfig:\n  S3Bucket: kept\n  s3Region: us-east-1\n";
    let stored = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "x", "namespace": "coredog-system"},
        "data": {
            "config.yaml": "U3RvcmFnZUNvbmZpZzoKICBTM0J1Y2tldDoga2VwdAogIHMzUmVnaW9uOiB1cy1lYXN0LTEK",
            "AWS_ACCESS_KEY_ID": "YWs=",
            "AWS_SECRET_ACCESS_KEY": "c2s="
        }
    });
    let (client, server) = api_server(move |request| match request.method.as_str() {
        "GET" if request.path.contains("/secrets/") => ok(stored.clone()),
        "GET" => not_found("not installed"),
        _ => echo_apply(request),
    });
    let args = install_args(&["--image", "registry.local/coredog:1.2.3", "-o", "json"]);
    let no_env = |_: &str| None;
    let mut captured = Captured::default();
    install(Some(&client), &args, &no_env, &mut captured.console())
        .await
        .unwrap();
    drop(client);
    let log = server.await.unwrap();
    assert_eq!(
        log[..4].iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            "GET /api/v1/namespaces/coredog-system/secrets/coredog-config",
            "GET /apis/apps/v1/namespaces/coredog-system/daemonsets/coredog-watcher",
            "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
            "GET /api/v1/namespaces/coredog-system/secrets/coredog-storage-credentials",
        ]
    );
    let config = log
        .iter()
        .find(|r| r.path.ends_with("/secrets/coredog-config") && r.method == "PATCH")
        .unwrap();
    let decoded: k8s_openapi::ByteString =
        serde_json::from_value(config.body["data"]["config.yaml"].clone()).unwrap();
    assert_eq!(String::from_utf8(decoded.0).unwrap(), config_text);
    assert!(
        log.iter().any(
            |r| r.path.ends_with("/secrets/coredog-storage-credentials") && r.method == "PATCH"
        )
    );
    let daemon_set = log
        .iter()
        .find(|r| r.path.ends_with("/daemonsets/coredog-watcher") && r.method == "PATCH")
        .unwrap();
    assert_eq!(
        daemon_set.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/coredog:1.2.3"
    );
    assert_eq!(
        daemon_set.body["metadata"]["labels"]["app.kubernetes.io/version"],
        "1.2.3"
    );
    assert_eq!(
        captured.stderr(),
        "keeping the storage settings of Secret coredog-system/coredog-config\nkeeping the storage keys of Secret coredog-system/coredog-storage-credentials (to use the provider chain instead, delete it and install again)\n"
    );
    // -o json prints what the API server stored, without its bookkeeping.
    let printed: Value = serde_json::from_str(&captured.stdout()).unwrap();
    assert_eq!(printed["kind"], "List");
    assert_eq!(printed["items"].as_array().unwrap().len(), 18);
    assert_eq!(printed["items"][0]["metadata"]["uid"], "0000");
    assert!(
        printed["items"][0]["metadata"]
            .get("managedFields")
            .is_none()
    );
}

#[tokio::test]
async fn an_upgrade_keeps_the_nfs_export_the_watchers_mount() {
    let config_text = "StorageConfig:\n  protocol: cfs\n  CFSMountPath: /mnt/cfs\n";
    let encoded = serde_json::to_value(k8s_openapi::ByteString(config_text.into())).unwrap();
    let stored = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "coredog-config", "namespace": "coredog-system"},
        "data": {"config.yaml": encoded}
    });
    let running = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "coredog-watcher", "namespace": "coredog-system"},
        "spec": {"selector": {}, "template": {"spec": {
            "containers": [],
            "volumes": [{"name": "cfs", "nfs": {"server": "10.0.0.9", "path": "/coredumps"}}]
        }}}
    });
    let (client, server) = api_server(move |request| match request.method.as_str() {
        "GET" if request.path.ends_with("/secrets/coredog-config") => ok(stored.clone()),
        "GET" if request.path.ends_with("/daemonsets/coredog-watcher") => ok(running.clone()),
        "GET" => not_found("secrets \"coredog-storage-credentials\""),
        _ => echo_apply(request),
    });
    let args = install_args(&[]);
    let no_env = |_: &str| None;
    let mut captured = Captured::default();
    install(Some(&client), &args, &no_env, &mut captured.console())
        .await
        .unwrap();
    drop(client);
    let log = server.await.unwrap();
    let applied = log
        .iter()
        .find(|r| r.path.ends_with("/daemonsets/coredog-watcher") && r.method == "PATCH")
        .unwrap();
    let volumes = applied.body["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes
            .contains(&json!({"name": "cfs", "nfs": {"server": "10.0.0.9", "path": "/coredumps"}})),
        "{volumes:?}"
    );
    assert!(
        captured
            .stderr()
            .contains("keeping the NFS export 10.0.0.9:/coredumps the watchers mount"),
        "{}",
        captured.stderr()
    );
}

/// The settings of a client-side install with `args` and no environment.
async fn settings_of(args: &[&str]) -> anyhow::Result<manifests::Settings> {
    let mut console = Captured::default();
    settings(
        &install_args(args),
        None,
        &|_: &str| None,
        &mut console.console(),
    )
    .await
}

/// The objects an earlier install applied with these flags, as the API server returns them.
async fn installed_with(args: &[&str]) -> Vec<Value> {
    manifests::build(&settings_of(args).await.unwrap())
        .unwrap()
        .into_iter()
        .map(|manifest| manifest.object)
        .collect()
}

/// Installs with `args` over the install `running` (objects by kind); the log and stderr.
async fn upgrade(running: Vec<Value>, args: &[&str]) -> (Vec<Recorded>, String) {
    let (client, server) = api_server(move |request| {
        let kind = if request.path.ends_with("/daemonsets/coredog-watcher") {
            "DaemonSet"
        } else if request.path.ends_with("/configmaps/coredog-storage-ca") {
            "ConfigMap"
        } else if request
            .path
            .ends_with("/mutatingwebhookconfigurations/coredog-webhook")
        {
            "MutatingWebhookConfiguration"
        } else {
            ""
        };
        match request.method.as_str() {
            "GET" => running
                .iter()
                .find(|object| object["kind"] == kind)
                .map_or_else(|| not_found("not there"), |object| ok(object.clone())),
            _ => echo_apply(request),
        }
    });
    let mut captured = Captured::default();
    install(
        Some(&client),
        &install_args(args),
        &|_: &str| None,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    (server.await.unwrap(), captured.stderr())
}

fn applied<'a>(log: &'a [Recorded], path_end: &str) -> &'a Value {
    &log.iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with(path_end))
        .unwrap()
        .body
}

/// What the applied objects say of the dump directory, node setup and failure policy.
fn choices(log: &[Recorded]) -> (Value, Value, Value, Value) {
    let watcher = &applied(log, "/daemonsets/coredog-watcher")["spec"]["template"]["spec"];
    let host_path = watcher["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|volume| volume["name"] == "corefile")
        .unwrap()["hostPath"]["path"]
        .clone();
    let args = watcher["containers"][0]["args"].as_array().unwrap();
    let core_pattern = args
        .iter()
        .position(|arg| arg == "--core-pattern")
        .map_or(Value::Null, |at| args[at + 1].clone());
    let webhook_args = applied(log, "/deployments/coredog-webhook")["spec"]["template"]["spec"]
        ["containers"][0]["args"]
        .as_array()
        .unwrap()
        .clone();
    let webhook_host_dir = webhook_args
        .iter()
        .position(|arg| arg == "--host-dir")
        .map(|at| webhook_args[at + 1].clone())
        .unwrap();
    assert_eq!(webhook_host_dir, host_path);
    let policy = applied(log, "/mutatingwebhookconfigurations/coredog-webhook")["webhooks"][0]
        ["failurePolicy"]
        .clone();
    let privileged = watcher["containers"][0]["securityContext"]["privileged"].clone();
    (host_path, core_pattern, privileged, policy)
}

#[tokio::test]
async fn an_upgrade_keeps_the_dump_directory_node_setup_and_failure_policy() {
    let running = installed_with(&[
        "--bucket",
        "dumps",
        "--host-dir",
        "/srv/dumps",
        "--node-setup",
        "--core-pattern",
        "/corefile/core.%p",
        "--webhook-failure-policy",
        "Fail",
    ])
    .await;

    let (log, stderr) = upgrade(running.clone(), &["--bucket", "dumps"]).await;
    assert_eq!(
        choices(&log),
        (
            json!("/srv/dumps"),
            json!("/corefile/core.%p"),
            json!(true),
            json!("Fail")
        )
    );
    assert_eq!(
        stderr,
        "keeping the dump directory /srv/dumps on the nodes (--host-dir changes it)\n\
         keeping the node setup: the watchers set kernel.core_pattern to /corefile/core.%p (--node-setup=false turns it off)\n\
         keeping the webhook's failure policy Fail (--webhook-failure-policy changes it)\n"
    );

    // A new pattern alone is enough while node setup is on; --node-setup alone keeps it.
    let (log, _) = upgrade(
        running.clone(),
        &["--bucket", "dumps", "--core-pattern", "/corefile/%e.%p"],
    )
    .await;
    assert_eq!(choices(&log).1, json!("/corefile/%e.%p"));
    let (log, stderr) = upgrade(running.clone(), &["--bucket", "dumps", "--node-setup"]).await;
    assert_eq!(choices(&log).1, json!("/corefile/core.%p"));
    assert!(
        stderr.contains(
            "keeping kernel.core_pattern /corefile/core.%p (--core-pattern changes it)\n"
        ),
        "{stderr}"
    );

    // Flags change each choice.
    let (log, stderr) = upgrade(
        running,
        &[
            "--bucket",
            "dumps",
            "--host-dir",
            "/data/coredog-system/dumps",
            "--node-setup=false",
            "--webhook-failure-policy",
            "Ignore",
        ],
    )
    .await;
    assert_eq!(
        choices(&log),
        (
            json!("/data/coredog-system/dumps"),
            Value::Null,
            json!(false),
            json!("Ignore")
        )
    );
    assert_eq!(
        stderr,
        "the watchers move from /srv/dumps to /data/coredog-system/dumps: cores still in /srv/dumps on the nodes are no longer shipped\n\
         node setup off: each watcher puts its node's own kernel.core_pattern back as it is replaced\n"
    );
}

#[tokio::test]
async fn a_first_install_takes_the_defaults() {
    let (log, stderr) = upgrade(Vec::new(), &["--bucket", "dumps"]).await;
    assert_eq!(
        choices(&log),
        (
            json!("/data/coredog-system/dumps"),
            Value::Null,
            json!(false),
            json!("Ignore")
        )
    );
    assert_eq!(stderr, "");
    let (log, _) = upgrade(Vec::new(), &["--bucket", "dumps", "--node-setup"]).await;
    assert_eq!(choices(&log).1, json!("/corefile/core.%e.%p.%h.%t"));
}

/// The example's bucket is anyone's to own: refused here, rather than by every watcher.
#[tokio::test]
async fn the_examples_bucket_is_refused() {
    let err = settings_of(&["--bucket", "my-bucket-1234567890"])
        .await
        .unwrap_err();
    let explained = kubectl_coredog::error::explain(&err).to_string();
    assert!(explained.contains("which anyone may own"), "{explained}");
}

#[tokio::test]
async fn a_core_pattern_without_node_setup_is_refused() {
    for args in [
        &["--bucket", "dumps", "--core-pattern", "/corefile/core.%p"][..],
        &[
            "--bucket",
            "dumps",
            "--node-setup=false",
            "--core-pattern",
            "/corefile/core.%p",
        ],
    ] {
        let err = settings_of(args).await.unwrap_err();
        assert!(
            kubectl_coredog::error::explain(&err)
                .to_string()
                .contains("--core-pattern is what node setup writes"),
            "{err:#}"
        );
    }
}

#[tokio::test]
async fn a_refused_apply_is_explained() {
    let (client, server) = api_server(|request| match request.method.as_str() {
        "GET" => not_found("secrets"),
        _ => status(
            403,
            "Forbidden",
            "namespaces \"coredog-system\" is forbidden: User \"dev\" cannot patch resource \"namespaces\"",
        ),
    });
    let args = install_args(&["--bucket", "dumps", "--dry-run=server"]);
    let mut captured = Captured::default();
    let err = install(
        Some(&client),
        &args,
        &|_: &str| None,
        &mut captured.console(),
    )
    .await
    .unwrap_err();
    drop(client);
    let log = server.await.unwrap();
    let first_apply = log.iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(first_apply.path, "/api/v1/namespaces/coredog-system");
    assert_eq!(
        first_apply.query.get("dryRun").map(String::as_str),
        Some("All")
    );
    assert_eq!(
        kubectl_coredog::error::explain(&err).to_string(),
        "error: cannot apply namespace/coredog-system: namespaces \"coredog-system\" is forbidden: User \"dev\" cannot patch resource \"namespaces\"\nhint: installing CoreDog needs cluster-admin rights (it creates cluster roles and a webhook)"
    );
}

#[tokio::test]
async fn uninstall_deletes_everything_webhook_configuration_first() {
    let (client, server) = api_server(|request| {
        if request.path.ends_with("/coredog-storage-credentials") {
            not_found("secrets \"coredog-storage-credentials\"")
        } else {
            status(200, "", "")
        }
    });
    let mut captured = Captured::default();
    uninstall(&client, &uninstall_args(&[]), &mut captured.console())
        .await
        .unwrap();
    drop(client);
    let log = server.await.unwrap();
    assert_eq!(
        log.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            "DELETE /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook",
            "DELETE /apis/apps/v1/namespaces/coredog-system/deployments/coredog-webhook",
            "DELETE /apis/apps/v1/namespaces/coredog-system/daemonsets/coredog-watcher",
            "DELETE /api/v1/namespaces/coredog-system/services/coredog-webhook",
            "DELETE /apis/policy/v1/namespaces/coredog-system/poddisruptionbudgets/coredog-webhook",
            "DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/coredog-system/rolebindings/coredog-webhook",
            "DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/coredog-system/rolebindings/coredog-watcher",
            "DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/coredog-system/roles/coredog-webhook",
            "DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/coredog-system/roles/coredog-watcher",
            "DELETE /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/coredog-webhook",
            "DELETE /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/coredog-watcher",
            "DELETE /apis/rbac.authorization.k8s.io/v1/clusterroles/coredog-webhook",
            "DELETE /apis/rbac.authorization.k8s.io/v1/clusterroles/coredog-watcher",
            "DELETE /api/v1/namespaces/coredog-system/secrets/coredog-webhook-tls",
            "DELETE /api/v1/namespaces/coredog-system/secrets/coredog-storage-credentials",
            "DELETE /api/v1/namespaces/coredog-system/secrets/coredog-config",
            "DELETE /api/v1/namespaces/coredog-system/configmaps/coredog-storage-ca",
            "DELETE /api/v1/namespaces/coredog-system/serviceaccounts/coredog-webhook",
            "DELETE /api/v1/namespaces/coredog-system/serviceaccounts/coredog-watcher",
            "DELETE /api/v1/namespaces/coredog-system",
        ]
    );
    assert_eq!(log[0].body["propagationPolicy"], "Background");
    let stdout = captured.stdout();
    assert!(stdout.starts_with(
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/coredog-webhook deleted\n"
    ));
    assert!(stdout.contains("secret/coredog-webhook-tls deleted\n"));
    assert!(!stdout.contains("coredog-storage-credentials"), "{stdout}");
    assert!(stdout.ends_with("namespace/coredog-system deleted\n"));
}

#[tokio::test]
async fn uninstall_dry_runs() {
    let (client, server) = api_server(|request| match request.method.as_str() {
        "GET" if request.path.ends_with("/coredog-webhook-tls") => not_found("secrets"),
        "GET" => ok(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})),
        _ => status(200, "", ""),
    });
    let mut captured = Captured::default();
    uninstall(
        &client,
        &uninstall_args(&["--dry-run", "--keep-namespace"]),
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    assert!(
        log.iter().all(|r| r.method == "GET"),
        "a client dry run deletes nothing"
    );
    assert_eq!(log.len(), 19);
    let stdout = captured.stdout();
    assert!(stdout.contains("deployment.apps/coredog-webhook deleted (dry run)\n"));
    assert!(!stdout.contains("coredog-webhook-tls"));

    let (client, server) = api_server(|_| not_found("anything"));
    let mut captured = Captured::default();
    uninstall(
        &client,
        &uninstall_args(&["--dry-run=server"]),
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    let log = server.await.unwrap();
    // kube sends a delete's dry run in its DeleteOptions body.
    assert!(
        log.iter()
            .all(|r| r.method == "DELETE" && r.body["dryRun"] == json!(["All"])),
        "{log:?}"
    );
    assert_eq!(
        captured.stdout(),
        "CoreDog is not installed: nothing to delete\n"
    );
}

#[tokio::test]
async fn wait_reports_readiness_and_times_out_with_a_hint() {
    let rollout = |ready: i32| {
        move |request: &Recorded| {
            if request.path.ends_with("/deployments/coredog-webhook") {
                ok(json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "coredog-webhook", "generation": 1},
                    "spec": {"replicas": 2, "selector": {}, "template": {}},
                    "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": ready}
                }))
            } else {
                ok(json!({
                    "apiVersion": "apps/v1", "kind": "DaemonSet",
                    "metadata": {"name": "coredog-watcher", "generation": 1},
                    "spec": {"selector": {}, "template": {}},
                    "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                               "numberMisscheduled": 0, "numberReady": 3, "updatedNumberScheduled": 3}
                }))
            }
        }
    };
    let (client, server) = api_server(rollout(2));
    let mut captured = Captured::default();
    kubectl_coredog::install::wait::wait_ready(
        &client,
        std::time::Duration::from_secs(60),
        false,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    assert_eq!(
        server
            .await
            .unwrap()
            .iter()
            .map(Recorded::line)
            .collect::<Vec<_>>(),
        [
            "GET /apis/apps/v1/namespaces/coredog-system/deployments/coredog-webhook",
            "GET /apis/apps/v1/namespaces/coredog-system/daemonsets/coredog-watcher",
        ]
    );
    assert_eq!(
        captured.stdout(),
        "ready: webhook 2/2 replicas, watcher on 3/3 nodes\n"
    );

    // With `-o yaml`, stdout is the objects' alone.
    let (client, _server) = api_server(rollout(2));
    let mut captured = Captured::default();
    kubectl_coredog::install::wait::wait_ready(
        &client,
        std::time::Duration::from_secs(60),
        true,
        &mut captured.console(),
    )
    .await
    .unwrap();
    assert_eq!(captured.stdout(), "");
    assert_eq!(
        captured.stderr(),
        "ready: webhook 2/2 replicas, watcher on 3/3 nodes\n"
    );

    let (client, server) = api_server(rollout(1));
    let mut captured = Captured::default();
    let err = kubectl_coredog::install::wait::wait_ready(
        &client,
        std::time::Duration::ZERO,
        false,
        &mut captured.console(),
    )
    .await
    .unwrap_err();
    drop(client);
    server.await.unwrap();
    assert_eq!(
        kubectl_coredog::error::explain(&err).to_string(),
        "error: CoreDog is not ready after 0s: webhook 1/2 replicas, watcher on 3/3 nodes\nhint: `kubectl coredog doctor` says why; `kubectl -n coredog-system get pods` shows the pods"
    );
}

/// An install right after an uninstall meets the namespace still being deleted: a 403 that
/// no rights would mend, and the hint says to wait instead.
#[tokio::test]
async fn an_install_into_a_namespace_being_deleted_says_to_wait() {
    let (client, _server) = api_server(|request| match request.method.as_str() {
        "GET" => not_found("not installed"),
        _ if request
            .path
            .ends_with("/poddisruptionbudgets/coredog-webhook") =>
        {
            status(
                403,
                "Forbidden",
                "poddisruptionbudgets.policy \"coredog-webhook\" is forbidden: unable to create new content in namespace coredog-system because it is being terminated",
            )
        }
        _ => echo_apply(request),
    });
    let args = install_args(&["--bucket", "dumps"]);
    let no_env = |_: &str| None;
    let mut captured = Captured::default();
    let err = install(Some(&client), &args, &no_env, &mut captured.console())
        .await
        .unwrap_err();
    let user = err
        .downcast_ref::<kubectl_coredog::error::UserError>()
        .unwrap();
    let hint = user.hint.as_deref().unwrap();
    assert!(
        hint.contains("kubectl wait --for=delete namespace/coredog-system"),
        "{hint}"
    );
    assert!(!hint.contains("cluster-admin"), "{hint}");
}

/// An object the API server refuses as invalid: its own message says why, and no hint about
/// rights or reachability leads elsewhere.
#[tokio::test]
async fn an_invalid_object_is_left_to_the_api_servers_message() {
    let (client, _server) = api_server(|request| match request.method.as_str() {
        "GET" => not_found("not installed"),
        _ if request
            .path
            .ends_with("/poddisruptionbudgets/coredog-webhook") =>
        {
            status(
                422,
                "Invalid",
                "PodDisruptionBudget.policy \"coredog-webhook\" is invalid: spec.minAvailable: Invalid value",
            )
        }
        _ => echo_apply(request),
    });
    let no_env = |_: &str| None;
    let mut captured = Captured::default();
    let err = install(
        Some(&client),
        &install_args(&["--bucket", "dumps"]),
        &no_env,
        &mut captured.console(),
    )
    .await
    .unwrap_err();
    let explained = kubectl_coredog::error::explain(&err);
    assert!(explained.hint.is_none(), "{explained}");
    assert!(
        explained
            .to_string()
            .contains("spec.minAvailable: Invalid value"),
        "{explained}"
    );
}

/// Moving to another kind of store, by flags or by a configuration file: the old store's keys
/// are not given to the watchers, and their Secret, which `list` and `fetch` would read, is
/// removed once the rest is applied.
#[tokio::test]
async fn another_kind_of_store_removes_the_old_keys() {
    let dir = tempfile::tempdir().unwrap();
    let new_config = dir.path().join("config.yaml");
    std::fs::write(
        &new_config,
        "StorageConfig:\n  protocol: oss\n  S3Bucket: new\n  S3Endpoint: oss-cn-hangzhou.aliyuncs.com\n",
    )
    .unwrap();
    let by_flags = ["--protocol", "oss", "--region", "oss-cn-hangzhou"].map(String::from);
    let by_file = ["--config".to_owned(), new_config.display().to_string()];
    for flags in [&by_flags[..], &by_file[..]] {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let (log, said) = upgrade_with_stored_keys(&flags).await;
        let daemon_set = log
            .iter()
            .find(|r| r.path.ends_with("/daemonsets/coredog-watcher") && r.method == "PATCH")
            .unwrap();
        let env = daemon_set.body["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
        assert!(!env.contains("AWS_ACCESS_KEY_ID"), "{flags:?}: {env}");
        assert!(
            log.iter().any(|r| r.method == "DELETE"
                && r.path
                    == "/api/v1/namespaces/coredog-system/secrets/coredog-storage-credentials"),
            "{flags:?}: {:?}",
            log.iter().map(Recorded::line).collect::<Vec<_>>()
        );
        assert!(said.contains("are removed"), "{flags:?}: {said}");
    }

    // The same kind of store from a file keeps the keys.
    std::fs::write(
        &new_config,
        "StorageConfig:\n  S3Bucket: new\n  s3Region: eu-west-1\n",
    )
    .unwrap();
    let (log, said) =
        upgrade_with_stored_keys(&["--config", &new_config.display().to_string()]).await;
    assert!(!log.iter().any(|r| r.method == "DELETE"), "{said}");
    assert!(said.contains("keeping the storage keys"), "{said}");
}

/// An install with `flags` over an S3 install whose keys are in the credentials Secret: the
/// requests it made and what it said.
async fn upgrade_with_stored_keys(flags: &[&str]) -> (Vec<Recorded>, String) {
    let installed = "StorageConfig:\n  S3Bucket: old\n  s3Region: us-east-1\n";
    let config = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "coredog-config", "namespace": "coredog-system"},
        "data": {"config.yaml": k8s_openapi::ByteString(installed.as_bytes().to_vec())}
    });
    let keys = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "coredog-storage-credentials", "namespace": "coredog-system"},
        "data": {"AWS_ACCESS_KEY_ID": "YWs=", "AWS_SECRET_ACCESS_KEY": "c2s="}
    });
    let (client, server) = api_server(move |request| match request.method.as_str() {
        "GET" if request.path.ends_with("/secrets/coredog-config") => ok(config.clone()),
        "GET"
            if request
                .path
                .ends_with("/secrets/coredog-storage-credentials") =>
        {
            ok(keys.clone())
        }
        "GET" => not_found("not installed"),
        "DELETE" => ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        _ => echo_apply(request),
    });
    let no_env = |_: &str| None;
    let mut captured = Captured::default();
    install(
        Some(&client),
        &install_args(flags),
        &no_env,
        &mut captured.console(),
    )
    .await
    .unwrap();
    drop(client);
    (server.await.unwrap(), captured.stderr())
}

/// A PEM file of one CA certificate, in a directory that goes with it.
fn ca_file() -> (tempfile::TempDir, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &pem).unwrap();
    (dir, path.display().to_string(), pem)
}

/// The watcher container's SSL_CERT_FILE and the paths its volumes are mounted at.
fn trust_of(watcher: &Value) -> (Value, Vec<String>) {
    let container = &watcher["spec"]["template"]["spec"]["containers"][0];
    let cert_file = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|env| env["name"] == "SSL_CERT_FILE")
        .map_or(Value::Null, |env| env["value"].clone());
    let mounts = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mount| mount["mountPath"].as_str().unwrap().to_owned())
        .collect();
    (cert_file, mounts)
}

#[tokio::test]
async fn the_storage_cas_are_given_to_the_watchers_kept_on_upgrades_and_removed_on_request() {
    let (_dir, path, pem) = ca_file();
    let running = installed_with(&["--bucket", "dumps", "--storage-ca", &path]).await;
    let config_map = running
        .iter()
        .find(|object| object["kind"] == "ConfigMap")
        .unwrap();
    assert_eq!(config_map["metadata"]["name"], "coredog-storage-ca");
    assert_eq!(config_map["data"]["ca.crt"], pem.as_str());
    let watcher = running
        .iter()
        .find(|object| object["kind"] == "DaemonSet")
        .unwrap();
    let (cert_file, mounts) = trust_of(watcher);
    assert_eq!(cert_file, "/etc/coredog/storage-ca/ca.crt");
    assert!(
        mounts.contains(&"/etc/coredog/storage-ca".to_owned()),
        "{mounts:?}"
    );

    // An upgrade without the flag applies them again, as they are.
    let (log, stderr) = upgrade(running.clone(), &["--bucket", "dumps"]).await;
    assert!(
        stderr.contains("keeping the storage CAs of ConfigMap coredog-system/coredog-storage-ca"),
        "{stderr}"
    );
    assert_eq!(
        applied(&log, "/configmaps/coredog-storage-ca")["data"]["ca.crt"],
        pem.as_str()
    );
    let (cert_file, _) = trust_of(applied(&log, "/daemonsets/coredog-watcher"));
    assert_eq!(cert_file, "/etc/coredog/storage-ca/ca.crt");

    // An empty --storage-ca= takes them away.
    let (log, _) = upgrade(running, &["--bucket", "dumps", "--storage-ca="]).await;
    let (cert_file, mounts) = trust_of(applied(&log, "/daemonsets/coredog-watcher"));
    assert_eq!(cert_file, Value::Null);
    assert!(
        !mounts.contains(&"/etc/coredog/storage-ca".to_owned()),
        "{mounts:?}"
    );
    assert!(
        !log.iter()
            .any(|r| r.method == "PATCH" && r.path.ends_with("/configmaps/coredog-storage-ca"))
    );
    assert!(
        log.iter().any(|r| r.method == "DELETE"
            && r.path == "/api/v1/namespaces/coredog-system/configmaps/coredog-storage-ca"),
        "{:?}",
        log.iter().map(Recorded::line).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_storage_ca_file_holds_certificates_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let (_ca_dir, _, ca_pem) = ca_file();
    for (name, text, expected) in [
        ("empty.pem", String::new(), "holds no certificate"),
        (
            "with-key.pem",
            format!("{ca_pem}{}", key.serialize_pem()),
            "holds a PRIVATE KEY, where only certificates belong",
        ),
        (
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
                .to_owned(),
            "certificate 1 does not parse",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let err = settings_of(&["--bucket", "dumps", "--storage-ca", path.to_str().unwrap()])
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains(expected), "{name}: {err:#}");
    }
}
