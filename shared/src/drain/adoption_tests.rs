//! Header adoption on the virtual clock: when another client of the account spends the same quota, the
//! provider's `X-RateLimit-Remaining` raises the ledger (never lowers it), and the drain's next requests
//! are made against what the provider will accept.
#![allow(clippy::unwrap_used)]

use super::tests::{harness, small, start};
use crate::ports::{QuotaKind, QuotaLedger, Window};

/// Rule: a reply that says fewer requests are left than the ledger knows raises the ledger to the
/// provider's count, and the report, the window's summary and the ledger say how much was adopted.
#[tokio::test]
async fn a_reply_with_fewer_left_raises_the_ledger_to_the_providers_count() {
    let h = harness(small(), 1_000);
    // Half of each limit goes to another client, evenly: 30 of the 60 individual requests by half-time.
    h.provider.share_with_other_client(50);
    h.clock.set(start() + chrono::Duration::seconds(1_790));
    h.enqueue("a@x.io", 0, "A");
    let r = h.tick().await;
    assert_eq!(r.delivered_records(), 1);
    // The other client has made 60 × 50 % × 1,800/3,600 = 15 requests; ours is the 16th.
    assert_eq!(r.adopted.individual, 15);
    assert_eq!(r.adopted.batch, 0, "no batch reply came back");
    assert_eq!(
        (r.quota_individual.used, r.quota_individual.adopted),
        (16, 15)
    );
    let window = Window::containing(start(), 3_600);
    let usage = h.store.usage(QuotaKind::Individual, window).await.unwrap();
    assert_eq!((usage.used, usage.adopted), (16, 15));
    let emf = r.emf("sluice", 0);
    assert!(emf.contains("\"AdoptedIndividualUnits\":15"), "{emf}");
}

/// Rule: adoption never lowers the ledger — a provider that counts less (its window reset, or our own
/// reservations not yet arrived) leaves the ledger's count as it is.
#[tokio::test]
async fn a_reply_with_more_left_never_lowers_the_ledger() {
    let h = harness(small(), 1_000);
    let window = Window::containing(start(), 3_600);
    h.store
        .reserve(QuotaKind::Individual, window, 30, 60)
        .await
        .unwrap();
    h.clock.set(start() + chrono::Duration::seconds(1_790));
    h.enqueue("a@x.io", 0, "A");
    let r = h.tick().await;
    assert_eq!(r.delivered_records(), 1);
    assert_eq!(r.adopted.individual, 0);
    let usage = h.store.usage(QuotaKind::Individual, window).await.unwrap();
    assert_eq!((usage.used, usage.adopted), (31, 0));
}

/// Rule: the adapters' `adopt` raises only, counts what it added, and is idempotent.
#[tokio::test]
async fn the_memory_ledger_adopts_only_upward() {
    let h = harness(small(), 1_000);
    let window = Window::containing(start(), 3_600);
    let ledger = &h.store;
    ledger
        .reserve(QuotaKind::Batch, window, 2, 5)
        .await
        .unwrap();
    assert_eq!(
        ledger.adopt(QuotaKind::Batch, window, 4, 5).await.unwrap(),
        2
    );
    assert_eq!(
        ledger.adopt(QuotaKind::Batch, window, 4, 5).await.unwrap(),
        0
    );
    assert_eq!(
        ledger.adopt(QuotaKind::Batch, window, 1, 5).await.unwrap(),
        0
    );
    let usage = ledger.usage(QuotaKind::Batch, window).await.unwrap();
    assert_eq!((usage.used, usage.adopted), (4, 2));
    // The next window starts from nothing: adoption holds for the rest of its own window only.
    let next = ledger.usage(QuotaKind::Batch, window.next()).await.unwrap();
    assert_eq!((next.used, next.adopted), (0, 0));
}

/// Rule: under a backlog for hours, with another client spending 20 % of both limits, the provider sees
/// no over-limit request of ours after its first answer of each window, and every unit the other client
/// leaves is used by the drain.
#[tokio::test]
async fn a_shared_account_sees_no_over_limit_request_after_the_first_reply() {
    let h = harness(small(), 10_000);
    h.provider.share_with_other_client(20);
    for u in 0..5_000 {
        h.enqueue(&format!("u{u}@x.io"), 0, "A");
    }
    let mut adopted = 0;
    for _ in 0..(3 * 60) {
        let r = h.tick().await;
        adopted += r.adopted.individual + r.adopted.batch;
    }
    assert_eq!(h.provider.over_limit_after_reply(), 0);
    assert!(adopted > 0, "the other client's requests were adopted");
    let calls = h.provider.calls();
    let (other, refused) = h.provider.other_client_requests();
    // Three full windows: ours plus the other client's accepted requests fill every limit.
    assert_eq!(
        calls.batch + calls.individual + (other - refused),
        3 * (5 + 60),
        "ours {calls:?}, the other client's {other} (refused {refused})"
    );
}
