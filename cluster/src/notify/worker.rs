//! The task behind each channel: takes what the watcher queued, lets the [`Pacer`] decide, and
//! hands what is due to [`deliver`], one message at a time.
//!
//! The delivery runs as its own task so that while it backs off (a WeCom rate limit, a Slack
//! `Retry-After`) the queue is still read and crashes are still counted: the queue never
//! backs up into the watcher.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, warn};

use super::deliver::{Endpoint, deliver};
use super::metrics::{failed, suppressed};
use super::pacer::{Admission, DumpNotice, Outgoing, Pacer};

/// What the notifier queues for a channel.
#[derive(Debug)]
pub enum Event {
    /// A stored dump: the pacer decides whether it is announced, counted or folded.
    Dump(Arc<DumpNotice>),
    /// A message that is sent as it is, when the rate limit allows.
    Message(Outgoing),
}

/// Runs one channel until its queue is closed and everything is sent, or until the deadline
/// `stop` announces passes.
pub async fn run(
    mut queue: mpsc::Receiver<Event>,
    mut pacer: Pacer,
    endpoint: Arc<Endpoint>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let channel = endpoint.target.label();
    let metrics = endpoint.metrics.clone();
    let mut open = true;
    let mut stop_alive = true;
    let mut deadline: Option<Instant> = None;
    let mut in_flight: Option<JoinHandle<()>> = None;
    loop {
        let now = Instant::now();
        pacer.close_windows(now, false);
        if in_flight.is_none()
            && let Some(message) = pacer.next_ready(now)
        {
            let endpoint = Arc::clone(&endpoint);
            in_flight = Some(tokio::spawn(
                async move { deliver(&endpoint, &message).await },
            ));
        }
        if !open && in_flight.is_none() && pacer.is_idle() {
            return;
        }
        let wakeup = pacer.next_wakeup(now, in_flight.is_none());
        tokio::select! {
            event = queue.recv(), if open => match event {
                Some(Event::Dump(dump)) => match pacer.accept_dump(dump, Instant::now()) {
                    Admission::Queued => {}
                    Admission::Aggregated => metrics.suppressed(channel, suppressed::AGGREGATED),
                    Admission::RateLimited => metrics.suppressed(channel, suppressed::RATE_LIMITED),
                    Admission::Overflow => {
                        warn!(channel, host = %endpoint.host, "too many notifications waiting; a crash is not announced");
                        metrics.failed(channel, failed::QUEUE_FULL);
                    }
                },
                Some(Event::Message(message)) => {
                    if !pacer.accept(message) {
                        warn!(channel, host = %endpoint.host, "too many notifications waiting; a message is dropped");
                        metrics.failed(channel, failed::QUEUE_FULL);
                    }
                }
                None => {
                    // Closed by shutdown: the open windows owe their follow-ups now.
                    open = false;
                    pacer.close_windows(Instant::now(), true);
                }
            },
            () = sleep_until(wakeup) => {}
            finished = async {
                match in_flight.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                in_flight = None;
                if let Err(err) = finished {
                    error!(channel, host = %endpoint.host, error = %err, "a notification's delivery failed unexpectedly");
                }
            }
            changed = stop.changed(), if stop_alive && deadline.is_none() => match changed {
                Ok(()) => deadline = *stop.borrow_and_update(),
                // Dropped without a shutdown: no deadline, the channel finishes its work.
                Err(_) => stop_alive = false,
            },
            () = sleep_until(deadline) => {
                let mut unsent = pacer.unsent();
                if let Some(task) = in_flight.take() {
                    task.abort();
                    unsent += 1;
                }
                while queue.try_recv().is_ok() {
                    unsent += 1;
                }
                if unsent > 0 {
                    warn!(channel, host = %endpoint.host, unsent, "shutdown: notifications not sent in time");
                    metrics.failed_by(channel, failed::SHUTDOWN, unsent as u64);
                }
                return;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
