//! The webhook's certificate management against a small fake API server: a kube `Client` over
//! `tower_test::mock` that keeps one Secret and one MutatingWebhookConfiguration with real
//! create/update/patch semantics (AlreadyExists, resourceVersion conflicts, strategic merge by
//! webhook name) and records every request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use coredog::tls::ReloadingCert;
use coredog::webhook_certs::{self, CertSettings};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::sign::CertifiedKey;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const NS: &str = "coredog-system";
const SECRET_PATH: &str = "/api/v1/namespaces/coredog-system/secrets/coredog-webhook-tls";
const SECRETS_PATH: &str = "/api/v1/namespaces/coredog-system/secrets";
const MWC_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/coredog-webhook";
const MWC_UID: &str = "6b1f7a4e-0000-4000-8000-000000000001";

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Value,
}

impl Recorded {
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Default)]
struct State {
    secret: Option<Value>,
    mwc: Option<Value>,
    /// Installed just before the next write to the Secret is handled: another replica won.
    rival: Option<Value>,
    /// A Secret and a configuration installed just before the next caBundle patch is handled:
    /// another replica renewed in between.
    rival_renewal: Option<(Value, Value)>,
    log: Vec<Recorded>,
    version: u64,
}

impl State {
    fn next_version(&mut self) -> String {
        self.version += 1;
        format!("{}", 100 + self.version)
    }

    fn lines(&self) -> Vec<String> {
        self.log.iter().map(Recorded::line).collect()
    }
}

type Shared = Arc<Mutex<State>>;

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": reason, "reason": reason, "code": code}),
    )
}

fn answer(state: &mut State, request: &Recorded) -> (u16, Value) {
    let writes_secret = matches!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", SECRETS_PATH) | ("PUT", SECRET_PATH)
    );
    if writes_secret && let Some(rival) = state.rival.take() {
        state.secret = Some(rival);
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", SECRET_PATH) => match &state.secret {
            Some(secret) => (200, secret.clone()),
            None => status(404, "NotFound"),
        },
        ("POST", SECRETS_PATH) => {
            if state.secret.is_some() {
                return status(409, "AlreadyExists");
            }
            let mut secret = request.body.clone();
            secret["metadata"]["resourceVersion"] = json!(state.next_version());
            secret["metadata"]["uid"] = json!("secret-uid");
            state.secret = Some(secret.clone());
            (201, secret)
        }
        ("PUT", SECRET_PATH) => {
            let Some(current) = &state.secret else {
                return status(404, "NotFound");
            };
            if request.body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
            {
                return status(409, "Conflict");
            }
            let mut secret = request.body.clone();
            secret["metadata"]["resourceVersion"] = json!(state.next_version());
            state.secret = Some(secret.clone());
            (200, secret)
        }
        ("GET", MWC_PATH) => match &state.mwc {
            Some(mwc) => (200, mwc.clone()),
            None => status(404, "NotFound"),
        },
        ("PATCH", MWC_PATH) => {
            if let Some((secret, mwc)) = state.rival_renewal.take() {
                state.secret = Some(secret);
                state.mwc = Some(mwc);
            }
            let version = state.next_version();
            let Some(mwc) = state.mwc.as_mut() else {
                return status(404, "NotFound");
            };
            let precondition = &request.body["metadata"]["resourceVersion"];
            if !precondition.is_null() && *precondition != mwc["metadata"]["resourceVersion"] {
                return status(409, "Conflict");
            }
            mwc["metadata"]["resourceVersion"] = json!(version);
            for entry in request.body["webhooks"].as_array().unwrap() {
                let webhooks = mwc["webhooks"].as_array_mut().unwrap();
                let target = webhooks
                    .iter_mut()
                    .find(|webhook| webhook["name"] == entry["name"])
                    .unwrap();
                target["clientConfig"]["caBundle"] = entry["clientConfig"]["caBundle"].clone();
            }
            (200, mwc.clone())
        }
        _ => status(405, "MethodNotAllowed"),
    }
}

fn api_server(state: Shared) -> (kube::Client, JoinHandle<()>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let recorded = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|value| value.to_str().unwrap().to_owned()),
                body: if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                },
            };
            let (code, body) = {
                let mut state = state.lock().unwrap();
                let answer = answer(&mut state, &recorded);
                state.log.push(recorded);
                answer
            };
            let response = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (kube::Client::new(service, NS), server)
}

fn settings() -> CertSettings {
    CertSettings::new(
        "coredog-webhook-tls",
        "coredog-webhook",
        "coredog-webhook",
        NS,
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(value: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap())
        .unwrap()
}

fn mwc(ca_bundle: Option<&[u8]>) -> Value {
    let client_config = |name: &str| {
        let mut config = json!({"service": {"name": "coredog-webhook", "namespace": NS, "path": "/mutate", "port": 443}});
        if let Some(bundle) = ca_bundle {
            config["caBundle"] = json!(b64(bundle));
        }
        json!({"name": name, "clientConfig": config, "sideEffects": "None",
               "admissionReviewVersions": ["v1"]})
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "coredog-webhook", "uid": MWC_UID, "resourceVersion": "7"},
        "webhooks": [client_config("inject.coredog.io"), client_config("second.coredog.io")],
    })
}

struct Pem {
    cert: String,
    key: String,
    ca: String,
}

fn issued() -> Pem {
    let issued = coredog::certs::issue(
        &coredog::certs::service_dns_names("coredog-webhook", NS),
        365,
    )
    .unwrap();
    Pem {
        cert: issued.cert_pem,
        key: issued.key_pem,
        ca: issued.ca_pem,
    }
}

/// A pair valid from `since` ago for `lifetime` in all, as an older replica would have stored.
fn issued_between(since: Duration, lifetime: Duration) -> Pem {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - since;
    let not_after = not_before + lifetime;
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "coredog-webhook-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf =
        CertificateParams::new(coredog::certs::service_dns_names("coredog-webhook", NS)).unwrap();
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        ca: ca_cert.pem(),
    }
}

fn secret(pem: &Pem, resource_version: &str, owned: bool) -> Value {
    let mut secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "coredog-webhook-tls", "namespace": NS,
                     "resourceVersion": resource_version, "uid": "secret-uid",
                     "labels": {"app.kubernetes.io/name": "coredog", "app.kubernetes.io/component": "webhook"}},
        "data": {"tls.crt": b64(pem.cert.as_bytes()), "tls.key": b64(pem.key.as_bytes()),
                 "ca.crt": b64(pem.ca.as_bytes())},
    });
    if owned {
        secret["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "name": "coredog-webhook", "uid": MWC_UID}]);
    }
    secret
}

fn state(secret: Option<Value>, mwc: Value) -> Shared {
    Arc::new(Mutex::new(State {
        secret,
        mwc: Some(mwc),
        ..State::default()
    }))
}

fn der(pem: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem).unwrap()
}

/// The stored Secret's data, decoded.
fn stored(state: &Shared, key: &str) -> Vec<u8> {
    unb64(&state.lock().unwrap().secret.as_ref().unwrap()["data"][key])
}

/// What every entry of the configuration trusts now.
fn bundles(state: &Shared) -> Vec<Vec<u8>> {
    let state = state.lock().unwrap();
    state.mwc.as_ref().unwrap()["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|webhook| unb64(&webhook["clientConfig"]["caBundle"]))
        .collect()
}

/// The served certificate is the Secret's, and every caBundle is the Secret's CA.
fn assert_consistent(state: &Shared, key: &CertifiedKey) {
    assert_eq!(key.cert, vec![der(&stored(state, "tls.crt"))]);
    let ca = stored(state, "ca.crt");
    assert_eq!(bundles(state), vec![ca.clone(), ca]);
}

/// `request` patches both caBundles to `ca`, and only them, in the configuration as first read.
fn caps_patch(request: &Recorded, ca: &[u8]) {
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        request.body,
        json!({"metadata": {"resourceVersion": "7"}, "webhooks": [
            {"name": "inject.coredog.io", "clientConfig": {"caBundle": b64(ca)}},
            {"name": "second.coredog.io", "clientConfig": {"caBundle": b64(ca)}},
        ]})
    );
}

#[tokio::test]
async fn fresh_install_creates_the_secret_and_patches_the_ca_bundle() {
    let state = state(None, mwc(None));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    let log = state.lock().unwrap().log.clone();
    assert_eq!(
        log.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            format!("GET {MWC_PATH}"),
            format!("GET {SECRET_PATH}"),
            format!("POST {SECRETS_PATH}"),
            format!("PATCH {MWC_PATH}"),
        ]
    );
    let created = &log[2].body;
    assert_eq!(created["type"], "kubernetes.io/tls");
    assert_eq!(created["metadata"]["name"], "coredog-webhook-tls");
    assert_eq!(
        created["metadata"]["labels"],
        json!({"app.kubernetes.io/name": "coredog", "app.kubernetes.io/component": "webhook"})
    );
    assert_eq!(
        created["metadata"]["ownerReferences"],
        json!([{"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration", "name": "coredog-webhook", "uid": MWC_UID}])
    );
    let data = created["data"].as_object().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["ca.crt", "tls.crt", "tls.key"]
    );
    caps_patch(&log[3], &stored(&state, "ca.crt"));
    assert_consistent(&state, &key);
    // The certificate is for the Service's names.
    let cert = String::from_utf8(stored(&state, "tls.crt")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn a_valid_secret_and_ca_bundle_are_used_as_they_are() {
    let pem = issued();
    let state = state(Some(secret(&pem, "42", true)), mwc(Some(pem.ca.as_bytes())));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    assert_eq!(
        state.lock().unwrap().lines(),
        [format!("GET {MWC_PATH}"), format!("GET {SECRET_PATH}")]
    );
    assert_eq!(key.cert, vec![der(pem.cert.as_bytes())]);
    assert_consistent(&state, &key);
}

#[tokio::test]
async fn a_reset_ca_bundle_is_patched_again() {
    let pem = issued();
    let mut config = mwc(Some(pem.ca.as_bytes()));
    config["webhooks"][1]["clientConfig"]
        .as_object_mut()
        .unwrap()
        .remove("caBundle");
    let state = state(Some(secret(&pem, "42", true)), config);
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    let log = state.lock().unwrap().log.clone();
    assert_eq!(
        log.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            format!("GET {MWC_PATH}"),
            format!("GET {SECRET_PATH}"),
            format!("PATCH {MWC_PATH}"),
        ]
    );
    caps_patch(&log[2], pem.ca.as_bytes());
    assert_consistent(&state, &key);
}

#[tokio::test]
async fn a_lost_create_race_uses_the_winners_certificate() {
    let winner = issued();
    let state = state(None, mwc(None));
    state.lock().unwrap().rival = Some(secret(&winner, "55", true));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    let log = state.lock().unwrap().log.clone();
    assert_eq!(
        log.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            format!("GET {MWC_PATH}"),
            format!("GET {SECRET_PATH}"),
            format!("POST {SECRETS_PATH}"),
            format!("GET {SECRET_PATH}"),
            format!("PATCH {MWC_PATH}"),
        ]
    );
    // What we tried to store is not what is served or trusted.
    assert_ne!(unb64(&log[2].body["data"]["ca.crt"]), winner.ca.as_bytes());
    caps_patch(&log[4], winner.ca.as_bytes());
    assert_eq!(key.cert, vec![der(winner.cert.as_bytes())]);
    assert_consistent(&state, &key);
}

#[tokio::test]
async fn a_secret_near_expiry_is_renewed_with_its_resource_version() {
    // 250 of 365 days gone: less than a third left.
    let old = issued_between(
        Duration::from_secs(250 * 86_400),
        Duration::from_secs(365 * 86_400),
    );
    let state = state(Some(secret(&old, "42", true)), mwc(Some(old.ca.as_bytes())));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    let log = state.lock().unwrap().log.clone();
    assert_eq!(
        log.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            format!("GET {MWC_PATH}"),
            format!("GET {SECRET_PATH}"),
            format!("PUT {SECRET_PATH}"),
            format!("PATCH {MWC_PATH}"),
        ]
    );
    let put = &log[2].body;
    assert_eq!(put["metadata"]["resourceVersion"], "42");
    assert_eq!(put["metadata"]["uid"], "secret-uid");
    assert_ne!(unb64(&put["data"]["tls.crt"]), old.cert.as_bytes());
    // The old CA stays trusted after the new one while other replicas still serve the old pair.
    let bundle = stored(&state, "ca.crt");
    let cas: Vec<_> = CertificateDer::pem_slice_iter(&bundle)
        .map(Result::unwrap)
        .collect();
    assert_eq!(cas.len(), 2);
    assert_eq!(cas[1], der(old.ca.as_bytes()));
    assert_ne!(cas[0], der(old.ca.as_bytes()));
    caps_patch(&log[3], &bundle);
    assert_consistent(&state, &key);
}

#[tokio::test]
async fn a_lost_renewal_race_uses_the_winners_certificate() {
    let old = issued_between(
        Duration::from_secs(250 * 86_400),
        Duration::from_secs(365 * 86_400),
    );
    let winner = issued();
    let state = state(Some(secret(&old, "42", true)), mwc(Some(old.ca.as_bytes())));
    state.lock().unwrap().rival = Some(secret(&winner, "43", true));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    assert_eq!(
        state.lock().unwrap().lines(),
        [
            format!("GET {MWC_PATH}"),
            format!("GET {SECRET_PATH}"),
            format!("PUT {SECRET_PATH}"),
            format!("GET {SECRET_PATH}"),
            format!("PATCH {MWC_PATH}"),
        ]
    );
    assert_eq!(key.cert, vec![der(winner.cert.as_bytes())]);
    assert_consistent(&state, &key);
}

#[tokio::test]
async fn a_renewal_elsewhere_during_the_patch_is_not_undone() {
    // This replica reads a current Secret and a reset caBundle; before its patch lands,
    // another replica renews and writes its own CA into the configuration.
    let current = issued();
    let winner = issued();
    let state = state(Some(secret(&current, "42", true)), mwc(None));
    let mut renewed_config = mwc(Some(winner.ca.as_bytes()));
    renewed_config["metadata"]["resourceVersion"] = json!("8");
    state.lock().unwrap().rival_renewal = Some((secret(&winner, "43", true), renewed_config));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    let log = state.lock().unwrap().log.clone();
    assert_eq!(
        log.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            format!("GET {MWC_PATH}"),
            format!("GET {SECRET_PATH}"),
            format!("PATCH {MWC_PATH}"),
            format!("GET {MWC_PATH}"),
            format!("GET {SECRET_PATH}"),
        ]
    );
    // The patch was for the configuration as read, and was refused.
    caps_patch(&log[2], current.ca.as_bytes());
    assert_eq!(bundles(&state), vec![winner.ca.clone().into_bytes(); 2]);
    assert_eq!(key.cert, vec![der(winner.cert.as_bytes())]);
    assert_consistent(&state, &key);
}

#[tokio::test]
async fn a_deleted_secret_is_issued_again_keeping_the_cas_still_trusted() {
    // Other replicas serve the pair of the deleted Secret until they next check: its CA stays
    // trusted. An expired CA in the bundle is dropped.
    let serving = issued();
    let expired = issued_between(
        Duration::from_secs(400 * 86_400),
        Duration::from_secs(365 * 86_400),
    );
    let bundle = format!("{}{}", serving.ca, expired.ca);
    let state = state(None, mwc(Some(bundle.as_bytes())));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    let log = state.lock().unwrap().log.clone();
    assert_eq!(log[2].line(), format!("POST {SECRETS_PATH}"));
    let ca = stored(&state, "ca.crt");
    let cas: Vec<_> = CertificateDer::pem_slice_iter(&ca)
        .map(Result::unwrap)
        .collect();
    assert_eq!(cas.len(), 2);
    assert_ne!(cas[0], der(serving.ca.as_bytes()));
    assert_eq!(cas[1], der(serving.ca.as_bytes()));
    caps_patch(&log[3], &ca);
    assert_consistent(&state, &key);
}

#[tokio::test]
async fn garbage_in_the_secret_is_replaced() {
    let mut garbage = secret(&issued(), "42", true);
    garbage["data"]["tls.crt"] = json!(b64(b"not a certificate"));
    let state = state(Some(garbage), mwc(None));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    let log = state.lock().unwrap().log.clone();
    assert_eq!(
        log.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            format!("GET {MWC_PATH}"),
            format!("GET {SECRET_PATH}"),
            format!("PUT {SECRET_PATH}"),
            format!("PATCH {MWC_PATH}"),
        ]
    );
    assert_eq!(log[2].body["metadata"]["resourceVersion"], "42");
    // Nothing of the unusable pair is kept trusted.
    let cas = CertificateDer::pem_slice_iter(&stored(&state, "ca.crt")).count();
    assert_eq!(cas, 1);
    assert_consistent(&state, &key);
}

#[tokio::test]
async fn a_pair_signed_by_another_ca_is_replaced() {
    let pem = issued();
    let mut mixed = secret(&pem, "42", true);
    mixed["data"]["ca.crt"] = json!(b64(issued().ca.as_bytes()));
    let state = state(Some(mixed), mwc(None));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    assert_eq!(
        state.lock().unwrap().log[2].line(),
        format!("PUT {SECRET_PATH}")
    );
    assert_ne!(key.cert, vec![der(pem.cert.as_bytes())]);
    assert_consistent(&state, &key);
}

#[tokio::test]
async fn a_secret_left_from_an_earlier_install_is_adopted() {
    let pem = issued();
    let mut orphan = secret(&pem, "42", false);
    orphan["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "name": "coredog-webhook", "uid": "gone-uid"}]);
    let state = state(Some(orphan), mwc(Some(pem.ca.as_bytes())));
    let (client, _server) = api_server(state.clone());
    let key = webhook_certs::ensure(&client, &settings()).await.unwrap();

    let log = state.lock().unwrap().log.clone();
    assert_eq!(log[2].line(), format!("PUT {SECRET_PATH}"));
    assert_eq!(log.len(), 3);
    assert_eq!(log[2].body["metadata"]["resourceVersion"], "42");
    assert_eq!(
        log[2].body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration", "name": "coredog-webhook", "uid": MWC_UID}])
    );
    assert_eq!(unb64(&log[2].body["data"]["tls.crt"]), pem.cert.as_bytes());
    assert_eq!(key.cert, vec![der(pem.cert.as_bytes())]);
}

#[tokio::test]
async fn a_missing_webhook_configuration_is_an_error_and_nothing_is_written() {
    let state = Arc::new(Mutex::new(State::default()));
    let (client, _server) = api_server(state.clone());
    let err = webhook_certs::ensure(&client, &settings())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            webhook_certs::CertError::WebhookConfigurationMissing(_)
        ),
        "{err}"
    );
    assert_eq!(state.lock().unwrap().lines(), [format!("GET {MWC_PATH}")]);
}

#[tokio::test]
async fn maintain_follows_a_renewal_elsewhere_and_repairs_the_ca_bundle() {
    let first = issued();
    let state = state(
        Some(secret(&first, "42", true)),
        mwc(Some(first.ca.as_bytes())),
    );
    let (client, _server) = api_server(state.clone());
    let settings = CertSettings {
        check_every: Duration::from_millis(20),
        trust_delay: Duration::from_millis(200),
        ..settings()
    };
    let initial = webhook_certs::ensure(&client, &settings).await.unwrap();
    let resolver = ReloadingCert::new(initial);
    let running = tokio::spawn(webhook_certs::maintain(client, settings, resolver.clone()));

    // Another replica renews, and someone resets the caBundle.
    let second = issued();
    {
        let mut state = state.lock().unwrap();
        state.secret = Some(secret(&second, "43", true));
        state.mwc = Some(mwc(None));
    }
    // Found (the caBundle written again), and not served yet: the API servers may not have
    // its CA for a while.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        state.lock().unwrap().mwc.as_ref().unwrap()["webhooks"][0]["clientConfig"]["caBundle"],
        json!(b64(second.ca.as_bytes())),
        "not looked at yet"
    );
    assert_eq!(
        resolver.current().cert,
        vec![der(first.cert.as_bytes())],
        "a new certificate served before its CA could reach the API servers"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let served = resolver.current().cert.clone();
        let trusted =
            state.lock().unwrap().mwc.as_ref().unwrap()["webhooks"][0]["clientConfig"]["caBundle"]
                .clone();
        if served == vec![der(second.cert.as_bytes())]
            && trusted == json!(b64(second.ca.as_bytes()))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "maintain did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.abort();
    let key = resolver.current();
    assert_consistent(&state, &key);
    // Nothing was written to the Secret: the other replica's pair is current.
    assert!(
        !state
            .lock()
            .unwrap()
            .log
            .iter()
            .any(|request| request.method == "PUT" || request.method == "POST")
    );
}
