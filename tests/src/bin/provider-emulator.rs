//! `provider-emulator`: the Drip-compatible provider for the demo and out-of-process tests.
//! Flags: `provider-emulator --help`; logic: `sluice_tests::emulator`.

use std::io::IsTerminal as _;

use clap::Parser;
use sluice_tests::emulator::Emulator;
use sluice_tests::emulator::cli::{Args, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Emulator::serve(args.listen, args.config()?, shutdown_signal()).await
}
