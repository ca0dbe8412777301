//! The changes queue, as the drain sees it (SQS in AWS: [`crate::adapters::sqs`]).

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::PortResult;
use crate::domain::Priority;

/// The handle that deletes or releases one received message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptHandle(pub String);

/// One message as received from the changes queue.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt: ReceiptHandle,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
    /// Delivery attempts made on earlier copies of this change: a message a run held but could not try
    /// is re-queued as a fresh copy (so its receive count is not spent) that carries its attempts along.
    pub prior_attempts: u32,
}

impl ReceivedMessage {
    /// Delivery attempts of this change, this receive included.
    pub fn attempts(&self) -> u32 {
        self.prior_attempts.saturating_add(self.receive_count)
    }

    /// Attempts a re-queued copy carries: this receive was not an attempt (the message was held).
    pub fn attempts_before_this_receive(&self) -> u32 {
        self.attempts().saturating_sub(1)
    }
}

/// Approximate queue depth (SQS counts are approximate by nature).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

/// Why a message went to the dead-letter queue; written as a message attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The body is not a change message Sluice can read.
    Malformed,
    /// The provider refused the record (a 4xx about this record, isolated from the rest of its batch).
    Rejected,
    /// The record failed transiently on every one of its `MAX_RECEIVE_COUNT` attempts.
    RetriesExhausted,
}

impl DeadLetterReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadLetterReason::Malformed => "malformed",
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// A message on its way to the DLQ: original body, with the reason and detail as attributes.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message: ReceivedMessage,
    /// The lane the message was received from (the `sluice.lane` attribute): redrive sends it back there.
    pub lane: Priority,
    pub reason: DeadLetterReason,
    pub detail: String,
}

/// The changes queue, as the drain sees it.
pub trait ChangeQueue: Send + Sync {
    /// Approximate depth, read without receiving anything (so without raising receive counts).
    fn backlog(&self) -> impl Future<Output = PortResult<Backlog>> + Send;
    /// Receives up to `max` messages (many calls of ≤ 10, in parallel). Returns fewer when the queue has fewer.
    fn receive(&self, max: u32) -> impl Future<Output = PortResult<Vec<ReceivedMessage>>> + Send;
    /// Deletes messages whose data was delivered or superseded. Returns the receipts that failed.
    fn delete(
        &self,
        receipts: &[ReceiptHandle],
    ) -> impl Future<Output = PortResult<Vec<ReceiptHandle>>> + Send;
    /// Makes messages visible again after the given delay each (0 = now). For messages that were tried.
    fn release(
        &self,
        items: &[(ReceiptHandle, Duration)],
    ) -> impl Future<Output = PortResult<()>> + Send;
    /// Puts a fresh copy of each message back on the queue, delayed (SQS caps delays at 15 minutes), with
    /// its attempts so far, then deletes the original: for messages a run held but did not try, so that
    /// holding a message never spends its receive count. Returns the receipts whose original could not be
    /// deleted (a copy then exists twice, which the drain coalesces).
    fn requeue(
        &self,
        items: &[(ReceivedMessage, Duration)],
    ) -> impl Future<Output = PortResult<Vec<ReceiptHandle>>> + Send;
    /// Sends messages to the DLQ with their reason, then deletes them from the queue.
    fn dead_letter(&self, letters: &[DeadLetter]) -> impl Future<Output = PortResult<()>> + Send;
}
