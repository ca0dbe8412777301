//! The functions' configuration, read from the environment and validated once at cold start, through one
//! reader ([`Vars`]: required, optional and bounded numeric variables) with a view per function: the drain's
//! [`Config`] and ingest's [`IngestConfig`], so neither requires a variable it never uses. Every error names
//! the variable, so a misconfigured function fails on its first invocation with a clear message.

use std::env;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ports::{Lanes, QuotaModel, Window};

/// How Sluice authenticates to the provider.
#[derive(Clone)]
pub enum ProviderKeySource {
    /// `PROVIDER_API_KEY`: local runs and tests only.
    Plain(String),
    /// `PROVIDER_API_KEY_SECRET_ARN`: read once from Secrets Manager at cold start (deployed).
    SecretArn(String),
}

impl std::fmt::Debug for ProviderKeySource {
    /// Never prints the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderKeySource::Plain(_) => f.write_str("Plain(<redacted>)"),
            ProviderKeySource::SecretArn(arn) => write!(f, "SecretArn({arn})"),
        }
    }
}

/// The provider's limits and how Sluice paces itself within them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Batch requests allowed per window (`BATCH_LIMIT_PER_HOUR`, default 50).
    pub batch_per_window: u32,
    /// Individual requests allowed per window (`INDIVIDUAL_LIMIT_PER_HOUR`, default 3,600).
    pub individual_per_window: u32,
    /// Records in one batch request (`BATCH_SIZE`, default 1,000).
    pub batch_size: u32,
    /// Window length in seconds, windows aligned to the Unix epoch (`QUOTA_WINDOW_SECONDS`, default 3,600).
    pub window_seconds: u32,
    /// How the provider counts the window: fixed clock windows or a rolling interval (`QUOTA_MODEL`,
    /// default `fixed`).
    pub quota_model: QuotaModel,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            batch_per_window: 50,
            individual_per_window: 3_600,
            batch_size: 1_000,
            window_seconds: 3_600,
            quota_model: QuotaModel::Fixed,
        }
    }
}

impl Limits {
    /// Records the provider accepts per window at most.
    pub fn capacity_per_window(&self) -> u64 {
        u64::from(self.batch_per_window) * u64::from(self.batch_size)
            + u64::from(self.individual_per_window)
    }

    /// The quota window of a run at `at`, in this configuration's model.
    pub fn window_at(&self, at: DateTime<Utc>) -> Window {
        Window::at(self.quota_model, at, self.window_seconds)
    }
}

/// Time a drain run needs besides its provider calls: reading quota, circuit and queue depth, receiving,
/// and settling (sync state, progress, deletes). Each AWS call is bounded by the SDK's operation timeout.
pub const RUN_OVERHEAD: Duration = Duration::from_secs(15);

/// Default of `DRAIN_MAX_MESSAGES`: a safety cap on one run's receive, not a throttle. A run receives by
/// distinct users until its plan's records are covered; under the simulated saturated day (repeat users,
/// Zipf) that takes up to ~3,400 messages, after a long outage more, so the cap sits well above.
pub const DEFAULT_DRAIN_MAX_MESSAGES: u32 = 20_000;

/// The changes queue's URL for each lane: `QUEUE_URL` is the normal lane's, `QUEUE_URL_HIGH` and
/// `QUEUE_URL_BULK` the others'. Those two are optional: a lane without one shares the normal lane's queue
/// (a stack from before lanes, a local run with one queue), which loses nothing and only costs the lane
/// its head start; the template always sets both. A lane URL equal to another lane's is refused: one
/// queue read as two lanes would be counted and received twice.
pub fn lane_urls<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<Lanes<String>, ConfigError> {
    let normal = vars.required("QUEUE_URL")?;
    let high = vars.optional("QUEUE_URL_HIGH");
    let bulk = vars.optional("QUEUE_URL_BULK");
    let clash = |name: &'static str, url: &Option<String>, others: &[&Option<String>]| match url {
        Some(u) if *u == normal || others.iter().any(|o| o.as_deref() == Some(u)) => {
            Err(ConfigError::Invalid {
                name,
                reason: format!(
                    "{u} is already another lane's queue (leave it unset to share QUEUE_URL)"
                ),
            })
        }
        _ => Ok(()),
    };
    clash("QUEUE_URL_HIGH", &high, &[&bulk])?;
    clash("QUEUE_URL_BULK", &bulk, &[])?;
    Ok(Lanes::with_optional(high, normal, bulk))
}

/// The drain's view: everything a drain run needs, loaded once.
#[derive(Debug, Clone)]
pub struct Config {
    /// The normal lane's queue (`QUEUE_URL`).
    pub queue_url: String,
    /// Every lane's queue ([`lane_urls`]): the normal one is `queue_url`.
    pub lanes: Lanes<String>,
    pub dlq_url: String,
    pub table_name: String,
    pub provider_base_url: String,
    pub provider_account_id: String,
    pub provider_key: ProviderKeySource,
    pub limits: Limits,
    /// Most messages one drain run receives (`DRAIN_MAX_MESSAGES`, default [`DEFAULT_DRAIN_MAX_MESSAGES`]).
    pub drain_max_messages: u32,
    /// How often the drain is scheduled (`DRAIN_INTERVAL_SECONDS`, default 60); the pacing policy plans per run.
    pub drain_interval_seconds: u32,
    /// Provider HTTP timeout (`PROVIDER_TIMEOUT_MS`, default 10,000).
    pub provider_timeout: Duration,
    /// The drain function's timeout (`DRAIN_TIMEOUT_SECONDS`, default 60: the template's `Timeout`). A run
    /// plans its phases inside it; a configuration that cannot fit one provider call and the settling
    /// after it is refused at cold start.
    pub drain_timeout: Duration,
    /// Delivery attempts of one change before it is dead-lettered as `retries_exhausted`
    /// (`MAX_RECEIVE_COUNT`, default 10: the queue's redrive `maxReceiveCount`, which stays the net).
    pub max_receive_count: u32,
    /// The `Stack` dimension of the drain's metrics (`SLUICE_STACK`, default `sluice`).
    pub stack_name: String,
}

/// A configuration error naming the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The one reader of configuration variables: any key lookup (the process environment, or a map in
/// tests), with the parsing and bounds every view shares. A blank value counts as unset.
pub struct Vars<F> {
    get: F,
}

impl Vars<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn env() -> Self {
        Self {
            get: |k| env::var(k).ok(),
        }
    }
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn new(get: F) -> Self {
        Self { get }
    }

    /// The value, if set and not blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// A whole number in `min..=max`, `default` when unset.
    pub fn number(
        &self,
        name: &'static str,
        default: u32,
        min: u32,
        max: u32,
    ) -> Result<u32, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        let n: u32 = raw.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("'{raw}' is not a whole number"),
        })?;
        if n < min || n > max {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("{n} is outside {min}..={max}"),
            });
        }
        Ok(n)
    }
}

/// A configuration view: read from the one [`Vars`] reader, from the process environment or from any key
/// lookup (tests pass a map).
pub trait FromVars: Sized {
    fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError>;

    /// Reads the view from the process environment.
    fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::env())
    }

    /// Reads the view from any key lookup.
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::new(get))
    }
}

impl FromVars for Config {
    fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        let (provider_timeout, drain_timeout) = timeouts(vars)?;
        Ok(Self {
            queue_url: vars.required("QUEUE_URL")?,
            lanes: lane_urls(vars)?,
            dlq_url: vars.required("DLQ_URL")?,
            table_name: vars.required("TABLE_NAME")?,
            provider_base_url: provider_base_url(vars)?,
            provider_account_id: vars.required("PROVIDER_ACCOUNT_ID")?,
            provider_key: provider_key(vars)?,
            limits: limits(vars)?,
            drain_max_messages: vars.number(
                "DRAIN_MAX_MESSAGES",
                DEFAULT_DRAIN_MAX_MESSAGES,
                1,
                100_000,
            )?,
            drain_interval_seconds: vars.number("DRAIN_INTERVAL_SECONDS", 60, 1, 3_600)?,
            provider_timeout,
            drain_timeout,
            max_receive_count: vars.number("MAX_RECEIVE_COUNT", 10, 1, 1_000)?,
            stack_name: vars
                .optional("SLUICE_STACK")
                .unwrap_or_else(|| "sluice".into()),
        })
    }
}

fn provider_key<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<ProviderKeySource, ConfigError> {
    if let Some(arn) = vars.optional("PROVIDER_API_KEY_SECRET_ARN") {
        return Ok(ProviderKeySource::SecretArn(arn));
    }
    match (vars.get)("PROVIDER_API_KEY") {
        Some(key) if !key.is_empty() => Ok(ProviderKeySource::Plain(key)),
        _ => Err(ConfigError::Missing(
            "PROVIDER_API_KEY_SECRET_ARN (or PROVIDER_API_KEY for local runs)",
        )),
    }
}

fn provider_base_url<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<String, ConfigError> {
    let url = vars.required("PROVIDER_BASE_URL")?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            name: "PROVIDER_BASE_URL",
            reason: "must start with http:// or https://".into(),
        });
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn limits<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Limits, ConfigError> {
    let limits = Limits {
        batch_per_window: vars.number("BATCH_LIMIT_PER_HOUR", 50, 0, 1_000_000)?,
        individual_per_window: vars.number("INDIVIDUAL_LIMIT_PER_HOUR", 3_600, 0, 1_000_000)?,
        batch_size: vars.number("BATCH_SIZE", 1_000, 1, 1_000)?,
        window_seconds: vars.number("QUOTA_WINDOW_SECONDS", 3_600, 1, 86_400)?,
        quota_model: quota_model(vars)?,
    };
    if limits.batch_per_window == 0 && limits.individual_per_window == 0 {
        return Err(ConfigError::Invalid {
            name: "BATCH_LIMIT_PER_HOUR",
            reason: "both BATCH_LIMIT_PER_HOUR and INDIVIDUAL_LIMIT_PER_HOUR are 0: nothing could ever be sent".into(),
        });
    }
    Ok(limits)
}

/// `QUOTA_MODEL`: `fixed` (default) or `rolling`.
fn quota_model<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<QuotaModel, ConfigError> {
    match vars.optional("QUOTA_MODEL") {
        None => Ok(QuotaModel::Fixed),
        Some(raw) => raw.parse().map_err(|reason| ConfigError::Invalid {
            name: "QUOTA_MODEL",
            reason,
        }),
    }
}

/// The provider call timeout and the drain's own, refused together when one call and the settling after
/// it cannot fit in a run.
fn timeouts<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<(Duration, Duration), ConfigError> {
    let provider_timeout = Duration::from_millis(u64::from(vars.number(
        "PROVIDER_TIMEOUT_MS",
        10_000,
        100,
        120_000,
    )?));
    let drain_timeout = Duration::from_secs(u64::from(vars.number(
        "DRAIN_TIMEOUT_SECONDS",
        60,
        10,
        900,
    )?));
    // A run needs room for its reads, one provider call and the settling after it.
    if provider_timeout + RUN_OVERHEAD > drain_timeout {
        return Err(ConfigError::Invalid {
            name: "PROVIDER_TIMEOUT_MS",
            reason: format!(
                "{} ms plus {} s for reading state and settling does not fit in the drain's \
                 DRAIN_TIMEOUT_SECONDS={} s: lower PROVIDER_TIMEOUT_MS to at most {} ms or raise the timeout",
                provider_timeout.as_millis(),
                RUN_OVERHEAD.as_secs(),
                drain_timeout.as_secs(),
                (drain_timeout - RUN_OVERHEAD).as_millis()
            ),
        });
    }
    Ok((provider_timeout, drain_timeout))
}

/// Ingest's view: the queue, the table and its API key, so ingest does not require the provider's settings
/// it never uses.
#[derive(Clone)]
pub struct IngestConfig {
    /// The normal lane's queue (`QUEUE_URL`).
    pub queue_url: String,
    /// Every lane's queue ([`lane_urls`]): ingest routes each change by its priority.
    pub lanes: Lanes<String>,
    pub table_name: String,
    /// The `x-api-key` ingest requires, if any: `INGEST_API_KEY` (local runs), or the key read at cold
    /// start from `INGEST_API_KEY_SECRET_ARN` (behind an HTTP API). Behind a REST API, or an HTTP API
    /// with IAM auth, API Gateway authenticates and neither is set.
    pub ingest_api_key: Option<String>,
    /// `INGEST_API_KEY_SECRET_ARN`: where the deployed key lives ([`crate::adapters::secrets`]).
    pub ingest_api_key_secret_arn: Option<String>,
}

impl std::fmt::Debug for IngestConfig {
    /// Never prints the API key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestConfig")
            .field("queue_url", &self.queue_url)
            .field("lanes", &self.lanes)
            .field("table_name", &self.table_name)
            .field(
                "ingest_api_key",
                &self.ingest_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("ingest_api_key_secret_arn", &self.ingest_api_key_secret_arn)
            .finish()
    }
}

impl FromVars for IngestConfig {
    fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            queue_url: vars.required("QUEUE_URL")?,
            lanes: lane_urls(vars)?,
            table_name: vars.required("TABLE_NAME")?,
            ingest_api_key: (vars.get)("INGEST_API_KEY").filter(|k| !k.is_empty()),
            ingest_api_key_secret_arn: vars.optional("INGEST_API_KEY_SECRET_ARN"),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "config_tests.rs"]
mod tests;
