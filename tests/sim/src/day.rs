//! One simulated day: a scenario's traffic, one policy, a virtual clock.
//!
//! The clock only moves between invocations. Before each invocation every change that occurs before it is
//! enqueued with the clock set to its own time (so `occurred_at`, `accepted_at` and the queue's sent time
//! agree); then the clock is set to the invocation time and the policy runs — Sluice's real
//! [`Drain::run`] with a deadline 50 s later, or a baseline loop. Provider calls of a run therefore happen
//! at the run's start time: freshness leaves out the run's own duration (about a second against
//! LocalStack, see the benchmarks) — except while a provider hangs (the outage day's timeouts), when each
//! call moves the clock by the provider timeout. Deliveries are read after every run.
//!
//! The provider sits behind [`FaultyProvider`], which passes every call through unless the scenario has an
//! outage; an outage day also measures [`OutageFigures`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sluice::adapters::memory::{
    ManualClock, MemoryProvider, MemoryQueue, MemoryStore, ProviderCalls, QueueCalls,
};
use sluice::config::{Config, DEFAULT_DRAIN_MAX_MESSAGES, FromVars, Limits};
use sluice::domain::ChangeMessage;
use sluice::drain::{Drain, DrainReport, DrainSettings, Idle};
use sluice::ports::{DrainAdapters, Lanes, QuotaModel};

use crate::backfill::BackfillFigures;
use crate::baseline::{FixedSpacing, ThresholdSweep};
use crate::fault::FaultyProvider;
use crate::metered::{DynamoUnits, Meter, Metered, Op, OpStats};
use crate::outage::{OutageFigures, Timeline};
use crate::rolling_provider::RequestTimes;
use crate::tracker::{HourDeliveries, Percentiles, Tracker};
use crate::traffic::{Scenario, Traffic};

/// The template's queue settings: `VisibilityTimeout: 120`, `maxReceiveCount` 10 (the `MaxReceiveCount`
/// parameter's default).
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(120);
pub const MAX_RECEIVE_COUNT: u32 = 10;
/// Lambda's timeout for the drain is 60 s; the simulator gives each run a 50 s deadline.
pub const RUN_DEADLINE: Duration = Duration::from_secs(50);

type SimQueue = MemoryQueue<ManualClock>;

/// A lane's queue with the template's settings, keeping no history of the bodies it handed out.
fn sim_queue(clock: &ManualClock) -> SimQueue {
    MemoryQueue::new(clock.clone(), VISIBILITY_TIMEOUT, MAX_RECEIVE_COUNT).without_receive_history()
}
type SimProvider = FaultyProvider;

/// The drain's ports in the simulator: the in-memory adapters, each metered.
pub type SimPorts = DrainAdapters<
    Metered<SimQueue>,
    Metered<MemoryStore>,
    Metered<MemoryStore>,
    Metered<SimProvider>,
    ManualClock,
    Metered<MemoryStore>,
    Metered<MemoryStore>,
    Metered<MemoryStore>,
>;

/// Which policy drains the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Sluice's drain engine, configured as in production except `DRAIN_MAX_MESSAGES` and `QUOTA_MODEL`
    /// (labelled plain "Sluice" at their defaults).
    Sluice {
        max_messages: u32,
        quota_model: QuotaModel,
    },
    /// Baseline (a), re-implemented.
    ThresholdSweep,
    /// Baseline (b), re-implemented.
    FixedSpacing,
}

impl PolicyKind {
    /// Sluice as deployed by default but for `DRAIN_MAX_MESSAGES`.
    pub fn sluice(max_messages: u32) -> Self {
        PolicyKind::Sluice {
            max_messages,
            quota_model: QuotaModel::Fixed,
        }
    }

    pub fn label(&self) -> String {
        match *self {
            PolicyKind::Sluice {
                max_messages,
                quota_model,
            } => {
                let mut label = String::from("Sluice");
                if max_messages != DEFAULT_DRAIN_MAX_MESSAGES {
                    label.push_str(&format!(", DRAIN_MAX_MESSAGES={max_messages}"));
                }
                if quota_model != QuotaModel::Fixed {
                    label.push_str(&format!(", QUOTA_MODEL={}", quota_model.as_str()));
                }
                label
            }
            PolicyKind::ThresholdSweep => "baseline (a) threshold + hourly sweep".into(),
            PolicyKind::FixedSpacing => "baseline (b) batch every 72 s".into(),
        }
    }

    pub fn is_baseline(&self) -> bool {
        !matches!(self, PolicyKind::Sluice { .. })
    }

    fn period(&self, limits: &Limits) -> Duration {
        match self {
            PolicyKind::FixedSpacing => FixedSpacing::period(limits),
            _ => Duration::from_secs(60),
        }
    }
}

/// The drain's settings exactly as the Lambda derives them from its environment (production defaults
/// but for these two).
pub fn production_settings(
    max_messages: u32,
    quota_model: QuotaModel,
) -> anyhow::Result<DrainSettings> {
    Ok(DrainSettings::from_config(&config_from_env(
        max_messages,
        quota_model,
    )?))
}

/// The drain's configuration as the Lambda loads it from its environment (production defaults).
pub fn production_config(max_messages: u32) -> anyhow::Result<Config> {
    config_from_env(max_messages, QuotaModel::Fixed)
}

fn config_from_env(max_messages: u32, quota_model: QuotaModel) -> anyhow::Result<Config> {
    let max = max_messages.to_string();
    let env = [
        ("QUEUE_URL", "memory://changes"),
        ("DLQ_URL", "memory://dlq"),
        ("TABLE_NAME", "memory"),
        ("PROVIDER_BASE_URL", "http://provider.invalid"),
        ("PROVIDER_ACCOUNT_ID", "1"),
        ("PROVIDER_API_KEY", "k"),
        ("DRAIN_MAX_MESSAGES", max.as_str()),
        ("QUOTA_MODEL", quota_model.as_str()),
    ];
    let config = Config::from_lookup(|k| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| (*v).to_string())
    })
    .context("building the simulator's configuration")?;
    Ok(config)
}

/// Sums of the drain's own reports over a day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineTotals {
    pub runs: u64,
    pub idle: BTreeMap<&'static str, u64>,
    pub planned_receive: u64,
    pub received: u64,
    pub coalesced: u64,
    pub skipped_unchanged: u64,
    pub skipped_stale: u64,
    pub absorbed: u64,
    pub deleted: u64,
    pub deferred: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub rate_limited: u64,
    pub provider_errors: u64,
    /// Units the ledger adopted from the provider's count (another client's requests), both kinds.
    pub adopted: u64,
    /// Most messages one run received.
    pub max_received: u64,
    /// Runs that sent at least one batch.
    pub runs_with_batch: u64,
}

impl EngineTotals {
    fn add(&mut self, r: &DrainReport) {
        self.runs += 1;
        if let Some(idle) = r.idle {
            let name = match idle {
                Idle::LeaseHeld => "lease held",
                Idle::CircuitOpen => "circuit open",
                Idle::NoQuota => "no quota",
                Idle::NoTimeToSend => "deadline",
            };
            *self.idle.entry(name).or_default() += 1;
        }
        let n = u64::from;
        self.planned_receive += n(r.planned_receive);
        self.received += n(r.received);
        self.coalesced += n(r.coalesced);
        self.skipped_unchanged += n(r.skipped_unchanged);
        self.skipped_stale += n(r.skipped_stale);
        self.absorbed += n(r.absorbed);
        self.deleted += n(r.deleted);
        self.deferred += n(r.deferred);
        self.retried += n(r.retried);
        self.dead_lettered += n(r.dead_lettered);
        self.rate_limited += n(r.rate_limited);
        self.provider_errors += n(r.provider_errors);
        self.adopted += n(r.adopted.batch) + n(r.adopted.individual);
        self.max_received = self.max_received.max(n(r.received));
        self.runs_with_batch += u64::from(r.requests.batch > 0);
    }
}

enum Runner {
    Sluice(Box<Drain<SimPorts>>, EngineTotals),
    Threshold(ThresholdSweep),
    Fixed(FixedSpacing),
}

impl Runner {
    async fn invoke(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        match self {
            Runner::Sluice(drain, totals) => {
                let deadline = now + chrono::Duration::from_std(RUN_DEADLINE)?;
                let report = drain.run(deadline).await?;
                totals.add(&report);
            }
            Runner::Threshold(b) => b.invoke(now).await?,
            Runner::Fixed(b) => b.invoke(now).await?,
        }
        Ok(())
    }
}

/// How a day is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayConfig {
    pub seed: u64,
    /// Hours of traffic.
    pub hours: u32,
    /// Hours the policy keeps running after traffic stops (to let the last changes out).
    pub tail_hours: u32,
    pub start: DateTime<Utc>,
}

/// One hour of the day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourRow {
    pub generated: u64,
    pub delivered: HourDeliveries,
    /// Messages on the queue at the end of the hour.
    pub backlog_end: u64,
}

/// Everything measured in one simulated day.
#[derive(Debug, Clone)]
pub struct DayResult {
    pub scenario: &'static str,
    pub policy: PolicyKind,
    /// Changes per ingest `POST` ([`Scenario::changes_per_request`]).
    pub changes_per_request: u32,
    pub hours: u32,
    pub changes: u64,
    pub traced_changes: u64,
    pub records: u64,
    pub fields_sent: u64,
    pub noop_records: u64,
    pub noop_fields: u64,
    pub stale_overwrites: u64,
    pub foreign: u64,
    pub delivered_as_is: u64,
    pub superseded: u64,
    pub freshness: Percentiles,
    /// The `high` changes' freshness, on a day that has some ([`Scenario::high_share`]).
    pub high_freshness: Option<Percentiles>,
    /// (seconds, fraction of satisfied traced changes at most that fresh), for plots.
    pub freshness_cdf: Vec<(f64, f64)>,
    pub unsatisfied: u64,
    pub oldest_unsatisfied_age_s: Option<f64>,
    pub hourly: Vec<HourRow>,
    /// (hours since start, messages on the queue) after each invocation.
    pub backlog_series: Vec<(f64, u64)>,
    /// SQS calls over every lane's queue.
    pub queue_calls: QueueCalls,
    pub provider_calls: ProviderCalls,
    pub over_limit: u32,
    /// Of `over_limit`, the requests after the provider's first answer of their kind in their window.
    pub over_limit_after_reply: u32,
    /// Requests the account's other client made, and those the provider refused it (window full).
    pub other_client: (u64, u64),
    /// The most requests the provider accepted inside any hour-long interval (batch, individual).
    pub busiest_hour: (u32, u32),
    pub users_twice: u32,
    pub dead_lettered: usize,
    pub dynamo: DynamoUnits,
    pub ops: BTreeMap<Op, OpStats>,
    pub engine: Option<EngineTotals>,
    pub invocations: u64,
    pub wall: Duration,
    /// The outage day's figures (scenarios with an outage only).
    pub outage: Option<OutageFigures>,
    /// The backfill day's figures (scenarios with a backfill only).
    pub backfill: Option<BackfillFigures>,
}

impl DayResult {
    /// Records delivered in traffic hour `h`.
    pub fn delivered_in(&self, h: usize) -> u64 {
        self.hourly.get(h).map_or(0, |r| r.delivered.records())
    }
}

/// Runs one scenario under one policy for a day (plus the tail).
pub async fn simulate(
    scenario: &Scenario,
    policy: PolicyKind,
    cfg: DayConfig,
) -> anyhow::Result<DayResult> {
    let wall = Instant::now();
    let limits = Limits::default();
    // An outage day runs longer than the others so its backlog can drain, a backfill day until the
    // backfill is delivered.
    let (hours, tail_hours) = match (scenario.outage, scenario.backfill) {
        (Some(o), _) => (o.traffic_hours, o.tail_hours),
        (None, Some(b)) => (b.traffic_hours, b.tail_hours),
        (None, None) => (cfg.hours, cfg.tail_hours),
    };
    let outage = scenario.outage.map(|o| o.window(cfg.start));
    let clock = ManualClock::new(cfg.start);
    let queue = sim_queue(&clock);
    // A day with `high` changes gives Sluice its high lane, a backfill day its bulk lane (the baselines
    // read one queue: theirs is `queue`).
    let lanes = match policy {
        PolicyKind::Sluice { .. } => {
            let lane = |own: bool| own.then(|| sim_queue(&clock));
            Lanes::with_optional(
                lane(scenario.high_share > 0.0),
                queue.clone(),
                lane(scenario.backfill.is_some()),
            )
        }
        _ => Lanes::single(queue.clone()),
    };
    let depth = || lanes.served().map(|(_, q)| q.len() as u64).sum::<u64>();
    let dead = || {
        lanes
            .served()
            .map(|(_, q)| q.dead_letter_count())
            .sum::<usize>()
    };
    let store = MemoryStore::default();
    let provider = FaultyProvider::new(
        MemoryProvider::new(
            clock.clone(),
            limits.batch_per_window,
            limits.individual_per_window,
            limits.window_seconds,
        )
        .counting(scenario.provider_quota),
        clock.clone(),
        outage,
    );
    if scenario.other_client_percent > 0 {
        provider
            .inner()
            .share_with_other_client(scenario.other_client_percent);
    }
    let meter = Meter::default();
    let period = policy.period(&limits);
    let mut runner = match policy {
        PolicyKind::Sluice {
            max_messages,
            quota_model,
        } => {
            let settings = production_settings(max_messages, quota_model)?;
            anyhow::ensure!(
                settings.limits
                    == Limits {
                        quota_model,
                        ..limits
                    },
                "production limits changed: {:?}",
                settings.limits
            );
            let m = |x: MemoryStore| Metered::new(x, meter.clone());
            let ports = DrainAdapters {
                lanes: lanes.clone().map(|_, q| Metered::new(q, meter.clone())),
                ledger: m(store.clone()),
                sync_state: m(store.clone()),
                provider: Metered::new(provider.clone(), meter.clone()),
                clock: clock.clone(),
                lease: m(store.clone()),
                circuit: m(store.clone()),
                requests: m(store.clone()),
            };
            Runner::Sluice(
                Box::new(Drain::new(ports, settings)),
                EngineTotals::default(),
            )
        }
        PolicyKind::ThresholdSweep => Runner::Threshold(ThresholdSweep::new(
            queue.clone(),
            provider.clone(),
            limits,
            period,
        )),
        PolicyKind::FixedSpacing => {
            Runner::Fixed(FixedSpacing::new(queue.clone(), provider.clone(), limits))
        }
    };

    let traffic_length = Duration::from_secs(u64::from(hours) * 3_600);
    let end = cfg.start
        + chrono::Duration::from_std(Duration::from_secs(u64::from(hours + tail_hours) * 3_600))?;
    let mut traffic = Traffic::new(scenario.clone(), cfg.start, traffic_length, cfg.seed)?;
    let mut tracker = Tracker::new(cfg.start);
    if let Some(o) = outage {
        tracker = tracker.with_phases(&[o.from, o.until]);
    }
    let mut timeline = Timeline::new(cfg.start);
    let mut request_times = RequestTimes::default();
    let mut backlog_series = Vec::new();
    let mut backlog_end: Vec<u64> = Vec::new();
    let step = chrono::Duration::from_std(period)?;
    let mut t = cfg.start;
    let mut invocations = 0u64;
    while t < end {
        for c in traffic.until(t) {
            clock.set(c.at);
            let change = c.to_change()?;
            let lane = lanes.queue(change.priority);
            lane.send(ChangeMessage::V1(change).to_body());
            // Ingest: a POST's changes go out in SendMessageBatch calls of up to 10 entries — one call for
            // a single change, ten for a bulk POST of 100.
            if c.position() % 10 == 0 {
                lane.count_send_calls(1);
            }
            tracker.generated(&c);
        }
        clock.set(t);
        if scenario.other_client_percent > 0 {
            provider.inner().other_client_catch_up();
        }
        if outage.is_some_and(|o| t >= o.until) && timeline.recovery.is_none() {
            timeline.recovered(t, depth(), dead());
        }
        runner
            .invoke(t)
            .await
            .with_context(|| format!("{} under {} at {t}", scenario.name, policy.label()))?;
        invocations += 1;
        let deliveries = provider.inner().take_deliveries();
        for d in &deliveries {
            tracker.delivered(d);
            request_times.note(d);
        }
        let depth = depth();
        timeline.after_run(t, depth, deliveries.len() as u64);
        let since_start_h = (t - cfg.start).num_seconds() as f64 / 3_600.0;
        backlog_series.push((since_start_h, depth));
        let hour = since_start_h as usize;
        if backlog_end.len() <= hour {
            backlog_end.resize(hour + 1, 0);
        }
        backlog_end[hour] = depth;
        t += step;
    }

    let total_hours = (hours + tail_hours) as usize;
    let hourly: Vec<HourRow> = (0..total_hours)
        .map(|h| HourRow {
            generated: tracker.generated_hourly.get(h).copied().unwrap_or(0),
            delivered: tracker.hourly.get(h).copied().unwrap_or_default(),
            backlog_end: backlog_end.get(h).copied().unwrap_or(0),
        })
        .collect();
    let (unsatisfied, oldest) = tracker.unsatisfied();
    let outage_figures = match outage {
        Some(o) => Some(
            OutageFigures::measure(
                o,
                policy,
                &limits,
                &timeline,
                &provider,
                &queue,
                &store,
                &mut tracker,
            )
            .await?,
        ),
        None => None,
    };
    let backfill = scenario
        .backfill
        .map(|b| BackfillFigures::measure(b, cfg.start, &mut tracker));
    let end_ms = end.timestamp_millis();
    let mut freshness_ms = std::mem::take(&mut tracker.freshness_ms);
    let freshness = Percentiles::of(&mut freshness_ms);
    let high_freshness =
        (scenario.high_share > 0.0).then(|| Percentiles::of(&mut tracker.high_freshness_ms));
    let freshness_cdf = cdf(&freshness_ms);
    let engine = match runner {
        Runner::Sluice(_, totals) => Some(totals),
        _ => None,
    };
    Ok(DayResult {
        scenario: scenario.name,
        policy,
        changes_per_request: scenario.changes_per_request,
        hours,
        changes: tracker.changes,
        traced_changes: tracker.traced_changes,
        records: tracker.records,
        fields_sent: tracker.fields_sent,
        noop_records: tracker.noop_records,
        noop_fields: tracker.noop_fields,
        stale_overwrites: tracker.stale_overwrites,
        foreign: tracker.foreign,
        delivered_as_is: tracker.delivered_as_is,
        superseded: tracker.superseded,
        freshness,
        high_freshness,
        freshness_cdf,
        unsatisfied,
        oldest_unsatisfied_age_s: oldest.map(|ms| (end_ms - ms) as f64 / 1_000.0),
        hourly,
        backlog_series,
        queue_calls: lanes
            .served()
            .map(|(_, q)| q.api_calls())
            .fold(QueueCalls::default(), |all, lane| all + lane),
        provider_calls: provider.inner().calls(),
        over_limit: provider.inner().over_limit(),
        over_limit_after_reply: provider.inner().over_limit_after_reply(),
        other_client: provider.inner().other_client_requests(),
        busiest_hour: request_times.busiest_hour(),
        users_twice: provider.inner().users_twice_in_one_request(),
        dead_lettered: dead(),
        dynamo: meter.dynamo(),
        ops: meter.stats(),
        engine,
        invocations,
        wall: wall.elapsed(),
        outage: outage_figures,
        backfill,
    })
}

/// About 400 points of the empirical CDF of sorted durations in ms.
fn cdf(sorted_ms: &[u32]) -> Vec<(f64, f64)> {
    let n = sorted_ms.len();
    if n == 0 {
        return Vec::new();
    }
    let step = (n / 400).max(1);
    let mut out: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (f64::from(sorted_ms[i]) / 1_000.0, (i + 1) as f64 / n as f64))
        .collect();
    out.push((f64::from(sorted_ms[n - 1]) / 1_000.0, 1.0));
    out
}
