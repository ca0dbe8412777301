//! The ports the drain is written against, in domain types only (never SDK types). Adapters in
//! [`crate::adapters`] implement them for AWS (SQS, DynamoDB), the provider over HTTP, and in memory
//! (unit tests and the simulator, with a virtual clock).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ChangeId, Email, FieldKey, Precedence, RequestId, Subscriber};

/// What an adapter failure means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying later (throttling, network, 5xx).
    Transient,
    /// Retrying will not help (bad request, missing resource, access denied).
    Permanent,
}

/// A failure in an adapter, with the category that drives behaviour and the whole chain for logs.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source:#}")]
pub struct PortError {
    pub kind: ErrorKind,
    pub context: &'static str,
    #[source]
    pub source: anyhow::Error,
}

impl PortError {
    pub fn transient(context: &'static str, source: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            context,
            source: source.into(),
        }
    }

    pub fn permanent(context: &'static str, source: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            context,
            source: source.into(),
        }
    }
}

pub type PortResult<T> = Result<T, PortError>;

// ---------------------------------------------------------------------------------------------------------
// Queue

/// The handle that deletes or releases one received message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// One message as received from the changes queue.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt: Receipt,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
    /// Delivery attempts made on earlier copies of this change: a message a run held but could not try
    /// is re-queued as a fresh copy (so its receive count is not spent) that carries its attempts along.
    pub prior_attempts: u32,
}

impl ReceivedMessage {
    /// Delivery attempts of this change, this receive included.
    pub fn attempts(&self) -> u32 {
        self.prior_attempts.saturating_add(self.receive_count)
    }

    /// Attempts a re-queued copy carries: this receive was not an attempt (the message was held).
    pub fn attempts_before_this_receive(&self) -> u32 {
        self.attempts().saturating_sub(1)
    }
}

/// Approximate queue depth (SQS counts are approximate by nature).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

/// Why a message went to the dead-letter queue; written as a message attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The body is not a change message Sluice can read.
    Malformed,
    /// The provider refused the record (a 4xx about this record, isolated from the rest of its batch).
    Rejected,
    /// The record failed transiently on every one of its `MAX_RECEIVE_COUNT` attempts.
    RetriesExhausted,
}

impl DeadLetterReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadLetterReason::Malformed => "malformed",
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// A message on its way to the DLQ: original body, with the reason and detail as attributes.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message: ReceivedMessage,
    pub reason: DeadLetterReason,
    pub detail: String,
}

/// The changes queue, as the drain sees it.
pub trait ChangeQueue: Send + Sync {
    /// Approximate depth, read without receiving anything (so without raising receive counts).
    fn backlog(&self) -> impl Future<Output = PortResult<Backlog>> + Send;
    /// Receives up to `max` messages (many calls of ≤ 10, in parallel). Returns fewer when the queue has fewer.
    fn receive(&self, max: u32) -> impl Future<Output = PortResult<Vec<ReceivedMessage>>> + Send;
    /// Deletes messages whose data was delivered or superseded. Returns the receipts that failed.
    fn delete(&self, receipts: &[Receipt])
    -> impl Future<Output = PortResult<Vec<Receipt>>> + Send;
    /// Makes messages visible again after the given delay each (0 = now). For messages that were tried.
    fn release(&self, items: &[(Receipt, Duration)])
    -> impl Future<Output = PortResult<()>> + Send;
    /// Puts a fresh copy of each message back on the queue, delayed (SQS caps delays at 15 minutes), with
    /// its attempts so far, then deletes the original: for messages a run held but did not try, so that
    /// holding a message never spends its receive count. Returns the receipts whose original could not be
    /// deleted (a copy then exists twice, which the drain coalesces).
    fn requeue(
        &self,
        items: &[(ReceivedMessage, Duration)],
    ) -> impl Future<Output = PortResult<Vec<Receipt>>> + Send;
    /// Sends messages to the DLQ with their reason, then deletes them from the queue.
    fn dead_letter(&self, letters: &[DeadLetter]) -> impl Future<Output = PortResult<()>> + Send;
}

// ---------------------------------------------------------------------------------------------------------
// Quota

/// The provider's two kinds of quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaKind {
    Batch,
    Individual,
}

impl QuotaKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            QuotaKind::Batch => "batch",
            QuotaKind::Individual => "individual",
        }
    }
}

/// A fixed quota window aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Start, in seconds since the epoch.
    pub start: i64,
    /// Length in seconds.
    pub length: u32,
}

impl Window {
    pub fn containing(at: DateTime<Utc>, length: u32) -> Self {
        let len = i64::from(length.max(1));
        let t = at.timestamp();
        Self {
            start: t - t.rem_euclid(len),
            length: length.max(1),
        }
    }

    pub fn end(&self) -> i64 {
        self.start + i64::from(self.length)
    }

    pub fn end_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.end(), 0).unwrap_or_default()
    }

    pub fn next(&self) -> Self {
        Self {
            start: self.end(),
            length: self.length,
        }
    }
}

/// Result of a reservation attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Granted; `used` is the window's count after this reservation.
    Granted { used: u32 },
    /// Refused: granting it would exceed the limit. Nothing was consumed.
    Exhausted { used: u32 },
}

/// The quota ledger: one counter per kind and window, reserved before any provider call.
pub trait QuotaLedger: Send + Sync {
    /// Units used in the window so far. Reading does not consume.
    fn used(&self, kind: QuotaKind, window: Window)
    -> impl Future<Output = PortResult<u32>> + Send;
    /// Atomically adds `n` units if `used + n <= limit`.
    fn reserve(
        &self,
        kind: QuotaKind,
        window: Window,
        n: u32,
        limit: u32,
    ) -> impl Future<Output = PortResult<Reservation>> + Send;
    /// Marks the window spent (after a 429: the provider disagrees with our count).
    fn mark_spent(
        &self,
        kind: QuotaKind,
        window: Window,
        limit: u32,
    ) -> impl Future<Output = PortResult<()>> + Send;
}

// ---------------------------------------------------------------------------------------------------------
// Sync state

/// The last value delivered for one field of one user, and the precedence of the change that set it (the
/// whole "latest wins" key, at full precision, so a tie is settled the same way across runs as within one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedField {
    pub value: String,
    pub precedence: Precedence,
}

/// What the provider holds for one user, as far as Sluice has delivered it.
pub type SyncedFields = BTreeMap<FieldKey, SyncedField>;

/// One user's delivered fields (or no-op timestamps) to record, and whether [`SyncStateStore::load`] found
/// state for the user: a hint that lets the DynamoDB adapter insert or update at once. A wrong hint costs a
/// retry, never a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncWrite {
    pub email: Email,
    pub fields: SyncedFields,
    pub known: bool,
}

/// Per-user sync state: what was last delivered, per field.
pub trait SyncStateStore: Send + Sync {
    /// State for these users (missing users have none).
    fn load(
        &self,
        emails: &[Email],
    ) -> impl Future<Output = PortResult<HashMap<Email, SyncedFields>>> + Send;
    /// Records delivered fields of many users at once; a field is never moved backwards in time (a newer
    /// recorded value wins; an equal precedence — the same change recorded again — may write again).
    fn record(&self, users: &[SyncWrite]) -> impl Future<Output = PortResult<()>> + Send;
    /// Fields some run was about to send, by precedence ([`InFlight`]), for these users: what every note
    /// still listed says about them (the newest precedence per field).
    fn in_flight(
        &self,
        emails: &[Email],
    ) -> impl Future<Output = PortResult<HashMap<Email, InFlight>>> + Send;
    /// Durably notes, under this run's `holder`, the fields it may send. One note per run: a later run
    /// reads every note still listed, so a run need not carry earlier runs' entries into its own.
    fn intend(
        &self,
        holder: &str,
        intents: &[(Email, InFlight)],
    ) -> impl Future<Output = PortResult<()>> + Send;
    /// This run's sync state is recorded: its note needs to guard only `open` — the fields of records it
    /// tried without delivering, which the provider may hold all the same. Empty: the note is unlisted.
    /// Not called by a run that failed or lost its lease before recording: its whole note stays listed
    /// (up to a day, as the note's lifetime says).
    fn resolve(
        &self,
        holder: &str,
        open: &[(Email, InFlight)],
    ) -> impl Future<Output = PortResult<()>> + Send;
}

/// The precedence of each field a run is about to send, written *before* the provider call. A run that
/// dies (or loses its lease) after its call but before recording the sync state leaves this behind, so a
/// later run never sends an older change of that field over a value the provider may already hold: the
/// newer change is still on the queue and is sent again instead. Notes live a day: far longer than any
/// message of the change can stay unsettled (visibility timeout, backoff); by then the sync state guards.
pub type InFlight = BTreeMap<FieldKey, Precedence>;

// ---------------------------------------------------------------------------------------------------------
// Provider

/// How a provider call failed; each variant has exactly one handling in the drain (README, "What each
/// provider answer does").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// 429 for the account's limit: this kind's window is spent (until `retry_after`, when given).
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// 429 "Too many concurrent requests for the same subscriber": another client is updating one of
    /// these subscribers. Not the account's limit and not the record's fault: retry the record shortly.
    #[error("subscriber busy (retry after {retry_after:?})")]
    SubscriberBusy { retry_after: Option<Duration> },
    /// A 4xx about the request's records (422, 400). `indexes` names the refused records within the
    /// request when the provider says which (`subscribers[i]…`); empty when it does not.
    #[error("rejected {indexes:?}: {detail}")]
    Rejected { indexes: Vec<usize>, detail: String },
    /// 413: the request is too large. Not a record's fault unless the request held one record.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// 5xx, timeout, connection error, 409: try again later.
    #[error("transient failure: {detail}")]
    Transient {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// 401, 403, 404 and other 4xx about the account, not a record: configuration is wrong, and retrying
    /// the same way will not help until someone fixes it.
    #[error("provider refused the request: {0}")]
    Misconfigured(String),
}

impl ProviderError {
    pub fn transient(detail: impl Into<String>) -> Self {
        Self::Transient {
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A short name for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::SubscriberBusy { .. } => "subscriber_busy",
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::TooLarge(_) => "too_large",
            ProviderError::Transient { .. } => "transient",
            ProviderError::Misconfigured(_) => "misconfigured",
        }
    }
}

/// What the provider said about a call besides its outcome, for the call log and the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// The provider's request id (`X-Request-Id`), when given.
    pub request_id: Option<String>,
    /// `X-RateLimit-Limit` and `X-RateLimit-Remaining`, when given.
    pub rate_limit: Option<u32>,
    pub rate_remaining: Option<u32>,
}

/// One provider call's outcome and what came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub result: Result<(), ProviderError>,
    pub info: CallInfo,
}

impl Reply {
    pub fn ok() -> Self {
        Self {
            result: Ok(()),
            info: CallInfo::default(),
        }
    }

    pub fn err(error: ProviderError) -> Self {
        Self {
            result: Err(error),
            info: CallInfo::default(),
        }
    }
}

/// The provider's endpoints.
pub trait Provider: Send + Sync {
    /// One batch request of 1..=`BATCH_SIZE` records (one unit of batch quota).
    fn send_batch(&self, records: &[Subscriber]) -> impl Future<Output = Reply> + Send;
    /// One individual request (one unit of individual quota).
    fn send_individual(&self, record: &Subscriber) -> impl Future<Output = Reply> + Send;
    /// A read that touches no subscriber (one unit of individual quota): the circuit's half-open probe,
    /// so an outage of any length costs no message a receive.
    fn probe(&self) -> impl Future<Output = Reply> + Send;
}

// ---------------------------------------------------------------------------------------------------------
// Clock, coordination, request tracking

/// Time, so the simulator can compress a day into seconds.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The provider circuit as stored between runs: consecutive transient failures, and when it is open, until
/// when (the next half-open probe).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CircuitState {
    /// Consecutive transient provider failures, across runs; a success resets it.
    pub failures: u32,
    /// Set while the circuit is open: no call until then, and then one probe.
    pub open_until: Option<DateTime<Utc>>,
    pub reason: String,
}

/// Cross-run coordination: the single-flight lease and the provider circuit breaker.
pub trait Coordination: Send + Sync {
    /// Takes the drain lease for `holder` until `until` if it is free or expired.
    fn acquire_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<bool>> + Send;
    /// Extends the lease to `until` if `holder` still holds it and it has not expired at `now`; `false`
    /// means the lease is lost and the run must stop writing.
    fn renew_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<bool>> + Send;
    /// Releases the lease if `holder` still holds it.
    fn release_lease(&self, holder: &str) -> impl Future<Output = PortResult<()>> + Send;
    /// The circuit as stored (closed with no failures when never written).
    fn circuit(&self) -> impl Future<Output = PortResult<CircuitState>> + Send;
    /// Stores the circuit.
    fn set_circuit(&self, state: &CircuitState) -> impl Future<Output = PortResult<()>> + Send;
}

/// How one change settled, for its request's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// It supplied a value the provider now has.
    Delivered,
    /// Superseded by a newer change, or equal to what the provider already had.
    Skipped,
    /// In the DLQ.
    DeadLettered,
}

/// Progress of one ingest request, as `GET /v1/requests/{id}` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestProgress {
    pub delivered: u32,
    pub skipped: u32,
    pub dead_lettered: u32,
}

/// Per-request progress, updated by the drain once per run. Recording is idempotent per change: a change
/// received again (a redelivery, a copy) and settled again is counted once. A single-change request's
/// delivered or skipped change is not recorded (its status is derived from the sync state,
/// [`crate::ingest::tracking`]); its dead letter is.
pub trait RequestTracker: Send + Sync {
    fn record(
        &self,
        settled: &[(RequestId, ChangeId, Settled)],
    ) -> impl Future<Output = PortResult<()>> + Send;
}

/// Everything the drain needs, bundled so the engine has one type parameter.
pub trait DrainPorts: Send + Sync {
    type Queue: ChangeQueue;
    type Ledger: QuotaLedger;
    type Sync: SyncStateStore;
    type Provider: Provider;
    type Clock: Clock;
    type Coordination: Coordination;
    type Requests: RequestTracker;

    fn queue(&self) -> &Self::Queue;
    fn ledger(&self) -> &Self::Ledger;
    fn sync_state(&self) -> &Self::Sync;
    fn provider(&self) -> &Self::Provider;
    fn clock(&self) -> &Self::Clock;
    fn coordination(&self) -> &Self::Coordination;
    fn requests(&self) -> &Self::Requests;
}

/// A plain bundle of port implementations.
#[derive(Debug, Clone)]
pub struct PortSet<Q, L, S, P, C, X, R> {
    pub queue: Q,
    pub ledger: L,
    pub sync_state: S,
    pub provider: P,
    pub clock: C,
    pub coordination: X,
    pub requests: R,
}

impl<Q, L, S, P, C, X, R> DrainPorts for PortSet<Q, L, S, P, C, X, R>
where
    Q: ChangeQueue,
    L: QuotaLedger,
    S: SyncStateStore,
    P: Provider,
    C: Clock,
    X: Coordination,
    R: RequestTracker,
{
    type Queue = Q;
    type Ledger = L;
    type Sync = S;
    type Provider = P;
    type Clock = C;
    type Coordination = X;
    type Requests = R;

    fn queue(&self) -> &Q {
        &self.queue
    }
    fn ledger(&self) -> &L {
        &self.ledger
    }
    fn sync_state(&self) -> &S {
        &self.sync_state
    }
    fn provider(&self) -> &P {
        &self.provider
    }
    fn clock(&self) -> &C {
        &self.clock
    }
    fn coordination(&self) -> &X {
        &self.coordination
    }
    fn requests(&self) -> &R {
        &self.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let at = DateTime::from_timestamp(7_265, 0).unwrap_or_default();
        let w = Window::containing(at, 3_600);
        assert_eq!((w.start, w.end()), (7_200, 10_800));
        assert_eq!(w.next().start, 10_800);
        assert_eq!(Window::containing(at, 60).start, 7_260);
    }
}
