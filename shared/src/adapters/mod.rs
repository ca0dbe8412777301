//! Implementations of the ports: AWS (SQS, DynamoDB, Secrets Manager), the provider over HTTP, and in
//! memory (unit tests and the simulator).

pub mod dynamo;
pub mod dynamo_ingest;
pub mod memory;
pub mod provider_http;
pub mod sdk_error;
pub mod secrets;
pub mod sqs;
