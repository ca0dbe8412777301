//! Where ingest puts accepted changes: the changes queue (SQS in AWS: [`crate::adapters::sqs_sink`]).

use std::future::Future;

use super::PortResult;
use crate::domain::Change;

/// Where accepted changes go.
pub trait ChangeSink: Send + Sync {
    /// Puts every change on the queue, retrying what can be retried. `Ok` means all of them are on it;
    /// an error means some may not be (the caller answers 503 and the client retries the whole request:
    /// duplicates are harmless, the drain coalesces them).
    fn enqueue(&self, changes: &[Change]) -> impl Future<Output = PortResult<()>> + Send;
}
