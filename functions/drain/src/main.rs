//! The drain Lambda: run every minute by EventBridge; releases queued changes within the provider's quota.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use sluice::config::FromVars;
use sluice::{Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_from_env().await;
    let drain = sluice::startup::aws_drain(&config, &aws).await?;
    let drain = &drain;
    let stack = config.stack_name.as_str();
    run(service_fn(move |event: LambdaEvent<_>| {
        drain::handle(drain, stack, event)
    }))
    .await
}
