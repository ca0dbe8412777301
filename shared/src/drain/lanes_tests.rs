//! The drain over three lanes, in memory on the virtual clock: the run's quota goes to `high` first, then
//! `normal`, then `bulk` with what the others leave; no lane is received from beyond what the run can
//! send; settling acts on each message's own lane.

#![allow(clippy::unwrap_used)]

use chrono::{TimeZone as _, Utc};

use super::tests::{HOUR_START, Harness, harness_with, small};
use crate::domain::{Change, ChangeMessage, Priority};
use crate::drain::DrainReport;

impl Harness {
    /// A single-change request of `priority`, on that lane's queue.
    fn enqueue_on(&self, lane: Priority, email: &str, name: &str) -> Change {
        self.enqueue_on_at(lane, email, 0, name)
    }

    /// As [`Self::enqueue_on`], the change having occurred `occurred_offset_s` from now.
    fn enqueue_on_at(
        &self,
        lane: Priority,
        email: &str,
        occurred_offset_s: i64,
        name: &str,
    ) -> Change {
        let mut change = self.change(email, occurred_offset_s, name);
        change.priority = lane;
        change.request_size = Some(1);
        self.record_request(&[change.clone()]);
        self.lanes
            .queue(lane)
            .send(ChangeMessage::V1(change.clone()).to_body());
        change
    }

    /// `n` distinct users on one lane.
    fn backlog_on(&self, lane: Priority, n: u32) {
        for i in 0..n {
            self.enqueue_on(lane, &format!("{}{i}@x.io", lane.as_str()), "old");
        }
    }
}

fn received(r: &DrainReport, lane: Priority) -> u32 {
    r.lanes.get(&lane).map_or(0, |l| l.received)
}

/// With `small()` limits a run 10 s into the window may send one batch of 100 and 2 individual requests.
const RUN_CAPACITY: u32 = 102;

/// Rule: a `high` change posted behind a backlog far larger than a run's quota is sent in the next run.
#[tokio::test]
async fn a_high_change_behind_a_big_backlog_goes_out_in_the_next_run() {
    let h = harness_with(small(), 20_000, true);
    h.backlog_on(Priority::Normal, 2_000);
    h.backlog_on(Priority::Bulk, 2_000);
    let first = h.tick().await;
    assert_eq!(first.received, RUN_CAPACITY, "only what the run can send");
    assert_eq!(received(&first, Priority::Normal), RUN_CAPACITY);
    assert_eq!(received(&first, Priority::Bulk), 0);

    h.enqueue_on(Priority::High, "urgent@x.io", "now");
    // Run until the next one that has quota (batches are paced: not every run has one).
    let mut runs = 0;
    let r = loop {
        let r = h.tick().await;
        runs += 1;
        if r.received > 0 || runs == 20 {
            break r;
        }
    };
    assert_eq!(runs, 1, "the very next run has individual quota");
    assert_eq!(received(&r, Priority::High), 1);
    assert_eq!(h.provider_name("urgent@x.io").as_deref(), Some("now"));
    assert!(h.lanes.queue(Priority::High).is_empty());
    assert_eq!(
        r.lanes[&Priority::Normal].backlog,
        2_000 - u64::from(RUN_CAPACITY)
    );
    assert_eq!(r.lanes[&Priority::Bulk].backlog, 2_000);
    assert_eq!(r.deferred, 0, "nothing received only to be held");
}

/// Rule: `bulk` gets only what `high` and `normal` leave of the run's quota, and none while they fill it.
#[tokio::test]
async fn bulk_gets_only_what_the_other_lanes_leave() {
    let h = harness_with(small(), 20_000, true);
    h.backlog_on(Priority::High, 10);
    h.backlog_on(Priority::Normal, 40);
    h.backlog_on(Priority::Bulk, 1_000);
    let r = h.tick().await;
    assert_eq!(
        [Priority::High, Priority::Normal, Priority::Bulk].map(|l| received(&r, l)),
        [10, 40, RUN_CAPACITY - 50]
    );
    assert_eq!(r.delivered_records(), RUN_CAPACITY);
    assert_eq!(r.deferred, 0);
    assert!(h.lanes.queue(Priority::High).is_empty());
    assert!(h.lanes.queue(Priority::Normal).is_empty());
    assert_eq!(
        h.lanes.queue(Priority::Bulk).len(),
        1_000 - (RUN_CAPACITY as usize - 50)
    );

    // Normal traffic that fills the run leaves bulk nothing.
    h.backlog_on(Priority::Normal, 5_000);
    for _ in 0..30 {
        let r = h.tick().await;
        assert_eq!(received(&r, Priority::Bulk), 0, "{r:?}");
    }
}

/// Rule: a message is settled on the queue it came from — a transient failure releases a `high` message
/// on the high lane, and a rejected one is dead-lettered with its lane.
#[tokio::test]
async fn messages_are_settled_on_their_own_lane() {
    let h = harness_with(small(), 20_000, true);
    h.enqueue_on(Priority::High, "flaky@x.io", "x");
    h.enqueue_on(Priority::Bulk, "bad@x.io", "x");
    h.provider.fail_email("flaky@x.io");
    h.provider.reject_email("bad@x.io");
    let r = h.tick().await;
    assert_eq!((r.retried, r.dead_lettered), (1, 1));
    assert_eq!(h.lanes.queue(Priority::High).len(), 1, "released on high");
    assert!(h.lanes.queue(Priority::Normal).is_empty());
    let dead = h.lanes.queue(Priority::Bulk).dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].lane, Some(Priority::Bulk));
    assert_eq!(dead[0].reason.as_deref(), Some("rejected"));
}

/// Rule: without queues of their own, `high` and `bulk` share the normal queue and nothing changes.
#[tokio::test]
async fn lanes_without_queues_share_the_normal_one() {
    let h = harness_with(small(), 20_000, false);
    h.enqueue_on(Priority::High, "a@x.io", "A");
    h.enqueue_on(Priority::Bulk, "b@x.io", "B");
    assert_eq!(h.queue.len(), 2);
    let r = h.tick().await;
    assert_eq!((received(&r, Priority::Normal), r.lanes.len()), (2, 1));
    assert_eq!(r.delivered_records(), 2);
}

/// Rule: a run fills its plan with records it can send. Normal-lane messages made stale by a newer `high`
/// change of the same user, delivered earlier, need nothing sent: the run tops its receive up with other
/// users instead of sending less than its plan — and still receives no more records than it can send.
#[tokio::test]
async fn stale_messages_do_not_take_the_room_of_sendable_records() {
    let h = harness_with(small(), 20_000, true);
    for i in 0..50 {
        h.enqueue_on(Priority::High, &format!("a{i}@x.io"), "new");
    }
    let first = h.tick().await;
    assert_eq!(first.delivered_records(), 50);
    // Those users' older changes, still queued on `normal` (they occurred before the `high` ones), ahead
    // of 200 other users.
    for i in 0..50 {
        h.enqueue_on_at(Priority::Normal, &format!("a{i}@x.io"), -90, "old");
    }
    for i in 0..200 {
        h.enqueue_on(Priority::Normal, &format!("b{i}@x.io"), "b");
    }
    // A fresh window, 10 s in: a run's plan is RUN_CAPACITY records again.
    h.clock
        .set(Utc.timestamp_opt(HOUR_START + 3_610, 0).unwrap());
    let r = h.tick().await;
    assert_eq!(r.planned_receive, RUN_CAPACITY);
    assert_eq!((r.absorbed, r.skipped_stale), (50, 50), "{r:?}");
    assert_eq!(r.delivered_records(), RUN_CAPACITY, "{r:?}");
    assert_eq!(
        r.received,
        50 + RUN_CAPACITY,
        "the stale ones and a full plan"
    );
    assert_eq!(r.deferred, 0, "nothing received only to be held");
    assert_eq!(
        h.lanes.queue(Priority::Normal).len(),
        200 - RUN_CAPACITY as usize
    );
    assert_eq!(h.provider_name("a0@x.io").as_deref(), Some("new"));
}

/// Rule: a top-up that brings a newer change of a user whose older ones needed nothing sent counts that
/// user as room used again — the run still receives no more records than it can send.
#[tokio::test]
async fn a_top_up_counts_users_it_makes_sendable_again() {
    let h = harness_with(small(), 20_000, true);
    for i in 0..50 {
        h.enqueue_on(Priority::High, &format!("a{i}@x.io"), "new");
    }
    assert_eq!(h.tick().await.delivered_records(), 50);
    // On `normal`: the users' stale changes, 52 other users (the first receive's room), then newer
    // changes of the same 50 users (what the top-up gets first), then more users.
    for i in 0..50 {
        h.enqueue_on_at(Priority::Normal, &format!("a{i}@x.io"), -90, "old");
    }
    for i in 0..52 {
        h.enqueue_on(Priority::Normal, &format!("b{i}@x.io"), "b");
    }
    for i in 0..50 {
        h.enqueue_on_at(Priority::Normal, &format!("a{i}@x.io"), 30, "newer");
    }
    for i in 52..200 {
        h.enqueue_on(Priority::Normal, &format!("b{i}@x.io"), "b");
    }
    h.clock
        .set(Utc.timestamp_opt(HOUR_START + 3_610, 0).unwrap());
    let r = h.tick().await;
    assert_eq!(r.delivered_records(), RUN_CAPACITY, "{r:?}");
    assert_eq!(r.deferred, 0, "nothing received only to be held: {r:?}");
    assert_eq!(r.received, 50 + 52 + 50, "{r:?}");
    assert_eq!(h.provider_name("a0@x.io").as_deref(), Some("newer"));
    assert_eq!(h.lanes.queue(Priority::Normal).len(), 148);
}
