//! Runs every scenario under Sluice and the two baselines for a simulated day, prints the tables, and with
//! `--write` regenerates `docs/bench/*.svg`, `docs/bench/sim.json` and the simulator's sections of
//! `BENCHMARKS.md`.
//!
//!   cargo run -p sluice-sim --release --bin sluice-sim -- --write

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use chrono::{TimeZone as _, Utc};
use clap::Parser;
use sluice::config::Limits;
use sluice_sim::day::{DayConfig, DayResult, PolicyKind, simulate};
use sluice_sim::report::{SimMeta, goals_section, sim_section};
use sluice_sim::summary::{
    BENCH_DIR, CostInputs, DayRow, LOCALSTACK_JSON, LocalstackFigures, SIM_JSON, SimSummary,
    read_json, repo_root, update_report, write_json,
};
use sluice_sim::traffic::{Scenario, scenarios};
use sluice_sim::{cost, plot};

/// glibc's malloc spent about 30 % of a saturated day in malloc/free/consolidate with millions of queued
/// messages; mimalloc roughly halves that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    about = "Sluice's simulated day: the real drain engine and two baselines under four traffic scenarios"
)]
struct Args {
    /// RNG seed of the traffic (same seed, same changes).
    #[arg(long, default_value_t = 20_260_302)]
    seed: u64,
    /// Hours of traffic.
    #[arg(long, default_value_t = 24)]
    hours: u32,
    /// Hours the drain keeps running after traffic stops.
    #[arg(long, default_value_t = 1)]
    tail_hours: u32,
    /// Days simulated in parallel.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Only these scenarios (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Write plots, docs/bench/sim.json and the BENCHMARKS.md sections.
    #[arg(long)]
    write: bool,
}

/// Sluice as configured by default, Sluice with the largest `DRAIN_MAX_MESSAGES` the configuration
/// accepts (to show what the default leaves on the table), and the two baselines.
fn policies() -> [PolicyKind; 4] {
    [
        PolicyKind::Sluice {
            max_messages: 1_000,
        },
        PolicyKind::Sluice {
            max_messages: 10_000,
        },
        PolicyKind::ThresholdSweep,
        PolicyKind::FixedSpacing,
    ]
}

fn run_all(
    jobs: &[(Scenario, PolicyKind)],
    cfg: DayConfig,
    parallel: usize,
) -> anyhow::Result<Vec<DayResult>> {
    // Longest days first, so the workers finish together: the saturated ones, Sluice before baselines.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| {
        let (s, p) = &jobs[i];
        let heavy = s.name == "saturated";
        let cost = match p {
            PolicyKind::Sluice { max_messages } if *max_messages > 1_000 => 0,
            PolicyKind::Sluice { .. } => 1,
            _ => 2,
        };
        (!heavy, cost)
    });
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<DayResult>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                loop {
                    let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        return;
                    };
                    let Some((scenario, policy)) = jobs.get(i) else {
                        return;
                    };
                    let result = match &runtime {
                        Ok(rt) => rt.block_on(simulate(scenario, *policy, cfg)),
                        Err(e) => Err(anyhow::anyhow!("building a runtime: {e}")),
                    };
                    if let Ok(r) = &result {
                        eprintln!(
                            "  {:<10} {:<42} {:>6.1} s  ({} changes, {} records)",
                            r.scenario,
                            r.policy.label(),
                            r.wall.as_secs_f64(),
                            r.changes,
                            r.records
                        );
                    }
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a simulation thread panicked"))?
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("a simulation did not run"))))
        .collect()
}

fn cost_inputs(r: &DayResult) -> CostInputs {
    let h = f64::from(r.hours);
    let per = |n: u64| n as f64 / h;
    CostInputs {
        changes_per_hour: per(r.changes),
        drain_invocations_per_hour: 60.0,
        messages_received_per_hour: r.engine.as_ref().map_or(0.0, |e| per(e.received)),
        sqs_send_per_hour: per(r.queue_calls.send),
        sqs_receive_per_hour: per(r.queue_calls.receive),
        sqs_delete_per_hour: per(r.queue_calls.delete),
        sqs_change_visibility_per_hour: per(r.queue_calls.change_visibility),
        sqs_get_attributes_per_hour: per(r.queue_calls.get_attributes),
        sqs_dlq_send_per_hour: per(r.queue_calls.dlq_send),
        ddb_requests_per_hour: per(r.dynamo.requests),
        ddb_read_units_per_hour: per(r.dynamo.read_units),
        ddb_write_units_per_hour: per(r.dynamo.write_units),
        provider_batch_per_hour: per(r.provider_calls.batch),
        provider_individual_per_hour: per(r.provider_calls.individual),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let start = Utc
        .with_ymd_and_hms(2026, 3, 2, 0, 0, 0)
        .single()
        .context("start time")?;
    let cfg = DayConfig {
        seed: args.seed,
        hours: args.hours,
        tail_hours: args.tail_hours,
        start,
    };
    let chosen: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s.name))
        .collect();
    let jobs: Vec<(Scenario, PolicyKind)> = chosen
        .iter()
        .flat_map(|s| policies().into_iter().map(|p| (s.clone(), p)))
        .collect();
    eprintln!(
        "sluice-sim: seed {}, {} h + {} h tail, {} simulated days, {} in parallel",
        args.seed,
        args.hours,
        args.tail_hours,
        jobs.len(),
        args.jobs
    );
    let wall = Instant::now();
    let results = run_all(&jobs, cfg, args.jobs)?;
    let meta = SimMeta {
        seed: args.seed,
        start,
        hours: args.hours,
        tail_hours: args.tail_hours,
        jobs: args.jobs,
        wall: wall.elapsed(),
    };

    let capacity = Limits::default().capacity_per_window();
    let summary = SimSummary {
        seed: args.seed,
        rows: results.iter().map(|r| DayRow::of(r, capacity)).collect(),
        steady_cost: results
            .iter()
            .find(|r| r.scenario == "steady" && !r.policy.is_baseline())
            .map(cost_inputs)
            .unwrap_or_default(),
    };
    let localstack: Option<LocalstackFigures> = read_json(LOCALSTACK_JSON);
    let sim_md = sim_section(&meta, &results, &summary);
    let goals_md = goals_section(Some(&summary), localstack.as_ref());
    let cost_md = cost::cost_section(Some(&summary), localstack.as_ref());
    println!("{sim_md}\n### Goals\n\n{goals_md}\n### Cost\n\n{cost_md}");

    if args.write {
        let dir = repo_root().join(BENCH_DIR);
        std::fs::create_dir_all(&dir)?;
        for s in &chosen {
            let days: Vec<&DayResult> = results.iter().filter(|r| r.scenario == s.name).collect();
            plot::backlog(&dir.join(format!("backlog-{}.svg", s.name)), s.name, &days)?;
            plot::delivered(
                &dir.join(format!("delivered-{}.svg", s.name)),
                s.name,
                capacity,
                &days,
            )?;
            plot::freshness(
                &dir.join(format!("freshness-{}.svg", s.name)),
                s.name,
                &days,
            )?;
        }
        write_json(SIM_JSON, &summary)?;
        update_report(&[("sim", sim_md), ("goals", goals_md), ("cost", cost_md)])?;
        eprintln!("wrote {BENCH_DIR}/*.svg, {SIM_JSON} and BENCHMARKS.md");
    }
    Ok(())
}
