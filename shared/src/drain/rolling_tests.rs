//! The quota models against a provider that counts a rolling hour, on the virtual clock: a quiet spell
//! to 40 minutes into a window, then a backlog far beyond capacity, one run a minute for three hours.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::policy::pacing_tests::most_in_any_interval;
use super::tests::{Harness, harness_on, small};
use crate::config::Limits;
use crate::ports::QuotaModel;

/// What the provider saw and the drain reported over the day.
struct Day {
    /// Accepted batch requests, as (second, 1).
    batches: Vec<(i64, u32)>,
    over_limit: u32,
    adopted_batch: u32,
    delivered: u64,
}

async fn quiet_then_backlog(model: QuotaModel) -> (Harness, Day) {
    let limits = Limits {
        quota_model: model,
        ..small()
    };
    let h = harness_on(limits, 1_000, false, QuotaModel::Rolling);
    let (mut adopted_batch, mut delivered) = (0, 0);
    for minute in 0..220 {
        if minute == 40 {
            for i in 0..3_000 {
                h.enqueue(&format!("u{i}@x.io"), 0, "later");
            }
        }
        let r = h.tick().await;
        adopted_batch += r.adopted.batch;
        delivered += u64::from(r.delivered_records());
    }
    let mut requests: BTreeMap<u64, i64> = BTreeMap::new();
    for d in h.provider.deliveries() {
        if d.kind == crate::ports::QuotaKind::Batch {
            requests.insert(d.request, d.at.timestamp());
        }
    }
    let day = Day {
        batches: requests.values().map(|&t| (t, 1)).collect(),
        over_limit: h.provider.over_limit(),
        adopted_batch,
        delivered,
    };
    (h, day)
}

/// Rule (the problem): in fixed mode the carried-over burst at 40 minutes and the next window's share
/// overlap in one rolling hour, which the provider counts — it refuses requests (429, spending the fixed
/// window) and its headers raise the ledger for the rest of the window.
#[tokio::test]
async fn fixed_mode_runs_into_a_rolling_provider_after_a_quiet_spell() {
    let (_, fixed) = quiet_then_backlog(QuotaModel::Fixed).await;
    assert!(fixed.over_limit > 0, "no request refused");
    assert!(fixed.adopted_batch > 0, "no batch units adopted");
}

/// Rule: in rolling mode no hour-long interval ever holds more than the limit by the provider's own
/// count — nothing refused, nothing adopted — and the backlog still drains at the limit's even rate,
/// faster than fixed mode does against the same provider.
#[tokio::test]
async fn rolling_mode_never_exceeds_a_rolling_providers_limit() {
    let (h, rolling) = quiet_then_backlog(QuotaModel::Rolling).await;
    assert_eq!(rolling.over_limit, 0);
    assert_eq!(rolling.adopted_batch, 0);
    assert!(most_in_any_interval(&rolling.batches, 3_600) <= 5);
    // 180 minutes of backlog at 5 batches per 61 minutes and 60 individual requests per hour, of 100
    // records a batch: at least 14 batches and 170 individual requests.
    assert!(
        rolling.batches.len() >= 14,
        "{} batches",
        rolling.batches.len()
    );
    assert!(
        rolling.delivered >= 14 * 100 + 170,
        "{} delivered",
        rolling.delivered
    );
    assert_eq!(h.provider.users_twice_in_one_request(), 0);
    let (_, fixed) = quiet_then_backlog(QuotaModel::Fixed).await;
    assert!(
        rolling.delivered > fixed.delivered,
        "{} vs {}",
        rolling.delivered,
        fixed.delivered
    );
}
