//! Implementations of the ports: AWS (SQS, DynamoDB, Secrets Manager), the provider over HTTP, and in
//! memory (unit tests and the simulator).

pub mod dynamo;
pub mod dynamo_ingest;
pub mod memory;
pub mod provider_http;
pub mod sqs;
pub mod sqs_sink;

use crate::config::Config;
use crate::drain::{Drain, DrainSettings};
use crate::ports::{PortSet, SystemClock};

/// The drain's ports on AWS: SQS, DynamoDB, the provider over HTTP, the system clock.
pub type AwsDrainPorts = PortSet<
    sqs::SqsChangeQueue,
    dynamo::DynamoState,
    dynamo::DynamoState,
    provider_http::HttpProvider,
    SystemClock,
    dynamo::DynamoState,
    dynamo::DynamoState,
>;

/// Builds the drain on AWS (or LocalStack, through `AWS_ENDPOINT_URL`): clients once, key read once.
pub async fn aws_drain(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<Drain<AwsDrainPorts>> {
    let state = dynamo::DynamoState::new(aws_sdk_dynamodb::Client::new(aws), &config.table_name);
    let ports = PortSet {
        queue: sqs::SqsChangeQueue::new(
            aws_sdk_sqs::Client::new(aws),
            &config.queue_url,
            &config.dlq_url,
        ),
        ledger: state.clone(),
        sync_state: state.clone(),
        provider: provider_http::HttpProvider::from_config(config, aws).await?,
        clock: SystemClock,
        coordination: state.clone(),
        requests: state,
    };
    Ok(Drain::new(ports, DrainSettings::from_config(config)))
}
