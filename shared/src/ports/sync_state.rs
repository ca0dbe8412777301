//! Per-user sync state: what the provider holds, per field, as far as Sluice delivered it, and the
//! in-flight notes a run writes before its provider call (DynamoDB in AWS: [`crate::adapters::dynamo`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use serde::{Deserialize, Serialize};

use super::PortResult;
use crate::domain::{Email, FieldKey, Precedence};

/// The last value delivered for one field of one user, and the precedence of the change that set it (the
/// whole "latest wins" key, at full precision, so a tie is settled the same way across runs as within one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedField {
    pub value: String,
    pub precedence: Precedence,
}

/// What the provider holds for one user, as far as Sluice has delivered it.
pub type SyncedFields = BTreeMap<FieldKey, SyncedField>;

/// One user's delivered fields (or no-op timestamps) to record, and whether [`SyncStateStore::load`] found
/// state for the user: a hint that lets the DynamoDB adapter insert or update at once. A wrong hint costs a
/// retry, never a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncWrite {
    pub email: Email,
    pub fields: SyncedFields,
    pub known: bool,
}

/// Per-user sync state: what was last delivered, per field.
pub trait SyncStateStore: Send + Sync {
    /// State for these users (missing users have none).
    fn load(
        &self,
        emails: &[Email],
    ) -> impl Future<Output = PortResult<HashMap<Email, SyncedFields>>> + Send;
    /// Records delivered fields of many users at once; a field is never moved backwards in time (a newer
    /// recorded value wins; an equal precedence — the same change recorded again — may write again).
    fn record(&self, users: &[SyncWrite]) -> impl Future<Output = PortResult<()>> + Send;
    /// Fields some run was about to send, by precedence ([`InFlight`]), for these users: what every note
    /// still listed says about them (the newest precedence per field).
    fn in_flight(
        &self,
        emails: &[Email],
    ) -> impl Future<Output = PortResult<HashMap<Email, InFlight>>> + Send;
    /// Durably notes, under this run's `holder`, the fields it may send. One note per run: a later run
    /// reads every note still listed, so a run need not carry earlier runs' entries into its own.
    fn intend(
        &self,
        holder: &str,
        intents: &[(Email, InFlight)],
    ) -> impl Future<Output = PortResult<()>> + Send;
    /// This run's sync state is recorded: its note needs to guard only `open` — the fields of records it
    /// tried without delivering, which the provider may hold all the same. Empty: the note is unlisted.
    /// Not called by a run that failed or lost its lease before recording: its whole note stays listed
    /// (up to a day, as the note's lifetime says).
    fn resolve(
        &self,
        holder: &str,
        open: &[(Email, InFlight)],
    ) -> impl Future<Output = PortResult<()>> + Send;
}

/// The precedence of each field a run is about to send, written *before* the provider call. A run that
/// dies (or loses its lease) after its call but before recording the sync state leaves this behind, so a
/// later run never sends an older change of that field over a value the provider may already hold: the
/// newer change is still on the queue and is sent again instead. Notes live a day: far longer than any
/// message of the change can stay unsettled (visibility timeout, backoff); by then the sync state guards.
pub type InFlight = BTreeMap<FieldKey, Precedence>;
