//! The figures both entry points exchange through `docs/bench/*.json`: the simulator's per-day summary
//! and the LocalStack/Lambda benchmark figures. The goals and cost sections of `BENCHMARKS.md` need both,
//! so whichever tool runs last regenerates them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::day::DayResult;

/// Where plots, JSON figures and the report live, relative to the repository root.
pub const BENCH_DIR: &str = "docs/bench";
pub const REPORT: &str = "BENCHMARKS.md";
pub const SIM_JSON: &str = "docs/bench/sim.json";
pub const LOCALSTACK_JSON: &str = "docs/bench/localstack.json";

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One scenario under one policy, in the figures the report uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DayRow {
    pub scenario: String,
    pub policy: String,
    pub baseline: bool,
    pub hours: u32,
    pub changes: u64,
    pub traced_changes: u64,
    pub records: u64,
    /// Records delivered during the traffic hours / (capacity × hours).
    pub capacity_used: f64,
    /// The lowest hour's share of capacity (traffic hours).
    pub worst_hour: f64,
    /// The worst hour but the first (the queue starts empty).
    #[serde(default)]
    pub worst_hour_after_first: Option<f64>,
    pub over_limit: u32,
    pub noop_records: u64,
    pub users_twice: u32,
    pub stale_overwrites: u64,
    pub dead_lettered: usize,
    pub fresh_p50_s: f64,
    pub fresh_p90_s: f64,
    pub fresh_p99_s: f64,
    pub fresh_max_s: f64,
    pub fresh_count: u64,
    pub unsatisfied: u64,
    pub oldest_unsatisfied_age_s: Option<f64>,
    pub backlog_end: u64,
}

impl DayRow {
    pub fn of(r: &DayResult, capacity_per_hour: u64) -> Self {
        let hours = r.hours as usize;
        let delivered: u64 = (0..hours).map(|h| r.delivered_in(h)).sum();
        let cap = capacity_per_hour as f64;
        let worst = (0..hours)
            .map(|h| r.delivered_in(h) as f64 / cap)
            .fold(f64::INFINITY, f64::min);
        let worst_after_first = (1..hours)
            .map(|h| r.delivered_in(h) as f64 / cap)
            .fold(f64::INFINITY, f64::min);
        Self {
            scenario: r.scenario.to_string(),
            policy: r.policy.label(),
            baseline: r.policy.is_baseline(),
            hours: r.hours,
            changes: r.changes,
            traced_changes: r.traced_changes,
            records: r.records,
            capacity_used: delivered as f64 / (cap * hours.max(1) as f64),
            worst_hour: if worst.is_finite() { worst } else { 0.0 },
            worst_hour_after_first: worst_after_first.is_finite().then_some(worst_after_first),
            over_limit: r.over_limit,
            noop_records: r.noop_records,
            users_twice: r.users_twice,
            stale_overwrites: r.stale_overwrites,
            dead_lettered: r.dead_lettered,
            fresh_p50_s: r.freshness.p50_s,
            fresh_p90_s: r.freshness.p90_s,
            fresh_p99_s: r.freshness.p99_s,
            fresh_max_s: r.freshness.max_s,
            fresh_count: r.freshness.count,
            unsatisfied: r.unsatisfied,
            oldest_unsatisfied_age_s: r.oldest_unsatisfied_age_s,
            backlog_end: r
                .hourly
                .get(hours.saturating_sub(1))
                .map_or(0, |h| h.backlog_end),
        }
    }
}

/// What the cost estimate needs from the steady day under Sluice, per hour of traffic.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CostInputs {
    pub changes_per_hour: f64,
    /// Changes per ingest `POST` on that day (1, or a bulk client's request size).
    #[serde(default = "one")]
    pub changes_per_request: f64,
    pub drain_invocations_per_hour: f64,
    pub messages_received_per_hour: f64,
    pub sqs_send_per_hour: f64,
    pub sqs_receive_per_hour: f64,
    pub sqs_delete_per_hour: f64,
    pub sqs_change_visibility_per_hour: f64,
    pub sqs_get_attributes_per_hour: f64,
    pub sqs_dlq_send_per_hour: f64,
    pub ddb_requests_per_hour: f64,
    pub ddb_read_units_per_hour: f64,
    pub ddb_write_units_per_hour: f64,
    pub provider_batch_per_hour: f64,
    pub provider_individual_per_hour: f64,
}

fn one() -> f64 {
    1.0
}

/// The simulator's output file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SimSummary {
    pub seed: u64,
    pub rows: Vec<DayRow>,
    pub steady_cost: CostInputs,
    /// The same traffic posted in bulk requests (`steady-bulk`).
    #[serde(default)]
    pub steady_bulk_cost: Option<CostInputs>,
}

impl SimSummary {
    pub fn row(&self, scenario: &str, policy: &str) -> Option<&DayRow> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.policy == policy)
    }
}

/// Timing of the drain against LocalStack for one case.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DrainTiming {
    /// A short stable name for the case (`distinct`, `zipf`, `individual`, `top-up`), which the goals
    /// look rows up by; empty in figures from before it existed.
    #[serde(default)]
    pub id: String,
    pub case: String,
    pub iterations: u32,
    pub received: u32,
    pub records: u32,
    pub batches: u32,
    pub individual: u32,
    /// Medians over the iterations, in ms.
    pub wall_ms: f64,
    pub sqs_ms: f64,
    pub dynamo_ms: f64,
    pub provider_ms: f64,
    /// Wall time outside any SQS, DynamoDB or provider call: Sluice's own work (plus SDK overhead).
    pub own_ms: f64,
    pub wall_excluding_provider_ms: f64,
    /// The same run through `aws_drain` without the metering wrappers.
    pub unmetered_wall_ms: f64,
    /// Process CPU time (user + system) during the run; includes the in-process emulator.
    pub process_cpu_ms: f64,
    /// SQS and DynamoDB calls in one run.
    pub sqs_calls: u64,
    pub dynamo_calls: u64,
    /// The floor for this case (median ms): the drain's own SQS adapter receiving and deleting as many
    /// freshly enqueued messages of the same kind, and nothing else. 0 in figures from before it existed.
    #[serde(default)]
    pub floor_ms: f64,
    /// Timed (metered) runs that ended in an error instead of a report, and the first such error; their
    /// wall time (until the error) still counts in the medians.
    #[serde(default)]
    pub failed_runs: u32,
    #[serde(default)]
    pub failure: String,
}

impl DrainTiming {
    /// Wall time excluding provider time ÷ the SQS-only floor of the same run (`None` without a floor).
    pub fn ratio_to_floor(&self) -> Option<f64> {
        (self.floor_ms > 0.0).then(|| self.wall_excluding_provider_ms / self.floor_ms)
    }
}

/// Cold start and memory of one function's release `bootstrap`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ColdStart {
    pub function: String,
    pub runs: u32,
    /// Process start → first `GET …/invocation/next` (medians, ms).
    pub init_ms: f64,
    /// Process start → first response posted.
    pub cold_ms: f64,
    /// The first invocation alone.
    pub first_invoke_ms: f64,
    /// Warm invocations (median, p90), ms.
    pub warm_p50_ms: f64,
    pub warm_p90_ms: f64,
    /// Peak RSS (VmHWM) after the cold invocation and after the warm ones, MiB.
    pub rss_cold_mib: f64,
    pub rss_peak_mib: f64,
    /// Bytes written to stdout + stderr per warm invocation (CloudWatch Logs ingestion).
    pub log_bytes_per_invoke: f64,
    pub what: String,
}

/// Sizes of one function's artifacts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Size {
    pub function: String,
    pub bootstrap_bytes: u64,
    pub zip_bytes: u64,
}

/// The LocalStack/Lambda benchmark's output file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LocalstackFigures {
    pub drain: Vec<DrainTiming>,
    pub cold_starts: Vec<ColdStart>,
    pub sizes: Vec<Size>,
    pub target: String,
}

pub fn read_json<T: for<'de> Deserialize<'de>>(relative: &str) -> Option<T> {
    let text = std::fs::read_to_string(repo_root().join(relative)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write_json<T: Serialize>(relative: &str, value: &T) -> anyhow::Result<()> {
    let path = repo_root().join(relative);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Replaces the text between `<!-- {name}:begin -->` and `<!-- {name}:end -->`.
pub fn replace_section(doc: &str, name: &str, body: &str) -> anyhow::Result<String> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let a = doc
        .find(&begin)
        .with_context(|| format!("{REPORT} has no `{begin}` marker"))?
        + begin.len();
    let b = doc[a..]
        .find(&end)
        .with_context(|| format!("{REPORT} has no `{end}` marker"))?
        + a;
    Ok(format!("{}\n{}\n{}", &doc[..a], body.trim_end(), &doc[b..]))
}

/// Rewrites sections of `BENCHMARKS.md` in place.
pub fn update_report(sections: &[(&str, String)]) -> anyhow::Result<()> {
    let path = repo_root().join(REPORT);
    let mut doc =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for (name, body) in sections {
        doc = replace_section(&doc, name, body)?;
    }
    std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_between_markers_only() {
        let doc = "a\n<!-- x:begin -->\nold\n<!-- x:end -->\nb\n";
        let out = replace_section(doc, "x", "new\n").unwrap();
        assert_eq!(out, "a\n<!-- x:begin -->\nnew\n<!-- x:end -->\nb\n");
        assert!(replace_section(doc, "y", "z").is_err());
    }
}
