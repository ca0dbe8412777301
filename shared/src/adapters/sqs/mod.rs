//! SQS: every call Sluice makes to it, by who makes it.
//!
//! - [`queue`]: [`SqsChangeQueue`], the drain's [`crate::ports::ChangeQueue`] — receive, delete, release,
//!   re-queue, dead-letter with the reason as message attributes.
//! - [`sink`]: [`SqsChangeSink`], ingest's [`crate::ports::ChangeSink`] — `SendMessageBatch` of accepted
//!   changes, retrying the entries SQS refuses (the SDK retries the calls).
//! - [`dead_letters`]: [`SqsDeadLetters`], the DLQ as operators handle it (`sluice dlq`): peek, hide and show
//!   again, copy back to the changes queue and delete, SQS's own move task.
//! - `batch`: the entry-level batch calls (delete, change visibility, send) the drain's queue and the
//!   operators' DLQ share.
//!
//! This file holds what they share: the attribute names the drain writes on dead letters (the operators'
//! tools read them back), the batch size, and how the clients are configured.

mod batch;
pub mod dead_letters;
pub mod queue;
pub mod sink;

use std::time::Duration;

pub use dead_letters::{MoveTaskProgress, MoveTaskStart, QueueRef, RedrivenBatch, SqsDeadLetters};
pub use queue::{SqsChangeQueue, queue_backlog};
pub use sink::SqsChangeSink;

/// Most entries in one batch call (`SendMessageBatch`, `DeleteMessageBatch`,
/// `ChangeMessageVisibilityBatch`), and most messages one `ReceiveMessage` returns.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// The prefix of every message attribute Sluice writes.
pub const ATTR_PREFIX: &str = "sluice.";
/// Message attribute names written on dead-lettered messages.
pub const ATTR_REASON: &str = "sluice.reason";
pub const ATTR_DETAIL: &str = "sluice.detail";
pub const ATTR_SOURCE_MESSAGE_ID: &str = "sluice.source_message_id";
pub const ATTR_RECEIVE_COUNT: &str = "sluice.receive_count";
pub const ATTR_DEAD_LETTERED_AT: &str = "sluice.dead_lettered_at";
/// The lane (`high`, `normal`, `bulk`) a dead letter came from: `sluice dlq redrive` sends it back there.
/// A dead letter without it (written before lanes, or moved by SQS's own redrive) belongs to `normal`.
pub const ATTR_LANE: &str = "sluice.lane";
/// On a re-queued copy (on the changes queue): delivery attempts of earlier copies of the change.
pub const ATTR_ATTEMPTS: &str = "sluice.attempts";

/// Tries of one call (the first included) the SDK makes for ingest before the error reaches
/// [`SqsChangeSink`]: throttling, 5xx, timeouts and connection failures are retried by the SDK's standard
/// retry mode, starting at [`INGEST_FIRST_BACKOFF`] and doubling, with jitter.
const INGEST_CALL_ATTEMPTS: u32 = 4;
const INGEST_FIRST_BACKOFF: Duration = Duration::from_millis(10);

/// The SQS client ingest's sink is built with: the SDK's standard retry with short backoffs (a request is
/// waiting), and every call bounded well inside the function's 10 s timeout.
pub fn ingest_client(aws: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(INGEST_CALL_ATTEMPTS)
        .with_initial_backoff(INGEST_FIRST_BACKOFF);
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(8))
        .build();
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(aws)
            .retry_config(retry)
            .timeout_config(timeouts)
            .build(),
    )
}
