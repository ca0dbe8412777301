//! The urgent day (issue 14): the saturated day with 1 % of changes posted `high`. What the high lane's
//! changes wait behind a backlog of hours (goal: p99 ≤ 2 min), and what the lanes cost the day against
//! the saturated day's one queue.

use crate::day::DayResult;
use crate::report::{int, pct, secs};
use crate::summary::DayRow;

/// The `high` p99 freshness the urgent day must meet.
pub const HIGH_P99_GOAL_S: f64 = 120.0;

/// The day's table: one row per Sluice policy of the urgent day, and the saturated day's for comparison.
pub fn urgent_section(days: &[&DayResult], capacity_per_hour: u64) -> String {
    let mut out = String::from(
        "| day | policy | `high` changes (traced) | `high` freshness p50 / p99 / max | goal: `high` p99 ≤ 2 min | all changes p50 / p99 | capacity used | over-limit | stale overwrites | DLQ |\n\
         |---|---|--:|--:|---|--:|--:|--:|--:|--:|\n",
    );
    for d in days {
        let row = DayRow::of(d, capacity_per_hour);
        let (count, high, verdict) = match &d.high_freshness {
            Some(h) => (
                int(h.count),
                format!("{} / {} / {}", secs(h.p50_s), secs(h.p99_s), secs(h.max_s)),
                if h.p99_s <= HIGH_P99_GOAL_S {
                    "**met**"
                } else {
                    "**missed**"
                }
                .to_string(),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {count} | {high} | {verdict} | {} / {} | {} | {} | {} | {} |\n",
            d.scenario,
            d.policy.label(),
            secs(row.fresh_p50_s),
            secs(row.fresh_p99_s),
            pct(row.capacity_used),
            int(u64::from(d.over_limit)),
            int(d.stale_overwrites),
            int(d.dead_lettered as u64),
        ));
    }
    out
}
