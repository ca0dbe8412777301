//! Batch reads and writes of the drain's table, and the one hand-written retry: DynamoDB answers
//! throttling *inside* a batch call with UnprocessedKeys / UnprocessedItems (or, for
//! BatchExecuteStatement, a throttled statement) while the call itself succeeds, so the SDK's retry never
//! sees it. Those parts are sent again here after a short exponential wait, 8 tries at most.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{KeysAndAttributes, WriteRequest};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::DynamoState;
use super::item::{Item, s};
use crate::adapters::sdk_error::port_error;
use crate::ports::{PortError, PortResult};

/// BatchGetItem / BatchWriteItem calls in flight.
pub(super) const CALLS_IN_FLIGHT: usize = 8;

/// Between retries of a batch call's unprocessed keys, items or throttled statements: a short exponential
/// wait, and an error after 8 tries.
pub(super) async fn unprocessed_backoff(attempts: u32, what: &'static str) -> PortResult<()> {
    if attempts >= 8 {
        return Err(PortError::transient(
            what,
            anyhow::anyhow!("unprocessed keys or items after {attempts} attempts"),
        ));
    }
    tokio::time::sleep(std::time::Duration::from_millis(10 << attempts)).await;
    Ok(())
}

impl DynamoState {
    /// Items by key, read consistently in BatchGetItems of `per_call` keys, 8 in flight; missing ones are
    /// absent from the answer.
    pub(super) async fn read_items(
        &self,
        keys: Vec<String>,
        per_call: usize,
        what: &'static str,
    ) -> PortResult<HashMap<String, Item>> {
        let calls: Vec<_> = keys
            .chunks(per_call)
            .map(|c| self.read_chunk(c.to_vec(), what))
            .collect();
        let chunks: Vec<Vec<Item>> = stream::iter(calls)
            .buffer_unordered(CALLS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(chunks
            .into_iter()
            .flatten()
            .filter_map(|item| Some((item.get("pk")?.as_s().ok()?.clone(), item)))
            .collect())
    }

    /// One BatchGetItem, retrying unprocessed keys.
    async fn read_chunk(&self, chunk: Vec<String>, what: &'static str) -> PortResult<Vec<Item>> {
        let mut found = Vec::new();
        let keys: Vec<Item> = chunk
            .into_iter()
            .map(|k| HashMap::from([("pk".to_string(), s(k))]))
            .collect();
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::permanent("building a batch read", e))?,
        );
        let mut attempts = 0;
        while let Some(keys) = request.take() {
            attempts += 1;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| port_error(what, e))?;
            if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                found.extend(items.iter().cloned());
            }
            request = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
            if request.is_some() {
                unprocessed_backoff(attempts, what).await?;
            }
        }
        Ok(found)
    }

    /// One BatchWriteItem of up to 25 items, retrying unprocessed ones.
    pub(super) async fn write_batch(
        &self,
        chunk: Vec<WriteRequest>,
        what: &'static str,
    ) -> PortResult<()> {
        let mut pending = Some(chunk);
        let mut attempts = 0;
        while let Some(requests) = pending.take() {
            attempts += 1;
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| port_error(what, e))?;
            pending = out
                .unprocessed_items()
                .and_then(|u| u.get(&self.table))
                .filter(|r| !r.is_empty())
                .cloned();
            if pending.is_some() {
                unprocessed_backoff(attempts, what).await?;
            }
        }
        Ok(())
    }
}
