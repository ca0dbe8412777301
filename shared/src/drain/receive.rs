//! Planning and receiving: read both quota counters and the queue depth, plan the run with
//! [`super::policy::plan`] *before* receiving, then receive by distinct users what the plan can send.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::policy::{self, KindQuota, Plan, RunState};
use super::{Drain, DrainError, Idle, Run, chrono_duration, window_guard};
use crate::domain::{Change, ChangeMessage, Email};
use crate::ports::{ChangeQueue, DrainPorts, QuotaKind, QuotaLedger, ReceivedMessage};

impl<P: DrainPorts> Drain<P> {
    /// Reads quota and depth and plans the run; `None` when the run has nothing to do (reported idle).
    pub(super) async fn plan(&self, run: &mut Run) -> Result<Option<Plan>, DrainError> {
        let now = self.now();
        let window = run.window;
        let ledger = self.ports.ledger();
        let (used_batch, used_individual, backlog) = futures::try_join!(
            ledger.used(QuotaKind::Batch, window),
            ledger.used(QuotaKind::Individual, window),
            self.ports.queue().backlog(),
        )?;
        let limits = &self.settings.limits;
        run.ledger_used.note(QuotaKind::Batch, used_batch);
        run.ledger_used.note(QuotaKind::Individual, used_individual);
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

    /// Receives what the plan can send, by distinct users rather than by message count: copies of one user
    /// coalesce into one record, so while the distinct users received stay below the plan's record
    /// capacity it tops up with at most the missing number of records — every message received can still
    /// be sent this run, whatever users it holds. It stops when the plan's records are covered, the queue
    /// is drained, `DRAIN_MAX_MESSAGES` (a safety cap) is reached, or receiving has used its share of the
    /// run: half the time left before sending must start (see [`Self::receive_by`]).
    pub(super) async fn receive(
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
    pub(super) fn receive_by(&self, deadline: DateTime<Utc>) -> DateTime<Utc> {
        let now = self.now();
        let send_from = deadline - chrono_duration(self.settings.send_margin);
        now + (send_from - now) / 2
    }
}

/// What a run received, each body decoded once as it arrives, and the distinct users among them
/// (malformed bodies count as one each: they cost nothing to send, but nothing says they don't hold a user).
#[derive(Default)]
pub(super) struct Received {
    pub(super) messages: Vec<ReceivedMessage>,
    /// The change of each message, by index, or why its body cannot be decoded.
    pub(super) bodies: Vec<Result<Change, String>>,
    emails: HashSet<Email>,
    malformed: u64,
}

impl Received {
    pub(super) fn add(&mut self, messages: Vec<ReceivedMessage>) {
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

    pub(super) fn distinct(&self) -> u64 {
        self.emails.len() as u64 + self.malformed
    }
}
