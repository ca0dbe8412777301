//! The operator commands and the lanes, end to end on LocalStack: dead letters written by the drain's
//! own SQS adapter from the `high` and `bulk` lanes go back to their own lane with `sluice dlq redrive`,
//! and `sluice status` shows each lane's backlog.
//!
//! Needs LocalStack on AWS_ENDPOINT_URL (default http://127.0.0.1:4566):
//!   infra/localstack/up && cargo test -p sluice-cli --test lanes_ops -- --include-ignored
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use sluice::adapters::sqs::SqsChangeQueue;
use sluice::domain::{ChangeMessage, Priority};
use sluice::ports::{ChangeQueue, DeadLetter, DeadLetterReason};
use sluice_test_support::TestStack;
use sluice_test_support::changes::name_change;

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let email = format!("{prefix}{i}@example.com");
            ChangeMessage::V1(name_change(&email, "x")).to_body()
        })
        .collect()
}

/// Puts `bodies` on the lane's queue, receives them through the drain's adapter and dead-letters them
/// from that lane, as a run that had them rejected would.
async fn dead_letter_from(stack: &TestStack, lane: Priority, url: &str, bodies: &[String]) {
    stack.send(url, bodies).await;
    let queue = SqsChangeQueue::new(stack.sqs.clone(), url, &stack.outputs.dlq_url);
    let mut received = Vec::new();
    while received.len() < bodies.len() {
        let got = queue.receive(bodies.len() as u32).await.unwrap();
        assert!(!got.is_empty(), "messages vanished from the {lane:?} queue");
        received.extend(got);
    }
    let letters: Vec<DeadLetter> = received
        .into_iter()
        .map(|message| DeadLetter {
            message,
            lane,
            reason: DeadLetterReason::Rejected,
            detail: "422 test".into(),
        })
        .collect();
    queue.dead_letter(&letters).await.unwrap();
}

async fn sluice(stack: &TestStack, args: &[&str]) -> String {
    let out = stack
        .sluice_command(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sluice {args:?}: {stdout}{stderr}");
    stdout
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Rules: a redrive sends every dead letter back to the lane it came from, once; status shows each lane.
#[tokio::test]
#[ignore = "needs LocalStack (see the module doc)"]
async fn redrive_sends_each_dead_letter_back_to_its_lane() {
    let stack = TestStack::deploy("sluice-lanes", &[]).await;
    let high = stack.outputs.high_queue_url.clone().expect("HighQueueUrl");
    let bulk = stack.outputs.bulk_queue_url.clone().expect("BulkQueueUrl");
    let (urgent, backfill) = (bodies("h", 4), bodies("b", 6));
    dead_letter_from(&stack, Priority::High, &high, &urgent).await;
    dead_letter_from(&stack, Priority::Bulk, &bulk, &backfill).await;
    let lanes: Vec<String> = stack
        .dead_letters()
        .await
        .into_iter()
        .map(|(_, attributes)| attributes["sluice.lane"].clone())
        .collect();
    assert_eq!(lanes.iter().filter(|l| *l == "high").count(), 4);
    assert_eq!(lanes.iter().filter(|l| *l == "bulk").count(), 6);
    // Reading them hid them for 30 s: wait until they are visible again.
    let visible_by = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stack.depth(&stack.outputs.dlq_url).await.0 < 10 {
        assert!(
            std::time::Instant::now() < visible_by,
            "the DLQ stays hidden"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }

    let out = sluice(&stack, &["dlq", "redrive"]).await;
    assert!(out.contains("moved 10 message(s)"), "{out}");
    assert!(
        out.contains("each back to its lane (high 4, bulk 6)"),
        "{out}"
    );
    assert_eq!(stack.depth(&stack.outputs.dlq_url).await, (0, 0));
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (0, 0));
    let status: Value = serde_json::from_str(&sluice(&stack, &["status", "--json"]).await).unwrap();
    assert_eq!(status["lanes"]["high"]["visible"], 4, "{status}");
    assert_eq!(status["lanes"]["normal"]["visible"], 0, "{status}");
    assert_eq!(status["lanes"]["bulk"]["visible"], 6, "{status}");
    assert_eq!(sorted(stack.bodies(&high).await), sorted(urgent));
    assert_eq!(sorted(stack.bodies(&bulk).await), sorted(backfill));
    stack.destroy().await;
}
