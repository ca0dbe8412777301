//! The operator commands end to end: the `sluice` binary against a stack of its own on LocalStack (one per
//! test, random name, deleted at the end), with the DLQ filled the way production fills it — the drain's
//! SQS adapter dead-letters `rejected`/`malformed` messages with its attributes, and SQS itself moves
//! messages past `maxReceiveCount` (`retries_exhausted`).
//!
//! Needs LocalStack on AWS_ENDPOINT_URL (default http://127.0.0.1:4566):
//!   infra/localstack/up && cargo test -p sluice-cli --test ops -- --include-ignored
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::Utc;
use serde_json::Value;
use sluice::adapters::dynamo::DynamoState;
use sluice::adapters::sqs::SqsChangeQueue;
use sluice::domain::{ChangeMessage, Priority};
use sluice::ports::{
    ChangeQueue, DeadLetter, DeadLetterReason, QuotaKind, QuotaLedger, Reservation, Window,
};
use sluice_test_support::TestStack;
use sluice_test_support::changes::name_change;
use sluice_tests::emulator::{Emulator, EmulatorConfig};

/// A stack of this test's own: `MaxReceiveCount=1`, so a message received twice is moved to the DLQ by SQS.
async fn ops_stack(params: &[(&str, &str)]) -> TestStack {
    let mut all = vec![("MaxReceiveCount", "1")];
    all.extend_from_slice(params);
    TestStack::deploy("sluice-ops", &all).await
}

/// What these tests do to their stack besides what [`TestStack`] does: run the `sluice` binary against it
/// and fill its DLQ the ways production does.
trait OpsSteps {
    async fn sluice(&self, args: &[&str], env: &[(&str, &str)]) -> Output;
    async fn dead_letter(&self, bodies: &[String], reason: DeadLetterReason, detail: &str);
    async fn exhaust_retries(&self, bodies: &[String]);
    async fn fill_dlq(&self) -> BTreeMap<&'static str, Vec<String>>;
}

impl OpsSteps for TestStack {
    /// Runs the `sluice` binary against this stack with only the given function variables set.
    async fn sluice(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.sluice_command(env!("CARGO_BIN_EXE_sluice"));
        command.args(args).envs(env.iter().copied());
        let started = Instant::now();
        let out = command.output().await.unwrap();
        let output = Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: started.elapsed(),
        };
        eprintln!(
            "$ sluice {} ({:?}, ok={})\n{}{}",
            args.join(" "),
            output.took,
            output.ok,
            output.stdout,
            output.stderr
        );
        output
    }

    /// Dead-letters `bodies` through the drain's own SQS adapter: onto the changes queue, received, then
    /// `dead_letter` with the reason and detail as attributes.
    async fn dead_letter(&self, bodies: &[String], reason: DeadLetterReason, detail: &str) {
        assert_eq!(
            self.depth(&self.outputs.queue_url).await,
            (0, 0),
            "the changes queue must be empty before dead-lettering"
        );
        self.send(&self.outputs.queue_url, bodies).await;
        let queue = SqsChangeQueue::new(
            self.sqs.clone(),
            &self.outputs.queue_url,
            &self.outputs.dlq_url,
        );
        let mut received = Vec::new();
        while received.len() < bodies.len() {
            let got = queue.receive(bodies.len() as u32).await.unwrap();
            assert!(!got.is_empty(), "messages vanished from the changes queue");
            received.extend(got);
        }
        let letters: Vec<DeadLetter> = received
            .into_iter()
            .map(|message| DeadLetter {
                message,
                lane: Priority::Normal,
                reason,
                detail: detail.to_owned(),
            })
            .collect();
        queue.dead_letter(&letters).await.unwrap();
    }

    /// Lets SQS move `bodies` to the DLQ: each is received twice with `MaxReceiveCount=1`.
    async fn exhaust_retries(&self, bodies: &[String]) {
        let dlq_before = self.depth(&self.outputs.dlq_url).await.0;
        self.send(&self.outputs.queue_url, bodies).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.depth(&self.outputs.dlq_url).await.0 < dlq_before + bodies.len() as u64 {
            assert!(
                Instant::now() < deadline,
                "SQS did not move the messages to the DLQ"
            );
            // Visibility 0: received (one more receive counted) and visible again at once.
            self.sqs
                .receive_message()
                .queue_url(&self.outputs.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
        assert_eq!(self.depth(&self.outputs.queue_url).await, (0, 0));
    }

    /// 25 dead letters: 10 `rejected`, 8 `malformed`, 7 `retries_exhausted`; returns every body.
    async fn fill_dlq(&self) -> BTreeMap<&'static str, Vec<String>> {
        let rejected: Vec<String> = (0..10)
            .map(|i| body(&format!("r{i}@example.com")))
            .collect();
        let malformed: Vec<String> = (0..8)
            .map(|i| format!(r#"{{"email":"m{i}@example.com","v":"9"}}"#))
            .collect();
        let exhausted: Vec<String> = (0..7).map(|i| body(&format!("x{i}@example.com"))).collect();
        self.exhaust_retries(&exhausted).await;
        self.dead_letter(
            &rejected,
            DeadLetterReason::Rejected,
            "422: email is on the suppression list",
        )
        .await;
        self.dead_letter(
            &malformed,
            DeadLetterReason::Malformed,
            "unknown variant `9`",
        )
        .await;
        assert_eq!(self.depth(&self.outputs.dlq_url).await, (25, 0));
        assert_eq!(self.depth(&self.outputs.queue_url).await, (0, 0));
        // Checking the queue's contents later must not dead-letter them again.
        self.sqs
            .set_queue_attributes()
            .queue_url(&self.outputs.queue_url)
            .attributes(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": self.outputs.dlq_arn, "maxReceiveCount": 100})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        BTreeMap::from([
            ("rejected", rejected),
            ("malformed", malformed),
            ("retries_exhausted", exhausted),
        ])
    }
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn body(email: &str) -> String {
    ChangeMessage::V1(name_change(email, &format!("Name of {email}"))).to_body()
}

fn sorted(bodies: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = bodies.into_iter().collect();
    v.sort();
    v
}

/// Rule: a redrive of N messages leaves exactly those N on the changes queue and none on the DLQ (SQS's
/// move task, the default without a filter).
#[tokio::test]
#[ignore = "needs LocalStack (see the module doc)"]
async fn redrive_moves_every_message_back_exactly_once() {
    let stack = ops_stack(&[]).await;
    let filled = stack.fill_dlq().await;

    let out = stack.sluice(&["dlq", "redrive"], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("moved 25 message(s)"), "{}", out.stdout);
    // The move task runs asynchronously; the command returns once it has completed.
    assert_eq!(stack.depth(&stack.outputs.dlq_url).await, (0, 0));
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (25, 0));
    let expected = sorted(filled.into_values().flatten());
    assert_eq!(
        sorted(stack.bodies(&stack.outputs.queue_url).await),
        expected
    );
    stack.destroy().await;
}

/// Rules: `--filter` moves only the matching messages and leaves the others visible on the DLQ; the
/// client-side path (receive, send, delete) honours `--limit` and `--max-per-second`, and moves the rest
/// without loss or duplicates.
#[tokio::test]
#[ignore = "needs LocalStack (see the module doc)"]
async fn filtered_and_client_side_redrives_move_only_what_was_asked() {
    let stack = ops_stack(&[]).await;
    let filled = stack.fill_dlq().await;

    let out = stack
        .sluice(&["dlq", "redrive", "--filter", "rejected"], &[])
        .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("moved 10 message(s)") && out.stdout.contains("15 left on the DLQ"),
        "{}",
        out.stdout
    );
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (10, 0));
    // The skipped ones are visible again at once, not hidden until a timeout.
    assert_eq!(stack.depth(&stack.outputs.dlq_url).await, (15, 0));
    let list = stack.sluice(&["dlq", "list", "--json"], &[]).await;
    let entries: Vec<Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(entries.len(), 15);
    assert!(
        entries.iter().all(|e| e["reason"] != "rejected"),
        "{entries:?}"
    );

    // Five at 4 per second: at least a second.
    let out = stack
        .sluice(
            &[
                "dlq",
                "redrive",
                "--client-side",
                "--filter",
                "malformed",
                "--limit",
                "5",
                "--max-per-second",
                "4",
            ],
            &[],
        )
        .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("moved 5 message(s)"), "{}", out.stdout);
    assert!(out.took >= Duration::from_millis(1_000), "{:?}", out.took);
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (15, 0));
    assert_eq!(stack.depth(&stack.outputs.dlq_url).await, (10, 0));

    let out = stack
        .sluice(&["dlq", "redrive", "--client-side"], &[])
        .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("moved 10 message(s)"), "{}", out.stdout);
    assert_eq!(stack.depth(&stack.outputs.dlq_url).await, (0, 0));
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (25, 0));

    let moved = stack.bodies(&stack.outputs.queue_url).await;
    assert_eq!(
        moved.iter().collect::<BTreeSet<_>>().len(),
        25,
        "no duplicates"
    );
    assert_eq!(sorted(moved), sorted(filled.into_values().flatten()));
    stack.destroy().await;
}

/// Rules: `dlq list` shows reason, redacted email, age and receives, and leaves every message visible;
/// `dlq show` prints the full reason and body; an unknown id fails plainly.
#[tokio::test]
#[ignore = "needs LocalStack (see the module doc)"]
async fn dlq_list_and_show_read_without_keeping_messages() {
    let stack = ops_stack(&[]).await;
    stack.exhaust_retries(&[body("xena@example.com")]).await;
    stack
        .dead_letter(
            &[body("ann@example.com")],
            DeadLetterReason::Rejected,
            "422: email is on the suppression list",
        )
        .await;
    stack
        .dead_letter(
            &["not json at all".to_owned()],
            DeadLetterReason::Malformed,
            "expected value at line 1 column 1",
        )
        .await;

    let list = stack.sluice(&["dlq", "list"], &[]).await;
    assert!(list.ok, "{}", list.stderr);
    for expected in [
        "a***@example.com",
        "x***@example.com",
        "rejected",
        "malformed",
        "retries_exhausted",
        "422: email is on the suppression list",
        "3 message(s): 1 malformed, 1 rejected, 1 retries_exhausted",
    ] {
        assert!(
            list.stdout.contains(expected),
            "{expected}: {}",
            list.stdout
        );
    }
    assert!(!list.stdout.contains("ann@example.com"), "{}", list.stdout);
    assert_eq!(
        stack.depth(&stack.outputs.dlq_url).await,
        (3, 0),
        "listing must not hide messages"
    );

    let json = stack.sluice(&["dlq", "list", "--json"], &[]).await;
    let entries: Vec<Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(entries.len(), 3);
    let rejected = entries.iter().find(|e| e["reason"] == "rejected").unwrap();
    assert_eq!(rejected["email"], "a***@example.com");
    assert_eq!(rejected["receive_count"], 1);
    assert!(rejected["age_s"].as_i64().unwrap() >= 0);
    let id = rejected["id"].as_str().unwrap();

    let show = stack.sluice(&["dlq", "show", id], &[]).await;
    assert!(show.ok, "{}", show.stderr);
    assert!(
        show.stdout
            .contains("detail       422: email is on the suppression list"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("\"email\": \"ann@example.com\""),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("  sluice.dead_lettered_at = "),
        "{}",
        show.stdout
    );
    assert_eq!(stack.depth(&stack.outputs.dlq_url).await, (3, 0));

    let missing = stack.sluice(&["dlq", "show", "no-such-id"], &[]).await;
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("no message no-such-id on the DLQ"),
        "{}",
        missing.stderr
    );
    stack.destroy().await;
}

/// Rule: on a stack deployed with `QuotaModel=rolling`, `status` reads the rolling ledger: the window is
/// the trailing hour up to now, and what is used is what was reserved in it.
#[tokio::test]
#[ignore = "needs LocalStack (see the module doc)"]
async fn status_in_rolling_mode_shows_the_trailing_window() {
    let stack = ops_stack(&[("QuotaModel", "rolling")]).await;
    let state = DynamoState::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.outputs.table_name,
    );
    let window = Window::trailing(Utc::now(), 3_600);
    assert!(matches!(
        state
            .reserve(QuotaKind::Batch, window, 2, 50)
            .await
            .unwrap(),
        Reservation::Granted { used: 2 }
    ));
    let out = stack.sluice(&["status", "--json"], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    let status: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status["window"]["model"], "rolling");
    assert_eq!(status["window"]["next_in_s"], 0);
    assert_eq!(
        status["quota"]["batch"],
        serde_json::json!({"limit": 50, "used": 2, "left": 48, "adopted": 0})
    );
    let table = stack.sluice(&["status"], &[]).await;
    assert!(table.ok, "{}", table.stderr);
    assert!(
        table
            .stdout
            .contains("quota window   rolling: the 1h 00m up to"),
        "{}",
        table.stdout
    );
    stack.destroy().await;
}

/// Rule: `status --json` reports the queue and DLQ depths and the quota the ledger holds for the current
/// window, with the window length from the stack's parameters; reading consumes no quota.
#[tokio::test]
#[ignore = "needs LocalStack (see the module doc)"]
async fn status_reports_depths_and_quota_from_the_ledger() {
    // A one-day window: the test cannot straddle a window boundary except at midnight UTC.
    let stack = ops_stack(&[("QuotaWindowSeconds", "86400")]).await;
    let bodies: Vec<String> = (0..7).map(|i| body(&format!("s{i}@example.com"))).collect();
    stack
        .dead_letter(&bodies[..3], DeadLetterReason::Rejected, "422")
        .await;
    stack.send(&stack.outputs.queue_url, &bodies[3..]).await;
    stack.send(&stack.outputs.queue_url, &bodies[..3]).await;
    // Two in flight, as if a drain were working on them.
    let held = stack.receive(&stack.outputs.queue_url, 2, 120).await;
    assert_eq!(held.len(), 2);

    let state = DynamoState::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.outputs.table_name,
    );
    let window = Window::containing(Utc::now(), 86_400);
    assert!(matches!(
        state
            .reserve(QuotaKind::Batch, window, 2, 50)
            .await
            .unwrap(),
        Reservation::Granted { used: 2 }
    ));
    assert!(matches!(
        state
            .reserve(QuotaKind::Individual, window, 5, 3_600)
            .await
            .unwrap(),
        Reservation::Granted { used: 5 }
    ));

    let out = stack.sluice(&["status", "--json"], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    let status: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status["stack"], stack.name.as_str());
    assert_eq!(status["window"]["length_s"], 86_400);
    assert_eq!(
        status["window"]["start"],
        chrono::DateTime::from_timestamp(window.start, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert!(status["window"]["next_in_s"].as_i64().unwrap() > 0);
    assert_eq!(
        status["quota"]["batch"],
        serde_json::json!({"limit": 50, "used": 2, "left": 48, "adopted": 0})
    );
    assert_eq!(
        status["quota"]["individual"],
        serde_json::json!({"limit": 3600, "used": 5, "left": 3595, "adopted": 0})
    );
    assert_eq!(status["quota"]["records_left"], 48 * 1_000 + 3_595);
    assert_eq!(status["queue"]["visible"], 5);
    assert_eq!(status["queue"]["in_flight"], 2);
    assert_eq!(status["queue"]["oldest_age_s"], Value::Null);
    assert!(
        status["queue"]["oldest_age_note"]
            .as_str()
            .unwrap()
            .contains("no CloudWatch datapoint"),
        "{status}"
    );
    assert_eq!(
        status["dlq"],
        serde_json::json!({"visible": 3, "in_flight": 0})
    );
    assert_eq!(status["lease"]["held"], false);
    assert_eq!(status["circuit"]["open"], false);

    // Reading twice consumed nothing, and the table says the same.
    let table = stack.sluice(&["status"], &[]).await;
    assert!(table.ok, "{}", table.stderr);
    for expected in [
        "  batch       2     48    50",
        "backlog        5 visible, 2 in flight, 0 delayed",
        "dlq            3 message(s)",
    ] {
        assert!(
            table.stdout.contains(expected),
            "{expected}: {}",
            table.stdout
        );
    }
    assert_eq!(state.used(QuotaKind::Batch, window).await.unwrap(), 2);
    assert_eq!(state.used(QuotaKind::Individual, window).await.unwrap(), 5);
    stack.destroy().await;
}

/// Rule: `drain --once` runs the Lambda's engine from here: names from the stack, provider from the
/// environment; queued changes reach the provider (the emulator), quota is reserved in the same ledger.
#[tokio::test]
#[ignore = "needs LocalStack (see the module doc)"]
async fn drain_once_delivers_queued_changes() {
    // One-day windows (stack and emulator): the run and the status read share a window.
    let stack = ops_stack(&[("QuotaWindowSeconds", "86400")]).await;
    let emulator = Emulator::spawn(EmulatorConfig {
        window_seconds: 86_400,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let emails: Vec<String> = (0..6).map(|i| format!("d{i}@example.com")).collect();
    let bodies: Vec<String> = emails.iter().map(|e| body(e)).collect();
    stack.send(&stack.outputs.queue_url, &bodies).await;

    let base_url = emulator.base_url();
    let env = [
        ("PROVIDER_BASE_URL", base_url.as_str()),
        ("PROVIDER_ACCOUNT_ID", emulator.account_id()),
        ("PROVIDER_API_KEY", emulator.api_key()),
    ];
    let out = stack.sluice(&["drain", "--once", "--json"], &env).await;
    assert!(out.ok, "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["received"], 6, "{report}");
    assert_eq!(report["deleted"], 6, "{report}");
    assert_eq!(
        report["delivered"]["batch"].as_u64().unwrap()
            + report["delivered"]["individual"].as_u64().unwrap(),
        6,
        "{report}"
    );
    let latest = emulator.latest();
    for email in &emails {
        assert_eq!(
            latest.get(email).and_then(|s| s.name.clone()),
            Some(format!("Name of {email}")),
            "{email} not delivered"
        );
    }
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (0, 0));

    // The status reads the quota the run reserved.
    let status = stack.sluice(&["status", "--json"], &[]).await;
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    let used = status["quota"]["batch"]["used"].as_u64().unwrap()
        + status["quota"]["individual"]["used"].as_u64().unwrap();
    assert_eq!(
        used,
        report["requests"]["batch"].as_u64().unwrap()
            + report["requests"]["individual"].as_u64().unwrap()
    );

    // Nothing left: the human report says so.
    let again = stack.sluice(&["drain", "--once"], &env).await;
    assert!(again.ok, "{}", again.stderr);
    assert!(
        again.stdout.contains("delivered 0 record(s)"),
        "{}",
        again.stdout
    );
    emulator.shutdown().await;
    stack.destroy().await;
}

/// Rule: Ctrl-C during a client-side redrive finishes the batch in flight and stops: every message is on
/// exactly one of the two queues, none lost, none doubled, none left hidden.
#[tokio::test]
#[ignore = "needs LocalStack (see the module doc)"]
async fn an_interrupted_redrive_loses_and_duplicates_nothing() {
    let stack = ops_stack(&[]).await;
    let filled = stack.fill_dlq().await;

    // 5 per second: about 5 s for 25, so the interrupt lands mid-way.
    let child = stack
        .sluice_command(env!("CARGO_BIN_EXE_sluice"))
        .args(["dlq", "redrive", "--client-side", "--max-per-second", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success());
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(
        stderr.contains("stopping after the batch in flight"),
        "{stderr}"
    );

    let (main, main_hidden) = stack.depth(&stack.outputs.queue_url).await;
    let (dlq, dlq_hidden) = stack.depth(&stack.outputs.dlq_url).await;
    assert_eq!((main_hidden, dlq_hidden), (0, 0), "nothing left hidden");
    assert!(
        main > 0 && dlq > 0,
        "interrupted mid-way: {main} moved, {dlq} left"
    );
    assert_eq!(main + dlq, 25, "{main} + {dlq}");
    assert!(
        stdout.contains(&format!("moved {main} message(s)")),
        "{stdout}"
    );
    let mut everywhere = stack.bodies(&stack.outputs.queue_url).await;
    everywhere.extend(stack.bodies(&stack.outputs.dlq_url).await);
    assert_eq!(sorted(everywhere), sorted(filled.into_values().flatten()));
    stack.destroy().await;
}

/// `status` reads the oldest age from CloudWatch (SQS publishes it there in AWS; here the test publishes a
/// datapoint itself, since LocalStack does not).
#[tokio::test]
#[ignore = "needs LocalStack (make test runs it)"]
async fn status_reads_the_oldest_age_from_cloudwatch() {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let stack = ops_stack(&[]).await;
    let queue_name = stack
        .outputs
        .queue_url
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let now = Utc::now();
    aws_sdk_cloudwatch::Client::new(&stack.sdk)
        .put_metric_data()
        .namespace("AWS/SQS")
        .metric_data(
            MetricDatum::builder()
                .metric_name("ApproximateAgeOfOldestMessage")
                .dimensions(
                    Dimension::builder()
                        .name("QueueName")
                        .value(&queue_name)
                        .build(),
                )
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                    now.timestamp() - 120,
                ))
                .value(754.0)
                .unit(StandardUnit::Seconds)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let out = stack.sluice(&["status", "--json"], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    let status: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status["queue"]["oldest_age_s"], 754, "{status}");
    assert!(status["queue"].get("oldest_age_note").is_none(), "{status}");
    let text = stack.sluice(&["status"], &[]).await;
    assert!(text.ok, "{}", text.stderr);
    assert!(
        text.stdout
            .contains("oldest message 12m 34s (CloudWatch, sampled "),
        "{}",
        text.stdout
    );
    stack.destroy().await;
}
