//! Benchmarks against LocalStack: drain wall time for 1,000 messages split by service, cold start and peak
//! RSS of the release `bootstrap` binaries against a local runtime API, and artifact sizes. Needs LocalStack
//! on 127.0.0.1:4566 (`infra/localstack/up`) and `cargo lambda build --release --output-format zip`
//! (`make build`). With `--write`, updates `docs/bench/localstack.json` and `BENCHMARKS.md`.
//!
//!   cargo run -p sluice-sim --release --bin sluice-bench -- --write

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Parser;
use serde_json::json;
use sluice_sim::bench::{
    BenchStack, FunctionUnderTest, RuntimeApi, Users, bootstrap_path, cold_start, emulator, sizes,
    time_drain, zip_path,
};
use sluice_sim::cost::cost_section;
use sluice_sim::report::{goals_section, localstack_section};
use sluice_sim::summary::{
    LOCALSTACK_JSON, LocalstackFigures, SIM_JSON, SimSummary, read_json, repo_root, update_report,
    write_json,
};

#[derive(Debug, Parser)]
#[command(about = "Sluice benchmarks against LocalStack and a local Lambda runtime API")]
struct Args {
    /// Timed drain runs per case (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    iterations: u32,
    /// Cold starts per function.
    #[arg(long, default_value_t = 5)]
    cold_runs: u32,
    /// Warm invocations after each cold start.
    #[arg(long, default_value_t = 10)]
    warm: u32,
    /// Write docs/bench/localstack.json and the BENCHMARKS.md sections.
    #[arg(long)]
    write: bool,
}

/// Limits for the bench: raised so back-to-back iterations are not paced (each run's plan for its
/// backlog is the same as in production: one batch for 1,000 messages, individual requests for 60).
const BATCH_LIMIT: u64 = 3_600;
const INDIVIDUAL_LIMIT: u64 = 360_000;

fn ingest_event() -> anyhow::Result<String> {
    let fixture =
        std::fs::read_to_string(repo_root().join("tests/fixtures/apigw-post-changes.json"))?;
    let mut e: serde_json::Value = serde_json::from_str(&fixture)?;
    let body = json!({
        "email": "bench@example.com",
        "name": "Bench",
        "time_zone": "Europe/Amsterdam",
        "custom_fields": {"last_order": "o1"},
    })
    .to_string();
    e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
    e["isBase64Encoded"] = json!(true);
    e["headers"]["Content-Type"] = json!("application/json");
    e["multiValueHeaders"]["Content-Type"] = json!(["application/json"]);
    Ok(e.to_string())
}

async fn run(args: &Args) -> anyhow::Result<LocalstackFigures> {
    for f in ["drain", "ingest"] {
        for path in [bootstrap_path(f), zip_path(f)] {
            if !path.exists() {
                bail!(
                    "{} is missing: build the release functions first \
                     (`cargo lambda build --release --x86-64 --output-format zip -p ingest -p drain`)",
                    path.display()
                );
            }
        }
    }
    let stack = BenchStack::deploy().await?;
    let result = measure(args, &stack).await;
    stack.destroy().await;
    result
}

async fn measure(args: &Args, stack: &BenchStack) -> anyhow::Result<LocalstackFigures> {
    let emulator = emulator(INDIVIDUAL_LIMIT).await?;
    let batch = BATCH_LIMIT.to_string();
    let batch_only = [
        ("BATCH_LIMIT_PER_HOUR", batch.as_str()),
        ("INDIVIDUAL_LIMIT_PER_HOUR", "0"),
    ];
    let individual = INDIVIDUAL_LIMIT.to_string();
    let both = [
        ("BATCH_LIMIT_PER_HOUR", batch.as_str()),
        ("INDIVIDUAL_LIMIT_PER_HOUR", individual.as_str()),
    ];
    let large = [
        ("BATCH_LIMIT_PER_HOUR", batch.as_str()),
        ("INDIVIDUAL_LIMIT_PER_HOUR", "0"),
        ("DRAIN_MAX_MESSAGES", "10000"),
    ];
    let mut drain = Vec::new();
    for (case, users, messages, overrides, iterations) in [
        (
            "1,000 messages, 1,000 users → 1 batch",
            Users::Distinct,
            1_000,
            &batch_only[..],
            args.iterations,
        ),
        (
            "1,000 messages, Zipf(1.1) users → 1 batch",
            Users::Zipf,
            1_000,
            &batch_only[..],
            args.iterations,
        ),
        (
            "60 messages, 60 users → 60 individual requests",
            Users::Distinct,
            60,
            &both[..],
            args.iterations,
        ),
        (
            "10,000 queued, Zipf(1.1) users, DRAIN_MAX_MESSAGES=10000 → receive tops up to 1 full batch",
            Users::Zipf,
            10_000,
            &large[..],
            args.iterations.min(3),
        ),
    ] {
        eprintln!("drain: {case}");
        drain.push(
            time_drain(
                stack, &emulator, case, users, messages, overrides, iterations,
            )
            .await?,
        );
    }

    let api = RuntimeApi::start().await?;
    let scheduled =
        std::fs::read_to_string(repo_root().join("tests/fixtures/scheduled-event.json"))?;
    let functions = [
        FunctionUnderTest {
            name: "drain".into(),
            bootstrap: bootstrap_path("drain"),
            memory_mb: 512,
            env: stack.env(&emulator, &both),
            event: scheduled,
            what: "scheduled event, empty queue (the first receive round long-polls 1 s)".into(),
        },
        FunctionUnderTest {
            name: "ingest".into(),
            bootstrap: bootstrap_path("ingest"),
            memory_mb: 256,
            env: BTreeMap::from([
                ("QUEUE_URL".to_string(), stack.outputs.queue_url.clone()),
                ("TABLE_NAME".to_string(), stack.outputs.table_name.clone()),
            ]),
            event: ingest_event()?,
            what: "API Gateway REST `POST /v1/changes`, one change".into(),
        },
    ];
    let mut cold_starts = Vec::new();
    for f in &functions {
        eprintln!("cold start: {}", f.name);
        cold_starts.push(cold_start(&api, f, args.cold_runs, args.warm).await?);
    }
    stack.purge().await.ok();
    Ok(LocalstackFigures {
        drain,
        cold_starts,
        sizes: sizes(&["drain", "ingest"]),
        target: "x86_64-unknown-linux-gnu, built by `cargo lambda build --release` (the template deploys arm64)"
            .into(),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the runtime")?;
    let figures = runtime.block_on(run(&args))?;
    let section = localstack_section(&figures);
    println!("{section}");
    if args.write {
        write_json(LOCALSTACK_JSON, &figures)?;
        let sim: Option<SimSummary> = read_json(SIM_JSON);
        update_report(&[
            ("localstack", section),
            ("goals", goals_section(sim.as_ref(), Some(&figures))),
            ("cost", cost_section(sim.as_ref(), Some(&figures))),
        ])?;
        eprintln!("wrote {LOCALSTACK_JSON} and BENCHMARKS.md");
    }
    Ok(())
}
