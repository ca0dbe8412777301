//! The drain's JSON summary, and the same figures as CloudWatch Embedded Metric Format.

use serde::{Deserialize, Serialize};

use crate::telemetry::emf_line;

/// Quota of one kind after the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSummary {
    pub limit: u32,
    pub used: u32,
    pub left: u32,
}

/// Records delivered, per kind of request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerKind {
    pub batch: u32,
    pub individual: u32,
}

/// Why a run did nothing, when it did nothing on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Idle {
    /// Another drain holds the lease.
    LeaseHeld,
    /// The provider circuit is open (recent outage); calls resume after the cool-down.
    CircuitOpen,
    /// No quota left this window (or none due this run).
    NoQuota,
    /// Too close to the invocation's deadline to start.
    Deadline,
}

/// What one drain run did. Counts are messages unless named otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// Set when the run did nothing on purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<Idle>,
    pub window_start: i64,
    pub window_ends_in_s: i64,
    /// Messages planned for this run (decided before receiving).
    pub planned_receive: u32,
    pub received: u32,
    /// Messages merged into another message's record.
    pub coalesced: u32,
    /// Fields not sent because they equal the last synced value.
    pub skipped_unchanged: u32,
    /// Fields not sent because a newer value was already synced.
    pub skipped_stale: u32,
    /// Messages deleted without a provider call (everything in them was already delivered).
    pub absorbed: u32,
    /// Provider records delivered, per kind.
    pub delivered: PerKind,
    /// Provider requests made that succeeded, per kind.
    pub requests: PerKind,
    /// Messages deleted after delivery.
    pub deleted: u32,
    /// Messages made visible again for lack of quota (429 or a deadline), not counted as failures.
    pub deferred: u32,
    /// Messages made visible again after a transient failure, with backoff.
    pub retried: u32,
    /// Messages sent to the DLQ (malformed or rejected by the provider).
    pub dead_lettered: u32,
    /// 429 answers from the provider.
    pub rate_limited: u32,
    /// Transient provider failures (5xx, timeouts, connection errors).
    pub provider_errors: u32,
    /// The circuit was opened by this run.
    pub circuit_opened: bool,
    pub quota_batch: QuotaSummary,
    pub quota_individual: QuotaSummary,
    pub duration_ms: u64,
}

impl DrainReport {
    pub fn delivered_records(&self) -> u32 {
        self.delivered.batch + self.delivered.individual
    }

    /// The report as one EMF line (namespace `Sluice`, dimension `Stack`), for the dashboard and alarms.
    pub fn emf(&self, stack: &str, timestamp_ms: i64) -> String {
        let f = |n: u32| f64::from(n);
        let metrics = [
            ("Received", f(self.received)),
            ("Coalesced", f(self.coalesced)),
            ("SkippedUnchanged", f(self.skipped_unchanged)),
            ("SkippedStale", f(self.skipped_stale)),
            ("DeliveredBatchRecords", f(self.delivered.batch)),
            ("DeliveredIndividualRecords", f(self.delivered.individual)),
            ("BatchRequests", f(self.requests.batch)),
            ("IndividualRequests", f(self.requests.individual)),
            ("Deferred", f(self.deferred)),
            (
                "DeferredRuns",
                if self.idle == Some(Idle::NoQuota) {
                    1.0
                } else {
                    0.0
                },
            ),
            ("Retried", f(self.retried)),
            ("DeadLettered", f(self.dead_lettered)),
            ("Provider429", f(self.rate_limited)),
            ("BatchQuotaUsed", f(self.quota_batch.used)),
            ("BatchQuotaLeft", f(self.quota_batch.left)),
            ("IndividualQuotaUsed", f(self.quota_individual.used)),
            ("IndividualQuotaLeft", f(self.quota_individual.left)),
            ("DrainDurationMs", self.duration_ms as f64),
        ];
        emf_line("Sluice", &[("Stack", stack)], &metrics, timestamp_ms)
    }
}
