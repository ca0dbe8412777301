//! Idempotency records for `POST /v1/changes` with an `Idempotency-Key` (DynamoDB in AWS:
//! [`crate::adapters::dynamo_ingest`]).

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PortResult;
use crate::domain::{ChangeId, Invalid, RequestId};

/// The answer to an accepted `POST /v1/changes` (202), stored verbatim for idempotent replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub request_id: RequestId,
    pub accepted: u32,
    /// One per change, in the order the changes were sent.
    pub change_ids: Vec<ChangeId>,
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
}
