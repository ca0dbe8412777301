//! Unit tests of the in-memory queue, sync state and provider headers.
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

/// Rule: the in-memory provider answers with Drip's two headers, 429s included, and another client of
/// the account spends its share of the window before ours is counted.
#[tokio::test]
async fn the_provider_says_what_is_left_and_counts_the_other_client() {
    use super::MemoryProvider;
    use crate::domain::Subscriber;
    use crate::ports::{Provider, ProviderError};
    let clock = ManualClock::new(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
    let provider = MemoryProvider::new(clock.clone(), 2, 10, 3_600);
    let record = Subscriber {
        email: "a@x.io".into(),
        ..Subscriber::default()
    };
    let reply = provider.send_individual(&record).await;
    assert_eq!(
        (reply.info.rate_limit, reply.info.rate_remaining),
        (Some(10), Some(9))
    );
    provider.share_with_other_client(50);
    // Half an hour in: the other client has made 10 × 50 % × ½ = 2 individual requests.
    clock.set(Utc.timestamp_opt(1_800_001_800, 0).unwrap());
    let reply = provider.send_individual(&record).await;
    assert_eq!(reply.info.rate_remaining, Some(6));
    // 2 × 50 % × ½ rounds down to no batch of the other client's yet.
    assert_eq!(provider.other_client_requests(), (2, 0));
    for left in [1, 0] {
        let reply = provider.send_batch(std::slice::from_ref(&record)).await;
        assert_eq!(
            (reply.result, reply.info.rate_remaining),
            (Ok(()), Some(left))
        );
    }
    let reply = provider.send_batch(std::slice::from_ref(&record)).await;
    assert_eq!(
        reply.result,
        Err(ProviderError::RateLimited { retry_after: None })
    );
    assert_eq!(reply.info.rate_remaining, Some(0));
    assert_eq!(
        provider.over_limit_after_reply(),
        1,
        "the last batch reply had said 0 were left"
    );
}
