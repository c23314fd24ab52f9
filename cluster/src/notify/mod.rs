//! Telling people: chat channels (WeCom robots, Slack incoming webhooks), generic webhooks and
//! CoreSight.
//!
//! The watcher calls [`Notifier::dump_stored`] and [`Notifier::upload_failing`]; both only
//! queue and return, so a slow or dead receiver never holds up an upload. Each configured
//! `NoticeChannel`, and CoreSight when enabled, has its own task ([`worker`]) fed through a
//! bounded queue; when a queue is full the message is dropped and counted
//! (`failed_total{reason="queue_full"}`), never waited for.
//!
//! How the parts fit:
//!
//! - [`message`]: which channels a crash concerns (`keyword`), the workload it belongs to, and
//!   the texts. Pure.
//! - [`pacer`]: a channel's rate limit (`rateLimitPerMinute`, a sliding minute), its
//!   aggregation windows (`aggregateWindowSeconds`) and its outbox. Pure; told the time.
//! - [`deliver`]: the bodies each receiver takes, how its answers are read, and the retries.
//! - [`worker`]: the per-channel task that ties the two together.
//!
//! Crash storms. The first crash of a workload (namespace, workload name, container,
//! executable; see [`message::WorkloadKey`]) is announced and opens a window of
//! `aggregateWindowSeconds`. Further crashes of that workload inside the window are only
//! counted; when the window closes, one follow-up says how many there were ("web in shop: 29
//! more core dumps in the last 5m (latest: `<file>`)"). A crash that would exceed the rate limit
//! is not dropped: it opens a window of its own and is told in that window's follow-up ("N
//! core dumps", without "more"). A follow-up that finds no slot keeps its window open, still
//! counting, until one frees up, ahead of the first crashes of other workloads, so nothing
//! piles up however many workloads crash; upload failures wait for the rate limit. With
//! `aggregateWindowSeconds: 0` repeats are announced one by one, and only what exceeds the
//! rate limit is folded, into windows of one rate period.
//!
//! The rate limit counts the messages this process sends. Every node runs its own watcher, so a
//! robot shared by many nodes can still see more than its limit; WeCom's answer to that
//! (errcode 45009) is retried with back-off.
//!
//! Retries: WeCom 45009 and -1, HTTP 429, 408, 5xx and network errors are retried, at most
//! [`Tuning::max_attempts`] attempts in all. A `Retry-After` (seconds) is obeyed up to
//! [`Tuning::max_retry_after`]; otherwise the wait doubles from [`Tuning::first_backoff`] up to
//! [`Tuning::max_backoff`], each wait drawn from its upper half, or for a rate limit from up to
//! half as long again (see [`deliver::Spread`]). Any other answer (another WeCom
//! errcode such as 93000, another 4xx) is final: logged once per distinct refusal and counted.
//!
//! CoreSight gets every stored dump as a structured-mode CloudEvent (no keyword, rate limit or
//! aggregation) at `CoreSight.apiUrl` when it has a path, else at `<apiUrl>/api/v1/events`:
//! old values files name only the host.
//!
//! Secrets: WeCom and Slack keep their key in the URL and CoreSight has a token; logs and errors
//! name a receiver by its kind and host only, and reqwest errors are stripped of their URL.
//!
//! Time is tokio's clock throughout, and the windows and back-offs come from the config and
//! [`Tuning`], so tests can run storms quickly.

pub mod deliver;
pub mod message;
pub mod metrics;
pub mod pacer;
pub mod worker;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coredog_core::config::{Config, CoreSight};
use coredog_core::record::DumpRecord;
use coredog_core::template::MessageTemplate;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use deliver::{Endpoint, Target, Token, coresight_url, parse_http_url};
use message::{WorkloadKey, keyword_matches, upload_failing_text, with_labels};
use metrics::{NotifyMetrics, failed, suppressed};
use pacer::{DumpNotice, FailingNotice, Outgoing, Pacer};
use worker::Event;

/// Tasks get this long past the shutdown deadline to count what they could not send.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(200);

/// Pacing and retry settings that are not in the config file. The defaults are for production;
/// tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Messages queued per channel before new ones are dropped.
    pub queue_capacity: usize,
    /// The period `rateLimitPerMinute` counts over.
    pub rate_period: Duration,
    /// Attempts per message, the first included.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles with each further one.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` obeyed; a longer one is waited as this.
    pub max_retry_after: Duration,
    /// One attempt, connection to answer.
    pub request_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
            rate_period: Duration::from_secs(60),
            // 1 + 2 + 4 + 8 + 16 + 30 s: a WeCom robot's rate-limit minute is over before the
            // last attempt.
            max_attempts: 7,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Sends notices for the watcher. Queues and returns at once: a notification never blocks or
/// undoes an upload.
pub struct Notifier {
    channels: Vec<ChatChannel>,
    core_sight: Option<Queue>,
    template: MessageTemplate,
    labels: Arc<BTreeMap<String, String>>,
    /// `labels` but those the template names, which are in its text already.
    labels_after_template: BTreeMap<String, String>,
    /// Host paths whose failure has been announced.
    failing_announced: Mutex<HashSet<String>>,
    metrics: NotifyMetrics,
    stop: watch::Sender<Option<Instant>>,
    tasks: Vec<JoinHandle<()>>,
}

struct Queue {
    target: Target,
    host: String,
    sender: mpsc::Sender<Event>,
}

struct ChatChannel {
    keyword: String,
    queue: Queue,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Config(String),
    #[error("CoreSight.tokenFile {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error("notifications need a tokio runtime to run in")]
    NoRuntime,
}

impl Notifier {
    /// Checks the channels (URLs, CoreSight's token, read now), registers the
    /// `coredog_notifications_*` metrics in `registry` (once per registry) and starts one task
    /// per channel on the current tokio runtime.
    pub fn from_config(
        config: &Config,
        http: reqwest::Client,
        registry: &mut Registry,
    ) -> Result<Self, NotifyError> {
        Self::with_tuning(config, http, registry, Tuning::default())
    }

    /// [`Notifier::from_config`] with other pacing and retry settings.
    pub fn with_tuning(
        config: &Config,
        http: reqwest::Client,
        registry: &mut Registry,
        tuning: Tuning,
    ) -> Result<Self, NotifyError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        let template = config
            .message_template()
            .map_err(|err| NotifyError::Config(err.to_string()))?;
        let labels = Arc::new(config.message_labels.clone());
        // Labels the template names itself are in a dump's text already; the others follow it.
        let labels_after_template = config
            .message_labels
            .iter()
            .filter(|(key, _)| !template.uses_label(key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();

        let mut chats = Vec::new();
        for (index, channel) in config.notice_channels.iter().enumerate() {
            let target = Target::from(channel.chan);
            let url = parse_http_url(channel.webhookurl.trim()).map_err(|err| {
                NotifyError::Config(format!(
                    "NoticeChannel[{index}] ({}): webhookurl is {err}",
                    target.label()
                ))
            })?;
            if channel.rate_limit_per_minute == 0 {
                return Err(NotifyError::Config(format!(
                    "NoticeChannel[{index}] ({}): rateLimitPerMinute must be at least 1",
                    target.label()
                )));
            }
            chats.push((channel, target, url));
        }
        let core_sight = if config.core_sight.enabled {
            Some(core_sight_endpoint(&config.core_sight)?)
        } else {
            None
        };

        let metrics = NotifyMetrics::register(registry);
        let (stop, _) = watch::channel(None);
        let mut tasks = Vec::new();
        let mut start = |endpoint: Endpoint, pacer: Pacer| {
            let (sender, receiver) = mpsc::channel(tuning.queue_capacity.max(1));
            let endpoint = Arc::new(endpoint);
            let queue = Queue {
                target: endpoint.target,
                host: endpoint.host.clone(),
                sender,
            };
            tasks.push(runtime.spawn(worker::run(receiver, pacer, endpoint, stop.subscribe())));
            queue
        };

        let mut channels = Vec::new();
        for (channel, target, url) in chats {
            let endpoint = Endpoint::new(target, url, None, http.clone(), tuning, metrics.clone());
            let pacer = Pacer::limited(
                channel.rate_limit_per_minute,
                tuning.rate_period,
                Duration::from_secs(channel.aggregate_window_seconds.into()),
                Arc::clone(&labels),
            );
            let queue = start(endpoint, pacer);
            info!(
                channel = target.label(),
                host = %queue.host,
                keyword = %channel.keyword,
                rate_limit_per_minute = channel.rate_limit_per_minute,
                aggregate_window_seconds = channel.aggregate_window_seconds,
                "notification channel ready"
            );
            channels.push(ChatChannel {
                keyword: channel.keyword.clone(),
                queue,
            });
        }
        let core_sight = core_sight.map(|(url, token)| {
            let endpoint = Endpoint::new(
                Target::CoreSight,
                url,
                Some(token),
                http.clone(),
                tuning,
                metrics.clone(),
            );
            let queue = start(endpoint, Pacer::unlimited());
            info!(channel = "coresight", host = %queue.host, "notification channel ready");
            queue
        });

        Ok(Self {
            channels,
            core_sight,
            template,
            labels,
            labels_after_template,
            failing_announced: Mutex::new(HashSet::new()),
            metrics,
            stop,
            tasks,
        })
    }

    /// A dump and its record are stored; `download_url` is a presigned GET or the CFS path.
    pub fn dump_stored(&self, record: &DumpRecord, download_url: &str) {
        let mut matching = Vec::new();
        for channel in &self.channels {
            if keyword_matches(&channel.keyword, record) {
                matching.push(&channel.queue);
            } else {
                self.metrics
                    .suppressed(channel.queue.target.label(), suppressed::KEYWORD);
            }
        }
        if matching.is_empty() && self.core_sight.is_none() {
            return;
        }
        let record = Arc::new(record.clone());
        let text = with_labels(
            &self.template.render(&record, download_url),
            &self.labels_after_template,
        );
        let notice = Arc::new(DumpNotice {
            key: WorkloadKey::of(&record),
            record,
            url: download_url.into(),
            text: text.into(),
        });
        for queue in matching.into_iter().chain(&self.core_sight) {
            self.enqueue(queue, Event::Dump(Arc::clone(&notice)));
        }
    }

    /// Shipping `host_path` has been failing for `failing_for`; announced once per file (until
    /// [`Notifier::upload_failure_over`]) on every chat and webhook channel.
    pub fn upload_failing(&self, host_path: &str, reason: &str, failing_for: Duration) {
        let first = self
            .failing_announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(host_path.to_owned());
        if !first || self.channels.is_empty() {
            return;
        }
        let text = with_labels(
            &upload_failing_text(host_path, reason, failing_for),
            &self.labels,
        );
        let notice = Arc::new(FailingNotice {
            host_path: host_path.to_owned(),
            reason: reason.to_owned(),
            failing_for,
            text,
        });
        for channel in &self.channels {
            let message = Outgoing::UploadFailing(Arc::clone(&notice));
            self.enqueue(&channel.queue, Event::Message(message));
        }
    }

    /// `host_path` was stored after all, or is gone: a later failure of the same path is
    /// announced again.
    pub fn upload_failure_over(&self, host_path: &str) {
        self.failing_announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(host_path);
    }

    /// Stops taking messages and sends what is queued, the follow-ups of open aggregation
    /// windows included, waiting at most `timeout`. What is still unsent then is counted as
    /// `failed_total{reason="shutdown"}`.
    pub async fn shutdown(self, timeout: Duration) {
        let Self {
            channels,
            core_sight,
            stop,
            tasks,
            ..
        } = self;
        // A timeout too long to represent is no timeout.
        let deadline = Instant::now().checked_add(timeout);
        stop.send_replace(deadline);
        // Closing the queues is what tells the tasks to flush.
        drop(channels);
        drop(core_sight);
        for mut task in tasks {
            let limit = deadline.and_then(|deadline| deadline.checked_add(SHUTDOWN_GRACE));
            let outcome = match limit {
                Some(limit) => match tokio::time::timeout_at(limit, &mut task).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        task.abort();
                        continue;
                    }
                },
                None => task.await,
            };
            if let Err(err) = outcome {
                error!(error = %err, "a notification channel's task failed");
            }
        }
    }

    fn enqueue(&self, queue: &Queue, event: Event) {
        let channel = queue.target.label();
        match queue.sender.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                warn!(channel, host = %queue.host, "notification queue full; message dropped");
                self.metrics.failed(channel, failed::QUEUE_FULL);
            }
            Err(TrySendError::Closed(_)) => {
                warn!(channel, host = %queue.host, "notification channel stopped; message dropped");
                self.metrics.failed(channel, failed::SHUTDOWN);
            }
        }
    }
}

/// CoreSight's events URL and token. A token file is read now, so a missing one is a startup
/// error rather than a failure at the first crash, and again before each request.
fn core_sight_endpoint(config: &CoreSight) -> Result<(reqwest::Url, Token), NotifyError> {
    let url = coresight_url(&config.api_url)
        .map_err(|err| NotifyError::Config(format!("CoreSight.apiUrl is {err}")))?;
    let no_token = || {
        NotifyError::Config(
            "CoreSight is enabled but has no token: set CoreSight.token or CoreSight.tokenFile (a non-empty file)".to_owned(),
        )
    };
    let token = match (
        config.token.trim(),
        config.token_file.as_deref().map(str::trim),
    ) {
        (token, _) if !token.is_empty() => Token::Inline(token.to_owned()),
        (_, Some(path)) if !path.is_empty() => {
            let token = std::fs::read_to_string(path)
                .map_err(|source| NotifyError::TokenFile {
                    path: path.to_owned(),
                    source,
                })?
                .trim()
                .to_owned();
            if token.is_empty() {
                return Err(no_token());
            }
            Token::File {
                path: path.into(),
                last: Mutex::new(token),
            }
        }
        _ => return Err(no_token()),
    };
    Ok((url, token))
}
