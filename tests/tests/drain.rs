//! The drain end to end on LocalStack (queue, DLQ and table from `template.yaml`) against the provider
//! emulator over HTTP, through the real handler with the real scheduled-event fixture. Each test names the
//! rule it guards; after each, every change is delivered as its latest value or sits in the DLQ with a
//! reason, and the emulator never saw an over-limit request.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use sluice::domain::{Change, RequestId};
use sluice::drain::DrainReport;
use sluice_test_support::changes::name_change;
use sluice_tests::emulator::{EmulatorConfig, Faults};

use common::{TestStack, invoke};

fn change(email: &str, name: &str, occurred_offset_ms: i64) -> Change {
    let mut change = name_change(email, name);
    change.occurred_at += chrono::Duration::milliseconds(occurred_offset_ms);
    change
}

async fn assert_queue_empty(stack: &TestStack) {
    assert_eq!(
        stack.depth(&stack.outputs.queue_url).await,
        (0, 0),
        "messages left on the queue"
    );
}

/// Rules: delivered once, deleted after; the walking skeleton's end to end (would fail if the drain sent
/// nothing, sent twice, or left messages behind).
#[tokio::test]
async fn delivers_each_change_once_and_empties_the_queue() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig::default()).await;
    let changes: Vec<Change> = (0..25)
        .map(|i| change(&format!("u{i}@x.io"), &format!("n{i}"), 0))
        .collect();
    stack.enqueue(&changes).await;
    let drain = stack.drain(&emulator, &[]).await;

    let report = invoke(&drain).await;
    assert_eq!(
        (report.received, report.delivered_records(), report.deleted),
        (25, 25, 25)
    );
    for c in &changes {
        let got = emulator.received_for(c.email.as_str());
        assert_eq!(
            got.len(),
            1,
            "{} delivered {} times",
            c.email.as_str(),
            got.len()
        );
        assert_eq!(got[0].subscriber.name, c.name);
    }
    assert_queue_empty(&stack).await;
    // A second run finds nothing and sends nothing.
    let again = invoke(&drain).await;
    assert_eq!(again.delivered_records(), 0);
    assert_eq!(emulator.received().len(), 25);
    assert_eq!(emulator.stats().over_limit, 0);
    stack.destroy().await;
}

/// Rules: coalescing per email (newest wins), duplicate SQS deliveries collapse, one user once per request.
#[tokio::test]
async fn coalesces_and_collapses_duplicate_deliveries() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig::default()).await;
    let mut changes = Vec::new();
    for i in 0..300 {
        changes.push(change(&format!("u{}@x.io", i % 20), &format!("v{i}"), i));
    }
    stack.enqueue(&changes).await;
    stack.enqueue(&changes[290..]).await; // the same changes delivered twice
    let drain = stack.drain(&emulator, &[]).await;
    let report = invoke(&drain).await;
    assert_eq!((report.received, report.delivered_records()), (310, 20));
    let stats = emulator.stats();
    assert_eq!(
        stats.records.batch + stats.records.individual,
        20,
        "one record per user"
    );
    for u in 0..20 {
        let last = (0..300).filter(|i| i % 20 == u).max().unwrap();
        assert_eq!(
            emulator.latest()[&format!("u{u}@x.io")].name,
            Some(format!("v{last}"))
        );
    }
    assert_eq!(emulator.stats().duplicate_emails_in_request, 0);
    assert_queue_empty(&stack).await;
    stack.destroy().await;
}

/// Rule: a crash after the provider call but before the delete — SQS hands the old message out again —
/// must not send stale data: the redelivered, older change is dropped against the synced state.
#[tokio::test]
async fn a_redelivered_old_change_never_overwrites_a_newer_one() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig::default()).await;
    let drain = stack.drain(&emulator, &[]).await;
    let old = change("a@x.io", "old", 0);
    stack.enqueue(std::slice::from_ref(&old)).await;
    invoke(&drain).await;
    stack.enqueue(&[change("a@x.io", "new", 1_000)]).await;
    invoke(&drain).await;
    stack.enqueue(&[old]).await; // the redelivery
    let report = invoke(&drain).await;
    assert_eq!(
        (
            report.delivered_records(),
            report.skipped_stale,
            report.absorbed
        ),
        (0, 1, 1)
    );
    assert_eq!(emulator.latest()["a@x.io"].name.as_deref(), Some("new"));
    assert_eq!(emulator.received().len(), 2);
    assert_queue_empty(&stack).await;
    stack.destroy().await;
}

/// Rules: 422 on one record of a batch → its messages to the DLQ with reason and original body; the rest
/// of the batch delivered. A malformed message → DLQ at once.
#[tokio::test]
async fn rejected_and_malformed_messages_go_to_the_dlq_with_a_reason() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig::default()).await;
    let mut faults = Faults::default();
    faults.reject_emails.insert("bad@x.io".into());
    emulator.set_faults(faults);
    let mut changes: Vec<Change> = (0..120)
        .map(|i| change(&format!("u{i}@x.io"), "n", 0))
        .collect();
    changes.push(change("bad@x.io", "n", 0));
    stack.enqueue(&changes).await;
    stack
        .send(
            &stack.outputs.queue_url,
            &["{\"v\":\"1\",\"email\":".to_string()],
        )
        .await;
    let drain = stack.drain(&emulator, &[]).await;
    let report = invoke(&drain).await;
    assert_eq!(report.dead_lettered, 2);
    assert_eq!(report.delivered_records(), 120);
    let dlq = stack.dead_letters().await;
    assert_eq!(dlq.len(), 2);
    let reasons: Vec<&str> = dlq
        .iter()
        .map(|(_, a)| a["sluice.reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"rejected") && reasons.contains(&"malformed"),
        "{reasons:?}"
    );
    let rejected = dlq
        .iter()
        .find(|(_, a)| a["sluice.reason"] == "rejected")
        .unwrap();
    assert!(rejected.0.contains("bad@x.io"), "original body kept");
    assert!(
        rejected.1["sluice.detail"].contains("subscribers["),
        "{}",
        rejected.1["sluice.detail"]
    );
    assert!(emulator.received_for("bad@x.io").is_empty());
    assert_queue_empty(&stack).await;
    stack.destroy().await;
}

/// Rules (issue 10, point 1): a provider outage of many cool-downs moves nothing toward the DLQ. The
/// first failed calls open the circuit; while it is open no run receives a message; one half-open probe
/// per cool-down touches none; once the provider answers, the probe closes the circuit and every latest
/// value arrives. Runs are invoked once a second, so the test does not depend on where in a window it
/// starts (a run inside a window's end guard just waits for the next one).
#[tokio::test]
async fn an_outage_of_many_cool_downs_dead_letters_nothing() {
    let stack = common::stack().await;
    // 20 s windows: a 10 s first cool-down, doubling to 20 s.
    let emulator = common::emulator(EmulatorConfig {
        window_seconds: 20,
        ..EmulatorConfig::default()
    })
    .await;
    emulator.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let changes: Vec<Change> = (0..300)
        .map(|i| change(&format!("u{}@x.io", i % 100), &format!("v{i}"), i))
        .collect();
    stack.enqueue(&changes).await;
    let drain = stack
        .drain(&emulator, &[("QUOTA_WINDOW_SECONDS", "20")])
        .await;

    let outage = std::time::Instant::now() + Duration::from_secs(75);
    let (mut opened, mut received_while_open, mut probes) = (false, 0, 0);
    while std::time::Instant::now() < outage {
        let r = invoke(&drain).await;
        if opened {
            received_while_open += r.received;
        }
        opened |= r.circuit_opened;
        probes += r.calls.probe;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(opened, "the outage was detected");
    assert_eq!(
        received_while_open, 0,
        "no receive while the circuit was open"
    );
    assert!(probes >= 3, "{probes} probes: several cool-downs passed");
    let failed_calls = emulator.stats().rejected_5xx_injected;
    assert!(
        failed_calls <= 10 + 2 + u64::from(probes),
        "{failed_calls} calls during the outage"
    );

    emulator.set_faults(Faults::default());
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while emulator.latest().len() < 100 && std::time::Instant::now() < deadline {
        invoke(&drain).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let latest = emulator.latest();
    for u in 0..100 {
        let last = (0..300).filter(|i| i % 100 == u).max().unwrap();
        assert_eq!(
            latest
                .get(&format!("u{u}@x.io"))
                .and_then(|s| s.name.clone()),
            Some(format!("v{last}"))
        );
    }
    // Messages of users already delivered may still be settling (copies, backoff): a few more runs.
    for _ in 0..30 {
        if stack.depth(&stack.outputs.queue_url).await == (0, 0) {
            break;
        }
        invoke(&drain).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_queue_empty(&stack).await;
    assert!(
        stack.dead_letters().await.is_empty(),
        "nothing dead-lettered"
    );
    assert_eq!(emulator.stats().over_limit, 0);
    stack.destroy().await;
}

/// Rules: a 429 mid-window marks the window spent (no further calls in it); the rest arrives in the next
/// window; windows roll over with a short QUOTA_WINDOW_SECONDS; the emulator never sees an over-limit call.
#[tokio::test]
async fn a_429_and_window_rollover_stay_within_limits() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig {
        batch_limit: 1,
        individual_limit: 3,
        window_seconds: 10,
        ..EmulatorConfig::default()
    })
    .await;
    emulator.set_faults(Faults::forced(429, 1));
    let changes: Vec<Change> = (0..12)
        .map(|i| change(&format!("u{i}@x.io"), "n", 0))
        .collect();
    stack.enqueue(&changes).await;
    let drain = stack
        .drain(
            &emulator,
            &[("BATCH_SIZE", "3"), ("DRAIN_INTERVAL_SECONDS", "1")],
        )
        .await;
    let mut rate_limited = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while emulator.latest().len() < 12 && std::time::Instant::now() < deadline {
        rate_limited += invoke(&drain).await.rate_limited;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(
        rate_limited, 1,
        "the forced 429 was met once and the window then treated as spent"
    );
    assert_eq!(emulator.latest().len(), 12);
    let stats = emulator.stats();
    assert_eq!(stats.over_limit, 0, "{stats:?}");
    assert_queue_empty(&stack).await;
    stack.destroy().await;
}

/// Rule: single flight and the ledger — 8 drains started at once against one table deliver everything
/// once, and the provider never sees more calls than the limits allow.
#[tokio::test]
async fn eight_drains_at_once_never_overshoot() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig {
        batch_limit: 2,
        individual_limit: 5,
        window_seconds: 3_600,
        ..EmulatorConfig::default()
    })
    .await;
    let changes: Vec<Change> = (0..400)
        .map(|i| change(&format!("u{i}@x.io"), "n", 0))
        .collect();
    stack.enqueue(&changes).await;
    let mut drains = Vec::new();
    for _ in 0..8 {
        // One run per window: the whole window's quota is due at once, so every drain would take all of it.
        drains.push(
            stack
                .drain(
                    &emulator,
                    &[("BATCH_SIZE", "100"), ("DRAIN_INTERVAL_SECONDS", "3600")],
                )
                .await,
        );
    }
    let mut delivered = 0;
    for _round in 0..3 {
        let reports = futures::future::join_all(drains.iter().map(invoke)).await;
        delivered += reports
            .iter()
            .map(DrainReport::delivered_records)
            .sum::<u32>();
    }
    let stats = emulator.stats();
    assert_eq!(stats.over_limit, 0, "{stats:?}");
    assert_eq!(
        (stats.requests.batch, stats.requests.individual),
        (2, 5),
        "{stats:?}"
    );
    assert_eq!(delivered, 205, "2 batches of 100 and 5 individual requests");
    // Each record arrived once.
    let received = emulator.received();
    let mut emails: Vec<&str> = received
        .iter()
        .map(|r| r.subscriber.email.as_str())
        .collect();
    emails.sort_unstable();
    emails.dedup();
    assert_eq!(emails.len(), 205);
    // Quota before receive: what could not be sent was never received.
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (195, 0));
    stack.destroy().await;
}

/// Rule: the ledger itself never overshoots under concurrent reservations (no lease involved).
#[tokio::test]
async fn concurrent_reservations_never_exceed_the_limit() {
    use sluice::adapters::dynamo::DynamoState;
    use sluice::ports::{QuotaKind, QuotaLedger, Reservation, Window};
    let stack = common::stack().await;
    let ledger = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let window = Window::containing(Utc::now(), 3_600);
    let tasks = (0..16).map(|_| {
        let ledger = ledger.clone();
        async move {
            let mut granted = 0u32;
            for _ in 0..10 {
                if let Reservation::Granted { .. } = ledger
                    .reserve(QuotaKind::Individual, window, 1, 50)
                    .await
                    .unwrap()
                {
                    granted += 1;
                }
            }
            granted
        }
    });
    let total: u32 = futures::future::join_all(tasks).await.into_iter().sum();
    assert_eq!(total, 50);
    assert_eq!(
        ledger.used(QuotaKind::Individual, window).await.unwrap(),
        50
    );
    stack.destroy().await;
}

/// Rule: adopting the provider's count raises the ledger only, counts exactly what it added, and never
/// overwrites a concurrent reservation: afterwards `used` is every granted reservation plus every adopted
/// unit. (A fixed window: the ledger does not read the clock, so where the wall clock is does not matter.)
#[tokio::test]
async fn adoption_raises_the_ledger_without_losing_concurrent_reservations() {
    use sluice::adapters::dynamo::DynamoState;
    use sluice::ports::{QuotaKind, QuotaLedger, QuotaModel, Reservation, Window};
    let stack = common::stack().await;
    let ledger = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let window = Window {
        start: 1_800_000_000,
        length: 3_600,
        model: QuotaModel::Fixed,
    };
    let kind = QuotaKind::Individual;
    ledger.reserve(kind, window, 10, 500).await.unwrap();
    assert_eq!(ledger.adopt(kind, window, 30, 500).await.unwrap(), 20);
    assert_eq!(
        ledger.adopt(kind, window, 25, 500).await.unwrap(),
        0,
        "never lowered"
    );
    let usage = ledger.usage(kind, window).await.unwrap();
    assert_eq!((usage.used, usage.adopted), (30, 20));

    let reservers = (0..6).map(|_| {
        let ledger = ledger.clone();
        async move {
            let mut granted = 0u32;
            for _ in 0..10 {
                if let Reservation::Granted { .. } =
                    ledger.reserve(kind, window, 1, 500).await.unwrap()
                {
                    granted += 1;
                }
            }
            (granted, 0u32)
        }
    });
    let adopter = {
        let ledger = ledger.clone();
        async move {
            let mut added = 0u32;
            for target in [45, 60, 75, 90, 105] {
                added += ledger.adopt(kind, window, target, 500).await.unwrap();
            }
            (0u32, added)
        }
    };
    let (mut all, adopted) = futures::join!(futures::future::join_all(reservers), adopter);
    all.push(adopted);
    let granted: u32 = all.iter().map(|(g, _)| g).sum();
    let added: u32 = all.iter().map(|(_, a)| a).sum();
    let usage = ledger.usage(kind, window).await.unwrap();
    assert_eq!(granted, 60);
    assert_eq!(usage.used, 30 + granted + added, "{usage:?}, added {added}");
    assert_eq!(usage.adopted, 20 + added);
    stack.destroy().await;
}

/// Measured (issue 11), not asserted: the wall time of one drain run of 1,000 messages of 1,000 users
/// (one batch, one ingest request) against LocalStack. Run it with
/// `cargo test -p sluice-tests --test drain -- --ignored --nocapture a_drain_of_1000_users`.
#[tokio::test]
#[ignore = "a timing, printed: run with --ignored --nocapture"]
async fn a_drain_of_1000_users_is_timed() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig {
        batch_limit: 3_600,
        individual_limit: 0,
        ..EmulatorConfig::default()
    })
    .await;
    let drain = stack
        .drain(
            &emulator,
            &[
                ("BATCH_LIMIT_PER_HOUR", "3600"),
                ("INDIVIDUAL_LIMIT_PER_HOUR", "0"),
            ],
        )
        .await;
    for round in 0..3 {
        // One ingest request of 1,000 changes (request progress is then one write, not 1,000).
        let request = RequestId::new();
        let changes: Vec<Change> = (0..1_000)
            .map(|i| Change {
                request_id: request,
                position: i,
                ..change(&format!("u{i}@timed.io"), &format!("n{round}-{i}"), 0)
            })
            .collect();
        stack.enqueue(&changes).await;
        let started = std::time::Instant::now();
        let report = invoke(&drain).await;
        eprintln!(
            "drain of 1,000 messages, 1,000 users (round {round}: {} users): {} ms wall, {} delivered",
            if round == 0 { "new" } else { "known" },
            started.elapsed().as_millis(),
            report.delivered_records()
        );
        assert_eq!(report.delivered_records(), 1_000);
        assert_queue_empty(&stack).await;
    }
    stack.destroy().await;
}
