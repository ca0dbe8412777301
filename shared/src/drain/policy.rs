//! The send policy: how much of each kind of quota one drain run may use, and how many messages it may
//! therefore receive — decided *before* receiving anything.
//!
//! # Reasoning
//! Capacity per window is `batch_limit × batch_size + individual_limit` (53,600 records/h with Drip's
//! limits). Both kinds must be spent completely by the end of every window to reach it, and spending them
//! evenly keeps the wait of every change short. So each kind is **paced**: a run may use whatever the
//! window has left *minus a reserve* that is the pro-rata share of the time after this run:
//!
//! ```text
//! allowance = (limit − used) − floor(limit × seconds_left_after_this_run / window_length)
//! ```
//!
//! With 50 batches/h and a run every 60 s that is one batch on 50 of the 60 runs (one every 72 s on
//! average), and 60 individual requests per run. Allowance that a quiet run leaves unused is not lost: the
//! reserve only counts the future, so it carries over and a later burst may spend it, and the last run of a
//! window may spend everything left. No run can take quota that later runs of the window were promised.
//!
//! **Rolling model** (`QUOTA_MODEL=rolling`): the provider may count any trailing hour, so carried-over
//! allowance is exactly what must not be spent — a late burst plus the next window's even share puts
//! close to twice the limit inside one rolling hour. A run's allowance is instead its even share of the
//! limit, never more than the trailing window has left:
//!
//! ```text
//! allowance = min(limit − used_in_trailing_window, due(now + interval) − due(now)),
//! due(t)    = floor(limit × t / counted)        (counted = window + one ledger bucket, 3,660 s)
//! ```
//!
//! `due` runs from the epoch, so consecutive runs' shares add up to the limit per `counted` seconds
//! exactly (one batch on 50 of every 61 runs, 59 individual requests a run): what the ledger's buckets
//! hold ([`crate::ports::RollingCounts`]) stays within the limit without a refusal. The cost: nothing
//! carries over, so a backlog after a quiet spell drains at the even rate rather than in a burst.
//!
//! Within a run:
//! - **light load** (the backlog fits in the individual allowance): everything goes out as individual
//!   requests at once. A change never waits for a batch to fill while individual quota is spare.
//! - **backlog**: batches are filled first (a batch carries up to `batch_size` records for one unit), and
//!   the individual allowance takes what is left, highest priority first. Individual allowance a run does
//!   not need stays for the runs without a batch slot.
//! - A partial batch is sent only when a batch slot is due and the backlog is below `batch_size`: that means
//!   demand is below capacity, so the unused part of the batch costs nothing later.
//! - The run receives only what this plan can send, so a message is never received (and its receive
//!   count raised toward the DLQ) just to be deferred for quota. The plan's `receive` is the first
//!   round; the engine tops it up by distinct users (copies of one user share a record) until the plan's
//!   records are covered — `DRAIN_MAX_MESSAGES` is only a safety cap on that.

use crate::config::Limits;
use crate::ports::{QuotaModel, Window};

/// Quota state of one kind in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindQuota {
    pub limit: u32,
    pub used: u32,
}

impl KindQuota {
    pub fn left(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }
}

/// What this run may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    /// Batch requests this run may make.
    pub batches: u32,
    /// Individual requests this run may make.
    pub individual: u32,
    /// Messages to receive.
    pub receive: u32,
}

impl Plan {
    /// Records this plan can deliver at most.
    pub fn records(&self, batch_size: u32) -> u64 {
        u64::from(self.batches) * u64::from(batch_size) + u64::from(self.individual)
    }
}

/// The paced allowance of one kind for a run starting `elapsed` seconds into `window` (a rolling window:
/// [`rolling_allowance`]).
pub fn allowance(quota: KindQuota, window: Window, elapsed: i64, interval_seconds: u32) -> u32 {
    if window.model == QuotaModel::Rolling {
        return rolling_allowance(quota, window, interval_seconds);
    }
    let length = i64::from(window.length);
    let after_this_run = (length - elapsed - i64::from(interval_seconds)).clamp(0, length);
    let reserve = i64::from(quota.limit) * after_this_run / length;
    let reserve = u32::try_from(reserve).unwrap_or(u32::MAX);
    quota.left().saturating_sub(reserve)
}

/// The rolling model's allowance for a run at the end of `window`: its even share of the limit over the
/// interval to the next run, at most what the trailing window has left (see the module doc).
pub fn rolling_allowance(quota: KindQuota, window: Window, interval_seconds: u32) -> u32 {
    let counted = i128::from(window.counted_seconds());
    let due = |at: i64| (i128::from(quota.limit) * i128::from(at)).div_euclid(counted);
    let now = window.end();
    let share = due(now + i64::from(interval_seconds)) - due(now);
    u32::try_from(share.max(0))
        .unwrap_or(u32::MAX)
        .min(quota.left())
}

/// What a run knows before it receives anything.
#[derive(Debug, Clone, Copy)]
pub struct RunState {
    pub window: Window,
    /// Seconds since the window opened.
    pub elapsed: i64,
    pub batch: KindQuota,
    pub individual: KindQuota,
    /// Approximate number of visible messages.
    pub backlog: u64,
}

/// Decides this run's plan from the quota state and the (approximate) number of visible messages.
pub fn plan(limits: &Limits, interval_seconds: u32, max_messages: u32, state: RunState) -> Plan {
    let RunState {
        window,
        elapsed,
        batch,
        individual,
        backlog,
    } = state;
    let batch_allow = allowance(batch, window, elapsed, interval_seconds);
    let individual_allow = allowance(individual, window, elapsed, interval_seconds);
    let batch_size = u64::from(limits.batch_size.max(1));

    // SQS counts are approximate and may lag a fresh send: an empty-looking queue still gets a receive
    // as large as the individual allowance (receiving from an empty queue costs no receive counts).
    let batches = if backlog > u64::from(individual_allow) && batch_allow > 0 {
        let needed = (backlog - u64::from(individual_allow)).div_ceil(batch_size);
        u32::try_from(needed.min(u64::from(batch_allow))).unwrap_or(batch_allow)
    } else {
        0
    };
    let capacity = u64::from(batches) * batch_size + u64::from(individual_allow);
    let receive = capacity.min(u64::from(max_messages));
    Plan {
        batches,
        individual: individual_allow,
        receive: u32::try_from(receive).unwrap_or(max_messages),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: Window = Window {
        start: 0,
        length: 3_600,
        model: QuotaModel::Fixed,
    };

    fn q(limit: u32, used: u32) -> KindQuota {
        KindQuota { limit, used }
    }

    #[allow(clippy::too_many_arguments)]
    fn plan(
        limits: &Limits,
        window: Window,
        elapsed: i64,
        interval: u32,
        batch: KindQuota,
        individual: KindQuota,
        backlog: u64,
        max: u32,
    ) -> Plan {
        super::plan(
            limits,
            interval,
            max,
            RunState {
                window,
                elapsed,
                batch,
                individual,
                backlog,
            },
        )
    }

    #[test]
    fn pacing_spreads_a_window_evenly_and_spends_it_all() {
        // A saturated hour, one run per minute: every unit is used, never more than the limit.
        let limits = Limits::default();
        let (mut b, mut i) = (0u32, 0u32);
        for minute in 0..60 {
            let p = plan(
                &limits,
                HOUR,
                minute * 60,
                60,
                q(50, b),
                q(3_600, i),
                1_000_000,
                2_000,
            );
            assert!(p.batches <= 1, "minute {minute}: {p:?}");
            b += p.batches;
            i += p.individual;
        }
        assert_eq!((b, i), (50, 3_600));
    }

    #[test]
    fn light_load_goes_out_individually_now() {
        let p = plan(
            &Limits::default(),
            HOUR,
            600,
            60,
            q(50, 0),
            q(3_600, 0),
            25,
            1_000,
        );
        assert_eq!((p.batches, p.receive), (0, p.individual));
        assert!(p.individual >= 25);
    }

    #[test]
    fn unused_allowance_carries_over_to_a_burst() {
        // Nothing used for 30 minutes: half the window's quota is available now.
        let p = plan(
            &Limits::default(),
            HOUR,
            1_800,
            60,
            q(50, 0),
            q(3_600, 0),
            100_000,
            100_000,
        );
        assert_eq!(p.batches, 26);
        assert_eq!(p.individual, 1_860);
    }

    #[test]
    fn receive_never_exceeds_what_can_be_sent_or_the_cap() {
        let p = plan(
            &Limits::default(),
            HOUR,
            0,
            60,
            q(50, 0),
            q(3_600, 0),
            5_000,
            1_000,
        );
        assert_eq!((p.batches, p.individual, p.receive), (1, 60, 1_000));
        let spent = plan(
            &Limits::default(),
            HOUR,
            0,
            60,
            q(50, 50),
            q(3_600, 3_600),
            5_000,
            1_000,
        );
        assert_eq!(spent, Plan::default());
    }

    proptest! {
        /// Whatever the state, a plan never exceeds what is left, and never receives more than it can send.
        #[test]
        fn plan_stays_within_quota(
            b_limit in 0..100u32, b_used in 0..120u32, i_limit in 0..5_000u32, i_used in 0..6_000u32,
            elapsed in 0..3_600i64, backlog in 0..200_000u64, max in 1..5_000u32, batch_size in 1..=1_000u32,
        ) {
            let limits = Limits { batch_per_window: b_limit, individual_per_window: i_limit, batch_size, window_seconds: 3_600, ..Limits::default() };
            let p = plan(&limits, HOUR, elapsed, 60, q(b_limit, b_used), q(i_limit, i_used), backlog, max);
            prop_assert!(p.batches <= b_limit.saturating_sub(b_used));
            prop_assert!(p.individual <= i_limit.saturating_sub(i_used));
            prop_assert!(u64::from(p.receive) <= p.records(batch_size));
            prop_assert!(p.receive <= max);
        }
    }
}

#[cfg(test)]
#[path = "pacing_tests.rs"]
pub(super) mod pacing_tests;
