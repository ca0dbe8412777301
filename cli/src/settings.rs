//! What the functions see, rebuilt on an operator's machine: the process environment first (a local
//! stack's `.sluice/local.env`, or an explicit override), then the stack — its outputs for the resource
//! names and the parameters the template hands the functions (limits, provider). So `sluice drain --once`
//! and `sluice status` use the same limits and names as the deployed drain without extra flags.

use std::collections::BTreeMap;

use anyhow::Context;
use sluice::config::Limits;

use crate::stack::DeployedStack;

/// Function variable → the template parameter that sets it (see `template.yaml`, DrainFunction).
const FROM_PARAMETERS: [(&str, &str); 10] = [
    ("BATCH_LIMIT_PER_HOUR", "BatchLimitPerHour"),
    ("INDIVIDUAL_LIMIT_PER_HOUR", "IndividualLimitPerHour"),
    ("BATCH_SIZE", "BatchSize"),
    ("DRAIN_MAX_MESSAGES", "DrainMaxMessages"),
    ("QUOTA_WINDOW_SECONDS", "QuotaWindowSeconds"),
    ("QUOTA_MODEL", "QuotaModel"),
    ("DRAIN_INTERVAL_SECONDS", "DrainIntervalSeconds"),
    ("MAX_RECEIVE_COUNT", "MaxReceiveCount"),
    ("PROVIDER_BASE_URL", "ProviderBaseUrl"),
    ("PROVIDER_ACCOUNT_ID", "ProviderAccountId"),
];

/// Every variable the functions read that the environment or the stack can answer, environment first.
///
/// The provider key is all-or-nothing: with `PROVIDER_API_KEY` or `PROVIDER_API_KEY_SECRET_ARN` in the
/// environment the stack's secret ARN is not added (a local run keeps its plain key).
pub fn function_env(
    stack: &DeployedStack,
    env: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let mut vars = BTreeMap::new();
    let put = |vars: &mut BTreeMap<String, String>, key: &str, fallback: Option<&str>| {
        if let Some(v) = env(key).or_else(|| fallback.map(str::to_owned)) {
            vars.insert(key.to_owned(), v);
        }
    };
    put(&mut vars, "QUEUE_URL", Some(&stack.outputs.queue_url));
    put(
        &mut vars,
        "QUEUE_URL_HIGH",
        stack.outputs.high_queue_url.as_deref(),
    );
    put(
        &mut vars,
        "QUEUE_URL_BULK",
        stack.outputs.bulk_queue_url.as_deref(),
    );
    put(&mut vars, "DLQ_URL", Some(&stack.outputs.dlq_url));
    put(&mut vars, "TABLE_NAME", Some(&stack.outputs.table_name));
    put(&mut vars, "SLUICE_STACK", Some(&stack.name));
    for (var, param) in FROM_PARAMETERS {
        put(
            &mut vars,
            var,
            stack.parameters.get(param).map(String::as_str),
        );
    }
    put(&mut vars, "PROVIDER_API_KEY", None);
    let secret_arn = if vars.contains_key("PROVIDER_API_KEY") {
        None
    } else {
        stack
            .parameters
            .get("ProviderApiKeySecretArn")
            .map(String::as_str)
    };
    put(&mut vars, "PROVIDER_API_KEY_SECRET_ARN", secret_arn);
    for var in ["PROVIDER_TIMEOUT_MS", "INGEST_API_KEY"] {
        put(&mut vars, var, None);
    }
    vars
}

/// The quota limits and window from [`function_env`]'s variables, with the drain's defaults.
pub fn limits(vars: &BTreeMap<String, String>) -> anyhow::Result<Limits> {
    let defaults = Limits::default();
    let number = |name: &str, default: u32| -> anyhow::Result<u32> {
        match vars.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .with_context(|| format!("{name}='{raw}' is not a whole number")),
        }
    };
    let limits = Limits {
        batch_per_window: number("BATCH_LIMIT_PER_HOUR", defaults.batch_per_window)?,
        individual_per_window: number("INDIVIDUAL_LIMIT_PER_HOUR", defaults.individual_per_window)?,
        batch_size: number("BATCH_SIZE", defaults.batch_size)?,
        window_seconds: number("QUOTA_WINDOW_SECONDS", defaults.window_seconds)?,
        quota_model: match vars.get("QUOTA_MODEL") {
            None => defaults.quota_model,
            Some(raw) => raw
                .parse()
                .map_err(|reason: String| anyhow::anyhow!("QUOTA_MODEL: {reason}"))?,
        },
    };
    anyhow::ensure!(
        limits.window_seconds > 0,
        "QUOTA_WINDOW_SECONDS must be at least 1"
    );
    Ok(limits)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stack() -> DeployedStack {
        DeployedStack::for_tests(
            "prod",
            ["https://sqs/q", "https://sqs/dlq", "t"],
            &[
                ("QuotaWindowSeconds", "60"),
                ("BatchLimitPerHour", "5"),
                ("ProviderAccountId", "42"),
                (
                    "ProviderApiKeySecretArn",
                    "arn:aws:secretsmanager:eu-west-1:1:secret:k",
                ),
            ],
        )
    }

    #[test]
    fn the_stack_answers_what_the_environment_does_not() {
        let vars = function_env(&stack(), |_| None);
        assert_eq!(vars["QUEUE_URL"], "https://sqs/q");
        assert_eq!(vars["DLQ_URL"], "https://sqs/dlq");
        assert_eq!(vars["TABLE_NAME"], "t");
        assert_eq!(vars["SLUICE_STACK"], "prod");
        assert_eq!(vars["QUOTA_WINDOW_SECONDS"], "60");
        assert_eq!(vars["PROVIDER_ACCOUNT_ID"], "42");
        assert_eq!(
            vars["PROVIDER_API_KEY_SECRET_ARN"],
            "arn:aws:secretsmanager:eu-west-1:1:secret:k"
        );
        assert!(!vars.contains_key("PROVIDER_API_KEY"));
        assert!(!vars.contains_key("INDIVIDUAL_LIMIT_PER_HOUR"));
    }

    #[test]
    fn the_environment_wins_and_a_plain_key_keeps_the_secret_out() {
        let env = BTreeMap::from([
            ("QUEUE_URL", "http://local/q"),
            ("QUOTA_WINDOW_SECONDS", "3600"),
            ("PROVIDER_API_KEY", "k"),
            ("BATCH_LIMIT_PER_HOUR", " "),
        ]);
        let vars = function_env(&stack(), |k| env.get(k).map(|v| (*v).to_owned()));
        assert_eq!(vars["QUEUE_URL"], "http://local/q");
        assert_eq!(vars["QUOTA_WINDOW_SECONDS"], "3600");
        assert_eq!(vars["PROVIDER_API_KEY"], "k");
        assert!(!vars.contains_key("PROVIDER_API_KEY_SECRET_ARN"));
        // A blank variable counts as unset, as in `Config`.
        assert_eq!(vars["BATCH_LIMIT_PER_HOUR"], "5");
    }

    #[test]
    fn limits_default_like_the_drain_and_name_a_bad_variable() {
        let limits = limits(&function_env(&stack(), |_| None)).unwrap();
        assert_eq!(limits.window_seconds, 60);
        assert_eq!(limits.batch_per_window, 5);
        assert_eq!(limits.individual_per_window, 3_600);
        assert_eq!(limits.batch_size, 1_000);

        let bad = BTreeMap::from([("INDIVIDUAL_LIMIT_PER_HOUR".to_owned(), "lots".to_owned())]);
        let err = super::limits(&bad).unwrap_err().to_string();
        assert!(err.contains("INDIVIDUAL_LIMIT_PER_HOUR"), "{err}");
        let zero = BTreeMap::from([("QUOTA_WINDOW_SECONDS".to_owned(), "0".to_owned())]);
        assert!(super::limits(&zero).is_err());
    }
}
