//! The send phase: every pending record ends with one [`Outcome`].
//!
//! - Batches go first while the backlog needs more than the individual allowance; individual requests
//!   (in parallel waves) take the rest. Each request's quota is reserved right before it, and the lease is
//!   renewed before it, so no other run can start while a call is in flight.
//! - **A rejection is isolated to its records.** A batch refused for named records (`subscribers[i]…`,
//!   any number of them) loses just those; the rest is sent again. A refusal that names no record (or a
//!   413) is isolated by sending the records individually when the individual allowance can carry them,
//!   and otherwise by splitting the batch in halves, until only the bad records remain. A record's fault
//!   never opens the circuit and never touches another record.
//! - **429s by meaning.** The account's limit spends that kind's window (and the windows up to
//!   `Retry-After`); the other kind goes on. "Too many concurrent requests for the same subscriber" is
//!   retried shortly, without spending anything.
//! - Transient failures count toward the circuit; when it opens, or the lease is lost, or the deadline
//!   nears, sending stops and what was not tried is [`Outcome::Held`] until it can be.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tracing::warn;

use super::coalesce::PendingRecord;
use super::policy::Plan;
use super::report::log_call;
use super::{Drain, DrainError, Outcome, Run, chrono_duration, window_closing};
use crate::ports::{DrainPorts, Provider, ProviderError, QuotaKind, Reply};

/// Why sending stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    CircuitOpen(DateTime<Utc>),
    LeaseLost,
    Deadline,
}

/// Working state of the send phase, over record indexes.
struct Sending {
    outcomes: Vec<Option<Outcome>>,
    /// Records in send order.
    pending: VecDeque<usize>,
    /// Groups under isolation: each goes out as a batch of its own.
    suspects: VecDeque<Vec<usize>>,
    /// Records that must go out individually (isolating themselves).
    solo: VecDeque<usize>,
    batches_left: u32,
    individual_left: u32,
    /// Per kind (batch, individual): spent by a 429 until then.
    spent_until: [Option<DateTime<Utc>>; 2],
    stop: Option<Stop>,
}

impl Sending {
    fn set(&mut self, record: usize, outcome: Outcome) {
        self.outcomes[record] = Some(outcome);
    }

    fn spent(&self, kind: QuotaKind) -> bool {
        self.spent_until[kind_slot(kind)].is_some()
    }

    /// Puts records back at the front of the normal queue, in their order.
    fn put_back(&mut self, records: &[usize]) {
        for &r in records.iter().rev() {
            self.pending.push_front(r);
        }
    }
}

fn kind_slot(kind: QuotaKind) -> usize {
    match kind {
        QuotaKind::Batch => 0,
        QuotaKind::Individual => 1,
    }
}

impl<P: DrainPorts> Drain<P> {
    /// Sends every pending record the plan allows; returns one outcome per record.
    pub(super) async fn send_all(
        &self,
        run: &mut Run,
        records: &[PendingRecord],
        plan: Plan,
    ) -> Result<Vec<Outcome>, DrainError> {
        let mut s = Sending {
            outcomes: vec![None; records.len()],
            pending: (0..records.len()).collect(),
            suspects: VecDeque::new(),
            solo: VecDeque::new(),
            batches_left: plan.batches,
            individual_left: plan.individual,
            spent_until: [None, None],
            stop: None,
        };
        self.send_batches(run, records, &mut s).await?;
        self.send_individually(run, records, &mut s).await?;
        let held = self.hold_delay(&s);
        Ok(s.outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Held(held)))
            .collect())
    }

    /// Whether the next call may start; sets the stop reason when not.
    async fn may_call(&self, run: &mut Run, s: &mut Sending) -> Result<bool, DrainError> {
        if s.stop.is_some() {
            return Ok(false);
        }
        let now = self.now();
        let margin = chrono_duration(self.settings.send_margin);
        if now + margin >= run.deadline || window_closing(run.window, now) {
            s.stop = Some(Stop::Deadline);
            return Ok(false);
        }
        if !self.fence(run).await? {
            s.stop = Some(Stop::LeaseLost);
            return Ok(false);
        }
        Ok(true)
    }

    async fn send_batches(
        &self,
        run: &mut Run,
        records: &[PendingRecord],
        s: &mut Sending,
    ) -> Result<(), DrainError> {
        let batch_size = self.settings.limits.batch_size.max(1) as usize;
        while s.batches_left > 0 && !s.spent(QuotaKind::Batch) {
            let group: Vec<usize> = if let Some(g) = s.suspects.pop_front() {
                g
            } else if s.pending.len() > s.individual_left as usize {
                let take = s.pending.len().min(batch_size);
                s.pending.drain(..take).collect()
            } else {
                break;
            };
            if !self.may_call(run, s).await? || self.reserve(run, QuotaKind::Batch, 1).await? == 0 {
                s.put_back(&group);
                break;
            }
            s.batches_left -= 1;
            let subscribers: Vec<_> = group.iter().map(|&r| records[r].subscriber()).collect();
            let started = Instant::now();
            let reply = self.ports.provider().send_batch(&subscribers).await;
            run.report.calls.batch.record(&reply, started.elapsed());
            log_call(
                "batch",
                group.len(),
                &reply,
                started.elapsed(),
                attempts(run, records, &group),
            );
            if !matches!(reply.result, Err(ProviderError::RateLimited { .. })) {
                self.adopt(run, QuotaKind::Batch, [&reply.info]).await;
            }
            self.batch_answered(run, records, s, group, reply).await?;
        }
        // Groups still under isolation go back to the normal queue; individual requests isolate them.
        while let Some(g) = s.suspects.pop_back() {
            s.put_back(&g);
        }
        Ok(())
    }

    async fn batch_answered(
        &self,
        run: &mut Run,
        records: &[PendingRecord],
        s: &mut Sending,
        group: Vec<usize>,
        reply: Reply,
    ) -> Result<(), DrainError> {
        match reply.result {
            Ok(()) => {
                self.settings.circuit.success(&mut run.circuit);
                run.report.requests.batch += 1;
                run.report.delivered.batch += u32::try_from(group.len()).unwrap_or(u32::MAX);
                for r in group {
                    s.set(r, Outcome::Delivered);
                }
            }
            Err(ProviderError::Rejected { indexes, detail })
                if !indexes.is_empty() && indexes.iter().all(|&i| i < group.len()) =>
            {
                self.settings.circuit.success(&mut run.circuit);
                let mut rest = Vec::new();
                for (i, r) in group.into_iter().enumerate() {
                    if indexes.contains(&i) {
                        warn!(email = %records[r].email, %detail, "provider rejected a record; dead-lettering its messages");
                        s.set(r, Outcome::Rejected(record_detail(&detail, i)));
                    } else {
                        rest.push(r);
                    }
                }
                s.put_back(&rest);
            }
            Err(e @ (ProviderError::Rejected { .. } | ProviderError::TooLarge(_))) => {
                self.settings.circuit.success(&mut run.circuit);
                self.isolate(s, group, &e.to_string());
            }
            Err(ProviderError::RateLimited { retry_after }) => {
                let until = self.spend(run, QuotaKind::Batch, retry_after).await?;
                s.spent_until[kind_slot(QuotaKind::Batch)] = Some(until);
                s.put_back(&group);
            }
            Err(ProviderError::SubscriberBusy { retry_after }) => {
                let delay = retry_after.unwrap_or(self.settings.busy_retry);
                for r in group {
                    s.set(r, Outcome::Busy(delay));
                }
            }
            Err(e) => {
                let outcome = self.failed(run, s, &e);
                for r in group {
                    s.set(r, outcome.clone());
                }
            }
        }
        Ok(())
    }

    /// A batch was refused without naming its records: find them.
    fn isolate(&self, s: &mut Sending, group: Vec<usize>, detail: &str) {
        if group.len() == 1 {
            s.set(group[0], Outcome::Rejected(detail.to_string()));
            return;
        }
        let solo_room = (s.individual_left as usize).saturating_sub(s.solo.len());
        if group.len() <= solo_room {
            s.solo.extend(group);
        } else {
            let (a, b) = group.split_at(group.len() / 2);
            s.suspects.push_front(b.to_vec());
            s.suspects.push_front(a.to_vec());
        }
    }

    async fn send_individually(
        &self,
        run: &mut Run,
        records: &[PendingRecord],
        s: &mut Sending,
    ) -> Result<(), DrainError> {
        let concurrency = self.settings.individual_concurrency.max(1);
        while s.individual_left > 0 && !s.spent(QuotaKind::Individual) {
            let want = (s.individual_left as usize)
                .min(s.solo.len() + s.pending.len())
                .min(concurrency);
            if want == 0 || !self.may_call(run, s).await? {
                break;
            }
            let granted = self
                .reserve(run, QuotaKind::Individual, want as u32)
                .await? as usize;
            if granted == 0 {
                break;
            }
            s.individual_left -= granted as u32;
            let mut wave = Vec::with_capacity(granted);
            while wave.len() < granted {
                match s.solo.pop_front().or_else(|| s.pending.pop_front()) {
                    Some(r) => wave.push(r),
                    None => break,
                }
            }
            let provider = self.ports.provider();
            let replies: Vec<(usize, Reply, Duration)> = stream::iter(wave)
                .map(|r| async move {
                    let started = Instant::now();
                    let reply = provider.send_individual(&records[r].subscriber()).await;
                    (r, reply, started.elapsed())
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            let counted = replies
                .iter()
                .filter(|(_, reply, _)| {
                    !matches!(reply.result, Err(ProviderError::RateLimited { .. }))
                })
                .map(|(_, reply, _)| &reply.info);
            self.adopt(run, QuotaKind::Individual, counted).await;
            for (r, reply, elapsed) in replies {
                run.report.calls.individual.record(&reply, elapsed);
                log_call(
                    "individual",
                    1,
                    &reply,
                    elapsed,
                    attempts(run, records, &[r]),
                );
                self.individual_answered(run, records, s, r, reply).await?;
            }
        }
        Ok(())
    }

    async fn individual_answered(
        &self,
        run: &mut Run,
        records: &[PendingRecord],
        s: &mut Sending,
        r: usize,
        reply: Reply,
    ) -> Result<(), DrainError> {
        match reply.result {
            Ok(()) => {
                self.settings.circuit.success(&mut run.circuit);
                run.report.requests.individual += 1;
                run.report.delivered.individual += 1;
                s.set(r, Outcome::Delivered);
            }
            Err(e @ (ProviderError::Rejected { .. } | ProviderError::TooLarge(_))) => {
                self.settings.circuit.success(&mut run.circuit);
                warn!(email = %records[r].email, error = %e, "provider rejected a record; dead-lettering its messages");
                s.set(r, Outcome::Rejected(e.to_string()));
            }
            Err(ProviderError::RateLimited { retry_after }) => {
                if !s.spent(QuotaKind::Individual) {
                    let until = self.spend(run, QuotaKind::Individual, retry_after).await?;
                    s.spent_until[kind_slot(QuotaKind::Individual)] = Some(until);
                }
                s.individual_left = 0;
                s.pending.push_front(r);
            }
            Err(ProviderError::SubscriberBusy { retry_after }) => {
                s.set(
                    r,
                    Outcome::Busy(retry_after.unwrap_or(self.settings.busy_retry)),
                );
            }
            Err(e) => {
                let outcome = self.failed(run, s, &e);
                s.set(r, outcome);
            }
        }
        Ok(())
    }

    /// A transient failure, or an answer about the account: counts toward the circuit (or opens it at
    /// once), and says what becomes of the records of that call.
    fn failed(&self, run: &mut Run, s: &mut Sending, error: &ProviderError) -> Outcome {
        warn!(%error, "provider call failed");
        run.report.provider_errors += 1;
        let now = self.now();
        let policy = self.settings.circuit;
        let reason = error.to_string();
        match error {
            ProviderError::Misconfigured(_) => {
                // Not the records' fault: they were not really tried, and wait for the circuit to close.
                let until = policy.open(&mut run.circuit, now, &reason, None);
                self.circuit_opened(run, s, until);
                Outcome::Held(self.delay_until(until))
            }
            ProviderError::Transient { retry_after, .. } => {
                if let Some(until) = policy.failure(&mut run.circuit, now, &reason, *retry_after) {
                    self.circuit_opened(run, s, until);
                }
                Outcome::Failed(reason)
            }
            _ => Outcome::Failed(reason),
        }
    }

    fn circuit_opened(&self, run: &mut Run, s: &mut Sending, until: DateTime<Utc>) {
        if s.stop.is_none() {
            warn!(%until, "opening the provider circuit");
            run.report.circuit_opened = true;
            s.stop = Some(Stop::CircuitOpen(until));
        }
    }

    /// How long records this run could not try are held: until the circuit's probe, until the spent
    /// kinds' next window, or until the next run.
    fn hold_delay(&self, s: &Sending) -> Duration {
        let next_run =
            self.now() + chrono::Duration::seconds(i64::from(self.settings.interval_seconds));
        let until = match s.stop {
            Some(Stop::CircuitOpen(until)) => until,
            _ => {
                let limited: Vec<DateTime<Utc>> = [QuotaKind::Batch, QuotaKind::Individual]
                    .into_iter()
                    .filter(|&k| self.settings.limit(k) > 0)
                    .map(|k| s.spent_until[kind_slot(k)])
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_default();
                limited.into_iter().min().unwrap_or(next_run).max(next_run)
            }
        };
        self.delay_until(until)
    }

    fn delay_until(&self, until: DateTime<Utc>) -> Duration {
        (until - self.now()).to_std().unwrap_or_default()
    }
}

/// The highest delivery attempt among the messages of these records (for the call log).
fn attempts(run: &Run, records: &[PendingRecord], group: &[usize]) -> u32 {
    group
        .iter()
        .flat_map(|&r| records[r].messages.iter())
        .map(|&m| run.messages[m].attempts())
        .max()
        .unwrap_or(0)
}

/// The provider's answer, pointed at one record of the batch.
fn record_detail(detail: &str, index: usize) -> String {
    format!("record {index} of its batch: {detail}")
}
