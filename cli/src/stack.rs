//! `template.yaml` as a CloudFormation stack: deployed to LocalStack for local runs and tests (with
//! the functions switched off), and read back from any deployed stack, local or in AWS.
//!
//! LocalStack expands the SAM transform server-side and rejects a local-path `CodeUri` even when
//! the function's condition is false, so the local deploy sends [`local_template`]: the same
//! template with every `CodeUri` pointing at an S3 object that need not exist.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudformation::types::{
    Capability, Output, Parameter, ResourceStatus, Stack, StackStatus,
};

/// Bucket named by the rewritten `CodeUri`s; nothing is ever read from it.
pub const LOCAL_CODE_BUCKET: &str = "sluice-local";

/// How often a deploy or delete polls the stack's status.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// LocalStack settles in about a second; this only bounds a wedged stack.
const LOCAL_STACK_TIMEOUT: Duration = Duration::from_secs(300);
/// CloudFormation's limit for an inline `TemplateBody`.
const MAX_TEMPLATE_BODY_BYTES: usize = 51_200;

/// Placeholders a local deploy sets unless the caller gives them: the functions are off, so the
/// provider settings only have to pass the template's validation.
const LOCAL_DEFAULT_PARAMS: [(&str, &str); 2] = [
    ("ProviderAccountId", "local"),
    (
        "ProviderApiKeySecretArn",
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:sluice-local-provider-key",
    ),
];

/// What the rest of Sluice needs to know about a deployed stack (the template's `Outputs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackOutputs {
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
    pub table_name: String,
    /// Only when the functions are deployed (`DeployFunctions=true`).
    pub api_url: Option<String>,
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
            queue_arn: value("QueueArn"),
            dlq_url: value("DlqUrl"),
            dlq_arn: value("DlqArn"),
            table_name: value("TableName"),
            api_url: get("ApiUrl"),
            alarm_topic_arn: get("AlarmTopicArn"),
            dashboard_name: get("DashboardName"),
        })
    }

    /// `KEY=value` lines with the variables the functions and tools read (`QUEUE_URL`, `DLQ_URL`,
    /// `TABLE_NAME`, ...), for `.sluice/local.env`. Values never contain spaces or quotes.
    pub fn to_env_file(&self) -> String {
        let mut lines = vec![
            format!("QUEUE_URL={}", self.queue_url),
            format!("QUEUE_ARN={}", self.queue_arn),
            format!("DLQ_URL={}", self.dlq_url),
            format!("DLQ_ARN={}", self.dlq_arn),
            format!("TABLE_NAME={}", self.table_name),
        ];
        if let Some(url) = &self.api_url {
            lines.push(format!("API_URL={url}"));
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

/// The template with every `CodeUri: <local path>` replaced by `s3://sluice-local/<path>.zip`, so
/// LocalStack's SAM transform accepts it. Everything else (comments, short-form tags such as
/// `!Ref`, layout) is kept byte for byte; `CodeUri`s that already name S3 or are mappings stay.
pub fn local_template(template_yaml: &str) -> String {
    template_yaml
        .split_inclusive('\n')
        .map(|line| rewrite_code_uri(line).unwrap_or_else(|| line.to_owned()))
        .collect()
}

/// The rewritten line if `line` is a block-style `CodeUri:` with a local path.
fn rewrite_code_uri(line: &str) -> Option<String> {
    let (body, newline) = match line.strip_suffix('\n') {
        Some(b) => match b.strip_suffix('\r') {
            Some(b) => (b, "\r\n"),
            None => (b, "\n"),
        },
        None => (line, ""),
    };
    let rest = body.trim_start();
    let value = rest.strip_prefix("CodeUri:")?;
    // A comment after the value is kept; YAML needs whitespace before `#` for it to be one.
    let (value, comment) = match value.find(" #").or_else(|| value.find("\t#")) {
        Some(i) => value.split_at(value[..i].trim_end().len()),
        None => (value, ""),
    };
    let path = value.trim().trim_matches(|c| c == '"' || c == '\'');
    if path.is_empty()
        || path.starts_with("s3://")
        || path.starts_with('!')
        || path.starts_with('{')
    {
        return None;
    }
    let prefix = &body[..body.len() - rest.len()];
    Some(format!(
        "{prefix}CodeUri: s3://{LOCAL_CODE_BUCKET}/{}.zip{comment}{newline}",
        object_key(path)
    ))
}

/// A stable S3 key for a local code path: `functions/drain/` → `functions-drain`, `.` → `workspace`.
fn object_key(path: &str) -> String {
    let key: String = path
        .trim_start_matches("./")
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let key = key.trim_matches('-');
    if key.is_empty() {
        "workspace".to_owned()
    } else {
        key.to_owned()
    }
}

/// Creates (or updates) `stack_name` from `template_path` with the functions off
/// (`DeployFunctions=false`, always) and returns its outputs once it is `*_COMPLETE`.
///
/// `extra_params` override the template's defaults and the local placeholders for the provider
/// settings (`ProviderAccountId`, `ProviderApiKeySecretArn`). An update with nothing to change
/// succeeds; a stack whose create failed (`ROLLBACK_COMPLETE`, or `CREATE_FAILED` on LocalStack)
/// is deleted and created again. Fails with the stack events' reasons.
pub async fn deploy_local(
    cf: &Client,
    template_path: impl AsRef<Path>,
    stack_name: &str,
    extra_params: &[(String, String)],
) -> anyhow::Result<StackOutputs> {
    let template_path = template_path.as_ref();
    let template = std::fs::read_to_string(template_path)
        .with_context(|| format!("reading the template {}", template_path.display()))?;
    let body = local_template(&template);
    if body.len() > MAX_TEMPLATE_BODY_BYTES {
        bail!(
            "{} is {} bytes; CloudFormation takes at most {MAX_TEMPLATE_BODY_BYTES} inline",
            template_path.display(),
            body.len()
        );
    }
    let params = local_parameters(extra_params);

    match describe(cf, stack_name).await? {
        Some(stack) if stack.stack_status().is_some_and(must_recreate) => {
            tracing::info!(
                stack_name,
                "the stack is left over from a failed create or delete: recreating it"
            );
            delete_stack(cf, stack_name).await?;
            create(cf, stack_name, &body, &params).await?;
        }
        Some(stack) => {
            let status = stack
                .stack_status()
                .map(StackStatus::as_str)
                .unwrap_or_default();
            if status.ends_with("_IN_PROGRESS") {
                tracing::info!(
                    stack_name,
                    status,
                    "waiting for the stack's current operation"
                );
                wait_until_settled(cf, stack_name, LOCAL_STACK_TIMEOUT).await?;
            }
            if !update(cf, stack_name, &body, &params).await? {
                tracing::info!(stack_name, "stack is up to date");
                return read_outputs(cf, stack_name).await;
            }
        }
        None => create(cf, stack_name, &body, &params).await?,
    }

    let stack = wait_until_settled(cf, stack_name, LOCAL_STACK_TIMEOUT).await?;
    let status = stack
        .stack_status()
        .map(StackStatus::as_str)
        .unwrap_or_default();
    if status != "CREATE_COMPLETE" && status != "UPDATE_COMPLETE" {
        let reasons = failure_reasons(cf, stack_name).await;
        bail!("stack {stack_name} ended in {status}:\n{reasons}");
    }
    StackOutputs::from_outputs(stack.outputs()).with_context(|| format!("stack {stack_name}"))
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

/// Deletes the stack and waits until it is gone. A stack that does not exist is already deleted.
///
/// A delete that ends in `DELETE_FAILED` is retried once, as the console does: resources whose own
/// create had failed can fail the first delete and be gone for the second.
pub async fn delete_stack(cf: &Client, stack_name: &str) -> anyhow::Result<()> {
    const ATTEMPTS: u32 = 2;
    for attempt in 1..=ATTEMPTS {
        if describe(cf, stack_name).await?.is_none() {
            return Ok(());
        }
        cf.delete_stack()
            .stack_name(stack_name)
            .send()
            .await
            .map_err(|e| anyhow!("deleting stack {stack_name}: {}", DisplayErrorContext(e)))?;
        let Some(stack) = wait_until_deleted(cf, stack_name).await? else {
            return Ok(());
        };
        let status = stack
            .stack_status()
            .map(StackStatus::as_str)
            .unwrap_or_default();
        if attempt == ATTEMPTS {
            let reasons = failure_reasons(cf, stack_name).await;
            bail!("deleting stack {stack_name} ended in {status}:\n{reasons}");
        }
        tracing::info!(
            stack_name,
            status,
            "delete did not complete: retrying it once"
        );
    }
    Ok(())
}

/// Polls until the stack is gone (`None`) or its delete has failed (`Some`, in `DELETE_FAILED`).
async fn wait_until_deleted(cf: &Client, stack_name: &str) -> anyhow::Result<Option<Stack>> {
    // LocalStack reports DELETE_FAILED for a moment while it is still deleting a stack whose
    // create had failed; only a DELETE_FAILED that lasts this long counts.
    const FAILED_GRACE: Duration = Duration::from_secs(3);
    let deadline = Instant::now() + LOCAL_STACK_TIMEOUT;
    let mut failed_since: Option<Instant> = None;
    loop {
        let Some(stack) = describe(cf, stack_name).await? else {
            return Ok(None);
        };
        match stack.stack_status() {
            Some(StackStatus::DeleteComplete) => return Ok(None),
            Some(StackStatus::DeleteFailed) => {
                let since = *failed_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= FAILED_GRACE {
                    return Ok(Some(stack));
                }
            }
            _ => failed_since = None,
        }
        if Instant::now() >= deadline {
            bail!("stack {stack_name} was not deleted within {LOCAL_STACK_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A stack in this state holds nothing usable and cannot be updated: a local deploy deletes it and
/// creates it again.
fn must_recreate(status: &StackStatus) -> bool {
    matches!(
        status,
        StackStatus::RollbackComplete
            | StackStatus::RollbackFailed
            | StackStatus::CreateFailed
            | StackStatus::DeleteFailed
    )
}

/// `DeployFunctions=false`, the local placeholders, and the caller's parameters (which win over
/// the placeholders; a caller's `DeployFunctions` is ignored: the code locations are fake).
fn local_parameters(extra: &[(String, String)]) -> Vec<Parameter> {
    let mut params: Vec<(String, String)> =
        vec![("DeployFunctions".to_owned(), "false".to_owned())];
    params.extend(
        LOCAL_DEFAULT_PARAMS
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(ek, _)| ek == k))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    for (k, v) in extra {
        if k == "DeployFunctions" {
            tracing::warn!(value = %v, "ignoring DeployFunctions: a local deploy never deploys the functions");
        } else {
            params.push((k.clone(), v.clone()));
        }
    }
    params
        .into_iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

/// `CAPABILITY_AUTO_EXPAND` is what AWS requires for a template with a `Transform`.
fn capabilities() -> Vec<Capability> {
    vec![Capability::CapabilityIam, Capability::CapabilityAutoExpand]
}

async fn create(
    cf: &Client,
    stack_name: &str,
    body: &str,
    params: &[Parameter],
) -> anyhow::Result<()> {
    cf.create_stack()
        .stack_name(stack_name)
        .template_body(body)
        .set_parameters(Some(params.to_vec()))
        .set_capabilities(Some(capabilities()))
        .send()
        .await
        .map_err(|e| anyhow!("creating stack {stack_name}: {}", DisplayErrorContext(e)))?;
    Ok(())
}

/// Starts an update; `false` when CloudFormation says there is nothing to update.
async fn update(
    cf: &Client,
    stack_name: &str,
    body: &str,
    params: &[Parameter],
) -> anyhow::Result<bool> {
    match cf
        .update_stack()
        .stack_name(stack_name)
        .template_body(body)
        .set_parameters(Some(params.to_vec()))
        .set_capabilities(Some(capabilities()))
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e)
            if e.message()
                .is_some_and(|m| m.contains("No updates are to be performed")) =>
        {
            Ok(false)
        }
        Err(e) => Err(anyhow!(
            "updating stack {stack_name}: {}",
            DisplayErrorContext(e)
        )),
    }
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

/// Polls until the stack's status no longer ends in `_IN_PROGRESS`, and returns the stack.
async fn wait_until_settled(
    cf: &Client,
    stack_name: &str,
    timeout: Duration,
) -> anyhow::Result<Stack> {
    let deadline = Instant::now() + timeout;
    let mut last_status = String::new();
    loop {
        let stack = describe(cf, stack_name)
            .await?
            .ok_or_else(|| anyhow!("stack {stack_name} disappeared while waiting for it"))?;
        let status = stack
            .stack_status()
            .map(StackStatus::as_str)
            .unwrap_or_default();
        if status != last_status {
            tracing::debug!(stack_name, status, "stack status");
            last_status = status.to_owned();
        }
        if !status.is_empty() && !status.ends_with("_IN_PROGRESS") {
            return Ok(stack);
        }
        if Instant::now() >= deadline {
            bail!("stack {stack_name} still {status} after {timeout:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `Resource (Type): STATUS: reason` for each failed resource of the latest operation, oldest first.
async fn failure_reasons(cf: &Client, stack_name: &str) -> String {
    let events = match cf
        .describe_stack_events()
        .stack_name(stack_name)
        .send()
        .await
    {
        Ok(out) => out.stack_events,
        Err(e) => return format!("  (stack events unavailable: {})", DisplayErrorContext(e)),
    };
    let mut reasons = Vec::new();
    // Newest first; the stack's own *_IN_PROGRESS event with a user-initiated reason marks the
    // start of the operation, so earlier failures from older operations are left out.
    for event in events.unwrap_or_default() {
        let status = event.resource_status();
        let is_stack = event.resource_type() == Some("AWS::CloudFormation::Stack");
        if is_stack
            && matches!(
                status,
                Some(ResourceStatus::CreateInProgress | ResourceStatus::UpdateInProgress)
            )
            && event
                .resource_status_reason()
                .is_some_and(|r| r.contains("User Initiated"))
        {
            break;
        }
        let failed = status.is_some_and(|s| s.as_str().ends_with("_FAILED"))
            || (is_stack && status.is_some_and(|s| s.as_str().contains("ROLLBACK")));
        // The stack's own failure events mostly just echo a resource's; keep those with a reason.
        if failed && (!is_stack || event.resource_status_reason().is_some()) {
            reasons.push(format!(
                "  {} ({}): {}: {}",
                event.logical_resource_id().unwrap_or("?"),
                event.resource_type().unwrap_or("?"),
                status.map(ResourceStatus::as_str).unwrap_or("?"),
                event.resource_status_reason().unwrap_or("no reason given"),
            ));
        }
    }
    if reasons.is_empty() {
        return "  (no failure reason in the stack events)".to_owned();
    }
    reasons.reverse();
    let mut text = reasons.join("\n");
    if text.contains("Please check your 'SERVICES'") {
        text.push_str("\n  hint: start LocalStack with every service the template uses in SERVICES (see infra/localstack/up)");
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_template_rewrites_local_code_uris_only() {
        let src = "\
Globals:
  Function:
    CodeUri: functions/common/
Resources:
  IngestFunction:
    Type: AWS::Serverless::Function
    Condition: FunctionsEnabled
    Properties:
      CodeUri: .
      Handler: bootstrap
  DrainFunction:
    Properties:
      CodeUri: \"./functions/drain\"   # the drain
  Packaged:
    Properties:
      CodeUri: s3://bucket/key.zip
  Mapping:
    Properties:
      CodeUri:
        Bucket: !Ref Bucket
        Key: code.zip
  Ref:
    Properties:
      CodeUri: !Ref CodeLocation
";
        let out = local_template(src);
        assert_eq!(
            out,
            "\
Globals:
  Function:
    CodeUri: s3://sluice-local/functions-common.zip
Resources:
  IngestFunction:
    Type: AWS::Serverless::Function
    Condition: FunctionsEnabled
    Properties:
      CodeUri: s3://sluice-local/workspace.zip
      Handler: bootstrap
  DrainFunction:
    Properties:
      CodeUri: s3://sluice-local/functions-drain.zip   # the drain
  Packaged:
    Properties:
      CodeUri: s3://bucket/key.zip
  Mapping:
    Properties:
      CodeUri:
        Bucket: !Ref Bucket
        Key: code.zip
  Ref:
    Properties:
      CodeUri: !Ref CodeLocation
"
        );
    }

    #[test]
    fn local_template_keeps_crlf_and_a_missing_final_newline() {
        assert_eq!(
            local_template("A: 1\r\n  CodeUri: ./\r\nB: 2"),
            "A: 1\r\n  CodeUri: s3://sluice-local/workspace.zip\r\nB: 2"
        );
        assert_eq!(
            local_template("  CodeUri: x"),
            "  CodeUri: s3://sluice-local/x.zip"
        );
    }

    #[test]
    fn local_template_leaves_other_keys_alone() {
        let src = "  DefinitionUri: ./api.yaml\n  # CodeUri: . in a comment\n  MyCodeUri: .\n";
        assert_eq!(local_template(src), src);
    }

    #[test]
    fn the_project_template_has_no_local_code_uri_after_rewriting() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let Ok(template) = std::fs::read_to_string(&path) else {
            return; // The template is optional for this crate's unit tests.
        };
        let local = local_template(&template);
        let code_uris: Vec<&str> = local
            .lines()
            .filter(|l| l.trim_start().starts_with("CodeUri:"))
            .collect();
        assert!(!code_uris.is_empty(), "template.yaml has no CodeUri at all");
        for line in code_uris {
            assert!(line.contains("s3://sluice-local/"), "not rewritten: {line}");
        }
        assert!(
            local.len() <= MAX_TEMPLATE_BODY_BYTES,
            "template too large to send inline"
        );
    }

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
        let outputs = StackOutputs::from_outputs(&with_api).unwrap();
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

    #[test]
    fn caller_parameters_override_the_local_placeholders() {
        let params = local_parameters(&[
            ("ProviderAccountId".into(), "42".into()),
            ("MaxReceiveCount".into(), "3".into()),
            ("DeployFunctions".into(), "true".into()),
        ]);
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|p| (p.parameter_key().unwrap(), p.parameter_value().unwrap()))
            .collect();
        assert_eq!(
            pairs
                .iter()
                .filter(|(k, _)| *k == "DeployFunctions")
                .count(),
            1
        );
        assert!(pairs.contains(&("DeployFunctions", "false")));
        assert!(pairs.contains(&("ProviderAccountId", "42")));
        assert!(!pairs.contains(&("ProviderAccountId", "local")));
        assert!(pairs.contains(&("MaxReceiveCount", "3")));
        assert_eq!(
            pairs
                .iter()
                .filter(|(k, _)| *k == "ProviderApiKeySecretArn")
                .count(),
            1
        );
    }

    #[test]
    fn object_keys_are_plain() {
        assert_eq!(object_key("."), "workspace");
        assert_eq!(object_key("./"), "workspace");
        assert_eq!(object_key("functions/drain/"), "functions-drain");
        assert_eq!(object_key("./a b/c.d"), "a-b-c-d");
    }
}
