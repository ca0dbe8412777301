//! Ingest's idempotency records (`idem#<sha256 of key>`): a request claims its key with a conditional put,
//! completes it with its answer, or abandons it; a retry with the same key reads the record.

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};

use super::DynamoIngestStore;
use crate::adapters::dynamo::conditional_write;
use crate::adapters::dynamo::item::{Item, get_n, get_s, idempotency_key, n, s};
use crate::domain::RequestId;
use crate::ports::{
    Accepted, Claim, IdempotencyKey, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    NewClaim, PortError, PortResult,
};

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";

fn parse_record(item: &Item) -> PortResult<IdempotencyRecord> {
    let item = Some(item);
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

impl IdempotencyStore for DynamoIngestStore {
    async fn claim(&self, key: &IdempotencyKey, claim: &NewClaim) -> PortResult<Claim> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(idempotency_key(key)))
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
        if conditional_write(put, "claim idempotency key")? {
            return Ok(Claim::Won);
        }
        Ok(Claim::Held(self.get(key, claim.now).await?))
    }

    async fn get(
        &self,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> PortResult<Option<IdempotencyRecord>> {
        let item = self
            .get_item(idempotency_key(key), true, "read idempotency record")
            .await?;
        let Some(item) = item else {
            return Ok(None);
        };
        if get_n(Some(&item), "expires_at").is_some_and(|t| t < now.timestamp()) {
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
            .key("pk", s(idempotency_key(key)))
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
        if conditional_write(update, "complete idempotency record")? {
            return Ok(());
        }
        Err(PortError::permanent(
            "complete idempotency record",
            anyhow!("another request took the key over (lease ran out)"),
        ))
    }

    async fn abandon(&self, key: &IdempotencyKey, owner: RequestId) -> PortResult<()> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(idempotency_key(key)))
            .condition_expression("#owner = :owner AND #status = :in_progress")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", s(owner.to_string()))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        // Someone else holds it now: theirs to finish.
        conditional_write(delete, "abandon idempotency record").map(drop)
    }
}
