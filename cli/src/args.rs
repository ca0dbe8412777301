//! The command line: global options shared by every command, and one variant per command.
//! A new command is a new [`Command`] variant plus a module that runs it (see `lib.rs`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// sluice: operate a Sluice deployment (local or in AWS).
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the stack lives.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// AWS endpoint, e.g. http://127.0.0.1:4566 for LocalStack (default: the real AWS endpoints).
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true)]
    pub endpoint_url: Option<String>,
    /// AWS region (default: from the environment/profile; us-east-1 with a custom endpoint).
    #[arg(long, env = "AWS_REGION", global = true)]
    pub region: Option<String>,
    /// CloudFormation stack name.
    #[arg(long, env = "SLUICE_STACK", default_value = "sluice", global = true)]
    pub stack_name: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The local stack on LocalStack (queues, DLQ, table; the functions run outside it).
    #[command(subcommand)]
    Local(LocalCommand),
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Create or update the stack from template.yaml (with DeployFunctions=false) and write its
    /// outputs to an env file.
    Deploy(LocalDeployArgs),
    /// Delete the stack.
    Destroy,
}

#[derive(Debug, Args)]
pub struct LocalDeployArgs {
    /// The SAM template to deploy.
    #[arg(long, default_value = "template.yaml")]
    pub template: PathBuf,
    /// A template parameter, e.g. --param QuotaWindowSeconds=60 (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Where to write QUEUE_URL, DLQ_URL, TABLE_NAME, ... for the functions and tools.
    #[arg(long, default_value = ".sluice/local.env")]
    pub env_file: PathBuf,
}

/// `KEY=VALUE` with a non-empty key; the value may be empty or contain `=`.
fn parse_param(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got '{raw}'")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn local_deploy_parses_params_and_defaults() {
        let cli = Cli::try_parse_from([
            "sluice",
            "--stack-name",
            "dev",
            "local",
            "deploy",
            "--param",
            "QuotaWindowSeconds=60",
            "--param",
            "AlarmEmail=",
        ])
        .unwrap();
        assert_eq!(cli.global.stack_name, "dev");
        let Command::Local(LocalCommand::Deploy(args)) = cli.command else {
            panic!("expected local deploy, got {:?}", cli.command);
        };
        assert_eq!(args.template, PathBuf::from("template.yaml"));
        assert_eq!(args.env_file, PathBuf::from(".sluice/local.env"));
        assert_eq!(
            args.params,
            vec![
                ("QuotaWindowSeconds".to_owned(), "60".to_owned()),
                ("AlarmEmail".to_owned(), String::new())
            ]
        );
    }

    #[test]
    fn a_param_without_equals_is_refused() {
        assert!(parse_param("QuotaWindowSeconds").is_err());
        assert!(parse_param("=60").is_err());
        assert_eq!(
            parse_param("A=b=c").unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
    }
}
