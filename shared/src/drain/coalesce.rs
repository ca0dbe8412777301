//! Coalescing: many queued changes become at most one provider record per email, carrying only the
//! fields that are newer than, and different from, what was last delivered.
//!
//! Rules (DESIGN.md, "Latest wins, no-ops dropped"):
//! - per email and field, the change with the greatest [`Precedence`] wins: the newest `occurred_at` (to
//!   the nanosecond), on a tie the later `accepted_at` (a later request), then the later `position` in its
//!   request; the change id only orders copies of one change or timestamps equal to the nanosecond across
//!   requests, so every drain picks the same winner;
//! - copies of one change (SQS at-least-once delivery) collapse: they settle together with the original;
//! - a winner equal to the last synced value is a no-op; a winner whose precedence is not above the last
//!   synced field's is stale (the same order as above, so a tie split across runs ends as it would in one).
//!   Neither is sent. A no-op that is newer than the synced timestamp is still *recorded* (`touch`),
//!   so an older change arriving later cannot slip in between and overwrite the provider with stale data.
//! - a message none of whose fields is sent or pending is *absorbed*: it can be deleted once the touches
//!   are recorded. Every other message (winner or superseded) settles with its email's record, so nothing
//!   is deleted before the data that replaces it has been delivered.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::domain::{Change, ChangeId, Email, FieldKey, Precedence, Priority, Subscriber};
use crate::ports::{InFlight, SyncedField, SyncedFields};

/// One decoded message, by its index in the run's message list.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub index: usize,
    pub change: Change,
}

/// The winning value of one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Winner {
    pub value: String,
    pub precedence: Precedence,
    pub change_id: ChangeId,
}

impl Winner {
    fn beats(&self, other: &Winner) -> bool {
        (self.precedence, self.change_id) > (other.precedence, other.change_id)
    }
}

/// What one email needs: the fields to send, the messages that settle with it.
#[derive(Debug, Clone)]
pub struct PendingRecord {
    pub email: Email,
    pub priority: Priority,
    /// Earliest acceptance among contributors: older work goes first.
    pub oldest_accepted: DateTime<Utc>,
    pub fields: BTreeMap<FieldKey, Winner>,
    /// Indexes of every message that settles with this record.
    pub messages: Vec<usize>,
}

impl PendingRecord {
    pub fn subscriber(&self) -> Subscriber {
        let mut s = Subscriber::new(&self.email);
        for (k, w) in &self.fields {
            s.set(k, w.value.clone());
        }
        s
    }

    pub fn synced_fields(&self) -> SyncedFields {
        self.fields
            .iter()
            .map(|(k, w)| {
                (
                    k.clone(),
                    SyncedField {
                        value: w.value.clone(),
                        precedence: w.precedence,
                    },
                )
            })
            .collect()
    }

    /// What this record may send, by precedence: its line in the run's in-flight note.
    pub fn intent(&self) -> (Email, InFlight) {
        let fields = self
            .fields
            .iter()
            .map(|(k, w)| (k.clone(), w.precedence))
            .collect();
        (self.email.clone(), fields)
    }
}

/// The result of coalescing one run's messages.
#[derive(Debug, Default)]
pub struct Coalesced {
    /// Records to send, highest priority and oldest first.
    pub records: Vec<PendingRecord>,
    /// Messages that need nothing sent: delete them after `touches` are recorded.
    pub absorbed: Vec<usize>,
    /// No-op fields newer than the synced timestamp: record them so the timestamp moves forward.
    pub touches: Vec<(Email, SyncedFields)>,
    /// Messages merged into another message's record (received − records − absorbed-only emails).
    pub merged_messages: u32,
    /// Winning fields dropped because they equal the last synced value.
    pub skipped_unchanged: u32,
    /// Winning fields dropped because the synced field is as new or newer.
    pub skipped_stale: u32,
}

/// Merges decoded changes per email against the last synced state.
pub fn coalesce(decoded: &[Decoded], synced: &HashMap<Email, SyncedFields>) -> Coalesced {
    // Group by email, keeping first-seen order stable.
    let mut by_email: BTreeMap<&Email, Vec<&Decoded>> = BTreeMap::new();
    for d in decoded {
        by_email.entry(&d.change.email).or_default().push(d);
    }

    let mut out = Coalesced::default();
    for (email, group) in by_email {
        let (send, touch) = against_synced(winners(&group), synced.get(email), &mut out);
        if !touch.is_empty() {
            out.touches.push((email.clone(), touch));
        }
        let indexes: Vec<usize> = group.iter().map(|d| d.index).collect();
        if send.is_empty() {
            out.absorbed.extend(indexes);
            continue;
        }
        out.merged_messages += u32::try_from(indexes.len().saturating_sub(1)).unwrap_or(u32::MAX);
        out.records.push(PendingRecord {
            email: email.clone(),
            priority: group
                .iter()
                .map(|d| d.change.priority)
                .max()
                .unwrap_or_default(),
            oldest_accepted: group
                .iter()
                .map(|d| d.change.accepted_at)
                .min()
                .unwrap_or_else(Utc::now),
            fields: send,
            messages: indexes,
        });
    }
    out.records.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.oldest_accepted.cmp(&b.oldest_accepted))
    });
    out
}

/// The latest value of each field among one user's changes.
fn winners(group: &[&Decoded]) -> BTreeMap<FieldKey, Winner> {
    let mut winners: BTreeMap<FieldKey, Winner> = BTreeMap::new();
    for d in group {
        for (key, value) in d.change.fields() {
            let candidate = Winner {
                value,
                precedence: d.change.precedence(),
                change_id: d.change.change_id,
            };
            match winners.get(&key) {
                Some(current) if !candidate.beats(current) => {}
                _ => {
                    winners.insert(key, candidate);
                }
            }
        }
    }
    winners
}

/// Splits one user's winning fields against what was last synced: the fields to send, and the unchanged
/// ones to touch (their timestamp moves forward); stale and unchanged fields are counted in `out`.
fn against_synced(
    winners: BTreeMap<FieldKey, Winner>,
    last: Option<&SyncedFields>,
    out: &mut Coalesced,
) -> (BTreeMap<FieldKey, Winner>, SyncedFields) {
    let mut send = BTreeMap::new();
    let mut touch = SyncedFields::new();
    for (key, w) in winners {
        match last.and_then(|fields| fields.get(&key)) {
            Some(s) if s.precedence >= w.precedence => out.skipped_stale += 1,
            Some(s) if s.value == w.value => {
                out.skipped_unchanged += 1;
                touch.insert(
                    key,
                    SyncedField {
                        value: w.value,
                        precedence: w.precedence,
                    },
                );
            }
            _ => {
                send.insert(key, w);
            }
        }
    }
    (send, touch)
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
