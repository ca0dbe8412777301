//! The drain engine: one run releases queued changes to the provider within quota.
//!
//! A run, in order:
//! 1. skip if the provider circuit is open; take the single-flight lease (or skip);
//! 2. read both quota counters and the queue depth, and [`policy::plan`] how much this run may send —
//!    *before* receiving, so no message is received only to be deferred;
//! 3. receive that many messages; malformed ones go to the DLQ at once;
//! 4. [`coalesce::coalesce`] them per email against the sync state; record no-op timestamps, delete
//!    absorbed messages;
//! 5. send: batches first when the backlog needs them, individual requests (in waves) for the rest; each
//!    request's quota is reserved in the ledger right before the call;
//! 6. settle each record: delivered → record sync state, then delete; 429 → window spent, messages visible
//!    at the next window; 422 → that record's messages to the DLQ, the rest retried; 5xx/timeout →
//!    visible again after exponential, jittered backoff (the redrive policy is the final net); repeated
//!    failures open the circuit;
//! 7. update per-request progress once, release the lease, and report.

pub mod coalesce;
pub mod policy;
pub mod report;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use rand::Rng;
use tracing::{info, warn};

use crate::config::{Config, Limits};
use crate::domain::{ChangeId, ChangeMessage, Email, RequestId};
use crate::ports::{
    ChangeQueue, Clock, Coordination, DeadLetter, DeadLetterReason, DrainPorts, PortError,
    Provider, ProviderError, QuotaKind, QuotaLedger, Receipt, ReceivedMessage, RequestProgress,
    RequestTracker, Reservation, SyncStateStore, Window,
};
use coalesce::{Coalesced, Decoded, PendingRecord, coalesce};
use policy::{KindQuota, Plan, RunState};
pub use report::{DrainReport, Idle, PerKind, QuotaSummary};

/// Tunables of the drain, derived from [`Config`].
#[derive(Debug, Clone)]
pub struct DrainSettings {
    pub limits: Limits,
    pub interval_seconds: u32,
    pub max_messages: u32,
    /// First retry delay after a transient failure; doubles per receive.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    /// Consecutive transient provider failures in one run that open the circuit.
    pub circuit_threshold: u32,
    /// How long the circuit stays open.
    pub circuit_cool_down: Duration,
    /// Parallel individual requests.
    pub individual_concurrency: usize,
    /// Stop starting provider calls this long before the deadline.
    pub deadline_margin: Duration,
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
            circuit_threshold: 3,
            circuit_cool_down: Duration::from_secs(300).min(window / 2),
            individual_concurrency: 10,
            deadline_margin: config.provider_timeout + Duration::from_secs(2),
        }
    }

    fn limit(&self, kind: QuotaKind) -> u32 {
        match kind {
            QuotaKind::Batch => self.limits.batch_per_window,
            QuotaKind::Individual => self.limits.individual_per_window,
        }
    }
}

/// A failure that ends a run early. Messages already received become visible again by themselves when
/// their visibility timeout passes, so nothing is lost; the error is for logs and the Lambda's error metric.
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

/// How a group of messages leaves this run.
enum Settle {
    Delete,
    Retry,
    Defer(Duration),
}

/// Working state of one run.
struct Run<'a> {
    messages: Vec<ReceivedMessage>,
    changes: HashMap<usize, (ChangeId, RequestId)>,
    report: DrainReport,
    window: Window,
    deadline: DateTime<Utc>,
    consecutive_failures: u32,
    stop_sending: bool,
    delivered: Vec<&'a PendingRecord>,
    settled: HashSet<usize>,
    progress: HashMap<RequestId, RequestProgress>,
    counted: HashSet<ChangeId>,
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

    /// One run; provider calls stop `deadline_margin` before `deadline`.
    pub async fn run(&self, deadline: DateTime<Utc>) -> Result<DrainReport, DrainError> {
        let started = Instant::now();
        let now = self.ports.clock().now();
        let window = Window::containing(now, self.settings.limits.window_seconds);
        let mut report = DrainReport {
            window_start: window.start,
            window_ends_in_s: window.end() - now.timestamp(),
            ..DrainReport::default()
        };

        let coordination = self.ports.coordination();
        if let Some(until) = coordination.circuit_open_until().await?
            && until > now
        {
            report.idle = Some(Idle::CircuitOpen);
            self.fill_quota(&mut report, window).await?;
            return Ok(report);
        }
        let holder = uuid::Uuid::new_v4().to_string();
        let lease_until = deadline + chrono::Duration::seconds(30);
        if !coordination
            .acquire_lease(&holder, now, lease_until)
            .await?
        {
            report.idle = Some(Idle::LeaseHeld);
            return Ok(report);
        }
        let result = self.run_leased(report, window, deadline).await;
        if let Err(e) = coordination.release_lease(&holder).await {
            // The lease expires by itself; a failed release only delays the next run.
            warn!(error = %e, "could not release the drain lease");
        }
        let mut report = result?;
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    async fn run_leased(
        &self,
        mut report: DrainReport,
        window: Window,
        deadline: DateTime<Utc>,
    ) -> Result<DrainReport, DrainError> {
        let now = self.ports.clock().now();
        let ledger = self.ports.ledger();
        let (used_batch, used_individual, backlog) = futures::try_join!(
            ledger.used(QuotaKind::Batch, window),
            ledger.used(QuotaKind::Individual, window),
            self.ports.queue().backlog(),
        )?;
        let plan: Plan = policy::plan(
            &self.settings.limits,
            self.settings.interval_seconds,
            self.settings.max_messages,
            RunState {
                window,
                elapsed: now.timestamp() - window.start,
                batch: KindQuota {
                    limit: self.settings.limits.batch_per_window,
                    used: used_batch,
                },
                individual: KindQuota {
                    limit: self.settings.limits.individual_per_window,
                    used: used_individual,
                },
                backlog: backlog.visible,
            },
        );
        report.planned_receive = plan.receive;
        let margin = chrono::Duration::from_std(self.settings.deadline_margin).unwrap_or_default();
        if now + margin >= deadline || now + window_guard(window) >= window.end_time() {
            report.idle = Some(Idle::Deadline);
            self.fill_quota(&mut report, window).await?;
            return Ok(report);
        }
        if plan.receive == 0 {
            report.idle = Some(Idle::NoQuota);
            self.fill_quota(&mut report, window).await?;
            return Ok(report);
        }

        let messages = self.receive(plan, backlog.visible).await?;
        report.received = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        let mut run = Run {
            messages,
            changes: HashMap::new(),
            report,
            window,
            deadline,
            consecutive_failures: 0,
            stop_sending: false,
            delivered: Vec::new(),
            settled: HashSet::new(),
            progress: HashMap::new(),
            counted: HashSet::new(),
        };

        // Decode; malformed bodies go straight to the DLQ.
        let mut decoded = Vec::with_capacity(run.messages.len());
        let mut malformed = Vec::new();
        for (index, m) in run.messages.iter().enumerate() {
            match ChangeMessage::from_body(&m.body) {
                Ok(msg) => {
                    let change = msg.into_change();
                    run.changes
                        .insert(index, (change.change_id, change.request_id));
                    decoded.push(Decoded { index, change });
                }
                Err(e) => malformed.push((index, format!("cannot decode change message: {e}"))),
            }
        }
        for (index, detail) in malformed {
            self.dead_letter(&mut run, &[index], DeadLetterReason::Malformed, detail)
                .await?;
        }

        let emails: Vec<Email> = {
            let mut set: Vec<Email> = decoded.iter().map(|d| d.change.email.clone()).collect();
            set.sort();
            set.dedup();
            set
        };
        let synced = self.ports.sync_state().load(&emails).await?;
        let coalesced: Coalesced = coalesce(&decoded, &synced);
        run.report.coalesced = coalesced.merged_messages;
        run.report.skipped_unchanged = coalesced.skipped_unchanged;
        run.report.skipped_stale = coalesced.skipped_stale;

        // No-ops newer than the synced timestamp move it forward before their messages are deleted.
        for (email, fields) in &coalesced.touches {
            self.ports.sync_state().record(email, fields).await?;
        }
        run.report.absorbed = u32::try_from(coalesced.absorbed.len()).unwrap_or(u32::MAX);
        self.settle(&mut run, &coalesced.absorbed, Settle::Delete)
            .await?;
        for &i in &coalesced.absorbed {
            count(&mut run, i, |p| p.skipped += 1);
        }

        self.send_all(&mut run, &coalesced.records, plan).await?;

        // Record what was delivered, then delete its messages (state first: a crash in between resends
        // the same values, never older ones).
        let delivered = std::mem::take(&mut run.delivered);
        let sync = self.ports.sync_state();
        let results: Vec<Result<(), PortError>> = stream::iter(delivered.iter())
            .map(|r| async move { sync.record(&r.email, &r.synced_fields()).await })
            .buffer_unordered(16)
            .collect()
            .await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, PortError>>()?;
        let delivered_indexes: Vec<usize> = delivered
            .iter()
            .flat_map(|r| r.messages.iter().copied())
            .collect();
        for r in &delivered {
            // A superseded change counts as skipped; a change that supplied a sent value as delivered.
            let winners: HashSet<ChangeId> = r.fields.values().map(|w| w.change_id).collect();
            for &i in &r.messages {
                let won = run
                    .changes
                    .get(&i)
                    .is_some_and(|(id, _)| winners.contains(id));
                count(&mut run, i, |p| {
                    if won {
                        p.delivered += 1
                    } else {
                        p.skipped += 1
                    }
                });
            }
        }
        self.settle(&mut run, &delivered_indexes, Settle::Delete)
            .await?;

        if !run.progress.is_empty() {
            self.ports.requests().add(&run.progress).await?;
        }
        let mut report = run.report;
        self.fill_quota(&mut report, window).await?;
        info!(
            received = report.received,
            delivered = report.delivered_records(),
            deferred = report.deferred,
            retried = report.retried,
            dead_lettered = report.dead_lettered,
            "drain run finished"
        );
        Ok(report)
    }

    /// Sends every pending record this run's plan allows; settles the ones it cannot send.
    async fn send_all<'a>(
        &self,
        run: &mut Run<'a>,
        records: &'a [PendingRecord],
        plan: Plan,
    ) -> Result<(), DrainError> {
        let batch_size = self.settings.limits.batch_size.max(1) as usize;
        let mut pending: VecDeque<&'a PendingRecord> = records.iter().collect();
        let mut batches_left = plan.batches;
        let mut individual_left = plan.individual;

        // Batches, while the backlog needs more than the individual allowance can carry.
        while batches_left > 0 && pending.len() > individual_left as usize && !self.must_stop(run) {
            match self.reserve(QuotaKind::Batch, run.window, 1).await? {
                0 => break,
                _ => batches_left -= 1,
            }
            let take = pending.len().min(batch_size);
            let chunk: Vec<&PendingRecord> = pending.drain(..take).collect();
            let subscribers: Vec<_> = chunk.iter().map(|r| r.subscriber()).collect();
            match self.ports.provider().send_batch(&subscribers).await {
                Ok(()) => {
                    run.consecutive_failures = 0;
                    run.report.requests.batch += 1;
                    run.report.delivered.batch += u32::try_from(chunk.len()).unwrap_or(u32::MAX);
                    run.delivered.extend(chunk);
                }
                Err(ProviderError::Rejected {
                    index: Some(i),
                    detail,
                }) if i < chunk.len() => {
                    let bad = chunk[i];
                    warn!(email = %bad.email, %detail, "provider rejected a record; dead-lettering its messages");
                    self.dead_letter(run, &bad.messages, DeadLetterReason::Rejected, detail)
                        .await?;
                    // The rest of the batch is retried in this run without it, quota permitting.
                    for (j, r) in chunk.iter().enumerate().rev() {
                        if j != i {
                            pending.push_front(r);
                        }
                    }
                }
                Err(ProviderError::RateLimited { .. }) => {
                    self.rate_limited(run, QuotaKind::Batch).await?;
                    batches_left = 0;
                    for r in chunk.into_iter().rev() {
                        pending.push_front(r);
                    }
                }
                Err(e) => {
                    self.failed(run, &e).await?;
                    let idx: Vec<usize> = chunk
                        .iter()
                        .flat_map(|r| r.messages.iter().copied())
                        .collect();
                    self.settle(run, &idx, Settle::Retry).await?;
                }
            }
        }

        // Individual requests, in waves: reserve a wave's quota, send it in parallel, settle.
        while individual_left > 0 && !pending.is_empty() && !self.must_stop(run) {
            let want = (individual_left as usize)
                .min(pending.len())
                .min(self.settings.individual_concurrency);
            let granted = self
                .reserve(QuotaKind::Individual, run.window, want as u32)
                .await?;
            if granted == 0 {
                break;
            }
            individual_left -= granted;
            let wave: Vec<&PendingRecord> = pending.drain(..granted as usize).collect();
            let provider = self.ports.provider();
            let results: Vec<(&PendingRecord, Result<(), ProviderError>)> = stream::iter(wave)
                .map(|r| async move { (r, provider.send_individual(&r.subscriber()).await) })
                .buffer_unordered(self.settings.individual_concurrency)
                .collect()
                .await;
            let mut limited = false;
            for (r, result) in results {
                match result {
                    Ok(()) => {
                        run.consecutive_failures = 0;
                        run.report.requests.individual += 1;
                        run.report.delivered.individual += 1;
                        run.delivered.push(r);
                    }
                    Err(ProviderError::Rejected { detail, .. }) => {
                        warn!(email = %r.email, %detail, "provider rejected a record; dead-lettering its messages");
                        self.dead_letter(run, &r.messages, DeadLetterReason::Rejected, detail)
                            .await?;
                    }
                    Err(ProviderError::RateLimited { .. }) => {
                        limited = true;
                        pending.push_back(r);
                    }
                    Err(e) => {
                        self.failed(run, &e).await?;
                        self.settle(run, &r.messages, Settle::Retry).await?;
                    }
                }
            }
            if limited {
                self.rate_limited(run, QuotaKind::Individual).await?;
                individual_left = 0;
            }
        }

        // What could not be sent this run becomes visible again: at the next window if quota ran out,
        // at once otherwise (the deadline or the circuit stopped us).
        let leftover: Vec<usize> = pending
            .iter()
            .flat_map(|r| r.messages.iter().copied())
            .collect();
        if !leftover.is_empty() {
            let ledger = self.ports.ledger();
            let (b, i) = futures::try_join!(
                ledger.used(QuotaKind::Batch, run.window),
                ledger.used(QuotaKind::Individual, run.window)
            )?;
            let window_spent = b >= self.settings.limit(QuotaKind::Batch)
                && i >= self.settings.limit(QuotaKind::Individual);
            let delay = if window_spent {
                self.until_next_window(run.window)
            } else {
                Duration::ZERO
            };
            self.settle(run, &leftover, Settle::Defer(delay)).await?;
        }
        Ok(())
    }

    /// Receives what the plan can send. Copies of one user coalesce into one record, so while the distinct
    /// users received stay below the plan's record capacity (and under `DRAIN_MAX_MESSAGES`), it tops up
    /// with at most the missing number of records: every message received can still be sent this run.
    async fn receive(&self, plan: Plan, visible: u64) -> Result<Vec<ReceivedMessage>, DrainError> {
        let capacity = plan.records(self.settings.limits.batch_size);
        let max = u64::from(self.settings.max_messages);
        let mut messages = self.ports.queue().receive(plan.receive).await?;
        let mut asked = u64::from(plan.receive);
        for _ in 0..8 {
            if (messages.len() as u64) < asked || messages.len() as u64 >= visible {
                break; // the queue is drained (as far as its approximate depth tells)
            }
            let distinct = distinct_users(&messages);
            let room = capacity
                .saturating_sub(distinct)
                .min(max.saturating_sub(messages.len() as u64));
            if room == 0 {
                break;
            }
            let more = self.ports.queue().receive(room as u32).await?;
            asked = room;
            let got = more.len() as u64;
            messages.extend(more);
            if got < asked {
                break;
            }
            asked = got;
        }
        Ok(messages)
    }

    /// Stop starting provider calls: the circuit opened, the deadline is near, or the window is about to
    /// end — a call reserved in this window must reach the provider inside it, or the provider would count
    /// it against the next window, whose quota the ledger hands out in full.
    fn must_stop(&self, run: &Run<'_>) -> bool {
        let now = self.ports.clock().now();
        let margin = chrono::Duration::from_std(self.settings.deadline_margin).unwrap_or_default();
        run.stop_sending
            || now + margin >= run.deadline
            || now + window_guard(run.window) >= run.window.end_time()
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

    async fn rate_limited(&self, run: &mut Run<'_>, kind: QuotaKind) -> Result<(), DrainError> {
        warn!(
            kind = kind.as_str(),
            "provider answered 429; marking the window spent"
        );
        run.report.rate_limited += 1;
        self.ports
            .ledger()
            .mark_spent(kind, run.window, self.settings.limit(kind))
            .await?;
        Ok(())
    }

    async fn failed(&self, run: &mut Run<'_>, error: &ProviderError) -> Result<(), DrainError> {
        warn!(%error, "provider call failed");
        run.report.provider_errors += 1;
        run.consecutive_failures += 1;
        let misconfigured = matches!(error, ProviderError::Misconfigured(_));
        if (misconfigured || run.consecutive_failures >= self.settings.circuit_threshold)
            && !run.stop_sending
        {
            let until = self.ports.clock().now()
                + chrono::Duration::from_std(self.settings.circuit_cool_down).unwrap_or_default();
            warn!(%until, "opening the provider circuit");
            self.ports
                .coordination()
                .open_circuit(until, &error.to_string())
                .await?;
            run.report.circuit_opened = true;
            run.stop_sending = true;
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        run: &mut Run<'_>,
        indexes: &[usize],
        reason: DeadLetterReason,
        detail: String,
    ) -> Result<(), DrainError> {
        let letters: Vec<DeadLetter> = unique(indexes)
            .into_iter()
            .filter(|i| run.settled.insert(*i))
            .map(|i| DeadLetter {
                message: run.messages[i].clone(),
                reason,
                detail: detail.clone(),
            })
            .collect();
        if letters.is_empty() {
            return Ok(());
        }
        self.ports.queue().dead_letter(&letters).await?;
        run.report.dead_lettered += u32::try_from(letters.len()).unwrap_or(u32::MAX);
        for &i in indexes {
            count(run, i, |p| p.dead_lettered += 1);
        }
        Ok(())
    }

    async fn settle(
        &self,
        run: &mut Run<'_>,
        indexes: &[usize],
        how: Settle,
    ) -> Result<(), DrainError> {
        let fresh: Vec<usize> = unique(indexes)
            .into_iter()
            .filter(|i| run.settled.insert(*i))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let n = u32::try_from(fresh.len()).unwrap_or(u32::MAX);
        let queue = self.ports.queue();
        match how {
            Settle::Delete => {
                let receipts: Vec<Receipt> = fresh
                    .iter()
                    .map(|&i| run.messages[i].receipt.clone())
                    .collect();
                let failed = queue.delete(&receipts).await?;
                if !failed.is_empty() {
                    // The data is recorded as synced: a redelivery is dropped as a no-op, not resent.
                    warn!(
                        count = failed.len(),
                        "some deletes failed; those messages will come back as no-ops"
                    );
                }
                run.report.deleted += n - u32::try_from(failed.len()).unwrap_or(0).min(n);
            }
            Settle::Retry => {
                let items: Vec<(Receipt, Duration)> = fresh
                    .iter()
                    .map(|&i| {
                        (
                            run.messages[i].receipt.clone(),
                            self.backoff(run.messages[i].receive_count),
                        )
                    })
                    .collect();
                queue.release(&items).await?;
                run.report.retried += n;
            }
            Settle::Defer(delay) => {
                let items: Vec<(Receipt, Duration)> = fresh
                    .iter()
                    .map(|&i| (run.messages[i].receipt.clone(), delay))
                    .collect();
                queue.release(&items).await?;
                run.report.deferred += n;
            }
        }
        Ok(())
    }

    /// Exponential backoff with equal jitter: half fixed, half random, from the receive count.
    pub fn backoff(&self, receive_count: u32) -> Duration {
        let exp = receive_count.saturating_sub(1).min(20);
        let full = self
            .settings
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.settings.backoff_cap);
        let half = full / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter)
    }

    /// Time until the next window opens, plus a little jitter so released messages don't all reappear at once.
    fn until_next_window(&self, window: Window) -> Duration {
        let now = self.ports.clock().now().timestamp();
        let secs = u64::try_from(window.end() - now).unwrap_or(0);
        let jitter = rand::rng().random_range(0..=(u64::from(window.length) / 20).clamp(1, 30));
        Duration::from_secs(secs + jitter)
    }

    async fn fill_quota(&self, report: &mut DrainReport, window: Window) -> Result<(), DrainError> {
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

/// No provider call starts this close to the end of its window (10 % of the window, at most 2 s): a call
/// reserved in one window must reach the provider inside it.
fn window_guard(window: Window) -> chrono::Duration {
    chrono::Duration::milliseconds(i64::from(window.length).saturating_mul(100).min(2_000))
}

/// Distinct users among received messages (malformed bodies count as one each: they cost nothing to send).
fn distinct_users(messages: &[ReceivedMessage]) -> u64 {
    let mut emails: HashSet<String> = HashSet::new();
    let mut malformed = 0;
    for m in messages {
        match ChangeMessage::from_body(&m.body) {
            Ok(c) => {
                emails.insert(c.into_change().email.as_str().to_string());
            }
            Err(_) => malformed += 1,
        }
    }
    emails.len() as u64 + malformed
}

fn unique(indexes: &[usize]) -> Vec<usize> {
    let mut v = indexes.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Counts a message's change once per run toward its request's progress (copies of one change count once).
fn count(run: &mut Run<'_>, index: usize, f: impl FnOnce(&mut RequestProgress)) {
    if let Some(&(change_id, request_id)) = run.changes.get(&index)
        && run.counted.insert(change_id)
    {
        f(run.progress.entry(request_id).or_default());
    }
}

#[cfg(test)]
mod tests;
