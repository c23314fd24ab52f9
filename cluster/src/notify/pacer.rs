//! One channel's bookkeeping for crash storms: the rate limit, the aggregation windows and the
//! queue of messages waiting to go out. Pure: every method is told the time, so the tests walk
//! through hours of storms in microseconds.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use coredog_core::record::DumpRecord;
use tokio::time::Instant;

use super::message::{WorkloadKey, follow_up_text, with_labels};

/// At most `limit` messages started in any `period` (a sliding window over the start times).
#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    period: Duration,
    starts: VecDeque<Instant>,
}

impl RateLimiter {
    pub fn new(limit: u32, period: Duration) -> Self {
        Self {
            limit: limit.max(1) as usize,
            period,
            starts: VecDeque::new(),
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .starts
            .front()
            .is_some_and(|start| now.saturating_duration_since(*start) >= self.period)
        {
            self.starts.pop_front();
        }
    }

    /// Messages started in the last period.
    pub fn used(&mut self, now: Instant) -> usize {
        self.forget_old(now);
        self.starts.len()
    }

    /// Takes a slot for a message started now, if there is one.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        if self.used(now) < self.limit {
            self.starts.push_back(now);
            true
        } else {
            false
        }
    }

    /// When the next slot frees up (now, when one is free).
    pub fn next_free(&mut self, now: Instant) -> Instant {
        if self.used(now) < self.limit {
            return now;
        }
        self.starts
            .front()
            .map_or(now, |oldest| *oldest + self.period)
    }
}

/// A stored dump as every channel sees it; rendered once, shared by all.
#[derive(Debug)]
pub struct DumpNotice {
    pub key: WorkloadKey,
    pub record: Arc<DumpRecord>,
    pub url: Arc<str>,
    /// The rendered template with the message labels.
    pub text: Arc<str>,
}

/// The repeats of one workload's crash, told in one message.
#[derive(Debug)]
pub struct FollowUp {
    pub text: String,
    pub count: u32,
    pub latest: Arc<DumpNotice>,
}

/// The one notice about a dump that cannot be stored.
#[derive(Debug)]
pub struct FailingNotice {
    pub host_path: String,
    pub reason: String,
    pub failing_for: Duration,
    pub text: String,
}

/// A message ready to go out on a channel.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Dump(Arc<DumpNotice>),
    FollowUp(Arc<FollowUp>),
    UploadFailing(Arc<FailingNotice>),
}

/// What became of a crash handed to [`Pacer::accept_dump`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Admission {
    /// Queued to be announced on its own.
    Queued,
    /// Counted in the workload's open window.
    Aggregated,
    /// Over the rate limit: counted in a window instead, told in its follow-up.
    RateLimited,
    /// Neither announced nor counted: too many messages or workloads at once.
    Overflow,
}

#[derive(Debug)]
struct Window {
    opened_at: Instant,
    closes_at: Instant,
    /// Over, and its follow-up waiting for a slot: it counts as a message waiting.
    held: bool,
    first_announced: bool,
    /// Crashes not announced on their own.
    count: u32,
    latest: Option<Arc<DumpNotice>>,
}

/// How soon a held follow-up is looked at again, at the soonest.
const HELD_RETRY: Duration = Duration::from_secs(1);

/// Workloads with an open window, per channel; beyond this a node is not having a crash storm
/// but a meltdown, and counting more workloads only costs memory.
pub const MAX_WINDOWS: usize = 4096;
/// Messages waiting for a slot under the rate limit, per channel.
pub const MAX_OUTBOX: usize = 4096;

/// A channel's rate limit, aggregation windows and outbox.
#[derive(Debug)]
pub struct Pacer {
    limiter: Option<RateLimiter>,
    /// How long the repeats of an announced crash are gathered; zero: not gathered.
    aggregate: Duration,
    /// How long crashes held back by the rate limit are gathered when `aggregate` is zero.
    fold: Duration,
    windows: HashMap<WorkloadKey, Window>,
    outbox: VecDeque<Outgoing>,
    labels: Arc<BTreeMap<String, String>>,
}

impl Pacer {
    /// A chat channel: at most `per_period` messages a `period`, repeats gathered for
    /// `aggregate`.
    pub fn limited(
        per_period: u32,
        period: Duration,
        aggregate: Duration,
        labels: Arc<BTreeMap<String, String>>,
    ) -> Self {
        Self {
            limiter: Some(RateLimiter::new(per_period, period)),
            aggregate,
            fold: if aggregate.is_zero() {
                period
            } else {
                aggregate
            },
            windows: HashMap::new(),
            outbox: VecDeque::new(),
            labels,
        }
    }

    /// Every message goes out, in order, as fast as the receiver takes them.
    pub fn unlimited() -> Self {
        Self {
            limiter: None,
            aggregate: Duration::ZERO,
            fold: Duration::ZERO,
            windows: HashMap::new(),
            outbox: VecDeque::new(),
            labels: Arc::default(),
        }
    }

    /// Whether one more message can be promised a slot in the current period: the slots used,
    /// and those the waiting messages will take, leave one free.
    fn has_room(&mut self, now: Instant) -> bool {
        let waiting = self.outbox.len() + self.windows.values().filter(|w| w.held).count();
        match &mut self.limiter {
            Some(limiter) => limiter.used(now) + waiting < limiter.limit,
            None => waiting < MAX_OUTBOX,
        }
    }

    pub fn accept_dump(&mut self, dump: Arc<DumpNotice>, now: Instant) -> Admission {
        self.close_windows(now, false);
        if let Some(window) = self.windows.get_mut(&dump.key) {
            window.count = window.count.saturating_add(1);
            window.latest = Some(dump);
            return Admission::Aggregated;
        }
        if self.has_room(now) {
            if !self.aggregate.is_zero() && self.windows.len() < MAX_WINDOWS {
                self.windows.insert(
                    dump.key.clone(),
                    Window {
                        opened_at: now,
                        closes_at: now + self.aggregate,
                        held: false,
                        first_announced: true,
                        count: 0,
                        latest: None,
                    },
                );
            }
            self.outbox.push_back(Outgoing::Dump(dump));
            return Admission::Queued;
        }
        // Without a rate limit there is nothing to fold into: no room means the outbox is full.
        if self.limiter.is_none() || self.windows.len() >= MAX_WINDOWS {
            return Admission::Overflow;
        }
        self.windows.insert(
            dump.key.clone(),
            Window {
                opened_at: now,
                closes_at: now + self.fold,
                held: false,
                first_announced: false,
                count: 1,
                latest: Some(dump),
            },
        );
        Admission::RateLimited
    }

    /// Queues a message that is never folded (it waits for a slot instead); false when the
    /// outbox is full.
    pub fn accept(&mut self, message: Outgoing) -> bool {
        if self.outbox.len() >= MAX_OUTBOX {
            return false;
        }
        self.outbox.push_back(message);
        true
    }

    /// Closes the windows that are over (all of them with `all`), queueing their follow-ups.
    pub fn close_windows(&mut self, now: Instant, all: bool) {
        if self.windows.is_empty() {
            return;
        }
        let mut closed: Vec<(WorkloadKey, Window)> = self
            .windows
            .extract_if(|_, window| all || window.closes_at <= now)
            .collect();
        // Oldest first, so follow-ups go out in the order the storms began.
        closed.sort_by_key(|(_, window)| window.opened_at);
        for (key, mut window) in closed {
            if window.count == 0 || window.latest.is_none() {
                continue;
            }
            // No slot for its follow-up yet: it keeps counting rather than wait in the outbox,
            // which would grow for as long as more workloads crash than the limit lets through
            // (a node where everything crashes). Held, it counts as waiting, so that first
            // crashes of other workloads do not take every slot before it; it is looked at
            // again when the next slot frees up.
            if !all && !self.has_room(now) {
                window.held = true;
                window.closes_at = match &mut self.limiter {
                    Some(limiter) => limiter.next_free(now).max(now + HELD_RETRY),
                    None => now + HELD_RETRY,
                };
                self.windows.insert(key, window);
                continue;
            }
            let Some(latest) = window.latest else {
                continue;
            };
            let span = now
                .min(window.closes_at)
                .saturating_duration_since(window.opened_at);
            let text = follow_up_text(
                &key,
                window.count,
                window.first_announced,
                span,
                latest.record.file_name(),
                &latest.url,
            );
            self.outbox.push_back(Outgoing::FollowUp(Arc::new(FollowUp {
                text: with_labels(&text, &self.labels),
                count: window.count,
                latest,
            })));
        }
    }

    /// The next message to send now, taking its slot under the rate limit.
    pub fn next_ready(&mut self, now: Instant) -> Option<Outgoing> {
        self.outbox.front()?;
        if let Some(limiter) = &mut self.limiter
            && !limiter.try_acquire(now)
        {
            return None;
        }
        self.outbox.pop_front()
    }

    /// When there will be something to do without anything arriving: a window closing or, when
    /// `sending_allowed`, a waiting message's slot freeing up.
    pub fn next_wakeup(&mut self, now: Instant, sending_allowed: bool) -> Option<Instant> {
        let window = self.windows.values().map(|w| w.closes_at).min();
        let slot = match (
            &mut self.limiter,
            self.outbox.is_empty() || !sending_allowed,
        ) {
            (_, true) => None,
            (Some(limiter), false) => Some(limiter.next_free(now)),
            (None, false) => Some(now),
        };
        window.into_iter().chain(slot).min()
    }

    /// Messages not yet sent: those waiting and the follow-ups the open windows owe.
    pub fn unsent(&self) -> usize {
        self.outbox.len() + self.windows.values().filter(|w| w.count > 0).count()
    }

    pub fn is_idle(&self) -> bool {
        self.outbox.is_empty() && self.windows.values().all(|w| w.count == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::record;

    const MINUTE: Duration = Duration::from_secs(60);

    fn dump(namespace: &str, pod: &str, n: u32) -> Arc<DumpNotice> {
        let mut record = record(namespace, pod);
        record.key = format!("corefiles/{namespace}/{pod}/core-{n}.core.zst");
        Arc::new(DumpNotice {
            key: WorkloadKey::of(&record),
            record: Arc::new(record),
            url: format!("https://dl/{n}").into(),
            text: format!("crash {n}").into(),
        })
    }

    fn text(message: &Outgoing) -> String {
        match message {
            Outgoing::Dump(d) => d.text.to_string(),
            Outgoing::FollowUp(f) => f.text.clone(),
            Outgoing::UploadFailing(f) => f.text.clone(),
        }
    }

    /// Runs the pacer like its task does, sending whatever is ready at each wake-up, and
    /// returns what went out when.
    fn drain_until(pacer: &mut Pacer, start: Instant, end: Instant) -> Vec<(Duration, String)> {
        let mut sent = Vec::new();
        let mut now = start;
        while now <= end {
            pacer.close_windows(now, false);
            while let Some(message) = pacer.next_ready(now) {
                sent.push((now - start, text(&message)));
            }
            match pacer.next_wakeup(now, true) {
                Some(next) if next > now => now = next,
                _ => break,
            }
        }
        sent
    }

    #[test]
    fn the_rate_limiter_slides() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(2, MINUTE);
        assert!(limiter.try_acquire(t0));
        assert!(limiter.try_acquire(t0 + Duration::from_secs(10)));
        assert!(!limiter.try_acquire(t0 + Duration::from_secs(20)));
        assert_eq!(limiter.next_free(t0 + Duration::from_secs(20)), t0 + MINUTE);
        assert!(limiter.try_acquire(t0 + MINUTE));
        assert!(!limiter.try_acquire(t0 + MINUTE + Duration::from_secs(9)));
        assert!(limiter.try_acquire(t0 + MINUTE + Duration::from_secs(10)));
    }

    #[test]
    fn a_crash_storm_is_one_message_and_one_follow_up() {
        let t0 = Instant::now();
        let mut pacer = Pacer::limited(20, MINUTE, Duration::from_secs(300), Arc::default());
        let mut admissions = Vec::new();
        for n in 0..30 {
            let pod = format!("web-7d9f8b6c5d-x2x{}z", n % 10);
            admissions
                .push(pacer.accept_dump(dump("shop", &pod, n), t0 + Duration::from_secs(n.into())));
        }
        assert_eq!(admissions[0], Admission::Queued);
        assert!(admissions[1..].iter().all(|a| *a == Admission::Aggregated));

        let sent = drain_until(&mut pacer, t0, t0 + Duration::from_secs(3600));
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(sent[0], (Duration::ZERO, "crash 0".to_owned()));
        assert_eq!(sent[1].0, Duration::from_secs(300));
        assert!(
            sent[1].1.starts_with(
                "web in shop: 29 more core dumps in the last 5m (latest: core-29.core.zst)"
            ),
            "{}",
            sent[1].1
        );
        assert!(pacer.is_idle());

        // The storm goes on after the window: a new announcement, a new window.
        let later = t0 + Duration::from_secs(400);
        assert_eq!(
            pacer.accept_dump(dump("shop", "web-0", 99), later),
            Admission::Queued
        );
    }

    #[test]
    fn never_more_than_the_limit_a_minute_and_nothing_is_lost() {
        let t0 = Instant::now();
        let labels = Arc::new(std::collections::BTreeMap::from([(
            "cluster".to_owned(),
            "prod".to_owned(),
        )]));
        let mut pacer = Pacer::limited(20, MINUTE, Duration::from_secs(300), labels);
        let mut admissions = HashMap::new();
        // 100 workloads crash three times each within ten seconds.
        for round in 0..3u32 {
            for w in 0..100u32 {
                let at = t0 + Duration::from_millis(u64::from(round * 3000 + w * 10));
                let admission =
                    pacer.accept_dump(dump("ns", &format!("w{w}-0"), round * 100 + w), at);
                *admissions.entry(admission).or_insert(0) += 1;
            }
            // The first sends happen while the storm is still going.
            if round == 0 {
                let now = t0 + Duration::from_secs(1);
                while pacer.next_ready(now).is_some() {}
            }
        }
        assert_eq!(admissions[&Admission::Queued], 20);
        assert_eq!(admissions[&Admission::RateLimited], 80);
        assert_eq!(admissions[&Admission::Aggregated], 200);

        let sent = drain_until(
            &mut pacer,
            t0 + Duration::from_secs(1),
            t0 + Duration::from_secs(4 * 3600),
        );
        // 80 follow-ups for the workloads never announced; 20 announced ones each have two
        // repeats in their follow-up.
        assert_eq!(sent.len(), 100, "{sent:?}");
        let told: u32 = sent
            .iter()
            .map(|(_, text)| {
                let count = text.split(": ").nth(1).and_then(|t| t.split(' ').next());
                count.and_then(|c| c.parse::<u32>().ok()).unwrap_or(0)
            })
            .sum();
        assert_eq!(told, 80 * 3 + 20 * 2);
        assert!(
            sent.iter()
                .all(|(_, text)| text.ends_with("\ncluster: prod"))
        );
        // Counting the 20 sent at t0+1s, no minute sees more than 20.
        let mut starts: Vec<Duration> = vec![Duration::ZERO; 20];
        starts.extend(sent.iter().map(|(at, _)| *at));
        for (i, start) in starts.iter().enumerate() {
            let in_minute = starts[i..].iter().filter(|s| **s - *start < MINUTE).count();
            assert!(
                in_minute <= 20,
                "{in_minute} messages in the minute from {start:?}"
            );
        }
    }

    #[test]
    fn without_aggregation_only_what_exceeds_the_limit_is_folded() {
        let t0 = Instant::now();
        let mut pacer = Pacer::limited(2, MINUTE, Duration::ZERO, Arc::default());
        let admissions: Vec<_> = (0..5)
            .map(|n| pacer.accept_dump(dump("ns", "web-0", n), t0))
            .collect();
        assert_eq!(
            admissions,
            [
                Admission::Queued,
                Admission::Queued,
                Admission::RateLimited,
                Admission::Aggregated,
                Admission::Aggregated
            ]
        );
        let sent = drain_until(&mut pacer, t0, t0 + Duration::from_secs(600));
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert_eq!(sent[2].0, MINUTE);
        assert!(
            sent[2]
                .1
                .starts_with("web in ns: 3 core dumps in the last 1m"),
            "{}",
            sent[2].1
        );
    }

    #[test]
    fn a_storm_of_more_workloads_than_the_limit_stays_bounded_and_loses_nothing() {
        let t0 = Instant::now();
        let mut pacer = Pacer::limited(2, MINUTE, Duration::ZERO, Arc::default());
        // Ten workloads crash every 5 s for 20 minutes, with sending all along.
        let mut crashes = 0u32;
        let mut sent = Vec::new();
        for tick in 0..240u32 {
            let now = t0 + Duration::from_secs(u64::from(tick) * 5);
            for w in 0..10u32 {
                pacer.accept_dump(dump("ns", &format!("w{w}-0"), crashes), now);
                crashes += 1;
            }
            pacer.close_windows(now, false);
            while let Some(message) = pacer.next_ready(now) {
                sent.push(text(&message));
            }
            // At most the limit's worth of messages waiting, and one window per workload.
            assert!(
                pacer.unsent() <= 2 + 10,
                "{} waiting at {tick}",
                pacer.unsent()
            );
        }
        let end = t0 + Duration::from_secs(1200);
        sent.extend(
            drain_until(&mut pacer, end, end + Duration::from_secs(3600))
                .into_iter()
                .map(|(_, text)| text),
        );
        // Every crash is told: announced alone, or counted in a follow-up.
        let told: u32 = sent
            .iter()
            .map(|text| {
                let count = text.split(": ").nth(1).and_then(|t| t.split(' ').next());
                count.and_then(|c| c.parse::<u32>().ok()).unwrap_or(1)
            })
            .sum();
        assert_eq!(told, crashes);
    }

    #[test]
    fn closing_everything_flushes_follow_ups_with_the_real_span() {
        let t0 = Instant::now();
        let mut pacer = Pacer::limited(20, MINUTE, Duration::from_secs(300), Arc::default());
        for n in 0..4 {
            pacer.accept_dump(dump("ns", "db-0", n), t0);
        }
        pacer.accept_dump(dump("ns", "cache-0", 9), t0);
        assert_eq!(pacer.unsent(), 3);
        pacer.close_windows(t0 + Duration::from_secs(42), true);
        let now = t0 + Duration::from_secs(42);
        let texts: Vec<_> = std::iter::from_fn(|| pacer.next_ready(now))
            .map(|m| text(&m))
            .collect();
        assert_eq!(texts.len(), 3);
        assert!(
            texts[2].starts_with("db in ns: 3 more core dumps in the last 42s"),
            "{texts:?}"
        );
        assert!(pacer.is_idle());
    }

    #[test]
    fn unlimited_passes_everything_in_order() {
        let t0 = Instant::now();
        let mut pacer = Pacer::unlimited();
        for n in 0..50 {
            assert_eq!(
                pacer.accept_dump(dump("ns", "db-0", n), t0),
                Admission::Queued
            );
        }
        assert_eq!(pacer.next_wakeup(t0, true), Some(t0));
        let texts: Vec<_> = std::iter::from_fn(|| pacer.next_ready(t0))
            .map(|m| text(&m))
            .collect();
        assert_eq!(texts.len(), 50);
        assert_eq!(texts[49], "crash 49");
    }
}
