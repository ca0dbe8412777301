//! Where the backfill posts and how fast the provider can take it, found as `sluice` finds everything:
//! `--url`/`--api-key` (or `INGEST_URL`/`INGEST_API_KEY`) first; then the local stack's server
//! (`LOCAL_URL` in `.sluice/local.env`, ingest under `/lambda-url/ingest`); then the stack's `ApiUrl`
//! output and the key in its `ApiKeySecretArn` secret. The limits (for the ETA) come from the
//! environment first, then the stack's parameters (see [`crate::settings`]).

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};
use aws_config::SdkConfig;
use sluice::config::Limits;

use crate::args::{BackfillArgs, GlobalArgs};
use crate::stack::DeployedStack;

/// The ingest API to post to, and the provider's capacity behind it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The base `/v1/changes` hangs off.
    pub url: String,
    pub api_key: Option<String>,
    pub limits: Limits,
}

/// The limit variables `sluice` reads from the environment when there is no stack to ask.
const LIMIT_VARS: [&str; 5] = [
    "BATCH_LIMIT_PER_HOUR",
    "INDIVIDUAL_LIMIT_PER_HOUR",
    "BATCH_SIZE",
    "QUOTA_WINDOW_SECONDS",
    "QUOTA_MODEL",
];

pub async fn resolve(
    args: &BackfillArgs,
    global: &GlobalArgs,
    sdk: &SdkConfig,
) -> anyhow::Result<Target> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let cf = aws_sdk_cloudformation::Client::new(sdk);
    let stack = crate::stack::read_stack(&cf, &global.stack_name).await;
    let local_url =
        env("LOCAL_URL").map(|u| format!("{}/lambda-url/ingest", u.trim_end_matches('/')));
    let url = match (&args.url, local_url, &stack) {
        (Some(url), _, _) => url.clone(),
        (None, Some(url), _) => url,
        (None, None, Ok(stack)) => stack.outputs.api_url.clone().ok_or_else(|| {
            anyhow!(
                "stack {} has no ApiUrl output (functions not deployed): pass --url",
                stack.name
            )
        })?,
        (None, None, Err(e)) => {
            return Err(anyhow!("{e:#}")).context("finding the ingest API (or pass --url)");
        }
    };
    let api_key = match (&args.api_key, &stack) {
        (Some(key), _) => Some(key.clone()),
        (None, Ok(stack)) => secret_key(stack, sdk).await?,
        (None, Err(_)) => None,
    };
    let limits = match &stack {
        Ok(stack) => crate::settings::limits(&crate::settings::function_env(stack, env))?,
        Err(_) => {
            let vars: BTreeMap<String, String> = LIMIT_VARS
                .iter()
                .filter_map(|k| Some(((*k).to_owned(), env(k)?)))
                .collect();
            crate::settings::limits(&vars)?
        }
    };
    Ok(Target {
        url,
        api_key,
        limits,
    })
}

async fn secret_key(stack: &DeployedStack, sdk: &SdkConfig) -> anyhow::Result<Option<String>> {
    let Some(arn) = &stack.outputs.api_key_secret_arn else {
        return Ok(None);
    };
    sluice::adapters::secrets::read_api_key(sdk, arn, "the ingest API key")
        .await
        .map(Some)
}

/// Records per hour the provider takes at most, from its limits.
pub fn capacity_per_hour(limits: &Limits) -> u64 {
    limits.capacity_per_window() * 3_600 / u64::from(limits.window_seconds.max(1))
}
