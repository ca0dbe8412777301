//! In-memory ingest ports: unit tests, handler tests, the benchmark and the fuzz harness. They keep the
//! real adapters' semantics (conditional claims, leases, expiry; SQS's body rules), so tests exercise the
//! same rules as DynamoDB and SQS. Clones share state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::anyhow;
use chrono::{DateTime, Utc};

use crate::adapters::memory::MemoryStore;
use crate::domain::{Change, ChangeMessage, Priority, RequestId};
use crate::ports::sink::check_message_body;
use crate::ports::{PortError, PortResult};

use crate::ports::{
    Accepted, ChangeSink, Claim, IdempotencyKey, IdempotencyRecord, IdempotencyState,
    IdempotencyStore, NewClaim, NewRequest, RequestCounters, RequestStore,
};
use crate::ports::{TrackedChange, single_change_counters};

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

    /// What was enqueued on one lane's queue (every lane has one here: each change goes to its priority's).
    pub fn sent_on(&self, lane: Priority) -> Vec<Change> {
        lock(&self.sent)
            .iter()
            .filter(|c| c.priority == lane)
            .cloned()
            .collect()
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

/// A request's record as ingest wrote it.
#[derive(Debug, Clone)]
struct StoredRequest {
    accepted: u32,
    single: Option<TrackedChange>,
}

/// Request progress records, over the drain's in-memory state (what the one DynamoDB table shares): a
/// multi-change request reads the sets the drain's request tracker wrote, a single-change request is
/// derived from the user's sync state, as [`crate::adapters::dynamo_ingest`] does.
#[derive(Debug, Clone, Default)]
pub struct MemoryRequestStore {
    requests: Arc<Mutex<HashMap<RequestId, StoredRequest>>>,
    drain: MemoryStore,
}

impl MemoryRequestStore {
    /// Request records beside `drain`'s sync state and request sets (share it with the drain under test).
    pub fn over(drain: MemoryStore) -> Self {
        Self {
            requests: Arc::default(),
            drain,
        }
    }

    /// The drain's state this store reads.
    pub fn drain_state(&self) -> &MemoryStore {
        &self.drain
    }
}

impl RequestStore for MemoryRequestStore {
    async fn create(&self, request: &NewRequest) -> PortResult<()> {
        let mut requests = lock(&self.requests);
        if requests.contains_key(&request.id) {
            return Err(PortError::permanent(
                "create request record",
                anyhow!("request {} exists", request.id),
            ));
        }
        requests.insert(
            request.id,
            StoredRequest {
                accepted: request.accepted,
                single: request.single.clone(),
            },
        );
        Ok(())
    }

    async fn counters(&self, id: RequestId) -> PortResult<Option<RequestCounters>> {
        let Some(stored) = lock(&self.requests).get(&id).cloned() else {
            return Ok(None);
        };
        let progress = self.drain.progress(&id).unwrap_or_default();
        let recorded = RequestCounters {
            accepted: stored.accepted,
            delivered: progress.delivered,
            skipped: progress.skipped,
            dead_lettered: progress.dead_lettered,
        };
        Ok(Some(match &stored.single {
            None => recorded,
            Some(change) => {
                let synced = self.drain.synced(&change.email).unwrap_or_default();
                single_change_counters(change, &synced, recorded)
            }
        }))
    }
}
