//! Shared harness of the integration tests: one CloudFormation stack from `template.yaml` per test on
//! LocalStack (random name: tests never share a queue or table), the provider emulator in-process on a
//! random port, and the real `Config` the functions would load.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use lambda_runtime::{Context, LambdaEvent};
use sluice::Config;
use sluice::config::FromVars;
use sluice::domain::{Change, ChangeMessage};
use sluice::drain::{Drain, DrainReport};
use sluice::startup::{AwsDrainPorts, aws_drain};
use sluice_cli::stack::{StackOutputs, delete_stack, deploy_local};
use sluice_tests::emulator::{Emulator, EmulatorConfig, EmulatorHandle};

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

pub async fn sdk() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// A stack of our own on LocalStack.
pub struct TestStack {
    pub name: String,
    pub outputs: StackOutputs,
    pub sdk: SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub ddb: aws_sdk_dynamodb::Client,
}

fn template() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
}

/// Deploys `template.yaml` as a fresh stack. Panics with a pointer to `make test` if LocalStack is down.
pub async fn stack() -> TestStack {
    let sdk = sdk().await;
    let name = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let cf = aws_sdk_cloudformation::Client::new(&sdk);
    let outputs = deploy_local(&cf, template(), &name, &[]).await.unwrap_or_else(|e| {
        panic!("deploying a test stack to LocalStack at {} failed (is it up? `make test` starts it): {e:#}", endpoint())
    });
    TestStack {
        name,
        outputs,
        sqs: aws_sdk_sqs::Client::new(&sdk),
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        sdk,
    }
}

impl TestStack {
    /// The configuration the functions would load, pointed at this stack and the emulator.
    pub fn config(&self, emulator: &EmulatorHandle, overrides: &[(&str, &str)]) -> Config {
        let mut env: HashMap<String, String> = HashMap::from([
            ("QUEUE_URL".into(), self.outputs.queue_url.clone()),
            ("DLQ_URL".into(), self.outputs.dlq_url.clone()),
            ("TABLE_NAME".into(), self.outputs.table_name.clone()),
            ("PROVIDER_BASE_URL".into(), emulator.base_url()),
            (
                "PROVIDER_ACCOUNT_ID".into(),
                emulator.account_id().to_string(),
            ),
            ("PROVIDER_API_KEY".into(), emulator.api_key().to_string()),
            (
                "BATCH_LIMIT_PER_HOUR".into(),
                emulator.config().batch_limit.to_string(),
            ),
            (
                "INDIVIDUAL_LIMIT_PER_HOUR".into(),
                emulator.config().individual_limit.to_string(),
            ),
            (
                "QUOTA_WINDOW_SECONDS".into(),
                emulator.config().window_seconds.to_string(),
            ),
            ("PROVIDER_TIMEOUT_MS".into(), "2000".into()),
        ]);
        for (k, v) in overrides {
            env.insert((*k).into(), (*v).into());
        }
        Config::from_lookup(|k| env.get(k).cloned()).unwrap()
    }

    /// The drain function as deployed, pointed at this stack and the emulator.
    pub async fn drain(
        &self,
        emulator: &EmulatorHandle,
        overrides: &[(&str, &str)],
    ) -> Drain<AwsDrainPorts> {
        aws_drain(&self.config(emulator, overrides), &self.sdk)
            .await
            .unwrap()
    }

    /// Puts changes on the queue exactly as ingest does (versioned bodies, batches of 10).
    pub async fn enqueue(&self, changes: &[Change]) {
        let bodies: Vec<String> = changes
            .iter()
            .map(|c| ChangeMessage::V1(c.clone()).to_body())
            .collect();
        self.enqueue_raw(&bodies).await;
    }

    pub async fn enqueue_raw(&self, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.outputs.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .unwrap();
            assert!(out.failed().is_empty(), "{:?}", out.failed());
        }
    }

    /// (visible, in flight) on a queue.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let get = |n: QueueAttributeName| -> u64 {
            out.attributes()
                .and_then(|a| a.get(&n))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Every message on the DLQ: (body, message attributes as strings). Leaves them in flight briefly.
    pub async fn dlq(&self) -> Vec<(String, HashMap<String, String>)> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.outputs.dlq_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .visibility_timeout(30)
                .send()
                .await
                .unwrap();
            if got.messages().is_empty() {
                return out;
            }
            for m in got.messages() {
                let attrs = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (k.clone(), v.string_value().unwrap_or_default().to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.body().unwrap_or_default().to_string(), attrs));
            }
        }
    }

    pub async fn destroy(self) {
        let cf = aws_sdk_cloudformation::Client::new(&self.sdk);
        let _ = delete_stack(&cf, &self.name).await;
    }
}

pub async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    Emulator::spawn(config).await.unwrap()
}

/// One invocation through the real drain handler with the scheduled-event fixture and a 60 s deadline.
pub async fn invoke(drain: &Drain<AwsDrainPorts>) -> DrainReport {
    let event: CloudWatchEvent =
        serde_json::from_str(include_str!("../../fixtures/scheduled-event.json")).unwrap();
    let mut context = Context::default();
    context.deadline =
        u64::try_from((chrono::Utc::now() + chrono::TimeDelta::seconds(60)).timestamp_millis())
            .unwrap();
    drain::handle(drain, "test", LambdaEvent::new(event, context))
        .await
        .unwrap()
}
