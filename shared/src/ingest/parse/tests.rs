#![allow(clippy::unwrap_used)]

use super::*;
use crate::domain::{
    ChangeMessage, MAX_CUSTOM_FIELDS, MAX_EMAIL_LEN, MAX_FIELD_KEY_LEN, MAX_FIELD_VALUE_LEN,
    MAX_NAME_LEN, Priority,
};
use proptest::prelude::*;
use serde_json::json;

fn stamp() -> RequestStamp {
    RequestStamp {
        request_id: RequestId::new(),
        received_at: Utc::now(),
    }
}

fn parse(v: serde_json::Value) -> Result<Vec<Change>, ParseError> {
    parse_changes(v.to_string().as_bytes(), stamp())
}

fn problems(v: serde_json::Value) -> Vec<FieldProblem> {
    match parse(v) {
        Err(ParseError::Invalid(p)) => p,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn has(problems: &[FieldProblem], index: Option<usize>, field: Option<&str>) -> bool {
    problems
        .iter()
        .any(|p| p.index == index && p.field.as_deref() == field)
}

#[test]
fn a_single_change_is_parsed_with_defaults() {
    let r = stamp();
    let body = br#"{"email":" Ann@Example.com ","name":"Ann","custom_fields":{"plan":"pro"}}"#;
    let changes = parse_changes(body, r).unwrap();
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!(c.email.as_str(), "ann@example.com");
    assert_eq!(c.name.as_deref(), Some("Ann"));
    assert_eq!(c.custom_fields["plan"], "pro");
    assert_eq!(c.occurred_at, r.received_at);
    assert_eq!(c.accepted_at, r.received_at);
    assert_eq!(c.request_id, r.request_id);
    assert_eq!(c.priority, Priority::Normal);
}

#[test]
fn an_envelope_keeps_order_and_gives_each_change_its_own_id() {
    let changes = parse(json!({"changes": [
        {"email": "a@x.io", "time_zone": "Europe/Amsterdam", "priority": "high",
         "occurred_at": "2026-01-31T09:30:00+01:00"},
        {"email": "b@x.io", "name": ""},
    ]}))
    .unwrap();
    assert_eq!(changes[0].email.as_str(), "a@x.io");
    assert_eq!(changes[0].priority, Priority::High);
    assert_eq!(
        changes[0].occurred_at.to_rfc3339(),
        "2026-01-31T08:30:00+00:00"
    );
    assert_eq!(changes[1].name.as_deref(), Some(""));
    assert_ne!(changes[0].change_id, changes[1].change_id);
}

/// Rule: within one request a later change wins a tie — each change carries its index in the array,
/// and without `occurred_at` every change of the request has the same one (the stamp time).
#[test]
fn changes_carry_their_position_and_share_the_receipt_time() {
    let r = stamp();
    let body = json!({"changes": [
        {"email": "a@x.io", "name": "FIRST"},
        {"email": "b@x.io", "name": "other", "occurred_at": "2026-01-31T09:30:00Z"},
        {"email": "a@x.io", "name": "SECOND"},
    ]});
    let changes = parse_changes(body.to_string().as_bytes(), r).unwrap();
    let positions: Vec<u32> = changes.iter().map(|c| c.position).collect();
    assert_eq!(positions, vec![0, 1, 2]);
    assert_eq!(changes[0].occurred_at, r.received_at);
    assert_eq!(changes[2].occurred_at, r.received_at);
    assert!(changes[2].precedence() > changes[0].precedence());
    let single = parse_changes(br#"{"email":"a@x.io","name":"A"}"#, r).unwrap();
    assert_eq!(single[0].position, 0);
}

/// Rule: every change carries its request's size, so the drain knows which requests it tracks
/// (a `{"changes": [one]}` body is a single-change request too).
#[test]
fn changes_carry_their_request_size() {
    let r = stamp();
    let three = json!({"changes": [
        {"email": "a@x.io", "name": "A"},
        {"email": "b@x.io", "name": "B"},
        {"email": "c@x.io", "name": "C"},
    ]});
    let changes = parse_changes(three.to_string().as_bytes(), r).unwrap();
    assert!(changes.iter().all(|c| c.request_size == Some(3)));
    for one in [
        r#"{"email":"a@x.io","name":"A"}"#,
        r#"{"changes":[{"email":"a@x.io","name":"A"}]}"#,
    ] {
        let single = parse_changes(one.as_bytes(), r).unwrap();
        assert_eq!(single[0].request_size, Some(1), "{one}");
    }
}

/// Rule: `occurred_at` keeps the precision it was sent with (µs or ns), so sub-millisecond order holds.
#[test]
fn occurred_at_keeps_micro_and_nanoseconds() {
    let changes = parse(json!({"changes": [
        {"email": "a@x.io", "name": "ns", "occurred_at": "2026-01-31T09:30:00.123456789Z"},
        {"email": "a@x.io", "name": "us", "occurred_at": "2026-01-31T09:30:00.123456+01:00"},
    ]}))
    .unwrap();
    assert_eq!(changes[0].occurred_at.timestamp_subsec_nanos(), 123_456_789);
    assert_eq!(changes[1].occurred_at.timestamp_subsec_nanos(), 123_456_000);
}

#[test]
fn malformed_bodies_are_400_material() {
    for body in [
        &b""[..],
        b"{",
        b"[]",
        b"\"x\"",
        b"null",
        b"{\"email\": \"\\ud800\"}",
        b"\xff",
    ] {
        assert!(
            matches!(parse_changes(body, stamp()), Err(ParseError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn every_bad_item_and_field_is_named() {
    let p = problems(json!({"changes": [
        {"email": "ok@x.io", "name": "fine"},
        {"email": "nope", "name": 5, "colour": "red"},
        {"email": "c@x.io"},
        "not an object",
        {"name": "no email"},
        {"email": "d@x.io", "time_zone": "Mars/Olympus", "priority": "urgent",
         "occurred_at": "yesterday", "custom_fields": {"bad key": "v", "ok": 1}, "zzz": 1},
    ]}));
    assert!(!p.iter().any(|p| p.index == Some(0)));
    assert!(has(&p, Some(1), Some("email")));
    assert!(has(&p, Some(1), Some("name")));
    assert!(has(&p, Some(1), Some("colour")));
    assert!(has(&p, Some(2), None), "empty change");
    assert!(has(&p, Some(3), None), "not an object");
    assert!(has(&p, Some(4), Some("email")));
    assert!(has(&p, Some(5), Some("time_zone")));
    assert!(has(&p, Some(5), Some("priority")));
    assert!(has(&p, Some(5), Some("occurred_at")));
    assert!(has(&p, Some(5), Some("custom_fields.bad key")));
    // Five problems shown for change 5 (keys sorted: zzz comes last), the sixth summarised.
    assert_eq!(
        p.iter().filter(|p| p.index == Some(5)).count(),
        MAX_PROBLEMS_PER_CHANGE + 1
    );
}

#[test]
fn empty_changes_are_refused() {
    for change in [
        json!({"email": "a@x.io"}),
        json!({"email": "a@x.io", "custom_fields": {}, "priority": "high"}),
    ] {
        assert!(has(&problems(change), Some(0), None));
    }
}

#[test]
fn unknown_and_duplicate_fields_are_refused() {
    let p = problems(json!({"email": "a@x.io", "name": "A", "Name": "B"}));
    assert!(has(&p, Some(0), Some("Name")));
    let dup = br#"{"email":"a@x.io","name":"A","name":"B"}"#;
    let Err(ParseError::Invalid(p)) = parse_changes(dup, stamp()) else {
        panic!()
    };
    assert_eq!(p[0].message, "appears more than once");
    let dup = br#"{"email":"a@x.io","custom_fields":{"k":"1","k":"2"}}"#;
    let Err(ParseError::Invalid(p)) = parse_changes(dup, stamp()) else {
        panic!()
    };
    assert_eq!(p[0].field.as_deref(), Some("custom_fields.k"));
    let p = problems(json!({"changes": [{"email": "a@x.io", "name": "A"}], "dry_run": true}));
    assert!(has(&p, None, Some("dry_run")));
    let p = problems(json!({"email": "a@x.io", "name": null}));
    assert!(has(&p, Some(0), Some("name")));
}

#[test]
fn over_long_values_are_refused() {
    let long = |n| "x".repeat(n);
    let p = problems(
        json!({"email": format!("{}@x.io", long(MAX_EMAIL_LEN)), "name": long(MAX_NAME_LEN + 1)}),
    );
    assert!(has(&p, Some(0), Some("email")) && has(&p, Some(0), Some("name")));
    let too_many: serde_json::Map<_, _> = (0..=MAX_CUSTOM_FIELDS)
        .map(|i| (format!("f{i}"), json!("v")))
        .collect();
    let p = problems(json!({"email": "a@x.io", "custom_fields": too_many}));
    assert!(has(&p, Some(0), Some("custom_fields")));
    let p =
        problems(json!({"email": "a@x.io", "custom_fields": {long(MAX_FIELD_KEY_LEN + 1): "v"}}));
    assert_eq!(p.len(), 1);
    let p =
        problems(json!({"email": "a@x.io", "custom_fields": {"k": long(MAX_FIELD_VALUE_LEN + 1)}}));
    assert!(has(&p, Some(0), Some("custom_fields.k")));
}

#[test]
fn control_and_noncharacters_are_refused() {
    assert!(has(
        &problems(json!({"email": "a@x.io", "name": "A\u{0}B"})),
        Some(0),
        Some("name")
    ));
    assert!(has(
        &problems(json!({"email": "a\u{ffff}@x.io", "name": "A"})),
        Some(0),
        Some("email")
    ));
    let p = problems(json!({"email": "a@x.io", "custom_fields": {"k": "\u{fffe}"}}));
    assert!(has(&p, Some(0), Some("custom_fields.k")));
    // Tabs and line breaks are fine in custom values.
    assert!(parse(json!({"email": "a@x.io", "custom_fields": {"note": "a\tb\r\nc"}})).is_ok());
}

#[test]
fn far_future_occurred_at_is_refused_small_skew_is_not() {
    let r = stamp();
    let at = |d: TimeDelta| (r.received_at + d).to_rfc3339();
    let body = json!({"email": "a@x.io", "name": "A", "occurred_at": at(TimeDelta::minutes(4))});
    assert!(parse_changes(body.to_string().as_bytes(), r).is_ok());
    let body = json!({"email": "a@x.io", "name": "A", "occurred_at": at(TimeDelta::minutes(6))});
    assert!(parse_changes(body.to_string().as_bytes(), r).is_err());
}

#[test]
fn change_counts_are_bounded() {
    assert!(has(
        &problems(json!({"changes": []})),
        None,
        Some("changes")
    ));
    let many: Vec<_> = (0..=MAX_CHANGES)
        .map(|i| json!({"email": format!("u{i}@x.io"), "name": "A"}))
        .collect();
    let p = problems(json!({ "changes": many }));
    assert_eq!(p.len(), 1, "only the count is reported");
    let max: Vec<_> = (0..MAX_CHANGES)
        .map(|i| json!({"email": format!("u{i}@x.io"), "name": "A"}))
        .collect();
    assert_eq!(parse(json!({ "changes": max })).unwrap().len(), MAX_CHANGES);
    assert!(has(
        &problems(json!({"changes": {"email": "a@x.io"}})),
        None,
        Some("changes")
    ));
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        parse_changes(deep.as_bytes(), stamp()),
        Err(ParseError::Malformed(_))
    ));
}

/// The limits guarantee that any valid change fits one SQS message (256 KiB), whatever its characters.
#[test]
fn the_largest_possible_change_fits_one_queue_message() {
    let four_byte = "\u{10348}"; // 4 bytes in UTF-8, never escaped by serde_json
    let quote_heavy = "\"".repeat(MAX_FIELD_VALUE_LEN); // escaped: 2 bytes per character
    let custom: serde_json::Map<_, _> = (0..MAX_CUSTOM_FIELDS)
        .map(|i| {
            let key = format!("{i:0>width$}", width = MAX_FIELD_KEY_LEN);
            let value = if i % 2 == 0 {
                four_byte.repeat(MAX_FIELD_VALUE_LEN)
            } else {
                quote_heavy.clone()
            };
            (key, json!(value))
        })
        .collect();
    let local = "l".repeat(64);
    let domain = format!("{}.io", "d".repeat(MAX_EMAIL_LEN - 64 - 1 - 3));
    let body = json!({
        "email": format!("{local}@{domain}"),
        "name": four_byte.repeat(MAX_NAME_LEN),
        "time_zone": "America/Argentina/ComodRivadavia",
        "custom_fields": custom,
        "occurred_at": "2026-01-31T09:30:00.123456789+01:00",
        "priority": "high",
    });
    let changes = parse(body).unwrap();
    let message = ChangeMessage::V1(changes[0].clone()).to_body();
    assert!(message.len() < 256 * 1024, "{} bytes", message.len());
}

// ---- properties --------------------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "a@x.io",
            "UTC",
            "high",
            "normal",
            "2026-01-01T00:00:00Z",
            "",
            "Europe/Paris"
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(CHANGE_FIELDS.to_vec()).prop_map(String::from),
                        ".{0,8}"
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Arbitrary bytes: never a panic; a refusal is either malformed or names its problems.
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        match parse_changes(&body, stamp()) {
            Ok(changes) => prop_assert!(!changes.is_empty() && changes.len() <= MAX_CHANGES),
            Err(ParseError::Invalid(p)) => prop_assert!(!p.is_empty()),
            Err(ParseError::Malformed(m)) => prop_assert!(!m.is_empty()),
        }
    }

    /// Arbitrary JSON shaped like our bodies: never a panic; every problem index points into the body.
    #[test]
    fn arbitrary_json_never_panics(change in json_value(), wrap in any::<bool>()) {
        let body = if wrap { json!({"changes": [change.clone(), change]}) } else { change };
        match parse(body) {
            Ok(changes) => prop_assert!(!changes.is_empty()),
            Err(ParseError::Invalid(p)) => {
                prop_assert!(!p.is_empty());
                prop_assert!(p.iter().all(|p| p.index.is_none_or(|i| i < 2)));
            }
            Err(ParseError::Malformed(_)) => {}
        }
    }

    /// Valid changes survive the round trip through the queue message unchanged.
    #[test]
    fn valid_changes_round_trip_through_the_queue_body(
        local in "[a-z0-9._%+-]{1,20}",
        name in "\\PC{0,50}",
        custom in prop::collection::btree_map("[A-Za-z0-9_]{1,10}", "\\PC{0,30}", 0..5),
        high in any::<bool>(),
    ) {
        let body = json!({
            "email": format!("{local}@example.com"),
            "name": name,
            "custom_fields": custom,
            "priority": if high { "high" } else { "normal" },
        });
        let changes = match parse(body) {
            Ok(c) => c,
            // Names made only of whitespace/format characters may still be refused (control chars).
            Err(ParseError::Invalid(p)) => { prop_assert!(p.iter().all(|p| p.field.as_deref() == Some("name") || p.field.as_deref().is_some_and(|f| f.starts_with("custom_fields")))); return Ok(()); }
            Err(e) => return Err(TestCaseError::fail(format!("{e:?}"))),
        };
        let msg = ChangeMessage::V1(changes[0].clone());
        prop_assert_eq!(ChangeMessage::from_body(&msg.to_body()).unwrap(), msg);
    }
}

#[test]
fn priority_is_one_of_three_lanes_ordered_bulk_normal_high() {
    for (raw, want) in [
        ("high", Priority::High),
        ("normal", Priority::Normal),
        ("bulk", Priority::Bulk),
    ] {
        let changes = parse(json!({"email": "a@x.io", "name": "A", "priority": raw})).unwrap();
        assert_eq!(changes[0].priority, want);
    }
    assert!(Priority::Bulk < Priority::Normal && Priority::Normal < Priority::High);
    let p = problems(json!({"email": "a@x.io", "name": "A", "priority": "urgent"}));
    assert_eq!(p[0].field.as_deref(), Some("priority"), "{p:?}");
}
