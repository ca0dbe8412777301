//! `sluice`, the operator's command line, as a library (integration tests use it too).
//!
//! # Layout
//! - [`args`]: the command line (clap): global options and the [`args::Command`] enum.
//! - [`aws`]: the shared AWS SDK configuration (`--endpoint-url`, `--region`).
//! - [`stack`]: `template.yaml` as a CloudFormation stack: local deploy to LocalStack, outputs,
//!   delete. Used by `sluice local` and by the integration tests.
//! - [`local`]: `sluice local deploy|destroy`.
//!
//! Adding a command: a variant in [`args::Command`], a module with its `run`, one arm in [`run`].

pub mod args;
pub mod aws;
pub mod local;
pub mod stack;

use args::{Cli, Command};

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = aws::sdk_config(
        cli.global.endpoint_url.as_deref(),
        cli.global.region.as_deref(),
    )
    .await;
    match &cli.command {
        Command::Local(command) => local::run(command, &cli.global, &config).await,
    }
}
