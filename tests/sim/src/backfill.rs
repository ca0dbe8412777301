//! The backfill day (issue 14): the steady day's live traffic on the `normal` lane while a backfill of
//! 1,000,000 new users waits on `bulk`. What the live changes' freshness costs (against the steady day's),
//! when the backfill finishes — expected from the capacity the live traffic leaves, and measured — and
//! that nothing goes over the limit or overwrites newer data.

use chrono::{DateTime, Utc};

use crate::day::DayResult;
use crate::report::{int, pct, secs};
use crate::tracker::{Percentiles, Tracker};
use crate::traffic::Backfill;

/// What the backfill itself measured in a day.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillFigures {
    pub plan: Backfill,
    /// Records delivered to the backfill's users (one each once it is done).
    pub records: u64,
    /// Hours from the start of the day to the last backfill record's delivery.
    pub last_delivery_h: Option<f64>,
    /// Freshness of the backfill's traced changes (the live traffic's is the day's `freshness`).
    pub freshness: Percentiles,
    /// Backfill records delivered, by hour of the day.
    pub hourly: Vec<u64>,
}

impl BackfillFigures {
    pub fn measure(plan: Backfill, start: DateTime<Utc>, tracker: &mut Tracker) -> Self {
        let hours = |at: DateTime<Utc>| (at - start).num_milliseconds() as f64 / 3_600_000.0;
        Self {
            plan,
            records: tracker.backfill_hourly.iter().sum(),
            last_delivery_h: tracker.backfill_last.map(hours),
            freshness: Percentiles::of(&mut tracker.bulk_freshness_ms),
            hourly: std::mem::take(&mut tracker.backfill_hourly),
        }
    }

    /// Whether every backfill user got its record.
    pub fn done(&self) -> bool {
        self.records >= u64::from(self.plan.users)
    }
}

/// The hours the backfill was being delivered through: from the hour it started to the last full one
/// before its end.
fn busy_hours(day: &DayResult, b: &BackfillFigures) -> std::ops::Range<usize> {
    let from = (b.plan.start.as_secs() / 3_600) as usize;
    let to = b.last_delivery_h.map_or(day.hourly.len(), |h| h as usize);
    from..to.max(from + 1).min(day.hourly.len())
}

/// Live records delivered per hour while the backfill was being delivered (all records less the backfill's).
pub fn live_records_per_hour(day: &DayResult, b: &BackfillFigures) -> f64 {
    let hours = busy_hours(day, b);
    let n = hours.len().max(1) as f64;
    let live: u64 = hours
        .map(|h| day.delivered_in(h) - b.hourly.get(h).copied().unwrap_or(0))
        .sum();
    live as f64 / n
}

/// The hour of the day the backfill should end when live traffic uses `live_per_hour` of `capacity`.
pub fn expected_end_h(b: &BackfillFigures, capacity: u64, live_per_hour: f64) -> f64 {
    let start_h = b.plan.start.as_secs_f64() / 3_600.0;
    start_h + f64::from(b.plan.users) / (capacity as f64 - live_per_hour).max(1.0)
}

/// The steady day's figures the backfill day is held against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SteadyReference {
    pub fresh_p99_s: f64,
    pub records_per_hour: f64,
}

type Row = (String, String);

fn hour(h: f64) -> String {
    format!("{h:.2} h")
}

/// The day's table: goals and figures, one row each.
pub fn backfill_section(
    day: &DayResult,
    b: &BackfillFigures,
    steady: Option<SteadyReference>,
    capacity: u64,
) -> String {
    let setup = format!(
        "{} new users on `bulk`, posted from {} in requests of {} (the last at {}); live traffic {} changes \
         over {} h; the day {} h",
        int(u64::from(b.plan.users)),
        hour(b.plan.start.as_secs_f64() / 3_600.0),
        int(u64::from(b.plan.per_request)),
        hour(b.plan.posted_by().as_secs_f64() / 3_600.0),
        int(day.changes - u64::from(b.plan.users)),
        day.hours,
        day.hours + b.plan.tail_hours,
    );
    let mut rows: Vec<Row> = vec![("day".into(), setup)];
    rows.extend(freshness_rows(day, b, steady));
    rows.extend(end_rows(day, b, steady, capacity));
    rows.push((
        "over-limit requests / stale overwrites / no-op records / DLQ".into(),
        format!(
            "{} / {} / {} / {}",
            day.over_limit, day.stale_overwrites, day.noop_records, day.dead_lettered
        ),
    ));
    let mut out = String::from("| figure | value |\n|---|---|\n");
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out
}

/// The live traffic's freshness (against the steady day's) and the backfill's.
fn freshness_rows(
    day: &DayResult,
    b: &BackfillFigures,
    steady: Option<SteadyReference>,
) -> Vec<Row> {
    let f = &day.freshness;
    let ratio = match steady {
        Some(s) => {
            let r = f.p99_s / s.fresh_p99_s;
            let verdict = if r <= 2.0 { "**met**" } else { "**missed**" };
            format!("{r:.2}× (steady day {}): {verdict}", secs(s.fresh_p99_s))
        }
        None => "n/a (no steady day to compare)".into(),
    };
    let p = |x: &crate::tracker::Percentiles| {
        format!("{} / {} / {}", secs(x.p50_s), secs(x.p99_s), secs(x.max_s))
    };
    vec![
        (
            "live freshness p50 / p99 / max".into(),
            format!("{} ({} traced changes)", p(f), int(f.count)),
        ),
        ("live p99 ÷ the steady day's p99 (goal ≤ 2×)".into(), ratio),
        (
            "backfill freshness p50 / p99 / max".into(),
            format!(
                "{} ({} traced changes)",
                p(&b.freshness),
                int(b.freshness.count)
            ),
        ),
    ]
}

/// When the backfill should end and when it did, and the capacity used meanwhile.
fn end_rows(
    day: &DayResult,
    b: &BackfillFigures,
    steady: Option<SteadyReference>,
    capacity: u64,
) -> Vec<Row> {
    let expected = |live: f64| {
        format!(
            "{} ({} − {} live records/h = {} records/h left)",
            hour(expected_end_h(b, capacity, live)),
            int(capacity),
            int(live.round() as u64),
            int((capacity as f64 - live).round() as u64)
        )
    };
    let mut rows: Vec<Row> = vec![(
        "expected end, from this day's live records/h while the backfill ran".into(),
        expected(live_records_per_hour(day, b)),
    )];
    if let Some(s) = steady {
        rows.push((
            "expected end, from the steady day's records/h".into(),
            expected(s.records_per_hour),
        ));
    }
    let measured = match b.last_delivery_h.filter(|_| b.done()) {
        Some(h) => hour(h),
        None => format!(
            "**not done**: {} of {} delivered",
            int(b.records),
            int(u64::from(b.plan.users))
        ),
    };
    let busy = busy_hours(day, b);
    let used: u64 = busy.clone().map(|h| day.delivered_in(h)).sum();
    let share = used as f64 / (capacity as f64 * busy.len().max(1) as f64);
    rows.extend([
        (
            "measured end (last backfill record delivered)".into(),
            measured,
        ),
        (
            format!("capacity used, hours {:02}–{:02}", busy.start, busy.end),
            pct(share),
        ),
    ]);
    rows
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone as _;
    use sluice::config::{DEFAULT_DRAIN_MAX_MESSAGES, Limits};
    use sluice::ports::QuotaModel;

    use super::*;
    use crate::day::{DayConfig, PolicyKind, simulate};
    use crate::traffic::{Rate, Scenario};

    /// A small backfill day end to end (the real drain): the backfill is delivered once each, at the
    /// capacity the live traffic leaves, with nothing over the limit and no stale overwrite.
    #[tokio::test]
    async fn a_small_backfill_day_ends_when_the_capacity_left_says() {
        let plan = Backfill {
            start: Duration::from_secs(3_600),
            users: 30_000,
            per_request: 1_000,
            traffic_hours: 2,
            tail_hours: 1,
        };
        let scenario = Scenario {
            name: "backfill-small",
            summary: "test",
            rate: Rate::Constant { per_hour: 2_000.0 },
            spike: None,
            changes_per_request: 1,
            high_share: 0.0,
            outage: None,
            other_client_percent: 0,
            provider_quota: QuotaModel::Fixed,
            backfill: Some(plan),
        };
        let cfg = DayConfig {
            seed: 5,
            hours: 24,
            tail_hours: 1,
            start: Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap(),
        };
        let policy = PolicyKind::sluice(DEFAULT_DRAIN_MAX_MESSAGES);
        let day = simulate(&scenario, policy, cfg).await.unwrap();
        let b = day.backfill.as_ref().unwrap();
        assert_eq!((day.hours, b.records), (2, 30_000));
        assert!(b.done());
        assert_eq!(
            (day.over_limit, day.stale_overwrites, day.noop_records),
            (0, 0, 0)
        );
        assert_eq!((day.unsatisfied, day.dead_lettered), (0, 0));
        // Ingest's SendMessageBatch calls on both lanes: one per live change, one per 10 backfill ones.
        assert_eq!(day.queue_calls.send, day.changes - 30_000 + 3_000);
        // Traced backfill changes are kept apart from the live ones.
        assert!(b.freshness.count > 25_000, "{:?}", b.freshness);
        assert!(day.freshness.count > 2_000 && day.freshness.count < 5_000);
        assert!(day.freshness.p99_s < 120.0, "{:?}", day.freshness);
        let capacity = Limits::default().capacity_per_window();
        let live = live_records_per_hour(&day, b);
        assert!(live > 500.0 && live < 2_500.0, "{live}");
        let expected = expected_end_h(b, capacity, live);
        let measured = b.last_delivery_h.unwrap();
        assert!(
            measured > expected - 0.05 && measured < expected * 1.05,
            "measured {measured} h, expected {expected} h"
        );
        let md = backfill_section(&day, b, None, capacity);
        assert!(
            md.contains("| measured end (last backfill record delivered) | 1."),
            "{md}"
        );
    }
}
