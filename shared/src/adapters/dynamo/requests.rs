//! The drain's side of request progress ([`RequestTracker`]): each settled change id added to its
//! request's `delivered_ids` / `skipped_ids` / `dead_lettered_ids` set (ingest creates the item and reads
//! it: [`crate::adapters::dynamo_ingest`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::DynamoState;
use super::item::{n, request_key, s};
use crate::adapters::sdk_error::port_error;
use crate::domain::{ChangeId, RequestId};
use crate::ports::{PortResult, RequestTracker, Settled};

/// The request item's sets, in the order [`RequestTracker::record`] fills them.
const SETS: [&str; 3] = ["delivered_ids", "skipped_ids", "dead_lettered_ids"];

impl DynamoState {
    /// Adds settled change ids to one request's sets: a set union, so a change settled twice (a
    /// redelivery, a copy) is counted once.
    async fn add_settled(&self, id: RequestId, sets: [Vec<String>; 3]) -> PortResult<()> {
        let mut adds = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(request_key(&id)))
            .expression_attribute_values(":exp", n(Utc::now().timestamp() + 7 * 86_400));
        for (name, ids) in SETS.into_iter().zip(sets) {
            if ids.is_empty() {
                continue;
            }
            adds.push(format!("{name} :{name}"));
            req = req.expression_attribute_values(format!(":{name}"), AttributeValue::Ss(ids));
        }
        if adds.is_empty() {
            return Ok(());
        }
        req.update_expression(format!(
            "ADD {} SET expires_at = if_not_exists(expires_at, :exp)",
            adds.join(", ")
        ))
        .send()
        .await
        .map_err(|e| port_error("updating request progress", e))?;
        Ok(())
    }
}

impl RequestTracker for DynamoState {
    async fn record(&self, settled: &[(RequestId, ChangeId, Settled)]) -> PortResult<()> {
        let mut by_request: HashMap<RequestId, [Vec<String>; 3]> = HashMap::new();
        for (request, change, how) in settled {
            let slot = match how {
                Settled::Delivered => 0,
                Settled::Skipped => 1,
                Settled::DeadLettered => 2,
            };
            by_request.entry(*request).or_default()[slot].push(change.to_string());
        }
        let calls: Vec<_> = by_request
            .into_iter()
            .map(|(id, sets)| self.add_settled(id, sets))
            .collect();
        stream::iter(calls)
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}
