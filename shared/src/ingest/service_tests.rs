#![allow(clippy::unwrap_used)]

use super::*;
use crate::ingest::memory::{MemoryIdempotencyStore, MemoryRequestStore, MemorySink};
use crate::ports::{RequestTracker, Settled, SyncStateStore, SyncedField, SyncedFields};

type Service = IngestService<MemorySink, MemoryIdempotencyStore, MemoryRequestStore>;

fn service() -> Service {
    IngestService::new(
        MemorySink::default(),
        MemoryIdempotencyStore::default(),
        MemoryRequestStore::default(),
    )
}

fn post<'a>(body: &'a str, key: Option<&'a str>) -> ChangesRequest<'a> {
    ChangesRequest {
        content_type: Some("application/json"),
        body: body.as_bytes(),
        idempotency_key: key,
    }
}

const ONE: &str = r#"{"email":"a@x.io","name":"A"}"#;

#[test]
fn content_types() {
    for ok in [
        "application/json",
        "Application/JSON; charset=UTF-8",
        "application/json;charset=\"utf-8\"",
    ] {
        assert!(check_content_type(Some(ok)).is_ok(), "{ok}");
    }
    for bad in [
        None,
        Some("text/plain"),
        Some("application/json; charset=latin1"),
        Some("application/jsonx"),
    ] {
        assert!(check_content_type(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn accepted_changes_are_recorded_then_enqueued() {
    let svc = service();
    let s = svc
        .submit(post(
            r#"{"changes":[{"email":"a@x.io","name":"A"},{"email":"b@x.io","name":"B"}]}"#,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(s.answer.accepted, 2);
    let sent = svc.sink().sent();
    assert_eq!(
        sent.iter().map(|c| c.change_id).collect::<Vec<_>>(),
        s.answer.change_ids
    );
    let status = svc
        .request_status(&s.answer.request_id.to_string())
        .await
        .unwrap();
    assert_eq!((status.accepted, status.pending), (2, 2));
}

#[tokio::test]
async fn nothing_from_a_rejected_request_is_enqueued() {
    let svc = service();
    let body = r#"{"changes":[{"email":"a@x.io","name":"A"},{"email":"bad"}]}"#;
    assert!(matches!(
        svc.submit(post(body, None)).await,
        Err(IngestError::Invalid(_))
    ));
    let too_big = format!(
        "{{\"email\":\"a@x.io\",\"name\":\"{}\"}}",
        "x".repeat(MAX_BODY_BYTES)
    );
    assert!(matches!(
        svc.submit(post(&too_big, None)).await,
        Err(IngestError::PayloadTooLarge { .. })
    ));
    assert!(svc.sink().sent().is_empty());
}

#[tokio::test]
async fn a_failed_enqueue_is_503_and_releases_the_key() {
    let svc = service();
    svc.sink().fail_next(1);
    let e = svc.submit(post(ONE, Some("k1"))).await.unwrap_err();
    assert_eq!(e.status(), 503);
    // The retry is a fresh first attempt, not a 409.
    let s = svc.submit(post(ONE, Some("k1"))).await.unwrap();
    assert!(!s.replayed);
    assert_eq!(svc.sink().sent().len(), 1);
}

#[tokio::test]
async fn same_key_and_body_replays_the_first_answer() {
    let svc = service();
    let first = svc.submit(post(ONE, Some("k1"))).await.unwrap();
    let again = svc.submit(post(ONE, Some("k1"))).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.answer, first.answer);
    assert_eq!(svc.sink().sent().len(), 1);
    let other = svc
        .submit(post(r#"{"email":"a@x.io","name":"B"}"#, Some("k1")))
        .await;
    assert!(matches!(other, Err(IngestError::IdempotencyKeyReused)));
    assert!(matches!(
        svc.submit(post(ONE, Some("é"))).await,
        Err(IngestError::BadIdempotencyKey(_))
    ));
}

#[tokio::test]
async fn a_key_held_by_a_live_request_is_409_after_waiting_one_held_by_a_dead_one_is_taken_over() {
    let svc = service().with_settings(IngestSettings {
        idempotency_wait: Duration::from_millis(100),
        ..IngestSettings::default()
    });
    let key = IdempotencyKey::parse("k1").unwrap();
    let now = svc.clock.now();
    let dead_owner = NewClaim {
        body_sha256: sha256_hex(ONE.as_bytes()),
        owner: RequestId::new(),
        now,
        lease_until: now + TimeDelta::seconds(60),
        expires_at: now + TimeDelta::hours(24),
    };
    assert_eq!(
        svc.idempotency.claim(&key, &dead_owner).await.unwrap(),
        Claim::Won
    );
    assert!(matches!(
        svc.submit(post(ONE, Some("k1"))).await,
        Err(IngestError::IdempotencyInProgress)
    ));
    assert!(svc.sink().sent().is_empty());

    let expired = NewClaim {
        lease_until: now - TimeDelta::seconds(1),
        ..dead_owner
    };
    let key2 = IdempotencyKey::parse("k2").unwrap();
    svc.idempotency.claim(&key2, &expired).await.unwrap();
    assert!(!svc.submit(post(ONE, Some("k2"))).await.unwrap().replayed);
    assert_eq!(svc.sink().sent().len(), 1);
}

#[tokio::test]
async fn concurrent_first_requests_enqueue_once() {
    let svc = service();
    let results =
        futures::future::join_all((0..8).map(|_| svc.submit(post(ONE, Some("same"))))).await;
    let answers: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(svc.sink().sent().len(), 1);
    assert_eq!(answers.iter().filter(|s| !s.replayed).count(), 1);
    assert!(answers.iter().all(|s| s.answer == answers[0].answer));
}

#[tokio::test]
async fn request_status_counts_progress_and_hides_unknown_ids() {
    let svc = service();
    let s = svc.submit(post(ONE, None)).await.unwrap();
    let id = s.answer.request_id;
    // What the drain records when it delivers the change: its fields, at its precedence.
    let change = svc.sink().sent().remove(0);
    let fields: SyncedFields = change
        .fields()
        .into_iter()
        .map(|(k, value)| {
            let precedence = change.precedence();
            (k, SyncedField { value, precedence })
        })
        .collect();
    let drain = svc.requests.drain_state();
    let write = crate::ports::SyncWrite {
        email: change.email.clone(),
        fields,
        known: false,
    };
    SyncStateStore::record(drain, &[write]).await.unwrap();
    let status = svc.request_status(&id.to_string()).await.unwrap();
    assert_eq!((status.delivered, status.pending), (1, 0));
    for unknown in ["not-a-uuid", &RequestId::new().to_string()] {
        assert_eq!(svc.request_status(unknown).await.unwrap_err().status(), 404);
    }
}

/// Rule: a multi-change request is counted from the sets the drain writes, each change once.
#[tokio::test]
async fn a_multi_change_request_counts_what_the_drain_recorded() {
    let svc = service();
    let two = r#"{"changes":[{"email":"a@x.io","name":"A"},{"email":"b@x.io","name":"B"}]}"#;
    let s = svc.submit(post(two, None)).await.unwrap();
    let id = s.answer.request_id;
    let (a, b) = (s.answer.change_ids[0], s.answer.change_ids[1]);
    let drain = svc.requests.drain_state();
    RequestTracker::record(drain, &[(id, a, Settled::Delivered)])
        .await
        .unwrap();
    let status = svc.request_status(&id.to_string()).await.unwrap();
    assert_eq!((status.delivered, status.pending), (1, 1));
    let settled = [(id, a, Settled::Delivered), (id, b, Settled::Skipped)];
    RequestTracker::record(drain, &settled).await.unwrap();
    let status = svc.request_status(&id.to_string()).await.unwrap();
    assert_eq!(
        (
            status.accepted,
            status.delivered,
            status.skipped,
            status.pending
        ),
        (2, 1, 1, 0)
    );
}
