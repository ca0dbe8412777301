//! Priority lanes end to end on LocalStack: a stack from `template.yaml` (three lane queues, one DLQ), the
//! real ingest handler routing each change to its lane's queue, and the real drain handler against the
//! provider emulator. The rule: under a backlog on `normal` and `bulk` far larger than a run can send, a
//! `high` change posted after them is delivered in the first drain run, and `bulk` waits.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use ingest::AwsIngest;
use serde_json::{Value, json};
use sluice::config::{FromVars, IngestConfig};
use sluice::domain::Priority;
use sluice::drain::{DrainReport, Idle};
use sluice::startup::AwsDrainPorts;
use sluice_test_support::events::{JSON, rest_post, status_and_json};
use sluice_tests::emulator::EmulatorConfig;

use common::{TestStack, invoke};

/// The ingest function as deployed, pointed at this test's stack (all three lanes).
fn ingest_for(stack: &TestStack) -> AwsIngest {
    let mut env: HashMap<&str, String> = HashMap::from([
        ("QUEUE_URL", stack.outputs.queue_url.clone()),
        ("TABLE_NAME", stack.outputs.table_name.clone()),
    ]);
    env.insert(
        "QUEUE_URL_HIGH",
        stack.outputs.high_queue_url.clone().unwrap(),
    );
    env.insert(
        "QUEUE_URL_BULK",
        stack.outputs.bulk_queue_url.clone().unwrap(),
    );
    let config = IngestConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
    AwsIngest::aws(&config, &stack.sdk)
}

/// Posts `n` changes of `priority` (users `<prefix><i>`) in one request; they must all be accepted.
async fn post(ingest: &AwsIngest, prefix: &str, n: usize, priority: Priority) {
    let changes: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "email": format!("{prefix}{i}@example.com"),
                "name": format!("{prefix} {i}"),
                "priority": priority.as_str(),
            })
        })
        .collect();
    let body = json!({ "changes": changes }).to_string();
    let (status, answer, _) =
        status_and_json(ingest.handle(rest_post(&body, &[JSON])).await.unwrap());
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], n, "{answer}");
}

/// One drain run that had time to send: a run in the last 2 s of a quota window sends nothing on
/// purpose (a call reserved in one window must reach the provider inside it), so such a run is retried
/// once the window has turned; wherever in the hour the test starts, the run measured is a sending one.
async fn sending_run(drain: &sluice::drain::Drain<AwsDrainPorts>) -> DrainReport {
    loop {
        let report = invoke(drain).await;
        if report.idle != Some(Idle::NoTimeToSend) {
            return report;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

fn received(r: &DrainReport, lane: Priority) -> u32 {
    r.lanes.get(&lane).map_or(0, |l| l.received)
}

/// Rule: a `high` change posted behind 200 `normal` and 200 `bulk` changes — a run can send at most 70
/// (one batch of 10 and at most 60 individual requests) — is delivered in the first drain run.
#[tokio::test]
async fn a_high_change_posted_behind_a_backlog_is_delivered_in_the_first_run() {
    let stack = common::stack().await;
    let high_url = stack
        .outputs
        .high_queue_url
        .clone()
        .expect("HighQueueUrl output");
    let bulk_url = stack
        .outputs
        .bulk_queue_url
        .clone()
        .expect("BulkQueueUrl output");
    let emulator = common::emulator(EmulatorConfig {
        batch_limit: 1,
        individual_limit: 60,
        window_seconds: 3_600,
        ..EmulatorConfig::default()
    })
    .await;
    let ingest = ingest_for(&stack);
    post(&ingest, "normal", 200, Priority::Normal).await;
    post(&ingest, "bulk", 200, Priority::Bulk).await;
    post(&ingest, "urgent", 1, Priority::High).await;
    // Ingest routed each change to its lane's queue.
    assert_eq!(stack.depth(&high_url).await, (1, 0));
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (200, 0));
    assert_eq!(stack.depth(&bulk_url).await, (200, 0));

    let drain = stack.drain(&emulator, &[("BATCH_SIZE", "10")]).await;
    let report = sending_run(&drain).await;
    assert_eq!(received(&report, Priority::High), 1, "{report:?}");
    assert_eq!(
        emulator.received_for("urgent0@example.com").len(),
        1,
        "the high change is delivered in the first run"
    );
    assert_eq!(stack.depth(&high_url).await, (0, 0));
    // The run received only what it could send, high first, and bulk got nothing of it.
    assert!(report.received <= 70, "{report:?}");
    assert_eq!(report.deferred, 0, "nothing received only to be held");
    assert_eq!(received(&report, Priority::Bulk), 0, "{report:?}");
    assert_eq!(
        report.delivered_records(),
        report.received,
        "everything received was delivered: {report:?}"
    );
    let (normal_left, _) = stack.depth(&stack.outputs.queue_url).await;
    assert_eq!(
        normal_left,
        200 - u64::from(received(&report, Priority::Normal)),
        "the normal backlog is still waiting: a single queue would have held the high change behind it"
    );
    assert_eq!(stack.depth(&bulk_url).await, (200, 0));
    assert!(emulator.received_for("bulk0@example.com").is_empty());
    assert_eq!(emulator.stats().over_limit, 0);
    stack.destroy().await;
}
