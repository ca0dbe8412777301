//! Gathering: receive what the plan can send ([`Drain::receive`]), decode it, and coalesce it against the
//! sync state — topped up while users who need nothing sent leave the plan's room unfilled.
//!
//! Why the top-up: room is counted by distinct users as messages arrive, but a user whose messages are all
//! stale (a newer value of theirs was delivered from another lane) or unchanged has no record to send. Left
//! as it is, such a run sends less than its plan while the lanes hold more. So after coalescing, the users
//! without a record stop counting as room used, and the run receives the missing number of records again —
//! never more than the plan's records can carry (quota before receive), within receiving's share of the
//! run, `DRAIN_MAX_MESSAGES` and the lanes' depth.

use std::collections::{HashMap, HashSet};

use super::coalesce::{Coalesced, Decoded, coalesce};
use super::in_flight::guard_in_flight;
use super::policy::Plan;
use super::receive::{LaneDepths, Received, Room};
use super::{Drain, DrainError, MessageChange, Outcome, Run};
use crate::domain::{Change, Email};
use crate::ports::{DrainPorts, SyncStateStore, SyncedFields};

/// What a run gathered to send: a fate for every message already settled (malformed, absorbed), and the
/// records coalesced from all the others.
pub(super) struct Gathered {
    pub(super) fates: Vec<Option<Outcome>>,
    pub(super) coalesced: Coalesced,
}

/// The decoded messages of a run so far, and the synced view of their users.
#[derive(Default)]
struct Decodings {
    fates: Vec<Option<Outcome>>,
    decoded: Vec<Decoded>,
    /// Sync state (with other runs' in-flight fields folded in) of every user loaded so far.
    synced: HashMap<Email, SyncedFields>,
    loaded: HashSet<Email>,
}

impl<P: DrainPorts> Drain<P> {
    /// Receives, decodes and coalesces the run's messages, topping the receive up while users without a
    /// record leave the plan's records short. Fills `run`'s messages, lanes and changes.
    pub(super) async fn gather(
        &self,
        run: &mut Run,
        plan: Plan,
        depths: &LaneDepths,
    ) -> Result<Gathered, DrainError> {
        let room = Room {
            capacity: plan.records(self.settings.limits.batch_size),
            max: u64::from(self.settings.max_messages),
            receive_by: self.receive_by(run.deadline),
        };
        let mut received = Received::default();
        let mut so_far = Decodings::default();
        let coalesced = loop {
            let got = self.receive(run, &mut received, &room, depths).await?;
            let emails = so_far.decode(run, received.take_bodies());
            self.check_time(run, self.settings.settle_margin)?;
            self.load_synced(run, &mut so_far, emails).await?;
            let coalesced = coalesce(&so_far.decoded, &so_far.synced);
            received.note_records(&coalesced.records);
            let more = got > 0 && room.left(&received) > 0 && self.now() < room.receive_by;
            if !more {
                break coalesced;
            }
        };
        for (&lane, figures) in &received.per_lane() {
            run.report.lanes.entry(lane).or_default().received = *figures;
        }
        run.messages = received.messages;
        run.lanes = received.lanes;
        run.report.received = u32::try_from(run.messages.len()).unwrap_or(u32::MAX);
        Ok(Gathered {
            fates: so_far.fates,
            coalesced,
        })
    }

    /// Loads the sync state and other runs' in-flight fields of the users not loaded yet.
    async fn load_synced(
        &self,
        run: &mut Run,
        so_far: &mut Decodings,
        emails: Vec<Email>,
    ) -> Result<(), DrainError> {
        let emails: Vec<Email> = emails
            .into_iter()
            .filter(|e| so_far.loaded.insert(e.clone()))
            .collect();
        if emails.is_empty() {
            return Ok(());
        }
        let sync = self.ports.sync_state();
        let (mut synced, in_flight) =
            futures::try_join!(sync.load(&emails), sync.in_flight(&emails))?;
        run.known.extend(synced.keys().cloned());
        run.guarded.extend(guard_in_flight(&mut synced, &in_flight));
        so_far.synced.extend(synced);
        Ok(())
    }
}

impl Decodings {
    /// Takes in newly received bodies (the messages after those decoded so far): a malformed one gets its
    /// fate at once (straight to the DLQ). Returns their emails, sorted and distinct.
    fn decode(&mut self, run: &mut Run, bodies: Vec<Result<Change, String>>) -> Vec<Email> {
        let first = self.fates.len();
        let mut emails = Vec::with_capacity(bodies.len());
        for (offset, body) in bodies.into_iter().enumerate() {
            let index = first + offset;
            match body {
                Ok(change) => {
                    run.changes.insert(index, MessageChange::of(&change));
                    emails.push(change.email.clone());
                    self.decoded.push(Decoded { index, change });
                    self.fates.push(None);
                }
                Err(e) => self.fates.push(Some(Outcome::Malformed(e))),
            }
        }
        emails.sort();
        emails.dedup();
        emails
    }
}
