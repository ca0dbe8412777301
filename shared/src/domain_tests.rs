#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn email_is_normalised_and_checked() {
    assert_eq!(
        Email::parse(" Jo@Example.COM ").unwrap().as_str(),
        "jo@example.com"
    );
    for bad in [
        "",
        "jo",
        "jo@",
        "@x.com",
        "jo@x",
        "jo@x..com",
        "j o@x.com",
        "jo@-x.com x",
    ] {
        assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        Email::parse("jo@example.com").unwrap().to_string(),
        "j***@example.com"
    );
}

#[test]
fn time_zone_is_checked_against_tzdb() {
    assert_eq!(
        TimeZone::parse("Europe/Amsterdam").unwrap().name(),
        "Europe/Amsterdam"
    );
    assert!(TimeZone::parse("Mars/Olympus").is_err());
}

#[test]
fn message_round_trips_with_version_tag() {
    let change = Change {
        change_id: ChangeId::new(),
        request_id: RequestId::new(),
        email: Email::parse("a@b.co").unwrap(),
        name: Some("Ann".into()),
        time_zone: Some(TimeZone::parse("UTC").unwrap()),
        custom_fields: BTreeMap::from([("plan".into(), "pro".into())]),
        occurred_at: Utc::now(),
        priority: Priority::High,
        accepted_at: Utc::now(),
        position: 7,
        request_size: Some(3),
    };
    let body = ChangeMessage::V1(change.clone()).to_body();
    assert!(body.starts_with(r#"{"v":"1""#), "{body}");
    assert_eq!(
        ChangeMessage::from_body(&body).unwrap().into_change(),
        change
    );
    assert!(ChangeMessage::from_body(r#"{"v":"9"}"#).is_err());
}

/// Rule: timestamps cross the queue at full precision (the drain compares nanoseconds).
#[test]
fn message_keeps_timestamps_to_the_nanosecond() {
    let body = r#"{"v":"1","change_id":"6f2c1c52-6a53-4a43-9d1f-0c8f3a4d1e01","request_id":"0b7e6f58-2f7a-4a57-9c3e-2f1d6f0e9a02","email":"a@x.io","name":"A","occurred_at":"2026-03-01T10:00:00.123456789Z","accepted_at":"2026-03-01T10:00:01.000000001Z","position":3}"#;
    let change = ChangeMessage::from_body(body).unwrap().into_change();
    assert_eq!(change.occurred_at.timestamp_subsec_nanos(), 123_456_789);
    assert_eq!(change.accepted_at.timestamp_subsec_nanos(), 1);
    assert_eq!(change.position, 3);
    let again = ChangeMessage::from_body(&ChangeMessage::V1(change.clone()).to_body()).unwrap();
    assert_eq!(again.into_change(), change);
}

/// Rule: messages already on a queue when `position` or `request_size` was added still decode (as
/// position 0, no request size), and a field added later is ignored, so ingest and drain deploy in
/// either order.
#[test]
fn old_and_newer_v1_messages_stay_decodable() {
    let old = r#"{"v":"1","change_id":"6f2c1c52-6a53-4a43-9d1f-0c8f3a4d1e01","request_id":"0b7e6f58-2f7a-4a57-9c3e-2f1d6f0e9a02","email":"Ann@Example.com","name":"Ann","occurred_at":"2025-03-01T10:00:00Z","priority":"normal","accepted_at":"2025-03-01T10:00:01Z"}"#;
    let change = ChangeMessage::from_body(old).unwrap().into_change();
    assert_eq!((change.position, change.name.as_deref()), (0, Some("Ann")));
    assert_eq!(
        change.request_size, None,
        "an old message is tracked as multi-change"
    );
    let newer = old.replace(r#""v":"1","#, r#""v":"1","some_later_field":[1,2],"#);
    assert_eq!(
        ChangeMessage::from_body(&newer).unwrap().into_change(),
        change
    );
}

/// Rule: precedence is occurred_at, then accepted_at, then position — a nanosecond outranks any tie-break.
#[test]
fn precedence_orders_by_occurred_then_accepted_then_position() {
    let t = DateTime::from_timestamp(1_700_000_000, 500).unwrap();
    let ns = chrono::TimeDelta::nanoseconds(1);
    let p = |o, a, position| Precedence {
        occurred_at: o,
        accepted_at: a,
        position,
    };
    assert!(p(t + ns, t, 0) > p(t, t + ns, 999));
    assert!(p(t, t + ns, 0) > p(t, t, 999));
    assert!(p(t, t, 2) > p(t, t, 1));
}

#[test]
fn field_keys_round_trip_through_storage() {
    for k in [
        FieldKey::Name,
        FieldKey::TimeZone,
        FieldKey::Custom("plan.x".into()),
    ] {
        assert_eq!(FieldKey::from_storage_key(&k.storage_key()), Some(k));
    }
}
