//! Request tracking (`GET /v1/requests/{id}`): the records ingest creates and the drain updates, and why a
//! single-change request costs one write (DynamoDB in AWS: [`crate::adapters::dynamo`] for the drain's
//! side, [`crate::adapters::dynamo_ingest`] for ingest's).
//!
//! # What is written when
//! - **A multi-change request** (2..1,000 changes): ingest writes `request#<id>` with `accepted`; the drain
//!   ADDs each settled change id to `delivered_ids`, `skipped_ids` or `dead_lettered_ids`, once per request
//!   per run. The sets make each change count once however often it settles (a redelivery, a copy), and the
//!   write is shared by every change of the request that settled in the run.
//! - **A single-change request** (most traffic: one change per POST): ingest writes the same item, and in it
//!   the change itself — `email`, `field_keys` (the storage keys of the fields it sets) and `precedence`
//!   (the sync state's encoding). The drain writes nothing to it for a delivered or skipped change; only a
//!   dead letter (rare) is still ADDed to `dead_lettered_ids`, and so is the rare settlement the sync state
//!   cannot show (below). Its status is **derived** when read, from the user's sync item, which the drain
//!   writes anyway: that halves the request-tracking writes of a single-change POST (2 WRU → 1).
//!
//! # Deriving a single change's status ([`single_change_counters`])
//! The drain records every field it delivers, and every unchanged field it drops ("touches"), with the
//! precedence of the change that set it, before it deletes that change's message; the record never moves
//! backwards. So, with `s(f)` the synced precedence of field `f` and `p` the change's:
//! 1. every `s(f) == p`: **delivered** — the provider holds every value of this change (sent, or equal
//!    already). This wins over a dead letter, as in the sets ("delivered before dead-lettered"): the
//!    change was delivered after all — redriven from the DLQ, or a duplicate of its message went to the
//!    DLQ with another change's rejected record.
//! 2. else, whatever the drain recorded in the sets (a dead letter; or a settlement below);
//! 3. else every `s(f) >= p`: **delivered** if some `s(f) == p` (the provider holds that value), else
//!    **skipped** (superseded by newer changes);
//! 4. else **pending**.
//!
//! Why the guarantees hold:
//! - *Counted once*: the status is a function of stored state, not a sum of writes; a change redelivered and
//!   settled again changes nothing.
//! - *Pending reaches 0*: a change leaves the queue only delivered (its fields recorded at `≥ p`), absorbed
//!   as unchanged (touched at `p`) or as stale against the sync item (`≥ p` already), or dead-lettered
//!   (recorded in the set). The one other way out is a change found stale against a field another run was
//!   about to send (the drain's in-flight guard) and never recorded as delivered: the sync item may never
//!   reach `p` (that other change may be dead-lettered), so for those the drain writes the set as it does
//!   for a multi-change request (rule 2).
//! - *No early claim*: the sync item reaches `p` for all fields only once the values are at the provider or
//!   superseded there; the message may still be deleted a moment later, as the sets were also written
//!   before the delete.
//!
//! # Differences from multi-change tracking (documented in the README)
//! - An unchanged single change reads as **delivered** (the provider holds its value); the sets count it as
//!   skipped. Likewise a change whose message went to the DLQ only with another change of the same user's
//!   record, while all of its own values were equal already.
//! - A change already stale when accepted (an older `occurred_at` than what was synced) reads as skipped
//!   at once, before the drain has dropped it; and one superseded before the drain reached it reads as
//!   skipped while its message waits. Both are what the drain will do.
//! - A field recorded before the sync state kept full precision reads as the latest its millisecond could
//!   hold (as the drain reads it), so a change in that millisecond reads as skipped rather than delivered.

use std::collections::BTreeSet;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{PortResult, SyncedFields};
use crate::domain::{Change, ChangeId, Email, FieldKey, Precedence, RequestId};

/// How one change settled, for its request's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// It supplied a value the provider now has.
    Delivered,
    /// Superseded by a newer change, or equal to what the provider already had.
    Skipped,
    /// In the DLQ.
    DeadLettered,
}

/// Progress of one ingest request, as `GET /v1/requests/{id}` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestProgress {
    pub delivered: u32,
    pub skipped: u32,
    pub dead_lettered: u32,
}

/// Per-request progress, updated by the drain once per run. Recording is idempotent per change: a change
/// received again (a redelivery, a copy) and settled again is counted once. A single-change request's
/// delivered or skipped change is not recorded (its status is derived from the sync state,
/// [`single_change_counters`]); its dead letter is.
pub trait RequestTracker: Send + Sync {
    fn record(
        &self,
        settled: &[(RequestId, ChangeId, Settled)],
    ) -> impl Future<Output = PortResult<()>> + Send;
}

/// A request's counters: `accepted` written by ingest, the rest added by the drain (multi-change requests)
/// or derived from the sync state (single-change requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounters {
    pub accepted: u32,
    pub delivered: u32,
    pub skipped: u32,
    pub dead_lettered: u32,
}

/// `GET /v1/requests/{request_id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStatus {
    pub request_id: RequestId,
    pub accepted: u32,
    pub delivered: u32,
    pub skipped: u32,
    pub dead_lettered: u32,
    /// Accepted changes not yet delivered, skipped or dead-lettered (never negative: duplicate deliveries
    /// can make the drain count a change twice).
    pub pending: u32,
}

impl RequestStatus {
    pub fn new(request_id: RequestId, c: RequestCounters) -> Self {
        let settled = c
            .delivered
            .saturating_add(c.skipped)
            .saturating_add(c.dead_lettered);
        Self {
            request_id,
            accepted: c.accepted,
            delivered: c.delivered,
            skipped: c.skipped,
            dead_lettered: c.dead_lettered,
            pending: c.accepted.saturating_sub(settled),
        }
    }
}

/// A request's progress record, as ingest creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub id: RequestId,
    pub accepted: u32,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// A single-change request's change, whose status is derived from the sync state (no drain write);
    /// `None` for a multi-change request, tracked by the drain's sets.
    pub single: Option<TrackedChange>,
}

/// Per-request progress records (`request#<id>`), created by ingest before anything is enqueued.
pub trait RequestStore: Send + Sync {
    fn create(&self, request: &NewRequest) -> impl Future<Output = PortResult<()>> + Send;
    /// The request's counters: a multi-change request's from the drain's sets, a single-change request's
    /// derived from its user's sync state ([`single_change_counters`]). `None` for an unknown or expired request.
    fn counters(
        &self,
        id: RequestId,
    ) -> impl Future<Output = PortResult<Option<RequestCounters>>> + Send;
}

/// What a single-change request's record keeps of its change, to derive its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedChange {
    pub email: Email,
    /// The fields the change sets (at least one: ingest refuses a change that sets nothing).
    pub fields: BTreeSet<FieldKey>,
    pub precedence: Precedence,
}

impl TrackedChange {
    /// The change of a single-change request; `None` for a request of several (tracked by the drain's sets),
    /// or for a change that sets no field (ingest refuses those; nothing could be derived for one).
    pub fn of(changes: &[Change]) -> Option<Self> {
        let [one] = changes else {
            return None;
        };
        let fields: BTreeSet<FieldKey> = one.fields().into_iter().map(|(k, _)| k).collect();
        (!fields.is_empty()).then(|| Self {
            email: one.email.clone(),
            fields,
            precedence: one.precedence(),
        })
    }
}

/// The counters of a single-change request (see the module doc): derived from the user's synced fields,
/// and `recorded`, what the drain wrote to the request's sets (usually nothing, or a dead letter).
pub fn single_change_counters(
    change: &TrackedChange,
    synced: &SyncedFields,
    recorded: RequestCounters,
) -> RequestCounters {
    let synced_at = |key: &FieldKey| synced.get(key).map(|f| f.precedence);
    let p = change.precedence;
    let holds_all = change.fields.iter().all(|k| synced_at(k) == Some(p));
    let settled = change.fields.iter().all(|k| synced_at(k) >= Some(p));
    let holds_some = change.fields.iter().any(|k| synced_at(k) == Some(p));
    let one = |delivered, skipped| RequestCounters {
        accepted: 1,
        delivered,
        skipped,
        dead_lettered: 0,
    };
    let recorded_any = recorded.delivered > 0 || recorded.skipped > 0 || recorded.dead_lettered > 0;
    if holds_all && !change.fields.is_empty() {
        one(1, 0)
    } else if recorded_any {
        RequestCounters {
            accepted: 1,
            ..recorded
        }
    } else if settled && holds_some {
        one(1, 0)
    } else if settled && !change.fields.is_empty() {
        one(0, 1)
    } else {
        one(0, 0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{DateTime, TimeDelta};

    use super::*;
    use crate::ports::SyncedField;

    fn at(ns: i64) -> Precedence {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::nanoseconds(ns);
        Precedence {
            occurred_at: t,
            accepted_at: t,
            position: 0,
        }
    }

    fn change(fields: &[FieldKey], p: Precedence) -> TrackedChange {
        TrackedChange {
            email: Email::parse("a@x.io").unwrap(),
            fields: fields.iter().cloned().collect(),
            precedence: p,
        }
    }

    fn synced(fields: &[(FieldKey, Precedence)]) -> SyncedFields {
        fields
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    SyncedField {
                        value: "v".into(),
                        precedence: *p,
                    },
                )
            })
            .collect()
    }

    fn status(c: RequestCounters) -> (u32, u32, u32) {
        (c.delivered, c.skipped, c.dead_lettered)
    }

    const NONE: RequestCounters = RequestCounters {
        accepted: 1,
        delivered: 0,
        skipped: 0,
        dead_lettered: 0,
    };
    const DEAD: RequestCounters = RequestCounters {
        dead_lettered: 1,
        ..NONE
    };

    /// Rule: pending until every field is synced at the change's precedence or later; delivered when the
    /// provider holds one of its values, skipped when all are newer.
    #[test]
    fn a_single_change_reads_pending_delivered_or_skipped_from_the_sync_state() {
        let plan = FieldKey::Custom("plan".into());
        let c = change(&[FieldKey::Name, plan.clone()], at(10));
        let get =
            |s: &[(FieldKey, Precedence)]| status(single_change_counters(&c, &synced(s), NONE));
        assert_eq!(get(&[]), (0, 0, 0));
        assert_eq!(get(&[(FieldKey::Name, at(10))]), (0, 0, 0), "plan not yet");
        assert_eq!(
            get(&[(FieldKey::Name, at(10)), (plan.clone(), at(9))]),
            (0, 0, 0)
        );
        assert_eq!(
            get(&[(FieldKey::Name, at(10)), (plan.clone(), at(10))]),
            (1, 0, 0)
        );
        assert_eq!(
            get(&[(FieldKey::Name, at(11)), (plan.clone(), at(10))]),
            (1, 0, 0)
        );
        assert_eq!(
            get(&[(FieldKey::Name, at(11)), (plan.clone(), at(12))]),
            (0, 1, 0)
        );
        assert_eq!(single_change_counters(&c, &synced(&[]), NONE).accepted, 1);
    }

    /// Rule: a dead letter counts unless the provider holds every value of the change (a redriven copy was
    /// delivered); what the drain recorded wins over a derived "superseded".
    #[test]
    fn a_recorded_dead_letter_counts_unless_every_value_was_delivered() {
        let plan = FieldKey::Custom("plan".into());
        let c = change(&[FieldKey::Name, plan.clone()], at(10));
        let get =
            |s: &[(FieldKey, Precedence)], r| status(single_change_counters(&c, &synced(s), r));
        assert_eq!(get(&[], DEAD), (0, 0, 1));
        // Its unchanged name was touched, its plan rejected; a later change set the plan.
        assert_eq!(
            get(&[(FieldKey::Name, at(10)), (plan.clone(), at(12))], DEAD),
            (0, 0, 1)
        );
        assert_eq!(
            get(&[(FieldKey::Name, at(11)), (plan.clone(), at(12))], DEAD),
            (0, 0, 1)
        );
        assert_eq!(
            get(&[(FieldKey::Name, at(10)), (plan.clone(), at(10))], DEAD),
            (1, 0, 0)
        );
        // Skipped against a value in flight, recorded by the drain: counted although the sync state lags.
        let skipped = RequestCounters { skipped: 1, ..NONE };
        assert_eq!(get(&[(FieldKey::Name, at(5))], skipped), (0, 1, 0));
    }

    #[test]
    fn only_a_request_of_one_change_is_derived() {
        let change = |email: &str| Change {
            change_id: crate::domain::ChangeId::new(),
            request_id: crate::domain::RequestId::new(),
            email: Email::parse(email).unwrap(),
            name: Some("A".into()),
            time_zone: None,
            custom_fields: [("plan".to_string(), "pro".to_string())].into(),
            occurred_at: at(0).occurred_at,
            priority: crate::domain::Priority::Normal,
            accepted_at: at(0).accepted_at,
            position: 0,
            request_size: Some(1),
        };
        let one = TrackedChange::of(&[change("a@x.io")]).unwrap();
        assert_eq!(
            one.fields,
            BTreeSet::from([FieldKey::Name, FieldKey::Custom("plan".into())])
        );
        assert_eq!(one.precedence, at(0));
        assert!(TrackedChange::of(&[change("a@x.io"), change("b@x.io")]).is_none());
        assert!(TrackedChange::of(&[]).is_none());
    }

    #[test]
    fn pending_never_goes_negative() {
        let id = RequestId::new();
        let s = RequestStatus::new(
            id,
            RequestCounters {
                accepted: 3,
                delivered: 2,
                skipped: 1,
                dead_lettered: 1,
            },
        );
        assert_eq!(s.pending, 0);
        let s = RequestStatus::new(
            id,
            RequestCounters {
                accepted: 5,
                delivered: 1,
                ..Default::default()
            },
        );
        assert_eq!(s.pending, 4);
    }
}
