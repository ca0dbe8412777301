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
    /// Quota used/left in the current window, backlog, oldest message, DLQ depth, lease and circuit.
    /// Read-only: nothing is received and no quota is consumed.
    Status(StatusArgs),
    /// Inspect and redrive the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Run the drain from this machine (the Lambda's engine, same quota ledger and lease).
    Drain(DrainArgs),
    /// The local stack on LocalStack (queues, DLQ, table; the functions run outside it).
    #[command(subcommand)]
    Local(LocalCommand),
    /// Load a file of changes (JSON Lines, or CSV with a header row) through the ingest API on the bulk
    /// priority; resumes where it stopped when run again.
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The changes: JSON Lines (.jsonl, .ndjson), or CSV with a header row (.csv) of email, name,
    /// time_zone, occurred_at, priority and custom_fields.<key> columns.
    pub file: PathBuf,
    /// The file's format (default: from its extension).
    #[arg(long, value_enum)]
    pub format: Option<crate::backfill::source::Format>,
    /// The ingest API's base URL (`/v1/changes` hangs off it); default: the local server
    /// (LOCAL_URL), else the stack's ApiUrl output.
    #[arg(long, env = "INGEST_URL")]
    pub url: Option<String>,
    /// The ingest API key (x-api-key); default: the stack's ApiKeySecretArn secret.
    #[arg(long, env = "INGEST_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Changes per request.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub chunk_size: u32,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (stable field names, see README) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead-lettered message: id, reason, email (redacted), age, receive count.
    List(DlqListArgs),
    /// One message in full: reason, detail, attributes and body.
    Show(DlqShowArgs),
    /// Move messages back to the changes queue.
    Redrive(DlqRedriveArgs),
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Most messages to list.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Print JSON instead of a table (emails stay redacted).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqShowArgs {
    /// The DLQ message id (first column of `sluice dlq list`).
    pub id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqRedriveArgs {
    /// Most messages moved per second.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_second: Option<u32>,
    /// Only messages with this reason.
    #[arg(long, value_name = "REASON")]
    pub filter: Option<RedriveFilter>,
    /// Move at most this many messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Receive, send and delete from this machine even when SQS could move the messages itself
    /// (StartMessageMoveTask), e.g. when the credentials lack the move-task permissions.
    #[arg(long)]
    pub client_side: bool,
}

/// The reasons a message can be on the DLQ (`sluice.reason`, or none when SQS moved it there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedriveFilter {
    /// The body was not a change message Sluice can read.
    Malformed,
    /// The provider refused the record (422).
    Rejected,
    /// SQS moved it after maxReceiveCount receives (transient failures that did not clear).
    RetriesExhausted,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Run exactly once and exit (the only mode: the schedule belongs to EventBridge).
    #[arg(long, required = true)]
    pub once: bool,
    /// Stop starting provider calls this long from now (the Lambda's timeout is 60 s).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(5..=900))]
    pub deadline_seconds: u32,
    /// Print the run's report as JSON (the Lambda's summary) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Create or update the stack from template.yaml (with DeployFunctions=false) and write its
    /// outputs to an env file.
    Deploy(LocalDeployArgs),
    /// Delete the stack.
    Destroy,
    /// Run both functions locally and keep them up: ingest's router as a plain HTTP server, the drain on
    /// a timer and on the Lambda Invoke API route (what `make up` starts).
    Serve(LocalServeArgs),
}

#[derive(Debug, Args)]
pub struct LocalServeArgs {
    /// Where to listen (the URLs of `cargo lambda watch`: /lambda-url/ingest/..., /2015-03-31/functions/drain/invocations).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// Run the drain every this many seconds, as the EventBridge schedule does; 0 = only when invoked.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "DRAIN_INTERVAL_SECONDS",
        default_value_t = 60
    )]
    pub drain_every: u32,
    /// Each drain run stops starting provider calls this long after it starts (the Lambda's timeout).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(5..=900))]
    pub deadline_seconds: u32,
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

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied()))
    }

    #[test]
    fn status_takes_json_and_the_global_options_after_the_command() {
        let cli = parse(&[
            "status",
            "--json",
            "--endpoint-url",
            "http://127.0.0.1:4566",
            "--stack-name",
            "s1",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Status(StatusArgs { json: true })
        ));
        assert_eq!(
            cli.global.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert_eq!(cli.global.stack_name, "s1");
    }

    #[test]
    fn dlq_redrive_parses_its_options() {
        let cli = parse(&[
            "dlq",
            "redrive",
            "--max-per-second",
            "5",
            "--filter",
            "retries-exhausted",
            "--limit",
            "20",
        ])
        .unwrap();
        let Command::Dlq(DlqCommand::Redrive(args)) = cli.command else {
            panic!("expected dlq redrive, got {:?}", cli.command);
        };
        assert_eq!(args.max_per_second, Some(5));
        assert_eq!(args.filter, Some(RedriveFilter::RetriesExhausted));
        assert_eq!(args.limit, Some(20));
        assert!(!args.client_side);

        let Command::Dlq(DlqCommand::Redrive(args)) = parse(&["dlq", "redrive"]).unwrap().command
        else {
            panic!("expected dlq redrive");
        };
        assert_eq!(
            (args.max_per_second, args.filter, args.limit),
            (None, None, None)
        );
    }

    #[test]
    fn dlq_redrive_refuses_zero_rates_and_unknown_reasons() {
        assert!(parse(&["dlq", "redrive", "--max-per-second", "0"]).is_err());
        assert!(parse(&["dlq", "redrive", "--limit", "0"]).is_err());
        assert!(parse(&["dlq", "redrive", "--filter", "timeout"]).is_err());
    }

    #[test]
    fn dlq_list_and_show_parse() {
        let Command::Dlq(DlqCommand::List(list)) = parse(&["dlq", "list"]).unwrap().command else {
            panic!("expected dlq list");
        };
        assert_eq!((list.limit, list.json), (100, false));
        let Command::Dlq(DlqCommand::Show(show)) = parse(&["dlq", "show", "abc-123", "--json"])
            .unwrap()
            .command
        else {
            panic!("expected dlq show");
        };
        assert_eq!(show.id, "abc-123");
        assert!(show.json);
        assert!(parse(&["dlq", "show"]).is_err(), "show needs an id");
    }

    #[test]
    fn drain_requires_once() {
        assert!(parse(&["drain"]).is_err());
        let Command::Drain(args) = parse(&["drain", "--once", "--json"]).unwrap().command else {
            panic!("expected drain");
        };
        assert!(args.once && args.json);
        assert_eq!(args.deadline_seconds, 60);
        assert!(parse(&["drain", "--once", "--deadline-seconds", "1"]).is_err());
    }

    #[test]
    fn local_serve_defaults_to_the_local_urls_and_a_minute() {
        let Command::Local(LocalCommand::Serve(args)) = parse(&["local", "serve"]).unwrap().command
        else {
            panic!("expected local serve");
        };
        assert_eq!(args.listen.to_string(), "127.0.0.1:9000");
        assert_eq!((args.drain_every, args.deadline_seconds), (60, 60));
        let Command::Local(LocalCommand::Serve(args)) = parse(&[
            "local",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--drain-every",
            "0",
        ])
        .unwrap()
        .command
        else {
            panic!("expected local serve");
        };
        assert_eq!((args.listen.port(), args.drain_every), (0, 0));
    }

    #[test]
    fn backfill_takes_a_file_and_bounds_the_chunk_size() {
        let Command::Backfill(args) = parse(&["backfill", "users.csv", "--url", "http://x"])
            .unwrap()
            .command
        else {
            panic!("expected backfill");
        };
        assert_eq!(args.file, PathBuf::from("users.csv"));
        assert_eq!(
            (args.chunk_size, args.format, args.url.as_deref()),
            (1_000, None, Some("http://x"))
        );
        assert!(parse(&["backfill"]).is_err(), "backfill needs a file");
        assert!(parse(&["backfill", "f.csv", "--chunk-size", "1001"]).is_err());
        assert!(parse(&["backfill", "f.csv", "--chunk-size", "0"]).is_err());
        assert!(parse(&["backfill", "f.txt", "--format", "jsonl"]).is_ok());
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
