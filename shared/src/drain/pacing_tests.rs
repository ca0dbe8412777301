//! Pacing across window boundaries on a virtual clock: the plan run once a minute against a ledger of
//! each model, every granted unit timed, and the most units any window-length interval holds measured.

use std::collections::HashMap;

use chrono::DateTime;
use proptest::prelude::*;

use super::{KindQuota, RunState, plan};
use crate::config::Limits;
use crate::ports::{QuotaKind, QuotaModel, Reservation, RollingCounts, Window};

/// 2026-03-02T00:00:00Z: an hour boundary.
const START: i64 = 1_772_409_600;
const HOUR: i64 = 3_600;

/// Units each kind's ledger granted, as (second, units).
#[derive(Default)]
struct Granted {
    batch: Vec<(i64, u32)>,
    individual: Vec<(i64, u32)>,
}

/// A ledger of either model, as the adapters keep it.
#[derive(Default)]
struct Ledger {
    fixed: HashMap<(QuotaKind, i64), u32>,
    rolling: HashMap<QuotaKind, RollingCounts>,
}

impl Ledger {
    fn used(&mut self, kind: QuotaKind, window: Window) -> u32 {
        match window.model {
            QuotaModel::Fixed => self.fixed.get(&(kind, window.start)).copied().unwrap_or(0),
            QuotaModel::Rolling => self.rolling.entry(kind).or_default().usage(window).used,
        }
    }

    fn reserve(&mut self, kind: QuotaKind, window: Window, n: u32, limit: u32) -> u32 {
        match window.model {
            QuotaModel::Fixed => {
                let used = self.fixed.entry((kind, window.start)).or_insert(0);
                let granted = n.min(limit.saturating_sub(*used));
                *used += granted;
                granted
            }
            QuotaModel::Rolling => {
                let counts = self.rolling.entry(kind).or_default();
                match counts.reserve(window, n, limit) {
                    Reservation::Granted { .. } => n,
                    Reservation::Exhausted { .. } => 0,
                }
            }
        }
    }
}

/// One run a minute, `offsets[m]` seconds into minute `m`, with `backlog[m]` messages visible.
fn run_minutes(model: QuotaModel, backlog: &[u64], offsets: &[i64]) -> Granted {
    let limits = Limits {
        quota_model: model,
        ..Limits::default()
    };
    let mut ledger = Ledger::default();
    let mut granted = Granted::default();
    for (m, &visible) in backlog.iter().enumerate() {
        let at = START + 60 * m as i64 + offsets.get(m).copied().unwrap_or(0);
        let window = limits.window_at(DateTime::from_timestamp(at, 0).unwrap_or_default());
        let state = RunState {
            window,
            elapsed: at - window.start,
            batch: KindQuota {
                limit: limits.batch_per_window,
                used: ledger.used(QuotaKind::Batch, window),
            },
            individual: KindQuota {
                limit: limits.individual_per_window,
                used: ledger.used(QuotaKind::Individual, window),
            },
            backlog: visible,
        };
        let p = plan(&limits, 60, 100_000, state);
        let batches = ledger.reserve(QuotaKind::Batch, window, p.batches, 50);
        let carried = u64::from(batches) * u64::from(limits.batch_size);
        let wanted = u32::try_from(visible.saturating_sub(carried)).unwrap_or(u32::MAX);
        let individual = wanted.min(p.individual);
        let individual = ledger.reserve(QuotaKind::Individual, window, individual, 3_600);
        granted.batch.push((at, batches));
        granted.individual.push((at, individual));
    }
    granted
}

/// The most units inside any interval `(t − length, t]`.
pub(in crate::drain) fn most_in_any_interval(units: &[(i64, u32)], length: i64) -> u32 {
    let (mut from, mut inside, mut most) = (0, 0u32, 0u32);
    for (i, &(t, n)) in units.iter().enumerate() {
        inside += n;
        while units[from].0 <= t - length {
            inside -= units[from].1;
            from += 1;
        }
        most = most.max(inside);
        debug_assert!(from <= i);
    }
    most
}

/// Quiet for 40 minutes, then a backlog far beyond capacity for two hours.
fn quiet_then_backlog() -> Vec<u64> {
    (0..160)
        .map(|m| if m < 40 { 0 } else { 1_000_000 })
        .collect()
}

#[test]
fn fixed_windows_put_close_to_twice_the_limit_in_one_rolling_hour_after_a_quiet_spell() {
    let fixed = run_minutes(QuotaModel::Fixed, &quiet_then_backlog(), &[]);
    // Each fixed window holds no more than its limit...
    let first: u32 = fixed
        .batch
        .iter()
        .filter(|(t, _)| *t < START + HOUR)
        .map(|u| u.1)
        .sum();
    assert_eq!(first, 50);
    // ...but the hour from minute 40 holds the carried-over burst and the next window's share.
    let most = most_in_any_interval(&fixed.batch, HOUR);
    assert!(most >= 80, "at most {most} batches in a rolling hour");
    assert!(most_in_any_interval(&fixed.individual, HOUR) > 5_000);
}

#[test]
fn rolling_pacing_keeps_every_hour_within_the_limit_and_spends_it() {
    let rolling = run_minutes(QuotaModel::Rolling, &quiet_then_backlog(), &[]);
    assert_eq!(most_in_any_interval(&rolling.batch, HOUR), 50);
    assert!(most_in_any_interval(&rolling.individual, HOUR) <= 3_600);
    // Under a standing backlog every run's share is granted: 50 batches and 3,540+ individual requests
    // in each 61 minutes, none refused by the ledger.
    let backlog_hour = |units: &[(i64, u32)]| -> u32 {
        let from = START + 60 * 60;
        units
            .iter()
            .filter(|(t, _)| (from..from + 3_660).contains(t))
            .map(|u| u.1)
            .sum()
    };
    assert_eq!(backlog_hour(&rolling.batch), 50);
    assert!(
        backlog_hour(&rolling.individual) >= 3_540,
        "{}",
        backlog_hour(&rolling.individual)
    );
}

proptest! {
    /// Whatever the traffic (quiet spells, bursts, a backlog that comes and goes) and however late each
    /// run starts within its minute, no hour-long interval holds more than the limit of either kind.
    #[test]
    fn rolling_mode_never_exceeds_the_limit_in_any_window_length_interval(
        backlog in prop::collection::vec(prop_oneof![Just(0u64), 1..200u64, 1_000..200_000u64], 60..240),
        offsets in prop::collection::vec(0..60i64, 240),
    ) {
        let rolling = run_minutes(QuotaModel::Rolling, &backlog, &offsets);
        prop_assert!(most_in_any_interval(&rolling.batch, HOUR) <= 50);
        prop_assert!(most_in_any_interval(&rolling.individual, HOUR) <= 3_600);
    }
}
