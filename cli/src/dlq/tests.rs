#![allow(clippy::unwrap_used)]
//! The DLQ commands' model and rendering, on messages as SQS returns them.

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use chrono::{DateTime, Utc};
use sluice::adapters::sqs::{
    ATTR_DEAD_LETTERED_AT, ATTR_DETAIL, ATTR_REASON, ATTR_RECEIVE_COUNT, ATTR_SOURCE_MESSAGE_ID,
};
use sluice::domain::Priority;

use super::*;
use crate::args::RedriveFilter;

fn attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .unwrap()
}

const CHANGE: &str = r#"{"v":"1","change_id":"6f2c1c52-6a53-4a43-9d1f-0c8f3a4d1e01","request_id":"0b7e6f58-2f7a-4a57-9c3e-2f1d6f0e9a02","email":"Ann@Example.com","name":"Ann","occurred_at":"2025-03-01T10:00:00Z","priority":"normal","accepted_at":"2025-03-01T10:00:01Z"}"#;

fn rejected() -> Message {
    Message::builder()
        .message_id("m-1")
        .receipt_handle("r-1")
        .body(CHANGE)
        .message_attributes(ATTR_REASON, attr("rejected"))
        .message_attributes(ATTR_DETAIL, attr("422: email is invalid"))
        .message_attributes(ATTR_RECEIVE_COUNT, attr("1"))
        .message_attributes(ATTR_SOURCE_MESSAGE_ID, attr("q-9"))
        .message_attributes(ATTR_DEAD_LETTERED_AT, attr("2025-03-01T10:05:00Z"))
        .attributes(MessageSystemAttributeName::SentTimestamp, "1740823500000")
        .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "4")
        .build()
}

fn exhausted() -> Message {
    Message::builder()
        .message_id("m-2")
        .receipt_handle("r-2")
        .body(r#"{"email":"bob@example.org","oops":true}"#)
        .attributes(MessageSystemAttributeName::SentTimestamp, "1740823200000")
        .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "11")
        .attributes(
            MessageSystemAttributeName::DeadLetterQueueSourceArn,
            "arn:aws:sqs:us-east-1:1:changes",
        )
        .build()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T10:10:00Z")
        .unwrap()
        .to_utc()
}

#[test]
fn the_drains_attributes_are_read() {
    let m = DlqMessage::from_sqs(&rejected());
    assert_eq!(m.id, "m-1");
    assert_eq!(m.reason, "rejected");
    assert_eq!(m.detail.as_deref(), Some("422: email is invalid"));
    assert_eq!(m.email.as_deref(), Some("ann@example.com"));
    // The drain's count of receives on the changes queue wins over the DLQ's own.
    assert_eq!(m.receive_count, Some(1));
    assert_eq!(m.source_message_id.as_deref(), Some("q-9"));
    assert_eq!(m.age_s(now()), Some(300));
    assert!(m.matches(None));
    assert!(m.matches(Some(RedriveFilter::Rejected)));
    assert!(!m.matches(Some(RedriveFilter::Malformed)));
}

#[test]
fn a_message_sqs_moved_reads_as_retries_exhausted() {
    let m = DlqMessage::from_sqs(&exhausted());
    assert_eq!(m.reason, RETRIES_EXHAUSTED);
    assert!(m.matches(Some(RedriveFilter::RetriesExhausted)));
    assert_eq!(m.receive_count, Some(11));
    assert_eq!(m.email.as_deref(), Some("bob@example.org"));
    assert_eq!(
        m.source_queue_arn.as_deref(),
        Some("arn:aws:sqs:us-east-1:1:changes")
    );
    let garbage = Message::builder()
        .message_id("m-3")
        .body("not json")
        .build();
    assert_eq!(DlqMessage::from_sqs(&garbage).email, None);
}

#[test]
fn the_list_redacts_emails_and_tallies_reasons() {
    let messages = [
        DlqMessage::from_sqs(&rejected()),
        DlqMessage::from_sqs(&exhausted()),
    ];
    let text = render_list(&messages, now(), 100);
    assert!(text.starts_with("id   reason             email"), "{text}");
    assert!(text.contains("a***@example.com"), "{text}");
    assert!(text.contains("b***@example.org"), "{text}");
    assert!(!text.contains("ann@"), "{text}");
    assert!(
        text.contains("m-1  rejected           a***@example.com  5m 00s   1"),
        "{text}"
    );
    assert!(
        text.contains("2 message(s): 1 rejected, 1 retries_exhausted\n"),
        "{text}"
    );
    assert!(render_list(&messages, now(), 2).contains("(first 2; --limit for more)"));
    assert_eq!(render_list(&[], now(), 10), "the DLQ is empty\n");

    let json = serde_json::to_value(ListEntry::new(&messages[0], now())).unwrap();
    assert_eq!(json["email"], "a***@example.com");
    assert_eq!(json["age_s"], 300);
    assert!(json.get("body").is_none());
}

#[test]
fn show_prints_the_full_reason_and_the_body() {
    let text = render_show(&DlqMessage::from_sqs(&rejected()), now());
    assert!(text.contains("reason       rejected\n"), "{text}");
    assert!(
        text.contains("detail       422: email is invalid\n"),
        "{text}"
    );
    assert!(text.contains("email        ann@example.com\n"), "{text}");
    assert!(
        text.contains("age          5m 00s (sent 2025-03-01T10:05:00Z)\n"),
        "{text}"
    );
    assert!(
        text.contains("attributes\n  sluice.dead_lettered_at = 2025-03-01T10:05:00Z\nbody\n"),
        "{text}"
    );
    assert!(text.contains("body\n{\n  \"accepted_at\""), "{text}");

    let text = render_show(&DlqMessage::from_sqs(&exhausted()), now());
    assert!(
        text.contains("moved by SQS after maxReceiveCount"),
        "{text}"
    );
}

#[test]
fn the_move_task_is_used_only_for_a_plain_redrive() {
    assert!(RedrivePlan::default().can_use_move_task());
    let rate = RedrivePlan {
        max_per_second: Some(5),
        ..RedrivePlan::default()
    };
    assert!(rate.can_use_move_task());
    for plan in [
        RedrivePlan {
            filter: Some(RedriveFilter::Rejected),
            ..RedrivePlan::default()
        },
        RedrivePlan {
            limit: Some(3),
            ..RedrivePlan::default()
        },
        RedrivePlan {
            client_side: true,
            ..RedrivePlan::default()
        },
    ] {
        assert!(!plan.can_use_move_task(), "{plan:?}");
    }
    // Which refusals mean "no move task here": sluice::adapters::sqs::dead_letters' tests.
}

#[test]
fn the_outcome_says_what_moved_and_what_stayed() {
    let outcome = RedriveOutcome {
        method: RedriveMethod::ClientSide,
        moved: 10,
        moved_by_lane: Default::default(),
        skipped: 15,
        not_deleted: 0,
        interrupted: false,
        fallback_reason: None,
    };
    assert_eq!(
        render_outcome(&outcome),
        "moved 10 message(s) from the DLQ to the changes queue from this machine (receive, send, delete); 15 left on the DLQ (not matching)\n"
    );
    let by_lane = RedriveOutcome {
        moved_by_lane: [(Priority::High, 3), (Priority::Normal, 7)].into(),
        ..outcome.clone()
    };
    assert!(
        render_outcome(&by_lane)
            .contains("changes queue from this machine (receive, send, delete), each back to its lane (high 3, normal 7)"),
        "{}",
        render_outcome(&by_lane)
    );
    let interrupted = RedriveOutcome {
        method: RedriveMethod::MoveTask,
        interrupted: true,
        skipped: 0,
        not_deleted: 2,
        ..outcome
    };
    let text = render_outcome(&interrupted);
    assert!(
        text.contains("by SQS (StartMessageMoveTask); interrupted"),
        "{text}"
    );
    assert!(
        text.contains("2 original(s) could not be deleted"),
        "{text}"
    );
}
