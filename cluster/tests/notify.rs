//! The notifier against real HTTP receivers on loopback playing WeCom, Slack, a generic webhook
//! and CoreSight: what arrives, with which shape and text, how often and when.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use coredog::notify::{Notifier, Tuning};
use coredog_core::config::{ChannelKind, Config, CoreSight, NoticeChannel};
use coredog_core::object_key::{Compression, DumpId};
use coredog_core::record::{DumpRecord, SCHEMA_VERSION};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::oneshot;

// The watcher shares one notifier between its upload tasks.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Notifier>();
};

/// One request as a receiver saw it.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    path: String,
    query: String,
    headers: HeaderMap,
    json: Value,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    /// The text of a WeCom, Slack or webhook message.
    fn text(&self) -> &str {
        [
            &self.json["markdown"]["content"],
            &self.json["text"],
            &self.json["message"],
        ]
        .into_iter()
        .find_map(Value::as_str)
        .unwrap_or_default()
    }
}

/// The answer to the `n`th request (from 0).
type Answer = Arc<dyn Fn(usize) -> Response + Send + Sync>;

#[derive(Clone)]
struct ReceiverState {
    hits: Arc<Mutex<Vec<Hit>>>,
    answer: Answer,
    delay: Duration,
}

/// An HTTP server on 127.0.0.1 recording every request; stopped when dropped.
struct Receiver {
    address: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    async fn start(answer: impl Fn(usize) -> Response + Send + Sync + 'static) -> Self {
        Self::start_slow(Duration::ZERO, answer).await
    }

    /// A receiver that takes `delay` to answer each request.
    async fn start_slow(
        delay: Duration,
        answer: impl Fn(usize) -> Response + Send + Sync + 'static,
    ) -> Self {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            hits: Arc::clone(&hits),
            answer: Arc::new(answer),
            delay,
        };
        let app = Router::new().fallback(record_hit).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            address,
            hits,
            _stop: stop,
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.address)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived; fails after `within`.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        let started = Instant::now();
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                started.elapsed() < within,
                "expected {n} requests within {within:?}, got {}: {hits:#?}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn record_hit(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hit = Hit {
        at: Instant::now(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let index = {
        let mut hits = state.hits.lock().unwrap();
        hits.push(hit);
        hits.len() - 1
    };
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    (state.answer)(index)
}

fn wecom_ok() -> Response {
    axum::Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
}

fn wecom_error(code: i64, message: &str) -> Response {
    axum::Json(json!({"errcode": code, "errmsg": message})).into_response()
}

fn slack_ok() -> Response {
    (StatusCode::OK, "ok").into_response()
}

fn channel(kind: ChannelKind, url: String) -> NoticeChannel {
    NoticeChannel {
        chan: kind,
        webhookurl: url,
        keyword: String::new(),
        rate_limit_per_minute: 20,
        aggregate_window_seconds: 300,
    }
}

fn config(channels: Vec<NoticeChannel>) -> Config {
    Config {
        notice_channels: channels,
        ..Config::default()
    }
}

/// Retries in milliseconds rather than seconds.
fn fast() -> Tuning {
    Tuning {
        max_attempts: 3,
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..Tuning::default()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn notifier(config: &Config, tuning: Tuning) -> (Notifier, Registry) {
    let mut registry = Registry::default();
    let notifier = Notifier::with_tuning(config, http(), &mut registry, tuning).unwrap();
    (notifier, registry)
}

/// A counter's value, 0 when it has never been counted.
fn metric(registry: &Registry, series: &str) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// A dump of `pod` in `namespace`; `n` tells dumps apart.
fn record(namespace: &str, pod: &str, n: u32) -> DumpRecord {
    let host_path = format!("/corefile/{namespace}/{pod}/app/core.server.{n}");
    DumpRecord {
        schema_version: SCHEMA_VERSION,
        id: DumpId::derive("node-1", &host_path, 4096, i128::from(n)),
        key: format!("corefiles/{namespace}/{pod}/20261127T1000{n:02}Z_app_server_{n}.core.zst"),
        time: "2026-11-27T10:00:12Z".parse().unwrap(),
        uploaded_at: "2026-11-27T10:00:13Z".parse().unwrap(),
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        container: "app".to_owned(),
        pod_uid: Some("5f0c".to_owned()),
        node: "node-1".to_owned(),
        host_ip: Some("10.0.0.7".to_owned()),
        image: Some("shop/web:1.2".to_owned()),
        labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
        exe: "/usr/bin/server".to_owned(),
        pid: Some(42),
        signal: Some(11),
        signal_name: Some("SIGSEGV".to_owned()),
        cmdline: Some("server --port 80".to_owned()),
        uid: Some(1000),
        hostname: Some(pod.to_owned()),
        size: 4096,
        stored_size: 512,
        sha256: "ab".repeat(32),
        compression: Compression::Zstd,
        host_path,
    }
}

const QUIET: Duration = Duration::from_millis(400);

#[tokio::test]
async fn each_receiver_gets_its_shape_with_the_template_filled_and_the_labels() {
    let wecom = Receiver::start(|_| wecom_ok()).await;
    let slack = Receiver::start(|_| slack_ok()).await;
    let webhook = Receiver::start(|_| StatusCode::NO_CONTENT.into_response()).await;
    let core_sight = Receiver::start(|_| StatusCode::ACCEPTED.into_response()).await;
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), "token-from-file\n").unwrap();

    let mut config = config(vec![
        channel(
            ChannelKind::Wechat,
            wecom.url("/cgi-bin/webhook/send?key=SECRET-KEY"),
        ),
        channel(ChannelKind::Slack, slack.url("/services/T0/B0/SECRET")),
        channel(ChannelKind::Webhook, webhook.url("/hooks/coredog")),
    ]);
    config.message_template = Some(
        "Pod: {pod.namespace}/{pod.name} on {node.name}\nCrash: {process.exe} {signal.name} ({corefile.size})\nDownload: {corefile.url}\n".to_owned(),
    );
    config.message_labels = BTreeMap::from([
        ("cluster".to_owned(), "prod-1".to_owned()),
        ("region".to_owned(), "eu".to_owned()),
    ]);
    config.core_sight = CoreSight {
        enabled: true,
        api_url: core_sight.url(""),
        token_file: Some(token_file.path().display().to_string()),
        ..CoreSight::default()
    };
    let (notifier, registry) = notifier(&config, fast());

    let dump = record("shop", "web-7d9f8b6c5d-x2x4z", 1);
    let url = "https://dl.example/core?X-Amz-Signature=abc&X-Amz-Expires=600";
    notifier.dump_stored(&dump, url);

    let expected = format!(
        "Pod: shop/web-7d9f8b6c5d-x2x4z on node-1\nCrash: /usr/bin/server SIGSEGV (4.0 KiB)\nDownload: {url}\ncluster: prod-1\nregion: eu"
    );
    let within = Duration::from_secs(5);

    let hit = &wecom.wait_for(1, within).await[0];
    assert_eq!(
        (hit.path.as_str(), hit.query.as_str()),
        ("/cgi-bin/webhook/send", "key=SECRET-KEY")
    );
    assert_eq!(hit.header("content-type"), "application/json");
    assert_eq!(
        hit.json,
        json!({"msgtype": "markdown", "markdown": {"content": expected}})
    );

    let hit = &slack.wait_for(1, within).await[0];
    assert_eq!(hit.path, "/services/T0/B0/SECRET");
    let slack_text = expected.replace('&', "&amp;");
    assert_eq!(
        hit.json,
        json!({
            "text": slack_text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": slack_text}}],
        })
    );

    let hit = &webhook.wait_for(1, within).await[0];
    assert_eq!(hit.header("content-type"), "application/json");
    assert_eq!(
        hit.json,
        json!({
            "event": "coredump.stored",
            "downloadUrl": url,
            "message": expected,
            "record": serde_json::to_value(&dump).unwrap(),
        })
    );

    let hit = &core_sight.wait_for(1, within).await[0];
    assert_eq!(hit.path, "/api/v1/events");
    assert_eq!(hit.header("content-type"), "application/cloudevents+json");
    assert_eq!(hit.header("authorization"), "Bearer token-from-file");
    assert_eq!(
        hit.json,
        json!({
            "specversion": "1.0",
            "type": "coredog.coredump.uploaded",
            "source": "coredog/node-1",
            "id": dump.id.as_str(),
            "time": "2026-11-27T10:00:13Z",
            "datacontenttype": "application/json",
            "data": serde_json::to_value(&dump).unwrap(),
        })
    );
    assert_eq!(
        DumpRecord::from_json(hit.json["data"].to_string().as_bytes()).unwrap(),
        dump
    );

    tokio::time::sleep(QUIET).await;
    for (receiver, channel) in [
        (&wecom, "wechat"),
        (&slack, "slack"),
        (&webhook, "webhook"),
        (&core_sight, "coresight"),
    ] {
        assert_eq!(receiver.count(), 1, "{channel}");
        let series = format!("coredog_notifications_sent_total{{channel=\"{channel}\"}}");
        assert_eq!(metric(&registry, &series), 1, "{series}");
    }
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn core_sight_takes_the_configured_path_and_the_inline_token() {
    let core_sight = Receiver::start(|_| StatusCode::OK.into_response()).await;
    let mut config = config(Vec::new());
    config.core_sight = CoreSight {
        enabled: true,
        api_url: core_sight.url("/ingest/v2/events"),
        token: "agent-token".to_owned(),
        token_file: Some("/nonexistent/is/not/read".to_owned()),
        ..CoreSight::default()
    };
    let (notifier, _registry) = notifier(&config, fast());
    // CoreSight sees every dump, repeats included: it has no rate limit or aggregation.
    for n in 0..3 {
        notifier.dump_stored(&record("shop", "web-0", n), "u");
    }
    let hits = core_sight.wait_for(3, Duration::from_secs(5)).await;
    for (n, hit) in hits.iter().enumerate() {
        assert_eq!(hit.path, "/ingest/v2/events");
        assert_eq!(hit.header("authorization"), "Bearer agent-token");
        assert_eq!(
            hit.json["data"]["hostPath"],
            format!("/corefile/shop/web-0/app/core.server.{n}")
        );
    }
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_rotated_core_sight_token_file_is_used_without_a_restart() {
    // Laid out as the kubelet lays out a Secret volume: the file is a symlink through `..data`,
    // and an update swaps `..data` to a new directory.
    let volume = tempfile::tempdir().unwrap();
    let write_version = |name: &str, token: &str| {
        std::fs::create_dir(volume.path().join(name)).unwrap();
        std::fs::write(volume.path().join(name).join("token"), token).unwrap();
        let staged = volume.path().join("..data_tmp");
        std::os::unix::fs::symlink(name, &staged).unwrap();
        std::fs::rename(&staged, volume.path().join("..data")).unwrap();
    };
    write_version("..v1", "first-token\n");
    std::os::unix::fs::symlink("..data/token", volume.path().join("token")).unwrap();

    let core_sight = Receiver::start(|_| StatusCode::ACCEPTED.into_response()).await;
    let mut config = config(Vec::new());
    config.core_sight = CoreSight {
        enabled: true,
        api_url: core_sight.url(""),
        token_file: Some(volume.path().join("token").display().to_string()),
        ..CoreSight::default()
    };
    let (notifier, _registry) = notifier(&config, fast());
    let within = Duration::from_secs(5);
    notifier.dump_stored(&record("shop", "web-0", 0), "u");
    core_sight.wait_for(1, within).await;

    write_version("..v2", "second-token\n");
    notifier.dump_stored(&record("shop", "web-0", 1), "u");
    core_sight.wait_for(2, within).await;

    // A file that is empty for a moment (mid-update) does not blank the token.
    std::fs::write(volume.path().join("..v2").join("token"), "").unwrap();
    notifier.dump_stored(&record("shop", "web-0", 2), "u");
    let hits = core_sight.wait_for(3, within).await;
    assert_eq!(
        hits.iter()
            .map(|hit| hit.header("authorization"))
            .collect::<Vec<_>>(),
        [
            "Bearer first-token",
            "Bearer second-token",
            "Bearer second-token"
        ]
    );
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn a_bad_core_sight_setup_is_a_startup_error_that_keeps_secrets() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let mut config = config(Vec::new());
    config.core_sight = CoreSight {
        enabled: true,
        api_url: "http://coresight-api:8000".to_owned(),
        token_file: Some("/nonexistent/coredog-token".to_owned()),
        ..CoreSight::default()
    };
    let err = Notifier::from_config(&config, http(), &mut Registry::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nonexistent/coredog-token"), "{err}");

    config.core_sight.token_file = None;
    let err = Notifier::from_config(&config, http(), &mut Registry::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("token"), "{err}");

    let config = self::config(vec![channel(
        ChannelKind::Wechat,
        "https://qyapi weixin/send?key=SECRET-KEY".to_owned(),
    )]);
    let err = Notifier::from_config(&config, http(), &mut Registry::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("webhookurl") && !err.contains("SECRET"),
        "{err}"
    );
}

#[tokio::test]
async fn keywords_choose_the_channels() {
    let webhook = Receiver::start(|_| StatusCode::OK.into_response()).await;
    let keyed = |path: &str, keyword: &str| NoticeChannel {
        keyword: keyword.to_owned(),
        ..channel(ChannelKind::Webhook, webhook.url(path))
    };
    let config = config(vec![
        keyed("/all", ""),
        keyed("/payments", "payments"),
        keyed("/caps", "Payments"),
        keyed("/exe", "bin/server"),
    ]);
    let (notifier, registry) = notifier(&config, fast());

    let payments = record("shop", "web-0", 1);
    let mut other = record("search", "indexer-0", 2);
    other.labels.clear();
    other.exe = "/opt/indexer".to_owned();
    notifier.dump_stored(&payments, "u1");
    notifier.dump_stored(&other, "u2");

    webhook.wait_for(4, Duration::from_secs(5)).await;
    tokio::time::sleep(QUIET).await;
    let mut seen: Vec<(String, String)> = webhook
        .hits()
        .iter()
        .map(|hit| {
            (
                hit.path.clone(),
                hit.json["record"]["namespace"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/all".to_owned(), "search".to_owned()),
            ("/all".to_owned(), "shop".to_owned()),
            ("/exe".to_owned(), "shop".to_owned()),
            ("/payments".to_owned(), "shop".to_owned()),
        ]
    );
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_suppressed_total{channel=\"webhook\",reason=\"keyword\"}"
        ),
        4
    );
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_wecom_rate_limit_is_retried_once_after_a_backoff() {
    let wecom = Receiver::start(|n| match n {
        0 => wecom_error(45009, "api freq out of limit"),
        _ => wecom_ok(),
    })
    .await;
    let config = config(vec![channel(
        ChannelKind::Wechat,
        wecom.url("/cgi-bin/webhook/send?key=K"),
    )]);
    // The production back-off: about a second before the second attempt.
    let (notifier, registry) = notifier(&config, Tuning::default());
    notifier.dump_stored(&record("shop", "web-0", 1), "u");

    let hits = wecom.wait_for(2, Duration::from_secs(5)).await;
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    assert_eq!(hits[0].json, hits[1].json);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(wecom.count(), 2);
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_sent_total{channel=\"wechat\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_failed_total{channel=\"wechat\",reason=\"rate_limited\"}"
        ),
        0
    );
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_refused_wecom_message_is_tried_once() {
    let wecom = Receiver::start(|_| wecom_error(93000, "invalid webhook url")).await;
    let config = config(vec![channel(
        ChannelKind::Wechat,
        wecom.url("/cgi-bin/webhook/send?key=WRONG"),
    )]);
    let (notifier, registry) = notifier(&config, fast());
    notifier.dump_stored(&record("shop", "web-0", 1), "u");
    wecom.wait_for(1, Duration::from_secs(5)).await;
    // Long enough for several retries under `fast()`.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(wecom.count(), 1);
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_failed_total{channel=\"wechat\",reason=\"rejected\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_sent_total{channel=\"wechat\"}"
        ),
        0
    );
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn slack_retry_after_is_obeyed() {
    let slack = Receiver::start(|n| match n {
        0 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "rate_limited",
        )
            .into_response(),
        _ => slack_ok(),
    })
    .await;
    let config = config(vec![channel(ChannelKind::Slack, slack.url("/services/X"))]);
    // The back-off alone would retry after 50 ms; Retry-After says a second.
    let (notifier, registry) = notifier(&config, fast());
    notifier.dump_stored(&record("shop", "web-0", 1), "u");

    let hits = slack.wait_for(2, Duration::from_secs(5)).await;
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    tokio::time::sleep(QUIET).await;
    assert_eq!(slack.count(), 2);
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_sent_total{channel=\"slack\"}"
        ),
        1
    );
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_crash_storm_is_one_message_and_one_follow_up() {
    let wecom = Receiver::start(|_| wecom_ok()).await;
    let config = config(vec![NoticeChannel {
        aggregate_window_seconds: 2,
        ..channel(ChannelKind::Wechat, wecom.url("/send?key=K"))
    }]);
    let (notifier, registry) = notifier(&config, fast());

    // 30 crashes of one Deployment's pods, across its ReplicaSets.
    let started = Instant::now();
    let pods = [
        "crash-test-6b7c9d4f8-qwz2k",
        "crash-test-6b7c9d4f8-x2x4z",
        "crash-test-5f6d7c8b9b-abcde",
    ];
    let mut last = None;
    for n in 0..30u32 {
        let mut dump = record("default", pods[n as usize % 3], n);
        dump.labels.clear();
        last = Some(dump.file_name().to_owned());
        notifier.dump_stored(&dump, &format!("https://dl/{n}"));
    }
    let last = last.unwrap();

    let first = &wecom.wait_for(1, Duration::from_secs(1)).await[0];
    assert!(
        first
            .text()
            .contains("Pod: default/crash-test-6b7c9d4f8-qwz2k"),
        "{}",
        first.text()
    );
    assert_eq!(wecom.count(), 1);

    let hits = wecom.wait_for(2, Duration::from_secs(5)).await;
    let follow_up = hits[1].text();
    assert!(
        follow_up.starts_with(&format!(
            "crash-test in default: 29 more core dumps in the last 2s (latest: {last})"
        )),
        "{follow_up}"
    );
    assert!(follow_up.contains("Download: https://dl/29"), "{follow_up}");
    let waited = hits[1].at - started;
    assert!(
        waited >= Duration::from_secs(2),
        "follow-up after {waited:?}"
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(wecom.count(), 2);
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_suppressed_total{channel=\"wechat\",reason=\"aggregated\"}"
        ),
        29
    );
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn never_more_than_the_rate_limit_a_minute() {
    let wecom = Receiver::start(|_| wecom_ok()).await;
    let config = config(vec![NoticeChannel {
        rate_limit_per_minute: 5,
        aggregate_window_seconds: 1,
        ..channel(ChannelKind::Wechat, wecom.url("/send?key=K"))
    }]);
    let (notifier, registry) = notifier(&config, fast());
    for n in 0..12 {
        notifier.dump_stored(&record("ns", &format!("worker{n}-0"), n), "u");
    }
    wecom.wait_for(5, Duration::from_secs(2)).await;
    // The seven crashes over the limit were folded into windows that closed after a second;
    // their follow-ups wait for the minute to end, however long the windows have been closed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let texts: Vec<String> = wecom.hits().iter().map(|h| h.text().to_owned()).collect();
    assert_eq!(texts.len(), 5, "{texts:#?}");
    for (n, text) in texts.iter().enumerate() {
        assert!(text.contains(&format!("Pod: ns/worker{n}-0")), "{text}");
    }
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_suppressed_total{channel=\"wechat\",reason=\"rate_limited\"}"
        ),
        7
    );
    // Shutdown does not break the limit either: what cannot be sent in time is counted.
    notifier.shutdown(Duration::from_millis(300)).await;
    assert_eq!(wecom.count(), 5);
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_failed_total{channel=\"wechat\",reason=\"shutdown\"}"
        ),
        7
    );
}

#[tokio::test]
async fn folded_crashes_are_told_when_the_rate_allows() {
    let wecom = Receiver::start(|_| wecom_ok()).await;
    let config = config(vec![NoticeChannel {
        rate_limit_per_minute: 5,
        aggregate_window_seconds: 1,
        ..channel(ChannelKind::Wechat, wecom.url("/send?key=K"))
    }]);
    // A "minute" of one second, to see the follow-ups go out.
    let period = Duration::from_secs(1);
    let tuning = Tuning {
        rate_period: period,
        ..fast()
    };
    let (notifier, _registry) = notifier(&config, tuning);
    for n in 0..12 {
        notifier.dump_stored(&record("ns", &format!("worker{n}-0"), n), "u");
    }
    let hits = wecom.wait_for(12, Duration::from_secs(6)).await;
    let texts: Vec<&str> = hits.iter().map(Hit::text).collect();
    for n in 0..12 {
        let told = if n < 5 {
            texts[..5]
                .iter()
                .any(|t| t.contains(&format!("Pod: ns/worker{n}-0\n")))
        } else {
            // Told in a follow-up once a slot frees up; a window that found none kept
            // counting another period, so its span may be longer.
            texts[5..]
                .iter()
                .any(|t| t.starts_with(&format!("worker{n} in ns: 1 core dump in the last ")))
        };
        assert!(told, "worker{n}: {texts:#?}");
    }
    // Six requests never arrive within one period (allowing for loopback latency).
    for six in hits.windows(6) {
        let span = six[5].at - six[0].at;
        assert!(
            span >= period - Duration::from_millis(150),
            "6 messages in {span:?}"
        );
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(wecom.count(), 12);
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_upload_failure_is_announced_once_per_file() {
    let wecom = Receiver::start(|_| wecom_ok()).await;
    let webhook = Receiver::start(|_| StatusCode::OK.into_response()).await;
    let core_sight = Receiver::start(|_| StatusCode::OK.into_response()).await;
    let mut config = config(vec![
        NoticeChannel {
            // Upload failures go to every channel, whatever its keyword.
            keyword: "nothing-matches-this".to_owned(),
            ..channel(ChannelKind::Wechat, wecom.url("/send?key=K"))
        },
        channel(ChannelKind::Webhook, webhook.url("/hook")),
    ]);
    config.message_labels = BTreeMap::from([("cluster".to_owned(), "prod-1".to_owned())]);
    config.core_sight = CoreSight {
        enabled: true,
        api_url: core_sight.url(""),
        token: "t".to_owned(),
        ..CoreSight::default()
    };
    let (notifier, _registry) = notifier(&config, fast());

    let path = "/corefile/shop/web-0/app/core.server.7";
    for _ in 0..5 {
        notifier.upload_failing(path, "AccessDenied", Duration::from_secs(300));
    }
    notifier.upload_failing("/corefile/other/core", "timeout", Duration::from_secs(600));

    let hits = wecom.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(
        hits[0].text(),
        "CoreDog cannot store /corefile/shop/web-0/app/core.server.7 for 5m: AccessDenied. The file stays on the node and is retried.\ncluster: prod-1"
    );
    let hooks = webhook.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(
        hooks[0].json,
        json!({
            "event": "coredump.upload_failing",
            "hostPath": path,
            "reason": "AccessDenied",
            "failingForSeconds": 300,
            "message": hits[0].text(),
        })
    );
    assert!(
        hooks[1]
            .text()
            .contains("/corefile/other/core for 10m: timeout")
    );

    // Once stored, a later failure of the same file is news again.
    notifier.upload_failure_over(path);
    notifier.upload_failing(path, "AccessDenied", Duration::from_secs(300));
    notifier.upload_failing(path, "AccessDenied", Duration::from_secs(300));
    wecom.wait_for(3, Duration::from_secs(5)).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        (wecom.count(), webhook.count(), core_sight.count()),
        (3, 3, 0)
    );
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_sends_what_is_queued_and_the_open_follow_ups() {
    // A slow receiver, so that messages are still queued when shutdown starts.
    let slack = Receiver::start_slow(Duration::from_millis(100), |_| slack_ok()).await;
    let config = config(vec![channel(ChannelKind::Slack, slack.url("/services/X"))]);
    let (notifier, registry) = notifier(&config, fast());
    for n in 0..5 {
        notifier.dump_stored(&record("ns", &format!("db{n}-0"), n), "u");
    }
    for n in 5..8 {
        notifier.dump_stored(&record("ns", "db0-1", n), "u");
    }
    let started = Instant::now();
    notifier.shutdown(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let texts: Vec<String> = slack.hits().iter().map(|h| h.text().to_owned()).collect();
    assert_eq!(texts.len(), 6, "{texts:#?}");
    assert!(
        texts[5].starts_with("db0 in ns: 3 more core dumps in the last "),
        "{}",
        texts[5]
    );
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_sent_total{channel=\"slack\"}"
        ),
        6
    );
}

#[tokio::test]
async fn a_dead_receiver_never_holds_up_the_watcher() {
    // A port nobody listens on: connections are refused.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = |path: &str| format!("http://{dead}{path}");
    let mut config = config(vec![
        channel(ChannelKind::Wechat, url("/send?key=K")),
        channel(ChannelKind::Slack, url("/services/X")),
        channel(ChannelKind::Webhook, url("/hook")),
    ]);
    config.core_sight = CoreSight {
        enabled: true,
        api_url: url(""),
        token: "t".to_owned(),
        ..CoreSight::default()
    };
    let tuning = Tuning {
        max_attempts: 2,
        first_backoff: Duration::from_millis(10),
        ..fast()
    };
    let (notifier, registry) = notifier(&config, tuning);

    for n in 0..30 {
        let started = Instant::now();
        notifier.dump_stored(&record("ns", &format!("app{n}-0"), n), "u");
        notifier.upload_failing(&format!("/corefile/{n}"), "down", Duration::from_secs(300));
        let took = started.elapsed();
        assert!(took < Duration::from_millis(50), "call {n} took {took:?}");
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = |channel: &str| {
        metric(
            &registry,
            &format!(
                "coredog_notifications_failed_total{{channel=\"{channel}\",reason=\"unavailable\"}}"
            ),
        )
    };
    while failed("coresight") < 30
        || failed("wechat") == 0
        || failed("slack") == 0
        || failed("webhook") == 0
    {
        assert!(Instant::now() < deadline, "failures not counted in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(failed("coresight"), 30);
    notifier.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_full_queue_drops_rather_than_waits() {
    let webhook = Receiver::start(|_| StatusCode::OK.into_response()).await;
    let config = config(vec![channel(ChannelKind::Webhook, webhook.url("/hook"))]);
    let tuning = Tuning {
        queue_capacity: 4,
        ..fast()
    };
    let (notifier, registry) = notifier(&config, tuning);
    // The channel's task does not run between these calls (this test's runtime has one
    // thread), so the queue holds four and the rest are dropped at once.
    let started = Instant::now();
    for n in 0..20 {
        notifier.dump_stored(&record("ns", &format!("app{n}-0"), n), "u");
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(
        metric(
            &registry,
            "coredog_notifications_failed_total{channel=\"webhook\",reason=\"queue_full\"}"
        ),
        16
    );
    webhook.wait_for(4, Duration::from_secs(5)).await;
    notifier.shutdown(Duration::from_secs(1)).await;
    assert_eq!(webhook.count(), 4);
}

#[tokio::test]
async fn logs_name_receivers_by_host_never_by_their_secrets() {
    // This test's runtime has one thread: every task logs through this subscriber.
    let (logs, _logging) = coredog_tests::CapturedLogs::start(tracing::Level::DEBUG);

    let wecom = Receiver::start(|_| wecom_error(93000, "invalid webhook url")).await;
    let core_sight =
        Receiver::start(|_| (StatusCode::UNAUTHORIZED, "bad token").into_response()).await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut config = config(vec![
        channel(ChannelKind::Wechat, wecom.url("/send?key=SECRET-KEY")),
        channel(
            ChannelKind::Slack,
            format!("http://{dead}/services/T0/B0/SECRET-PATH"),
        ),
    ]);
    config.core_sight = CoreSight {
        enabled: true,
        api_url: core_sight.url(""),
        token: "SECRET-TOKEN".to_owned(),
        ..CoreSight::default()
    };
    let tuning = Tuning {
        max_attempts: 2,
        first_backoff: Duration::from_millis(10),
        ..fast()
    };
    let (notifier, registry) = notifier(&config, tuning);
    notifier.dump_stored(&record("shop", "web-0", 1), "u");
    notifier.dump_stored(&record("shop", "api-0", 2), "u");

    let deadline = Instant::now() + Duration::from_secs(10);
    let failures = || {
        [
            "{channel=\"wechat\",reason=\"rejected\"}",
            "{channel=\"slack\",reason=\"unavailable\"}",
            "{channel=\"coresight\",reason=\"rejected\"}",
        ]
        .map(|labels| {
            metric(
                &registry,
                &format!("coredog_notifications_failed_total{labels}"),
            )
        })
    };
    while failures() != [2, 2, 2] {
        assert!(Instant::now() < deadline, "{:?}", failures());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    notifier.shutdown(Duration::from_secs(1)).await;

    let text = logs.text();
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains(&wecom.address.to_string()), "{text}");
    assert!(text.contains(&dead.to_string()), "{text}");
    assert!(text.contains("errcode 93000"), "{text}");
    // The same refusal is reported once.
    assert_eq!(
        text.matches("notification refused; not retried").count(),
        2,
        "{text}"
    );
}
