//! The watcher's link to the Kubernetes API: optional, and never in the way of shipping.
//!
//! - keeps the [`PodDirectory`] current from a watch on the pods of this node only
//!   (`spec.nodeName=<node>`), so records carry the pod's UID, host IP, image and labels;
//! - publishes a `CoreDumped` Warning event on the crashed pod, so `kubectl describe pod` shows
//!   the crash and where its core went;
//! - writes this node's [`NodeStatus`] into the annotation `coredog.io/node-status` of the
//!   watcher's own pod, for `kubectl coredog doctor`.
//!
//! Without API access (outside a cluster, no RBAC) every part degrades to a log line.

use std::collections::BTreeMap;

use coredog_core::node_status::{NODE_STATUS_ANNOTATION, NodeStatus};
use coredog_core::record::DumpRecord;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use tracing::{debug, info, warn};

use super::pods::{PodDirectory, PodEntry};

/// What the watcher knows about where it runs.
#[derive(Debug, Clone)]
pub struct Whereabouts {
    pub node: String,
    /// The watcher's own pod (from the downward API), for its status annotation.
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

/// A connected API client and what it is used for.
#[derive(Clone)]
pub struct KubeLink {
    client: kube::Client,
    whereabouts: Whereabouts,
    recorder: Recorder,
}

impl KubeLink {
    pub fn new(client: kube::Client, whereabouts: Whereabouts) -> Self {
        let reporter = Reporter {
            controller: "coredog-watcher".to_owned(),
            instance: whereabouts.pod_name.clone(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            whereabouts,
        }
    }

    /// Connects with the in-cluster (or kubeconfig) configuration; `None` when there is none.
    pub async fn connect(whereabouts: Whereabouts) -> Option<Self> {
        match kube::Client::try_default().await {
            Ok(client) => Some(Self::new(client, whereabouts)),
            Err(err) => {
                info!(error = %err, "no Kubernetes API access; records carry what the node knows");
                None
            }
        }
    }

    /// Keeps `directory` current until the process ends; restarts its watch on errors.
    pub async fn feed_pods(self, directory: PodDirectory) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.whereabouts.node));
        let mut pending: Vec<((String, String), PodEntry)> = Vec::new();
        let mut stream = watcher(pods, config).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => pending.clear(),
                Ok(watcher::Event::InitApply(pod)) => pending.extend(entry_of(&pod)),
                Ok(watcher::Event::InitDone) => {
                    directory.replace_all(std::mem::take(&mut pending));
                    debug!("pod directory synced");
                }
                Ok(watcher::Event::Apply(pod)) => {
                    if let Some(((namespace, name), entry)) = entry_of(&pod) {
                        directory.upsert(&namespace, &name, entry);
                    }
                    // The watch resumed where it stopped (a lost one starts over with a list).
                    directory.set_synced(true);
                }
                Ok(watcher::Event::Delete(pod)) => {
                    if let (Some(namespace), Some(name)) = (
                        pod.metadata.namespace.as_deref(),
                        pod.metadata.name.as_deref(),
                    ) {
                        directory.remove(namespace, name);
                    }
                    directory.set_synced(true);
                }
                Err(err) => {
                    // Pods started meanwhile are missing: their directories are not "gone".
                    directory.set_synced(false);
                    warn!(error = %err, "watching this node's pods failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            }
        }
    }

    /// Publishes `CoreDumped` on the crashed pod.
    pub async fn announce(&self, record: &DumpRecord) {
        let reference = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            namespace: Some(record.namespace.clone()),
            name: Some(record.pod.clone()),
            uid: record.pod_uid.clone(),
            field_path: Some(format!("spec.containers{{{}}}", record.container)),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "CoreDumped".to_owned(),
            note: Some(event_note(record)),
            action: "StoreCoreDump".to_owned(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &reference).await {
            warn!(error = %err, pod = %record.pod_ref(), "cannot publish the CoreDumped event");
        }
    }

    /// Writes `status` into the watcher pod's annotation.
    pub async fn report_status(&self, status: &NodeStatus) {
        let (Some(name), Some(namespace)) =
            (&self.whereabouts.pod_name, &self.whereabouts.pod_namespace)
        else {
            return;
        };
        let Ok(json) = serde_json::to_string(status) else {
            return;
        };
        let patch =
            serde_json::json!({ "metadata": { "annotations": { NODE_STATUS_ANNOTATION: json } } });
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        if let Err(err) = pods
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            warn!(error = %err, "cannot report this node's status on the watcher pod");
        }
    }
}

/// The message of the `CoreDumped` event.
pub fn event_note(record: &DumpRecord) -> String {
    let signal = record.signal_name.as_deref().unwrap_or("a signal");
    let pid = record
        .pid
        .map(|pid| format!(" (pid {pid})"))
        .unwrap_or_default();
    // Event notes are capped at 1 KiB by the API server.
    let mut note = format!(
        "{exe}{pid} in container {container} crashed with {signal}; core dump {id} stored at {key}",
        exe = record.exe,
        container = record.container,
        id = record.id,
        key = record.key,
    );
    // The executable's path is the crashed program's to choose: cut between characters.
    let mut end = note.len().min(1000);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note
}

/// The directory entry for a pod, keyed by namespace and name.
pub fn entry_of(pod: &Pod) -> Option<((String, String), PodEntry)> {
    let namespace = pod.metadata.namespace.clone()?;
    let name = pod.metadata.name.clone()?;
    let spec = pod.spec.as_ref();
    let images: BTreeMap<String, String> = spec
        .map(|spec| {
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .filter_map(|c| Some((c.name.clone(), c.image.clone()?)))
                .collect()
        })
        .unwrap_or_default();
    Some((
        (namespace, name),
        PodEntry {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            host_ip: pod
                .status
                .as_ref()
                .and_then(|status| status.host_ip.clone()),
            images,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            created: pod.metadata.creation_timestamp.as_ref().map(|time| time.0),
        },
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    pub(crate) fn record() -> DumpRecord {
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 1, "id": "0123456789abcdef",
            "key": "corefiles/shop/web-1/20261127T100012Z_app_server_42_0123456789abcdef.core.zst",
            "time": "2026-11-27T10:00:12Z", "uploadedAt": "2026-11-27T10:00:13Z",
            "namespace": "shop", "pod": "web-1", "container": "app", "podUid": "uid-1", "node": "node-1",
            "exe": "/usr/bin/server", "pid": 42, "signal": 11, "signalName": "SIGSEGV",
            "size": 10, "storedSize": 5, "sha256": "00", "compression": "zstd", "hostPath": "/corefile/x"
        }))
        .unwrap()
    }

    pub(crate) fn mock_link() -> (
        KubeLink,
        tower_test::mock::Handle<Request<Body>, Response<Body>>,
    ) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "coredog-system");
        let link = KubeLink::new(
            client,
            Whereabouts {
                node: "node-1".to_owned(),
                pod_name: Some("coredog-watcher-abcde".to_owned()),
                pod_namespace: Some("coredog-system".to_owned()),
            },
        );
        (link, handle)
    }

    pub(crate) async fn body_json(request: Request<Body>) -> serde_json::Value {
        let bytes = request.into_body().collect_bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_stored_dump_becomes_a_core_dumped_event_on_its_pod() {
        let (link, mut handle) = mock_link();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "POST");
            assert_eq!(
                request.uri().path(),
                "/apis/events.k8s.io/v1/namespaces/shop/events"
            );
            let body = body_json(request).await;
            assert_eq!(body["type"], "Warning");
            assert_eq!(body["reason"], "CoreDumped");
            assert_eq!(body["regarding"]["kind"], "Pod");
            assert_eq!(body["regarding"]["name"], "web-1");
            assert_eq!(body["regarding"]["uid"], "uid-1");
            assert_eq!(body["reportingController"], "coredog-watcher");
            let note = body["note"].as_str().unwrap();
            assert!(
                note.contains("SIGSEGV")
                    && note.contains("0123456789abcdef")
                    && note.contains("/usr/bin/server"),
                "{note}"
            );
            send.send_response(
                Response::builder()
                    .status(201)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        });
        link.announce(&record()).await;
        server.await.unwrap();
    }

    #[test]
    fn a_long_note_is_cut_between_characters() {
        let mut long = record();
        long.exe = format!("/{}", "é".repeat(600));
        let note = event_note(&long);
        assert!(note.len() <= 1000 && note.len() >= 998, "{}", note.len());
        assert!(note.starts_with("/éé"));
    }

    #[tokio::test]
    async fn the_node_status_is_written_to_the_watcher_pod() {
        let (link, mut handle) = mock_link();
        let status = NodeStatus {
            node: "node-1".into(),
            core_pattern: Some("/corefile/core.%e.%p.%h.%t".into()),
            previous_core_pattern: None,
            corefile_dir: "/corefile".into(),
            storage: "ok".into(),
            backlog_files: 0,
            backlog_bytes: 0,
            updated_at: "2026-11-27T10:00:00Z".parse().unwrap(),
        };
        let expected = status.clone();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "PATCH");
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/coredog-system/pods/coredog-watcher-abcde"
            );
            assert_eq!(
                request.headers()["content-type"],
                "application/merge-patch+json"
            );
            let body = body_json(request).await;
            let annotation = body["metadata"]["annotations"]["coredog.io/node-status"]
                .as_str()
                .unwrap();
            assert_eq!(
                serde_json::from_str::<NodeStatus>(annotation).unwrap(),
                expected
            );
            let pod = serde_json::json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "coredog-watcher-abcde" } });
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&pod).unwrap()))
                    .unwrap(),
            );
        });
        link.report_status(&status).await;
        server.await.unwrap();
    }

    #[test]
    fn pods_become_directory_entries() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web-1", "namespace": "shop", "uid": "u", "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "app", "image": "shop/web:1" }], "initContainers": [{ "name": "init", "image": "busybox" }] },
            "status": { "hostIP": "10.0.0.7" }
        }))
        .unwrap();
        let ((namespace, name), entry) = entry_of(&pod).unwrap();
        assert_eq!((namespace.as_str(), name.as_str()), ("shop", "web-1"));
        assert_eq!(entry.uid, "u");
        assert_eq!(entry.host_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(entry.images["app"], "shop/web:1");
        assert_eq!(entry.images["init"], "busybox");
        assert_eq!(entry.labels["app"], "web");
    }

    #[test]
    fn event_notes_are_bounded() {
        let mut long = record();
        long.exe = "x".repeat(5000);
        assert_eq!(event_note(&long).len(), 1000);
    }
}
