//! The DLQ as operators handle it (`sluice dlq`): the other end of the drain's dead-lettering
//! ([`super::SqsChangeQueue`]'s `dead_letter`).
//!
//! - peek: receive with every attribute and a visibility timeout, then show the messages again;
//! - hide or show received messages in batches (`ChangeMessageVisibilityBatch`);
//! - redrive a batch from this machine: copy it to the changes queue with its message attributes (the
//!   drain's own `sluice.*` ones dropped: a message that fails again gets fresh ones), then delete the
//!   originals whose copy was accepted;
//! - SQS's own move task: start it, read its progress, cancel it.
//!
//! The messages are handed out as SQS has them (`Message`): the operators' tools read every attribute.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};

use super::batch::{self, entry_id, split_refused};
use super::{ATTR_PREFIX, MAX_BATCH_ENTRIES, queue_backlog};
use crate::adapters::sdk_error::port_error;
use crate::ports::{Backlog, PortError, PortResult, ReceiptHandle};

/// StartMessageMoveTask's highest rate.
const MOVE_TASK_MAX_RATE: u32 = 500;

/// A queue by both of its names: the URL for messages, the ARN for move tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    pub url: String,
    pub arn: String,
}

/// The DLQ and the changes queue its messages go back to.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    client: Client,
    dlq: QueueRef,
    changes: QueueRef,
}

/// What one client-side redrive batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedrivenBatch {
    /// Copies now on the changes queue.
    pub copied: u64,
    /// Copied messages whose original could not be deleted: they stay on the DLQ too (harmless
    /// duplicates).
    pub not_deleted: u64,
    /// Messages whose copy the changes queue refused; their originals are visible on the DLQ again.
    pub refused: u64,
    /// Why, one `code: message` per refused copy.
    pub refusals: Vec<String>,
}

/// How a move task start went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveTaskStart {
    /// Running; the handle cancels it (empty if SQS gave none).
    Started(String),
    /// This endpoint or these credentials cannot run a move task (the error code).
    Unavailable(String),
}

/// The latest move task of the DLQ, as `ListMessageMoveTasks` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTaskProgress {
    /// `RUNNING`, `COMPLETED`, `CANCELLING`, `CANCELLED`, `FAILED`.
    pub status: String,
    pub to_move: Option<u64>,
    pub moved: u64,
    pub failure_reason: Option<String>,
}

/// Error codes that mean "this endpoint or these credentials cannot run a move task", as opposed to a
/// failure of the task itself.
pub fn move_task_unavailable(code: &str) -> bool {
    [
        "UnsupportedOperation",
        "InvalidAction",
        "UnknownOperation",
        "NotImplemented",
        "AccessDenied",
    ]
    .iter()
    .any(|c| code.contains(c))
}

/// A received message's receipt handle (empty if SQS gave none).
pub fn receipt_of(message: &Message) -> ReceiptHandle {
    ReceiptHandle(message.receipt_handle().unwrap_or_default().to_owned())
}

impl SqsDeadLetters {
    pub fn new(client: Client, dlq: QueueRef, changes: QueueRef) -> Self {
        Self {
            client,
            dlq,
            changes,
        }
    }

    /// Approximate depth of the DLQ (receives nothing).
    pub async fn depth(&self) -> PortResult<Backlog> {
        queue_backlog(&self.client, &self.dlq.url).await
    }

    /// Receives up to 10 messages with every attribute, hidden for `visibility`.
    pub async fn receive(&self, max: i32, visibility: Duration) -> PortResult<Vec<Message>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.dlq.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH_ENTRIES as i32))
            .visibility_timeout(visibility.as_secs() as i32)
            // A long poll asks every SQS server; a short one samples a few and can miss messages.
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| port_error("receiving from the DLQ", e))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Makes received messages visible again at once. Returns how many could not be (they reappear by
    /// themselves when their visibility timeout ends).
    pub async fn make_visible(&self, receipts: &[ReceiptHandle]) -> usize {
        self.set_visibility(receipts, Duration::ZERO).await
    }

    /// Sets the visibility timeout of received messages; returns how many could not be changed (a failed
    /// call is logged, not returned: the messages reappear by themselves).
    pub async fn set_visibility(&self, receipts: &[ReceiptHandle], timeout: Duration) -> usize {
        let mut failed = 0;
        for chunk in receipts.chunks(MAX_BATCH_ENTRIES) {
            let items: Vec<_> = chunk.iter().map(|r| (r.clone(), timeout)).collect();
            let what = "changing the visibility of DLQ messages";
            match batch::change_visibility(&self.client, &self.dlq.url, &items, what).await {
                Ok(n) => failed += n,
                Err(e) => {
                    tracing::warn!(error = %e, seconds = timeout.as_secs(), "could not change the visibility of DLQ messages");
                    failed += chunk.len();
                }
            }
        }
        failed
    }

    /// Deletes received messages from the DLQ; returns how many deletes failed.
    pub async fn delete(&self, receipts: &[ReceiptHandle]) -> PortResult<u64> {
        let mut failed = 0;
        for chunk in receipts.chunks(MAX_BATCH_ENTRIES) {
            let what = "deleting redriven messages from the DLQ";
            failed += batch::delete(&self.client, &self.dlq.url, chunk, what)
                .await?
                .len() as u64;
        }
        Ok(failed)
    }

    /// Sends copies of `messages` (at most 10) to the changes queue, then deletes the originals whose copy
    /// was accepted. A refused copy leaves its original on the DLQ, visible again at once.
    pub async fn redrive_batch(&self, messages: &[Message]) -> PortResult<RedrivenBatch> {
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| copy_entry(i, m))
            .collect::<PortResult<Vec<_>>>()?;
        let what = "sending to the changes queue";
        let refused = batch::send(&self.client, &self.changes.url, entries, what).await?;
        let receipts: Vec<ReceiptHandle> = messages.iter().map(receipt_of).collect();
        let (copied, not_copied) = split_refused(&receipts, &refused);
        if !not_copied.is_empty() {
            self.make_visible(&not_copied).await;
        }
        // Delete what was copied, also when some copies were refused, so nothing is left twice.
        let not_deleted = self.delete(&copied).await?;
        Ok(RedrivenBatch {
            copied: copied.len() as u64,
            not_deleted,
            refused: not_copied.len() as u64,
            refusals: refused.into_iter().map(|r| r.reason).collect(),
        })
    }

    /// Asks SQS to move every DLQ message to the changes queue, at most `max_per_second` (capped at SQS's
    /// 500/s).
    pub async fn start_move_task(&self, max_per_second: Option<u32>) -> PortResult<MoveTaskStart> {
        let started = self
            .client
            .start_message_move_task()
            .source_arn(&self.dlq.arn)
            // Explicit: the drain's own dead letters carry no DeadLetterQueueSourceArn to go back to.
            .destination_arn(&self.changes.arn)
            .set_max_number_of_messages_per_second(
                max_per_second.map(|r| r.min(MOVE_TASK_MAX_RATE) as i32),
            )
            .send()
            .await;
        match started {
            Ok(out) => Ok(MoveTaskStart::Started(out.task_handle.unwrap_or_default())),
            Err(e) => {
                let code = e.code().unwrap_or_default().to_owned();
                if move_task_unavailable(&code) {
                    return Ok(MoveTaskStart::Unavailable(code));
                }
                Err(port_error("starting the DLQ move task", e))
            }
        }
    }

    /// The DLQ's latest move task, if SQS lists one.
    pub async fn move_task_progress(&self) -> PortResult<Option<MoveTaskProgress>> {
        let tasks = self
            .client
            .list_message_move_tasks()
            .source_arn(&self.dlq.arn)
            .max_results(1)
            .send()
            .await
            .map_err(|e| port_error("reading the move task's progress", e))?;
        Ok(tasks.results().first().map(|task| MoveTaskProgress {
            status: task.status().unwrap_or_default().to_owned(),
            to_move: task
                .approximate_number_of_messages_to_move()
                .map(|total| u64::try_from(total).unwrap_or(0)),
            moved: u64::try_from(task.approximate_number_of_messages_moved()).unwrap_or(0),
            failure_reason: task.failure_reason().map(str::to_owned),
        }))
    }

    /// Cancels a running move task (messages already moved stay moved).
    pub async fn cancel_move_task(&self, handle: &str) -> PortResult<()> {
        self.client
            .cancel_message_move_task()
            .task_handle(handle)
            .send()
            .await
            .map_err(|e| port_error("cancelling the move task", e))?;
        Ok(())
    }
}

/// The changes-queue copy of a DLQ message: its body and its attributes but Sluice's own.
fn copy_entry(index: usize, m: &Message) -> PortResult<SendMessageBatchRequestEntry> {
    let attributes: HashMap<String, MessageAttributeValue> = m
        .message_attributes()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with(ATTR_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    SendMessageBatchRequestEntry::builder()
        .id(entry_id(index))
        .message_body(m.body().unwrap_or(" "))
        .set_message_attributes((!attributes.is_empty()).then_some(attributes))
        .build()
        .map_err(|e| PortError::permanent("building a SendMessageBatch entry", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::adapters::sqs::{ATTR_ATTEMPTS, ATTR_REASON};

    fn attr(data_type: &str, v: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(v)
            .build()
            .unwrap()
    }

    #[test]
    fn a_copy_keeps_the_body_and_foreign_attributes_only() {
        let m = Message::builder()
            .body("{}")
            .message_attributes(ATTR_REASON, attr("String", "rejected"))
            .message_attributes(ATTR_ATTEMPTS, attr("Number", "3"))
            .message_attributes("trace", attr("String", "t-1"))
            .build();
        let entry = copy_entry(4, &m).unwrap();
        assert_eq!(entry.id(), "4");
        assert_eq!(entry.message_body(), "{}");
        let attributes = entry.message_attributes().unwrap();
        assert_eq!(attributes.keys().collect::<Vec<_>>(), ["trace"]);

        let bare = copy_entry(0, &Message::builder().build()).unwrap();
        assert_eq!(bare.message_body(), " ");
        assert!(bare.message_attributes().is_none());
    }

    #[test]
    fn only_some_refusals_mean_the_move_task_is_unavailable() {
        assert!(move_task_unavailable(
            "AWS.SimpleQueueService.UnsupportedOperation"
        ));
        assert!(move_task_unavailable("AccessDeniedException"));
        assert!(!move_task_unavailable("ResourceNotFoundException"));
    }
}
