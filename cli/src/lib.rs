//! `sluice`, the operator's command line, as a library (integration tests use it too).
//!
//! # Layout
//! - [`args`]: the command line (clap): global options and the [`args::Command`] enum.
//! - [`aws`]: the shared AWS SDK configuration (`--endpoint-url`, `--region`).
//! - [`stack`]: a deployed stack read back (outputs and parameters), in AWS or on LocalStack;
//!   [`stack::local_template`](mod@stack::local_template) and [`stack::local_deploy`]: `template.yaml` deployed to LocalStack and
//!   deleted again (used by `sluice local` and by the integration tests).
//! - [`settings`]: what the functions see (environment first, then the stack's outputs and parameters).
//! - [`status`]: `sluice status` (read-only: quota, backlog, DLQ depth, lease, circuit).
//! - [`dlq`]: `sluice dlq list|show|redrive`, over the library's SQS adapter
//!   (`sluice::adapters::sqs::SqsDeadLetters`).
//! - [`drain`]: `sluice drain --once` (the Lambda's engine, run from here).
//! - [`local`]: `sluice local deploy|destroy|serve`.
//! - [`serve`]: `sluice local serve` (both functions' code as one long-lived local server).
//! - [`backfill`]: `sluice backfill FILE` (a file of changes through the ingest API, resumable).
//! - [`format`](mod@format): durations, tables, redacted emails.
//!
//! Adding a command: a variant in [`args::Command`], a module with its `run`, one arm in [`run`].

pub mod args;
pub mod aws;
pub mod backfill;
pub mod dlq;
pub mod drain;
pub mod format;
pub mod local;
pub mod serve;
pub mod settings;
pub mod stack;
pub mod status;

use args::{Cli, Command};

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = aws::sdk_config(
        cli.global.endpoint_url.as_deref(),
        cli.global.region.as_deref(),
    )
    .await;
    match &cli.command {
        Command::Status(args) => status::run(args, &cli.global, &config).await,
        Command::Dlq(command) => dlq::run(command, &cli.global, &config).await,
        Command::Drain(args) => drain::run(args, &cli.global, &config).await,
        Command::Local(command) => local::run(command, &cli.global, &config).await,
        Command::Backfill(args) => backfill::run(args, &cli.global, &config).await,
    }
}
