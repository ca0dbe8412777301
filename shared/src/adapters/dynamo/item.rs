//! The one mapping between Sluice's values and DynamoDB items, for the drain's and ingest's adapters alike:
//! attribute constructors and readers, every item key (the table's layout is in [`super`]), and the stored
//! forms of a precedence and of a user's synced fields.
//!
//! A synced field's `k` is the [`Precedence`] of the change that set it, at full precision, as a string that
//! sorts as the precedence does: `<occurred_at>.<accepted_at>.<position>`, the two times as nanoseconds since
//! the epoch plus 10^22 (so never negative) in 23 digits, the position in 10. `t` is `occurred_at` in
//! milliseconds (rounded down): the whole of the format before `k` existed, still written so a drain rolled
//! back to that format keeps working. A field without `k` is read as the latest change its millisecond
//! could hold (`t` + 999,999 ns, highest tie-breaks), and the write guard refuses anything not in a later
//! millisecond, so no older change passes an old item; the next write replaces it with the full format.
//!
//! Plain helpers rather than `serde_dynamo`: every item here is read leniently, attribute by attribute
//! (a missing or malformed attribute has a default or makes the item "not ours"), which a derived
//! deserializer would turn into errors.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::domain::{Email, FieldKey, Precedence, RequestId};
use crate::ports::{IdempotencyKey, QuotaKind, QuotaModel, SyncedField, SyncedFields, Window};

/// A DynamoDB item as the SDK gives it.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// The key of the drain's lease item.
pub(crate) const LEASE_KEY: &str = "lease#drain";
/// The key of the provider circuit's item.
pub(crate) const CIRCUIT_KEY: &str = "circuit#provider";
/// The key of the index of in-flight notes still listed.
pub(crate) const NOTE_INDEX_KEY: &str = "inflight#runs";
/// A user item's attribute for a synced field is this prefix and the field's storage key.
pub(crate) const FIELD_PREFIX: &str = "f.";

/// Shifts nanoseconds since the epoch to non-negative: chrono spans ±262,143 years, about ±8.3 × 10^21 ns.
const NS_OFFSET: i128 = 10_i128.pow(22);
const NS_PER_SEC: i128 = 1_000_000_000;

/// A fixed window's item is `quota#<kind>#<start>`; the rolling model keeps one `quota#rolling#<kind>`.
pub fn quota_key(kind: QuotaKind, window: Window) -> String {
    match window.model {
        QuotaModel::Fixed => format!("quota#{}#{}", kind.as_str(), window.start),
        QuotaModel::Rolling => format!("quota#rolling#{}", kind.as_str()),
    }
}

pub fn user_key(email: &Email) -> String {
    format!("user#{}", email.as_str())
}

/// One chunk of a run's in-flight note.
pub fn note_key(holder: &str, chunk: usize) -> String {
    format!("inflight#run#{holder}#{chunk}")
}

/// A request's progress item: ingest creates it, the drain adds to its sets.
pub fn request_key(id: &RequestId) -> String {
    format!("request#{id}")
}

/// An idempotency record's item (the key is stored only as its digest).
pub(crate) fn idempotency_key(key: &IdempotencyKey) -> String {
    format!("idem#{}", key.digest())
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: Option<&'a Item>, name: &str) -> Option<&'a str> {
    item?.get(name)?.as_s().ok().map(String::as_str)
}

/// A number attribute as an integer (one with a fraction or exponent is cut to its integer part).
pub(crate) fn get_n(item: Option<&Item>, name: &str) -> Option<i64> {
    let raw = item?.get(name)?.as_n().ok()?;
    raw.parse::<i64>()
        .ok()
        .or_else(|| raw.parse::<f64>().ok().map(|f| f as i64))
}

/// A count attribute: 0 when absent, clamped into `u32`.
pub(crate) fn counter(item: Option<&Item>, name: &str) -> u32 {
    get_n(item, name).map_or(0, clamp_u32)
}

pub(crate) fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// A time stored as milliseconds since the epoch.
pub(crate) fn get_millis(item: Option<&Item>, name: &str) -> Option<DateTime<Utc>> {
    get_n(item, name).and_then(DateTime::from_timestamp_millis)
}

pub(crate) fn nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * NS_PER_SEC + i128::from(t.timestamp_subsec_nanos())
}

fn from_nanos(ns: i128) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(ns.div_euclid(NS_PER_SEC)).ok()?;
    let sub = u32::try_from(ns.rem_euclid(NS_PER_SEC)).ok()?;
    DateTime::from_timestamp(secs, sub)
}

/// The stored form of a precedence (see the module doc): fixed-width digits, so DynamoDB's string order
/// (by bytes) is the precedence order.
pub(crate) fn precedence_key(p: &Precedence) -> String {
    format!(
        "{:023}.{:023}.{:010}",
        nanos(p.occurred_at) + NS_OFFSET,
        nanos(p.accepted_at) + NS_OFFSET,
        p.position
    )
}

pub(crate) fn parse_precedence_key(k: &str) -> Option<Precedence> {
    let mut parts = k.split('.');
    let mut time = || from_nanos(parts.next()?.parse::<i128>().ok()? - NS_OFFSET);
    let (occurred_at, accepted_at) = (time()?, time()?);
    let position = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Precedence {
        occurred_at,
        accepted_at,
        position,
    })
}

/// A field recorded before `k` existed: only its millisecond is known, so it stands for the latest change
/// that millisecond could hold — anything not strictly later is stale against it.
pub(crate) fn legacy_precedence(millis: i64) -> Option<Precedence> {
    Some(Precedence {
        occurred_at: DateTime::from_timestamp_millis(millis)?
            + chrono::TimeDelta::nanoseconds(999_999),
        accepted_at: DateTime::<Utc>::MAX_UTC,
        position: u32::MAX,
    })
}

/// The attribute name of a synced field in its user's item.
pub(crate) fn field_attribute(key: &FieldKey) -> String {
    format!("{FIELD_PREFIX}{}", key.storage_key())
}

/// A synced field as stored: `{v: value, k: precedence key, t: occurred_at in ms}`.
pub(crate) fn field_value(field: &SyncedField) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("v".to_string(), s(field.value.clone())),
        ("k".to_string(), s(precedence_key(&field.precedence))),
        (
            "t".to_string(),
            n(field.precedence.occurred_at.timestamp_millis()),
        ),
    ]))
}

/// A user's synced fields from their `user#<email>` item (the drain's sync state; ingest reads it to derive
/// a single-change request's status).
pub(crate) fn parse_fields(item: &Item) -> SyncedFields {
    item.iter()
        .filter_map(|(name, value)| {
            let key = FieldKey::from_storage_key(name.strip_prefix(FIELD_PREFIX)?)?;
            let map = value.as_m().ok()?;
            let v = map.get("v")?.as_s().ok()?.clone();
            let full = map
                .get("k")
                .and_then(|k| k.as_s().ok())
                .and_then(|k| parse_precedence_key(k));
            let precedence = match full {
                Some(p) => p,
                None => legacy_precedence(map.get("t")?.as_n().ok()?.parse().ok()?)?,
            };
            Some((
                key,
                SyncedField {
                    value: v,
                    precedence,
                },
            ))
        })
        .collect()
}
