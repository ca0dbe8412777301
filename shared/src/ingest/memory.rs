//! In-memory ingest ports: unit tests, handler tests, the benchmark and the fuzz harness. They keep the
//! real adapters' semantics (conditional claims, leases, expiry; SQS's body rules), so tests exercise the
//! same rules as DynamoDB and SQS. Clones share state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::anyhow;
use chrono::{DateTime, Utc};

use crate::adapters::sqs_sink::check_message_body;
use crate::domain::{Change, ChangeMessage, RequestId};
use crate::ports::{PortError, PortResult, RequestProgress};

use super::ports::{
    Accepted, ChangeSink, Claim, IdempotencyKey, IdempotencyRecord, IdempotencyState,
    IdempotencyStore, NewClaim, RequestCounters, RequestStore,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the state from the others.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Collects enqueued changes; can be told to fail.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    sent: Arc<Mutex<Vec<Change>>>,
    failures: Arc<AtomicU32>,
}

impl MemorySink {
    /// Everything enqueued so far.
    pub fn sent(&self) -> Vec<Change> {
        lock(&self.sent).clone()
    }

    /// Makes the next `n` enqueues fail transiently (as if SQS kept failing).
    pub fn fail_next(&self, n: u32) {
        self.failures.store(n, Ordering::SeqCst);
    }

    pub fn clear(&self) {
        lock(&self.sent).clear();
    }
}

impl ChangeSink for MemorySink {
    async fn enqueue(&self, changes: &[Change]) -> PortResult<()> {
        // Let concurrent requests interleave, as they would around a network call.
        tokio::task::yield_now().await;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(PortError::transient(
                "enqueue changes",
                anyhow!("injected failure"),
            ));
        }
        for change in changes {
            let body = ChangeMessage::V1(change.clone()).to_body();
            check_message_body(&body)
                .map_err(|e| PortError::permanent("enqueue changes", anyhow!(e)))?;
        }
        lock(&self.sent).extend_from_slice(changes);
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct StoredRecord {
    record: IdempotencyRecord,
    expires_at: DateTime<Utc>,
}

/// Idempotency records with DynamoDB's conditional-write semantics.
#[derive(Debug, Clone, Default)]
pub struct MemoryIdempotencyStore {
    records: Arc<Mutex<HashMap<String, StoredRecord>>>,
}

impl IdempotencyStore for MemoryIdempotencyStore {
    async fn claim(&self, key: &IdempotencyKey, claim: &NewClaim) -> PortResult<Claim> {
        let mut records = lock(&self.records);
        if let Some(existing) = records.get(&key.digest()) {
            let lease_ran_out = matches!(
                existing.record.state,
                IdempotencyState::InProgress { lease_until, .. } if lease_until < claim.now
            );
            if existing.expires_at >= claim.now && !lease_ran_out {
                return Ok(Claim::Held(Some(existing.record.clone())));
            }
        }
        records.insert(
            key.digest(),
            StoredRecord {
                record: IdempotencyRecord {
                    body_sha256: claim.body_sha256.clone(),
                    state: IdempotencyState::InProgress {
                        owner: claim.owner,
                        lease_until: claim.lease_until,
                    },
                },
                expires_at: claim.expires_at,
            },
        );
        Ok(Claim::Won)
    }

    async fn get(
        &self,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> PortResult<Option<IdempotencyRecord>> {
        let records = lock(&self.records);
        Ok(records
            .get(&key.digest())
            .filter(|r| r.expires_at >= now)
            .map(|r| r.record.clone()))
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: RequestId,
        answer: &Accepted,
    ) -> PortResult<()> {
        let mut records = lock(&self.records);
        match records.get_mut(&key.digest()) {
            Some(r) if matches!(r.record.state, IdempotencyState::InProgress { owner: o, .. } if o == owner) =>
            {
                r.record.state = IdempotencyState::Completed(answer.clone());
                Ok(())
            }
            _ => Err(PortError::permanent(
                "complete idempotency record",
                anyhow!("another request took the key over"),
            )),
        }
    }

    async fn abandon(&self, key: &IdempotencyKey, owner: RequestId) -> PortResult<()> {
        let mut records = lock(&self.records);
        let digest = key.digest();
        if records
            .get(&digest)
            .is_some_and(|r| matches!(r.record.state, IdempotencyState::InProgress { owner: o, .. } if o == owner))
        {
            records.remove(&digest);
        }
        Ok(())
    }
}

/// Request progress records.
#[derive(Debug, Clone, Default)]
pub struct MemoryRequestStore {
    requests: Arc<Mutex<HashMap<RequestId, RequestCounters>>>,
}

impl MemoryRequestStore {
    /// What the drain's request tracker does: add progress to a request.
    pub fn add(&self, id: RequestId, progress: RequestProgress) {
        let mut requests = lock(&self.requests);
        let c = requests.entry(id).or_default();
        c.delivered += progress.delivered;
        c.skipped += progress.skipped;
        c.dead_lettered += progress.dead_lettered;
    }
}

impl RequestStore for MemoryRequestStore {
    async fn create(
        &self,
        id: RequestId,
        accepted: u32,
        _created_at: DateTime<Utc>,
        _expires_at: DateTime<Utc>,
    ) -> PortResult<()> {
        let mut requests = lock(&self.requests);
        if requests.contains_key(&id) {
            return Err(PortError::permanent(
                "create request record",
                anyhow!("request {id} exists"),
            ));
        }
        requests.insert(
            id,
            RequestCounters {
                accepted,
                ..RequestCounters::default()
            },
        );
        Ok(())
    }

    async fn counters(&self, id: RequestId) -> PortResult<Option<RequestCounters>> {
        Ok(lock(&self.requests).get(&id).copied())
    }
}
