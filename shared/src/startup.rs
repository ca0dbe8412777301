//! Startup: where the drain's adapters are built and wired into the engine, once per cold start (the
//! Lambda's `main.rs`, `sluice drain` and the benchmark call [`aws_drain`]). The only module that knows both
//! the engine and the AWS adapters: the engine is written against [`crate::ports`], the adapters implement
//! them, neither imports the other.

use crate::adapters::{dynamo, provider_http, secrets, sqs};
use crate::config::Config;
use crate::drain::{Drain, DrainSettings};
use crate::ports::{DrainAdapters, SystemClock};

/// The drain's ports on AWS: SQS, DynamoDB, the provider over HTTP, the system clock.
pub type AwsDrainPorts = DrainAdapters<
    sqs::SqsChangeQueue,
    dynamo::DynamoState,
    dynamo::DynamoState,
    provider_http::HttpProvider,
    SystemClock,
    dynamo::DynamoState,
    dynamo::DynamoState,
    dynamo::DynamoState,
>;

/// Every SQS and DynamoDB call of the drain is bounded: one attempt (the first receive long-polls 1 s)
/// and all of the SDK's retries of it together, so no stalled call can outlive the run's deadline.
pub fn drain_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .operation_attempt_timeout(std::time::Duration::from_secs(4))
        .operation_timeout(std::time::Duration::from_secs(10))
        .build()
}

/// Builds the drain on AWS (or LocalStack, through `AWS_ENDPOINT_URL`): clients once, key read once.
pub async fn aws_drain(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<Drain<AwsDrainPorts>> {
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(aws)
            .timeout_config(drain_timeouts())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(aws)
            .timeout_config(drain_timeouts())
            .build(),
    );
    let state = dynamo::DynamoState::new(dynamo, &config.table_name);
    let ports = DrainAdapters {
        lanes: config
            .lanes
            .clone()
            .map(|_, url| sqs::SqsChangeQueue::new(sqs.clone(), url, &config.dlq_url)),
        ledger: state.clone(),
        sync_state: state.clone(),
        provider: provider_http::HttpProvider::from_config(
            config,
            secrets::provider_api_key(config, aws).await?,
        )?,
        clock: SystemClock,
        lease: state.clone(),
        circuit: state.clone(),
        requests: state,
    };
    Ok(Drain::new(ports, DrainSettings::from_config(config)))
}
