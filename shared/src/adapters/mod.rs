//! Implementations of the ports: AWS (SQS, DynamoDB, Secrets Manager), the provider over HTTP, and in
//! memory (unit tests and the simulator).

pub mod dynamo;
pub mod dynamo_ingest;
pub mod memory;
pub mod provider_http;
pub mod sdk_error;
pub mod secrets;
pub mod sqs;
/// Ingest's sink at its old path; it lives in [`sqs::sink`].
pub mod sqs_sink {
    pub use super::sqs::MAX_BATCH_ENTRIES;
    pub use super::sqs::sink::{MAX_MESSAGE_BYTES, SqsChangeSink, check_message_body};
}
