//! A drain run as the tests make it: the provider emulator in-process, and one invocation of the real
//! handler (`drain::handle`) with the scheduled-event fixture.

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{Context, LambdaEvent};
use sluice::drain::{Drain, DrainReport};
use sluice::startup::AwsDrainPorts;
use sluice_tests::emulator::{Emulator, EmulatorConfig, EmulatorHandle};

use crate::events::SCHEDULED_EVENT;

/// Starts the provider emulator on a random port.
pub async fn start_emulator(config: EmulatorConfig) -> EmulatorHandle {
    Emulator::spawn(config).await.unwrap()
}

/// One invocation through the real drain handler with the scheduled-event fixture and a 60 s deadline.
pub async fn invoke(drain: &Drain<AwsDrainPorts>) -> DrainReport {
    let event: CloudWatchEvent = serde_json::from_str(SCHEDULED_EVENT).unwrap();
    let mut context = Context::default();
    context.deadline =
        u64::try_from((chrono::Utc::now() + chrono::TimeDelta::seconds(60)).timestamp_millis())
            .unwrap();
    drain::handle(drain, "test", LambdaEvent::new(event, context))
        .await
        .unwrap()
}
