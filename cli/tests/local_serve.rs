//! `sluice local serve` — the process `make up` runs for both functions — against a stack of its own on
//! LocalStack, with the provider emulator: after 150 s without a single request (the quiet that broke
//! `cargo lambda watch` after 60–90 s), a POST is answered 202 and a drain invocation returns the run's
//! report, each within 5 s, and the change reaches the provider. A body that is not UTF-8 is a 4xx
//! problem+json from the handler, as in AWS.
//!
//! Needs LocalStack on AWS_ENDPOINT_URL (default http://127.0.0.1:4566):
//!   infra/localstack/up && cargo test -p sluice-cli --test local_serve -- --include-ignored
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_test_support::TestStack;
use sluice_test_support::drain_run::start_emulator;
use sluice_test_support::events::SCHEDULED_EVENT;
use sluice_tests::emulator::EmulatorConfig;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long the stack is left alone.
const IDLE: Duration = Duration::from_secs(150);
/// How long each answer after the quiet may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
const API_KEY: &str = "idle-test-key";

/// The local server, started as `infra/local/up` starts it; killed when dropped.
struct Served {
    child: tokio::process::Child,
    base: String,
}

impl Served {
    async fn start(stack: &TestStack, provider: &str) -> Self {
        let emulator = EmulatorConfig::default();
        // Only what `make up` writes to .sluice/local.env; nothing from the developer's shell.
        let mut command = stack.sluice_command(env!("CARGO_BIN_EXE_sluice"));
        command
            .args(["local", "serve", "--listen", "127.0.0.1:0"])
            // No timer: the quiet is real — not one call reaches either function while it lasts.
            .args(["--drain-every", "0"])
            .env("PROVIDER_BASE_URL", provider)
            .env("PROVIDER_ACCOUNT_ID", &emulator.account_id)
            .env("PROVIDER_API_KEY", &emulator.api_key)
            .env("INGEST_API_KEY", API_KEY)
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // The server names its address once it listens; its later log lines go on to this test's stderr.
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                eprintln!("serve: {line}");
                if let Some(rest) = line.split("ingest on ").nth(1) {
                    let url = rest.split("/lambda-url/").next().unwrap();
                    return url.to_owned();
                }
            }
            panic!("sluice local serve exited before listening");
        })
        .await
        .expect("sluice local serve did not start listening within 60 s");
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("serve: {line}");
            }
        });
        Self { child, base }
    }
}

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

/// Invokes the drain through the Lambda Invoke API route, with the scheduled-event fixture.
async fn invoke_drain(http: &reqwest::Client, base: &str) -> (Value, Duration) {
    let event = SCHEDULED_EVENT;
    let started = Instant::now();
    let r = http
        .post(format!("{base}/2015-03-31/functions/drain/invocations"))
        .body(event)
        .send()
        .await
        .expect("the drain did not answer");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers().get("x-amz-function-error").is_none(),
        "the drain failed"
    );
    (r.json().await.unwrap(), started.elapsed())
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
    let mut served = Served::start(&stack, &emulator.base_url()).await;
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
    let (report, _) = invoke_drain(&http, &base).await;
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

    let (report, took) = invoke_drain(&http, &base).await;
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
