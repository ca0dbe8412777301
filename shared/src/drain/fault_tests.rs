//! Faults that are not a change's fault, over the virtual clock: outages, unindexed rejections, 429s by
//! meaning, lost leases, deadlines, failed and hanging calls. Each test names the rule it guards; the
//! property test at the end runs random fault scripts through the real sequence of runs.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::tests::{Harness, harness, small, start};
use super::*;
use crate::adapters::memory::{Fault, Op};
use crate::config::Limits;
use crate::domain::{Change, ChangeMessage};
use crate::ports::{ChangeQueue, ProviderError, QuotaKind, QuotaLedger};

/// Runs ticks (a minute apart) until the queue is empty or `max` ticks have passed; returns the reports.
async fn run_until_empty(h: &Harness, max: usize) -> Vec<DrainReport> {
    let mut reports = Vec::new();
    for _ in 0..max {
        if h.queue.is_empty() {
            break;
        }
        reports.push(h.tick().await);
    }
    reports
}

/// The invariant behind "an outage costs nothing but time": the attempt count that decides
/// `retries_exhausted` never runs ahead of the real provider calls that carried the change (+1 for the
/// receive in progress, + the runs that crashed while holding it).
fn assert_attempts_follow_calls(h: &Harness, changes: &[Change], crashes: u32) {
    let seen = h.queue.attempts_by_body();
    let calls = h.provider.attempts_by_email();
    for c in changes {
        let body = ChangeMessage::V1(c.clone()).to_body();
        let counted = seen.get(&body).copied().unwrap_or(0);
        let real = calls.get(c.email.as_str()).copied().unwrap_or(0);
        assert!(
            counted <= real + 1 + crashes,
            "{}: counted {counted} attempts for {real} provider calls",
            c.email.as_str()
        );
    }
}

fn latest_names(changes: &[Change]) -> BTreeMap<String, (DateTime<Utc>, String)> {
    let mut latest: BTreeMap<String, (DateTime<Utc>, String)> = BTreeMap::new();
    for c in changes {
        let e = latest
            .entry(c.email.as_str().to_string())
            .or_insert((c.occurred_at, String::new()));
        if c.occurred_at >= e.0 {
            *e = (c.occurred_at, c.name.clone().unwrap_or_default());
        }
    }
    latest
}

/// Rule (point 1): a provider outage of any length moves nothing toward the DLQ. While the circuit is
/// open no run receives anything; one probe per cool-down (5 min doubling to 1 h) touches no message;
/// the failure count is kept across runs; the first successful probe closes the circuit.
#[tokio::test]
async fn an_outage_of_a_day_moves_nothing_toward_the_dlq() {
    let h = harness(Limits::default(), 1_000);
    let mut changes = Vec::new();
    for i in 0..900 {
        changes.push(h.enqueue(
            &format!("u{}@x.io", i % 300),
            i64::from(i),
            &format!("v{i}"),
        ));
    }
    let outage_end = start() + chrono::Duration::hours(24);
    h.provider.down_until(outage_end);
    let mut receives_while_open = 0;
    let mut opened = false;
    while h.clock.now() < outage_end {
        let r = h.tick().await;
        if opened {
            receives_while_open += r.received;
        }
        opened |= r.circuit_opened;
    }
    assert_eq!(receives_while_open, 0, "no receive once the circuit opened");
    // The runs that detected it (3 consecutive failed calls; here one batch per run) were real attempts.
    assert!(h.queue.receives_by_body().values().all(|&n| n <= 3));
    let calls_during = h.provider.calls_while_down();
    let probes = h.provider.probes();
    // The first run's first wave (10 parallel calls) detects it; then one probe per cool-down.
    assert!(
        calls_during <= 10 + probes,
        "{calls_during} calls, {probes} probes"
    );
    assert!((20..=30).contains(&probes), "{probes} probes in 24 h");
    assert!(h.store.circuit_state().failures >= 3);

    run_until_empty(&h, 120).await;
    assert!(h.queue.is_empty(), "{} left", h.queue.len());
    assert!(h.queue.dead_letters().is_empty());
    assert_eq!(h.store.circuit_state(), Default::default(), "closed");
    for (email, (_, name)) in latest_names(&changes) {
        assert_eq!(h.provider_name(&email), Some(name));
    }
    assert_attempts_follow_calls(&h, &changes, 0);
    assert_eq!(h.provider.over_limit(), 0);
}

fn isolation_limits() -> Limits {
    Limits {
        batch_per_window: 20,
        individual_per_window: 60,
        batch_size: 100,
        window_seconds: 3_600,
        ..Limits::default()
    }
}

/// Rule (point 2): a rejection that names no record is isolated by splitting the batch until only the bad
/// record remains; only it goes to the DLQ, with the provider's answer, and the circuit never opens.
#[tokio::test]
async fn a_rejection_without_an_index_is_isolated_to_its_record() {
    let h = harness(isolation_limits(), 1_000);
    let mut changes = Vec::new();
    for i in 0..100 {
        changes.push(h.enqueue(&format!("u{i}@x.io"), 0, &format!("v{i}")));
    }
    h.provider.reject_email_unindexed("u37@x.io");
    run_until_empty(&h, 120).await;
    let dlq = h.queue.dead_letters();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].reason.as_deref(), Some("rejected"));
    assert!(dlq[0].body.contains("u37@x.io"));
    assert!(dlq[0].detail.as_deref().unwrap_or("").contains("400"));
    for c in changes.iter().filter(|c| c.email.as_str() != "u37@x.io") {
        assert_eq!(h.provider_name(c.email.as_str()), c.name);
    }
    let calls = h.provider.calls();
    assert!(
        calls.batch + calls.failed <= 1 + 2 * 7,
        "a binary split of 100 costs at most 2·log2(100) requests more: {calls:?}"
    );
    assert_eq!(
        h.store.circuit_state().failures,
        0,
        "a record's fault never opens the circuit"
    );
}

/// Rule (point 2): a rejection naming several records costs one request: all of them go to the DLQ.
#[tokio::test]
async fn a_rejection_naming_several_records_costs_one_request() {
    let h = harness(isolation_limits(), 1_000);
    for i in 0..100 {
        h.enqueue(&format!("u{i}@x.io"), 0, "n");
    }
    for bad in ["u3@x.io", "u50@x.io", "u99@x.io"] {
        h.provider.reject_email(bad);
    }
    let r = h.tick().await;
    assert_eq!(r.dead_lettered, 3);
    assert_eq!(
        h.provider.calls().failed,
        1,
        "one refused request named all three"
    );
    run_until_empty(&h, 60).await;
    assert!(h.queue.is_empty());
    assert_eq!(h.provider.latest().len(), 97);
}

/// Rule (point 3): Drip's same-subscriber 429 retries that record shortly and spends no window.
#[tokio::test]
async fn a_same_subscriber_429_retries_shortly_and_spends_no_window() {
    let h = harness(Limits::default(), 1_000);
    h.enqueue("a@x.io", 0, "A");
    h.provider.script([ProviderError::SubscriberBusy {
        retry_after: Some(Duration::from_secs(5)),
    }]);
    let r = h.tick().await;
    assert_eq!((r.retried, r.rate_limited, r.deferred), (1, 0, 0));
    assert_eq!(
        r.quota_individual.left, 3_599,
        "only the unit the call reserved"
    );
    assert_eq!(h.store.circuit_state().failures, 0);
    let r = h.tick().await;
    assert_eq!(r.delivered_records(), 1);
    assert!(h.queue.is_empty());
}

/// Rule (point 3): a batch-only 429 spends the batch window only; individual requests go on in the same
/// run, and the run after receives no more than the individual allowance can send.
#[tokio::test]
async fn a_batch_429_spends_only_the_batch_window() {
    let h = harness(small(), 1_000);
    let mut changes = Vec::new();
    for i in 0..300 {
        changes.push(h.enqueue(&format!("u{i}@x.io"), 0, "n"));
    }
    h.provider
        .script([ProviderError::RateLimited { retry_after: None }]);
    let r = h.tick().await;
    assert_eq!(r.rate_limited, 1);
    // The run's individual allowance (2 of 60 this early in the window) still went out.
    assert_eq!((r.quota_batch.left, r.requests.individual), (0, 2));
    assert!(r.deferred > 0);
    let r = h.tick().await;
    assert!(
        r.planned_receive <= 2,
        "only what the individual allowance can send: {r:?}"
    );
    assert_attempts_follow_calls(&h, &changes, 0);
    assert!(h.queue.dead_letters().is_empty());
}

/// Rule (point 3): `Retry-After` is honoured: every window up to it is spent for that kind.
#[tokio::test]
async fn retry_after_spends_every_window_up_to_it() {
    let h = harness(Limits::default(), 1_000);
    h.enqueue("a@x.io", 0, "A");
    h.provider.script([ProviderError::RateLimited {
        retry_after: Some(Duration::from_secs(2 * 3_600)),
    }]);
    h.tick().await;
    let next = Window::containing(h.clock.now(), 3_600).next();
    assert_eq!(
        h.store.used(QuotaKind::Individual, next).await.unwrap(),
        3_600,
        "the next window is spent too"
    );
    assert_eq!(h.store.used(QuotaKind::Batch, next).await.unwrap(), 0);
}

/// Rule (point 4): a run that lost its lease writes no sync state and deletes nothing; the next run,
/// once the lease and the visibility timeout pass, resends the same value (never an older one).
#[tokio::test]
async fn a_run_that_lost_its_lease_writes_and_deletes_nothing() {
    let h = harness(Limits::default(), 1_000);
    let c = h.enqueue("a@x.io", 0, "A");
    // The renewals before the in-flight note and the call succeed; the one before settling finds
    // another holder.
    h.store.lose_lease_after(2);
    let r = h.tick().await;
    assert!(r.lease_lost);
    assert_eq!(r.delivered_records(), 1);
    assert_eq!((r.deleted, r.deferred, r.retried), (0, 0, 0));
    assert!(h.store.synced(&c.email).is_none(), "no sync state written");
    assert_eq!(h.queue.len(), 1);
    h.clock.advance(Duration::from_secs(120));
    let reports = run_until_empty(&h, 5).await;
    assert!(h.queue.is_empty(), "{reports:?}");
    assert_eq!(h.provider_name("a@x.io").as_deref(), Some("A"));
}

/// Rule (point 4): no provider call starts within the send margin of the deadline, even when calls are
/// slow; what is left is held (a fresh copy), not released to be received again at once.
#[tokio::test]
async fn no_call_starts_near_the_deadline() {
    let h = harness(Limits::default(), 1_000);
    for i in 0..100 {
        h.enqueue(&format!("u{i}@x.io"), 0, "n");
    }
    let clock = h.clock.clone();
    h.provider
        .on_call(move || clock.advance(Duration::from_secs(2)));
    let deadline = h.clock.now() + chrono::Duration::seconds(50);
    let r = h.drain.run(deadline).await.unwrap();
    let margin = chrono::Duration::seconds(5);
    let deliveries = h.provider.deliveries();
    assert!(!deliveries.is_empty());
    // A call's record is stamped when it answers (2 s after it started).
    assert!(
        deliveries
            .iter()
            .all(|d| d.at <= deadline - margin + chrono::Duration::seconds(2)),
        "a call started inside the margin"
    );
    assert_eq!(r.deferred, 100 - r.delivered_records());
    assert_eq!(
        h.queue.backlog().await.unwrap().visible,
        0,
        "held, not released at once"
    );
}

/// Rule (point 6): each change is counted once however often it is received, and a change dead-lettered
/// after its attempts ran out is counted — `pending` reaches 0.
#[tokio::test]
async fn request_progress_counts_each_change_once() {
    let h = harness(Limits::default(), 1_000);
    let a = h.enqueue("a@x.io", 0, "A");
    let b = h.enqueue("b@x.io", 0, "B");
    // Crash after the progress write, before the delete: both come back.
    h.faults.inject(Op::Delete, Fault::Hang, 1);
    let deadline = h.clock.now() + chrono::Duration::seconds(50);
    let crashed = tokio::time::timeout(Duration::from_millis(200), h.drain.run(deadline)).await;
    assert!(crashed.is_err());
    h.clock.advance(Duration::from_secs(121));
    run_until_empty(&h, 5).await;
    for c in [&a, &b] {
        let p = h.status(c).await;
        assert_eq!((p.delivered, p.skipped, p.dead_lettered), (1, 0, 0));
    }

    // A record the provider always fails transiently: dead-lettered after MAX_RECEIVE_COUNT attempts.
    let bad = h.enqueue("bad@x.io", 0, "X");
    h.provider.fail_email("bad@x.io");
    run_until_empty(&h, 600).await;
    let dlq = h.queue.dead_letters();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].reason.as_deref(), Some("retries_exhausted"));
    assert_eq!(dlq[0].receive_count, 10);
    assert_eq!(
        h.provider.attempts_by_email().get("bad@x.io").copied(),
        Some(10),
        "exactly MAX_RECEIVE_COUNT real attempts"
    );
    let p = h.status(&bad).await;
    assert_eq!(p.dead_lettered, 1);
    assert_eq!(
        h.store.progress(&bad.request_id).unwrap().dead_lettered,
        1,
        "a dead letter is written"
    );
}

/// Rule (point 7): a backlog beyond what the window can still carry is reported (`Overloaded`).
#[tokio::test]
async fn an_overload_is_reported() {
    let h = harness(small(), 1_000);
    for i in 0..2_000 {
        h.enqueue(&format!("u{i}@x.io"), 0, "n");
    }
    let r = h.tick().await;
    assert_eq!(r.window_records_left, 5 * 100 + 60);
    assert_eq!(r.backlog_over_capacity(), 2_000 - 560);
    assert!(r.emf("s", 0).contains(r#""Overloaded":1.0"#));
    let h = harness(small(), 1_000);
    h.enqueue("a@x.io", 0, "n");
    assert_eq!(h.tick().await.backlog_over_capacity(), 0);
}

/// One step of a random fault script, applied before a tick.
#[derive(Debug, Clone)]
enum Step {
    Quiet,
    /// The provider is down for this many minutes.
    Outage(u32),
    /// The next calls fail with 5xx.
    Errors(u8),
    SubscriberBusy,
    RateLimited,
    Fail(Op),
    /// The run hangs at its n-th port call and is dropped there.
    Crash(u32),
    LoseLease(u32),
    /// New changes arrive.
    Traffic(u8),
}

fn step() -> impl Strategy<Value = Step> {
    let op = prop_oneof![
        Just(Op::Receive),
        Just(Op::Delete),
        Just(Op::Release),
        Just(Op::Requeue),
        Just(Op::DeadLetter),
        Just(Op::SyncLoad),
        Just(Op::SyncRecord),
        Just(Op::Progress),
        Just(Op::Reserve),
        Just(Op::Circuit),
    ];
    prop_oneof![
        4 => Just(Step::Quiet),
        1 => (5u32..240).prop_map(Step::Outage),
        2 => (1u8..12).prop_map(Step::Errors),
        1 => Just(Step::SubscriberBusy),
        1 => Just(Step::RateLimited),
        2 => op.prop_map(Step::Fail),
        1 => (0u32..30).prop_map(Step::Crash),
        1 => (0u32..3).prop_map(Step::LoseLease),
        2 => (1u8..40).prop_map(Step::Traffic),
    ]
}

/// Runs one script, then recovers with no faults, and checks the drain's promises.
async fn run_script(steps: Vec<Step>) {
    let h = harness(small(), 1_000);
    let mut changes: Vec<Change> = Vec::new();
    let mut n = 0i64;
    let mut enqueue = |h: &Harness, count: u8, changes: &mut Vec<Change>| {
        for _ in 0..count {
            // Few users, many changes each: coalescing, stale guards and ties all come into play.
            changes.push(h.enqueue(&format!("u{}@x.io", n % 17), n, &format!("v{n}")));
            n += 1;
        }
    };
    enqueue(&h, 60, &mut changes);
    let mut crashes = 0;
    for s in steps {
        match s {
            Step::Quiet => {}
            Step::Outage(minutes) => h
                .provider
                .down_until(h.clock.now() + chrono::Duration::minutes(i64::from(minutes))),
            Step::Errors(k) => h
                .provider
                .script((0..k).map(|_| ProviderError::transient("HTTP 503"))),
            Step::SubscriberBusy => h
                .provider
                .script([ProviderError::SubscriberBusy { retry_after: None }]),
            Step::RateLimited => h
                .provider
                .script([ProviderError::RateLimited { retry_after: None }]),
            Step::Fail(op) => h.faults.inject(op, Fault::Fail, 1),
            Step::Crash(at) => {
                h.faults.crash_after(at);
                crashes += 1;
            }
            Step::LoseLease(after) => h.store.lose_lease_after(after),
            Step::Traffic(k) => enqueue(&h, k, &mut changes),
        }
        let deadline = h.clock.now() + chrono::Duration::seconds(50);
        // A crash leaves the run hanging: drop it, as Lambda would at its timeout.
        let _ = tokio::time::timeout(Duration::from_millis(100), h.drain.run(deadline)).await;
        h.faults.clear();
        h.clock.advance(Duration::from_secs(60));
    }
    // Recovery: no faults, enough time for every window and backoff to pass.
    h.provider.down_until(h.clock.now());
    h.provider.clear_script();
    for _ in 0..(24 * 60) {
        if h.queue.is_empty() {
            break;
        }
        h.tick().await;
    }

    assert!(h.queue.is_empty(), "{} messages left", h.queue.len());
    // Nothing lost: each user's latest value is at the provider, or the user has a dead letter with a
    // reason (only a record's own fault puts it there; this script has none, so the DLQ is empty).
    let dlq = h.queue.dead_letters();
    assert!(
        dlq.is_empty(),
        "faults that are not a change's fault dead-lettered {dlq:?}"
    );
    for (email, (_, name)) in latest_names(&changes) {
        assert_eq!(h.provider_name(&email), Some(name), "{email}");
    }
    // Never an older value at the provider than one delivered before it.
    let when: HashMap<String, DateTime<Utc>> = changes
        .iter()
        .map(|c| (c.name.clone().unwrap_or_default(), c.occurred_at))
        .collect();
    let mut last: HashMap<String, DateTime<Utc>> = HashMap::new();
    for d in h.provider.deliveries() {
        let Some(name) = d.subscriber.name.as_ref() else {
            continue;
        };
        let t = when[name];
        if let Some(prev) = last.insert(d.subscriber.email.clone(), t) {
            assert!(
                t >= prev,
                "{}: {name} overwrote a newer value",
                d.subscriber.email
            );
        }
    }
    assert_eq!(
        h.provider.over_limit(),
        0,
        "the ledger never let a call over the limit"
    );
    assert_eq!(h.provider.users_twice_in_one_request(), 0);
    assert_attempts_follow_calls(&h, &changes, crashes);
}

proptest! {
    // 48 scripts per run (PROPTEST_CASES raises it for a longer search).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    /// Rules (points 1–4, 6): over random fault scripts — outages, 5xx runs, same-subscriber and account
    /// 429s, failed deletes/visibility changes/re-queues/DLQ sends/state writes, a crash at any step, a
    /// lease lost mid-run — nothing is lost, nothing goes to the DLQ, no older value overwrites a newer
    /// one, the provider never sees a call over its limit, and a change's attempt count never runs ahead
    /// of its real provider calls (+1 for the receive in progress, + one per crash).
    #[test]
    fn random_fault_scripts_lose_nothing_and_spend_no_retries(steps in proptest::collection::vec(step(), 1..40)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(run_script(steps));
    }
}
