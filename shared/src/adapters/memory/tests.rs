//! Unit tests of the in-memory queue and sync state.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeZone as _, Utc};

use super::queue_state::receive_calls;
use super::{ManualClock, MemoryQueue, MemoryStore};
use crate::domain::Email;
use crate::ports::{ChangeQueue, SyncStateStore, SyncWrite, SyncedFields};

fn queue() -> (ManualClock, MemoryQueue<ManualClock>) {
    let clock = ManualClock::new(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
    let q = MemoryQueue::new(clock.clone(), Duration::from_secs(120), 2);
    (clock, q)
}

#[test]
fn receive_calls_follow_the_adapters_rounds() {
    assert_eq!(receive_calls(1_000, 1_000), 100);
    assert_eq!(receive_calls(1_000, 5), 10, "one short round of 10 calls");
    assert_eq!(receive_calls(1_000, 250), 30, "two full rounds, one short");
    assert_eq!(receive_calls(25, 25), 3);
    assert_eq!(receive_calls(0, 0), 0);
}

#[tokio::test]
async fn visibility_receipts_and_redrive() {
    let (clock, q) = queue();
    for i in 0..3 {
        q.send(format!("b{i}"));
    }
    let got = q.receive(2).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["b0", "b1"],
        "oldest first"
    );
    assert_eq!(q.backlog().await.unwrap().visible, 1);
    // Released now: visible again at once; a stale receipt cannot delete.
    q.release(&[(got[0].receipt.clone(), Duration::ZERO)])
        .await
        .unwrap();
    let again = q.receive(1).await.unwrap();
    assert_eq!((again[0].body.as_str(), again[0].receive_count), ("b0", 2));
    assert_eq!(q.delete(&[got[0].receipt.clone()]).await.unwrap().len(), 1);
    // The visibility timeout passes: b1 comes back; b0 is over maxReceiveCount and is redriven.
    clock.advance(Duration::from_secs(121));
    let back = q.receive(10).await.unwrap();
    assert_eq!(
        back.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["b1", "b2"]
    );
    assert_eq!(q.dead_letter_count(), 1);
    assert!(
        q.delete(&[back[0].receipt.clone()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.len(), 1);
}

/// Rule: the in-memory sync state guards like DynamoDB's, at full precision: a write 400 µs older is
/// refused, a later position in the same request is taken, and an equal precedence may write again.
#[tokio::test]
async fn sync_state_never_moves_backwards_to_the_nanosecond() {
    use crate::domain::{FieldKey, Precedence};
    use crate::ports::SyncedField;
    let store = MemoryStore::default();
    let email = Email::parse("a@x.io").unwrap();
    let t = Utc.timestamp_opt(1_800_000_000, 700_000).unwrap();
    let field = |value: &str, occurred_at, position| {
        [SyncWrite {
            email: email.clone(),
            fields: SyncedFields::from([(
                FieldKey::Name,
                SyncedField {
                    value: value.into(),
                    precedence: Precedence {
                        occurred_at,
                        accepted_at: t,
                        position,
                    },
                },
            )]),
            known: true,
        }]
    };
    let name = |store: &MemoryStore| store.synced(&email).unwrap()[&FieldKey::Name].value.clone();
    SyncStateStore::record(&store, &field("new", t, 0))
        .await
        .unwrap();
    let older = t - chrono::TimeDelta::microseconds(400);
    SyncStateStore::record(&store, &field("old", older, 5))
        .await
        .unwrap();
    assert_eq!(name(&store), "new");
    SyncStateStore::record(&store, &field("new", t, 0))
        .await
        .unwrap();
    SyncStateStore::record(&store, &field("later", t, 1))
        .await
        .unwrap();
    assert_eq!(name(&store), "later");
}
