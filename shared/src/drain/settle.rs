//! The settle phase: carries out the one table ([`super::outcome::action`]) for every message, in the
//! order that loses nothing:
//! 1. the lease is renewed — a run that lost it writes no state and deletes nothing it tried (those
//!    messages come back after their visibility timeout); it only hands back what it holds untried;
//! 2. sync state: delivered fields and no-op timestamps (never backwards in time), before any delete, so
//!    a crash in between resends the same values, never older ones; then the run's in-flight note is
//!    resolved (kept only for what was tried and not delivered);
//! 3. request progress, once per change (idempotent), before any delete, so a failed progress write
//!    leaves the messages to come back and be counted then (a single-change request's delivered or
//!    skipped change is not written: step 2 shows it, see [`progress`]);
//! 4. the queue: deletes, dead letters, releases (tried messages, with backoff) and re-queued copies
//!    (held messages, whose receive count is not spent).

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;
use tracing::warn;

use super::coalesce::{Coalesced, PendingRecord};
use super::outcome::{QueueAction, action};
use super::{Drain, DrainError, Outcome, Run};
use crate::domain::{ChangeId, Email, FieldKey, Priority, RequestId};
use crate::ports::{
    ChangeQueue, DeadLetter, DeadLetterReason, DrainPorts, InFlight, ReceiptHandle,
    ReceivedMessage, RequestTracker, Settled, SyncStateStore, SyncWrite,
};

/// The queue actions of one run, grouped by kind of call.
#[derive(Default)]
struct Actions {
    deletes: Vec<usize>,
    dead_letters: Vec<(usize, DeadLetterReason, String)>,
    releases: Vec<(usize, Duration)>,
    requeues: Vec<(usize, Duration)>,
}

impl<P: DrainPorts> Drain<P> {
    pub(super) async fn settle(
        &self,
        run: &mut Run,
        fates: Vec<Option<Outcome>>,
        coalesced: &Coalesced,
        outcomes: &[Outcome],
    ) -> Result<(), DrainError> {
        // A run that lost its lease writes no state and deletes nothing it tried; it only hands back
        // what it holds (releases, and fresh copies of what it did not try), which no other run can hold.
        let lease_held = self.fence(run).await?;
        if lease_held {
            self.check_time(run, self.settings.settle_margin)?;
            self.record_sync_state(run, coalesced, outcomes).await?;
        }

        let next_run = Duration::from_secs(u64::from(self.settings.interval_seconds));
        let mut actions = Actions::default();
        for (i, fate) in fates.into_iter().enumerate() {
            let mut outcome = fate.unwrap_or(Outcome::Held(next_run));
            if !lease_held && !outcome.was_tried() {
                // Without the lease nothing is deleted; what was not tried goes back as a fresh copy.
                outcome = Outcome::Held(next_run);
            }
            let m = &run.messages[i];
            match action(&outcome, m.attempts(), self.settings.max_attempts, |n| {
                self.backoff(n)
            }) {
                QueueAction::Delete => actions.deletes.push(i),
                QueueAction::DeadLetter { reason, detail } => {
                    actions.dead_letters.push((i, reason, detail))
                }
                QueueAction::Release(d) => actions.releases.push((i, d)),
                QueueAction::Requeue(d) => actions.requeues.push((i, d)),
            }
        }

        if !lease_held {
            actions.deletes.clear();
            actions.dead_letters.clear();
            return self.carry_out(run, actions).await;
        }
        let settled = progress(run, &actions, coalesced, outcomes);
        if !settled.is_empty() {
            self.check_time(run, self.settings.settle_margin)?;
            self.ports.requests().record(&settled).await?;
        }
        self.carry_out(run, actions).await
    }

    /// Delivered fields and no-op timestamps in one batched write; then this run's in-flight note is
    /// resolved down to the records it tried without delivering (the provider may hold those all the same).
    async fn record_sync_state(
        &self,
        run: &Run,
        coalesced: &Coalesced,
        outcomes: &[Outcome],
    ) -> Result<(), DrainError> {
        let mut writes: Vec<SyncWrite> = coalesced
            .touches
            .iter()
            .map(|(email, fields)| SyncWrite {
                email: email.clone(),
                fields: fields.clone(),
                known: run.known.contains(email),
            })
            .collect();
        writes.extend(
            coalesced
                .records
                .iter()
                .zip(outcomes)
                .filter(|(_, o)| **o == Outcome::Delivered)
                .map(|(r, _)| SyncWrite {
                    email: r.email.clone(),
                    fields: r.synced_fields(),
                    known: run.known.contains(&r.email),
                }),
        );
        let sync = self.ports.sync_state();
        if !writes.is_empty() {
            sync.record(&writes).await?;
        }
        if !coalesced.records.is_empty() {
            let open: Vec<(Email, InFlight)> = coalesced
                .records
                .iter()
                .zip(outcomes)
                // Only a call whose answer never came (5xx, timeout, connection) may have been applied
                // anyway; a rejection or a same-subscriber 429 says the provider did not take the record.
                .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
                .map(|(r, _)| r.intent())
                .collect();
            // Best effort: a note left listed guards no less; it only costs later runs a read.
            if self.check_time(run, self.settings.settle_margin).is_ok()
                && let Err(e) = sync.resolve(&run.holder, &open).await
            {
                warn!(error = %e, "could not resolve the run's in-flight note; it stays listed");
            }
        }
        Ok(())
    }

    /// The queue actions, in the order that loses nothing: deletes (the data is recorded), dead letters,
    /// then what is handed back; each on the queue of the lane its message came from.
    async fn carry_out(&self, run: &mut Run, actions: Actions) -> Result<(), DrainError> {
        if !actions.deletes.is_empty() {
            self.check_time(run, self.settings.settle_margin)?;
            let mut failed = 0;
            for (lane, deletes) in by_lane(&run.lanes, &actions.deletes, |&i| i) {
                let receipts: Vec<ReceiptHandle> = deletes
                    .iter()
                    .map(|&i| run.messages[i].receipt.clone())
                    .collect();
                failed += self.queue(lane).delete(&receipts).await?.len();
                // Marked lane by lane: a later lane's error must not hand these back as well.
                run.done.extend(&deletes);
            }
            if failed > 0 {
                // The data is recorded as synced: a redelivery is dropped as a no-op, not resent.
                warn!(
                    count = failed,
                    "some deletes failed; those messages will come back as no-ops"
                );
            }
            run.report.deleted += count(actions.deletes.len() - failed.min(actions.deletes.len()));
        }
        if !actions.dead_letters.is_empty() {
            self.check_time(run, self.settings.settle_margin)?;
            for (lane, letters) in by_lane(&run.lanes, &actions.dead_letters, |l| l.0) {
                let letters: Vec<DeadLetter> = letters
                    .into_iter()
                    .map(|(i, reason, detail)| DeadLetter {
                        message: run.messages[i].clone(),
                        lane,
                        reason,
                        detail,
                    })
                    .collect();
                self.queue(lane).dead_letter(&letters).await?;
                run.report.dead_lettered += count(letters.len());
            }
            run.done
                .extend(actions.dead_letters.iter().map(|(i, _, _)| *i));
        }
        self.hand_back(run, &actions).await
    }

    /// The retries: released for a later delivery (one receive more) or re-queued as fresh copies (none).
    async fn hand_back(&self, run: &mut Run, actions: &Actions) -> Result<(), DrainError> {
        if !actions.releases.is_empty() {
            self.check_time(run, self.settings.settle_margin)?;
            for (lane, releases) in by_lane(&run.lanes, &actions.releases, |r| r.0) {
                let items: Vec<(ReceiptHandle, Duration)> = releases
                    .iter()
                    .map(|&(i, d)| (run.messages[i].receipt.clone(), d))
                    .collect();
                self.queue(lane).release(&items).await?;
                run.report.retried += count(items.len());
                run.done.extend(releases.iter().map(|(i, _)| *i));
            }
        }
        if !actions.requeues.is_empty() {
            self.check_time(run, self.settings.settle_margin)?;
            let mut failed = 0;
            for (lane, requeues) in by_lane(&run.lanes, &actions.requeues, |r| r.0) {
                let items: Vec<(ReceivedMessage, Duration)> = requeues
                    .iter()
                    .map(|&(i, d)| (run.messages[i].clone(), d))
                    .collect();
                failed += self.queue(lane).requeue(&items).await?.len();
                run.report.deferred += count(items.len());
                run.done.extend(requeues.iter().map(|(i, _)| *i));
            }
            if failed > 0 {
                warn!(
                    count = failed,
                    "some held originals could not be deleted; their copies are coalesced"
                );
            }
        }
        Ok(())
    }

    /// The queue of a lane messages were received from.
    fn queue(&self, lane: Priority) -> &P::Queue {
        self.ports.lanes().queue(lane)
    }
}

/// `items` grouped by the lane of the message each one names (`index`), in the order lanes are served.
fn by_lane<T: Clone>(
    lanes: &[Priority],
    items: &[T],
    index: impl Fn(&T) -> usize,
) -> Vec<(Priority, Vec<T>)> {
    Priority::FIRST_SERVED_FIRST
        .into_iter()
        .map(|lane| {
            let mine: Vec<T> = items
                .iter()
                .filter(|item| lanes.get(index(item)).copied().unwrap_or_default() == lane)
                .cloned()
                .collect();
            (lane, mine)
        })
        .filter(|(_, mine)| !mine.is_empty())
        .collect()
}

/// How each change that leaves the queue in this run settled, for its request's progress: a change that
/// supplied a sent value is delivered, one superseded or equal to what the provider had is skipped.
///
/// A single-change request's delivered or skipped change is left out: the sync state written in this run
/// (or before) shows how it settled, and its status is derived from that ([`crate::ports::requests`]).
/// Unless one of its fields was judged against another run's value in flight and is not recorded in this
/// run: the sync item may never reach it (that value's change may yet be dead-lettered), so it is written
/// as any other. Dead letters are always written.
fn progress(
    run: &Run,
    actions: &Actions,
    coalesced: &Coalesced,
    outcomes: &[Outcome],
) -> Vec<(RequestId, ChangeId, Settled)> {
    let delivered: Vec<&PendingRecord> = coalesced
        .records
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| **o == Outcome::Delivered)
        .map(|(r, _)| r)
        .collect();
    let winners: HashSet<ChangeId> = delivered
        .iter()
        .flat_map(|r| r.fields.values().map(|w| w.change_id))
        .collect();
    // Fields this run records in the sync state: delivered ones and touches.
    let recorded: HashSet<(&Email, &FieldKey)> = delivered
        .iter()
        .flat_map(|r| r.fields.keys().map(|k| (&r.email, k)))
        .chain(
            coalesced
                .touches
                .iter()
                .flat_map(|(email, fields)| fields.keys().map(move |k| (email, k))),
        )
        .collect();
    let shown_by_sync_state = |email: &Email, fields: &[FieldKey]| {
        let guarded = run.guarded.get(email);
        fields
            .iter()
            .all(|k| guarded.is_none_or(|g| !g.contains(k)) || recorded.contains(&(email, k)))
    };
    let mut out: Vec<(RequestId, ChangeId, Settled)> = Vec::new();
    for &i in &actions.deletes {
        let Some(m) = run.changes.get(&i) else {
            continue;
        };
        if let Some((email, fields)) = &m.derived
            && shown_by_sync_state(email, fields)
        {
            continue;
        }
        let how = if winners.contains(&m.change_id) {
            Settled::Delivered
        } else {
            Settled::Skipped
        };
        out.push((m.request_id, m.change_id, how));
    }
    for (i, _, _) in &actions.dead_letters {
        if let Some(m) = run.changes.get(i) {
            out.push((m.request_id, m.change_id, Settled::DeadLettered));
        }
    }
    out.sort_by_key(|(r, c, s)| (r.0, c.0, *s as u8));
    out.dedup();
    out
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<P: DrainPorts> Drain<P> {
    /// After an error mid-run: hand back every message not yet settled as a fresh copy, so the error costs
    /// no receive count. Best effort — what fails here comes back after its visibility timeout.
    pub(super) async fn rescue(&self, run: &mut Run) {
        let delay = Duration::from_secs(u64::from(self.settings.interval_seconds));
        let items: Vec<(usize, Duration)> = (0..run.messages.len())
            .filter(|i| !run.done.contains(i))
            .map(|i| (i, delay))
            .collect();
        if items.is_empty() {
            return;
        }
        for (lane, items) in by_lane(&run.lanes, &items, |(i, _)| *i) {
            let items: Vec<(ReceivedMessage, Duration)> = items
                .into_iter()
                .map(|(i, d)| (run.messages[i].clone(), d))
                .collect();
            match self.queue(lane).requeue(&items).await {
                Ok(_) => run.report.deferred += count(items.len()),
                Err(e) => {
                    warn!(error = %e, "could not hand back the run's messages; they return after their visibility timeout")
                }
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
}
