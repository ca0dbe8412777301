//! The changes queue on SQS, for the drain ([`ChangeQueue`]): receive in parallel calls of 10, delete and
//! release in batches of 10, re-queue held messages as fresh copies, dead-letter with the reason as message
//! attributes (the names are in [`super`]).

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::batch::{self, entry_id, split_refused};
use super::{
    ATTR_ATTEMPTS, ATTR_DEAD_LETTERED_AT, ATTR_DETAIL, ATTR_LANE, ATTR_REASON, ATTR_RECEIVE_COUNT,
    ATTR_SOURCE_MESSAGE_ID, MAX_BATCH_ENTRIES,
};
use crate::adapters::sdk_error::port_error;
use crate::domain::truncate;
use crate::ports::{
    Backlog, ChangeQueue, DeadLetter, PortError, PortResult, ReceiptHandle, ReceivedMessage,
};

/// Parallel SQS calls in flight at once.
const PARALLEL_CALLS: usize = 10;
/// SQS's longest message delay (15 min).
const MAX_DELAY: Duration = Duration::from_secs(900);

/// Runs batch calls `PARALLEL_CALLS` at a time; the first error ends them.
async fn in_parallel<T>(
    calls: Vec<impl std::future::Future<Output = PortResult<T>>>,
) -> PortResult<Vec<T>> {
    stream::iter(calls)
        .buffer_unordered(PARALLEL_CALLS)
        .try_collect()
        .await
}

/// A message attribute of `data_type` (`String`, `Number`).
fn attribute(data_type: &str, value: String) -> PortResult<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .map_err(|e| PortError::permanent("building a message attribute", e))
}

/// The changes queue and its DLQ.
#[derive(Debug, Clone)]
pub struct SqsChangeQueue {
    client: Client,
    queue_url: String,
    dlq_url: String,
}

impl SqsChangeQueue {
    pub fn new(client: Client, queue_url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
        }
    }

    /// Another queue with the same client and DLQ (another lane's).
    pub fn for_url(&self, queue_url: impl Into<String>) -> Self {
        let mut other = self.clone();
        other.queue_url = queue_url.into();
        other
    }

    async fn delete_chunk(&self, chunk: Vec<ReceiptHandle>) -> PortResult<Vec<ReceiptHandle>> {
        batch::delete(
            &self.client,
            &self.queue_url,
            &chunk,
            "deleting delivered messages",
        )
        .await
    }

    async fn release_chunk(&self, chunk: Vec<(ReceiptHandle, Duration)>) -> PortResult<()> {
        // A failed entry keeps its current visibility timeout and comes back a little later: harmless.
        batch::change_visibility(&self.client, &self.queue_url, &chunk, "releasing messages")
            .await?;
        Ok(())
    }

    /// One `SendMessageBatch` of fresh copies, then one delete of the originals that were copied.
    async fn requeue_chunk(
        &self,
        chunk: Vec<(ReceivedMessage, Duration)>,
    ) -> PortResult<Vec<ReceiptHandle>> {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, (m, delay)) in chunk.iter().enumerate() {
            let attempts = attribute("Number", m.attempts_before_this_receive().to_string())?;
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(entry_id(i))
                    .message_body(&m.body)
                    .delay_seconds(delay.min(&MAX_DELAY).as_secs() as i32)
                    .message_attributes(ATTR_ATTEMPTS, attempts)
                    .build()
                    .map_err(|e| PortError::permanent("building a requeue entry", e))?,
            );
        }
        let receipts: Vec<ReceiptHandle> = chunk.iter().map(|(m, _)| m.receipt.clone()).collect();
        // Delete only the originals whose copy is on the queue; the others stay, hidden until their
        // visibility timeout, and are received again.
        let refused = batch::send(
            &self.client,
            &self.queue_url,
            entries,
            "re-queueing held messages",
        )
        .await?;
        let (copied, _) = split_refused(&receipts, &refused);
        self.delete_chunk(copied).await
    }

    /// One `SendMessageBatch` of dead letters to the DLQ, then one delete of the originals that reached it.
    async fn dead_letter_chunk(&self, chunk: &[DeadLetter], now: &str) -> PortResult<()> {
        let attr = |v: String| attribute("String", v);
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, l) in chunk.iter().enumerate() {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(entry_id(i))
                .message_body(if l.message.body.is_empty() {
                    " ".to_string()
                } else {
                    l.message.body.clone()
                })
                .message_attributes(ATTR_REASON, attr(l.reason.as_str().to_string())?)
                .message_attributes(ATTR_DETAIL, attr(truncate(&l.detail, 1_000))?)
                .message_attributes(ATTR_SOURCE_MESSAGE_ID, attr(l.message.message_id.clone())?)
                .message_attributes(ATTR_RECEIVE_COUNT, attr(l.message.attempts().to_string())?)
                .message_attributes(ATTR_DEAD_LETTERED_AT, attr(now.to_owned())?)
                .message_attributes(ATTR_LANE, attr(l.lane.as_str().to_owned())?)
                .build()
                .map_err(|e| PortError::permanent("building a DLQ entry", e))?;
            entries.push(entry);
        }
        let receipts: Vec<ReceiptHandle> =
            chunk.iter().map(|l| l.message.receipt.clone()).collect();
        // Delete only what reached the DLQ; the rest stays on the queue and is tried again.
        let refused =
            batch::send(&self.client, &self.dlq_url, entries, "sending to the DLQ").await?;
        let (sent, _) = split_refused(&receipts, &refused);
        self.delete(&sent).await?;
        if !refused.is_empty() {
            return Err(PortError::transient(
                "sending to the DLQ",
                anyhow::anyhow!("{} entries failed", refused.len()),
            ));
        }
        Ok(())
    }

    async fn receive_one(&self, n: i32, wait_seconds: i32) -> PortResult<Vec<ReceivedMessage>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(n)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names(ATTR_ATTEMPTS)
            .send()
            .await
            .map_err(|e| port_error("receiving from the changes queue", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let prior_attempts = m
                    .message_attributes()
                    .and_then(|a| a.get(ATTR_ATTEMPTS))
                    .and_then(|v| v.string_value())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Some(ReceivedMessage {
                    message_id: m.message_id()?.to_string(),
                    receipt: ReceiptHandle(m.receipt_handle()?.to_string()),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count,
                    prior_attempts,
                })
            })
            .collect())
    }
}

/// Approximate depth of any queue (`GetQueueAttributes`: receives nothing, so no receive counts rise).
/// The drain reads its own queue through [`ChangeQueue::backlog`]; operators' tools read the DLQ too.
pub async fn queue_backlog(client: &Client, queue_url: &str) -> PortResult<Backlog> {
    let out = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| port_error("reading the queue depth", e))?;
    let get = |name: QueueAttributeName| -> u64 {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Backlog {
        visible: get(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    })
}

impl ChangeQueue for SqsChangeQueue {
    async fn backlog(&self) -> PortResult<Backlog> {
        queue_backlog(&self.client, &self.queue_url).await
    }

    async fn receive(&self, max: u32) -> PortResult<Vec<ReceivedMessage>> {
        let mut out = Vec::with_capacity(max as usize);
        // The first round long-polls for 1 s: SQS short polls sample a subset of servers and can come back
        // empty from a non-empty queue. Later rounds only run after a full round, so short polls do.
        let mut wait_seconds = 1;
        // Rounds of up to PARALLEL_CALLS calls; stop once a round comes back short (the queue is drained).
        while (out.len() as u32) < max {
            let remaining = max - out.len() as u32;
            let sizes: Vec<i32> = (0..remaining.div_ceil(10).min(PARALLEL_CALLS as u32))
                .map(|i| (remaining - i * 10).min(10) as i32)
                .collect();
            let asked: i32 = sizes.iter().sum();
            let calls: Vec<_> = sizes
                .into_iter()
                .map(|n| self.receive_one(n, wait_seconds))
                .collect();
            wait_seconds = 0;
            let rounds: Vec<Vec<ReceivedMessage>> = stream::iter(calls)
                .buffer_unordered(PARALLEL_CALLS)
                .try_collect()
                .await?;
            let got: usize = rounds.iter().map(Vec::len).sum();
            out.extend(rounds.into_iter().flatten());
            if (got as i32) < asked {
                break;
            }
        }
        Ok(out)
    }

    async fn delete(&self, receipts: &[ReceiptHandle]) -> PortResult<Vec<ReceiptHandle>> {
        // Futures built up front (not by a closure inside the stream) keep the future `Send` for any lifetime.
        let calls: Vec<_> = receipts
            .chunks(MAX_BATCH_ENTRIES)
            .map(|c| self.delete_chunk(c.to_vec()))
            .collect();
        Ok(in_parallel(calls).await?.into_iter().flatten().collect())
    }

    async fn release(&self, items: &[(ReceiptHandle, Duration)]) -> PortResult<()> {
        let calls: Vec<_> = items
            .chunks(MAX_BATCH_ENTRIES)
            .map(|c| self.release_chunk(c.to_vec()))
            .collect();
        in_parallel(calls).await?;
        Ok(())
    }

    async fn requeue(
        &self,
        items: &[(ReceivedMessage, Duration)],
    ) -> PortResult<Vec<ReceiptHandle>> {
        let calls: Vec<_> = items
            .chunks(MAX_BATCH_ENTRIES)
            .map(|c| self.requeue_chunk(c.to_vec()))
            .collect();
        Ok(in_parallel(calls).await?.into_iter().flatten().collect())
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> PortResult<()> {
        let now = chrono::Utc::now().to_rfc3339();
        for chunk in letters.chunks(MAX_BATCH_ENTRIES) {
            self.dead_letter_chunk(chunk, &now).await?;
        }
        Ok(())
    }
}
