//! The drain's JSON summary, and the same figures as CloudWatch Embedded Metric Format.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::domain::Priority;
use crate::ports::Reply;
use crate::telemetry::emf_line;

/// Provider calls of one kind in one run: how many, how they ended, how long they took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCalls {
    pub calls: u32,
    /// Answered 2xx.
    pub ok: u32,
    /// Answered 4xx (429 included).
    pub client_errors: u32,
    /// Answered 5xx, or no answer (timeout, connection).
    pub server_errors: u32,
    pub total_ms: u64,
    pub max_ms: u64,
}

impl KindCalls {
    pub fn record(&mut self, reply: &Reply, elapsed: std::time::Duration) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.calls += 1;
        self.total_ms = self.total_ms.saturating_add(ms);
        self.max_ms = self.max_ms.max(ms);
        match (reply.result.is_ok(), reply.info.status) {
            (true, _) => self.ok += 1,
            (false, Some(s)) if (400..500).contains(&s) => self.client_errors += 1,
            (false, Some(_)) => self.server_errors += 1,
            // The in-memory provider gives no status: classify by the error.
            (false, None) => match &reply.result {
                Err(crate::ports::ProviderError::Transient { .. }) => self.server_errors += 1,
                _ => self.client_errors += 1,
            },
        }
    }

    pub fn mean_ms(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.total_ms as f64 / f64::from(self.calls)
        }
    }
}

/// Provider calls of one run, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStats {
    pub batch: KindCalls,
    pub individual: KindCalls,
    /// Half-open probes made.
    pub probe: u32,
}

/// Quota of one kind after the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSummary {
    pub limit: u32,
    pub used: u32,
    pub left: u32,
    /// Of `used`, the units adopted from the provider's count (another client's requests).
    #[serde(default)]
    pub adopted: u32,
}

/// Records delivered, per kind of request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerKind {
    pub batch: u32,
    pub individual: u32,
}

impl PerKind {
    pub fn get_mut(&mut self, kind: crate::ports::QuotaKind) -> &mut u32 {
        match kind {
            crate::ports::QuotaKind::Batch => &mut self.batch,
            crate::ports::QuotaKind::Individual => &mut self.individual,
        }
    }
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
    /// Too close to the invocation's deadline, or to the end of the quota window, to start a call
    /// (`"deadline"` in the JSON summary).
    #[serde(rename = "deadline")]
    NoTimeToSend,
}

/// One lane's figures in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneFigures {
    /// Visible messages on the lane's queue when the run planned (approximate).
    pub backlog: u64,
    /// Messages received from it.
    pub received: u32,
}

/// What one drain run did. Counts are messages unless named otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// Set when the run did nothing on purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<Idle>,
    /// The quota window's start (a rolling window: a window length before the run started).
    pub window_start: i64,
    /// Seconds to the window's end (0 for a rolling window: it ends as the run starts).
    pub window_ends_in_s: i64,
    /// Messages planned for this run (decided before receiving).
    pub planned_receive: u32,
    /// Visible messages when the run planned (approximate).
    pub backlog: u64,
    /// Backlog and receive of each lane with a queue of its own (`high`, `normal`, `bulk`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lanes: BTreeMap<Priority, LaneFigures>,
    /// Records the current window can still carry when the run planned (both kinds).
    pub window_records_left: u64,
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
    /// Messages held without being tried (circuit open, quota spent, deadline) and re-queued as fresh
    /// copies for when they can be tried; their receive counts are not spent.
    pub deferred: u32,
    /// Messages made visible again after a transient failure, with backoff.
    pub retried: u32,
    /// Messages sent to the DLQ (malformed, rejected by the provider, or out of attempts).
    pub dead_lettered: u32,
    /// 429 answers for the account's limit.
    pub rate_limited: u32,
    /// Units this run's ledger adopted from the provider's `X-RateLimit-Remaining`, per kind: requests
    /// another client of the account made in the window.
    #[serde(default)]
    pub adopted: PerKind,
    /// Transient provider failures (5xx, timeouts, connection errors).
    pub provider_errors: u32,
    /// The circuit was opened by this run.
    pub circuit_opened: bool,
    /// A half-open probe of this run closed the circuit.
    pub circuit_closed: bool,
    /// Consecutive transient provider failures after this run (kept across runs).
    pub circuit_failures: u32,
    /// The run lost its lease and stopped without writing or deleting.
    pub lease_lost: bool,
    /// Provider calls by kind.
    pub calls: CallStats,
    pub quota_batch: QuotaSummary,
    pub quota_individual: QuotaSummary,
    pub duration_ms: u64,
}

impl DrainReport {
    pub fn delivered_records(&self) -> u32 {
        self.delivered.batch + self.delivered.individual
    }

    /// Messages beyond what the current window can still carry (0 when it can carry the backlog): the
    /// overload signal behind `QuotaExhaustedAlarm`.
    pub fn backlog_over_capacity(&self) -> u64 {
        self.backlog.saturating_sub(self.window_records_left)
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
            ("AdoptedBatchUnits", f(self.adopted.batch)),
            ("AdoptedIndividualUnits", f(self.adopted.individual)),
            ("BatchQuotaUsed", f(self.quota_batch.used)),
            ("BatchQuotaLeft", f(self.quota_batch.left)),
            ("IndividualQuotaUsed", f(self.quota_individual.used)),
            ("IndividualQuotaLeft", f(self.quota_individual.left)),
            ("DrainDurationMs", self.duration_ms as f64),
            ("BacklogOverCapacity", self.backlog_over_capacity() as f64),
            (
                "Overloaded",
                if self.backlog_over_capacity() > 0 {
                    1.0
                } else {
                    0.0
                },
            ),
            ("CircuitFailures", f(self.circuit_failures)),
            ("LeaseLost", if self.lease_lost { 1.0 } else { 0.0 }),
            ("BatchCalls", f(self.calls.batch.calls)),
            ("BatchCalls4xx", f(self.calls.batch.client_errors)),
            ("BatchCalls5xx", f(self.calls.batch.server_errors)),
            ("BatchCallMeanMs", self.calls.batch.mean_ms()),
            ("BatchCallMaxMs", self.calls.batch.max_ms as f64),
            ("IndividualCalls", f(self.calls.individual.calls)),
            ("IndividualCalls4xx", f(self.calls.individual.client_errors)),
            ("IndividualCalls5xx", f(self.calls.individual.server_errors)),
            ("IndividualCallMeanMs", self.calls.individual.mean_ms()),
            ("IndividualCallMaxMs", self.calls.individual.max_ms as f64),
            ("ProbeCalls", f(self.calls.probe)),
        ];
        emf_line("Sluice", &[("Stack", stack)], &metrics, timestamp_ms)
    }
}

/// One structured line per provider call: what was sent, what came back, how long it took.
pub(super) fn log_call(
    kind: &'static str,
    records: usize,
    reply: &Reply,
    elapsed: Duration,
    attempt: u32,
) {
    let outcome = match &reply.result {
        Ok(()) => "ok",
        Err(e) => e.class(),
    };
    let error =
        reply.result.as_ref().err().map(|e| {
            crate::telemetry::redact_emails_in(&crate::domain::truncate(&e.to_string(), 300))
        });
    info!(
        target: "sluice::provider_call",
        kind,
        records,
        status = reply.info.status,
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        attempt,
        outcome,
        request_id = reply.info.request_id.as_deref(),
        rate_limit = reply.info.rate_limit,
        rate_remaining = reply.info.rate_remaining,
        error,
        "provider call"
    );
}
