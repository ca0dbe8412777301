//! The in-memory stand-in for the drain's DynamoDB table: quota ledger, sync state and in-flight notes,
//! lease and circuit, request progress, each port's impl in its own file beside this one, and what tests
//! and the simulator read back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::{Faults, lock};
use crate::domain::{ChangeId, Email, RequestId};
use crate::ports::{
    CircuitState, InFlight, QuotaKind, RequestProgress, RollingCounts, SyncedFields,
};

/// The lease holder and when the lease expires.
pub(super) type Lease = (String, DateTime<Utc>);

/// Settled changes of one request, by how they settled.
#[derive(Debug, Clone, Default)]
pub(super) struct RequestSets {
    pub(super) delivered: BTreeSet<ChangeId>,
    pub(super) skipped: BTreeSet<ChangeId>,
    pub(super) dead_lettered: BTreeSet<ChangeId>,
}

/// Quota ledger, sync state, lease and circuit, request progress in memory (what DynamoDB holds in AWS).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    pub(super) quota: Arc<Mutex<HashMap<(QuotaKind, i64), u32>>>,
    /// Of each window's count, the units adopted from the provider.
    pub(super) adopted: Arc<Mutex<HashMap<(QuotaKind, i64), u32>>>,
    /// The rolling model's counts, one set per kind.
    pub(super) rolling: Arc<Mutex<HashMap<QuotaKind, RollingCounts>>>,
    pub(super) sync: Arc<Mutex<HashMap<Email, SyncedFields>>>,
    /// In-flight notes still listed, by run (`holder`, or `<holder>-open` once resolved with open fields).
    pub(super) notes: Arc<Mutex<BTreeMap<String, HashMap<Email, InFlight>>>>,
    pub(super) lease: Arc<Mutex<Option<Lease>>>,
    pub(super) circuit: Arc<Mutex<CircuitState>>,
    pub(super) requests: Arc<Mutex<HashMap<RequestId, RequestSets>>>,
    /// Renewals left before another holder takes the lease (a lease lost mid-run).
    pub(super) lose_lease_after: Arc<Mutex<Option<u32>>>,
    pub(super) faults: Faults,
}

impl MemoryStore {
    /// The same store, breaking calls as `faults` says.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn synced(&self, email: &Email) -> Option<SyncedFields> {
        lock(&self.sync).get(email).cloned()
    }

    /// What the drain recorded in a request's sets, each change counted once (delivered over dead-lettered
    /// over skipped): a multi-change request's progress as `GET /v1/requests/{id}` shows it. A single-change
    /// request's status is derived from the sync state instead (`ingest::memory::MemoryRequestStore`), and
    /// the drain records only its dead letter here (`None` when it recorded nothing).
    pub fn progress(&self, id: &RequestId) -> Option<RequestProgress> {
        lock(&self.requests).get(id).map(|sets| {
            let dead: BTreeSet<&ChangeId> = sets
                .dead_lettered
                .iter()
                .filter(|c| !sets.delivered.contains(c))
                .collect();
            let skipped = sets
                .skipped
                .iter()
                .filter(|c| !sets.delivered.contains(c) && !dead.contains(c))
                .count();
            RequestProgress {
                delivered: sets.delivered.len() as u32,
                skipped: skipped as u32,
                dead_lettered: dead.len() as u32,
            }
        })
    }

    /// Holds the lease for someone else (tests of single flight, or a lease lost mid-run).
    pub fn hold_lease(&self, holder: &str, until: DateTime<Utc>) {
        *lock(&self.lease) = Some((holder.to_string(), until));
    }

    /// After `n` more successful renewals, another run takes the lease (as if this one had overrun it).
    pub fn lose_lease_after(&self, n: u32) {
        *lock(&self.lose_lease_after) = Some(n);
    }

    /// The in-flight notes still listed: each note's name and the users it guards.
    pub fn in_flight_notes(&self) -> BTreeMap<String, BTreeSet<Email>> {
        lock(&self.notes)
            .iter()
            .map(|(name, note)| (name.clone(), note.keys().cloned().collect()))
            .collect()
    }

    /// The circuit as stored.
    pub fn circuit_state(&self) -> CircuitState {
        lock(&self.circuit).clone()
    }
}
