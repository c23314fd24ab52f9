//! `coredog_notifications_{sent,failed,suppressed}_total`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type ChannelLabel = [(&'static str, &'static str); 1];
type ReasonLabels = [(&'static str, &'static str); 2];

/// Why a message was not delivered (`failed_total{reason}`).
pub mod failed {
    /// The receiver refused it for good (a 4xx, a WeCom errcode other than rate limiting).
    pub const REJECTED: &str = "rejected";
    /// Still rate limited (429, WeCom 45009) after the last retry.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Network errors or 5xx until the last retry.
    pub const UNAVAILABLE: &str = "unavailable";
    /// The channel's queue (or its outbox, or its count of crashing workloads) was full.
    pub const QUEUE_FULL: &str = "queue_full";
    /// Still waiting when shutdown ran out of time.
    pub const SHUTDOWN: &str = "shutdown";
    /// The message could not be encoded.
    pub const ENCODE: &str = "encode";
}

/// Why a message was deliberately not sent on its own (`suppressed_total{reason}`).
pub mod suppressed {
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const AGGREGATED: &str = "aggregated";
    pub const KEYWORD: &str = "keyword";
}

#[derive(Clone, Default)]
pub struct NotifyMetrics {
    sent: Family<ChannelLabel, Counter>,
    failed: Family<ReasonLabels, Counter>,
    suppressed: Family<ReasonLabels, Counter>,
}

impl NotifyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("coredog_notifications");
        registry.register(
            "sent",
            "Messages delivered, by channel",
            metrics.sent.clone(),
        );
        registry.register(
            "failed",
            "Messages not delivered, by channel and reason",
            metrics.failed.clone(),
        );
        registry.register(
            "suppressed",
            "Crashes not announced on their own (counted in a follow-up, or filtered out), by channel and reason",
            metrics.suppressed.clone(),
        );
        metrics
    }

    pub fn sent(&self, channel: &'static str) {
        self.sent.get_or_create(&[("channel", channel)]).inc();
    }

    pub fn failed(&self, channel: &'static str, reason: &'static str) {
        self.failed_by(channel, reason, 1);
    }

    pub fn failed_by(&self, channel: &'static str, reason: &'static str, count: u64) {
        if count > 0 {
            self.failed
                .get_or_create(&[("channel", channel), ("reason", reason)])
                .inc_by(count);
        }
    }

    pub fn suppressed(&self, channel: &'static str, reason: &'static str) {
        self.suppressed
            .get_or_create(&[("channel", channel), ("reason", reason)])
            .inc();
    }
}
