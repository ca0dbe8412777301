//! [`TestStack`]: a CloudFormation stack of `template.yaml` on LocalStack that belongs to one test (or
//! bench run) alone — random name, so tests never share a queue or table — deployed the way
//! `sluice local deploy` deploys it, with the SQS reads and writes tests repeat and the functions'
//! environment pointed at it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::Context as _;
use aws_config::SdkConfig;
use aws_sdk_sqs::types::{
    Message, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use sluice::Config;
use sluice::config::FromVars;
use sluice::domain::{Change, ChangeMessage};
use sluice::drain::Drain;
use sluice::startup::{AwsDrainPorts, aws_drain};
use sluice_cli::stack::{StackOutputs, delete_stack, deploy_local};
use sluice_tests::emulator::EmulatorHandle;

use crate::localstack::{REGION, endpoint, sdk_config, unique_name};

/// The function variables a `sluice` process under test must not inherit from the developer's shell: it
/// gets them from the stack, or from the test.
const FUNCTION_ENV: [&str; 16] = [
    "QUEUE_URL",
    "QUEUE_URL_HIGH",
    "QUEUE_URL_BULK",
    "DLQ_URL",
    "TABLE_NAME",
    "PROVIDER_BASE_URL",
    "PROVIDER_ACCOUNT_ID",
    "PROVIDER_API_KEY",
    "PROVIDER_API_KEY_SECRET_ARN",
    "BATCH_LIMIT_PER_HOUR",
    "INDIVIDUAL_LIMIT_PER_HOUR",
    "BATCH_SIZE",
    "DRAIN_MAX_MESSAGES",
    "QUOTA_WINDOW_SECONDS",
    "QUOTA_MODEL",
    "DRAIN_INTERVAL_SECONDS",
];

/// A stack of our own on LocalStack, with clients for it.
pub struct TestStack {
    pub name: String,
    pub outputs: StackOutputs,
    pub sdk: SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub ddb: aws_sdk_dynamodb::Client,
}

/// The project's `template.yaml`.
pub fn template() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
}

impl TestStack {
    /// Deploys `template.yaml` as `<prefix>-<random>` with these template parameters.
    pub async fn try_deploy(prefix: &str, params: &[(&str, &str)]) -> anyhow::Result<Self> {
        let sdk = sdk_config().await;
        let name = unique_name(prefix);
        let cf = aws_sdk_cloudformation::Client::new(&sdk);
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let outputs = deploy_local(&cf, template(), &name, &params)
            .await
            .with_context(|| {
                format!(
                    "deploying {name} to LocalStack at {} (is it up? `infra/localstack/up`; `make test` starts it)",
                    endpoint()
                )
            })?;
        Ok(Self {
            name,
            outputs,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
        })
    }

    /// [`TestStack::try_deploy`], panicking with the reason if it fails.
    pub async fn deploy(prefix: &str, params: &[(&str, &str)]) -> Self {
        Self::try_deploy(prefix, params)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Deletes the stack (a failure is only reported: the test's outcome stands).
    pub async fn destroy(self) {
        let cf = aws_sdk_cloudformation::Client::new(&self.sdk);
        if let Err(e) = delete_stack(&cf, &self.name).await {
            eprintln!("could not delete {}: {e:#}", self.name);
        }
    }

    /// The functions' environment for this stack and `emulator` (queue, DLQ, table, the provider's
    /// address, account, key and limits), then `overrides`. Configuration only: no AWS credentials.
    pub fn drain_env(
        &self,
        emulator: &EmulatorHandle,
        overrides: &[(&str, &str)],
    ) -> BTreeMap<String, String> {
        let lanes = [
            ("QUEUE_URL_HIGH", self.outputs.high_queue_url.clone()),
            ("QUEUE_URL_BULK", self.outputs.bulk_queue_url.clone()),
        ];
        let mut env: BTreeMap<String, String> = [
            ("QUEUE_URL", self.outputs.queue_url.clone()),
            ("DLQ_URL", self.outputs.dlq_url.clone()),
            ("TABLE_NAME", self.outputs.table_name.clone()),
            ("PROVIDER_BASE_URL", emulator.base_url()),
            ("PROVIDER_ACCOUNT_ID", emulator.account_id().to_owned()),
            ("PROVIDER_API_KEY", emulator.api_key().to_owned()),
            (
                "BATCH_LIMIT_PER_HOUR",
                emulator.config().batch_limit.to_string(),
            ),
            (
                "INDIVIDUAL_LIMIT_PER_HOUR",
                emulator.config().individual_limit.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in lanes {
            if let Some(v) = v {
                env.insert(k.to_owned(), v);
            }
        }
        for (k, v) in overrides {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        env
    }

    /// The configuration the functions would load in the tests: [`TestStack::drain_env`] with the
    /// emulator's quota window and a 2 s provider timeout, then `overrides`.
    pub fn config(&self, emulator: &EmulatorHandle, overrides: &[(&str, &str)]) -> Config {
        let window = emulator.config().window_seconds.to_string();
        let mut all = vec![
            ("QUOTA_WINDOW_SECONDS", window.as_str()),
            ("PROVIDER_TIMEOUT_MS", "2000"),
        ];
        all.extend_from_slice(overrides);
        let env = self.drain_env(emulator, &all);
        Config::from_lookup(|k| env.get(k).cloned()).unwrap()
    }

    /// The drain function as deployed, pointed at this stack and the emulator ([`TestStack::config`]).
    pub async fn drain(
        &self,
        emulator: &EmulatorHandle,
        overrides: &[(&str, &str)],
    ) -> Drain<AwsDrainPorts> {
        aws_drain(&self.config(emulator, overrides), &self.sdk)
            .await
            .unwrap()
    }

    /// Puts changes on the changes queue exactly as ingest does (versioned bodies, batches of 10).
    pub async fn enqueue(&self, changes: &[Change]) {
        let bodies: Vec<String> = changes
            .iter()
            .map(|c| ChangeMessage::V1(c.clone()).to_body())
            .collect();
        self.send(&self.outputs.queue_url, &bodies).await;
    }

    /// Sends `bodies` to the queue at `url` as they are, in batches of 10; every one must be taken.
    pub async fn send(&self, url: &str, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(batch_entries(chunk)))
                .send()
                .await
                .unwrap();
            assert!(out.failed().is_empty(), "{:?}", out.failed());
        }
    }

    /// Receives up to `max` (≤ 10) messages from the queue at `url`, hiding them for `visibility_s`
    /// seconds, waiting up to a second for the first.
    pub async fn receive(&self, url: &str, max: i32, visibility_s: i32) -> Vec<Message> {
        self.sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .visibility_timeout(visibility_s)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    }

    /// (visible, in flight) on the queue at `url`.
    pub async fn try_depth(&self, url: &str) -> anyhow::Result<(u64, u64)> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .with_context(|| format!("reading the depth of {url}"))?;
        let get = |n: QueueAttributeName| -> u64 {
            out.attributes()
                .and_then(|a| a.get(&n))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    /// [`TestStack::try_depth`], panicking if SQS does not answer.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        self.try_depth(url).await.unwrap()
    }

    /// Deletes every message on the queue at `url`.
    pub async fn purge(&self, url: &str) -> anyhow::Result<()> {
        self.sqs
            .purge_queue()
            .queue_url(url)
            .send()
            .await
            .with_context(|| format!("purging {url}"))?;
        Ok(())
    }

    /// Every body on the queue at `url` (received, hidden for a minute: call once, at the end of a test).
    pub async fn bodies(&self, url: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let got = self.receive(url, 10, 60).await;
            if got.is_empty() {
                return out;
            }
            out.extend(got.iter().map(|m| m.body().unwrap_or_default().to_owned()));
        }
    }

    /// Every message on the DLQ: (body, message attributes as strings). Leaves them in flight briefly.
    pub async fn dead_letters(&self) -> Vec<(String, HashMap<String, String>)> {
        let mut out = Vec::new();
        loop {
            let got = self.receive(&self.outputs.dlq_url, 10, 30).await;
            if got.is_empty() {
                return out;
            }
            for m in &got {
                let attrs = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (k.clone(), v.string_value().unwrap_or_default().to_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.body().unwrap_or_default().to_owned(), attrs));
            }
        }
    }

    /// The `sluice` binary at `program` pointed at this stack (`--endpoint-url`, `--stack-name`), with
    /// none of the functions' variables inherited from the shell; killed when dropped.
    pub fn sluice_command(&self, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        for var in FUNCTION_ENV {
            command.env_remove(var);
        }
        command
            .args(["--endpoint-url", &endpoint(), "--stack-name", &self.name])
            .env("AWS_REGION", REGION)
            .kill_on_drop(true);
        command
    }
}

/// `SendMessageBatch` entries for up to 10 bodies, numbered from 0.
pub fn batch_entries(bodies: &[String]) -> Vec<SendMessageBatchRequestEntry> {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(b)
                .build()
                .unwrap()
        })
        .collect()
}
