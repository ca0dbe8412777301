//! DynamoDB adapters for ingest: idempotency records and request status, in the one Sluice table
//! (single key `pk` (S), TTL attribute `expires_at` (N, epoch seconds)), behind [`DynamoIngestStore`].
//! Ingest's own folder, apart from the drain's [`super::dynamo`] (whose item mapping it shares), so each
//! function's IAM grants are checked against the calls its own adapters make (`tests/tests/iam.rs`).
//!
//! | item | attributes | written by |
//! |------|------------|------------|
//! | `idem#<sha256 of key>` | `body_sha256` (S), `status` (S: `in_progress` \| `completed`), `owner` (S, the request id of the first request), `lease_until` (N, while in progress), `response` (S, the first answer as JSON, once completed), `created_at` (S), `expires_at` (N, +24 h) | ingest: conditional put, update, delete |
//! | `request#<uuid>`, multi-change | `accepted` (N), `created_at` (S, RFC 3339), `expires_at` (N, +7 days); `delivered_ids`, `skipped_ids`, `dead_lettered_ids` (SS of change ids) | ingest: one put; the drain: `ADD` of the sets, once per request per run |
//! | `request#<uuid>`, single-change | as above, plus its change: `email` (S), `field_keys` (SS, storage keys: `name`, `time_zone`, `cf.<key>`), `precedence` (S, the sync state's encoding); usually no sets | ingest: one put; the drain: `ADD` only of a dead letter (or a settlement the sync state cannot show) |
//!
//! # Layout
//! - `idempotency`: [`IdempotencyStore`](crate::ports::IdempotencyStore), the `idem#` records.
//! - `request_store`: [`RequestStore`](crate::ports::RequestStore), the `request#` items and the status
//!   read from them (and, for a single-change request, from its user's sync state).
//!
//! DynamoDB's TTL sweep lags, so expiry is also checked on read and in the claim's condition.

use aws_sdk_dynamodb::Client;

use super::dynamo::item::{Item, s};
use super::sdk_error::port_error;
use crate::ports::PortResult;

pub mod idempotency;
pub mod request_store;

/// Idempotency records and request status in the Sluice table. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct DynamoIngestStore {
    client: Client,
    table: String,
}

impl DynamoIngestStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// One item by key; `consistent` asks for a consistent read (one just written reads as written), else
    /// the default, eventually consistent, is left to DynamoDB. `what` names the read in errors.
    async fn get_item(
        &self,
        key: String,
        consistent: bool,
        what: &'static str,
    ) -> PortResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .set_consistent_read(consistent.then_some(true))
            .send()
            .await
            .map_err(|e| port_error(what, e))?;
        Ok(out.item)
    }
}
