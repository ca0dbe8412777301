//! `sluice drain --once`: one run of the drain from an operator's machine.
//!
//! It is the Lambda's code path: the same [`Config`] (variables from the environment, else from the stack,
//! see [`crate::settings`]), the same [`sluice::startup::aws_drain`] over SQS, DynamoDB and the provider,
//! and one [`sluice::drain::Drain::run`]. So it reserves quota in the same ledger and takes the same lease:
//! it can never overshoot the limit or interleave with a scheduled run (it reports `lease_held` instead).

use std::collections::BTreeMap;

use anyhow::Context;
use aws_config::SdkConfig;
use chrono::Utc;
use sluice::Config;
use sluice::config::{FromVars, ProviderKeySource};
use sluice::drain::{DrainReport, Idle, QuotaSummary};

use crate::args::{DrainArgs, GlobalArgs};
use crate::format;
use crate::stack::DeployedStack;

/// `sluice drain --once [--json]`.
pub async fn run(args: &DrainArgs, global: &GlobalArgs, sdk: &SdkConfig) -> anyhow::Result<()> {
    let cf = aws_sdk_cloudformation::Client::new(sdk);
    let stack = crate::stack::read_stack(&cf, &global.stack_name).await?;
    // The run's deadline is its timeout: the same check as the Lambda's cold start refuses a provider
    // timeout that cannot fit it.
    let deadline = args.deadline_seconds.to_string();
    let config = config(&stack, |k| {
        if k == "DRAIN_TIMEOUT_SECONDS" {
            Some(deadline.clone())
        } else {
            std::env::var(k).ok()
        }
    })?;
    let local = sdk.endpoint_url().is_some_and(crate::aws::is_loopback);
    let report = match run_once(sdk, &config, args.deadline_seconds).await {
        Ok(report) => report,
        Err(e) if local && matches!(config.provider_key, ProviderKeySource::SecretArn(_)) => {
            anyhow::bail!(
                "{e:#}\nhint: a local stack has no provider secret; give the provider in the environment \
                 (PROVIDER_BASE_URL, PROVIDER_ACCOUNT_ID, PROVIDER_API_KEY), e.g. `set -a; . .sluice/local.env; set +a`"
            )
        }
        Err(e) => return Err(e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The configuration the drain function would load, for this stack.
pub fn config(
    stack: &DeployedStack,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Config> {
    let vars: BTreeMap<String, String> = crate::settings::function_env(stack, env);
    Config::from_lookup(|k| vars.get(k).cloned()).with_context(|| {
        format!(
            "configuring the drain (environment first, then stack {}'s outputs and parameters)",
            stack.name
        )
    })
}

/// One run with `deadline_seconds` to go, as the Lambda with that timeout.
pub async fn run_once(
    sdk: &SdkConfig,
    config: &Config,
    deadline_seconds: u32,
) -> anyhow::Result<DrainReport> {
    let drain = sluice::startup::aws_drain(config, sdk)
        .await
        .context("building the drain")?;
    let deadline = Utc::now() + chrono::Duration::seconds(i64::from(deadline_seconds));
    drain.run(deadline).await.context("running the drain")
}

fn quota(kind: &str, q: &QuotaSummary) -> String {
    format!("{kind} {}/{} used ({} left)", q.used, q.limit, q.left)
}

/// The report as a few lines of text (`--json` prints the Lambda's JSON summary instead).
pub fn render(report: &DrainReport) -> String {
    let mut out = String::new();
    if let Some(idle) = report.idle {
        let why = match idle {
            Idle::LeaseHeld => "another drain run holds the lease; nothing done",
            Idle::CircuitOpen => {
                "the provider circuit is open after repeated failures; nothing sent"
            }
            Idle::NoQuota => "no quota due this run (spent, or paced for later in the window)",
            Idle::NoTimeToSend => "too close to the deadline to start",
        };
        out.push_str(&format!("idle: {why}\n"));
    }
    out.push_str(&format!(
        "delivered {} record(s): {} in {} batch request(s), {} in {} individual request(s)\n",
        report.delivered_records(),
        report.delivered.batch,
        report.requests.batch,
        report.delivered.individual,
        report.requests.individual,
    ));
    out.push_str(&format!(
        "received {} (planned {}), coalesced {}, unchanged fields {}, stale fields {}, absorbed {}\n",
        report.received,
        report.planned_receive,
        report.coalesced,
        report.skipped_unchanged,
        report.skipped_stale,
        report.absorbed,
    ));
    out.push_str(&format!(
        "deleted {}, deferred {}, retried {}, dead-lettered {}, 429s {}, provider errors {}{}\n",
        report.deleted,
        report.deferred,
        report.retried,
        report.dead_lettered,
        report.rate_limited,
        report.provider_errors,
        if report.circuit_opened {
            ", circuit OPENED"
        } else {
            ""
        },
    ));
    if report.adopted.batch > 0 || report.adopted.individual > 0 {
        out.push_str(&format!(
            "adopted from the provider's count: {} batch, {} individual (another client of the account)\n",
            report.adopted.batch, report.adopted.individual,
        ));
    }
    out.push_str(&format!(
        "quota: {}, {}; window ends in {}; took {} ms\n",
        quota("batch", &report.quota_batch),
        quota("individual", &report.quota_individual),
        format::duration(report.window_ends_in_s),
        report.duration_ms,
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sluice::drain::PerKind;

    #[test]
    fn the_config_takes_names_from_the_stack_and_the_key_from_the_environment() {
        let stack = DeployedStack::for_tests(
            "s",
            ["http://q", "http://dlq", "t"],
            &[
                ("ProviderBaseUrl", "https://api.getdrip.com"),
                ("ProviderAccountId", "local"),
                (
                    "ProviderApiKeySecretArn",
                    "arn:aws:secretsmanager:us-east-1:000000000000:secret:x",
                ),
                ("QuotaWindowSeconds", "60"),
            ],
        );
        let env = BTreeMap::from([
            ("PROVIDER_BASE_URL", "http://127.0.0.1:8025"),
            ("PROVIDER_API_KEY", "k"),
        ]);
        let config = config(&stack, |k| env.get(k).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(config.queue_url, "http://q");
        assert_eq!(config.dlq_url, "http://dlq");
        assert_eq!(config.table_name, "t");
        assert_eq!(config.stack_name, "s");
        assert_eq!(config.provider_base_url, "http://127.0.0.1:8025");
        assert_eq!(config.provider_account_id, "local");
        assert_eq!(config.limits.window_seconds, 60);
        assert!(matches!(
            config.provider_key,
            sluice::config::ProviderKeySource::Plain(_)
        ));

        // In AWS the stack's secret ARN is used.
        let config = super::config(&stack, |_| None).unwrap();
        assert!(matches!(
            config.provider_key,
            sluice::config::ProviderKeySource::SecretArn(_)
        ));
    }

    #[test]
    fn the_report_reads_as_text() {
        let report = DrainReport {
            window_ends_in_s: 725,
            planned_receive: 30,
            received: 25,
            coalesced: 2,
            delivered: PerKind {
                batch: 0,
                individual: 23,
            },
            requests: PerKind {
                batch: 0,
                individual: 23,
            },
            deleted: 25,
            quota_batch: QuotaSummary {
                limit: 50,
                used: 0,
                left: 50,
                adopted: 0,
            },
            quota_individual: QuotaSummary {
                limit: 3600,
                used: 23,
                left: 3577,
                adopted: 0,
            },
            duration_ms: 812,
            ..DrainReport::default()
        };
        let text = render(&report);
        assert!(
            text.contains(
                "delivered 23 record(s): 0 in 0 batch request(s), 23 in 23 individual request(s)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("received 25 (planned 30), coalesced 2"),
            "{text}"
        );
        assert!(text.contains("quota: batch 0/50 used (50 left), individual 23/3600 used (3577 left); window ends in 12m 05s"), "{text}");
        assert!(!text.contains("idle"), "{text}");

        let idle = render(&DrainReport {
            idle: Some(Idle::LeaseHeld),
            ..DrainReport::default()
        });
        assert!(
            idle.starts_with("idle: another drain run holds the lease"),
            "{idle}"
        );
    }
}
