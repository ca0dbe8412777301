//! Unit tests of the DynamoDB item encodings, the sync-state statements and the in-flight note chunks
//! (the calls themselves are tested against LocalStack, in `tests/`).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::in_flight::{NOTE_CHUNK_BYTES, note_chunks};
use super::item::{
    field_value, legacy_precedence, n, nanos, parse_fields, parse_precedence_key, precedence_key, s,
};
use super::statements::{FIELDS_PER_STATEMENT, split_fields, sync_statement};
use super::sync_state::may_overwrite;
use crate::domain::{Email, FieldKey, Precedence};
use crate::ports::{InFlight, SyncedField, SyncedFields};
fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
        (-100_000_000_000i64..100_000_000_000, 0..1_000_000_000u32)
            .prop_map(|(secs, ns)| DateTime::from_timestamp(secs, ns).unwrap()),
        // Around one instant, so neighbours one nanosecond apart are compared.
        (0..3_000_000i64).prop_map(|ns| {
            DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::TimeDelta::nanoseconds(ns)
        }),
    ]
}

fn arb_precedence() -> impl Strategy<Value = Precedence> {
    (arb_time(), arb_time(), prop_oneof![0..3u32, Just(u32::MAX)]).prop_map(
        |(occurred_at, accepted_at, position)| Precedence {
            occurred_at,
            accepted_at,
            position,
        },
    )
}

proptest! {
    /// Rule: the stored precedence keeps every nanosecond and sorts as the precedence does, so
    /// DynamoDB's string comparison in the write guard is the drain's comparison.
    #[test]
    fn stored_precedence_round_trips_and_sorts_like_precedence(a in arb_precedence(), b in arb_precedence()) {
        let (ka, kb) = (precedence_key(&a), precedence_key(&b));
        prop_assert_eq!(parse_precedence_key(&ka), Some(a));
        prop_assert_eq!(ka.len(), 58);
        prop_assert_eq!(ka.as_bytes().cmp(kb.as_bytes()), a.cmp(&b));
    }

    /// Rule: an old millisecond item never lets an older change pass — the read precedence is above every
    /// change its millisecond could have held, and below every change of a later millisecond.
    #[test]
    fn a_millisecond_item_reads_as_the_latest_its_millisecond_could_hold(
        millis in -100_000_000_000_000i64..100_000_000_000_000,
        sub_ns in 0..1_000_000i64,
    ) {
        let old = legacy_precedence(millis).unwrap();
        let same_ms = DateTime::from_timestamp_millis(millis).unwrap() + chrono::TimeDelta::nanoseconds(sub_ns);
        let change = |t| Precedence { occurred_at: t, accepted_at: DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::seconds(1), position: u32::MAX };
        prop_assert!(old >= change(same_ms));
        prop_assert_eq!(same_ms.timestamp_millis(), millis, "the write guard's `t < :m` refuses it too");
        let next_ms = DateTime::from_timestamp_millis(millis + 1).unwrap();
        prop_assert!(old < change(next_ms));
    }
}

#[test]
fn a_millisecond_item_is_parsed_and_a_full_item_preferred() {
    let legacy = HashMap::from([
        ("pk".to_string(), s("user#a@x.io")),
        (
            "f.name".to_string(),
            AttributeValue::M(HashMap::from([
                ("v".to_string(), s("old")),
                ("t".to_string(), n(1_800_000_000_123_i64)),
            ])),
        ),
    ]);
    let got = parse_fields(&legacy);
    let p = got[&FieldKey::Name].precedence;
    assert_eq!(got[&FieldKey::Name].value, "old");
    assert_eq!(nanos(p.occurred_at), 1_800_000_000_123_999_999);

    let full = Precedence {
        occurred_at: DateTime::from_timestamp(1_800_000_000, 123_400_001).unwrap(),
        accepted_at: DateTime::from_timestamp(1_800_000_001, 5).unwrap(),
        position: 2,
    };
    let item = HashMap::from([(
        "f.cf.plan".to_string(),
        AttributeValue::M(HashMap::from([
            ("v".to_string(), s("pro")),
            ("k".to_string(), s(precedence_key(&full))),
            ("t".to_string(), n(full.occurred_at.timestamp_millis())),
        ])),
    )]);
    assert_eq!(
        parse_fields(&item)[&FieldKey::Custom("plan".into())].precedence,
        full
    );
}

/// Rule: a record of any size fits PartiQL's 8,192-character statement limit (it is split into
/// parts), and every field lands in exactly one part.
#[test]
fn every_part_of_a_wide_record_fits_a_statement() {
    let field = SyncedField {
        value: "v".into(),
        precedence: legacy_precedence(0).unwrap(),
    };
    let fields: SyncedFields = (0..200)
        .map(|i| (FieldKey::Custom(format!("{i:0>64}")), field.clone()))
        .collect();
    let table = "t".repeat(255);
    let parts = split_fields(&table, &fields);
    assert!(parts.len() > 1);
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 200);
    assert!(parts.iter().all(|p| p.len() <= FIELDS_PER_STATEMENT));
    let email = Email::parse("a@x.io").unwrap();
    for part in &parts {
        for insert in [false, true] {
            let (statement, params) = sync_statement(&table, &email, part, insert);
            assert!(statement.len() <= 8_192, "{} characters", statement.len());
            assert_eq!(statement.matches('?').count(), params.len());
        }
    }
}

/// Rule: the Rust guard (used when a failed statement's item is read back) is DynamoDB's condition:
/// absent, no greater `k`, or — without `k` — an earlier millisecond.
#[test]
fn the_reread_guard_is_the_statement_condition() {
    let at = |ms: i64, ns: i64| Precedence {
        occurred_at: DateTime::from_timestamp_millis(ms).unwrap()
            + chrono::TimeDelta::nanoseconds(ns),
        accepted_at: DateTime::from_timestamp(0, 0).unwrap(),
        position: 0,
    };
    let new = |p| SyncedField {
        value: "x".into(),
        precedence: p,
    };
    let full = |p: &Precedence| field_value(&new(*p));
    let legacy = AttributeValue::M(HashMap::from([("t".to_string(), n(1_000))]));
    assert!(may_overwrite(None, &new(at(5, 0))));
    assert!(
        may_overwrite(Some(&full(&at(5, 0))), &new(at(5, 0))),
        "equal"
    );
    assert!(may_overwrite(Some(&full(&at(5, 0))), &new(at(5, 1))));
    assert!(!may_overwrite(Some(&full(&at(5, 1))), &new(at(5, 0))));
    assert!(!may_overwrite(Some(&legacy), &new(at(1_000, 999_999))));
    assert!(may_overwrite(Some(&legacy), &new(at(1_001, 0))));
    assert!(!may_overwrite(Some(&s("not a map")), &new(at(5, 0))));
}

/// Rule: a note is split into chunks under the item limit, a user never across two, and reads back.
#[test]
fn a_large_note_is_chunked_and_reads_back() {
    let p = legacy_precedence(1_800_000_000_000).unwrap();
    let intents: Vec<(Email, InFlight)> = (0..6_000)
        .map(|i| {
            (
                Email::parse(&format!("user{i}@example.com")).unwrap(),
                InFlight::from([(FieldKey::Name, p), (FieldKey::Custom("plan".into()), p)]),
            )
        })
        .collect();
    let chunks = note_chunks(&intents);
    assert!(chunks.len() > 1);
    let mut seen = 0;
    for c in &chunks {
        assert!(c.len() <= NOTE_CHUNK_BYTES);
        let note: HashMap<String, BTreeMap<String, String>> = serde_json::from_str(c).unwrap();
        for fields in note.values() {
            assert_eq!(parse_precedence_key(&fields["cf.plan"]), Some(p));
        }
        seen += note.len();
    }
    assert_eq!(seen, 6_000);
    assert!(note_chunks(&[]).is_empty());
}
