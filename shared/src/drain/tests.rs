//! Drain engine tests over the in-memory adapters and a virtual clock. Each test names the rule it guards.
//! The same scenarios run against LocalStack and the provider emulator in `tests/tests/drain.rs`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};

use super::*;
use crate::adapters::memory::{
    Fault, Faults, ManualClock, MemoryProvider, MemoryQueue, MemoryStore, Op,
};
use crate::config::Limits;
use crate::domain::{Change, ChangeId, ChangeMessage, Email, Priority, RequestId};
use crate::drain::circuit::CircuitPolicy;
use crate::ingest::memory::MemoryRequestStore;
use crate::ports::{DrainAdapters, Lanes, ProviderError, QuotaKind, QuotaLedger, QuotaModel};
use crate::ports::{NewRequest, RequestCounters, RequestStore, TrackedChange};

pub(super) type Ports = DrainAdapters<
    MemoryQueue<ManualClock>,
    MemoryStore,
    MemoryStore,
    MemoryProvider<ManualClock>,
    ManualClock,
    MemoryStore,
    MemoryStore,
    MemoryStore,
>;

pub(super) struct Harness {
    pub(super) clock: ManualClock,
    /// The normal lane's queue (every lane's, unless the harness has lanes).
    pub(super) queue: MemoryQueue<ManualClock>,
    pub(super) lanes: Lanes<MemoryQueue<ManualClock>>,
    pub(super) store: MemoryStore,
    /// Ingest's request records over `store`: what `GET /v1/requests/{id}` reads.
    pub(super) requests: MemoryRequestStore,
    pub(super) provider: MemoryProvider<ManualClock>,
    pub(super) faults: Faults,
    pub(super) drain: Drain<Ports>,
}

/// A Unix time on an hour boundary (1,800,000,000 = 500,000 × 3,600).
pub(super) const HOUR_START: i64 = 1_800_000_000;

pub(super) fn start() -> DateTime<Utc> {
    // 10 s into an hour window.
    Utc.timestamp_opt(HOUR_START + 10, 0).unwrap()
}

pub(super) fn harness(limits: Limits, max_messages: u32) -> Harness {
    harness_with(limits, max_messages, false)
}

/// A harness whose `high` and `bulk` lanes have queues of their own (`with_lanes`), or share the normal one.
pub(super) fn harness_with(limits: Limits, max_messages: u32, with_lanes: bool) -> Harness {
    harness_on(limits, max_messages, with_lanes, QuotaModel::Fixed)
}

/// A harness whose provider counts its limit in `provider_model` (whatever the drain's `limits` say).
pub(super) fn harness_on(
    limits: Limits,
    max_messages: u32,
    with_lanes: bool,
    provider_model: QuotaModel,
) -> Harness {
    let clock = ManualClock::new(start());
    let faults = Faults::default();
    let new_queue = || {
        MemoryQueue::new(clock.clone(), Duration::from_secs(120), 10).with_faults(faults.clone())
    };
    let queue = new_queue();
    let lanes = if with_lanes {
        Lanes::new(new_queue(), queue.clone(), new_queue())
    } else {
        Lanes::single(queue.clone())
    };
    let store = MemoryStore::default().with_faults(faults.clone());
    let provider = MemoryProvider::new(
        clock.clone(),
        limits.batch_per_window,
        limits.individual_per_window,
        limits.window_seconds,
    )
    .counting(provider_model);
    let window = Duration::from_secs(u64::from(limits.window_seconds));
    let settings = DrainSettings {
        limits,
        interval_seconds: 60,
        max_messages,
        backoff_base: Duration::from_secs(30).min(window / 4),
        backoff_cap: Duration::from_secs(900).min(window),
        circuit: CircuitPolicy {
            threshold: 3,
            cool_down: Duration::from_secs(300).min(window / 2),
            cool_down_cap: Duration::from_secs(3_600).min(window),
        },
        individual_concurrency: 10,
        send_margin: Duration::from_secs(5),
        settle_margin: Duration::from_secs(1),
        lease_length: Duration::from_secs(25),
        max_attempts: 10,
        busy_retry: Duration::from_secs(10),
    };
    let ports = DrainAdapters {
        lanes: lanes.clone(),
        ledger: store.clone(),
        sync_state: store.clone(),
        provider: provider.clone(),
        clock: clock.clone(),
        lease: store.clone(),
        circuit: store.clone(),
        requests: store.clone(),
    };
    Harness {
        clock,
        queue,
        lanes,
        requests: MemoryRequestStore::over(store.clone()),
        store,
        provider,
        faults,
        drain: Drain::new(ports, settings),
    }
}

impl Harness {
    /// A single-change request, as ingest accepts one: its request record, then its message.
    pub(super) fn enqueue(&self, email: &str, occurred_offset_s: i64, name: &str) -> Change {
        let mut change = self.change(email, occurred_offset_s, name);
        change.request_size = Some(1);
        self.record_request(&[change.clone()]);
        self.queue.send(ChangeMessage::V1(change.clone()).to_body());
        change
    }

    /// A change as ingest wrote it before messages carried `request_size` (tracked by the drain's sets).
    pub(super) fn enqueue_without_request_size(
        &self,
        email: &str,
        occurred_offset_s: i64,
        name: &str,
    ) -> Change {
        let change = self.change(email, occurred_offset_s, name);
        self.create_request(change.request_id, 1, None);
        self.queue.send(ChangeMessage::V1(change.clone()).to_body());
        change
    }

    /// Ingest's record of a request of these changes (one request id: the first change's).
    pub(super) fn record_request(&self, changes: &[Change]) {
        if let Some(first) = changes.first() {
            let accepted = u32::try_from(changes.len()).unwrap();
            self.create_request(first.request_id, accepted, TrackedChange::of(changes));
        }
    }

    fn create_request(&self, id: RequestId, accepted: u32, single: Option<TrackedChange>) {
        let now = self.clock.now();
        let request = NewRequest {
            id,
            accepted,
            created_at: now,
            expires_at: now + chrono::Duration::days(7),
            single,
        };
        futures::executor::block_on(self.requests.create(&request)).unwrap();
    }

    /// The request's counters as `GET /v1/requests/{id}` shows them.
    pub(super) async fn status(&self, change: &Change) -> RequestCounters {
        self.requests
            .counters(change.request_id)
            .await
            .unwrap()
            .unwrap()
    }

    /// A change of its own request, not enqueued (no `request_size`: set it for a new message).
    pub(super) fn change(&self, email: &str, occurred_offset_s: i64, name: &str) -> Change {
        Change {
            change_id: ChangeId::new(),
            request_id: RequestId::new(),
            email: Email::parse(email).unwrap(),
            name: Some(name.to_string()),
            time_zone: None,
            custom_fields: BTreeMap::new(),
            occurred_at: self.clock.now() + chrono::Duration::seconds(occurred_offset_s),
            priority: Priority::Normal,
            accepted_at: self.clock.now(),
            position: 0,
            request_size: None,
        }
    }

    /// One scheduled run (deadline 50 s away), then a minute passes.
    pub(super) async fn tick(&self) -> DrainReport {
        let deadline = self.clock.now() + chrono::Duration::seconds(50);
        let report = self.drain.run(deadline).await.unwrap();
        self.clock.advance(Duration::from_secs(60));
        report
    }

    pub(super) fn provider_name(&self, email: &str) -> Option<String> {
        self.provider
            .latest()
            .get(email)
            .and_then(|s| s.name.clone())
    }
}

pub(super) fn small() -> Limits {
    Limits {
        batch_per_window: 5,
        individual_per_window: 60,
        batch_size: 100,
        window_seconds: 3_600,
        ..Limits::default()
    }
}

/// Rule: light load goes out individually at once; messages deleted; progress counted per request.
#[tokio::test]
async fn light_load_is_delivered_individually_in_one_run() {
    let h = harness(Limits::default(), 1_000);
    let a = h.enqueue("a@x.io", 0, "Ann");
    h.enqueue("b@x.io", 0, "Bob");
    let r = h.tick().await;
    assert_eq!(
        (r.received, r.delivered.individual, r.delivered.batch),
        (2, 2, 0)
    );
    assert_eq!(r.requests.individual, 2);
    assert!(h.queue.is_empty());
    assert_eq!(h.provider_name("a@x.io").as_deref(), Some("Ann"));
    assert_eq!(h.status(&a).await.delivered, 1);
    assert!(
        h.store.progress(&a.request_id).is_none(),
        "derived: no progress written"
    );
    assert_eq!(
        (r.quota_individual.used, r.quota_individual.left),
        (2, 3_598)
    );
}

/// Rules: latest wins per field; copies of a user collapse into one record; no user twice in one request;
/// receive tops up while coalescing absorbs messages.
#[tokio::test]
async fn a_backlog_is_coalesced_into_one_record_per_user() {
    let h = harness(Limits::default(), 1_000);
    for i in 0..1_000 {
        h.enqueue(
            &format!("u{}@x.io", i % 150),
            i64::from(i),
            &format!("v{i}"),
        );
    }
    let r = h.tick().await;
    assert_eq!(
        (r.received, r.delivered_records(), r.coalesced),
        (1_000, 150, 850)
    );
    assert!(h.queue.is_empty(), "{} left", h.queue.len());
    for u in 0..150 {
        let last = (0..1_000).filter(|i| i % 150 == u).max().unwrap();
        assert_eq!(
            h.provider_name(&format!("u{u}@x.io")),
            Some(format!("v{last}"))
        );
    }
    assert_eq!(h.provider.users_twice_in_one_request(), 0);
}

/// Rules: over many runs with tight limits, the provider ends with every user's latest value, and never a
/// request over the limit.
#[tokio::test]
async fn a_backlog_under_tight_limits_ends_with_the_latest_values() {
    let h = harness(small(), 1_000);
    for i in 0..1_000 {
        h.enqueue(
            &format!("u{}@x.io", i % 150),
            i64::from(i),
            &format!("v{i}"),
        );
    }
    for _ in 0..120 {
        h.tick().await;
    }
    assert!(h.queue.is_empty(), "{} left", h.queue.len());
    for u in 0..150 {
        let last = (0..1_000).filter(|i| i % 150 == u).max().unwrap();
        assert_eq!(
            h.provider_name(&format!("u{u}@x.io")),
            Some(format!("v{last}"))
        );
    }
    assert_eq!(h.provider.over_limit(), 0);
    assert_eq!(h.provider.users_twice_in_one_request(), 0);
    assert!(h.queue.dead_letters().is_empty());
}

/// Rule: no-ops are not sent; an older change never overwrites a newer synced one.
#[tokio::test]
async fn unchanged_and_stale_changes_are_not_sent() {
    let h = harness(Limits::default(), 1_000);
    h.enqueue("a@x.io", 10, "new");
    h.tick().await;
    h.enqueue("a@x.io", -100, "old"); // older than what was synced
    h.enqueue("b@x.io", 0, "B");
    h.tick().await;
    h.enqueue("b@x.io", 20, "B"); // same value, newer: a no-op
    let r = h.tick().await;
    assert_eq!(r.delivered_records(), 0);
    assert_eq!(r.skipped_unchanged, 1);
    assert_eq!(h.provider_name("a@x.io").as_deref(), Some("new"));
    assert_eq!(h.provider.deliveries().len(), 2);
    assert!(h.queue.is_empty());
}

/// Rule: a crash after the provider call but before the delete must not resend stale data — the retry
/// finds the synced state and drops the redelivered messages as no-ops. The crash is real: the run hangs
/// in its delete call and is dropped there.
#[tokio::test]
async fn a_crash_between_send_and_delete_resends_nothing() {
    let h = harness(Limits::default(), 1_000);
    h.enqueue("a@x.io", 0, "v1");
    h.faults.inject(Op::Delete, Fault::Hang, 1);
    let deadline = h.clock.now() + chrono::Duration::seconds(50);
    let crashed = tokio::time::timeout(Duration::from_millis(200), h.drain.run(deadline)).await;
    assert!(crashed.is_err(), "the run must have hung in its delete");
    assert_eq!(h.provider.deliveries().len(), 1, "sent before the crash");
    // The visibility timeout and the dead run's lease pass; SQS redelivers.
    h.clock.advance(Duration::from_secs(121));
    let r = h.tick().await;
    assert_eq!((r.received, r.absorbed, r.delivered_records()), (1, 1, 0));
    assert_eq!(h.provider.deliveries().len(), 1, "nothing sent twice");
    assert!(h.queue.is_empty());
}

/// Rule: a run writes one in-flight note, which lives only while it guards something: a run that
/// delivers everything unlists it; a record tried without being delivered keeps its line (the provider
/// may hold the value all the same); a run that dies before recording its sync state keeps its whole note.
#[tokio::test]
async fn the_in_flight_note_lives_as_long_as_it_guards() {
    let h = harness(Limits::default(), 1_000);
    let user = |e: &str| Email::parse(e).unwrap();
    h.enqueue("a@x.io", 0, "A");
    h.enqueue("b@x.io", 0, "B");
    assert_eq!(h.tick().await.delivered_records(), 2);
    assert!(h.store.in_flight_notes().is_empty(), "all delivered");

    h.enqueue("c@x.io", 0, "C");
    h.enqueue("d@x.io", 0, "D");
    h.provider.fail_email("d@x.io");
    h.tick().await;
    let notes = h.store.in_flight_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let (name, users) = notes.into_iter().next().unwrap();
    assert!(name.ends_with("-open"), "{name}");
    assert_eq!(users, [user("d@x.io")].into());

    // A run that crashes while recording its sync state (after its calls) leaves its whole note.
    let h = harness(Limits::default(), 1_000);
    h.enqueue("e@x.io", 0, "E");
    h.enqueue("f@x.io", 0, "F");
    // The note goes through (before any call); the sync-state write after the calls hangs.
    let faults = h.faults.clone();
    h.provider
        .on_call(move || faults.inject(Op::SyncRecord, Fault::Hang, 1));
    let deadline = h.clock.now() + chrono::Duration::seconds(50);
    let crashed = tokio::time::timeout(Duration::from_millis(200), h.drain.run(deadline)).await;
    assert!(
        crashed.is_err(),
        "the run must have hung recording its sync state"
    );
    assert_eq!(h.provider.deliveries().len(), 2, "sent before the crash");
    let notes = h.store.in_flight_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        notes.into_values().next().unwrap(),
        [user("e@x.io"), user("f@x.io")].into()
    );
}

/// Rule: 422 → that record's messages go to the DLQ with the reason; the rest of the batch is delivered.
#[tokio::test]
async fn a_rejected_record_is_dead_lettered_and_the_rest_delivered() {
    let h = harness(
        Limits {
            batch_size: 100,
            ..Limits::default()
        },
        1_000,
    );
    for i in 0..300 {
        h.enqueue(&format!("u{i}@x.io"), 0, "n");
    }
    h.provider.reject_email("u7@x.io");
    let mut reports = Vec::new();
    for _ in 0..5 {
        reports.push(h.tick().await);
    }
    assert!(h.queue.is_empty());
    let dlq = h.queue.dead_letters();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].reason.as_deref(), Some("rejected"));
    assert!(dlq[0].body.contains("u7@x.io"));
    assert_eq!(h.provider.latest().len(), 299);
    assert_eq!(reports.iter().map(|r| r.dead_lettered).sum::<u32>(), 1);
    // A rejection says the provider took nothing: it leaves no open in-flight note behind.
    assert!(
        h.store.in_flight_notes().is_empty(),
        "{:?}",
        h.store.in_flight_notes()
    );
}

/// Rule: malformed bodies go to the DLQ at once, with the reason.
#[tokio::test]
async fn a_malformed_message_is_dead_lettered_at_once() {
    let h = harness(Limits::default(), 1_000);
    h.queue.send("{not json".into());
    h.enqueue("a@x.io", 0, "A");
    let r = h.tick().await;
    assert_eq!((r.dead_lettered, r.delivered_records()), (1, 1));
    let dlq = h.queue.dead_letters();
    assert_eq!(
        (dlq[0].reason.as_deref(), dlq[0].body.as_str()),
        (Some("malformed"), "{not json")
    );
    assert!(h.queue.is_empty());
}

/// Rule: transient failures retry with backoff; repeated ones open the circuit and stop calls.
#[tokio::test]
async fn transient_failures_back_off_and_open_the_circuit() {
    let h = harness(Limits::default(), 1_000);
    for i in 0..5 {
        h.enqueue(&format!("u{i}@x.io"), 0, "n");
    }
    h.provider
        .script((0..5).map(|_| ProviderError::transient("503")));
    let r = h.tick().await;
    assert!(r.circuit_opened);
    assert_eq!(r.delivered_records(), 0);
    assert_eq!(r.retried + r.deferred, 5);
    // While the circuit is open the drain makes no calls at all.
    let r = h.tick().await;
    assert_eq!(r.idle, Some(Idle::CircuitOpen));
    // The five went out in one parallel wave and took the five scripted errors. After the cool-down one
    // probe (no message) finds the provider answering: the circuit closes and everything is delivered.
    for _ in 0..30 {
        h.tick().await;
    }
    assert_eq!(h.provider.probes(), 1);
    assert!(h.queue.is_empty());
    assert!(h.queue.dead_letters().is_empty());
    assert_eq!(h.provider.latest().len(), 5);
}

/// Rule: a 429 marks the window spent; messages come back when the next window opens, not before.
#[tokio::test]
async fn a_429_spends_the_window_and_defers_to_the_next() {
    let h = harness(Limits::default(), 1_000);
    // Batch quota already spent this window; the provider then refuses the individual request too.
    let window = Window::containing(h.clock.now(), 3_600);
    h.store
        .mark_spent(QuotaKind::Batch, window, 50)
        .await
        .unwrap();
    h.enqueue("a@x.io", 0, "A");
    h.provider
        .script([ProviderError::RateLimited { retry_after: None }]);
    let r = h.tick().await;
    assert_eq!(
        (r.rate_limited, r.deferred, r.quota_individual.left),
        (1, 1, 0)
    );
    let r = h.tick().await;
    assert_eq!(
        r.received, 0,
        "nothing is received while the window is spent"
    );
    h.clock
        .set(start() + chrono::Duration::seconds(3_600 + 100));
    let r = h.tick().await;
    assert_eq!(r.delivered_records(), 1);
    assert!(h.queue.is_empty());
}

/// Rule: single flight — a run that finds the lease held does nothing.
#[tokio::test]
async fn a_held_lease_means_no_work() {
    let h = harness(Limits::default(), 1_000);
    h.enqueue("a@x.io", 0, "A");
    h.store.hold_lease(
        "someone-else",
        h.clock.now() + chrono::Duration::seconds(30),
    );
    let r = h.tick().await;
    assert_eq!((r.idle, r.received), (Some(Idle::LeaseHeld), 0));
    assert_eq!(h.queue.len(), 1);
}

/// Rule: quota before receive — with the window spent, nothing is received (receive counts don't rise).
#[tokio::test]
async fn no_quota_means_no_receive() {
    let h = harness(Limits::default(), 1_000);
    let window = Window::containing(h.clock.now(), 3_600);
    h.store
        .mark_spent(QuotaKind::Batch, window, 50)
        .await
        .unwrap();
    h.store
        .mark_spent(QuotaKind::Individual, window, 3_600)
        .await
        .unwrap();
    h.enqueue("a@x.io", 0, "A");
    let r = h.tick().await;
    assert_eq!((r.idle, r.received), (Some(Idle::NoQuota), 0));
    assert_eq!(h.queue.calls().0, 0);
}

/// Goal: under a sustained backlog, a window delivers ≥ 99.5 % of the provider's capacity, never over it.
#[tokio::test]
async fn a_saturated_window_reaches_capacity() {
    let limits = Limits::default();
    let h = harness(limits, 1_000);
    // 70,000 distinct users: more than one window can take.
    for i in 0..70_000 {
        h.enqueue(&format!("u{i}@x.io"), 0, "n");
    }
    h.clock.set(Utc.timestamp_opt(HOUR_START + 30, 0).unwrap());
    let mut delivered = 0u64;
    for _ in 0..60 {
        delivered += u64::from(h.tick().await.delivered_records());
    }
    let capacity = limits.capacity_per_window();
    assert!(
        delivered * 1_000 >= capacity * 995,
        "delivered {delivered} of {capacity}"
    );
    assert!(delivered <= capacity);
    assert_eq!(h.provider.over_limit(), 0);
}

/// Rule: a run receives by distinct users, not by message count: under a backlog of repeat users it tops
/// its receive up past 1,000 messages until its batch is full of distinct users, and holds nothing back.
#[tokio::test]
async fn a_backlog_of_repeat_users_fills_the_batch_with_distinct_users() {
    let limits = Limits::default();
    let h = harness(limits, crate::config::DEFAULT_DRAIN_MAX_MESSAGES);
    // 5,000 users, four changes each in a row: 1,000 messages hold only 250 users.
    for u in 0..5_000 {
        for round in 0..4 {
            h.enqueue(&format!("u{u}@x.io"), round, &format!("v{round}"));
        }
    }
    let r = h.tick().await;
    assert_eq!(r.requests.batch, 1, "{r:?}");
    assert_eq!(
        r.delivered.batch, 1_000,
        "the batch is full of distinct users: {r:?}"
    );
    assert!(r.received >= 4_000, "received {}", r.received);
    assert_eq!(
        (r.deferred, r.retried, r.dead_lettered),
        (0, 0, 0),
        "every message received could be sent"
    );
    assert_eq!(h.provider.users_twice_in_one_request(), 0);
    assert_eq!(h.provider.over_limit(), 0);
}

/// Rule: topping the receive up stops once it has used its share of the run (half the time before
/// sending must start), on the virtual clock: a slow queue cannot crowd out the sends.
#[tokio::test]
async fn topping_up_stops_at_its_share_of_the_run() {
    let h = harness(Limits::default(), crate::config::DEFAULT_DRAIN_MAX_MESSAGES);
    for u in 0..1_000 {
        for round in 0..20 {
            h.enqueue(&format!("u{u}@x.io"), round, &format!("v{round}"));
        }
    }
    let clock = h.clock.clone();
    let receives = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = receives.clone();
    h.queue.on_receive(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        clock.advance(Duration::from_secs(10));
    });
    // Deadline 50 s away, send margin 5 s: receiving may top up until 22.5 s in, so the rounds that
    // start at 0, 10 and 20 s are made, and none after.
    let r = h.tick().await;
    let rounds = receives.load(std::sync::atomic::Ordering::SeqCst);
    assert!(r.received > 0 && r.delivered_records() > 0, "{r:?}");
    assert_eq!((r.deferred, r.lease_lost), (0, false), "{r:?}");
    assert_eq!(rounds, 3, "receive rounds");
    assert!(
        r.delivered_records() < 1_000,
        "three rounds of repeat users cannot fill the batch: {r:?}"
    );
}
