//! The DLQ as operators handle it (`sluice dlq`): the other end of the drain's dead-lettering
//! ([`super::SqsChangeQueue`]'s `dead_letter`).
//!
//! - peek: receive with every attribute and a visibility timeout, then show the messages again;
//! - hide or show received messages in batches (`ChangeMessageVisibilityBatch`);
//! - redrive a batch from this machine: copy each message back to the queue of the lane it came from
//!   ([`lane_of`]) with its message attributes (the drain's own `sluice.*` ones dropped: a message that
//!   fails again gets fresh ones), then delete the originals whose copy was accepted;
//! - SQS's own move task: start it, read its progress, cancel it.
//!
//! The messages are handed out as SQS has them (`Message`): the operators' tools read every attribute.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};

use super::batch::{self, entry_id, split_refused};
use super::{ATTR_LANE, ATTR_PREFIX, MAX_BATCH_ENTRIES, queue_backlog};
use crate::adapters::sdk_error::port_error;
use crate::domain::{ChangeMessage, Priority};
use crate::ports::{Backlog, Lanes, PortError, PortResult, ReceiptHandle};

/// StartMessageMoveTask's highest rate.
const MOVE_TASK_MAX_RATE: u32 = 500;

/// A queue by both of its names: the URL for messages, the ARN for move tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    pub url: String,
    pub arn: String,
}

/// The DLQ and the changes queues its messages go back to.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    client: Client,
    dlq: QueueRef,
    /// The normal lane's queue: the move task's destination.
    changes: QueueRef,
    /// Every lane's queue URL (the normal one is `changes`'): where a client-side redrive sends each.
    lanes: Lanes<String>,
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
    /// Copies per lane they went back to.
    pub by_lane: BTreeMap<Priority, u64>,
}

impl RedrivenBatch {
    fn add(&mut self, other: RedrivenBatch) {
        self.copied += other.copied;
        self.not_deleted += other.not_deleted;
        self.refused += other.refused;
        self.refusals.extend(other.refusals);
    }
}

/// The lane a dead letter came from: its `sluice.lane` attribute (the drain writes it), else its change's
/// priority (SQS's own redrive after `maxReceiveCount` writes no attribute; ingest queued the change on
/// its priority's lane), else `normal` (a body that is no change message).
pub fn lane_of(message: &Message) -> Priority {
    let attribute = message
        .message_attributes()
        .and_then(|a| a.get(ATTR_LANE))
        .and_then(|v| v.string_value())
        .and_then(Priority::from_name);
    attribute
        .or_else(|| {
            ChangeMessage::from_body(message.body()?)
                .ok()
                .map(|c| c.into_change().priority)
        })
        .unwrap_or_default()
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
    /// The DLQ and one changes queue for every lane.
    pub fn new(client: Client, dlq: QueueRef, changes: QueueRef) -> Self {
        let lanes = Lanes::single(changes.url.clone());
        Self {
            client,
            dlq,
            changes,
            lanes,
        }
    }

    /// The same DLQ, sending each message back to its lane's queue (`lanes`' normal one is `changes`).
    pub fn with_lanes(mut self, lanes: Lanes<String>) -> Self {
        self.lanes = lanes;
        self
    }

    /// Whether some lane has a queue of its own: SQS's move task, which has one destination, cannot then
    /// send each message back to its lane.
    pub fn has_lanes(&self) -> bool {
        self.lanes.served().count() > 1
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

    /// Sends copies of `messages` (at most 10) back to their lanes' queues ([`lane_of`]), then deletes
    /// the originals whose copy was accepted. A refused copy leaves its original on the DLQ, visible again
    /// at once.
    pub async fn redrive_batch(&self, messages: &[Message]) -> PortResult<RedrivenBatch> {
        let mut out = RedrivenBatch::default();
        for lane in Priority::FIRST_SERVED_FIRST {
            let mine: Vec<&Message> = messages
                .iter()
                .filter(|m| self.lanes.lane_of(lane_of(m)) == lane)
                .collect();
            if !mine.is_empty() {
                let sent = self.redrive_to(self.lanes.queue(lane), &mine).await?;
                *out.by_lane.entry(lane).or_default() += sent.copied;
                out.add(sent);
            }
        }
        Ok(out)
    }

    /// Copies `messages` to the queue at `url`, then deletes the originals whose copy was accepted.
    async fn redrive_to(&self, url: &str, messages: &[&Message]) -> PortResult<RedrivenBatch> {
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| copy_entry(i, m))
            .collect::<PortResult<Vec<_>>>()?;
        let what = "sending to the changes queue";
        let refused = batch::send(&self.client, url, entries, what).await?;
        let receipts: Vec<ReceiptHandle> = messages.iter().map(|m| receipt_of(m)).collect();
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
            by_lane: BTreeMap::new(),
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
    fn a_dead_letter_goes_back_to_its_lane_from_the_attribute_else_its_priority() {
        let with = |lane: &str| {
            Message::builder()
                .body("{}")
                .message_attributes(ATTR_LANE, attr("String", lane))
                .build()
        };
        assert_eq!(lane_of(&with("high")), Priority::High);
        assert_eq!(lane_of(&with("bulk")), Priority::Bulk);
        let body = r#"{"v":"1","change_id":"6f2c1c52-6a53-4a43-9d1f-0c8f3a4d1e01","request_id":"0b7e6f58-2f7a-4a57-9c3e-2f1d6f0e9a02","email":"a@x.io","occurred_at":"2025-03-01T10:00:00Z","accepted_at":"2025-03-01T10:00:01Z","priority":"high"}"#;
        assert_eq!(
            lane_of(&Message::builder().body(body).build()),
            Priority::High
        );
        assert_eq!(
            lane_of(&Message::builder().body("junk").build()),
            Priority::Normal
        );
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
