//! The account shared with another client (`other_client_percent`), on explicit times: its requests take
//! their share of each window evenly, show in what is left (the `X-RateLimit-Remaining` figure), and stop
//! when the window is full.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};

use super::EmulatorConfig;
use super::model::Kind;
use super::state::Shared;

/// An hour boundary (500,000 × 3,600).
const HOUR: i64 = 1_800_000_000;

fn at(offset_s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(HOUR + offset_s, 0).unwrap()
}

fn shared(percent: u64) -> std::sync::Arc<Shared> {
    Shared::new(EmulatorConfig {
        batch_limit: 10,
        individual_limit: 100,
        window_seconds: 3_600,
        other_client_percent: percent,
        ..EmulatorConfig::default()
    })
}

/// Rule: the other client has spent its share pro rata by the time of each request, and what is left
/// (the header's figure) says so.
#[test]
fn the_other_clients_requests_show_in_what_is_left() {
    let app = shared(20);
    // Half an hour in: 20 % × 100 × ½ = 10 individual requests, 20 % × 10 × ½ = 1 batch.
    assert_eq!(
        app.try_consume(Kind::Individual, at(1_800)).ok().unwrap(),
        89
    );
    assert_eq!(app.try_consume(Kind::Batch, at(1_800)).ok().unwrap(), 8);
    let stats = app.stats(at(1_800));
    assert_eq!(
        (
            stats.other_client_requests.individual,
            stats.other_client_requests.batch
        ),
        (10, 1)
    );
    assert_eq!(
        stats.requests.total(),
        0,
        "the other client's requests are not ours"
    );
    // The next window starts empty again, for both clients.
    assert_eq!(app.remaining(Kind::Individual, at(3_600)), 100);
    assert_eq!(app.remaining(Kind::Individual, at(3_600 + 900)), 95);
}

/// Rule: without a share the quota is ours alone; with one, the window can fill before its end, and
/// then the other client's requests are refused rather than counted past the limit.
#[test]
fn a_full_window_refuses_the_other_client_too() {
    assert_eq!(shared(0).remaining(Kind::Batch, at(3_599)), 10);
    let app = shared(50);
    for _ in 0..9 {
        app.try_consume(Kind::Batch, at(0)).ok().unwrap();
    }
    // By the end of the hour the other client wants 5 batches; only one unit was left.
    assert_eq!(app.remaining(Kind::Batch, at(3_599)), 0);
    assert_eq!(app.stats(at(3_599)).other_client_requests.batch, 1);
    assert!(app.try_consume(Kind::Batch, at(3_599)).is_err());
    assert_eq!(app.stats(at(3_599)).over_limit, 1);
}
