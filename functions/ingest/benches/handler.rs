//! Handler latency for a single change and for a 1,000-change bulk request, excluding SQS and DynamoDB
//! (in-memory ports; the in-memory sink still renders and checks every queue message body, as the SQS
//! adapter would). Prints figures; asserts nothing about time.
//!
//!   cargo bench -p ingest --bench handler

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ingest::Ingest;
use lambda_http::Request;
use serde_json::{Value, json};
use sluice::ingest::IngestService;
use sluice::ingest::memory::{MemoryIdempotencyStore, MemoryRequestStore, MemorySink};
use sluice_test_support::events::{self, JSON, REST_POST};

/// A REST API `POST /v1/changes` event with `body`, as JSON text (its decoding is timed on its own).
fn event_json(body: &str, idempotency_key: Option<&str>) -> String {
    let mut headers = vec![JSON];
    if let Some(k) = idempotency_key {
        headers.push(("Idempotency-Key", k));
    }
    events::event_json(
        REST_POST,
        "POST",
        "/v1/changes",
        Some(body.as_bytes()),
        &headers,
    )
}

fn change(i: usize) -> Value {
    json!({
        "email": format!("user{i}@example.com"),
        "name": format!("User {i}"),
        "time_zone": "Europe/Amsterdam",
        "custom_fields": {"plan": "pro", "signup_source": "web", "score": i.to_string()},
        "occurred_at": "2026-01-31T09:30:00Z",
        "priority": if i.is_multiple_of(10) { "high" } else { "normal" },
    })
}

struct Figures {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    mean: Duration,
}

fn figures(mut samples: Vec<Duration>) -> Figures {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Figures {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        mean,
    }
}

/// Times `iterations` handler calls on pre-built requests (event decoding timed separately).
fn bench(rt: &tokio::runtime::Runtime, label: &str, body: &str, key: bool, iterations: usize) {
    let sink = MemorySink::default();
    let service = IngestService::new(
        sink.clone(),
        MemoryIdempotencyStore::default(),
        MemoryRequestStore::default(),
    );
    let ingest = Ingest::new(service, None);
    let events: Vec<String> = (0..iterations)
        .map(|i| event_json(body, key.then(|| format!("k{i}")).as_deref()))
        .collect();

    let mut decode = Vec::with_capacity(iterations);
    let requests: Vec<Request> = events
        .iter()
        .map(|e| {
            let t = Instant::now();
            let r = lambda_http::request::from_str(e).unwrap();
            decode.push(t.elapsed());
            r
        })
        .collect();

    let mut handle = Vec::with_capacity(iterations);
    for req in requests {
        let t = Instant::now();
        let r = rt.block_on(ingest.handle(req)).unwrap();
        handle.push(t.elapsed());
        assert_eq!(r.status().as_u16(), 202);
        sink.clear();
    }
    let h = figures(handle);
    let d = figures(decode);
    println!(
        "{label:<34} handler p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  mean {:>9.3?}  | event decode p50 {:>9.3?}  ({iterations} runs, body {} bytes)",
        h.p50,
        h.p90,
        h.p99,
        h.mean,
        d.p50,
        body.len()
    );
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let single = change(1).to_string();
    let bulk = json!({ "changes": (0..1000).map(change).collect::<Vec<_>>() }).to_string();
    let (n1, n1000) = if quick { (20, 3) } else { (2_000, 200) };
    // Warm up allocator and tz tables.
    bench(&rt, "warm-up", &single, false, 20);
    bench(&rt, "1 change", &single, false, n1);
    bench(&rt, "1 change + Idempotency-Key", &single, true, n1);
    bench(&rt, "1,000 changes", &bulk, false, n1000);
    bench(&rt, "1,000 changes + Idempotency-Key", &bulk, true, n1000);
}
