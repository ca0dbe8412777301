//! Request tracking through the drain, over the in-memory adapters: a single-change request's status is
//! derived from the sync state the drain writes anyway ([`crate::ports::requests`]); a multi-change
//! request, or a message from before `request_size`, is counted from the sets the drain writes.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::tests::{Harness, harness};
use super::*;
use crate::adapters::memory::{Fault, Op};
use crate::config::Limits;
use crate::domain::{Change, ChangeMessage, FieldKey};
use crate::ports::RequestCounters;
use crate::ports::{InFlight, SyncStateStore};

fn counts(c: RequestCounters) -> (u32, u32, u32, u32) {
    let pending = c.accepted - c.delivered - c.skipped - c.dead_lettered;
    (c.delivered, c.skipped, c.dead_lettered, pending)
}

async fn run_until_empty(h: &Harness, max: usize) {
    for _ in 0..max {
        if h.queue.is_empty() {
            break;
        }
        h.tick().await;
    }
}

/// Rule: a single-change request reads pending until the drain has delivered its change, then
/// delivered — and the drain wrote nothing for it.
#[tokio::test]
async fn a_single_change_request_goes_from_pending_to_delivered_with_no_progress_write() {
    let h = harness(Limits::default(), 1_000);
    let a = h.enqueue("a@x.io", 0, "Ann");
    assert_eq!(counts(h.status(&a).await), (0, 0, 0, 1));
    h.tick().await;
    assert!(h.queue.is_empty());
    assert_eq!(counts(h.status(&a).await), (1, 0, 0, 0));
    assert!(h.store.progress(&a.request_id).is_none(), "no drain write");
}

/// Rules: a change superseded by a newer one reads skipped; an unchanged one reads delivered (the provider
/// holds its value — the sets would count it skipped: the documented difference).
#[tokio::test]
async fn a_superseded_single_change_reads_skipped_and_an_unchanged_one_delivered() {
    let h = harness(Limits::default(), 1_000);
    let old = h.enqueue("a@x.io", -10, "Old");
    let new = h.enqueue("a@x.io", 0, "New");
    h.tick().await;
    assert_eq!(h.provider_name("a@x.io").as_deref(), Some("New"));
    assert_eq!(counts(h.status(&old).await), (0, 1, 0, 0));
    assert_eq!(counts(h.status(&new).await), (1, 0, 0, 0));

    let same = h.enqueue("a@x.io", 5, "New");
    let r = h.tick().await;
    assert_eq!((r.absorbed, r.skipped_unchanged), (1, 1));
    assert_eq!(counts(h.status(&same).await), (1, 0, 0, 0));
    for c in [&old, &new, &same] {
        assert!(h.store.progress(&c.request_id).is_none(), "no drain write");
    }
}

/// Rule: a dead letter is still written, and the status shows it.
#[tokio::test]
async fn a_dead_lettered_single_change_reads_dead_lettered() {
    let h = harness(Limits::default(), 1_000);
    h.provider.reject_email("bad@x.io");
    let bad = h.enqueue("bad@x.io", 0, "X");
    let good = h.enqueue("good@x.io", 0, "G");
    run_until_empty(&h, 5).await;
    assert_eq!(h.queue.dead_letters().len(), 1);
    assert_eq!(counts(h.status(&bad).await), (0, 0, 1, 0));
    assert_eq!(h.store.progress(&bad.request_id).unwrap().dead_lettered, 1);
    assert_eq!(counts(h.status(&good).await), (1, 0, 0, 0));
}

/// Rule: a change received again (a crash before the delete, a duplicate message) counts once.
#[tokio::test]
async fn a_redelivered_single_change_is_counted_once() {
    let h = harness(Limits::default(), 1_000);
    let a = h.enqueue("a@x.io", 0, "A");
    // A duplicate of the message (SQS delivers at least once).
    h.queue.send(ChangeMessage::V1(a.clone()).to_body());
    // Crash after the sync-state write, before the delete: the messages come back.
    h.faults.inject(Op::Delete, Fault::Hang, 1);
    let deadline = h.clock.now() + chrono::Duration::seconds(50);
    let crashed = tokio::time::timeout(Duration::from_millis(200), h.drain.run(deadline)).await;
    assert!(crashed.is_err());
    assert_eq!(
        counts(h.status(&a).await),
        (1, 0, 0, 0),
        "delivered already"
    );
    h.clock.advance(Duration::from_secs(121));
    run_until_empty(&h, 5).await;
    assert!(h.queue.is_empty());
    let status = h.status(&a).await;
    assert_eq!((status.accepted, counts(status)), (1, (1, 0, 0, 0)));
    assert!(h.store.progress(&a.request_id).is_none(), "no drain write");
}

/// Rule: a message without `request_size` (written before it existed) and a multi-change request are
/// tracked by the drain's sets, as before.
#[tokio::test]
async fn old_messages_and_multi_change_requests_are_tracked_by_the_sets() {
    let h = harness(Limits::default(), 1_000);
    let old = h.enqueue_without_request_size("a@x.io", 0, "A");
    let mut multi: Vec<Change> = ["b@x.io", "c@x.io", "b@x.io"]
        .iter()
        .enumerate()
        .map(|(i, email)| {
            let mut c = h.change(email, 0, &format!("n{i}"));
            c.position = u32::try_from(i).unwrap();
            c.request_size = Some(3);
            c
        })
        .collect();
    let request = multi[0].request_id;
    for c in &mut multi {
        c.request_id = request;
    }
    h.record_request(&multi);
    for c in &multi {
        h.queue.send(ChangeMessage::V1(c.clone()).to_body());
    }
    h.tick().await;
    assert!(h.queue.is_empty());
    assert_eq!(h.store.progress(&old.request_id).unwrap().delivered, 1);
    assert_eq!(counts(h.status(&old).await), (1, 0, 0, 0));
    let p = h.store.progress(&request).unwrap();
    assert_eq!((p.delivered, p.skipped, p.dead_lettered), (2, 1, 0));
    assert_eq!(counts(h.status(&multi[0]).await), (2, 1, 0, 0));
}

/// Rule (pending reaches 0): a change found stale only against another run's value in flight leaves the
/// queue while the sync item may never reach it (that value's change may yet be dead-lettered), so the drain
/// writes its skip as for any request.
#[tokio::test]
async fn a_change_stale_against_a_value_in_flight_is_written() {
    let h = harness(Limits::default(), 1_000);
    let email = crate::domain::Email::parse("a@x.io").unwrap();
    let older = h.enqueue("a@x.io", -30, "Older");
    // Another run was about to send a newer name (its change is elsewhere: hidden, or in the DLQ by now).
    let newer = h.change("a@x.io", 0, "Newer").precedence();
    let in_flight: InFlight = [(FieldKey::Name, newer)].into_iter().collect();
    // (A run that died after its calls: its note stays listed.)
    h.store
        .intend("a crashed run", &[(email.clone(), in_flight)])
        .await
        .unwrap();
    let r = h.tick().await;
    assert_eq!((r.absorbed, r.skipped_stale), (1, 1));
    assert!(h.queue.is_empty());
    assert!(
        h.store.synced(&email).is_none(),
        "the sync item never got it"
    );
    assert_eq!(h.store.progress(&older.request_id).unwrap().skipped, 1);
    assert_eq!(counts(h.status(&older).await), (0, 1, 0, 0));
}
