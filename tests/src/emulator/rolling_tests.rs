//! The emulator counting a rolling window (`quota_model: rolling`), on explicit times: a request is
//! refused while the limit's worth were accepted in the window before it, whatever the clock hour.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};

use super::EmulatorConfig;
use super::model::{Kind, QuotaModel};
use super::state::Shared;

/// An hour boundary (500,000 × 3,600).
const HOUR: i64 = 1_800_000_000;

fn at(offset_s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(HOUR + offset_s, 0).unwrap()
}

fn provider(quota_model: QuotaModel) -> std::sync::Arc<Shared> {
    Shared::new(EmulatorConfig {
        batch_limit: 3,
        individual_limit: 100,
        window_seconds: 3_600,
        quota_model,
        ..EmulatorConfig::default()
    })
}

/// Rule: three batches late in one clock hour leave none for the start of the next under a rolling
/// count — a fixed count would grant three more at once — and each comes back one window after it went.
#[test]
fn a_rolling_window_frees_each_request_one_window_after_it() {
    let rolling = provider(QuotaModel::Rolling);
    for (t, left) in [(3_000, 2), (3_300, 1), (3_500, 0)] {
        assert_eq!(rolling.try_consume(Kind::Batch, at(t)).ok(), Some(left));
    }
    let refused = rolling.try_consume(Kind::Batch, at(3_700)).err().unwrap();
    // The oldest (at 3,000) leaves the window at 6,600.
    assert_eq!(refused.retry_after_seconds, 2_900);
    assert_eq!(rolling.remaining(Kind::Batch, at(6_599)), 0);
    assert_eq!(rolling.remaining(Kind::Batch, at(6_600)), 1);
    assert_eq!(rolling.try_consume(Kind::Batch, at(6_600)).ok(), Some(0));
    assert_eq!(rolling.remaining(Kind::Individual, at(6_600)), 100);
    let stats = rolling.stats(at(6_600));
    assert_eq!(stats.over_limit, 1);
    assert_eq!(
        (stats.quota.batch.used, stats.quota_model),
        (3, QuotaModel::Rolling)
    );
    assert_eq!(stats.window_start, at(3_000));

    let fixed = provider(QuotaModel::Fixed);
    for t in [3_000, 3_300, 3_500] {
        assert!(fixed.try_consume(Kind::Batch, at(t)).is_ok());
    }
    // The clock hour turned: three more inside the same rolling hour.
    assert_eq!(fixed.try_consume(Kind::Batch, at(3_700)).ok(), Some(2));
}

/// Rule: a refund gives back the request just counted, in a rolling window too.
#[test]
fn a_refund_gives_back_the_latest_request() {
    let rolling = provider(QuotaModel::Rolling);
    assert_eq!(rolling.try_consume(Kind::Batch, at(0)).ok(), Some(2));
    assert_eq!(rolling.try_consume(Kind::Batch, at(10)).ok(), Some(1));
    rolling.refund(Kind::Batch, at(10));
    assert_eq!(rolling.remaining(Kind::Batch, at(10)), 2);
    // The first still leaves at 3,600.
    assert_eq!(rolling.remaining(Kind::Batch, at(3_600)), 3);
}
