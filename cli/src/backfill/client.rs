//! The ingest API as the backfill uses it: one bulk `POST /v1/changes` per chunk with its
//! `Idempotency-Key`, the answer turned into an [`Answer`]. Transient answers (409 in progress, 429,
//! 5xx, no answer) are retried here with exponential, jittered backoff (`Retry-After` as its floor); what
//! retrying cannot fix is an error that names the status and the API's detail.

use std::time::Duration;

use anyhow::{anyhow, bail};
use rand::Rng;
use serde::Deserialize;

/// Attempts per chunk before the run stops (its state saved; run again to resume): 75 s to 150 s of
/// backoff, longer than ingest holds the key of a request that never finished (60 s), so a chunk whose
/// earlier attempt died mid-request is taken over instead of given up on.
const ATTEMPTS: u32 = 11;
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// What the API said to a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 202: every change enqueued (`replayed`: an earlier attempt's answer, nothing enqueued now).
    Accepted { accepted: u64, replayed: bool },
    /// 422: nothing enqueued; these changes (by index in the request) are bad, for these reasons.
    Refused(Vec<(usize, String)>),
}

/// The problem+json body, as far as the backfill reads it.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    errors: Vec<FieldProblem>,
}

#[derive(Debug, Deserialize)]
struct FieldProblem {
    index: Option<usize>,
    field: Option<String>,
    message: String,
}

#[derive(Debug, Deserialize)]
struct Accepted {
    accepted: u64,
}

/// The ingest API at `base` (the URL `/v1/changes` hangs off).
#[derive(Debug, Clone)]
pub struct IngestClient {
    http: reqwest::Client,
    changes_url: String,
    api_key: Option<String>,
}

impl IngestClient {
    pub fn new(base: &str, api_key: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("sluice-backfill/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            changes_url: format!("{}/v1/changes", base.trim_end_matches('/')),
            api_key,
        })
    }

    /// Posts one chunk, retrying transient answers; `on_retry` hears each wait.
    pub async fn post(
        &self,
        key: &str,
        body: String,
        mut on_retry: impl FnMut(&str, Duration),
    ) -> anyhow::Result<Answer> {
        let mut delay = FIRST_DELAY;
        let mut attempt = 1;
        loop {
            match self.post_once(key, body.clone()).await {
                Attempt::Done(answer) => return answer,
                Attempt::Transient { why, retry_after } => {
                    if attempt == ATTEMPTS {
                        bail!(
                            "the ingest API is still unavailable after {ATTEMPTS} attempts ({why})"
                        );
                    }
                    let wait = retry_after
                        .unwrap_or_else(|| jittered(delay))
                        .min(MAX_DELAY);
                    on_retry(&why, wait);
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(MAX_DELAY);
                    attempt += 1;
                }
            }
        }
    }

    async fn post_once(&self, key: &str, body: String) -> Attempt {
        let mut request = self
            .http
            .post(&self.changes_url)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body);
        if let Some(api_key) = &self.api_key {
            request = request.header("x-api-key", api_key);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Transient {
                    why: format!("no answer from {}: {e}", self.changes_url),
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        classify(status, &text, replayed, retry_after)
    }
}

enum Attempt {
    Done(anyhow::Result<Answer>),
    Transient {
        why: String,
        retry_after: Option<Duration>,
    },
}

/// One answer, by status: accepted, refused by index, worth retrying, or an error to stop on.
fn classify(status: u16, text: &str, replayed: bool, retry_after: Option<Duration>) -> Attempt {
    if (200..300).contains(&status) {
        return Attempt::Done(
            serde_json::from_str::<Accepted>(text)
                .map(|a| Answer::Accepted {
                    accepted: a.accepted,
                    replayed,
                })
                .map_err(|e| {
                    anyhow!("the ingest API answered {status} with an unreadable body: {e}")
                }),
        );
    }
    let problem: Problem = serde_json::from_str(text).unwrap_or_default();
    if matches!(status, 409 | 429) || status >= 500 {
        return Attempt::Transient {
            why: format!("{status} {}", problem.detail),
            retry_after,
        };
    }
    let refused: Vec<(usize, String)> = problem
        .errors
        .iter()
        .filter_map(|p| Some((p.index?, reason(p))))
        .collect();
    if status == 422 && !refused.is_empty() && !problem.kind.ends_with("idempotency-key-reused") {
        return Attempt::Done(Ok(Answer::Refused(refused)));
    }
    let hint = match status {
        401 | 403 => " (check --api-key or INGEST_API_KEY)",
        404 => " (check --url: it is the base the API's /v1/changes hangs off)",
        _ => "",
    };
    Attempt::Done(Err(anyhow!(
        "the ingest API refused the request: {status} {}{hint}",
        if problem.detail.is_empty() {
            text
        } else {
            &problem.detail
        }
    )))
}

fn reason(p: &FieldProblem) -> String {
    match &p.field {
        Some(field) => format!("{field}: {}", p.message),
        None => p.message.clone(),
    }
}

/// Equal jitter: between half of `delay` and all of it, so the waits add up to at least half the schedule
/// (which keeps [`ATTEMPTS`] longer than a held key's lease) while clients still spread out.
fn jittered(delay: Duration) -> Duration {
    let max = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::rng().random_range(max / 2..=max))
}

#[cfg(test)]
pub(super) fn classify_for_tests(status: u16, text: &str) -> Result<Answer, String> {
    match classify(status, text, false, None) {
        Attempt::Done(answer) => answer.map_err(|e| e.to_string()),
        Attempt::Transient { why, .. } => Err(format!("transient: {why}")),
    }
}
