//! The rolling-provider day (issue 14): quiet spells each ended by a backlog 40 minutes into a clock hour,
//! against a provider that counts a rolling hour (and, for comparison, one that counts clock hours), under
//! Sluice's fixed and rolling quota models. What each sends over the limit, the most requests the provider
//! accepted inside any hour-long interval, and what it costs in capacity and freshness.

use sluice::adapters::memory::Delivery;
use sluice::config::Limits;
use sluice::ports::QuotaKind;

use crate::day::DayResult;
use crate::report::{int, pct, secs};
use crate::summary::DayRow;

/// The start of every request the provider accepted, by kind, in seconds (from its deliveries: the
/// records of one request arrive together and share its number).
#[derive(Debug, Clone, Default)]
pub struct RequestTimes {
    last_request: Option<u64>,
    batch: Vec<i64>,
    individual: Vec<i64>,
}

impl RequestTimes {
    pub fn note(&mut self, d: &Delivery) {
        if self.last_request == Some(d.request) {
            return;
        }
        self.last_request = Some(d.request);
        let times = match d.kind {
            QuotaKind::Batch => &mut self.batch,
            QuotaKind::Individual => &mut self.individual,
        };
        times.push(d.at.timestamp());
    }

    /// The most requests of each kind (batch, individual) inside any interval `(t − 3,600 s, t]`.
    pub fn busiest_hour(&self) -> (u32, u32) {
        (
            most_in_an_hour(&self.batch),
            most_in_an_hour(&self.individual),
        )
    }
}

/// The most of these (sorted) times inside any hour-long interval.
fn most_in_an_hour(times: &[i64]) -> u32 {
    let mut from = 0;
    let mut most = 0;
    for (i, &t) in times.iter().enumerate() {
        while times[from] <= t - 3_600 {
            from += 1;
        }
        most = most.max(i + 1 - from);
    }
    u32::try_from(most).unwrap_or(u32::MAX)
}

/// The day's table: one row per provider and quota model.
pub fn rolling_provider_section(days: &[&DayResult]) -> String {
    let limits = Limits::default();
    let mut out = format!(
        "| provider counts | policy | records delivered | over-limit requests (429) | most accepted in any rolling hour: batch / individual (limit {} / {}) | capacity used | freshness p50 / p99 | unsatisfied at end |\n\
         |---|---|--:|--:|--:|--:|--:|--:|\n",
        limits.batch_per_window,
        int(u64::from(limits.individual_per_window)),
    );
    for d in days {
        let row = DayRow::of(d, limits.capacity_per_window());
        let (batch, individual) = d.busiest_hour;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} | {} | {} / {} | {} |\n",
            if d.scenario == "rolling-provider" {
                "a rolling hour"
            } else {
                "clock hours"
            },
            d.policy.label(),
            int(d.records),
            int(u64::from(d.over_limit)),
            batch,
            int(u64::from(individual)),
            pct(row.capacity_used),
            secs(d.freshness.p50_s),
            secs(d.freshness.p99_s),
            int(d.unsatisfied),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_hour_is_an_open_interval_ending_at_a_request() {
        assert_eq!(most_in_an_hour(&[]), 0);
        assert_eq!(most_in_an_hour(&[0, 3_599, 3_600, 3_601]), 3);
        assert_eq!(most_in_an_hour(&[0, 10, 20, 7_000]), 3);
    }
}
