//! Deploys the project's template.yaml to a running LocalStack and checks what it created.
//!
//! Needs LocalStack on AWS_ENDPOINT_URL (default http://127.0.0.1:4566):
//!   infra/localstack/up && cargo test -p sluice-cli --test local_deploy -- --ignored

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use aws_sdk_sqs::types::QueueAttributeName;
use sluice_cli::stack::{self, StackOutputs};
use sluice_test_support::localstack;

/// The project's template, or `SLUICE_TEMPLATE` to try another one.
fn template_path() -> PathBuf {
    std::env::var_os("SLUICE_TEMPLATE")
        .map(PathBuf::from)
        .unwrap_or_else(sluice_test_support::stack::template)
}

#[tokio::test]
#[ignore = "needs LocalStack: infra/localstack/up, then `cargo test -p sluice-cli --test local_deploy -- --ignored`"]
async fn template_deploys_to_localstack_and_deletes() -> anyhow::Result<()> {
    let config = localstack::sdk_config().await;
    let cf = aws_sdk_cloudformation::Client::new(&config);
    let stack_name = localstack::unique_name("sluice-test");

    let started = Instant::now();
    let deployed = stack::deploy_local(
        &cf,
        template_path(),
        &stack_name,
        &[("MaxReceiveCount".to_owned(), "7".to_owned())],
    )
    .await;
    let deploy_time = started.elapsed();
    eprintln!("deploy of {stack_name}: {deploy_time:?}");

    // Check, then always delete, then report the first failure.
    let checked = match deployed {
        Ok(outputs) => check_stack(&config, &cf, &stack_name, &outputs).await,
        Err(e) => Err(e),
    };
    let started = Instant::now();
    let deleted = stack::delete_stack(&cf, &stack_name).await;
    eprintln!("delete of {stack_name}: {:?}", started.elapsed());
    checked?;
    deleted?;

    let gone = stack::read_outputs(&cf, &stack_name).await;
    ensure!(gone.is_err(), "stack still readable after delete: {gone:?}");
    // Deleting what is already gone succeeds.
    stack::delete_stack(&cf, &stack_name).await?;
    Ok(())
}

async fn check_stack(
    config: &aws_config::SdkConfig,
    cf: &aws_sdk_cloudformation::Client,
    stack_name: &str,
    outputs: &StackOutputs,
) -> anyhow::Result<()> {
    check_outputs(cf, stack_name, outputs).await?;
    check_queues(&aws_sdk_sqs::Client::new(config), outputs).await?;
    check_table(&aws_sdk_dynamodb::Client::new(config), outputs).await
}

/// The outputs name the stack's resources, read back the same, survive an unchanged redeploy and go
/// into the env file.
async fn check_outputs(
    cf: &aws_sdk_cloudformation::Client,
    stack_name: &str,
    outputs: &StackOutputs,
) -> anyhow::Result<()> {
    ensure!(outputs.queue_arn.starts_with("arn:aws:sqs:"), "{outputs:?}");
    ensure!(outputs.dlq_arn.starts_with("arn:aws:sqs:"), "{outputs:?}");
    ensure!(
        outputs.queue_url.contains(stack_name),
        "queue named after the stack: {outputs:?}"
    );
    ensure!(outputs.queue_url != outputs.dlq_url, "{outputs:?}");
    ensure!(!outputs.table_name.is_empty(), "{outputs:?}");
    ensure!(
        outputs.api_url.is_none(),
        "functions are off, so no API: {outputs:?}"
    );
    ensure!(
        outputs.dashboard_name.as_deref() == Some(&*format!("{stack_name}-sluice")),
        "{outputs:?}"
    );

    // Read back the same outputs; redeploying unchanged is a no-op that succeeds.
    ensure!(stack::read_outputs(cf, stack_name).await? == *outputs);
    let again = stack::deploy_local(
        cf,
        template_path(),
        stack_name,
        &[("MaxReceiveCount".to_owned(), "7".to_owned())],
    )
    .await
    .context("redeploying unchanged")?;
    ensure!(again == *outputs, "redeploy changed outputs: {again:?}");

    let env = outputs.to_env_file();
    ensure!(
        env.contains(&format!("QUEUE_URL={}\n", outputs.queue_url)),
        "{env}"
    );
    ensure!(
        env.contains(&format!("TABLE_NAME={}\n", outputs.table_name)),
        "{env}"
    );
    Ok(())
}

/// The queue takes messages and dead-letters into the DLQ after MaxReceiveCount receives.
async fn check_queues(sqs: &aws_sdk_sqs::Client, outputs: &StackOutputs) -> anyhow::Result<()> {
    sqs.send_message()
        .queue_url(&outputs.queue_url)
        .message_body(r#"{"email":"a@example.com"}"#)
        .send()
        .await
        .context("SendMessage to the changes queue")?;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&outputs.queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .context("GetQueueAttributes")?
        .attributes
        .unwrap_or_default();
    let redrive: serde_json::Value = serde_json::from_str(
        attributes
            .get(&QueueAttributeName::RedrivePolicy)
            .context("the changes queue has no RedrivePolicy")?,
    )?;
    ensure!(
        redrive["deadLetterTargetArn"] == outputs.dlq_arn.as_str(),
        "{redrive}"
    );
    ensure!(
        redrive["maxReceiveCount"].to_string().trim_matches('"') == "7",
        "{redrive}"
    );
    ensure!(
        attributes
            .get(&QueueAttributeName::VisibilityTimeout)
            .map(String::as_str)
            == Some("120")
    );
    ensure!(
        attributes
            .get(&QueueAttributeName::SqsManagedSseEnabled)
            .map(String::as_str)
            == Some("true")
    );
    let dlq_retention = sqs
        .get_queue_attributes()
        .queue_url(&outputs.dlq_url)
        .attribute_names(QueueAttributeName::MessageRetentionPeriod)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    ensure!(
        dlq_retention
            .get(&QueueAttributeName::MessageRetentionPeriod)
            .map(String::as_str)
            == Some("1209600")
    );
    Ok(())
}

/// The table takes items keyed by `pk` and expires them by `expires_at`.
async fn check_table(ddb: &aws_sdk_dynamodb::Client, outputs: &StackOutputs) -> anyhow::Result<()> {
    ddb.put_item()
        .table_name(&outputs.table_name)
        .item("pk", AttributeValue::S("probe#1".into()))
        .item("expires_at", AttributeValue::N("2000000000".into()))
        .send()
        .await
        .context("PutItem into the table")?;
    let ttl = ddb
        .describe_time_to_live()
        .table_name(&outputs.table_name)
        .send()
        .await
        .context("DescribeTimeToLive")?
        .time_to_live_description
        .context("no TTL description")?;
    ensure!(ttl.attribute_name() == Some("expires_at"), "{ttl:?}");
    ensure!(
        ttl.time_to_live_status() == Some(&TimeToLiveStatus::Enabled),
        "{ttl:?}"
    );
    Ok(())
}
