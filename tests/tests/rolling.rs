//! The rolling quota model's DynamoDB ledger on LocalStack: one `quota#rolling#<kind>` item of per-bucket
//! counts, written back under a version condition. Windows are built from explicit times (the ledger does
//! not read the clock), except where two reservers race on the wall clock as drains would.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Utc};
use sluice::adapters::dynamo::DynamoState;
use sluice::ports::{QuotaKind, QuotaLedger, Reservation, Window};

/// An hour boundary (500,000 × 3,600), and the rolling hour ending `offset_s` after it.
fn trailing(offset_s: i64) -> Window {
    Window::trailing(
        DateTime::from_timestamp(1_800_000_000 + offset_s, 0).unwrap(),
        3_600,
    )
}

/// Rule: reservations count in every hour-long interval they fall in, whatever the clock hour, and come
/// back only once their bucket has left the interval; adoption adds the provider's difference and a 429
/// fills the window; buckets no window counts any more are pruned from the item.
#[tokio::test]
async fn rolling_reservations_hold_the_limit_in_every_hour_long_interval() {
    let stack = common::stack().await;
    let ledger = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let kind = QuotaKind::Batch;
    let granted = |used| Reservation::Granted { used };
    assert_eq!(
        ledger.reserve(kind, trailing(3_000), 3, 5).await.unwrap(),
        granted(3)
    );
    assert_eq!(
        ledger.reserve(kind, trailing(3_590), 2, 5).await.unwrap(),
        granted(5)
    );
    // A new clock hour, the same rolling hour: nothing more.
    let exhausted = Reservation::Exhausted { used: 5 };
    assert_eq!(
        ledger.reserve(kind, trailing(3_700), 1, 5).await.unwrap(),
        exhausted
    );
    // The first three leave once the interval starts past their minute ([3,000, 3,060) s).
    assert_eq!(
        ledger.reserve(kind, trailing(6_659), 1, 5).await.unwrap(),
        exhausted
    );
    assert_eq!(
        ledger.reserve(kind, trailing(6_660), 3, 5).await.unwrap(),
        granted(5)
    );
    let usage = ledger.usage(kind, trailing(7_300)).await.unwrap();
    assert_eq!(
        (usage.used, usage.adopted),
        (3, 0),
        "the two of 3,590 s left"
    );

    // The provider counts 4: one unit adopted into the current bucket.
    assert_eq!(ledger.adopt(kind, trailing(7_300), 4, 5).await.unwrap(), 1);
    assert_eq!(
        ledger.adopt(kind, trailing(7_300), 2, 5).await.unwrap(),
        0,
        "never lowered"
    );
    ledger.mark_spent(kind, trailing(7_400), 5).await.unwrap();
    let usage = ledger.usage(kind, trailing(7_400)).await.unwrap();
    assert_eq!((usage.used, usage.adopted), (5, 1));
    assert_eq!(
        ledger.reserve(kind, trailing(7_400), 1, 5).await.unwrap(),
        exhausted
    );
    // The other kind has its own item.
    let individual = ledger
        .usage(QuotaKind::Individual, trailing(7_400))
        .await
        .unwrap();
    assert_eq!(individual.used, 0);

    let item = stack
        .ddb
        .get_item()
        .table_name(&stack.outputs.table_name)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("quota#rolling#batch".into()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let buckets = item["b"].as_m().unwrap();
    // Pruned: the buckets of 3,000 s and 3,590 s are gone, those of 6,660 s, 7,300 s and 7,400 s stay.
    assert_eq!(buckets.len(), 3, "{buckets:?}");
    assert!(item["version"].as_n().unwrap().parse::<u32>().unwrap() >= 5);
    stack.destroy().await;
}

/// Rule: two drains reserving at once on the same rolling window never together pass the limit: the
/// version condition makes the loser of each race read again, and every granted unit is in the item.
#[tokio::test]
async fn two_concurrent_rolling_reservers_never_exceed_the_limit() {
    let stack = common::stack().await;
    let ledger = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let kind = QuotaKind::Individual;
    let reserver = || {
        let ledger = ledger.clone();
        async move {
            let (mut granted, mut lost) = (0u32, 0u32);
            // Until the ledger says the limit is reached (a refusal below it is a race lost five times).
            for _ in 0..500 {
                match ledger
                    .reserve(kind, Window::trailing(Utc::now(), 3_600), 1, 50)
                    .await
                    .unwrap()
                {
                    Reservation::Granted { .. } => granted += 1,
                    Reservation::Exhausted { used } if used >= 50 => break,
                    Reservation::Exhausted { .. } => lost += 1,
                }
            }
            (granted, lost)
        }
    };
    let ((a, lost_a), (b, lost_b)) = futures::join!(reserver(), reserver());
    eprintln!("granted {a} + {b}, races lost five times: {lost_a} + {lost_b}");
    assert_eq!(a + b, 50);
    assert!(a > 0 && b > 0, "both reservers were granted some: {a}, {b}");
    let usage = ledger
        .usage(kind, Window::trailing(Utc::now(), 3_600))
        .await
        .unwrap();
    assert_eq!(usage.used, 50);
    stack.destroy().await;
}
