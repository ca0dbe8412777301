//! Flags (and environment variables) of the `provider-emulator` binary.

use std::net::SocketAddr;

use anyhow::bail;
use clap::Parser;

use super::EmulatorConfig;
use super::model::{Faults, ForcedResponse, QuotaModel};

/// A Drip-compatible provider emulator for tests and the demo.
#[derive(Debug, Clone, Parser)]
#[command(name = "provider-emulator", version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "EMULATOR_LISTEN", default_value = "127.0.0.1:8025")]
    pub listen: SocketAddr,
    /// Account id expected in `/v2/{account_id}/...`.
    #[arg(long, env = "EMULATOR_ACCOUNT_ID", default_value = "1234567")]
    pub account_id: String,
    /// API key expected as the Basic-auth username.
    #[arg(long, env = "EMULATOR_API_KEY", default_value = "test-provider-key")]
    pub api_key: String,
    /// Batch requests allowed per window.
    #[arg(long, env = "EMULATOR_BATCH_LIMIT", default_value_t = 50)]
    pub batch_limit: u64,
    /// Individual requests allowed per window.
    #[arg(long, env = "EMULATOR_INDIVIDUAL_LIMIT", default_value_t = 3600)]
    pub individual_limit: u64,
    /// Length of the fixed, epoch-aligned quota window.
    #[arg(long, env = "EMULATOR_WINDOW_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub window_seconds: u64,
    /// How the limit is counted: `fixed` windows aligned to the epoch, or `rolling` (every
    /// window-length interval holds at most the limit).
    #[arg(long, env = "EMULATOR_QUOTA_MODEL", value_enum, default_value_t = QuotaModel::Fixed)]
    pub quota_model: QuotaModel,
    /// Another client of the account spends this percentage of each kind's limit per window, evenly.
    #[arg(long, env = "EMULATOR_OTHER_CLIENT_PERCENT", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=100))]
    pub other_client_percent: u64,
    /// Probability (0..=1) of answering a provider request with a random 500/502/503.
    #[arg(long, env = "EMULATOR_ERROR_RATE", default_value_t = 0.0)]
    pub error_rate: f64,
    /// Latency added to every provider response.
    #[arg(long, env = "EMULATOR_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Uniform random extra latency, 0..=N ms.
    #[arg(long, env = "EMULATOR_LATENCY_JITTER_MS", default_value_t = 0)]
    pub latency_jitter_ms: u64,
    /// Answer the next requests with STATUS (COUNT times, default 1); repeatable or comma-separated,
    /// in order: `--force 503x2 --force 429`.
    #[arg(long, env = "EMULATOR_FORCE", value_name = "STATUS[xCOUNT]", value_delimiter = ',',
          value_parser = parse_forced)]
    pub force: Vec<ForcedResponse>,
    /// Refuse records with this email with a 422; repeatable or comma-separated.
    #[arg(
        long = "reject-email",
        env = "EMULATOR_REJECT_EMAILS",
        value_name = "EMAIL",
        value_delimiter = ','
    )]
    pub reject_emails: Vec<String>,
    /// Close the connection of the next N provider requests without answering.
    #[arg(long, env = "EMULATOR_DROP_CONNECTIONS", default_value_t = 0)]
    pub drop_connections: u32,
    /// How long a dropped request hangs before its connection closes.
    #[arg(long, env = "EMULATOR_HANG_MS", default_value_t = 0)]
    pub hang_ms: u64,
}

impl Args {
    /// The emulator configuration these flags describe, or why they do not describe one.
    pub fn config(&self) -> anyhow::Result<EmulatorConfig> {
        let faults = Faults {
            error_rate: self.error_rate,
            latency_ms: self.latency_ms,
            latency_jitter_ms: self.latency_jitter_ms,
            force: self.force.clone(),
            reject_emails: self.reject_emails.iter().cloned().collect(),
            reject_emails_unindexed: Default::default(),
            drop_connections: self.drop_connections,
            hang_ms: self.hang_ms,
        };
        if let Err(problem) = faults.validate() {
            bail!("invalid fault flags: {problem}");
        }
        if self.api_key.is_empty() {
            bail!("--api-key / EMULATOR_API_KEY must not be empty");
        }
        Ok(EmulatorConfig {
            account_id: self.account_id.clone(),
            api_key: self.api_key.clone(),
            batch_limit: self.batch_limit,
            individual_limit: self.individual_limit,
            window_seconds: self.window_seconds,
            quota_model: self.quota_model,
            faults,
            other_client_percent: self.other_client_percent,
        })
    }
}

/// `503` or `503x2`.
fn parse_forced(text: &str) -> Result<ForcedResponse, String> {
    let (status, count) = text.split_once(['x', 'X', '*', ':']).unwrap_or((text, "1"));
    let status = status
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("{text:?}: expected STATUS or STATUSxCOUNT, e.g. 503x2"))?;
    let count = count
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{text:?}: COUNT must be a whole number"))?;
    Ok(ForcedResponse { status, count })
}

/// Resolves on Ctrl-C or, on unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: never resolve from this branch.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_flags() {
        assert_eq!(
            parse_forced("503x2"),
            Ok(ForcedResponse {
                status: 503,
                count: 2
            })
        );
        assert_eq!(
            parse_forced("429"),
            Ok(ForcedResponse {
                status: 429,
                count: 1
            })
        );
        assert!(parse_forced("abc").is_err());
    }

    #[test]
    fn flags_build_a_config() {
        let args = Args::try_parse_from([
            "provider-emulator",
            "--batch-limit",
            "5",
            "--window-seconds",
            "60",
            "--force",
            "503x2,429",
            "--reject-email",
            "bad@example.com",
        ])
        .expect("valid flags");
        let config = args.config().expect("valid config");
        assert_eq!(config.batch_limit, 5);
        assert_eq!(config.window_seconds, 60);
        assert_eq!(config.faults.force.len(), 2);
        assert!(config.faults.reject_emails.contains("bad@example.com"));
        assert_eq!(config.quota_model, QuotaModel::Fixed);
        assert!(Args::try_parse_from(["provider-emulator", "--window-seconds", "0"]).is_err());
        let rolling = Args::try_parse_from(["provider-emulator", "--quota-model", "rolling"])
            .expect("valid flags");
        assert_eq!(
            rolling.config().expect("valid config").quota_model,
            QuotaModel::Rolling
        );
        assert!(Args::try_parse_from(["provider-emulator", "--quota-model", "sliding"]).is_err());
    }
}
