//! Ingest's sink on SQS ([`ChangeSink`]): puts accepted changes on the changes queue of their lane (by
//! priority: [`Lanes`]); one request's changes may span lanes.
//!
//! Changes go out with `SendMessageBatch`, in batches of at most 10 entries and 256 KiB, sent in parallel.
//! A call that fails is retried by the SDK (standard mode, configured in [`super::ingest_client`]); what
//! the SDK never retries is a call that succeeds with some entries refused, so entries SQS refused through
//! no fault of ours are retried here with a short backoff (10/20/40 ms, jittered). The result is
//! all-or-nothing from the API's point of view: `Ok` only when every change is on the queue.

use std::time::Duration;

use anyhow::anyhow;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchRequestEntry};
use futures::stream::{self, StreamExt};
use rand::Rng;

use super::MAX_BATCH_ENTRIES;
use crate::adapters::sdk_error::error_kind;
use crate::domain::{Change, ChangeMessage};
use crate::ports::sink::MAX_MESSAGE_BYTES;
use crate::ports::{ChangeSink, ErrorKind, Lanes, PortError, PortResult};

/// Batch calls in flight at once for one request (a 1,000-change request is 100 calls).
const CONCURRENCY: usize = 16;
/// Tries of the refused entries of one batch, the first included.
const ATTEMPTS: u32 = 4;
/// First retry delay; doubled each time.
const BASE_BACKOFF: Duration = Duration::from_millis(10);

/// Enqueues changes on the SQS queue of each one's lane.
#[derive(Debug, Clone)]
pub struct SqsChangeSink {
    client: Client,
    queues: Lanes<String>,
}

impl SqsChangeSink {
    /// Every lane on one queue.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self::with_lanes(client, Lanes::single(queue_url.into()))
    }

    /// Each change on its lane's queue.
    pub fn with_lanes(client: Client, queues: Lanes<String>) -> Self {
        Self { client, queues }
    }
}

/// A batch of message bodies (by index), all for one queue.
struct Batch<'a> {
    queue_url: &'a str,
    entries: Vec<usize>,
}

/// Splits message bodies (by index) by queue, then into batches within both SQS batch limits.
fn batches<'a>(bodies: &[String], queues: &[&'a str]) -> Vec<Batch<'a>> {
    let mut distinct: Vec<&str> = queues.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
        .into_iter()
        .flat_map(|url| {
            let mine: Vec<usize> = (0..bodies.len()).filter(|&i| queues[i] == url).collect();
            split(bodies, &mine).into_iter().map(move |entries| Batch {
                queue_url: url,
                entries,
            })
        })
        .collect()
}

/// Splits the bodies at `indices` into batches within both SQS batch limits.
fn split(bodies: &[String], indices: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for &i in indices {
        let body = &bodies[i];
        if current.len() == MAX_BATCH_ENTRIES
            || (!current.is_empty() && bytes + body.len() > MAX_MESSAGE_BYTES)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += body.len();
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Why some entries of one batch did not get on the queue.
struct BatchFailure {
    unsent: usize,
    kind: ErrorKind,
    reason: String,
}

impl SqsChangeSink {
    /// Sends one batch, retrying the entries SQS refused (not the calls: the SDK did); returns what could
    /// not be sent.
    async fn send_batch(&self, bodies: &[String], batch: Batch<'_>) -> Result<(), BatchFailure> {
        let queue_url = batch.queue_url;
        let mut pending = batch.entries;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let failed = self.send_entries(queue_url, bodies, &pending).await?;
            if let Some(ours) = failed.iter().find(|f| f.sender_fault()) {
                // Our request is wrong for this entry: sending it again will not help.
                return Err(BatchFailure {
                    unsent: failed.len(),
                    kind: ErrorKind::Permanent,
                    reason: format!(
                        "SQS refused entry: {} {}",
                        ours.code(),
                        ours.message().unwrap_or("")
                    ),
                });
            }
            pending.retain(|i| failed.iter().any(|f| f.id() == i.to_string()));
            if pending.is_empty() {
                return Ok(());
            }
            last = failed
                .first()
                .map(|f| format!("{} {}", f.code(), f.message().unwrap_or("")))
                .unwrap_or_default();
        }
        Err(BatchFailure {
            unsent: pending.len(),
            kind: ErrorKind::Transient,
            reason: last,
        })
    }

    /// One `SendMessageBatch` of the bodies at `pending` (each entry's id is its body's index); returns
    /// the entries SQS refused. A failed call (after the SDK's retries) fails the whole batch.
    async fn send_entries(
        &self,
        queue_url: &str,
        bodies: &[String],
        pending: &[usize],
    ) -> Result<Vec<BatchResultErrorEntry>, BatchFailure> {
        let entries = pending
            .iter()
            .map(|&i| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&bodies[i])
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BatchFailure {
                unsent: pending.len(),
                kind: ErrorKind::Permanent,
                reason: e.to_string(),
            })?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| BatchFailure {
                unsent: pending.len(),
                kind: error_kind(&e),
                reason: format!("{}", aws_sdk_sqs::error::DisplayErrorContext(&e)),
            })?;
        Ok(out.failed().to_vec())
    }
}

/// The wait before try `attempt` (1, 2, 3): 10, 20, 40 ms, plus up to half of it again at random.
fn backoff(attempt: u32) -> Duration {
    let base = BASE_BACKOFF * 2u32.pow(attempt - 1);
    let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 2);
    base + Duration::from_millis(jitter)
}

impl ChangeSink for SqsChangeSink {
    async fn enqueue(&self, changes: &[Change]) -> PortResult<()> {
        let bodies: Vec<String> = changes
            .iter()
            .map(|c| ChangeMessage::V1(c.clone()).to_body())
            .collect();
        let queues: Vec<&str> = changes
            .iter()
            .map(|c| self.queues.queue(c.priority).as_str())
            .collect();
        // Futures built up front (not by a closure inside the stream) keep the future `Send`.
        let calls: Vec<_> = batches(&bodies, &queues)
            .into_iter()
            .map(|batch| {
                let url = batch.queue_url;
                let sent = self.send_batch(&bodies, batch);
                async move { sent.await.err().map(|f| (url, f)) }
            })
            .collect();
        let failures: Vec<(&str, BatchFailure)> = stream::iter(calls)
            .buffer_unordered(CONCURRENCY)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        let Some((queue_url, first)) = failures.first() else {
            return Ok(());
        };
        let unsent: usize = failures.iter().map(|(_, f)| f.unsent).sum();
        let kind = if failures.iter().any(|(_, f)| f.kind == ErrorKind::Permanent) {
            ErrorKind::Permanent
        } else {
            ErrorKind::Transient
        };
        let source = anyhow!(
            "{unsent} of {} changes not enqueued on {}: {}",
            changes.len(),
            queue_url,
            first.reason
        );
        Err(PortError {
            kind,
            context: "enqueue changes",
            source,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_entry_and_byte_limits() {
        let small: Vec<String> = (0..25).map(|_| "x".repeat(100)).collect();
        let entries = |b: Vec<Batch<'_>>| b.into_iter().map(|b| b.entries).collect::<Vec<_>>();
        let b = entries(batches(&small, &["q"; 25]));
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
        assert_eq!(b.concat(), (0..25).collect::<Vec<_>>());

        let big: Vec<String> = (0..5).map(|_| "x".repeat(100 * 1024)).collect();
        let b = entries(batches(&big, &["q"; 5]));
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(batches(&[], &[]).is_empty());
    }

    #[test]
    fn batches_never_mix_queues() {
        let bodies: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        let queues: Vec<&str> = (0..12)
            .map(|i| if i % 3 == 0 { "h" } else { "n" })
            .collect();
        let b = batches(&bodies, &queues);
        let shape: Vec<(&str, Vec<usize>)> =
            b.into_iter().map(|b| (b.queue_url, b.entries)).collect();
        assert_eq!(
            shape,
            vec![
                ("h", vec![0, 3, 6, 9]),
                ("n", vec![1, 2, 4, 5, 7, 8, 10, 11]),
            ]
        );
    }

    /// SQS over HTTP (wiremock): answers `SendMessageBatch` calls in turn from `answers`, the last one
    /// again once they run out.
    struct Answers {
        answers: Vec<wiremock::ResponseTemplate>,
        calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl wiremock::Respond for Answers {
        fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.answers[n.min(self.answers.len() - 1)].clone()
        }
    }

    fn batch_answer(failed: &[(&str, bool)]) -> wiremock::ResponseTemplate {
        let failed: Vec<serde_json::Value> = failed
            .iter()
            .map(|(id, sender)| {
                serde_json::json!({"Id": id, "SenderFault": sender, "Code": "InternalError", "Message": "x"})
            })
            .collect();
        wiremock::ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"Successful": [], "Failed": failed}))
    }

    fn server_error() -> wiremock::ResponseTemplate {
        wiremock::ResponseTemplate::new(500)
            .set_body_json(serde_json::json!({"__type": "InternalError", "message": "boom"}))
    }

    /// SDK configuration pointed at `server`, with test credentials.
    async fn sdk_for(server: &wiremock::MockServer) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(server.uri())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await
    }

    /// Enqueues two changes through a sink whose SQS answers `answers`; returns the result and the calls.
    async fn enqueue_against(answers: Vec<wiremock::ResponseTemplate>) -> (PortResult<()>, usize) {
        let server = wiremock::MockServer::start().await;
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(Answers {
                answers,
                calls: calls.clone(),
            })
            .mount(&server)
            .await;
        let sdk = sdk_for(&server).await;
        let sink = SqsChangeSink::new(super::super::ingest_client(&sdk), "http://q");
        let result = sink.enqueue(&two_changes()).await;
        (result, calls.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn two_changes() -> Vec<Change> {
        ["a@x.io", "b@x.io"]
            .iter()
            .map(|email| {
                let body = format!(
                    r#"{{"v":"1","change_id":"6f2c1c52-6a53-4a43-9d1f-0c8f3a4d1e01","request_id":"0b7e6f58-2f7a-4a57-9c3e-2f1d6f0e9a02","email":"{email}","occurred_at":"2025-03-01T10:00:00Z","accepted_at":"2025-03-01T10:00:01Z"}}"#
                );
                ChangeMessage::from_body(&body).unwrap().into_change()
            })
            .collect()
    }

    #[tokio::test]
    async fn each_change_goes_to_its_lanes_queue() {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(batch_answer(&[]))
            .mount(&server)
            .await;
        let sdk = sdk_for(&server).await;
        let lanes = Lanes::new("http://h".to_string(), "http://n".into(), "http://b".into());
        let sink = SqsChangeSink::with_lanes(super::super::ingest_client(&sdk), lanes);
        let mut changes = two_changes();
        changes[0].priority = crate::domain::Priority::High;
        changes[1].priority = crate::domain::Priority::Bulk;
        sink.enqueue(&changes).await.unwrap();
        let mut sent: Vec<(String, usize)> = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                let url = body["QueueUrl"].as_str().unwrap_or_default().to_owned();
                (url, body["Entries"].as_array().map_or(0, Vec::len))
            })
            .collect();
        sent.sort();
        assert_eq!(sent, vec![("http://b".into(), 1), ("http://h".into(), 1)]);
    }

    #[tokio::test]
    async fn a_failed_call_is_retried_by_the_sdk_and_a_refused_entry_by_the_sink() {
        // 500: the SDK tries again; then SQS refuses entry 1 (not our fault): the sink sends it alone.
        let answers = vec![
            server_error(),
            batch_answer(&[("1", false)]),
            batch_answer(&[]),
        ];
        let (result, calls) = enqueue_against(answers).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn what_keeps_failing_is_transient_after_four_tries_and_our_fault_at_once_permanent() {
        let (result, calls) = enqueue_against(vec![server_error()]).await;
        assert_eq!(result.unwrap_err().kind, ErrorKind::Transient);
        assert_eq!(calls, 4, "the SDK's tries of the call");

        let (result, calls) = enqueue_against(vec![batch_answer(&[("0", false)])]).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient);
        assert!(
            err.to_string().contains("1 of 2 changes not enqueued"),
            "{err}"
        );
        assert_eq!(
            calls, ATTEMPTS as usize,
            "the sink's tries of the refused entry"
        );

        let (result, calls) = enqueue_against(vec![batch_answer(&[("0", true)])]).await;
        assert_eq!(result.unwrap_err().kind, ErrorKind::Permanent);
        assert_eq!(calls, 1);
    }
}
