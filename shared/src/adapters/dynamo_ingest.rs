//! DynamoDB adapters for ingest: idempotency records and request status, in the one Sluice table
//! (single key `pk` (S), TTL attribute `expires_at` (N, epoch seconds)).
//!
//! | item | attributes | written by |
//! |------|------------|------------|
//! | `idem#<sha256 of key>` | `body_sha256` (S), `status` (S: `in_progress` \| `completed`), `owner` (S, the request id of the first request), `lease_until` (N, while in progress), `response` (S, the first answer as JSON, once completed), `created_at` (S), `expires_at` (N, +24 h) | ingest: conditional put, update, delete |
//! | `request#<uuid>`, multi-change | `accepted` (N), `created_at` (S, RFC 3339), `expires_at` (N, +7 days); `delivered_ids`, `skipped_ids`, `dead_lettered_ids` (SS of change ids) | ingest: one put; the drain: `ADD` of the sets, once per request per run |
//! | `request#<uuid>`, single-change | as above, plus its change: `email` (S), `field_keys` (SS, storage keys: `name`, `time_zone`, `cf.<key>`), `precedence` (S, the sync state's encoding); usually no sets | ingest: one put; the drain: `ADD` only of a dead letter (or a settlement the sync state cannot show) |
//!
//! Each change counts once however often it is settled (a change in two sets counts as delivered before
//! dead-lettered before skipped). Items from before the sets carry `delivered`, `skipped`, `dead_lettered`
//! (N), which are added. A single-change request's status is derived when read, from its user's
//! `user#<email>` item (a consistent GetItem): see [`crate::ports::requests`].
//!
//! DynamoDB's TTL sweep lags, so expiry is also checked on read and in the claim's condition.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, anyhow};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::dynamo::{parse_fields, parse_precedence_key, precedence_key, user_key};
use super::sdk_error::port_error;
use crate::domain::{Email, FieldKey, RequestId};
use crate::ingest::{
    Accepted, Claim, IdempotencyKey, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    NewClaim, NewRequest, RequestCounters, RequestStore, TrackedChange,
};
use crate::ports::single_change_counters;
use crate::ports::{PortError, PortResult};

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";
/// A single-change request's change, in its request item.
const EMAIL: &str = "email";
const FIELD_KEYS: &str = "field_keys";
const PRECEDENCE: &str = "precedence";

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
}

fn idem_pk(key: &IdempotencyKey) -> AttributeValue {
    AttributeValue::S(format!("idem#{}", key.digest()))
}

/// The `pk` of a request's progress record (the drain's request tracker writes the same item).
pub fn request_pk(id: RequestId) -> String {
    format!("request#{id}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|raw| {
        raw.parse::<i64>()
            .ok()
            .or_else(|| raw.parse::<f64>().ok().map(|f| f as i64))
    })
}

fn counter(item: &HashMap<String, AttributeValue>, name: &str) -> u32 {
    get_n(item, name).map_or(0, |v| u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

fn parse_record(item: &HashMap<String, AttributeValue>) -> PortResult<IdempotencyRecord> {
    let malformed = |what: &str| {
        PortError::permanent(
            "read idempotency record",
            anyhow!("record has no valid {what}"),
        )
    };
    let body_sha256 = get_s(item, "body_sha256")
        .ok_or_else(|| malformed("body_sha256"))?
        .to_string();
    let state = match get_s(item, "status") {
        Some(COMPLETED) => {
            let raw = get_s(item, "response").ok_or_else(|| malformed("response"))?;
            let answer: Accepted = serde_json::from_str(raw)
                .context("stored response is not an ingest answer")
                .map_err(|e| PortError::permanent("read idempotency record", e))?;
            IdempotencyState::Completed(answer)
        }
        Some(IN_PROGRESS) => {
            let owner = get_s(item, "owner")
                .and_then(|o| uuid::Uuid::parse_str(o).ok())
                .map(RequestId)
                .ok_or_else(|| malformed("owner"))?;
            let lease_until = get_n(item, "lease_until")
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .ok_or_else(|| malformed("lease_until"))?;
            IdempotencyState::InProgress { owner, lease_until }
        }
        _ => return Err(malformed("status")),
    };
    Ok(IdempotencyRecord { body_sha256, state })
}

impl DynamoIngestStore {
    async fn read_idem(
        &self,
        key: &IdempotencyKey,
    ) -> PortResult<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", idem_pk(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("read idempotency record", e))?;
        Ok(out.item().cloned())
    }
}

impl IdempotencyStore for DynamoIngestStore {
    async fn claim(&self, key: &IdempotencyKey, claim: &NewClaim) -> PortResult<Claim> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", idem_pk(key))
            .item("body_sha256", s(&claim.body_sha256))
            .item("status", s(IN_PROGRESS))
            .item("owner", s(claim.owner.to_string()))
            .item("lease_until", n(claim.lease_until.timestamp()))
            .item("created_at", s(claim.now.to_rfc3339()))
            .item("expires_at", n(claim.expires_at.timestamp()))
            // Absent, expired (TTL not swept yet), or abandoned mid-flight by a crashed first request.
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now OR (#status = :in_progress AND lease_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(claim.now.timestamp()))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Won),
            Err(SdkError::ServiceError(ctx))
                if ctx.err().is_conditional_check_failed_exception() =>
            {
                Ok(Claim::Held(self.get(key, claim.now).await?))
            }
            Err(e) => Err(port_error("claim idempotency key", e)),
        }
    }

    async fn get(
        &self,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> PortResult<Option<IdempotencyRecord>> {
        let Some(item) = self.read_idem(key).await? else {
            return Ok(None);
        };
        if get_n(&item, "expires_at").is_some_and(|t| t < now.timestamp()) {
            return Ok(None);
        }
        parse_record(&item).map(Some)
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: RequestId,
        answer: &Accepted,
    ) -> PortResult<()> {
        let response = serde_json::to_string(answer)
            .context("serialise ingest answer")
            .map_err(|e| PortError::permanent("complete idempotency record", e))?;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", idem_pk(key))
            .update_expression("SET #status = :completed, #response = :response REMOVE lease_until")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#response", "response")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":response", s(response))
            .expression_attribute_values(":owner", s(owner.to_string()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(ctx))
                if ctx.err().is_conditional_check_failed_exception() =>
            {
                Err(PortError::permanent(
                    "complete idempotency record",
                    anyhow!("another request took the key over (lease ran out)"),
                ))
            }
            Err(e) => Err(port_error("complete idempotency record", e)),
        }
    }

    async fn abandon(&self, key: &IdempotencyKey, owner: RequestId) -> PortResult<()> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", idem_pk(key))
            .condition_expression("#owner = :owner AND #status = :in_progress")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", s(owner.to_string()))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        match delete {
            Ok(_) => Ok(()),
            // Someone else holds it now: theirs to finish.
            Err(SdkError::ServiceError(ctx))
                if ctx.err().is_conditional_check_failed_exception() =>
            {
                Ok(())
            }
            Err(e) => Err(port_error("abandon idempotency record", e)),
        }
    }
}

impl RequestStore for DynamoIngestStore {
    async fn create(&self, request: &NewRequest) -> PortResult<()> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(request_pk(request.id)))
            .item("accepted", n(request.accepted))
            .item("created_at", s(request.created_at.to_rfc3339()))
            .item("expires_at", n(request.expires_at.timestamp()));
        if let Some(change) = &request.single {
            // Its status is derived from the user's sync item (`ports::requests`): the drain writes nothing here.
            put = put
                .item(EMAIL, s(change.email.as_str()))
                .item(
                    FIELD_KEYS,
                    AttributeValue::Ss(change.fields.iter().map(FieldKey::storage_key).collect()),
                )
                .item(PRECEDENCE, s(precedence_key(&change.precedence)));
        }
        // Request ids are fresh UUIDs: an existing item would be a bug, never overwrite one.
        put.condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| port_error("create request record", e))?;
        Ok(())
    }

    async fn counters(&self, id: RequestId) -> PortResult<Option<RequestCounters>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(request_pk(id)))
            .send()
            .await
            .map_err(|e| port_error("read request record", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let recorded = recorded_counters(item);
        let Some(change) = tracked_change(item) else {
            return Ok(Some(recorded));
        };
        // Consistent: a change the drain has just recorded reads as settled.
        let user = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(user_key(&change.email)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("read sync state", e))?;
        let synced = user.item().map(parse_fields).unwrap_or_default();
        Ok(Some(single_change_counters(&change, &synced, recorded)))
    }
}

/// The change a single-change request's item keeps; `None` for a multi-change request (or an item from
/// before single-change requests were derived).
fn tracked_change(item: &HashMap<String, AttributeValue>) -> Option<TrackedChange> {
    let email = Email::parse(get_s(item, EMAIL)?).ok()?;
    let fields = item
        .get(FIELD_KEYS)?
        .as_ss()
        .ok()?
        .iter()
        .map(|k| FieldKey::from_storage_key(k))
        .collect::<Option<_>>()?;
    let precedence = parse_precedence_key(get_s(item, PRECEDENCE)?)?;
    Some(TrackedChange {
        email,
        fields,
        precedence,
    })
}

/// What the drain wrote to the request's sets, each change counted once (delivered before dead-lettered
/// before skipped), plus the counters of items from before the sets.
fn recorded_counters(item: &HashMap<String, AttributeValue>) -> RequestCounters {
    let set = |name: &str| -> HashSet<&str> {
        item.get(name)
            .and_then(|v| v.as_ss().ok())
            .map(|ids| ids.iter().map(String::as_str).collect())
            .unwrap_or_default()
    };
    let delivered = set("delivered_ids");
    let dead: HashSet<&str> = set("dead_lettered_ids")
        .into_iter()
        .filter(|c| !delivered.contains(c))
        .collect();
    let skipped = set("skipped_ids")
        .into_iter()
        .filter(|c| !delivered.contains(c) && !dead.contains(c))
        .count();
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    RequestCounters {
        accepted: counter(item, "accepted"),
        delivered: counter(item, "delivered").saturating_add(size(delivered.len())),
        skipped: counter(item, "skipped").saturating_add(size(skipped)),
        dead_lettered: counter(item, "dead_lettered").saturating_add(size(dead.len())),
    }
}
