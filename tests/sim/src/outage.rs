//! The outage day (issue 10): what a provider outage costs each policy, and its `BENCHMARKS.md` section.
//!
//! Measured per day, from the simulator's own records (nothing here asks the drain what it did):
//! - **dead-lettered**, by reason: the drain's own DLQ sends carry a reason attribute; SQS's redrive after
//!   `maxReceiveCount` carries none (the in-memory queue redrives on the receive that would exceed it, as
//!   SQS does);
//! - **provider calls during the outage**, counted by [`FaultyProvider`], and the **quota** they spent:
//!   Sluice's ledger in the outage's windows, a baseline's own count (one unit per call);
//! - **recovery → drained**: from the end of the outage to the first run after which the queue holds no
//!   more than it did after any run in the [`NORMAL_HOURS`] before the outage (the policy's normal level;
//!   for Sluice that is an empty queue), and the share of capacity used meanwhile;
//! - **freshness** of the changes accepted before, during and after the outage, and how many of each were
//!   never delivered (dead-lettered and not superseded by a later delivery).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice::adapters::memory::{ManualClock, MemoryQueue, MemoryStore};
use sluice::config::Limits;
use sluice::ports::{QuotaKind, QuotaLedger as _, Window};

use crate::day::{DayResult, MAX_RECEIVE_COUNT, PolicyKind, VISIBILITY_TIMEOUT};
use crate::fault::{FaultyProvider, OutageWindow};
use crate::report::{int, pct, secs};
use crate::tracker::{Percentiles, Tracker};

/// Hours before the outage that define a policy's normal backlog.
pub const NORMAL_HOURS: i64 = 3;

/// SQS's redrive to the DLQ carries no reason attribute.
pub const REDRIVE: &str = "redrive (maxReceiveCount)";

/// The queue seen at the first run after the outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub at: DateTime<Utc>,
    pub backlog: u64,
    pub dead_lettered: usize,
}

/// What the day loop records for the outage figures.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The start of the simulated day.
    pub start: DateTime<Utc>,
    /// (run time, messages on the queue after the run, records the run delivered), every invocation.
    pub runs: Vec<(DateTime<Utc>, u64, u64)>,
    pub recovery: Option<Recovery>,
}

impl Timeline {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            start,
            runs: Vec::new(),
            recovery: None,
        }
    }

    pub fn recovered(&mut self, at: DateTime<Utc>, backlog: u64, dead_lettered: usize) {
        self.recovery = Some(Recovery {
            at,
            backlog,
            dead_lettered,
        });
    }

    pub fn after_run(&mut self, at: DateTime<Utc>, depth: u64, delivered: u64) {
        self.runs.push((at, depth, delivered));
    }
}

/// Freshness and undelivered changes of the changes accepted in one phase of the day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PhaseFreshness {
    pub delivered: u64,
    pub p50_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
    /// Traced changes of this phase whose value (or a newer one) never reached the provider.
    pub never_delivered: u64,
}

/// One policy's outage day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutageFigures {
    pub fault: String,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The outage in hours since the start of the day (for plots).
    pub from_h: f64,
    pub until_h: f64,
    pub dead_lettered: usize,
    pub dead_lettered_by_reason: BTreeMap<String, usize>,
    /// Dead-lettered by the first run after the outage.
    pub dead_lettered_during: usize,
    pub calls_batch: u64,
    pub calls_individual: u64,
    /// The circuit's half-open probes (a read that touches no subscriber).
    pub calls_probe: u64,
    pub quota_batch: u64,
    pub quota_individual: u64,
    /// Quota the outage's hours allow: (batch, individual).
    pub quota_allowance: (u64, u64),
    pub backlog_at_recovery: u64,
    pub peak_backlog: u64,
    pub normal_backlog: u64,
    /// Seconds from the end of the outage to the first run back at the normal backlog; None: not by the end.
    pub drained_after_s: Option<f64>,
    /// Records delivered in the windows from the end of the outage to the one the backlog drained in (or
    /// the last).
    pub records_after_recovery: u64,
    /// Those records ÷ those windows' capacity.
    pub capacity_after_recovery: f64,
    pub windows_after_recovery: u32,
    pub before: PhaseFreshness,
    pub during: PhaseFreshness,
    pub after: PhaseFreshness,
}

impl OutageFigures {
    #[allow(clippy::too_many_arguments)]
    pub async fn measure(
        outage: OutageWindow,
        policy: PolicyKind,
        limits: &Limits,
        timeline: &Timeline,
        provider: &FaultyProvider,
        queue: &MemoryQueue<ManualClock>,
        store: &MemoryStore,
        tracker: &mut Tracker,
    ) -> anyhow::Result<Self> {
        let counts = provider.counts();
        let (quota_batch, quota_individual) = if policy.is_baseline() {
            (counts.failed_batch, counts.failed_individual)
        } else {
            let (mut b, mut i) = (0u64, 0u64);
            let mut w = Window::containing(outage.from, limits.window_seconds);
            while w.start < outage.until.timestamp() {
                b += u64::from(store.used(QuotaKind::Batch, w).await?);
                i += u64::from(store.used(QuotaKind::Individual, w).await?);
                w = w.next();
            }
            (b, i)
        };
        let outage_hours = (outage.until - outage.from).num_seconds() as f64 / 3_600.0;
        let allowance = |per_window: u32| {
            (f64::from(per_window) * outage_hours * 3_600.0 / f64::from(limits.window_seconds))
                as u64
        };

        let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
        let letters = queue.dead_letters();
        for l in &letters {
            *by_reason
                .entry(l.reason.clone().unwrap_or_else(|| REDRIVE.into()))
                .or_default() += 1;
        }

        let normal_from = outage.from - chrono::Duration::hours(NORMAL_HOURS);
        let normal = timeline
            .runs
            .iter()
            .filter(|(t, ..)| *t >= normal_from && *t < outage.from)
            .map(|&(_, depth, _)| depth)
            .max()
            .unwrap_or(0);
        let after: Vec<&(DateTime<Utc>, u64, u64)> = timeline
            .runs
            .iter()
            .filter(|(t, ..)| *t >= outage.until)
            .collect();
        let drained = after.iter().position(|&&(_, depth, _)| depth <= normal);
        // Quota is per window, so capacity is counted in whole windows: from the end of the outage to the
        // end of the window the backlog drained in (or of the last run).
        let last = match drained {
            Some(i) => after[i].0,
            None => after.last().map_or(outage.until, |r| r.0),
        };
        let first_window = Window::containing(outage.until, limits.window_seconds);
        let span_end = Window::containing(last, limits.window_seconds).end_time();
        let records_after: u64 = after
            .iter()
            .filter(|(t, ..)| *t < span_end)
            .map(|&&(_, _, n)| n)
            .sum();
        let windows =
            (span_end.timestamp() - first_window.start) / i64::from(limits.window_seconds);
        let capacity_span = (limits.capacity_per_window() as f64) * windows.max(1) as f64;

        let unsatisfied = tracker.unsatisfied_by_phase();
        let mut phases = std::mem::take(&mut tracker.phase_freshness_ms);
        let mut phase = |i: usize| {
            let p = phases
                .get_mut(i)
                .map(|ms| Percentiles::of(ms))
                .unwrap_or_default();
            PhaseFreshness {
                delivered: p.count,
                p50_s: p.p50_s,
                p99_s: p.p99_s,
                max_s: p.max_s,
                never_delivered: unsatisfied.get(i).copied().unwrap_or(0),
            }
        };
        let (before, during, after_phase) = (phase(0), phase(1), phase(2));

        Ok(Self {
            fault: outage.fault.label(),
            from: outage.from,
            until: outage.until,
            from_h: (outage.from - timeline.start).num_seconds() as f64 / 3_600.0,
            until_h: (outage.until - timeline.start).num_seconds() as f64 / 3_600.0,
            dead_lettered: letters.len(),
            dead_lettered_by_reason: by_reason,
            dead_lettered_during: timeline.recovery.map_or(letters.len(), |r| r.dead_lettered),
            calls_batch: counts.failed_batch,
            calls_individual: counts.failed_individual,
            calls_probe: counts.failed_probe,
            quota_batch,
            quota_individual,
            quota_allowance: (
                allowance(limits.batch_per_window),
                allowance(limits.individual_per_window),
            ),
            backlog_at_recovery: timeline.recovery.map_or(0, |r| r.backlog),
            peak_backlog: timeline
                .runs
                .iter()
                .map(|r| r.1)
                .chain(timeline.recovery.map(|r| r.backlog))
                .max()
                .unwrap_or(0),
            normal_backlog: normal,
            drained_after_s: drained.map(|i| (after[i].0 - outage.until).num_seconds() as f64),
            records_after_recovery: records_after,
            capacity_after_recovery: records_after as f64 / capacity_span,
            windows_after_recovery: windows.max(1) as u32,
            before,
            during,
            after: after_phase,
        })
    }
}

/// How the outage days were run (for the section's first line).
#[derive(Debug, Clone)]
pub struct OutageMeta {
    pub seed: u64,
    pub start: DateTime<Utc>,
    /// The commit the figures were measured on (`git describe`), if known.
    pub commit: Option<String>,
    pub wall_s: f64,
}

fn reasons_cell(f: &OutageFigures) -> String {
    if f.dead_lettered_by_reason.is_empty() {
        return "–".into();
    }
    f.dead_lettered_by_reason
        .iter()
        .map(|(k, v)| format!("{k}: {}", int(*v as u64)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn phase_cell(p: &PhaseFreshness) -> String {
    if p.delivered == 0 {
        return "–".into();
    }
    format!("{} / {}", secs(p.p50_s), secs(p.p99_s))
}

fn drained_cell(f: &OutageFigures) -> String {
    match f.drained_after_s {
        Some(s) => secs(s),
        None => "not by the end".into(),
    }
}

/// `git describe` of the working tree the simulator was built from.
pub fn current_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=7"])
        .current_dir(crate::summary::repo_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The outage days' section of `BENCHMARKS.md`: the goal, dead letters and calls, recovery and freshness.
pub fn outage_section(meta: &OutageMeta, days: &[&DayResult]) -> String {
    let mut s = String::new();
    let Some(first) = days.iter().find_map(|d| d.outage.as_ref()) else {
        return "Not run yet (`cargo run -p sluice-sim --release --bin sluice-sim -- --only outage --write`).\n"
            .into();
    };
    let traffic_h = days.first().map_or(0, |d| d.hours);
    let total_h = days
        .first()
        .map_or(0, |d| d.hourly.len() as u32)
        .max(traffic_h);
    let _ = writeln!(
        s,
        "Seed **{}** and the steady day's traffic model (40,000 changes/h over 100,000 users drawn Zipf(1.1); the \
         first 24 h are the steady day's changes), {} h of traffic from {} then {} h with none, so that every \
         policy can drain its backlog. The provider is down from {} to {} ({} h): every call fails as a transient \
         error and nothing reaches the provider. Queue as in `template.yaml`: `VisibilityTimeout` {} s, \
         `maxReceiveCount` {}. Measured on commit `{}`; {} simulated days in {:.0} s wall time. Generated by \
         `make bench`, or alone: `cargo run -p sluice-sim --release --bin sluice-sim -- --only outage,outage-timeout \
         --write`.\n",
        meta.seed,
        traffic_h,
        meta.start.format("%Y-%m-%d %H:%M UTC"),
        total_h - traffic_h,
        first.from.format("%H:%M"),
        first.until.format("%H:%M"),
        (first.until - first.from).num_hours(),
        VISIBILITY_TIMEOUT.as_secs(),
        MAX_RECEIVE_COUNT,
        meta.commit.as_deref().unwrap_or("unknown"),
        days.len(),
        meta.wall_s,
    );

    s.push_str("| goal (issue 10) | measured | verdict |\n|---|---|---|\n");
    for d in days.iter().filter(|d| !d.policy.is_baseline()) {
        let Some(f) = &d.outage else { continue };
        let n = f.dead_lettered;
        let _ = writeln!(
            s,
            "| 0 messages dead-lettered by a {} h outage ({}) | {} under {} | {} |",
            (f.until - f.from).num_hours(),
            f.fault,
            int(n as u64),
            d.policy.label(),
            if n == 0 {
                "**met**".to_string()
            } else {
                format!("**missed** — {} messages in the DLQ", int(n as u64))
            }
        );
    }

    let _ = writeln!(s, "\n#### Dead letters and provider calls\n");
    s.push_str(
        "\"During\" = dead-lettered by the first run after the outage. Quota spent during the outage: Sluice's ledger \
         in the outage's windows; a baseline's own count (one unit per call); in parentheses, the share of what the \
         outage's hours allow.\n\n",
    );
    s.push_str(
        "| fault | policy | changes | dead-lettered | by reason | of them during the outage | provider calls during the outage: batch + individual + probes | quota spent during the outage: batch | individual |\n\
         |---|---|---:|---:|---|---:|---|---:|---:|\n",
    );
    for d in days {
        let Some(f) = &d.outage else { continue };
        let share = |used: u64, allowed: u64| {
            format!(
                "{} ({})",
                int(used),
                pct(used as f64 / allowed.max(1) as f64)
            )
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} + {} + {} | {} | {} |",
            f.fault,
            d.policy.label(),
            int(d.changes),
            int(f.dead_lettered as u64),
            reasons_cell(f),
            int(f.dead_lettered_during as u64),
            int(f.calls_batch),
            int(f.calls_individual),
            int(f.calls_probe),
            share(f.quota_batch, f.quota_allowance.0),
            share(f.quota_individual, f.quota_allowance.1),
        );
    }

    let _ = writeln!(s, "\n#### Recovery and freshness\n");
    let _ = writeln!(
        s,
        "Drained = the first run after which the queue holds no more messages than after any run in the {NORMAL_HOURS} h \
         before the outage (the policy's normal level, in parentheses). Capacity used after recovery = records \
         delivered in the windows from the end of the outage through the one it drained in ÷ (53,600 × those \
         windows, in parentheses). Freshness p50 / p99 of the \
         changes accepted in each phase; \"never delivered\" = traced changes whose value (or a newer one) never \
         reached the provider — dead-lettered, or still queued at the end.\n"
    );
    s.push_str(
        "| fault | policy | backlog at recovery | peak backlog | recovery → drained (normal level) | capacity used after recovery | freshness before | during the outage | after it | never delivered: before / during / after |\n\
         |---|---|---:|---:|---|---:|---|---|---|---|\n",
    );
    for d in days {
        let Some(f) = &d.outage else { continue };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} ({}) | {} ({}) | {} | {} | {} | {} / {} / {} |",
            f.fault,
            d.policy.label(),
            int(f.backlog_at_recovery),
            int(f.peak_backlog),
            drained_cell(f),
            int(f.normal_backlog),
            pct(f.capacity_after_recovery),
            f.windows_after_recovery,
            phase_cell(&f.before),
            phase_cell(&f.during),
            phase_cell(&f.after),
            int(f.before.never_delivered),
            int(f.during.never_delivered),
            int(f.after.never_delivered),
        );
    }

    let _ = writeln!(s, "\n#### Plots\n");
    let mut names: Vec<&str> = days.iter().map(|d| d.scenario).collect();
    names.dedup();
    for name in &names {
        let _ = writeln!(
            s,
            "- {name}: [queue backlog](docs/bench/backlog-{name}.svg) · \
             [records per window](docs/bench/delivered-{name}.svg) · \
             [freshness distribution](docs/bench/freshness-{name}.svg)"
        );
    }
    if let Some(name) = names.first() {
        let _ = writeln!(
            s,
            "\n![{name}: backlog](docs/bench/backlog-{name}.svg)\n\n\
             ![{name}: records per window](docs/bench/delivered-{name}.svg)"
        );
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone as _;

    use crate::day::{DayConfig, PolicyKind, simulate};
    use crate::fault::Fault;
    use crate::traffic::{Outage, Rate, Scenario};
    use sluice::ports::QuotaModel;

    /// A small outage day end to end (the real drain, the baselines): the figures add up and every
    /// policy drains again after the provider comes back.
    #[tokio::test]
    async fn a_small_outage_day_adds_up() {
        let scenario = Scenario {
            name: "outage-small",
            summary: "test",
            rate: Rate::Constant { per_hour: 600.0 },
            spike: None,
            changes_per_request: 1,
            high_share: 0.0,
            outage: Some(Outage {
                // Across an hour's end, so baseline (a)'s hourly sweep runs into it.
                start: Duration::from_secs(5_400),
                length: Duration::from_secs(3_600),
                fault: Fault::Unavailable,
                traffic_hours: 3,
                tail_hours: 2,
            }),
            other_client_percent: 0,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        };
        let cfg = DayConfig {
            seed: 5,
            hours: 24,
            tail_hours: 1,
            start: chrono::Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap(),
        };
        for policy in [
            PolicyKind::sluice(sluice::config::DEFAULT_DRAIN_MAX_MESSAGES),
            PolicyKind::ThresholdSweep,
            PolicyKind::FixedSpacing,
        ] {
            let day = simulate(&scenario, policy, cfg).await.unwrap();
            let f = day.outage.as_ref().unwrap();
            let label = policy.label();
            assert_eq!(day.hours, 3, "{label}");
            assert_eq!(
                f.dead_lettered,
                f.dead_lettered_by_reason.values().sum::<usize>(),
                "{label}"
            );
            assert!(f.dead_lettered_during <= f.dead_lettered, "{label}");
            assert!(
                f.calls_batch + f.calls_individual > 0,
                "{label}: no call tried"
            );
            assert!(f.drained_after_s.is_some(), "{label}: never drained");
            assert!(f.during.delivered > 0 && f.after.delivered > 0, "{label}");
            assert_eq!(day.over_limit, 0, "{label}");
            assert_eq!((f.from_h, f.until_h), (1.5, 2.5), "{label}");
        }
    }
}
