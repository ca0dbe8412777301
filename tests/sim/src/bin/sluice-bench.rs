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
    BenchStack, DrainCase, FunctionUnderTest, RuntimeApi, Users, bootstrap_path, cold_start,
    emulator, sizes, time_drain, zip_path,
};
use sluice_sim::cost::{INGEST_BULK, cost_section};
use sluice_sim::report::{goals_section, int, localstack_section};
use sluice_sim::summary::{
    LOCALSTACK_JSON, LocalstackFigures, SIM_JSON, SimSummary, read_json, repo_root, update_report,
    write_json,
};
use sluice_tests::emulator::EmulatorHandle;

#[derive(Debug, Parser)]
#[command(about = "Sluice benchmarks against LocalStack and a local Lambda runtime API")]
struct Args {
    /// Timed drain runs per case (after one warm-up run; the 10,000-message case runs at most 3).
    #[arg(long, default_value_t = 5)]
    iterations: u32,
    /// Cold starts per function.
    #[arg(long, default_value_t = 5)]
    cold_runs: u32,
    /// Warm invocations after each cold start.
    #[arg(long, default_value_t = 10)]
    warm: u32,
    /// Measure only this part (a quick check); the full report needs every part, so not with --write.
    #[arg(long, value_enum, conflicts_with = "write")]
    only: Option<Part>,
    /// Run only these drain cases (repeatable; a quick check, not with --write).
    #[arg(long = "case", value_enum, conflicts_with = "write")]
    cases: Vec<CaseId>,
    /// Write docs/bench/localstack.json and the BENCHMARKS.md sections.
    #[arg(long)]
    write: bool,
}

/// The parts of the LocalStack bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// The drain cases and their SQS-only floors.
    Drain,
    /// Cold start, RSS and sizes of the release functions.
    Lambda,
}

/// The drain cases, by [`sluice_sim::summary::DrainTiming::id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CaseId {
    Distinct,
    Zipf,
    Individual,
    TopUp,
}

impl CaseId {
    fn name(self) -> &'static str {
        match self {
            CaseId::Distinct => "distinct",
            CaseId::Zipf => "zipf",
            CaseId::Individual => "individual",
            CaseId::TopUp => "top-up",
        }
    }
}

impl Args {
    fn runs(&self, part: Part) -> bool {
        self.only.is_none_or(|p| p == part)
    }

    fn runs_case(&self, id: &str) -> bool {
        self.cases.is_empty() || self.cases.iter().any(|c| c.name() == id)
    }
}

/// Limits for the bench: raised so back-to-back iterations are not paced (each run's plan for its
/// backlog is the same as in production: one batch for 1,000 messages, individual requests for 60). The
/// emulator gets the same limits: its `X-RateLimit-Remaining` must agree with the ledger, or the drain
/// adopts the emulator's smaller count and stops sending (as it would against a real provider).
const BATCH_LIMIT: u64 = 3_600;
const INDIVIDUAL_LIMIT: u64 = 360_000;

/// An HTTP API (payload 2.0, the template's default door) `POST /v1/changes` of `changes` changes to
/// distinct users (one change: a bare object; more: `{"changes": [...]}`).
fn ingest_event(changes: usize) -> anyhow::Result<String> {
    let fixture =
        std::fs::read_to_string(repo_root().join("tests/fixtures/apigw-http-post-changes.json"))?;
    let mut e: serde_json::Value = serde_json::from_str(&fixture)?;
    let change = |i: usize| {
        json!({
            "email": format!("bench{i}@example.com"),
            "name": "Bench",
            "time_zone": "Europe/Amsterdam",
            "custom_fields": {"last_order": "o1"},
        })
    };
    let body = if changes == 1 {
        change(0)
    } else {
        json!({ "changes": (0..changes).map(change).collect::<Vec<_>>() })
    }
    .to_string();
    e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
    e["isBase64Encoded"] = json!(true);
    e["rawPath"] = json!("/v1/changes");
    e["requestContext"]["http"]["method"] = json!("POST");
    e["requestContext"]["http"]["path"] = json!("/v1/changes");
    e["headers"]["content-type"] = json!("application/json");
    Ok(e.to_string())
}

async fn run(args: &Args) -> anyhow::Result<LocalstackFigures> {
    if args.runs(Part::Lambda) {
        for f in ["drain", "ingest"] {
            for path in [bootstrap_path(f), zip_path(f)] {
                if !path.exists() {
                    bail!(
                        "{} is missing: build the release functions first \
                         (`cargo lambda build --release --x86-64 --output-format zip -p ingest -p drain`), \
                         or measure the drain only (`--only drain`)",
                        path.display()
                    );
                }
            }
        }
    }
    let stack = BenchStack::deploy().await?;
    let result = measure(args, &stack).await;
    stack.destroy().await;
    result
}

/// The drain cases, each with only the settings it must change from `Config`'s defaults: limits raised so
/// back-to-back iterations are not paced, and a receive cap large enough for the top-up case.
fn drain_cases(
    args: &Args,
    stack: &BenchStack,
    emulator: &EmulatorHandle,
) -> anyhow::Result<Vec<DrainCase>> {
    let owned = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
    };
    let batch = BATCH_LIMIT.to_string();
    let individual = INDIVIDUAL_LIMIT.to_string();
    let batch_only = owned(&[
        ("BATCH_LIMIT_PER_HOUR", &batch),
        ("INDIVIDUAL_LIMIT_PER_HOUR", "0"),
    ]);
    let both = owned(&[
        ("BATCH_LIMIT_PER_HOUR", &batch),
        ("INDIVIDUAL_LIMIT_PER_HOUR", &individual),
    ]);

    // The top-up case needs a receive cap of at least its 10,000 messages: set only if the default is lower.
    const TOP_UP: usize = 10_000;
    let mut top_up = batch_only.clone();
    let as_config = |o: &[(&'static str, String)]| {
        let pairs: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
        stack.config(emulator, &pairs)
    };
    if (as_config(&top_up)?.drain_max_messages as usize) < TOP_UP {
        top_up.push(("DRAIN_MAX_MESSAGES", TOP_UP.to_string()));
    }
    let config = as_config(&top_up)?;
    let cap = if top_up.iter().any(|(k, _)| *k == "DRAIN_MAX_MESSAGES") {
        format!("DRAIN_MAX_MESSAGES={}", config.drain_max_messages)
    } else {
        format!("DRAIN_MAX_MESSAGES={} (default)", config.drain_max_messages)
    };
    let top_up_label = format!(
        "{} queued, Zipf(1.1) users, {cap} → receive tops up to full batches of {}",
        int(TOP_UP as u64),
        int(u64::from(config.limits.batch_size)),
    );

    let case = |id: CaseId, label: String, users, messages, overrides, iterations| DrainCase {
        id: id.name(),
        label,
        users,
        messages,
        overrides,
        iterations,
    };
    let all = [
        case(
            CaseId::Distinct,
            "1,000 messages, 1,000 users → 1 batch".into(),
            Users::Distinct,
            1_000,
            batch_only.clone(),
            args.iterations,
        ),
        case(
            CaseId::Zipf,
            "1,000 messages, Zipf(1.1) users → 1 batch".into(),
            Users::Zipf,
            1_000,
            batch_only,
            args.iterations,
        ),
        case(
            CaseId::Individual,
            "60 messages, 60 users → 60 individual requests".into(),
            Users::Distinct,
            60,
            both,
            args.iterations,
        ),
        case(
            CaseId::TopUp,
            top_up_label,
            Users::Zipf,
            TOP_UP,
            top_up,
            args.iterations.min(3),
        ),
    ];
    Ok(all.into_iter().filter(|c| args.runs_case(c.id)).collect())
}

async fn measure(args: &Args, stack: &BenchStack) -> anyhow::Result<LocalstackFigures> {
    let emulator = emulator(BATCH_LIMIT, INDIVIDUAL_LIMIT).await?;
    let mut drain = Vec::new();
    if args.runs(Part::Drain) {
        for case in drain_cases(args, stack, &emulator)? {
            eprintln!("drain: {}", case.label);
            let timing = time_drain(stack, &emulator, &case).await?;
            eprintln!(
                "  wall {:.0} ms, excl. provider {:.0} ms, SQS-only floor {:.0} ms → {:.1}× the floor",
                timing.wall_ms,
                timing.wall_excluding_provider_ms,
                timing.floor_ms,
                timing.ratio_to_floor().unwrap_or(f64::NAN)
            );
            drain.push(timing);
        }
    }
    if !args.runs(Part::Lambda) {
        stack.purge().await.ok();
        return Ok(LocalstackFigures {
            drain,
            ..LocalstackFigures::default()
        });
    }

    let (batch, individual) = (BATCH_LIMIT.to_string(), INDIVIDUAL_LIMIT.to_string());
    let both = [
        ("BATCH_LIMIT_PER_HOUR", batch.as_str()),
        ("INDIVIDUAL_LIMIT_PER_HOUR", individual.as_str()),
    ];
    let api = RuntimeApi::start().await?;
    let scheduled =
        std::fs::read_to_string(repo_root().join("tests/fixtures/scheduled-event.json"))?;
    let ingest_env = BTreeMap::from([
        ("QUEUE_URL".to_string(), stack.outputs().queue_url.clone()),
        ("TABLE_NAME".to_string(), stack.outputs().table_name.clone()),
    ]);
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
            env: ingest_env.clone(),
            event: ingest_event(1)?,
            what: "API Gateway HTTP API `POST /v1/changes`, one change".into(),
        },
        FunctionUnderTest {
            name: INGEST_BULK.into(),
            bootstrap: bootstrap_path("ingest"),
            memory_mb: 256,
            env: ingest_env,
            event: ingest_event(100)?,
            what: "API Gateway HTTP API `POST /v1/changes`, a bulk request of 100 changes".into(),
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
