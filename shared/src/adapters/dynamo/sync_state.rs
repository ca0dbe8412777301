//! The sync state: each user's delivered fields in their `user#<email>` item, never moved backwards.
//!
//! **Sync state in batches.** One drain run records every delivered user at once: PartiQL
//! `BatchExecuteStatement`, 25 statements a call, 8 calls in flight, each statement carrying its own
//! per-field condition (`"f.x" IS MISSING OR "f.x".k <= ? OR "f.x".t < ?`, the guard of `item.rs`).
//! PartiQL batch was chosen because it is the only batch write that takes a condition per item at 1 WRU
//! per item: BatchWriteItem takes no conditions, TransactWriteItems costs 2 WRU per item, and single
//! UpdateItems are one round trip each — on LocalStack (2 cores) 1,000 users are recorded in 1.0–1.3 s
//! (insert, update, or all refused), and a drain run of 1,000 messages of 1,000 users fell from 5.4–5.8 s
//! to 1.4–2.2 s (`a_thousand_users_are_recorded_in_one_batched_write`, `a_drain_of_1000_users_is_timed`).
//! `UPDATE` of a missing item fails its condition (it is no upsert) and `INSERT` of an existing one fails
//! as a duplicate, so a user `load` found is updated and another inserted; a statement that fails is
//! resolved by reading its item (unless the failure carried it): missing → insert, present → update only
//! the fields the guard lets through (a newer one is kept).
//!
//! The in-flight notes of the same port are [`super::in_flight`]'s.

use std::collections::{HashMap, VecDeque};

use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoState;
use super::batch::unprocessed_backoff;
use super::item::{Item, field_attribute, parse_fields, precedence_key, user_key};
use super::statements::{FieldPart, StatementResult, split_fields, sync_statement};
use crate::domain::Email;
use crate::ports::{
    InFlight, PortError, PortResult, SyncStateStore, SyncWrite, SyncedField, SyncedFields,
};

/// Rounds of batched statements before `record` gives up (transiently): a split record takes one per
/// part, a failed condition one more for the reread and one for the retry.
const RECORD_ROUNDS: usize = 8;

/// One user's pending sync-state write: the fields still to write, in parts that each fit a statement.
pub(super) struct UserWrite<'a> {
    email: &'a Email,
    parts: VecDeque<FieldPart<'a>>,
    /// What this call has learned about the item (a write succeeded, a read or a duplicate said so);
    /// `None` until then, when the caller's hint picks the verb.
    exists: Option<bool>,
    hint: bool,
}

impl UserWrite<'_> {
    fn insert(&self) -> bool {
        !self.exists.unwrap_or(self.hint)
    }

    /// The item as stored says which fields of the current part may still be written (the guard, in
    /// Rust): keep those, or drop the part when a newer value holds every one of them.
    fn refine(&mut self, item: &Item) {
        self.exists = Some(true);
        if let Some(part) = self.parts.front_mut() {
            part.retain(|(key, field)| may_overwrite(item.get(&field_attribute(key)), field));
            if part.is_empty() {
                self.parts.pop_front();
            }
        }
    }
}

/// The write guard of the module doc, as DynamoDB evaluates it: absent, or no greater precedence, or (an
/// item from before `k`) an earlier millisecond.
pub(super) fn may_overwrite(stored: Option<&AttributeValue>, new: &SyncedField) -> bool {
    let Some(stored) = stored else {
        return true;
    };
    let map = stored.as_m().ok();
    let k = map.and_then(|m| m.get("k")).and_then(|k| k.as_s().ok());
    let t = map
        .and_then(|m| m.get("t"))
        .and_then(|t| t.as_n().ok())
        .and_then(|t| t.parse::<i64>().ok());
    k.is_some_and(|k| k.as_bytes() <= precedence_key(&new.precedence).as_bytes())
        || t.is_some_and(|t| t < new.precedence.occurred_at.timestamp_millis())
}

impl DynamoState {
    /// One round of `record`: a statement for the next part of each `active` user, then what the answers
    /// say (written, refine by the item returned or read back, or retry). True when some statement is to
    /// be retried after a pause.
    async fn record_round(
        &self,
        pending: &mut [UserWrite<'_>],
        active: &[usize],
    ) -> PortResult<bool> {
        let statements = active
            .iter()
            .map(|&i| {
                let u = &pending[i];
                sync_statement(&self.table, u.email, &u.parts[0], u.insert())
            })
            .collect();
        let results = self.execute_statements(statements).await?;
        let mut reread = Vec::new();
        let mut retry = false;
        for (&i, result) in active.iter().zip(results) {
            let u = &mut pending[i];
            match result {
                StatementResult::Written => {
                    u.exists = Some(true);
                    u.parts.pop_front();
                }
                StatementResult::ConditionFailed(Some(item)) => u.refine(&item),
                // A missing item (UPDATE is no upsert) or a newer field: the item says which.
                StatementResult::ConditionFailed(None) | StatementResult::Duplicate => {
                    reread.push(i)
                }
                StatementResult::Retry => retry = true,
            }
        }
        if !reread.is_empty() {
            let keys = reread.iter().map(|&i| user_key(pending[i].email)).collect();
            let items = self.read_items(keys, 100, "reading sync state").await?;
            for i in reread {
                let u = &mut pending[i];
                match items.get(&user_key(u.email)) {
                    Some(item) => u.refine(item),
                    None => u.exists = Some(false),
                }
            }
        }
        Ok(retry)
    }
}

impl SyncStateStore for DynamoState {
    async fn in_flight(&self, emails: &[Email]) -> PortResult<HashMap<Email, InFlight>> {
        self.read_in_flight(emails).await
    }

    async fn intend(&self, holder: &str, intents: &[(Email, InFlight)]) -> PortResult<()> {
        self.write_intents(holder, intents).await
    }

    async fn resolve(&self, holder: &str, open: &[(Email, InFlight)]) -> PortResult<()> {
        self.resolve_note(holder, open).await
    }

    /// Every user's item, in BatchGetItems of 100 keys, 8 in flight.
    async fn load(&self, emails: &[Email]) -> PortResult<HashMap<Email, SyncedFields>> {
        let by_key: HashMap<String, &Email> = emails.iter().map(|e| (user_key(e), e)).collect();
        let keys: Vec<String> = by_key.keys().cloned().collect();
        let items = self.read_items(keys, 100, "reading sync state").await?;
        Ok(items
            .iter()
            .filter_map(|(k, item)| Some(((*by_key.get(k)?).clone(), parse_fields(item))))
            .collect())
    }

    async fn record(&self, users: &[SyncWrite]) -> PortResult<()> {
        let mut pending: Vec<UserWrite> = users
            .iter()
            .map(|u| UserWrite {
                email: &u.email,
                parts: split_fields(&self.table, &u.fields),
                exists: None,
                hint: u.known,
            })
            .collect();
        for round in 0.. {
            // One statement per user per round: a batch may not name one item twice.
            let active: Vec<usize> = (0..pending.len())
                .filter(|&i| !pending[i].parts.is_empty())
                .collect();
            if active.is_empty() {
                return Ok(());
            }
            if round >= RECORD_ROUNDS + pending.iter().map(|u| u.parts.len()).max().unwrap_or(0) {
                return Err(PortError::transient(
                    "recording sync state",
                    anyhow::anyhow!(
                        "{} users still unwritten after {round} rounds",
                        active.len()
                    ),
                ));
            }
            if self.record_round(&mut pending, &active).await? {
                unprocessed_backoff(round as u32 + 1, "recording sync state").await?;
            }
        }
        Ok(())
    }
}
