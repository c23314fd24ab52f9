//! Getting one message to one receiver: what each receiver is sent, how its answers are read,
//! and the retries. The shapes and the reading of answers are pure functions; [`deliver`] does
//! the HTTP.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::Tuning;
use super::metrics::{NotifyMetrics, failed};
use super::pacer::{DumpNotice, Outgoing};
use coredog_core::config::ChannelKind;

/// Who receives a channel's messages; also the `channel` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Wechat,
    Slack,
    Webhook,
    CoreSight,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Self::Wechat => "wechat",
            Self::Slack => "slack",
            Self::Webhook => "webhook",
            Self::CoreSight => "coresight",
        }
    }
}

impl From<ChannelKind> for Target {
    fn from(kind: ChannelKind) -> Self {
        match kind {
            ChannelKind::Wechat => Self::Wechat,
            ChannelKind::Slack => Self::Slack,
            ChannelKind::Webhook => Self::Webhook,
        }
    }
}

/// WeCom's robot API: sent.
const WECOM_OK: i64 = 0;
/// WeCom's robot API: over the robot's 20 messages a minute.
const WECOM_RATE_LIMITED: i64 = 45009;
/// WeCom's robot API: busy, try again.
const WECOM_BUSY: i64 = -1;
/// WeCom cuts markdown content at 4096 bytes and refuses longer messages.
const WECOM_MAX_BYTES: usize = 4096;
/// Slack refuses a section whose text exceeds 3000 characters (`invalid_blocks`).
const SLACK_SECTION_MAX_CHARS: usize = 3000;
/// Slack truncates a message's `text` beyond 40000 characters.
const SLACK_TEXT_MAX_CHARS: usize = 40_000;
/// Enough of an answer to read WeCom's `errcode` or to show what a receiver said.
const MAX_ANSWER_BYTES: usize = 8 * 1024;

/// The CloudEvent `type` of a stored dump.
pub const CLOUDEVENT_TYPE: &str = "coredog.coredump.uploaded";
/// Where events go when `CoreSight.apiUrl` names only a host.
pub const CORESIGHT_EVENTS_PATH: &str = "/api/v1/events";

/// The body posted for `message`, with its content type; `None` when the receiver takes no such
/// message (CoreSight is told about stored dumps only).
pub fn payload(target: Target, message: &Outgoing) -> Option<(&'static str, Value)> {
    let text = match message {
        Outgoing::Dump(dump) => &*dump.text,
        Outgoing::FollowUp(follow_up) => &follow_up.text,
        Outgoing::UploadFailing(failing) => &failing.text,
    };
    let json_type = "application/json";
    match target {
        Target::Wechat => Some((json_type, wechat_body(text))),
        Target::Slack => Some((json_type, slack_body(text))),
        Target::Webhook => Some((json_type, webhook_body(message))),
        Target::CoreSight => match message {
            Outgoing::Dump(dump) => Some(("application/cloudevents+json", cloud_event(dump))),
            Outgoing::FollowUp(_) | Outgoing::UploadFailing(_) => None,
        },
    }
}

/// A WeCom group robot's markdown message.
pub fn wechat_body(text: &str) -> Value {
    json!({
        "msgtype": "markdown",
        "markdown": { "content": truncate_bytes(text, WECOM_MAX_BYTES) },
    })
}

/// A Slack incoming webhook's message: the plain `text` for notifications and the same text as
/// an mrkdwn section. `&`, `<` and `>` are escaped as Slack asks, so that names and labels in a
/// message cannot turn into links or `<!channel>` mentions.
pub fn slack_body(text: &str) -> Value {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    json!({
        "text": truncate_chars(&escaped, SLACK_TEXT_MAX_CHARS),
        "blocks": [{
            "type": "section",
            "text": { "type": "mrkdwn", "text": truncate_chars(&escaped, SLACK_SECTION_MAX_CHARS) },
        }],
    })
}

/// The generic webhook's document. `event` tells the three kinds apart:
/// `coredump.stored` (one dump), `coredump.repeated` (a workload's repeats, with the latest
/// dump) and `coredump.upload_failing`.
pub fn webhook_body(message: &Outgoing) -> Value {
    match message {
        Outgoing::Dump(dump) => json!({
            "event": "coredump.stored",
            "downloadUrl": &*dump.url,
            "message": &*dump.text,
            "record": &*dump.record,
        }),
        Outgoing::FollowUp(follow_up) => json!({
            "event": "coredump.repeated",
            "count": follow_up.count,
            "downloadUrl": &*follow_up.latest.url,
            "message": follow_up.text,
            "record": &*follow_up.latest.record,
        }),
        Outgoing::UploadFailing(failing) => json!({
            "event": "coredump.upload_failing",
            "hostPath": failing.host_path,
            "reason": failing.reason,
            "failingForSeconds": failing.failing_for.as_secs(),
            "message": failing.text,
        }),
    }
}

/// A structured-mode CloudEvent 1.0 for CoreSight.
pub fn cloud_event(dump: &DumpNotice) -> Value {
    let record = &*dump.record;
    json!({
        "specversion": "1.0",
        "type": CLOUDEVENT_TYPE,
        "source": format!("coredog/{}", record.node),
        "id": record.id.as_str(),
        "time": record.uploaded_at.to_string(),
        "datacontenttype": "application/json",
        "data": record,
    })
}

/// Where CoreSight events are posted: `apiUrl` as given when it has a path, else
/// [`CORESIGHT_EVENTS_PATH`] on that host. Old values files give a bare host
/// (`http://coresight-api:8000`), which is where CoreSight's API serves its events.
pub fn coresight_url(api_url: &str) -> Result<reqwest::Url, String> {
    let mut url = parse_http_url(api_url.trim())?;
    if url.path().is_empty() || url.path() == "/" {
        url.set_path(CORESIGHT_EVENTS_PATH);
    }
    Ok(url)
}

/// An http(s) URL; the error never repeats the URL, which may carry a key.
pub fn parse_http_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|err| format!("not a valid URL ({err})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("not an http(s) URL with a host".to_owned());
    }
    Ok(url)
}

/// What an answer means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    /// Worth another try: after `after` when the receiver said so, else after a back-off.
    Retry {
        reason: &'static str,
        after: Option<Duration>,
        detail: String,
    },
    /// Refused for good: retrying sends the same refused message again.
    Refused {
        detail: String,
    },
}

/// Reads a receiver's answer.
pub fn classify(
    target: Target,
    status: StatusCode,
    retry_after: Option<&str>,
    body: &[u8],
) -> Verdict {
    let after =
        retry_after.and_then(|value| value.trim().parse::<u64>().ok().map(Duration::from_secs));
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Verdict::Retry {
            reason: failed::RATE_LIMITED,
            after,
            detail: format!("HTTP {status}"),
        };
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Verdict::Retry {
            reason: failed::UNAVAILABLE,
            after,
            detail: format!("HTTP {status}: {}", snippet(body)),
        };
    }
    if !status.is_success() {
        return Verdict::Refused {
            detail: format!("HTTP {status}: {}", snippet(body)),
        };
    }
    if target != Target::Wechat {
        return Verdict::Sent;
    }
    // WeCom answers 200 to everything and says in the body what became of the message.
    let answer: Option<(i64, String)> = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let code = v.get("errcode")?.as_i64()?;
        let message = v.get("errmsg").and_then(Value::as_str).unwrap_or_default();
        Some((code, message.to_owned()))
    });
    match answer {
        Some((WECOM_OK, _)) => Verdict::Sent,
        Some((code @ (WECOM_RATE_LIMITED | WECOM_BUSY), message)) => Verdict::Retry {
            reason: if code == WECOM_RATE_LIMITED {
                failed::RATE_LIMITED
            } else {
                failed::UNAVAILABLE
            },
            after: None,
            detail: format!("errcode {code}: {}", clip(&message)),
        },
        Some((code, message)) => Verdict::Refused {
            detail: format!("errcode {code}: {}", clip(&message)),
        },
        None => Verdict::Refused {
            detail: format!("not a WeCom answer: {}", snippet(body)),
        },
    }
}

/// Where a retry falls around the doubling schedule, so that the nodes of a cluster whose
/// receiver went down, or whose shared chat robot hit its rate limit, do not all try again at
/// the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Exactly on the schedule.
    None,
    /// A random point in the upper half of the wait.
    Sooner,
    /// A random point up to half as long again: a rate limit's window (a minute for WeCom) is
    /// still spanned by the retries, as on the schedule.
    Later,
}

/// The wait before attempt `attempt + 1`: doubling from `first_backoff` up to `max_backoff`,
/// then spread as `spread` says ([`Spread::Later`] up to half as long again).
pub fn backoff(tuning: &Tuning, attempt: u32, spread: Spread) -> Duration {
    let doubled = tuning
        .first_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let wait = doubled.min(tuning.max_backoff);
    let half = wait / 2;
    let random = || {
        let random = RandomState::new().hash_one(attempt);
        Duration::from_nanos(random % (half.as_nanos().max(1) as u64))
    };
    match spread {
        _ if half.is_zero() => wait,
        Spread::None => wait,
        Spread::Sooner => half + random(),
        Spread::Later => wait + random(),
    }
}

/// A bearer token: as configured, or a file read again before every request, so that a
/// rotated Secret mounted there is used without a restart.
pub enum Token {
    Inline(String),
    File {
        path: std::path::PathBuf,
        /// The last token the file held, used while it cannot be read or is empty (a Secret
        /// volume being updated).
        last: Mutex<String>,
    },
}

impl Token {
    async fn current(&self) -> String {
        match self {
            Self::Inline(token) => token.clone(),
            Self::File { path, last } => {
                let read = tokio::fs::read_to_string(path).await;
                let mut last = last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match read.as_deref().map(str::trim) {
                    Ok(token) if !token.is_empty() => {
                        if *last != token {
                            info!(path = %path.display(), "read a new token");
                            token.clone_into(&mut last);
                        }
                    }
                    Ok(_) => {
                        warn!(path = %path.display(), "the token file is empty; using the token read before")
                    }
                    Err(err) => {
                        warn!(path = %path.display(), error = %err, "cannot read the token file; using the token read before")
                    }
                }
                last.clone()
            }
        }
    }
}

/// One receiver and how to reach it.
pub struct Endpoint {
    pub target: Target,
    url: reqwest::Url,
    /// What logs name the receiver by: its host, never the URL (WeCom and Slack keep the key in
    /// it).
    pub host: String,
    token: Option<Token>,
    http: reqwest::Client,
    tuning: Tuning,
    pub metrics: NotifyMetrics,
    /// The last refusal logged, so a misconfigured receiver is reported once and not at every
    /// crash.
    last_refusal: Mutex<Option<String>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("target", &self.target)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn new(
        target: Target,
        url: reqwest::Url,
        token: Option<Token>,
        http: reqwest::Client,
        tuning: Tuning,
        metrics: NotifyMetrics,
    ) -> Self {
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        Self {
            target,
            url,
            host,
            token,
            http,
            tuning,
            metrics,
            last_refusal: Mutex::new(None),
        }
    }

    async fn attempt(&self, content_type: &'static str, body: Vec<u8>) -> Verdict {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .timeout(self.tuning.request_timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.current().await);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                return Verdict::Retry {
                    reason: failed::UNAVAILABLE,
                    after: None,
                    detail: error_chain(err),
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                // A 2xx whose body broke off is still a delivered message for all but WeCom,
                // whose verdict is in the body: it reads as "not a WeCom answer".
                Err(_) => break,
            }
        }
        classify(self.target, status, retry_after.as_deref(), &body)
    }

    fn log_refusal(&self, detail: &str) {
        let mut last = self
            .last_refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_deref() == Some(detail) {
            debug!(channel = self.target.label(), host = %self.host, detail, "notification refused again; not retried");
        } else {
            warn!(channel = self.target.label(), host = %self.host, detail, "notification refused; not retried");
            *last = Some(detail.to_owned());
        }
    }
}

/// Sends `message`, retrying as the answers allow, and counts the outcome.
pub async fn deliver(endpoint: &Endpoint, message: &Outgoing) {
    let channel = endpoint.target.label();
    let Some((content_type, body)) = payload(endpoint.target, message) else {
        return;
    };
    let body = match serde_json::to_vec(&body) {
        Ok(body) => body,
        Err(err) => {
            warn!(channel, host = %endpoint.host, error = %err, "cannot encode notification");
            endpoint.metrics.failed(channel, failed::ENCODE);
            return;
        }
    };
    let max_attempts = endpoint.tuning.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match endpoint.attempt(content_type, body.clone()).await {
            Verdict::Sent => {
                endpoint.metrics.sent(channel);
                if attempt > 1 {
                    info!(channel, host = %endpoint.host, attempt, "notification delivered after retrying");
                }
                if let Ok(mut last) = endpoint.last_refusal.lock() {
                    *last = None;
                }
                return;
            }
            Verdict::Refused { detail } => {
                endpoint.log_refusal(&detail);
                endpoint.metrics.failed(channel, failed::REJECTED);
                return;
            }
            Verdict::Retry {
                reason,
                after,
                detail,
            } => {
                if attempt >= max_attempts {
                    warn!(channel, host = %endpoint.host, attempts = attempt, detail, "notification not delivered; giving up");
                    endpoint.metrics.failed(channel, reason);
                    return;
                }
                // A receiver that names its own wait is obeyed (up to a bound); a rate limit
                // without one waits at least the schedule's time, everything else at most.
                let spread = if reason == failed::RATE_LIMITED {
                    Spread::Later
                } else {
                    Spread::Sooner
                };
                let wait = match after {
                    Some(after) => after.min(endpoint.tuning.max_retry_after),
                    None => backoff(&endpoint.tuning, attempt, spread),
                };
                debug!(channel, host = %endpoint.host, attempt, detail, wait_ms = wait.as_millis() as u64, "notification will be retried");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// A reqwest error and its causes, without the URL (which may carry a key).
fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn snippet(body: &[u8]) -> String {
    clip(String::from_utf8_lossy(body).trim())
}

fn clip(text: &str) -> String {
    truncate_chars(text, 200)
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            format!("{}…", &text[..end])
        }
        None => text.to_owned(),
    }
}

fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    // '…' is three bytes.
    format!("{}…", &text[..floor_char(text, max.saturating_sub(3))])
}

fn floor_char(text: &str, mut index: usize) -> usize {
    index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::notify::message::WorkloadKey;
    use crate::notify::message::tests::record;
    use crate::notify::pacer::{FailingNotice, FollowUp};

    fn dump() -> Arc<DumpNotice> {
        let record = record("shop", "web-0");
        Arc::new(DumpNotice {
            key: WorkloadKey::of(&record),
            record: Arc::new(record),
            url: "https://dl/x?a=1&b=2".into(),
            text: "Pod: shop/web-0 <!channel>".into(),
        })
    }

    #[test]
    fn shapes() {
        let message = Outgoing::Dump(dump());
        let (kind, body) = payload(Target::Wechat, &message).unwrap();
        assert_eq!(kind, "application/json");
        assert_eq!(
            body,
            json!({"msgtype": "markdown", "markdown": {"content": "Pod: shop/web-0 <!channel>"}})
        );

        let (_, body) = payload(Target::Slack, &message).unwrap();
        assert_eq!(body["text"], "Pod: shop/web-0 &lt;!channel&gt;");
        assert_eq!(body["blocks"][0]["type"], "section");
        assert_eq!(body["blocks"][0]["text"]["type"], "mrkdwn");
        assert_eq!(body["blocks"][0]["text"]["text"], body["text"]);

        let (_, body) = payload(Target::Webhook, &message).unwrap();
        assert_eq!(body["event"], "coredump.stored");
        assert_eq!(body["downloadUrl"], "https://dl/x?a=1&b=2");
        assert_eq!(body["message"], "Pod: shop/web-0 <!channel>");
        assert_eq!(body["record"]["namespace"], "shop");
        assert_eq!(body.as_object().unwrap().len(), 4);

        let (kind, body) = payload(Target::CoreSight, &message).unwrap();
        assert_eq!(kind, "application/cloudevents+json");
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["type"], CLOUDEVENT_TYPE);
        assert_eq!(body["source"], "coredog/node-1");
        assert_eq!(body["id"], dump().record.id.as_str());
        assert_eq!(body["time"], "2026-11-27T10:00:13Z");
        assert_eq!(body["data"]["hostPath"], "/corefile/x/core");

        let follow_up = Outgoing::FollowUp(Arc::new(FollowUp {
            text: "web in shop: 3 more".to_owned(),
            count: 3,
            latest: dump(),
        }));
        assert!(payload(Target::CoreSight, &follow_up).is_none());
        let (_, body) = payload(Target::Webhook, &follow_up).unwrap();
        assert_eq!(
            (body["event"].as_str(), body["count"].as_u64()),
            (Some("coredump.repeated"), Some(3))
        );

        let failing = Outgoing::UploadFailing(Arc::new(FailingNotice {
            host_path: "/corefile/a".to_owned(),
            reason: "denied".to_owned(),
            failing_for: Duration::from_secs(300),
            text: "t".to_owned(),
        }));
        let (_, body) = payload(Target::Webhook, &failing).unwrap();
        assert_eq!(body["event"], "coredump.upload_failing");
        assert_eq!(body["failingForSeconds"], 300);
    }

    #[test]
    fn long_texts_are_cut_where_receivers_cut_them() {
        let long = "数".repeat(2000);
        let body = wechat_body(&long);
        let content = body["markdown"]["content"].as_str().unwrap();
        assert!(content.len() <= WECOM_MAX_BYTES && content.ends_with('…'));
        let body = slack_body(&"x".repeat(5000));
        assert_eq!(
            body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            SLACK_SECTION_MAX_CHARS
        );
        assert_eq!(body["text"].as_str().unwrap().len(), 5000);
    }

    #[test]
    fn answers() {
        let ok = StatusCode::OK;
        let wecom = |body: &str| classify(Target::Wechat, ok, None, body.as_bytes());
        assert_eq!(wecom(r#"{"errcode":0,"errmsg":"ok"}"#), Verdict::Sent);
        assert!(matches!(
            wecom(r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#),
            Verdict::Retry {
                reason: failed::RATE_LIMITED,
                after: None,
                ..
            }
        ));
        assert!(matches!(
            wecom(r#"{"errcode":-1,"errmsg":"system busy"}"#),
            Verdict::Retry {
                reason: failed::UNAVAILABLE,
                ..
            }
        ));
        for body in [
            r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#,
            r#"{"errcode":40008,"errmsg":"invalid message type"}"#,
            "<html>proxy</html>",
        ] {
            assert!(matches!(wecom(body), Verdict::Refused { .. }), "{body}");
        }
        assert_eq!(classify(Target::Slack, ok, None, b"ok"), Verdict::Sent);
        assert_eq!(
            classify(Target::Slack, StatusCode::TOO_MANY_REQUESTS, Some("7"), b""),
            Verdict::Retry {
                reason: failed::RATE_LIMITED,
                after: Some(Duration::from_secs(7)),
                detail: "HTTP 429 Too Many Requests".to_owned()
            }
        );
        assert!(matches!(
            classify(Target::Webhook, StatusCode::BAD_GATEWAY, None, b""),
            Verdict::Retry {
                reason: failed::UNAVAILABLE,
                after: None,
                ..
            }
        ));
        assert!(matches!(
            classify(Target::CoreSight, StatusCode::UNAUTHORIZED, None, b"bad token"),
            Verdict::Refused { detail } if detail.contains("401") && detail.contains("bad token")
        ));
        assert!(matches!(
            classify(
                Target::Slack,
                StatusCode::NOT_FOUND,
                Some("3"),
                b"no_service"
            ),
            Verdict::Refused { .. }
        ));
    }

    #[test]
    fn backoffs_double_up_to_the_cap() {
        let tuning = Tuning {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            ..Tuning::default()
        };
        let even: Vec<u64> = (1..=7)
            .map(|a| backoff(&tuning, a, Spread::None).as_secs())
            .collect();
        assert_eq!(even, [1, 2, 4, 8, 16, 30, 30]);
        for attempt in 1..=7 {
            let plain = backoff(&tuning, attempt, Spread::None);
            let sooner = backoff(&tuning, attempt, Spread::Sooner);
            assert!(
                sooner >= plain / 2 && sooner <= plain,
                "{attempt}: {sooner:?}"
            );
            let later = backoff(&tuning, attempt, Spread::Later);
            assert!(
                later >= plain && later <= plain + plain / 2,
                "{attempt}: {later:?}"
            );
        }
        assert_eq!(
            backoff(&tuning, u32::MAX, Spread::None),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn coresight_urls() {
        for (given, posted) in [
            (
                "http://coresight-api:8000",
                "http://coresight-api:8000/api/v1/events",
            ),
            (
                "http://coresight-api:8000/",
                "http://coresight-api:8000/api/v1/events",
            ),
            (
                "https://cs.example/ingest/v2/events",
                "https://cs.example/ingest/v2/events",
            ),
            (
                "https://cs.example/hooks?tenant=a",
                "https://cs.example/hooks?tenant=a",
            ),
        ] {
            assert_eq!(coresight_url(given).unwrap().as_str(), posted);
        }
        for bad in ["coresight-api:8000", "nats://x:4222", "", "http://"] {
            let err = coresight_url(bad).unwrap_err();
            assert!(bad.is_empty() || !err.contains(bad), "{err}");
        }
    }

    #[test]
    fn texts_are_cut_on_character_boundaries() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcdefgh", 5), "abcd…");
        assert_eq!(truncate_bytes("ééé", 5), "é…");
        assert_eq!(truncate_bytes("ééé", 6), "ééé");
    }
}
