//! `sluice local serve` — the process `make up` runs for both functions — against a stack of its own on
//! LocalStack, with the provider emulator: after 150 s without a single request (the quiet that broke
//! `cargo lambda watch` after 60–90 s), a POST is answered 202 and a drain invocation returns the run's
//! report, each within 5 s, and the change reaches the provider. A body that is not UTF-8 is a 4xx
//! problem+json from the handler, as in AWS.
//!
//! Needs LocalStack on AWS_ENDPOINT_URL (default http://127.0.0.1:4566):
//!   infra/localstack/up && cargo test -p sluice-cli --test local_serve -- --include-ignored
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_test_support::TestStack;
use sluice_test_support::drain_run::start_emulator;
use sluice_test_support::serve::LocalServe;
use sluice_tests::emulator::EmulatorConfig;

/// How long the stack is left alone.
const IDLE: Duration = Duration::from_secs(150);
/// How long each answer after the quiet may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
const API_KEY: &str = "idle-test-key";

/// POSTs `body` to the local ingest URL; the status, the JSON answer and how long it took.
async fn post(
    http: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
) -> (u16, Option<String>, Value, Duration) {
    let started = Instant::now();
    let r = http
        .post(format!("{base}/lambda-url/ingest/v1/changes"))
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("ingest did not answer");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let value = r.json().await.unwrap_or(Value::Null);
    (status, content_type, value, started.elapsed())
}

/// Invokes the drain; its report and how long it took.
async fn invoke_drain(http: &reqwest::Client, served: &LocalServe) -> (Value, Duration) {
    let started = Instant::now();
    let report = served.invoke_drain(http).await;
    (report, started.elapsed())
}

fn delivered(report: &Value) -> u64 {
    report["delivered"]["batch"].as_u64().unwrap()
        + report["delivered"]["individual"].as_u64().unwrap()
}

#[tokio::test]
#[ignore = "needs LocalStack and 150 s of quiet: `cargo test -p sluice-cli --test local_serve -- --include-ignored`"]
async fn the_local_stack_answers_within_seconds_after_150_s_idle() {
    let stack = TestStack::deploy("sluice-idle", &[]).await;
    let emulator = start_emulator(EmulatorConfig::default()).await;
    let mut served = LocalServe::start(
        &stack,
        env!("CARGO_BIN_EXE_sluice"),
        &emulator.base_url(),
        &EmulatorConfig::default(),
        API_KEY,
        &[],
    )
    .await;
    // Each call must answer within the bound: a hang fails the test instead of stalling it.
    let http = reqwest::Client::builder()
        .timeout(ANSWER_WITHIN)
        .build()
        .unwrap();
    let base = served.base.clone();

    // One round trip first, as `make up` checks readiness.
    let (status, _, answer, _) = post(
        &http,
        &base,
        br#"{"email":"before@idle.test","name":"Before"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let (report, _) = invoke_drain(&http, &served).await;
    assert_eq!(delivered(&report), 1, "{report}");

    eprintln!("idle for {IDLE:?}");
    tokio::time::sleep(IDLE).await;
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "sluice local serve exited while idle"
    );

    let (status, _, answer, took) = post(
        &http,
        &base,
        br#"{"email":"after@idle.test","name":"After"}"#.to_vec(),
    )
    .await;
    eprintln!("POST after {IDLE:?} idle: {status} in {took:?}");
    assert_eq!(status, 202, "{answer}");
    assert!(took < ANSWER_WITHIN, "POST took {took:?}");
    assert_eq!(answer["accepted"], json!(1), "{answer}");

    let (status, content_type, problem, _) = post(&http, &base, b"\xff\xfe{".to_vec()).await;
    assert_eq!(
        (status, content_type.as_deref()),
        (400, Some("application/problem+json")),
        "{problem}"
    );

    let (report, took) = invoke_drain(&http, &served).await;
    eprintln!("drain after {IDLE:?} idle: {took:?}: {report}");
    assert!(took < ANSWER_WITHIN, "the drain took {took:?}");
    assert_eq!(report["received"], json!(1), "{report}");
    assert_eq!(delivered(&report), 1, "{report}");
    let latest = emulator.latest();
    assert_eq!(
        latest
            .get("after@idle.test")
            .and_then(|s| s.name.as_deref()),
        Some("After"),
        "the provider holds: {latest:?}"
    );

    served.child.kill().await.unwrap();
    emulator.shutdown().await;
    stack.destroy().await;
}
