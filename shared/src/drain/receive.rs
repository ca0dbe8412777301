//! Planning and receiving: read both quota counters and every lane's depth, plan the run with
//! [`super::policy::plan`] *before* receiving, then receive by distinct users what the plan can send —
//! lane by lane, high first, then normal, then bulk with what the others leave.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::coalesce::PendingRecord;
use super::policy::{self, KindQuota, Plan, RunState};
use super::{Drain, DrainError, Idle, Run, chrono_duration, window_closing};
use crate::domain::{Change, ChangeMessage, Email, Priority};
use crate::ports::{ChangeQueue, DrainPorts, QuotaKind, QuotaLedger, ReceivedMessage};

/// Each lane's visible messages when the run planned (approximate), in the order lanes are served.
pub(super) type LaneDepths = Vec<(Priority, u64)>;

impl<P: DrainPorts> Drain<P> {
    /// Reads quota and depth and plans the run; `None` when the run has nothing to do (reported idle).
    /// The plan is for the run's whole quota over every lane's backlog; [`Self::receive`] shares it out.
    pub(super) async fn plan(
        &self,
        run: &mut Run,
    ) -> Result<Option<(Plan, LaneDepths)>, DrainError> {
        let now = self.now();
        let window = run.window;
        let ledger = self.ports.ledger();
        let depths = futures::future::try_join_all(self.ports.lanes().served().map(
            |(lane, q)| async move { Ok::<_, DrainError>((lane, q.backlog().await?.visible)) },
        ));
        let (batch_usage, individual_usage, depths) = futures::try_join!(
            async { Ok::<_, DrainError>(ledger.usage(QuotaKind::Batch, window).await?) },
            async { Ok(ledger.usage(QuotaKind::Individual, window).await?) },
            depths,
        )?;
        let backlog: u64 = depths.iter().map(|(_, v)| v).sum();
        for &(lane, visible) in &depths {
            run.report.lanes.entry(lane).or_default().backlog = visible;
        }
        let limits = &self.settings.limits;
        run.ledger_used.note(QuotaKind::Batch, batch_usage.used);
        run.ledger_used
            .note(QuotaKind::Individual, individual_usage.used);
        let batch = KindQuota::new(limits.batch_per_window, batch_usage);
        let individual = KindQuota::new(limits.individual_per_window, individual_usage);
        run.report.backlog = backlog;
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
                backlog,
            },
        );
        run.report.planned_receive = plan.receive;
        let margin = chrono_duration(self.settings.send_margin);
        if now + margin >= run.deadline || window_closing(window, now) {
            run.report.idle = Some(Idle::NoTimeToSend);
            return Ok(None);
        }
        if plan.receive == 0 {
            run.report.idle = Some(Idle::NoQuota);
            return Ok(None);
        }
        Ok(Some((plan, depths)))
    }

    /// Receives what the plan can send, lane by lane in serving order, each lane with the room the lanes
    /// before it left: `high` first, then `normal`, then `bulk`. Every ask is for at most the room left,
    /// so the whole run receives no more than the plan can send, whatever the lanes hold (quota before
    /// receive stays exact per lane). A lane whose depth reads 0 is not asked, but for `normal`, which is
    /// asked last (SQS's counts are approximate and may lag a fresh send; an empty queue answers an ask
    /// without raising any count): a `high` change so fresh that its queue's count missed it waits for
    /// the next run.
    ///
    /// Room is counted by distinct users rather than by messages: copies of one user coalesce into one
    /// record, so while the distinct users received stay below the plan's record capacity a lane is topped
    /// up with at most the missing number of records. Receiving stops when the plan's records are covered,
    /// every lane is drained, `DRAIN_MAX_MESSAGES` (a safety cap) is reached, or receiving has used its
    /// share of the run: half the time left before sending must start (see [`Self::receive_by`]).
    ///
    /// Called again to top up (see `gather.rs`), it asks only lanes that may hold more: not drained by a
    /// short answer, and not yet received from as deep as they read. Returns the messages it received.
    pub(super) async fn receive(
        &self,
        run: &mut Run,
        received: &mut Received,
        room: &Room,
        depths: &LaneDepths,
    ) -> Result<u64, DrainError> {
        // Lanes that read empty are skipped, but normal's, which is asked last: an ask of an empty SQS
        // queue long-polls for a second, and one such ask per run is what a single queue cost.
        let mut order: LaneDepths = depths
            .iter()
            .map(|&(lane, visible)| (lane, visible.saturating_sub(received.count_from(lane))))
            .filter(|&(lane, left)| {
                (left > 0 || lane == Priority::Normal) && !received.drained.contains(&lane)
            })
            .collect();
        order.sort_by_key(|&(_, left)| left == 0); // stable: serving order otherwise
        let before = received.messages.len() as u64;
        for (lane, left) in order {
            if !self.receive_lane(run, received, room, lane, left).await? {
                break;
            }
        }
        Ok(received.messages.len() as u64 - before)
    }

    /// Receives from one lane until it is drained (as far as its approximate depth tells) or the run's
    /// room is used; `false` when receiving must stop altogether (no room, no time, or the lease lost).
    async fn receive_lane(
        &self,
        run: &mut Run,
        received: &mut Received,
        room: &Room,
        lane: Priority,
        visible: u64,
    ) -> Result<bool, DrainError> {
        let queue = self.ports.lanes().queue(lane);
        let from = received.messages.len() as u64;
        loop {
            let left = room.left(received);
            if left == 0 {
                return Ok(false);
            }
            // The run's first ask always goes out; later ones only within receiving's share of the run.
            if !received.asked.is_empty() {
                if self.now() >= room.receive_by {
                    return Ok(false);
                }
                // A long receive keeps the lease: it must still hold when the sends start.
                let since = self.now() - run.lease_renewed;
                if since >= chrono_duration(self.settings.lease_length / 2)
                    && !self.fence(run).await?
                {
                    return Ok(false);
                }
            }
            let got = queue.receive(left as u32).await?;
            let short = (got.len() as u64) < left;
            received.add(lane, left, got);
            if short {
                received.drained.insert(lane);
                return Ok(true);
            }
            if received.messages.len() as u64 - from >= visible {
                return Ok(true);
            }
        }
    }

    /// Until when a run may keep topping up its receive: half the time left before the send margin, so
    /// receiving never crowds out the sends and settling it prepares.
    pub(super) fn receive_by(&self, deadline: DateTime<Utc>) -> DateTime<Utc> {
        let now = self.now();
        let send_from = deadline - chrono_duration(self.settings.send_margin);
        now + (send_from - now) / 2
    }
}

/// How much a run may still receive: the plan's records, the safety cap, and the time receiving may use.
pub(super) struct Room {
    pub(super) capacity: u64,
    pub(super) max: u64,
    pub(super) receive_by: DateTime<Utc>,
}

impl Room {
    pub(super) fn left(&self, received: &Received) -> u64 {
        self.capacity
            .saturating_sub(received.filling())
            .min(self.max.saturating_sub(received.messages.len() as u64))
    }
}

/// What a run received, each body decoded once as it arrives, the lane each message came from, and the
/// distinct users among them (malformed bodies count as one each: they cost nothing to send, but nothing
/// says they don't hold a user). Once coalesced, users without a record to send no longer fill the room.
#[derive(Default)]
pub(super) struct Received {
    pub(super) messages: Vec<ReceivedMessage>,
    /// The lane of each message, by index: where settling acts on it.
    pub(super) lanes: Vec<Priority>,
    /// The change of each message, by index, or why its body cannot be decoded.
    pub(super) bodies: Vec<Result<Change, String>>,
    /// Every ask made, by lane: how many messages it asked for.
    asked: Vec<(Priority, u64)>,
    /// Lanes whose last ask came back short: nothing more to receive there in this run.
    drained: HashSet<Priority>,
    emails: HashSet<Email>,
    malformed: u64,
    /// Users received who need nothing sent, as of the last coalescing ([`Self::note_records`]) and not
    /// received again since (a newer message may give them a record: they fill room again until the next
    /// coalescing says otherwise).
    without_record: HashSet<Email>,
}

impl Received {
    pub(super) fn add(&mut self, lane: Priority, asked: u64, messages: Vec<ReceivedMessage>) {
        self.asked.push((lane, asked));
        for m in &messages {
            let body = ChangeMessage::from_body(&m.body)
                .map(ChangeMessage::into_change)
                .map_err(|e| format!("cannot decode change message: {e}"));
            match &body {
                Ok(change) => {
                    self.without_record.remove(&change.email);
                    self.emails.insert(change.email.clone());
                }
                Err(_) => self.malformed += 1,
            }
            self.bodies.push(body);
            self.lanes.push(lane);
        }
        self.messages.extend(messages);
    }

    /// Room the run's messages fill: distinct users (and malformed bodies), less the users who turned out
    /// to need nothing sent.
    fn filling(&self) -> u64 {
        (self.emails.len() as u64 + self.malformed).saturating_sub(self.without_record.len() as u64)
    }

    /// After coalescing everything received so far into `records` (one per user at most): the users
    /// without one stop filling room.
    pub(super) fn note_records(&mut self, records: &[PendingRecord]) {
        let sendable: HashSet<&Email> = records.iter().map(|r| &r.email).collect();
        self.without_record = self
            .emails
            .iter()
            .filter(|e| !sendable.contains(e))
            .cloned()
            .collect();
    }

    /// The bodies received since the last call, by message order.
    pub(super) fn take_bodies(&mut self) -> Vec<Result<Change, String>> {
        std::mem::take(&mut self.bodies)
    }

    fn count_from(&self, lane: Priority) -> u64 {
        self.lanes.iter().filter(|&&l| l == lane).count() as u64
    }

    /// Messages received per lane.
    pub(super) fn per_lane(&self) -> std::collections::BTreeMap<Priority, u32> {
        let mut out = std::collections::BTreeMap::new();
        for &lane in &self.lanes {
            *out.entry(lane).or_insert(0u32) += 1;
        }
        out
    }
}
