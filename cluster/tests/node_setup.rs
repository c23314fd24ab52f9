//! Node setup on temporary files standing in for `/proc/sys/kernel/core_pattern` (the real one
//! is never touched), and the uninstall-or-restart decision against a mock API server.

use std::sync::{Arc, Mutex};

use coredog::node_setup::{
    self, Applied, NodeFiles, NodeSetupError, PREVIOUS_PATTERN_FILE, Restored,
};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

const DESIRED: &str = "/corefile/core.%e.%p.%h.%t";
const ORIGINAL: &str = "|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h";
const DS_PATH: &str = "/apis/apps/v1/namespaces/coredog-system/daemonsets/coredog-watcher";

struct Node {
    _dir: tempfile::TempDir,
    files: NodeFiles,
}

/// A node whose kernel pattern is `pattern`, written as procfs shows it (with a newline).
fn node(pattern: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let core_pattern = dir.path().join("core_pattern");
    std::fs::write(&core_pattern, format!("{pattern}\n")).unwrap();
    let files = NodeFiles {
        core_pattern,
        state_dir: dir.path().join("state"),
    };
    Node { _dir: dir, files }
}

fn kernel(node: &Node) -> String {
    node_setup::read_core_pattern(&node.files.core_pattern).unwrap()
}

#[test]
fn apply_saves_the_original_and_sets_the_pattern() {
    let node = node(ORIGINAL);
    let applied = node_setup::apply(&node.files, DESIRED).unwrap();
    assert_eq!(
        applied,
        Applied {
            previous: Some(ORIGINAL.to_owned()),
            current: DESIRED.to_owned(),
            changed: true,
        }
    );
    assert_eq!(kernel(&node), DESIRED);
    assert_eq!(node.files.remembered().unwrap().as_deref(), Some(ORIGINAL));
    // Only the state file is left in the state directory: no temporary file.
    let names: Vec<_> = std::fs::read_dir(&node.files.state_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [PREVIOUS_PATTERN_FILE]);
}

#[test]
fn a_restart_keeps_the_original_previous_pattern() {
    let node = node(ORIGINAL);
    node_setup::apply(&node.files, DESIRED).unwrap();
    // The watcher restarts: the kernel already has our pattern.
    let again = node_setup::apply(&node.files, DESIRED).unwrap();
    assert_eq!(
        again,
        Applied {
            previous: Some(ORIGINAL.to_owned()),
            current: DESIRED.to_owned(),
            changed: false,
        }
    );
    // The chart's pattern changes between releases: the original is still the node's own.
    let next = "/corefile/core.%e.%p";
    let changed = node_setup::apply(&node.files, next).unwrap();
    assert_eq!(changed.previous.as_deref(), Some(ORIGINAL));
    assert!(changed.changed);
    assert_eq!(kernel(&node), next);
    assert_eq!(node.files.remembered().unwrap().as_deref(), Some(ORIGINAL));
}

#[test]
fn a_node_rebooted_back_to_its_original_gets_the_pattern_again() {
    let node = node(ORIGINAL);
    node_setup::apply(&node.files, DESIRED).unwrap();
    std::fs::write(&node.files.core_pattern, format!("{ORIGINAL}\n")).unwrap();
    let applied = node_setup::apply(&node.files, DESIRED).unwrap();
    assert!(applied.changed);
    assert_eq!(applied.previous.as_deref(), Some(ORIGINAL));
    assert_eq!(kernel(&node), DESIRED);
}

#[test]
fn a_pattern_already_in_place_is_left_alone_and_nothing_is_remembered() {
    let node = node(DESIRED);
    let applied = node_setup::apply(&node.files, DESIRED).unwrap();
    assert_eq!(
        applied,
        Applied {
            previous: None,
            current: DESIRED.to_owned(),
            changed: false,
        }
    );
    assert!(!node.files.previous_pattern_file().exists());
}

#[test]
fn invalid_patterns_are_refused_before_anything_is_written() {
    let long = format!("/corefile/{}", "c".repeat(118));
    assert_eq!(long.len(), 128);
    let cases = [
        ("|/bin/cat", "pipes"),
        ("core.%e.%p", "absolute"),
        ("corefile/core", "absolute"),
        ("", "absolute"),
        ("/corefile/", "names no file"),
        (long.as_str(), "127 bytes"),
        ("/corefile/core\n", "printable"),
        ("/corefile/core\t%p", "printable"),
        ("/corefile/cœur", "printable"),
    ];
    for (pattern, reason) in cases {
        let err = node_setup::validate_pattern(pattern).unwrap_err();
        assert!(
            matches!(err, NodeSetupError::InvalidPattern { .. }),
            "{pattern:?}"
        );
        assert!(err.to_string().contains(reason), "{pattern:?}: {err}");
        let node = node(ORIGINAL);
        assert!(node_setup::apply(&node.files, pattern).is_err());
        assert_eq!(kernel(&node), ORIGINAL);
        assert!(!node.files.previous_pattern_file().exists());
    }
    node_setup::validate_pattern(&long[..127]).unwrap();
    node_setup::validate_pattern("/data/dumps/core %e").unwrap();
}

#[test]
fn an_unreadable_core_pattern_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let files = NodeFiles {
        core_pattern: dir.path().join("missing"),
        state_dir: dir.path().join("state"),
    };
    assert!(matches!(
        node_setup::apply(&files, DESIRED),
        Err(NodeSetupError::Read { .. })
    ));
    assert_eq!(node_setup::read_core_pattern(&files.core_pattern), None);
}

/// A mock API server answering every request with `code` and `body`, recording the paths.
fn api_server(code: u16, body: Value) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            seen.lock()
                .unwrap()
                .push(format!("{} {}", request.method(), request.uri().path()));
            let response = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "coredog-system"), log)
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{reason} (test)"), "reason": reason, "code": code})
}

/// The watcher DaemonSet as the API server returns it; its watchers given `args`.
fn daemonset_with(deleting: bool, args: &[&str]) -> Value {
    let mut metadata = json!({"name": "coredog-watcher", "namespace": "coredog-system",
                              "uid": "ds-uid", "resourceVersion": "9"});
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-27T10:00:00Z");
        metadata["finalizers"] = json!(["foregroundDeletion"]);
    }
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": metadata,
    "spec": {"selector": {}, "template": {"spec": {"containers": [
        {"name": "watcher", "image": "coredog", "args": args}
    ]}}}})
}

/// Node setup's arguments, as the chart and `kubectl coredog install --node-setup` give them.
const NODE_SETUP_ARGS: [&str; 7] = [
    "watcher",
    "--core-pattern",
    DESIRED,
    "--state-dir",
    "/var/lib/coredog",
    "--daemonset",
    "coredog-watcher",
];

fn daemonset(deleting: bool) -> Value {
    daemonset_with(deleting, &NODE_SETUP_ARGS)
}

/// Sets the node up, then has the watcher stop with the API server answering `code`/`body`.
async fn stop_with(code: u16, body: Value) -> (Node, Restored, Vec<String>) {
    let node = node(ORIGINAL);
    node_setup::apply(&node.files, DESIRED).unwrap();
    let (client, log) = api_server(code, body);
    let restored = node_setup::restore_if_setup_ended(
        &client,
        "coredog-system",
        "coredog-watcher",
        &node.files,
    )
    .await
    .unwrap();
    let log = log.lock().unwrap().clone();
    (node, restored, log)
}

fn assert_restored(node: &Node, restored: &Restored) {
    assert_eq!(restored, &Restored::Restored(ORIGINAL.to_owned()));
    assert_eq!(kernel(node), ORIGINAL);
    assert!(!node.files.previous_pattern_file().exists());
}

fn assert_kept(node: &Node) {
    assert_eq!(kernel(node), DESIRED);
    assert_eq!(node.files.remembered().unwrap().as_deref(), Some(ORIGINAL));
}

#[tokio::test]
async fn a_deleted_daemonset_restores_the_original() {
    let (node, restored, log) = stop_with(404, status(404, "NotFound")).await;
    assert_eq!(log, [format!("GET {DS_PATH}")]);
    assert_restored(&node, &restored);
}

#[tokio::test]
async fn a_daemonset_being_deleted_restores_the_original() {
    let (node, restored, _) = stop_with(200, daemonset(true)).await;
    assert_restored(&node, &restored);
}

#[tokio::test]
async fn a_rolling_restart_keeps_the_pattern() {
    let (node, restored, log) = stop_with(200, daemonset(false)).await;
    assert_eq!(log, [format!("GET {DS_PATH}")]);
    assert_eq!(restored, Restored::KeptRestart);
    assert_kept(&node);
}

#[tokio::test]
async fn node_setup_turned_off_restores_the_original() {
    // Upgraded without node setup: the watchers replacing this one will not restore it.
    let (node, restored, log) = stop_with(200, daemonset_with(false, &["watcher"])).await;
    assert_eq!(log, [format!("GET {DS_PATH}")]);
    assert_restored(&node, &restored);
    // Given as one argument, the pattern is still set.
    let (node, restored, _) = stop_with(
        200,
        daemonset_with(false, &["watcher", &format!("--core-pattern={DESIRED}")]),
    )
    .await;
    assert_eq!(restored, Restored::KeptRestart);
    assert_kept(&node);
}

#[tokio::test]
async fn a_daemonset_without_its_pods_spec_decides_nothing() {
    let mut bare = daemonset(false);
    bare.as_object_mut().unwrap().remove("spec");
    let (node, restored, _) = stop_with(200, bare).await;
    assert!(matches!(restored, Restored::Undecided(_)), "{restored:?}");
    assert_kept(&node);
}

#[tokio::test]
async fn lost_access_during_uninstall_restores_the_original() {
    let (node, restored, _) = stop_with(403, status(403, "Forbidden")).await;
    assert_restored(&node, &restored);
    let (node, restored, _) = stop_with(401, status(401, "Unauthorized")).await;
    assert_restored(&node, &restored);
}

#[tokio::test]
async fn an_unclear_answer_keeps_the_pattern() {
    let (node, restored, _) = stop_with(500, status(500, "InternalError")).await;
    assert!(matches!(restored, Restored::Undecided(_)), "{restored:?}");
    assert_kept(&node);
    // A 404 that is not the API server's (a proxy's page) decides nothing either.
    let (node, restored, _) = stop_with(404, json!("404 page not found")).await;
    assert!(matches!(restored, Restored::Undecided(_)), "{restored:?}");
    assert_kept(&node);
}

#[tokio::test]
async fn nothing_remembered_means_nothing_to_restore_and_no_api_call() {
    let node = node(DESIRED);
    node_setup::apply(&node.files, DESIRED).unwrap();
    let (client, log) = api_server(404, status(404, "NotFound"));
    let restored = node_setup::restore_if_setup_ended(
        &client,
        "coredog-system",
        "coredog-watcher",
        &node.files,
    )
    .await
    .unwrap();
    assert_eq!(restored, Restored::NothingRemembered);
    assert!(log.lock().unwrap().is_empty());
    assert_eq!(kernel(&node), DESIRED);
}
