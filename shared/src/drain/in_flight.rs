//! The in-flight guard: a run notes the precedence of every field it may send before its first provider
//! call, and a later run folds other runs' notes into its synced view, so a run that died between its call
//! and its sync-state write never lets an older change overwrite what the provider may hold.

use std::collections::{BTreeSet, HashMap};

use super::coalesce;
use super::{Drain, DrainError, Run};
use crate::domain::Email;
use crate::domain::FieldKey;
use crate::ports::{DrainPorts, InFlight, SyncStateStore, SyncedFields};

impl<P: DrainPorts> Drain<P> {
    /// Writes, before any provider call, the precedence of every field this run may send, as this run's
    /// note (earlier runs' notes stay listed on their own until resolved or a day old). `false` when the
    /// lease is lost: the run sends nothing.
    pub(super) async fn note_in_flight(
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
}

/// Folds in-flight fields into the synced view for the stale check: a field some run was about to send at
/// precedence `p` (and never recorded as delivered) stands as synced *just before* `p`, with a value no
/// change can equal. So a change older than `p` is stale — the provider may hold the newer value, whose
/// change is still queued — while the change of precedence `p` itself (or a newer one) is sent.
/// Returns the fields it raised.
pub(super) fn guard_in_flight(
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
