//! Ingest's sink on SQS ([`ChangeSink`]): puts accepted changes on the changes queue.
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
use crate::ports::{ChangeSink, ErrorKind, PortError, PortResult};

/// Batch calls in flight at once for one request (a 1,000-change request is 100 calls).
const CONCURRENCY: usize = 16;
/// Tries of the refused entries of one batch, the first included.
const ATTEMPTS: u32 = 4;
/// First retry delay; doubled each time.
const BASE_BACKOFF: Duration = Duration::from_millis(10);

/// Enqueues changes on one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsChangeSink {
    client: Client,
    queue_url: String,
}

impl SqsChangeSink {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// Splits message bodies (by index) into batches within both SQS batch limits.
fn batches(bodies: &[String]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for (i, body) in bodies.iter().enumerate() {
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
    async fn send_batch(&self, bodies: &[String], batch: Vec<usize>) -> Result<(), BatchFailure> {
        let mut pending = batch;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let failed = self.send_entries(bodies, &pending).await?;
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
            .queue_url(&self.queue_url)
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
        let failures: Vec<BatchFailure> = stream::iter(batches(&bodies))
            .map(|batch| self.send_batch(&bodies, batch))
            .buffer_unordered(CONCURRENCY)
            .filter_map(|r| async move { r.err() })
            .collect()
            .await;
        let Some(first) = failures.first() else {
            return Ok(());
        };
        let unsent: usize = failures.iter().map(|f| f.unsent).sum();
        let kind = if failures.iter().any(|f| f.kind == ErrorKind::Permanent) {
            ErrorKind::Permanent
        } else {
            ErrorKind::Transient
        };
        let source = anyhow!(
            "{unsent} of {} changes not enqueued on {}: {}",
            changes.len(),
            self.queue_url,
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
        let b = batches(&small);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
        assert_eq!(b.concat(), (0..25).collect::<Vec<_>>());

        let big: Vec<String> = (0..5).map(|_| "x".repeat(100 * 1024)).collect();
        let b = batches(&big);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(batches(&[]).is_empty());
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
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(server.uri())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
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
