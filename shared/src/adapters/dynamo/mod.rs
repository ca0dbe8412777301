//! The drain's state in one DynamoDB table (key `pk`, TTL attribute `expires_at`), behind
//! [`DynamoState`]; ingest's items in the same table are [`super::dynamo_ingest`]'s.
//!
//! | item                     | attributes                                              | written by |
//! |--------------------------|---------------------------------------------------------|------------|
//! | `quota#<kind>#<start>`   | `used` (N), `limit` (N), `expires_at`                   | reserve: conditional `ADD used :n` |
//! | `quota#rolling#<kind>`   | `b` (M: bucket → N), `a` (M: adopted per bucket), `version` (N), `limit`, `expires_at` | `QUOTA_MODEL=rolling`: read, then SET both maps on `version = :seen` |
//! | `user#<email>`           | `f.<field>` = `{v: S, k: S (precedence), t: N (ms)}` per delivered field, `updated_at` | record: PartiQL `INSERT` (new user) or `UPDATE … WHERE` with a condition per field, 25 per BatchExecuteStatement |
//! | `inflight#run#<holder>#<n>` | `entries` (S: JSON `{email: {field: precedence key}}`, ≤ 300 KB a chunk), `expires_at` (+1 day) | BatchWriteItem (put) before the provider call: one note per run |
//! | `inflight#runs`          | `note#<holder>` = `"<written at, s> <chunks>"` per note still listed | UpdateItem: SET once the note is written, REMOVE when resolved (or a day old, on read) |
//! | `lease#drain`            | `holder`, `until_ms`, `expires_at`                      | conditional put; renewed by a conditional update on `holder` |
//! | `circuit#provider`       | `failures`, `open_until_ms` (absent when closed), `reason`, `expires_at` | put, when a run changed it |
//! | `request#<id>`           | `accepted` (ingest); `delivered_ids`, `skipped_ids`, `dead_lettered_ids` (SS of change ids) | `ADD` of sets, once per request per run: idempotent per change. A single-change request's item (ingest also put its change's `email`, `field_keys`, `precedence` in it) gets only its dead letters: its status is derived from `user#<email>` (`ports::requests`) |
//!
//! # Layout
//! - `item`: the one item mapping — attribute helpers, every key, the precedence and field encodings.
//! - `ledger`: [`QuotaLedger`](crate::ports::QuotaLedger), conditional counters per quota window;
//!   `rolling`: the rolling model's one versioned item per kind.
//! - `sync_state` (with `statements`, its PartiQL): [`SyncStateStore`](crate::ports::SyncStateStore)'s
//!   load and record; `in_flight`: the per-run in-flight notes of the same port.
//! - `lease`, `circuit`: [`DrainLease`](crate::ports::DrainLease) and
//!   [`CircuitStore`](crate::ports::CircuitStore).
//! - `requests`: the drain's [`RequestTracker`](crate::ports::RequestTracker).
//! - `reads`: what operators read (`sluice status`): the lease and the circuit as stored.
//! - `batch`: BatchGetItem / BatchWriteItem with their unprocessed keys and items.
//!
//! **Retries.** Every call goes through the SDK's standard retry (throttling, 5xx, timeouts of a call are
//! retried there, within the timeouts set where the client is built); SDK errors are classified once, by
//! [`super::sdk_error::port_error`]. The only loops here are for what the SDK never retries because the
//! call itself succeeded: a batch call's UnprocessedKeys / UnprocessedItems, and the throttled statements
//! of a BatchExecuteStatement (see `batch`).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::ports::PortResult;

mod batch;
pub mod circuit;
pub mod in_flight;
pub(crate) mod item;
pub mod lease;
pub mod ledger;
pub mod reads;
pub mod requests;
mod rolling;
pub mod statements;
pub mod sync_state;
#[cfg(test)]
mod tests;

pub use in_flight::note_chunks;
pub use item::{note_key, quota_key, request_key, user_key};

use super::sdk_error::port_error;
use item::{Item, s};

/// A conditional write's answer: `true` when it was written, `false` when its condition failed (the item
/// is not in the state the write expects); any other error is classified by [`port_error`].
pub(crate) fn conditional_write<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    what: &'static str,
) -> PortResult<bool>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e))
            if e.err().code() == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(port_error(what, e)),
    }
}

/// The drain's DynamoDB state: quota ledger, sync state, lease and circuit, request progress. Cheap to
/// clone (the client is shared).
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
}

impl DynamoState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// One item by key, read consistently; `what` names the read in errors.
    async fn get_consistent(&self, key: String, what: &'static str) -> PortResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(what, e))?;
        Ok(out.item)
    }
}
