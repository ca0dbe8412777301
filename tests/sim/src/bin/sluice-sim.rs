//! Runs every scenario under Sluice and the two baselines for a simulated day, prints the tables, and with
//! `--write` regenerates `docs/bench/*.svg`, `docs/bench/sim.json` and the simulator's sections of
//! `BENCHMARKS.md`.
//!
//!   cargo run -p sluice-sim --release --bin sluice-sim -- --write
//!
//! The outage days (issue 10) run alone with `--only outage` (503s) or `--only outage,outage-timeout`;
//! with `--write` that rewrites only their section, plots and `docs/bench/outage.json`. So do the quota
//! models' days (issue 14): `--only rolling-provider,fixed-hour-provider` (section `rolling`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use chrono::{TimeZone as _, Utc};
use clap::Parser;
use serde::Serialize;
use sluice::config::{DEFAULT_DRAIN_MAX_MESSAGES, Limits};
use sluice::ports::QuotaModel;
use sluice_sim::backfill::{SteadyReference, backfill_section};
use sluice_sim::day::{DayConfig, DayResult, PolicyKind, production_config, simulate};
use sluice_sim::outage::{OutageFigures, OutageMeta, current_commit, outage_section};
use sluice_sim::report::{SimMeta, goals_section, sim_section};
use sluice_sim::summary::{
    BENCH_DIR, CostInputs, DayRow, LOCALSTACK_JSON, LocalstackFigures, SIM_JSON, SimSummary,
    read_json, repo_root, update_report, write_json,
};
use sluice_sim::traffic::{OutagePlan, Scenario, outage_scenarios, scenarios};
use sluice_sim::{cost, plot};

const OUTAGE_JSON: &str = "docs/bench/outage.json";
/// The rolling-provider day and its control (the same traffic against clock hours).
const ROLLING_DAYS: [&str; 2] = ["rolling-provider", "fixed-hour-provider"];

/// glibc's malloc spent about 30 % of a saturated day in malloc/free/consolidate with millions of queued
/// messages; mimalloc roughly halves that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    about = "Sluice's simulated day: the real drain engine and two baselines under four traffic scenarios and two outage days"
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
    /// Only these scenarios (comma-separated): steady, saturated, urgent, bursty, diurnal, shared-account,
    /// backfill, rolling-provider, fixed-hour-provider, outage, outage-timeout.
    #[arg(long, alias = "scenario", value_delimiter = ',')]
    only: Vec<String>,
    /// Outage days: hour of the day the provider goes down.
    #[arg(long, default_value_t = 9)]
    outage_start_hour: u32,
    /// Outage days: hours the provider stays down.
    #[arg(long, default_value_t = 6)]
    outage_hours: u32,
    /// Outage days: hours of traffic (the first 24 are the steady day's; more keep the load on while the
    /// backlog drains).
    #[arg(long, default_value_t = 36)]
    outage_traffic_hours: u32,
    /// Outage days: hours the drain keeps running after their traffic stops.
    #[arg(long, default_value_t = 12)]
    outage_tail_hours: u32,
    /// Write plots, docs/bench/sim.json and the BENCHMARKS.md sections.
    #[arg(long)]
    write: bool,
}

/// Sluice as configured by default, Sluice with the old default `DRAIN_MAX_MESSAGES=1000` (a receive
/// capped by message count, to show what receiving by distinct users gains — on the outage days, in the
/// recovery), and the two baselines; the bulk day only Sluice as deployed.
fn policies(scenario: &Scenario) -> Vec<PolicyKind> {
    if ROLLING_DAYS.contains(&scenario.name) {
        // The quota models' day: Sluice as deployed, in each model (the baselines know neither).
        return [QuotaModel::Fixed, QuotaModel::Rolling]
            .map(|quota_model| PolicyKind::Sluice {
                max_messages: DEFAULT_DRAIN_MAX_MESSAGES,
                quota_model,
            })
            .to_vec();
    }
    if scenario.changes_per_request > 1 || scenario.high_share > 0.0 || scenario.backfill.is_some()
    {
        // The bulk day is the cost estimate's second column, the urgent and backfill days the lanes' (the
        // baselines have no lanes): Sluice as deployed.
        return vec![PolicyKind::sluice(DEFAULT_DRAIN_MAX_MESSAGES)];
    }
    vec![
        PolicyKind::sluice(DEFAULT_DRAIN_MAX_MESSAGES),
        PolicyKind::sluice(1_000),
        PolicyKind::ThresholdSweep,
        PolicyKind::FixedSpacing,
    ]
}

/// One outage day in `docs/bench/outage.json`.
#[derive(Debug, Serialize)]
struct OutageRow<'a> {
    scenario: &'a str,
    policy: String,
    changes: u64,
    #[serde(flatten)]
    figures: &'a OutageFigures,
}

fn run_all(
    jobs: &[(Scenario, PolicyKind)],
    cfg: DayConfig,
    parallel: usize,
) -> anyhow::Result<Vec<DayResult>> {
    // Longest days first, so the workers finish together: the saturated ones (urgent is one), Sluice
    // before baselines.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| {
        let (s, p) = &jobs[i];
        let heavy = s.name == "saturated"
            || s.high_share > 0.0
            || s.outage.is_some()
            || s.backfill.is_some();
        let cost = match p {
            PolicyKind::Sluice { max_messages, .. } if *max_messages > 1_000 => 0, // the default
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
        changes_per_request: f64::from(r.changes_per_request),
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
    let plan = OutagePlan {
        start_hour: args.outage_start_hour,
        hours: args.outage_hours,
        traffic_hours: args.outage_traffic_hours,
        tail_hours: args.outage_tail_hours,
        provider_timeout: production_config(DEFAULT_DRAIN_MAX_MESSAGES)?.provider_timeout,
    };
    let known: Vec<Scenario> = scenarios()
        .into_iter()
        .chain(outage_scenarios(plan))
        .collect();
    if let Some(unknown) = args
        .only
        .iter()
        .find(|o| !known.iter().any(|s| s.name == o.as_str()))
    {
        let names: Vec<&str> = known.iter().map(|s| s.name).collect();
        anyhow::bail!("no scenario `{unknown}` (known: {})", names.join(", "));
    }
    let chosen: Vec<Scenario> = known
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s.name))
        .collect();
    let jobs: Vec<(Scenario, PolicyKind)> = chosen
        .iter()
        .flat_map(|s| policies(s).into_iter().map(|p| (s.clone(), p)))
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
    let all = run_all(&jobs, cfg, args.jobs)?;
    let (outage_days, results): (Vec<DayResult>, Vec<DayResult>) =
        all.into_iter().partition(|r| r.outage.is_some());
    // The quota models' days have a section of their own (not the traffic days' tables), so
    // `--only rolling-provider,fixed-hour-provider --write` rewrites only that section.
    let (rolling_days, results): (Vec<DayResult>, Vec<DayResult>) = results
        .into_iter()
        .partition(|r| ROLLING_DAYS.contains(&r.scenario));
    let meta = SimMeta {
        seed: args.seed,
        start,
        hours: args.hours,
        tail_hours: args.tail_hours,
        jobs: args.jobs,
        wall: wall.elapsed(),
    };

    let shared: Vec<&DayResult> = results
        .iter()
        .filter(|r| r.scenario == "shared-account")
        .collect();
    let capacity = Limits::default().capacity_per_window();
    let mut sections: Vec<(&str, String)> = Vec::new();
    // Written with the traffic days' sections (`--write` regenerates those as a whole).
    let write_days = args.write && !results.is_empty();
    if !shared.is_empty() {
        let md = sluice_sim::shared_account::shared_account_section(&shared);
        println!("### Shared account\n\n{md}");
        if write_days {
            sections.push(("shared-account", md));
        }
    }
    let urgent: Vec<&DayResult> = results
        .iter()
        .filter(|r| {
            r.high_freshness.is_some()
                || (r.scenario == "saturated" && r.policy.label() == "Sluice")
        })
        .collect();
    if urgent.iter().any(|r| r.high_freshness.is_some()) {
        let md = sluice_sim::urgent::urgent_section(&urgent, capacity);
        println!("### Urgent under backlog\n\n{md}");
        if write_days {
            sections.push(("urgent", md));
        }
    }
    let rolling: Vec<&DayResult> = ROLLING_DAYS
        .iter()
        .flat_map(|name| rolling_days.iter().filter(move |r| r.scenario == *name))
        .collect();
    if !rolling.is_empty() {
        let md = sluice_sim::rolling_provider::rolling_provider_section(&rolling);
        println!("### Rolling provider\n\n{md}");
        if args.write {
            sections.push(("rolling", md));
        }
    }
    if !results.is_empty() {
        days_report(&args, &meta, &results, capacity, &mut sections)?;
    }
    if let Some(md) = backfill_report(&results, capacity) {
        println!("### Backfill day\n\n{md}");
        if args.write {
            sections.push(("backfill", md));
        }
    }
    if !outage_days.is_empty() {
        let meta = OutageMeta {
            seed: args.seed,
            start,
            commit: current_commit(),
            wall_s: outage_days.iter().map(|d| d.wall.as_secs_f64()).sum(),
        };
        let days: Vec<&DayResult> = outage_days.iter().collect();
        let md = outage_section(&meta, &days);
        println!("### Outage day\n\n{md}");
        if args.write {
            let rows: Vec<OutageRow<'_>> = outage_days
                .iter()
                .filter_map(|d| {
                    Some(OutageRow {
                        scenario: d.scenario,
                        policy: d.policy.label(),
                        changes: d.changes,
                        figures: d.outage.as_ref()?,
                    })
                })
                .collect();
            write_json(OUTAGE_JSON, &rows)?;
            sections.push(("outage", md));
        }
    }
    if args.write {
        let dir = repo_root().join(BENCH_DIR);
        std::fs::create_dir_all(&dir)?;
        for s in &chosen {
            let days: Vec<&DayResult> = results
                .iter()
                .chain(&outage_days)
                .chain(&rolling_days)
                .filter(|r| r.scenario == s.name)
                .collect();
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
        update_report(&sections)?;
        eprintln!(
            "wrote {BENCH_DIR}/*.svg, the JSON figures and BENCHMARKS.md ({})",
            sections
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The backfill day's table, held against the steady day of this run (else of `docs/bench/sim.json`).
fn backfill_report(results: &[DayResult], capacity: u64) -> Option<String> {
    let day = results.iter().find(|r| r.backfill.is_some())?;
    let steady = results
        .iter()
        .find(|r| r.scenario == "steady" && r.policy.label() == "Sluice")
        .map(|r| DayRow::of(r, capacity))
        .or_else(|| {
            read_json::<SimSummary>(SIM_JSON)?
                .row("steady", "Sluice")
                .cloned()
        })
        .map(|r| SteadyReference {
            fresh_p99_s: r.fresh_p99_s,
            records_per_hour: r.capacity_used * capacity as f64,
        });
    let figures = day.backfill.as_ref()?;
    Some(backfill_section(day, figures, steady, capacity))
}

/// The four traffic days: their tables, goals and cost, printed; with `--write`, `docs/bench/sim.json`
/// and their sections queued for `BENCHMARKS.md`.
fn days_report(
    args: &Args,
    meta: &SimMeta,
    results: &[DayResult],
    capacity: u64,
    sections: &mut Vec<(&'static str, String)>,
) -> anyhow::Result<()> {
    let summary = SimSummary {
        seed: args.seed,
        rows: results.iter().map(|r| DayRow::of(r, capacity)).collect(),
        steady_cost: results
            .iter()
            .find(|r| r.scenario == "steady" && !r.policy.is_baseline())
            .map(cost_inputs)
            .unwrap_or_default(),
        steady_bulk_cost: results
            .iter()
            .find(|r| r.scenario == "steady-bulk" && !r.policy.is_baseline())
            .map(cost_inputs),
    };
    let localstack: Option<LocalstackFigures> = read_json(LOCALSTACK_JSON);
    let sim_md = sim_section(meta, results, &summary);
    let goals_md = goals_section(Some(&summary), localstack.as_ref());
    let cost_md = cost::cost_section(Some(&summary), localstack.as_ref());
    println!("{sim_md}\n### Goals\n\n{goals_md}\n### Cost\n\n{cost_md}");
    if args.write {
        write_json(SIM_JSON, &summary)?;
        sections.extend([("sim", sim_md), ("goals", goals_md), ("cost", cost_md)]);
    }
    Ok(())
}
