//! The drain engine: one run releases queued changes to the provider within quota.
//!
//! A run, in phases (each bounded by the run's deadline, each write fenced by the lease):
//! 1. **gate** — nothing while the provider [`circuit`] is open; take the single-flight lease (or skip);
//!    once the cool-down has passed, one half-open probe that touches no message;
//! 2. **plan** — read both quota counters and the queue depth, and [`policy::plan`] how much this run may
//!    send, *before* receiving, so no message is received only to be held;
//! 3. **receive** that many messages; decode them (malformed ones are [`Outcome::Malformed`]);
//! 4. **coalesce** them per email against the sync state ([`coalesce::coalesce`]);
//! 5. **send** ([`send`]): batches first when the backlog needs them, individual requests in waves, each
//!    request's quota reserved right before the call; every record ends with one typed [`Outcome`];
//! 6. **settle** ([`settle`]): one table ([`outcome::action`]) maps outcomes to queue actions, carried out
//!    in the order that loses nothing — sync state, then request progress, then the queue;
//! 7. release the lease and report.

pub mod circuit;
pub mod coalesce;
pub mod outcome;
pub mod policy;
pub mod report;
mod send;
mod settle;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use tracing::{info, warn};

use crate::config::{Config, Limits, RUN_OVERHEAD};
use crate::domain::{Change, ChangeId, ChangeMessage, Email, FieldKey, RequestId};
use crate::ports::{
    ChangeQueue, CircuitState, CircuitStore, Clock, DrainLease, DrainPorts, InFlight, PortError,
    Provider, ProviderError, QuotaKind, QuotaLedger, ReceivedMessage, Reply, Reservation,
    SyncStateStore, SyncedFields, Window,
};
use circuit::{CircuitPolicy, Phase};
use coalesce::{Decoded, coalesce};
pub use outcome::Outcome;
use policy::{KindQuota, Plan, RunState};
pub use report::{CallStats, DrainReport, Idle, PerKind, QuotaSummary};

/// Tunables of the drain, derived from [`Config`].
#[derive(Debug, Clone)]
pub struct DrainSettings {
    pub limits: Limits,
    pub interval_seconds: u32,
    pub max_messages: u32,
    /// First retry delay after a transient failure; doubles per attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    /// When the provider circuit opens and how long it stays open.
    pub circuit: CircuitPolicy,
    /// Parallel individual requests.
    pub individual_concurrency: usize,
    /// No provider call starts this close to the deadline: one call's timeout plus the settling after it.
    pub send_margin: Duration,
    /// No settling write starts this close to the deadline.
    pub settle_margin: Duration,
    /// How far each renewal extends the lease: longer than any one provider call plus settling, so no other
    /// run can start while a call of this one is in flight.
    pub lease_length: Duration,
    /// Delivery attempts before a change is dead-lettered as `retries_exhausted` (`MAX_RECEIVE_COUNT`).
    pub max_attempts: u32,
    /// Retry delay for a record the provider refused because another client was updating it.
    pub busy_retry: Duration,
}

impl DrainSettings {
    pub fn from_config(config: &Config) -> Self {
        let window = Duration::from_secs(u64::from(config.limits.window_seconds));
        Self {
            limits: config.limits,
            interval_seconds: config.drain_interval_seconds,
            max_messages: config.drain_max_messages,
            backoff_base: Duration::from_secs(30).min(window / 4),
            backoff_cap: Duration::from_secs(900).min(window),
            circuit: CircuitPolicy {
                threshold: 3,
                cool_down: Duration::from_secs(300).min(window / 2),
                cool_down_cap: Duration::from_secs(3_600).min(window),
            },
            individual_concurrency: 10,
            send_margin: config.provider_timeout + Duration::from_secs(8),
            settle_margin: Duration::from_secs(1),
            lease_length: config.provider_timeout + RUN_OVERHEAD,
            max_attempts: config.max_receive_count,
            busy_retry: Duration::from_secs(10),
        }
    }

    fn limit(&self, kind: QuotaKind) -> u32 {
        match kind {
            QuotaKind::Batch => self.limits.batch_per_window,
            QuotaKind::Individual => self.limits.individual_per_window,
        }
    }
}

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
        let window = Window::containing(now, self.settings.limits.window_seconds);
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
            changes: HashMap::new(),
            guarded: HashMap::new(),
            done: HashSet::new(),
            circuit_stored: circuit.clone(),
            circuit,
            lease_lost: false,
            lease_renewed: now,
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
        let Some(plan) = self.plan(run).await? else {
            return Ok(());
        };
        let backlog = run.report.backlog;
        let receive_by = self.receive_by(run.deadline);
        let received = self.receive(run, plan, backlog, receive_by).await?;
        run.messages = received.messages;
        run.report.received = u32::try_from(run.messages.len()).unwrap_or(u32::MAX);

        // Malformed bodies go straight to the DLQ.
        let mut fates: Vec<Option<Outcome>> = vec![None; run.messages.len()];
        let mut decoded = Vec::with_capacity(run.messages.len());
        for (index, body) in received.bodies.into_iter().enumerate() {
            match body {
                Ok(change) => {
                    run.changes.insert(index, MessageChange::of(&change));
                    decoded.push(Decoded { index, change });
                }
                Err(e) => fates[index] = Some(Outcome::Malformed(e)),
            }
        }

        let emails: Vec<Email> = {
            let mut set: Vec<Email> = decoded.iter().map(|d| d.change.email.clone()).collect();
            set.sort();
            set.dedup();
            set
        };
        self.check_time(run, self.settings.settle_margin)?;
        let sync = self.ports.sync_state();
        let (mut synced, in_flight) =
            futures::try_join!(sync.load(&emails), sync.in_flight(&emails))?;
        run.known = synced.keys().cloned().collect();
        run.guarded = guard_in_flight(&mut synced, &in_flight);
        let coalesced = coalesce(&decoded, &synced);
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

    /// Writes, before any provider call, the precedence of every field this run may send, as this run's
    /// note (earlier runs' notes stay listed on their own until resolved or a day old). `false` when the
    /// lease is lost: the run sends nothing.
    async fn note_in_flight(
        &self,
        run: &mut Run,
        records: &[coalesce::PendingRecord],
    ) -> Result<bool, DrainError> {
        if records.is_empty() {
            return Ok(true);
        }
        if !self.fence(run).await? {
            return Ok(false);
        }
        let intents: Vec<(Email, InFlight)> = records
            .iter()
            .map(coalesce::PendingRecord::intent)
            .collect();
        self.check_time(run, self.settings.settle_margin)?;
        self.ports
            .sync_state()
            .intend(&run.holder, &intents)
            .await?;
        Ok(true)
    }

    /// Reads quota and depth and plans the run; `None` when the run has nothing to do (reported idle).
    async fn plan(&self, run: &mut Run) -> Result<Option<Plan>, DrainError> {
        let now = self.now();
        let window = run.window;
        let ledger = self.ports.ledger();
        let (used_batch, used_individual, backlog) = futures::try_join!(
            ledger.used(QuotaKind::Batch, window),
            ledger.used(QuotaKind::Individual, window),
            self.ports.queue().backlog(),
        )?;
        let limits = &self.settings.limits;
        let batch = KindQuota {
            limit: limits.batch_per_window,
            used: used_batch,
        };
        let individual = KindQuota {
            limit: limits.individual_per_window,
            used: used_individual,
        };
        run.report.backlog = backlog.visible;
        run.report.window_records_left =
            u64::from(batch.left()) * u64::from(limits.batch_size) + u64::from(individual.left());
        let plan = policy::plan(
            limits,
            self.settings.interval_seconds,
            self.settings.max_messages,
            RunState {
                window,
                elapsed: now.timestamp() - window.start,
                batch,
                individual,
                backlog: backlog.visible,
            },
        );
        run.report.planned_receive = plan.receive;
        let margin = chrono_duration(self.settings.send_margin);
        if now + margin >= run.deadline || now + window_guard(window) >= window.end_time() {
            run.report.idle = Some(Idle::NoTimeToSend);
            return Ok(None);
        }
        if plan.receive == 0 {
            run.report.idle = Some(Idle::NoQuota);
            return Ok(None);
        }
        Ok(Some(plan))
    }

    /// The half-open probe: one request that touches no subscriber and no message. `true` when the
    /// provider answered (the circuit closes and the run goes on), `false` when it is still down.
    async fn probe(&self, run: &mut Run) -> Result<bool, DrainError> {
        let kind = if self.settings.limits.individual_per_window > 0 {
            QuotaKind::Individual
        } else {
            QuotaKind::Batch
        };
        if !self.fence(run).await? {
            return Ok(false);
        }
        if self.reserve(kind, run.window, 1).await? == 0 {
            run.report.idle = Some(Idle::NoQuota);
            return Ok(false);
        }
        let started = Instant::now();
        let reply = self.ports.provider().probe().await;
        run.report.calls.probe += 1;
        log_call("probe", 0, &reply, started.elapsed(), 1);
        let now = self.now();
        match &reply.result {
            Err(e @ (ProviderError::Transient { .. } | ProviderError::Misconfigured(_))) => {
                let retry_after = match e {
                    ProviderError::Transient { retry_after, .. } => *retry_after,
                    _ => None,
                };
                run.circuit.failures = run.circuit.failures.saturating_add(1);
                let until =
                    self.settings
                        .circuit
                        .open(&mut run.circuit, now, &e.to_string(), retry_after);
                warn!(%until, error = %e, "provider probe failed; the circuit stays open");
                run.report.idle = Some(Idle::CircuitOpen);
                run.report.provider_errors += 1;
                Ok(false)
            }
            other => {
                if let Err(ProviderError::RateLimited { retry_after }) = other {
                    self.spend(run, kind, *retry_after).await?;
                }
                info!("provider probe answered; closing the circuit");
                self.settings.circuit.success(&mut run.circuit);
                run.report.circuit_closed = true;
                Ok(true)
            }
        }
    }

    /// Receives what the plan can send, by distinct users rather than by message count: copies of one user
    /// coalesce into one record, so while the distinct users received stay below the plan's record
    /// capacity it tops up with at most the missing number of records — every message received can still
    /// be sent this run, whatever users it holds. It stops when the plan's records are covered, the queue
    /// is drained, `DRAIN_MAX_MESSAGES` (a safety cap) is reached, or receiving has used its share of the
    /// run: half the time left before sending must start (see [`Self::receive_by`]).
    async fn receive(
        &self,
        run: &mut Run,
        plan: Plan,
        visible: u64,
        receive_by: DateTime<Utc>,
    ) -> Result<Received, DrainError> {
        let capacity = plan.records(self.settings.limits.batch_size);
        let max = u64::from(self.settings.max_messages);
        let first = self.ports.queue().receive(plan.receive).await?;
        let (mut asked, mut got) = (u64::from(plan.receive), first.len() as u64);
        let mut received = Received::default();
        received.add(first);
        loop {
            let messages = &received.messages;
            if got < asked || messages.len() as u64 >= visible {
                break; // the queue is drained (as far as its approximate depth tells)
            }
            let room = capacity
                .saturating_sub(received.distinct())
                .min(max.saturating_sub(messages.len() as u64));
            if room == 0 || self.now() >= receive_by {
                break;
            }
            // A long receive keeps the lease: it must still hold when the sends start.
            let since = self.now() - run.lease_renewed;
            if since >= chrono_duration(self.settings.lease_length / 2) && !self.fence(run).await? {
                break;
            }
            let more = self.ports.queue().receive(room as u32).await?;
            (asked, got) = (room, more.len() as u64);
            received.add(more);
        }
        Ok(received)
    }

    /// Until when a run may keep topping up its receive: half the time left before the send margin, so
    /// receiving never crowds out the sends and settling it prepares.
    fn receive_by(&self, deadline: DateTime<Utc>) -> DateTime<Utc> {
        let now = self.now();
        let send_from = deadline - chrono_duration(self.settings.send_margin);
        now + (send_from - now) / 2
    }

    /// Renews the lease before a provider call or a write phase; `false` (and the run stops writing) when
    /// it is lost — another run may hold it now.
    async fn fence(&self, run: &mut Run) -> Result<bool, DrainError> {
        if run.lease_lost {
            return Ok(false);
        }
        let now = self.now();
        let until = now + chrono_duration(self.settings.lease_length);
        let held = self
            .ports
            .lease()
            .renew_lease(&run.holder, now, until)
            .await?;
        if held {
            run.lease_renewed = now;
        } else {
            warn!("the drain lease was lost; this run stops without writing or deleting anything");
            run.lease_lost = true;
            run.report.lease_lost = true;
        }
        Ok(held)
    }

    /// Errors when less than `margin` is left before the deadline: the phase must not start.
    fn check_time(&self, run: &Run, margin: Duration) -> Result<(), DrainError> {
        if self.now() + chrono_duration(margin) >= run.deadline {
            return Err(DrainError::Port(PortError::transient(
                "drain deadline",
                anyhow::anyhow!("the run's deadline {} is too close", run.deadline),
            )));
        }
        Ok(())
    }

    /// Reserves up to `n` units (fewer if fewer are left); returns how many were granted.
    async fn reserve(&self, kind: QuotaKind, window: Window, n: u32) -> Result<u32, DrainError> {
        let limit = self.settings.limit(kind);
        let ledger = self.ports.ledger();
        match ledger.reserve(kind, window, n, limit).await? {
            Reservation::Granted { .. } => Ok(n),
            Reservation::Exhausted { used } => {
                let left = limit.saturating_sub(used);
                if left == 0 || left >= n {
                    return Ok(0);
                }
                match ledger.reserve(kind, window, left, limit).await? {
                    Reservation::Granted { .. } => Ok(left),
                    Reservation::Exhausted { .. } => Ok(0),
                }
            }
        }
    }

    /// The account's limit answered 429 for `kind`: its window is spent, and so is every window up to the
    /// provider's `Retry-After`. Returns when the kind can be used again.
    async fn spend(
        &self,
        run: &mut Run,
        kind: QuotaKind,
        retry_after: Option<Duration>,
    ) -> Result<DateTime<Utc>, DrainError> {
        warn!(
            kind = kind.as_str(),
            ?retry_after,
            "provider answered 429 for the account's limit; marking the window spent"
        );
        run.report.rate_limited += 1;
        let limit = self.settings.limit(kind);
        let ledger = self.ports.ledger();
        let now = self.now();
        let until = now + chrono_duration(retry_after.unwrap_or_default());
        let mut window = run.window;
        ledger.mark_spent(kind, window, limit).await?;
        // At most a day of windows ahead: a Retry-After longer than that is not believed.
        for _ in 0..24 {
            if window.end_time() >= until {
                break;
            }
            window = window.next();
            ledger.mark_spent(kind, window, limit).await?;
        }
        Ok(window.end_time().max(until))
    }

    /// Writes the circuit if this run changed it.
    async fn store_circuit(&self, run: &mut Run) -> Result<(), DrainError> {
        if run.circuit != run.circuit_stored {
            self.ports.circuit().set_circuit(&run.circuit).await?;
            run.circuit_stored = run.circuit.clone();
        }
        Ok(())
    }

    /// After an error mid-run: hand back every message not yet settled as a fresh copy, so the error costs
    /// no receive count. Best effort — what fails here comes back after its visibility timeout.
    async fn rescue(&self, run: &mut Run) {
        let delay = Duration::from_secs(u64::from(self.settings.interval_seconds));
        let items: Vec<(ReceivedMessage, Duration)> = (0..run.messages.len())
            .filter(|i| !run.done.contains(i))
            .map(|i| (run.messages[i].clone(), delay))
            .collect();
        if items.is_empty() {
            return;
        }
        match self.ports.queue().requeue(&items).await {
            Ok(_) => run.report.deferred += u32::try_from(items.len()).unwrap_or(u32::MAX),
            Err(e) => {
                warn!(error = %e, "could not hand back the run's messages; they return after their visibility timeout")
            }
        }
    }

    /// Exponential backoff with equal jitter: half fixed, half random, from the change's attempts.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(20);
        let full = self
            .settings
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.settings.backoff_cap);
        let half = full / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter)
    }

    async fn report_quota(
        &self,
        report: &mut DrainReport,
        window: Window,
    ) -> Result<(), DrainError> {
        let ledger = self.ports.ledger();
        let (b, i) = futures::try_join!(
            ledger.used(QuotaKind::Batch, window),
            ledger.used(QuotaKind::Individual, window)
        )?;
        let summary = |limit: u32, used: u32| QuotaSummary {
            limit,
            used: used.min(limit),
            left: limit.saturating_sub(used),
        };
        report.quota_batch = summary(self.settings.limits.batch_per_window, b);
        report.quota_individual = summary(self.settings.limits.individual_per_window, i);
        Ok(())
    }
}

/// Folds in-flight fields into the synced view for the stale check: a field some run was about to send at
/// precedence `p` (and never recorded as delivered) stands as synced *just before* `p`, with a value no
/// change can equal. So a change older than `p` is stale — the provider may hold the newer value, whose
/// change is still queued — while the change of precedence `p` itself (or a newer one) is sent.
/// Returns the fields it raised.
fn guard_in_flight(
    synced: &mut HashMap<Email, SyncedFields>,
    in_flight: &HashMap<Email, InFlight>,
) -> HashMap<Email, BTreeSet<FieldKey>> {
    let mut guarded: HashMap<Email, BTreeSet<FieldKey>> = HashMap::new();
    for (email, fields) in in_flight {
        let user = synced.entry(email.clone()).or_default();
        for (key, p) in fields {
            let newer = user.get(key).is_none_or(|s| s.precedence < *p);
            if newer {
                guarded
                    .entry(email.clone())
                    .or_default()
                    .insert(key.clone());
                user.insert(
                    key.clone(),
                    crate::ports::SyncedField {
                        value: IN_FLIGHT_VALUE.to_string(),
                        precedence: p.just_before(),
                    },
                );
            }
        }
    }
    guarded
}

/// A value no change can carry (ingest refuses control characters), standing for "unknown, maybe sent".
const IN_FLIGHT_VALUE: &str = "\u{0}in flight";

/// One structured line per provider call: what was sent, what came back, how long it took.
fn log_call(kind: &'static str, records: usize, reply: &Reply, elapsed: Duration, attempt: u32) {
    let outcome = match &reply.result {
        Ok(()) => "ok",
        Err(e) => e.class(),
    };
    let error =
        reply.result.as_ref().err().map(|e| {
            crate::telemetry::redact_emails_in(&crate::domain::truncate(&e.to_string(), 300))
        });
    info!(
        target: "sluice::provider_call",
        kind,
        records,
        status = reply.info.status,
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        attempt,
        outcome,
        request_id = reply.info.request_id.as_deref(),
        rate_limit = reply.info.rate_limit,
        rate_remaining = reply.info.rate_remaining,
        error,
        "provider call"
    );
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}

/// No provider call starts this close to the end of its window (10 % of the window, at most 2 s): a call
/// reserved in one window must reach the provider inside it.
fn window_guard(window: Window) -> chrono::Duration {
    chrono::Duration::milliseconds(i64::from(window.length).saturating_mul(100).min(2_000))
}

/// What a run received, each body decoded once as it arrives, and the distinct users among them
/// (malformed bodies count as one each: they cost nothing to send, but nothing says they don't hold a user).
#[derive(Default)]
struct Received {
    messages: Vec<ReceivedMessage>,
    /// The change of each message, by index, or why its body cannot be decoded.
    bodies: Vec<Result<Change, String>>,
    emails: HashSet<Email>,
    malformed: u64,
}

impl Received {
    fn add(&mut self, messages: Vec<ReceivedMessage>) {
        for m in &messages {
            let body = ChangeMessage::from_body(&m.body)
                .map(ChangeMessage::into_change)
                .map_err(|e| format!("cannot decode change message: {e}"));
            match &body {
                Ok(change) => {
                    self.emails.insert(change.email.clone());
                }
                Err(_) => self.malformed += 1,
            }
            self.bodies.push(body);
        }
        self.messages.extend(messages);
    }

    fn distinct(&self) -> u64 {
        self.emails.len() as u64 + self.malformed
    }
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tracking_tests;
