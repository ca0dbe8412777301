//! The drain engine: one run releases queued changes to the provider within quota.
//!
//! A run, in phases (each bounded by the run's deadline, each write fenced by the lease):
//! 1. **gate** (`gate.rs`) — nothing while the provider [`circuit`] is open; take the single-flight lease
//!    (or skip); once the cool-down has passed, one half-open probe that touches no message;
//! 2. **plan** (`receive.rs`) — read both quota counters and every lane's depth, and [`policy::plan`] how
//!    much this run may send, *before* receiving, so no message is received only to be held;
//! 3. **receive** (`receive.rs`) that many records, by distinct users, lane by lane — `high` first, then
//!    `normal`, then `bulk` with what the others leave; decode them (malformed ones are
//!    [`Outcome::Malformed`]);
//! 4. **coalesce** them per email against the sync state ([`coalesce::coalesce`]), with other runs'
//!    in-flight fields folded in (`in_flight.rs`); users left with nothing to send (stale or unchanged)
//!    free their room, and the receive is topped up (`gather.rs`);
//! 5. **send** (`send.rs`): batches first when the backlog needs them, individual requests in waves, each
//!    request's quota reserved right before the call (`quota.rs`); every record ends with one typed
//!    [`Outcome`];
//! 6. **settle** (`settle.rs`): one table ([`outcome::action`]) maps outcomes to queue actions, carried out
//!    in the order that loses nothing — sync state, then request progress, then the queue;
//! 7. release the lease and report.

pub mod circuit;
pub mod coalesce;
mod gate;
mod gather;
mod in_flight;
pub mod outcome;
pub mod policy;
mod quota;
mod receive;
pub mod report;
mod send;
mod settings;
mod settle;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::domain::{Change, ChangeId, Email, FieldKey, Priority, RequestId};
use crate::ports::{
    CircuitState, CircuitStore, Clock, DrainLease, DrainPorts, PortError, QuotaModel,
    ReceivedMessage, Window,
};
use circuit::Phase;
pub use outcome::Outcome;
pub use report::{CallStats, DrainReport, Idle, LaneFigures, PerKind, QuotaSummary};
pub use settings::DrainSettings;

/// A failure that ends a run early. The messages it held are re-queued when possible, or become visible
/// again by themselves when their visibility timeout passes, so nothing is lost; the error is for logs and
/// the Lambda's error metric.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The drain engine, generic over its ports.
pub struct Drain<P: DrainPorts> {
    ports: P,
    settings: DrainSettings,
}

/// Working state of one run.
struct Run {
    holder: String,
    window: Window,
    deadline: DateTime<Utc>,
    report: DrainReport,
    messages: Vec<ReceivedMessage>,
    /// The lane each message was received from, by message index: settling acts on that lane's queue.
    lanes: Vec<Priority>,
    /// Change and request of each decoded message, by message index.
    changes: HashMap<usize, MessageChange>,
    /// Fields whose synced view in this run is another run's value in flight, not the sync item.
    guarded: HashMap<Email, BTreeSet<FieldKey>>,
    /// Messages whose queue action is done (deleted, dead-lettered, released or re-queued).
    done: HashSet<usize>,
    circuit: CircuitState,
    /// The circuit as last stored, to write it only when it changed.
    circuit_stored: CircuitState,
    lease_lost: bool,
    /// When the lease was last taken or renewed.
    lease_renewed: DateTime<Utc>,
    /// The ledger's counts as this run last saw them (to tell another client's requests in a reply).
    ledger_used: quota::LedgerUsed,
    /// Users `load` found sync state for (a hint for how the store writes them).
    known: HashSet<Email>,
}

/// What settling one message reports to its request's progress.
struct MessageChange {
    change_id: ChangeId,
    request_id: RequestId,
    /// A single-change request's change (its email and fields): its status is derived from the sync
    /// state ([`crate::ports::requests`]), so its delivery or skip is not written. `None` for a change
    /// of a multi-change request, or from a message without `request_size` (tracked by the sets).
    derived: Option<(Email, Vec<FieldKey>)>,
}

impl MessageChange {
    fn of(change: &Change) -> Self {
        // As `TrackedChange::of` decides at ingest: one change that sets some field.
        let fields: Vec<FieldKey> = change.fields().into_iter().map(|(k, _)| k).collect();
        let derived = (change.request_size == Some(1) && !fields.is_empty())
            .then(|| (change.email.clone(), fields));
        Self {
            change_id: change.change_id,
            request_id: change.request_id,
            derived,
        }
    }
}

impl<P: DrainPorts> Drain<P> {
    pub fn new(ports: P, settings: DrainSettings) -> Self {
        Self { ports, settings }
    }

    pub fn ports(&self) -> &P {
        &self.ports
    }

    pub fn settings(&self) -> &DrainSettings {
        &self.settings
    }

    fn now(&self) -> DateTime<Utc> {
        self.ports.clock().now()
    }

    /// One run; provider calls stop `send_margin` before `deadline`, settling `settle_margin` before it.
    pub async fn run(&self, deadline: DateTime<Utc>) -> Result<DrainReport, DrainError> {
        let started = Instant::now();
        let now = self.now();
        let window = self.settings.limits.window_at(now);
        let circuit = self.ports.circuit().circuit().await?;
        let mut run = Run {
            holder: uuid::Uuid::new_v4().to_string(),
            window,
            deadline,
            report: DrainReport {
                window_start: window.start,
                window_ends_in_s: window.end() - now.timestamp(),
                ..DrainReport::default()
            },
            messages: Vec::new(),
            lanes: Vec::new(),
            changes: HashMap::new(),
            guarded: HashMap::new(),
            done: HashSet::new(),
            circuit_stored: circuit.clone(),
            circuit,
            lease_lost: false,
            lease_renewed: now,
            ledger_used: quota::LedgerUsed::default(),
            known: HashSet::new(),
        };
        if let Phase::Open { .. } = circuit::phase(&run.circuit, now) {
            run.report.idle = Some(Idle::CircuitOpen);
            return self.finish(run, started).await;
        }
        let until = now + chrono_duration(self.settings.lease_length);
        if !self
            .ports
            .lease()
            .acquire_lease(&run.holder, now, until)
            .await?
        {
            run.report.idle = Some(Idle::LeaseHeld);
            return Ok(run.report);
        }
        let result = self.run_leased(&mut run).await;
        if result.is_err() && !run.lease_lost {
            self.rescue(&mut run).await;
        }
        let stored = self.store_circuit(&mut run).await;
        if let Err(e) = self.ports.lease().release_lease(&run.holder).await {
            // The lease expires by itself; a failed release only delays the next run.
            warn!(error = %e, "could not release the drain lease");
        }
        result?;
        stored?;
        self.finish(run, started).await
    }

    async fn finish(&self, mut run: Run, started: Instant) -> Result<DrainReport, DrainError> {
        self.report_quota(&mut run.report, run.window).await?;
        run.report.circuit_failures = run.circuit.failures;
        run.report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let r = &run.report;
        info!(
            idle = ?r.idle,
            received = r.received,
            delivered = r.delivered_records(),
            held = r.deferred,
            retried = r.retried,
            dead_lettered = r.dead_lettered,
            lease_lost = r.lease_lost,
            "drain run finished"
        );
        Ok(run.report)
    }

    async fn run_leased(&self, run: &mut Run) -> Result<(), DrainError> {
        if circuit::phase(&run.circuit, self.now()) == Phase::HalfOpen && !self.probe(run).await? {
            return Ok(());
        }
        let Some((plan, depths)) = self.plan(run).await? else {
            return Ok(());
        };
        let gathered = self.gather(run, plan, &depths).await?;
        let (mut fates, coalesced) = (gathered.fates, gathered.coalesced);
        run.report.coalesced = coalesced.merged_messages;
        run.report.skipped_unchanged = coalesced.skipped_unchanged;
        run.report.skipped_stale = coalesced.skipped_stale;
        run.report.absorbed = u32::try_from(coalesced.absorbed.len()).unwrap_or(u32::MAX);
        for &i in &coalesced.absorbed {
            fates[i] = Some(Outcome::Absorbed);
        }

        let outcomes = if self.note_in_flight(run, &coalesced.records).await? {
            self.send_all(run, &coalesced.records, plan).await?
        } else {
            // The lease is lost: nothing is sent; the records are handed back untried.
            let next_run = Duration::from_secs(u64::from(self.settings.interval_seconds));
            vec![Outcome::Held(next_run); coalesced.records.len()]
        };
        for (record, outcome) in coalesced.records.iter().zip(&outcomes) {
            for &i in &record.messages {
                fates[i] = Some(outcome.clone());
            }
        }
        self.settle(run, fates, &coalesced, &outcomes).await
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}

/// Whether `now` is too close to the end of a fixed window to start a provider call (10 % of the window,
/// at most 2 s): a call reserved in one window must reach the provider inside it. A rolling window never
/// closes: each reservation counts from its own time.
fn window_closing(window: Window, now: DateTime<Utc>) -> bool {
    let guard =
        chrono::Duration::milliseconds(i64::from(window.length).saturating_mul(100).min(2_000));
    window.model == QuotaModel::Fixed && now + guard >= window.end_time()
}

#[cfg(test)]
mod adoption_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod lanes_tests;
#[cfg(test)]
mod rolling_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tracking_tests;
