//! The ingest service: what `POST /v1/changes` and `GET /v1/requests/{id}` do, independent of Lambda.

use std::time::Duration;

use chrono::TimeDelta;
use uuid::Uuid;

use crate::domain::{Change, RequestId};
use crate::ports::{Clock, SystemClock};

use super::parse::{MAX_BODY_BYTES, ParseError, RequestStamp, parse_changes};
use super::problem::IngestError;
use crate::ports::TrackedChange;
use crate::ports::{
    Accepted, ChangeSink, Claim, IdempotencyKey, IdempotencyState, IdempotencyStore, NewClaim,
    NewRequest, RequestStatus, RequestStore, sha256_hex,
};

/// Timings of the idempotency and request records.
#[derive(Debug, Clone, Copy)]
pub struct IngestSettings {
    /// How long a key is remembered (24 h).
    pub idempotency_ttl: TimeDelta,
    /// How long a first request may hold its key before a retry may take over (it crashed or timed out).
    /// Longer than the function's timeout, so a live first request is never overtaken.
    pub idempotency_lease: TimeDelta,
    /// How long a concurrent retry waits for the first request's answer before answering 409.
    pub idempotency_wait: Duration,
    /// How long a request's progress stays readable (7 days).
    pub request_ttl: TimeDelta,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            idempotency_ttl: TimeDelta::hours(24),
            idempotency_lease: TimeDelta::seconds(60),
            idempotency_wait: Duration::from_secs(3),
            request_ttl: TimeDelta::days(7),
        }
    }
}

/// One `POST /v1/changes`, as the handler hands it over.
#[derive(Debug, Clone, Copy)]
pub struct ChangesRequest<'a> {
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub idempotency_key: Option<&'a str>,
}

/// A successful submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub answer: Accepted,
    /// The answer is the stored first answer for this `Idempotency-Key`; nothing was enqueued this time.
    pub replayed: bool,
}

/// The ingest service over its ports.
#[derive(Debug, Clone)]
pub struct IngestService<S, I, R, C = SystemClock> {
    sink: S,
    idempotency: I,
    requests: R,
    clock: C,
    settings: IngestSettings,
}

impl<S, I, R> IngestService<S, I, R, SystemClock>
where
    S: ChangeSink,
    I: IdempotencyStore,
    R: RequestStore,
{
    pub fn new(sink: S, idempotency: I, requests: R) -> Self {
        Self::with_clock(sink, idempotency, requests, SystemClock)
    }
}

impl<S, I, R, C> IngestService<S, I, R, C>
where
    S: ChangeSink,
    I: IdempotencyStore,
    R: RequestStore,
    C: Clock,
{
    pub fn with_clock(sink: S, idempotency: I, requests: R, clock: C) -> Self {
        Self {
            sink,
            idempotency,
            requests,
            clock,
            settings: IngestSettings::default(),
        }
    }

    pub fn with_settings(mut self, settings: IngestSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// `POST /v1/changes`: checks the request, parses every change, and enqueues them all — or nothing.
    pub async fn submit(&self, req: ChangesRequest<'_>) -> Result<Submitted, IngestError> {
        check_content_type(req.content_type)?;
        if req.body.len() > MAX_BODY_BYTES {
            return Err(IngestError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
                got: req.body.len(),
            });
        }
        let key = req
            .idempotency_key
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(|e| IngestError::BadIdempotencyKey(format!("Idempotency-Key {e}.")))?;
        let stamp = RequestStamp {
            request_id: RequestId::new(),
            received_at: self.clock.now(),
        };
        let changes = parse_changes(req.body, stamp).map_err(|e| match e {
            ParseError::Malformed(why) => IngestError::Malformed(why),
            ParseError::Invalid(problems) => IngestError::Invalid(problems),
        })?;
        match key {
            None => self.accept(&changes, stamp).await.map(|answer| Submitted {
                answer,
                replayed: false,
            }),
            Some(key) => {
                self.accept_once(&key, &sha256_hex(req.body), &changes, stamp)
                    .await
            }
        }
    }

    /// Records the request, then enqueues (in that order, so the drain's counters never race ahead of it).
    async fn accept(
        &self,
        changes: &[Change],
        stamp: RequestStamp,
    ) -> Result<Accepted, IngestError> {
        // At most MAX_CHANGES, so this always fits.
        let accepted = u32::try_from(changes.len()).unwrap_or(u32::MAX);
        let now = stamp.received_at;
        self.requests
            .create(&NewRequest {
                id: stamp.request_id,
                accepted,
                created_at: now,
                expires_at: now + self.settings.request_ttl,
                single: TrackedChange::of(changes),
            })
            .await?;
        // Whatever the cause, the client's move is the same: nothing can be assumed accepted, retry later.
        self.sink
            .enqueue(changes)
            .await
            .map_err(IngestError::Unavailable)?;
        Ok(Accepted {
            request_id: stamp.request_id,
            accepted,
            change_ids: changes.iter().map(|c| c.change_id).collect(),
        })
    }

    /// [`Self::accept`] at most once per key: the first request claims the key with a conditional write,
    /// concurrent ones wait briefly for its answer. The loop is that wait (another request's answer is not
    /// there yet), not a retry of a failed call: the store's SDK calls retry on their own.
    async fn accept_once(
        &self,
        key: &IdempotencyKey,
        body_sha256: &str,
        changes: &[Change],
        stamp: RequestStamp,
    ) -> Result<Submitted, IngestError> {
        let owner = stamp.request_id;
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(25);
        loop {
            let now = self.clock.now();
            let claim = NewClaim {
                body_sha256: body_sha256.to_string(),
                owner,
                now,
                lease_until: now + self.settings.idempotency_lease,
                expires_at: now + self.settings.idempotency_ttl,
            };
            match self.idempotency.claim(key, &claim).await? {
                Claim::Won => return self.accept_claimed(key, changes, stamp).await,
                Claim::Held(Some(record)) if record.body_sha256 != body_sha256 => {
                    return Err(IngestError::IdempotencyKeyReused);
                }
                Claim::Held(Some(record)) => {
                    if let IdempotencyState::Completed(answer) = record.state {
                        return Ok(Submitted {
                            answer,
                            replayed: true,
                        });
                    }
                }
                // The holder gave up between our write and our read: claim again.
                Claim::Held(None) => {}
            }
            if started.elapsed() + delay > self.settings.idempotency_wait {
                return Err(IngestError::IdempotencyInProgress);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(400));
        }
    }

    async fn accept_claimed(
        &self,
        key: &IdempotencyKey,
        changes: &[Change],
        stamp: RequestStamp,
    ) -> Result<Submitted, IngestError> {
        let owner = stamp.request_id;
        match self.accept(changes, stamp).await {
            Ok(answer) => {
                // The changes are on the queue: the client gets its 202 even if the answer cannot be stored
                // (a retry after the lease would then enqueue again — harmless, the drain coalesces).
                if let Err(e) = self.idempotency.complete(key, owner, &answer).await {
                    tracing::warn!(error = %e, request_id = %owner, "could not store the idempotent answer");
                }
                Ok(Submitted {
                    answer,
                    replayed: false,
                })
            }
            Err(e) => {
                if let Err(release) = self.idempotency.abandon(key, owner).await {
                    tracing::warn!(error = %release, request_id = %owner, "could not release the idempotency key");
                }
                Err(e)
            }
        }
    }

    /// `GET /v1/requests/{request_id}`.
    pub async fn request_status(&self, raw_id: &str) -> Result<RequestStatus, IngestError> {
        let not_found = || {
            IngestError::NotFound(format!(
                "No request '{}' is known (requests are kept for 7 days).",
                crate::domain::truncate(raw_id, 64)
            ))
        };
        let id = Uuid::try_parse(raw_id)
            .map(RequestId)
            .map_err(|_| not_found())?;
        let counters = self.requests.counters(id).await?.ok_or_else(not_found)?;
        Ok(RequestStatus::new(id, counters))
    }
}

/// `application/json`, optionally with `charset=utf-8` (JSON is UTF-8 by definition).
fn check_content_type(raw: Option<&str>) -> Result<(), IngestError> {
    let refuse = || IngestError::UnsupportedMediaType {
        got: raw.map(str::to_string),
    };
    let raw = raw.ok_or_else(refuse)?;
    let mut parts = raw.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(refuse());
    }
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
            return Err(refuse());
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
