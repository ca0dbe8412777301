//! Ingest's side of request progress ([`RequestStore`]): the `request#<id>` item created once per
//! accepted request, and its status as `GET /v1/requests/{id}` shows it. Each change counts once however
//! often it is settled (a change in two sets counts as delivered before dead-lettered before skipped).
//! Items from before the sets carry `delivered`, `skipped`, `dead_lettered` (N), which are added. A
//! single-change request's status is derived when read, from its user's `user#<email>` item (a
//! consistent GetItem): see [`crate::ports::requests`].

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoIngestStore;
use crate::adapters::dynamo::item::{
    Item, counter, get_s, n, parse_fields, parse_precedence_key, precedence_key, request_key, s,
    user_key,
};
use crate::adapters::sdk_error::port_error;
use crate::domain::{Email, FieldKey, RequestId};
use crate::ports::{
    NewRequest, PortResult, RequestCounters, RequestStore, TrackedChange, single_change_counters,
};

/// A single-change request's change, in its request item.
const EMAIL: &str = "email";
const FIELD_KEYS: &str = "field_keys";
const PRECEDENCE: &str = "precedence";

impl RequestStore for DynamoIngestStore {
    async fn create(&self, request: &NewRequest) -> PortResult<()> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(request_key(&request.id)))
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
        let item = self
            .get_item(request_key(&id), false, "read request record")
            .await?;
        let Some(item) = item else {
            return Ok(None);
        };
        let recorded = recorded_counters(&item);
        let Some(change) = tracked_change(&item) else {
            return Ok(Some(recorded));
        };
        // Consistent: a change the drain has just recorded reads as settled.
        let user = self
            .get_item(user_key(&change.email), true, "read sync state")
            .await?;
        let synced = user.as_ref().map(parse_fields).unwrap_or_default();
        Ok(Some(single_change_counters(&change, &synced, recorded)))
    }
}

/// The change a single-change request's item keeps; `None` for a multi-change request (or an item from
/// before single-change requests were derived).
fn tracked_change(item: &Item) -> Option<TrackedChange> {
    let email = Email::parse(get_s(Some(item), EMAIL)?).ok()?;
    let fields = item
        .get(FIELD_KEYS)?
        .as_ss()
        .ok()?
        .iter()
        .map(|k| FieldKey::from_storage_key(k))
        .collect::<Option<_>>()?;
    let precedence = parse_precedence_key(get_s(Some(item), PRECEDENCE)?)?;
    Some(TrackedChange {
        email,
        fields,
        precedence,
    })
}

/// What the drain wrote to the request's sets, each change counted once (delivered before dead-lettered
/// before skipped), plus the counters of items from before the sets.
fn recorded_counters(item: &Item) -> RequestCounters {
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
    let item = Some(item);
    RequestCounters {
        accepted: counter(item, "accepted"),
        delivered: counter(item, "delivered").saturating_add(size(delivered.len())),
        skipped: counter(item, "skipped").saturating_add(size(skipped)),
        dead_lettered: counter(item, "dead_lettered").saturating_add(size(dead.len())),
    }
}
