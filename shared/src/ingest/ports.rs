//! The ports ingest is written against, in domain types only: where accepted changes go (the queue),
//! where idempotency records live, and where request progress is kept. Adapters:
//! [`crate::adapters::sqs_sink`], [`crate::adapters::dynamo_ingest`], and [`super::memory`] for tests.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Change, ChangeId, Invalid, RequestId};
use crate::ports::PortResult;

use super::tracking::TrackedChange;

/// The answer to an accepted `POST /v1/changes` (202), stored verbatim for idempotent replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub request_id: RequestId,
    pub accepted: u32,
    /// One per change, in the order the changes were sent.
    pub change_ids: Vec<ChangeId>,
}

/// Where accepted changes go.
pub trait ChangeSink: Send + Sync {
    /// Puts every change on the queue, retrying what can be retried. `Ok` means all of them are on it;
    /// an error means some may not be (the caller answers 503 and the client retries the whole request:
    /// duplicates are harmless, the drain coalesces them).
    fn enqueue(&self, changes: &[Change]) -> impl Future<Output = PortResult<()>> + Send;
}

/// The client's `Idempotency-Key` header: 1..=255 printable ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() || raw.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(Invalid(format!(
                "must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters long"
            )));
        }
        if !raw.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(Invalid(
                "must contain only printable ASCII characters".into(),
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// SHA-256 of the key, hex: what is stored, so keys (which clients may derive from their own data)
    /// never sit in the table in clear.
    pub fn digest(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", &self.digest()[..12])
    }
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where an idempotent request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// The first request is being processed by `owner`; another request may take over after `lease_until`
    /// (the owner crashed or timed out).
    InProgress {
        owner: RequestId,
        lease_until: DateTime<Utc>,
    },
    /// The first request finished with this answer.
    Completed(Accepted),
}

/// What is stored per idempotency key (for 24 h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Hex SHA-256 of the first request's body.
    pub body_sha256: String,
    pub state: IdempotencyState,
}

/// A first attempt at a key, as [`IdempotencyStore::claim`] writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClaim {
    pub body_sha256: String,
    pub owner: RequestId,
    pub now: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request is the first (or takes over an expired one): go ahead.
    Won,
    /// Another request holds the key; its record (`None` if it vanished in between: try again).
    Held(Option<IdempotencyRecord>),
}

/// Idempotency records. Every write is conditional, so concurrent first requests enqueue once.
pub trait IdempotencyStore: Send + Sync {
    /// Atomically creates the record unless a live one exists (an expired record, or an in-progress one
    /// whose lease ran out, counts as absent).
    fn claim(
        &self,
        key: &IdempotencyKey,
        claim: &NewClaim,
    ) -> impl Future<Output = PortResult<Claim>> + Send;
    /// The live record for a key, read consistently.
    fn get(
        &self,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<Option<IdempotencyRecord>>> + Send;
    /// Stores the answer, if `owner` still holds the key.
    fn complete(
        &self,
        key: &IdempotencyKey,
        owner: RequestId,
        answer: &Accepted,
    ) -> impl Future<Output = PortResult<()>> + Send;
    /// Drops the claim after a failure (so a retry starts afresh), if `owner` still holds it.
    fn abandon(
        &self,
        key: &IdempotencyKey,
        owner: RequestId,
    ) -> impl Future<Output = PortResult<()>> + Send;
}

/// A request's counters: `accepted` written by ingest, the rest added by the drain (multi-change requests)
/// or derived from the sync state (single-change requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounters {
    pub accepted: u32,
    pub delivered: u32,
    pub skipped: u32,
    pub dead_lettered: u32,
}

/// `GET /v1/requests/{request_id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStatus {
    pub request_id: RequestId,
    pub accepted: u32,
    pub delivered: u32,
    pub skipped: u32,
    pub dead_lettered: u32,
    /// Accepted changes not yet delivered, skipped or dead-lettered (never negative: duplicate deliveries
    /// can make the drain count a change twice).
    pub pending: u32,
}

impl RequestStatus {
    pub fn new(request_id: RequestId, c: RequestCounters) -> Self {
        let settled = c
            .delivered
            .saturating_add(c.skipped)
            .saturating_add(c.dead_lettered);
        Self {
            request_id,
            accepted: c.accepted,
            delivered: c.delivered,
            skipped: c.skipped,
            dead_lettered: c.dead_lettered,
            pending: c.accepted.saturating_sub(settled),
        }
    }
}

/// A request's progress record, as ingest creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub id: RequestId,
    pub accepted: u32,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// A single-change request's change, whose status is derived from the sync state (no drain write);
    /// `None` for a multi-change request, tracked by the drain's sets.
    pub single: Option<TrackedChange>,
}

/// Per-request progress records (`request#<id>`), created by ingest before anything is enqueued.
pub trait RequestStore: Send + Sync {
    fn create(&self, request: &NewRequest) -> impl Future<Output = PortResult<()>> + Send;
    /// The request's counters: a multi-change request's from the drain's sets, a single-change request's
    /// derived from its user's sync state ([`super::tracking`]). `None` for an unknown or expired request.
    fn counters(
        &self,
        id: RequestId,
    ) -> impl Future<Output = PortResult<Option<RequestCounters>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_printable_ascii_and_bounded() {
        assert!(IdempotencyKey::parse("order-42/retry 1").is_ok());
        for bad in ["", "tab\there", "é", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pending_never_goes_negative() {
        let id = RequestId::new();
        let s = RequestStatus::new(
            id,
            RequestCounters {
                accepted: 3,
                delivered: 2,
                skipped: 1,
                dead_lettered: 1,
            },
        );
        assert_eq!(s.pending, 0);
        let s = RequestStatus::new(
            id,
            RequestCounters {
                accepted: 5,
                delivered: 1,
                ..Default::default()
            },
        );
        assert_eq!(s.pending, 4);
    }
}
