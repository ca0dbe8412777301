//! The send loop against the real ingest router (in-memory ports) over HTTP: interrupted and resumed, a
//! chunk re-sent after a crash, refused rows left out, transient answers retried — every change enqueued
//! exactly once.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

use sluice::ingest::memory::{MemoryIdempotencyStore, MemoryRequestStore, MemorySink};
use sluice::ingest::{ApiKey, IngestService};

use super::client::IngestClient;
use super::source::{self, Format};
use super::state;
use super::tests::{jsonl, scratch};
use super::*;

/// The real ingest router on in-memory ports, served over HTTP on a free port.
async fn serve_ingest(sink: MemorySink) -> String {
    let service = IngestService::new(
        sink,
        MemoryIdempotencyStore::default(),
        MemoryRequestStore::default(),
    );
    let api = axum::Router::new()
        .fallback_service(ingest::Ingest::new(service, Some(ApiKey::new("k"))).api());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, api).await.unwrap();
    });
    format!("http://{addr}/lambda-url/ingest")
}

/// Runs the send loop over `chunks` with the state on disk, as one `sluice backfill` run does.
async fn send(
    input: &Input,
    chunks: &[Chunk],
    client: &IngestClient,
    state_path: &std::path::Path,
) -> Ended {
    send_unless(input, chunks, client, state_path, false).await
}

/// [`send`] to the end; the state it saved.
async fn finish(
    input: &Input,
    chunks: &[Chunk],
    client: &IngestClient,
    state_path: &std::path::Path,
) -> state::State {
    assert_eq!(
        send(input, chunks, client, state_path).await,
        Ended::Finished
    );
    state::load(state_path, &input.digest).unwrap()
}

/// Chunks done, changes accepted, chunks replayed.
fn progress(s: &state::State) -> (usize, u64, u64) {
    (s.chunks_done, s.accepted, s.replayed_chunks)
}

/// [`send`], with Ctrl-C already pressed when `stopped`.
async fn send_unless(
    input: &Input,
    chunks: &[Chunk],
    client: &IngestClient,
    state_path: &std::path::Path,
    stopped: bool,
) -> Ended {
    let mut state = state::load(state_path, &input.digest).unwrap();
    let stop = AtomicBool::new(stopped);
    let bar = ProgressBar::hidden();
    let run = Run {
        input,
        client,
        state_path,
        bar: &bar,
        stop: &stop,
    };
    run.send(chunks, &mut state).await.unwrap()
}

#[tokio::test]
async fn an_interrupted_backfill_resumes_and_enqueues_every_change_exactly_once() {
    let sink = MemorySink::default();
    let url = serve_ingest(sink.clone()).await;
    let client = IngestClient::new(&url, Some("k".into())).unwrap();
    let mut text = jsonl(2_450);
    text.push_str("{\"email\":\"not-an-email\",\"name\":\"Bad\"}\n");
    let file = scratch("users.jsonl");
    std::fs::write(&file, &text).unwrap();
    let input = source::read(&file, Format::Jsonl).unwrap();
    let chunks = chunk::plan(&input.rows, 500);
    assert_eq!(chunks.len(), 5);
    let state_path = state::path_for(&file);

    // Stopped after two chunks: the state says so, and two chunks' changes are enqueued.
    assert_eq!(
        send(&input, &chunks[..2], &client, &state_path).await,
        Ended::Finished
    );
    assert_eq!(
        state::load(&state_path, &input.digest).unwrap().chunks_done,
        2
    );
    assert_eq!(sink.sent().len(), 1_000);

    // Resumed: the rest, nothing twice; the bad row refused by the API, the rest of its chunk sent.
    let s = finish(&input, &chunks, &client, &state_path).await;
    assert_eq!(progress(&s), (5, 2_450, 0));
    assert_eq!(s.refused.keys().collect::<Vec<_>>(), [&2_450]);
    assert!(s.refused[&2_450].starts_with("email"), "{:?}", s.refused);

    // A crash after the last chunk was accepted but before the state said so: it is sent again under
    // the same key and answered as a replay — nothing enqueued twice.
    let mut crashed = s.clone();
    crashed.chunks_done = 4;
    crashed.accepted -= 450;
    crashed.refused.clear();
    state::save(&state_path, &crashed).unwrap();
    let s = finish(&input, &chunks, &client, &state_path).await;
    assert_eq!(progress(&s), (5, 2_450, 1));

    let sent = sink.sent();
    let emails: std::collections::BTreeSet<String> =
        sent.iter().map(|c| c.email.as_str().to_owned()).collect();
    assert_eq!(
        (sent.len(), emails.len()),
        (2_450, 2_450),
        "every change exactly once"
    );
    assert!(
        sent.iter()
            .all(|c| c.priority == sluice::domain::Priority::Bulk)
    );
}

#[tokio::test]
async fn transient_answers_are_retried_and_a_stop_before_a_chunk_sends_nothing() {
    let sink = MemorySink::default();
    let url = serve_ingest(sink.clone()).await;
    let client = IngestClient::new(&url, Some("k".into())).unwrap();
    let file = scratch("users.jsonl");
    std::fs::write(&file, jsonl(30)).unwrap();
    let input = source::read(&file, Format::Jsonl).unwrap();
    let chunks = chunk::plan(&input.rows, 10);
    let state_path = state::path_for(&file);

    assert_eq!(
        send_unless(&input, &chunks, &client, &state_path, true).await,
        Ended::Stopped
    );
    assert!(sink.sent().is_empty());

    // The queue fails twice (503 from the API), then takes the chunk.
    sink.fail_next(2);
    assert_eq!(
        send(&input, &chunks, &client, &state_path).await,
        Ended::Finished
    );
    assert_eq!(sink.sent().len(), 30);

    let wrong_key = IngestClient::new(&url, Some("nope".into())).unwrap();
    let err = wrong_key
        .post("k1", chunk::body(&input.rows, &[0]), |_, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}
