//! The mutating admission webhook: `POST /mutate` gives opted-in pods their dump directory.
//!
//! [`review`] decides (pure), reading the request with [`json_reader`] into a [`pod_view`];
//! [`inject`] plans the patch (pure); this module serves them over HTTPS with metrics and the
//! log lines operators look for.

pub mod inject;
pub mod json_reader;
pub mod pod_view;
pub mod review;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::FutureExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::{error, info, warn};

use crate::http::{Readiness, ops_routes};
use inject::SkipReason;

/// AdmissionReviews of large pods run to a few MiB; anything beyond this is not one.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// The API server gives up on the webhook after its `timeoutSeconds` (at most 30).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type Labels = [(&'static str, &'static str); 1];

/// How a request was answered: the `result` label of the request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestResult {
    Allowed,
    Patched,
    BadRequest,
    Error,
}

impl RequestResult {
    const ALL: [Self; 4] = [Self::Allowed, Self::Patched, Self::BadRequest, Self::Error];

    fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Patched => "patched",
            Self::BadRequest => "bad_request",
            Self::Error => "error",
        }
    }
}

/// The webhook's Prometheus metrics. Every label value is known in advance, so each series is
/// created at start (at zero, as Prometheus advises, so `rate()` works before the first event)
/// and a request increments counters it already holds rather than looking them up by label.
#[derive(Clone)]
pub struct WebhookMetrics {
    requests: [Counter; RequestResult::ALL.len()],
    injections: Counter,
    skips: [Counter; SkipReason::ALL.len()],
    latency: Histogram,
}

impl WebhookMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<Labels, Counter>::default();
        let skips = Family::<Labels, Counter>::default();
        let metrics = Self {
            requests: RequestResult::ALL.map(|result| {
                requests
                    .get_or_create(&[("result", result.as_str())])
                    .clone()
            }),
            injections: Counter::default(),
            skips: SkipReason::ALL
                .map(|reason| skips.get_or_create(&[("reason", reason.as_str())]).clone()),
            latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        };
        let registry = registry.sub_registry_with_prefix("coredog_webhook");
        registry.register("requests", "AdmissionReview requests by result", requests);
        registry.register(
            "injections",
            "Pods given a dump directory",
            metrics.injections.clone(),
        );
        registry.register("skips", "Pods or containers not injected, by reason", skips);
        registry.register(
            "request_duration_seconds",
            "Time to answer one AdmissionReview",
            metrics.latency.clone(),
        );
        metrics
    }

    fn skipped(&self, reason: SkipReason) {
        self.skips[reason as usize].inc();
    }

    fn answered(&self, result: RequestResult) {
        self.requests[result as usize].inc();
    }
}

/// What the handlers share. Axum clones a handler's state for every request, so the router
/// holds it behind one `Arc`: a clone of the metrics themselves is a dozen reference counts
/// bumped and dropped per request.
pub struct WebhookState {
    pub host_dir: Arc<str>,
    pub metrics: WebhookMetrics,
    /// False once the webhook is stopping (and before it serves).
    pub readiness: Readiness,
}

/// The webhook's routes: `/mutate` and the ops endpoints.
pub fn router(state: WebhookState, registry: Arc<Registry>) -> Router {
    let readiness = state.readiness.clone();
    Router::new()
        .route("/mutate", post(mutate))
        .with_state(Arc::new(state))
        .merge(ops_routes(registry, readiness))
}

async fn mutate(State(state): State<Arc<WebhookState>>, body: Body) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics;
    let (result, mut response) = match whole_body(body).await {
        // A body too large, cut off or too slow is not an AdmissionReview: 400 like any other.
        Err(reason) => not_a_review(format!("not an AdmissionReview: {reason}")),
        Ok(body) => answer(&body, &state.host_dir, metrics),
    };
    metrics.answered(result);
    metrics.latency.observe(started.elapsed().as_secs_f64());
    // Stopping: the answer closes its connection, so that an API server that keeps one to this
    // pod opens its next to a pod that stays, rather than lose a request to the close.
    if !state.readiness.is_ready() {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The request's body, at most [`MAX_BODY`] bytes within [`BODY_TIMEOUT`]: a client that
/// trickles its body (anything in the cluster can reach the Service) holds its memory no longer.
/// A body that came with its headers, as the API server's do, is taken without a timer.
async fn whole_body(body: Body) -> Result<Bytes, String> {
    let read = axum::body::to_bytes(body, MAX_BODY);
    tokio::pin!(read);
    let read = match read.as_mut().now_or_never() {
        Some(read) => read,
        None => tokio::time::timeout(BODY_TIMEOUT, read)
            .await
            .map_err(|_| format!("its body did not arrive within {BODY_TIMEOUT:?}"))?,
    };
    // axum's error shows its inner error's text; what caused that comes after.
    read.map_err(|err| {
        let mut text = err.to_string();
        let mut cause = std::error::Error::source(&err).and_then(std::error::Error::source);
        while let Some(error) = cause {
            text.push_str(&format!(": {error}"));
            cause = error.source();
        }
        text
    })
}

/// The answer to a body that arrived whole, and how it counts.
fn answer(body: &[u8], host_dir: &str, metrics: &WebhookMetrics) -> (RequestResult, Response) {
    // The decision is pure code with no reason to panic; should it anyway, the pod is still
    // admitted rather than left to the API server's timeout.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| review::review(body, host_dir)));
    match outcome {
        Ok(Ok(decision)) => {
            record(metrics, &decision);
            let result = if decision.patched() {
                RequestResult::Patched
            } else {
                RequestResult::Allowed
            };
            (result, json_response(decision.review.to_json()))
        }
        Ok(Err(bad)) => not_a_review(bad.to_string()),
        Err(_) => {
            error!("internal error while deciding an AdmissionReview; admitting without a patch");
            metrics.skipped(SkipReason::InternalError);
            (RequestResult::Error, admitted_after_a_failure(body))
        }
    }
}

/// 400, saying why the body is not an AdmissionReview.
fn not_a_review(reason: String) -> (RequestResult, Response) {
    warn!(error = %reason, "rejected a request that is not an AdmissionReview");
    (
        RequestResult::BadRequest,
        (StatusCode::BAD_REQUEST, reason).into_response(),
    )
}

/// The answer when deciding failed: the pod admitted as it is, with a warning, if the review
/// says whom to answer; else 400.
fn admitted_after_a_failure(body: &[u8]) -> Response {
    match review::version_and_uid(body) {
        Some((version, uid)) => {
            let warning = "coredog: internal error; the pod was admitted without a dump directory";
            let answer = review::ReviewOut::allowed(&version, &uid, None, vec![warning.to_owned()]);
            json_response(answer.to_json())
        }
        None => (StatusCode::BAD_REQUEST, "unreadable AdmissionReview").into_response(),
    }
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn record(metrics: &WebhookMetrics, decision: &review::Decision) {
    for &skip in &decision.skips {
        metrics.skipped(skip);
    }
    // A reinvocation finds the pod injected already: counted once, when it was.
    if decision.patched() {
        metrics.injections.inc();
        tracing::debug!(
            pod = %decision.pod,
            containers = %decision.injected.join(","),
            "Inject corefile volume for pod {}",
            decision.pod
        );
    }
    if decision.opted_in {
        for warning in decision.warnings() {
            let reason = warning.strip_prefix("coredog: ").unwrap_or(warning);
            info!("Skip injection for pod {} - Reason: {reason}", decision.pod);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that stops coming is given up on, a body at hand is taken at once.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_comes_is_given_up_on() {
        use futures_util::StreamExt as _;
        let trickle = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
            b"{\"kind\":",
        ))])
        .chain(futures_util::stream::pending());
        let started = tokio::time::Instant::now();
        let err = whole_body(Body::from_stream(trickle)).await.unwrap_err();
        assert!(err.contains("did not arrive"), "{err}");
        assert_eq!(started.elapsed(), BODY_TIMEOUT);

        let at_hand = whole_body(Body::from("{}")).await.unwrap();
        assert_eq!(&at_hand[..], b"{}");
        let too_large = whole_body(Body::from(vec![b' '; MAX_BODY + 1]))
            .await
            .unwrap_err();
        assert_eq!(too_large, "length limit exceeded");
    }

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_failure_admits_the_pod_in_the_version_asked() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u-1","object":{"spec":7}}}"#;
        let response = admitted_after_a_failure(body);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            body_of(response).await,
            serde_json::json!({
                "apiVersion": "admission.k8s.io/v1beta1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": "u-1",
                    "allowed": true,
                    "warnings": ["coredog: internal error; the pod was admitted without a dump directory"]
                }
            })
        );
        let unreadable = admitted_after_a_failure(b"{");
        assert_eq!(unreadable.status(), StatusCode::BAD_REQUEST);
    }
}
