//! `sluice local deploy|destroy`: `template.yaml` deployed to LocalStack with the functions switched off
//! (they run on this machine, see [`crate::serve`]), and deleted again. The template sent is
//! [`local_template`]'s copy.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudformation::types::{Capability, Parameter, ResourceStatus, Stack, StackStatus};

use super::local_template::local_template;
use super::{StackOutputs, describe, read_outputs};

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
    let body = read_local_template(template_path.as_ref())?;
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

/// The template at `template_path` as LocalStack takes it ([`local_template`]), small enough to send inline.
fn read_local_template(template_path: &Path) -> anyhow::Result<String> {
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
    Ok(body)
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
}
