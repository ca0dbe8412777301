//! A deployed Sluice stack (`template.yaml` on CloudFormation, in AWS or on LocalStack), read back: its
//! outputs (queue, DLQ, table names) and the parameters it was deployed with, which
//! [`crate::settings`] turns into what the functions see. Deploying to LocalStack is [`local_deploy`]'s.

pub mod local_deploy;
pub mod local_template;

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudformation::types::{Output, Stack};
use sluice::ports::Lanes;

pub use local_deploy::{delete_stack, deploy_local};
pub use local_template::{LOCAL_CODE_BUCKET, local_template};

/// What the rest of Sluice needs to know about a deployed stack (the template's `Outputs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackOutputs {
    /// The normal lane's queue.
    pub queue_url: String,
    /// The `high` and `bulk` lanes' queues (`HighQueueUrl`, `BulkQueueUrl`); `None` on a stack from
    /// before lanes, whose one queue serves every lane.
    pub high_queue_url: Option<String>,
    pub bulk_queue_url: Option<String>,
    pub queue_arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
    pub table_name: String,
    /// Only when the functions are deployed (`DeployFunctions=true`).
    pub api_url: Option<String>,
    /// The secret holding ingest's `x-api-key` (with the functions deployed).
    pub api_key_secret_arn: Option<String>,
    pub alarm_topic_arn: Option<String>,
    pub dashboard_name: Option<String>,
}

impl StackOutputs {
    /// Maps a stack's `Outputs` by key; fails naming every required output that is missing.
    pub fn from_outputs(outputs: &[Output]) -> anyhow::Result<Self> {
        let get = |key: &str| {
            outputs
                .iter()
                .find(|o| o.output_key() == Some(key))
                .and_then(|o| o.output_value())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let required = ["QueueUrl", "QueueArn", "DlqUrl", "DlqArn", "TableName"];
        let missing: Vec<&str> = required.into_iter().filter(|k| get(k).is_none()).collect();
        if !missing.is_empty() {
            bail!(
                "stack outputs {} are missing: is this a Sluice stack from template.yaml?",
                missing.join(", ")
            );
        }
        let value = |key: &str| get(key).unwrap_or_default();
        Ok(Self {
            queue_url: value("QueueUrl"),
            high_queue_url: get("HighQueueUrl"),
            bulk_queue_url: get("BulkQueueUrl"),
            queue_arn: value("QueueArn"),
            dlq_url: value("DlqUrl"),
            dlq_arn: value("DlqArn"),
            table_name: value("TableName"),
            api_url: get("ApiUrl"),
            api_key_secret_arn: get("ApiKeySecretArn"),
            alarm_topic_arn: get("AlarmTopicArn"),
            dashboard_name: get("DashboardName"),
        })
    }

    /// `KEY=value` lines with the variables the functions and tools read (`QUEUE_URL`, `DLQ_URL`,
    /// `TABLE_NAME`, ...), for `.sluice/local.env`. Values never contain spaces or quotes.
    pub fn to_env_file(&self) -> String {
        let mut lines = vec![format!("QUEUE_URL={}", self.queue_url)];
        for (var, url) in [
            ("QUEUE_URL_HIGH", &self.high_queue_url),
            ("QUEUE_URL_BULK", &self.bulk_queue_url),
        ] {
            if let Some(url) = url {
                lines.push(format!("{var}={url}"));
            }
        }
        lines.extend([
            format!("QUEUE_ARN={}", self.queue_arn),
            format!("DLQ_URL={}", self.dlq_url),
            format!("DLQ_ARN={}", self.dlq_arn),
            format!("TABLE_NAME={}", self.table_name),
        ]);
        if let Some(url) = &self.api_url {
            lines.push(format!("API_URL={url}"));
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

impl StackOutputs {
    /// Every lane's queue URL (a lane without one shares the normal lane's queue).
    pub fn lanes(&self) -> Lanes<String> {
        Lanes::with_optional(
            self.high_queue_url.clone(),
            self.queue_url.clone(),
            self.bulk_queue_url.clone(),
        )
    }
}

/// Reads the outputs of a deployed Sluice stack (LocalStack or AWS).
pub async fn read_outputs(cf: &Client, stack_name: &str) -> anyhow::Result<StackOutputs> {
    let stack = describe(cf, stack_name)
        .await?
        .ok_or_else(|| anyhow!("stack {stack_name} does not exist"))?;
    StackOutputs::from_outputs(stack.outputs()).with_context(|| format!("stack {stack_name}"))
}

/// A deployed stack: its outputs and the parameters it was deployed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedStack {
    pub name: String,
    pub outputs: StackOutputs,
    /// `ParameterKey` → value, as CloudFormation reports them (`NoEcho` ones come back masked).
    pub parameters: BTreeMap<String, String>,
}

/// Reads a deployed Sluice stack's outputs and parameters in one call (LocalStack or AWS).
pub async fn read_stack(cf: &Client, stack_name: &str) -> anyhow::Result<DeployedStack> {
    let stack = describe(cf, stack_name).await?.ok_or_else(|| {
        anyhow!("stack {stack_name} does not exist (set --stack-name or SLUICE_STACK)")
    })?;
    let outputs = StackOutputs::from_outputs(stack.outputs())
        .with_context(|| format!("stack {stack_name}"))?;
    let parameters = stack
        .parameters()
        .iter()
        .filter_map(|p| {
            Some((
                p.parameter_key()?.to_owned(),
                p.parameter_value()?.to_owned(),
            ))
        })
        .collect();
    Ok(DeployedStack {
        name: stack_name.to_owned(),
        outputs,
        parameters,
    })
}

/// The stack, or `None` if it does not exist (CloudFormation answers that with a ValidationError).
async fn describe(cf: &Client, stack_name: &str) -> anyhow::Result<Option<Stack>> {
    match cf.describe_stacks().stack_name(stack_name).send().await {
        Ok(out) => Ok(out.stacks().first().cloned()),
        Err(e) if e.message().is_some_and(|m| m.contains("does not exist")) => Ok(None),
        Err(e) => Err(anyhow!(
            "describing stack {stack_name}: {}",
            DisplayErrorContext(e)
        )),
    }
}

#[cfg(test)]
impl DeployedStack {
    /// A stack for unit tests: these names for the queue, DLQ and table, fake ARNs, `parameters`.
    pub(crate) fn for_tests(
        name: &str,
        [queue_url, dlq_url, table_name]: [&str; 3],
        parameters: &[(&str, &str)],
    ) -> Self {
        Self {
            name: name.into(),
            outputs: StackOutputs {
                queue_url: queue_url.into(),
                high_queue_url: None,
                bulk_queue_url: None,
                queue_arn: "arn:q".into(),
                dlq_url: dlq_url.into(),
                dlq_arn: "arn:dlq".into(),
                table_name: table_name.into(),
                api_url: None,
                api_key_secret_arn: None,
                alarm_topic_arn: None,
                dashboard_name: None,
            },
            parameters: parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn output(key: &str, value: &str) -> Output {
        Output::builder()
            .output_key(key)
            .output_value(value)
            .build()
    }

    fn full_outputs() -> Vec<Output> {
        vec![
            output(
                "QueueUrl",
                "http://127.0.0.1:4566/queue/us-east-1/000000000000/s-ChangesQueue-1",
            ),
            output(
                "QueueArn",
                "arn:aws:sqs:us-east-1:000000000000:s-ChangesQueue-1",
            ),
            output(
                "DlqUrl",
                "http://127.0.0.1:4566/queue/us-east-1/000000000000/s-DeadLetterQueue-1",
            ),
            output(
                "DlqArn",
                "arn:aws:sqs:us-east-1:000000000000:s-DeadLetterQueue-1",
            ),
            output("TableName", "s-Table-1"),
            output(
                "AlarmTopicArn",
                "arn:aws:sns:us-east-1:000000000000:s-AlarmTopic-1",
            ),
            output("DashboardName", "s-sluice"),
        ]
    }

    #[test]
    fn outputs_map_by_key_and_render_an_env_file() {
        let outputs = StackOutputs::from_outputs(&full_outputs()).unwrap();
        assert_eq!(outputs.table_name, "s-Table-1");
        assert_eq!(outputs.api_url, None);
        assert_eq!(outputs.dashboard_name.as_deref(), Some("s-sluice"));
        assert_eq!(
            outputs.to_env_file(),
            "QUEUE_URL=http://127.0.0.1:4566/queue/us-east-1/000000000000/s-ChangesQueue-1\n\
             QUEUE_ARN=arn:aws:sqs:us-east-1:000000000000:s-ChangesQueue-1\n\
             DLQ_URL=http://127.0.0.1:4566/queue/us-east-1/000000000000/s-DeadLetterQueue-1\n\
             DLQ_ARN=arn:aws:sqs:us-east-1:000000000000:s-DeadLetterQueue-1\n\
             TABLE_NAME=s-Table-1\n"
        );

        let mut with_api = full_outputs();
        with_api.push(output(
            "ApiUrl",
            "https://abc.execute-api.eu-west-1.amazonaws.com/live",
        ));
        with_api.push(output("HighQueueUrl", "http://h"));
        with_api.push(output("BulkQueueUrl", "http://b"));
        let outputs = StackOutputs::from_outputs(&with_api).unwrap();
        assert!(outputs.to_env_file().starts_with(&format!(
            "QUEUE_URL={}\nQUEUE_URL_HIGH=http://h\nQUEUE_URL_BULK=http://b\n",
            outputs.queue_url
        )));
        assert!(
            outputs
                .to_env_file()
                .ends_with("API_URL=https://abc.execute-api.eu-west-1.amazonaws.com/live\n")
        );
    }

    #[test]
    fn missing_outputs_are_named() {
        let partial: Vec<Output> = full_outputs()
            .into_iter()
            .filter(|o| !matches!(o.output_key(), Some("DlqUrl" | "TableName")))
            .collect();
        let err = StackOutputs::from_outputs(&partial)
            .unwrap_err()
            .to_string();
        assert!(err.contains("DlqUrl, TableName"), "{err}");
    }
}
