#![allow(clippy::unwrap_used)]

use super::*;
use crate::domain::{RequestId, TimeZone};
use chrono::TimeZone as _;
use proptest::prelude::*;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn change(email: &str, t: i64, name: Option<&str>, plan: Option<&str>) -> Change {
    Change {
        change_id: ChangeId::new(),
        request_id: RequestId::new(),
        email: Email::parse(email).unwrap(),
        name: name.map(String::from),
        time_zone: None,
        custom_fields: plan
            .map(|p| BTreeMap::from([("plan".to_string(), p.to_string())]))
            .unwrap_or_default(),
        occurred_at: at(t),
        priority: Priority::Normal,
        accepted_at: at(t),
        position: 0,
        request_size: None,
    }
}

/// A synced field as a change at `at(t)` (its own request, position 0) would have left it.
fn synced_at(value: &str, t: DateTime<Utc>) -> SyncedField {
    SyncedField {
        value: value.into(),
        precedence: Precedence {
            occurred_at: t,
            accepted_at: t,
            position: 0,
        },
    }
}

fn decoded(changes: Vec<Change>) -> Vec<Decoded> {
    changes
        .into_iter()
        .enumerate()
        .map(|(index, change)| Decoded { index, change })
        .collect()
}

#[test]
fn newest_value_per_field_wins_and_fields_merge() {
    let d = decoded(vec![
        change("a@x.io", 3, Some("new"), None),
        change("a@x.io", 1, Some("old"), Some("pro")),
        change("b@x.io", 1, Some("bee"), None),
    ]);
    let c = coalesce(&d, &HashMap::new());
    assert_eq!(c.records.len(), 2);
    let a = c
        .records
        .iter()
        .find(|r| r.email.as_str() == "a@x.io")
        .unwrap();
    let s = a.subscriber();
    assert_eq!(s.name.as_deref(), Some("new"));
    assert_eq!(s.custom_fields["plan"], "pro");
    assert_eq!(a.messages, vec![0, 1]);
    assert_eq!(c.merged_messages, 1);
    assert!(c.absorbed.is_empty());
}

#[test]
fn unchanged_and_stale_fields_are_not_sent() {
    let d = decoded(vec![
        change("a@x.io", 5, Some("same"), None),
        change("b@x.io", 1, Some("older"), None),
        change("c@x.io", 9, Some("newer"), None),
    ]);
    let synced = HashMap::from([
        (
            Email::parse("a@x.io").unwrap(),
            SyncedFields::from([(FieldKey::Name, synced_at("same", at(2)))]),
        ),
        (
            Email::parse("b@x.io").unwrap(),
            SyncedFields::from([(FieldKey::Name, synced_at("x", at(2)))]),
        ),
        (
            Email::parse("c@x.io").unwrap(),
            SyncedFields::from([(FieldKey::Name, synced_at("x", at(2)))]),
        ),
    ]);
    let c = coalesce(&d, &synced);
    assert_eq!(c.records.len(), 1);
    assert_eq!(c.records[0].email.as_str(), "c@x.io");
    assert_eq!((c.skipped_unchanged, c.skipped_stale), (1, 1));
    assert_eq!(c.absorbed, vec![0, 1]);
    // The no-op is newer than what was synced: its timestamp is recorded.
    assert_eq!(c.touches.len(), 1);
    assert_eq!(
        c.touches[0].1[&FieldKey::Name].precedence,
        d[0].change.precedence()
    );
}

#[test]
fn duplicate_deliveries_collapse_and_high_priority_goes_first() {
    let mut first = change("a@x.io", 1, Some("n"), None);
    first.time_zone = Some(TimeZone::parse("Europe/Amsterdam").unwrap());
    let mut urgent = change("z@x.io", 2, Some("z"), None);
    urgent.priority = Priority::High;
    let d = decoded(vec![first.clone(), first, urgent]);
    let c = coalesce(&d, &HashMap::new());
    assert_eq!(c.records[0].email.as_str(), "z@x.io");
    assert_eq!(c.records[1].messages, vec![0, 1]);
    assert_eq!(
        c.records[1].subscriber().time_zone.as_deref(),
        Some("Europe/Amsterdam")
    );
}

fn arb_change() -> impl Strategy<Value = Change> {
    (
        0..4usize,
        0..20i64,
        proptest::option::of(0..3u8),
        proptest::option::of(0..3u8),
        0..2u8,
    )
        .prop_map(|(user, t, name, plan, prio)| {
            let mut c = change(
                &format!("u{user}@x.io"),
                t,
                name.map(|n| format!("n{n}")).as_deref(),
                plan.map(|p| format!("p{p}")).as_deref(),
            );
            if name.is_none() && plan.is_none() {
                c.name = Some("n0".into());
            }
            if prio == 1 {
                c.priority = Priority::High;
            }
            c
        })
}

proptest! {
    /// Every message is accounted for exactly once; one record per email; every sent field is the
    /// newest value for that email and field, and is neither stale nor a no-op against the synced state.
    #[test]
    fn coalescing_keeps_latest_and_loses_nothing(
        changes in proptest::collection::vec(arb_change(), 0..40),
        synced_t in proptest::collection::vec((0..4usize, 0..20i64, 0..3u8), 0..4),
    ) {
        let mut synced: HashMap<Email, SyncedFields> = HashMap::new();
        for (user, t, v) in synced_t {
            synced.entry(Email::parse(&format!("u{user}@x.io")).unwrap()).or_default()
                .insert(FieldKey::Name, synced_at(&format!("n{v}"), at(t)));
        }
        let d = decoded(changes.clone());
        let c = coalesce(&d, &synced);

        let mut seen: Vec<usize> = c.absorbed.clone();
        for r in &c.records { seen.extend(&r.messages); }
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..changes.len()).collect::<Vec<_>>());

        let mut emails: Vec<&str> = c.records.iter().map(|r| r.email.as_str()).collect();
        emails.sort_unstable();
        let before = emails.len();
        emails.dedup();
        prop_assert_eq!(before, emails.len());

        for r in &c.records {
            prop_assert!(!r.fields.is_empty());
            for (key, w) in &r.fields {
                let newest = changes.iter().filter(|ch| ch.email == r.email)
                    .filter_map(|ch| ch.fields().into_iter().find(|(k, _)| k == key).map(|(_, v)| (ch.precedence(), ch.change_id, v)))
                    .max().unwrap();
                prop_assert_eq!(&newest.2, &w.value);
                if let Some(s) = synced.get(&r.email).and_then(|f| f.get(key)) {
                    prop_assert!(s.precedence < w.precedence);
                    prop_assert_ne!(&s.value, &w.value);
                }
            }
        }
        for w in c.records.windows(2) {
            prop_assert!(w[0].priority >= w[1].priority);
        }
    }
}

// ---- precision and ties -------------------------------------------------------------------------

fn named(email: &str, name: &str, p: Precedence) -> Change {
    let mut c = change(email, 0, Some(name), None);
    c.occurred_at = p.occurred_at;
    c.accepted_at = p.accepted_at;
    c.position = p.position;
    c
}

fn name_winner(c: &Coalesced, email: &str) -> Option<String> {
    c.records
        .iter()
        .find(|r| r.email.as_str() == email)
        .and_then(|r| r.subscriber().name)
}

/// Rule: within one request a later change wins a tie. Two changes to one field without `occurred_at`
/// share the request's timestamps; the one later in the array wins whatever the change ids or the
/// order the messages were received in (the reproduction: FIRST sometimes won).
#[test]
fn within_a_request_the_later_change_wins_a_tie() {
    let t = at(0);
    for round in 0..64 {
        let request = RequestId::new();
        let mut first = named(
            "a@x.io",
            "FIRST",
            Precedence {
                occurred_at: t,
                accepted_at: t,
                position: 0,
            },
        );
        let mut second = named(
            "a@x.io",
            "SECOND",
            Precedence {
                occurred_at: t,
                accepted_at: t,
                position: 1,
            },
        );
        first.request_id = request;
        second.request_id = request;
        let input = if round % 2 == 0 {
            vec![first, second]
        } else {
            vec![second, first]
        };
        let c = coalesce(&decoded(input), &HashMap::new());
        assert_eq!(
            name_winner(&c, "a@x.io").as_deref(),
            Some("SECOND"),
            "round {round}"
        );
    }
}

/// Rule: the same tie split across runs ends the same way. SECOND delivered first, FIRST later: stale.
/// FIRST delivered first, SECOND later: sent.
#[test]
fn a_tie_split_across_runs_is_settled_as_within_one() {
    let t = at(0);
    let p = |position| Precedence {
        occurred_at: t,
        accepted_at: t,
        position,
    };
    let email = Email::parse("a@x.io").unwrap();
    let synced = |name: &str, position| {
        HashMap::from([(
            email.clone(),
            SyncedFields::from([(
                FieldKey::Name,
                SyncedField {
                    value: name.into(),
                    precedence: p(position),
                },
            )]),
        )])
    };
    let late_first = coalesce(
        &decoded(vec![named("a@x.io", "FIRST", p(0))]),
        &synced("SECOND", 1),
    );
    assert_eq!((late_first.records.len(), late_first.skipped_stale), (0, 1));
    let late_second = coalesce(
        &decoded(vec![named("a@x.io", "SECOND", p(1))]),
        &synced("FIRST", 0),
    );
    assert_eq!(
        name_winner(&late_second, "a@x.io").as_deref(),
        Some("SECOND")
    );
    // Across requests with equal occurred_at, the later-accepted request wins, in one run or across runs.
    let later_request = Precedence {
        occurred_at: t,
        accepted_at: t + chrono::TimeDelta::nanoseconds(1),
        position: 0,
    };
    let c = coalesce(
        &decoded(vec![named("a@x.io", "LATER", later_request)]),
        &synced("EARLIER", 5),
    );
    assert_eq!(name_winner(&c, "a@x.io").as_deref(), Some("LATER"));
}

/// Rule: never backwards, to the nanosecond. A change 400 µs (or 1 ns) older than the synced field is
/// stale; one 1 ns newer is sent.
#[test]
fn a_sub_millisecond_older_change_is_stale() {
    let t = at(0) + chrono::TimeDelta::microseconds(700);
    let email = Email::parse("a@x.io").unwrap();
    let synced = HashMap::from([(
        email,
        SyncedFields::from([(FieldKey::Name, synced_at("new", t))]),
    )]);
    for older in [
        chrono::TimeDelta::microseconds(400),
        chrono::TimeDelta::nanoseconds(1),
    ] {
        let mut old = change("a@x.io", 0, Some("old"), None);
        old.occurred_at = t - older;
        old.accepted_at = t + chrono::TimeDelta::seconds(5); // accepted later: does not matter
        let c = coalesce(&decoded(vec![old]), &synced);
        assert_eq!(
            (c.records.len(), c.skipped_stale),
            (0, 1),
            "{older:?} older was sent"
        );
    }
    let mut newer = change("a@x.io", 0, Some("newer"), None);
    newer.occurred_at = t + chrono::TimeDelta::nanoseconds(1);
    newer.accepted_at = t - chrono::TimeDelta::seconds(5); // accepted earlier: does not matter
    let c = coalesce(&decoded(vec![newer]), &synced);
    assert_eq!(name_winner(&c, "a@x.io").as_deref(), Some("newer"));
}

/// Offsets that straddle a millisecond boundary, so truncation to milliseconds would tie or invert them.
fn sub_ms_offset() -> impl Strategy<Value = i64> {
    prop::sample::select(vec![
        0i64, 1, 400_000, 999_999, 1_000_000, 1_000_001, 1_400_000,
    ])
}

fn arb_precedence() -> impl Strategy<Value = Precedence> {
    (sub_ms_offset(), 0..3i64, 0..4u32).prop_map(|(occurred_ns, accepted_ns, position)| {
        let base = at(0) + chrono::TimeDelta::microseconds(123);
        Precedence {
            occurred_at: base + chrono::TimeDelta::nanoseconds(occurred_ns),
            accepted_at: base + chrono::TimeDelta::nanoseconds(accepted_ns * 500_000),
            position,
        }
    })
}

/// Distinct changes to one field of one user (a precedence identifies a change: one request, one
/// position), some delivered twice, in every order.
fn arb_one_field_changes() -> impl Strategy<Value = Vec<Change>> {
    (
        prop::collection::btree_set(arb_precedence(), 1..12),
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    )
        .prop_map(|(precedences, copies)| {
            let mut changes: Vec<Change> = precedences
                .into_iter()
                .enumerate()
                .map(|(i, p)| named("a@x.io", &format!("v{i}"), p))
                .collect();
            let originals = changes.len();
            for c in copies {
                changes.push(changes[c.index(originals)].clone());
            }
            changes
        })
        .prop_shuffle()
}

proptest! {
    /// Rule: for any set of changes to one field, the winner is the change with the maximal
    /// (occurred_at, accepted_at, position), whatever order the messages arrive in; against synced
    /// state it is sent only if its precedence is above the synced one.
    #[test]
    fn the_winner_is_the_maximal_precedence_whatever_the_order(
        changes in arb_one_field_changes(),
        reversed in any::<bool>(),
        synced in proptest::option::of(arb_precedence()),
    ) {
        let mut changes = changes;
        if reversed { changes.reverse(); }
        let best = changes.iter().max_by_key(|c| c.precedence()).unwrap().clone();
        let c = coalesce(&decoded(changes.clone()), &HashMap::new());
        prop_assert_eq!(c.records.len(), 1);
        let w = &c.records[0].fields[&FieldKey::Name];
        prop_assert_eq!(w.precedence, best.precedence());
        prop_assert_eq!(&w.value, best.name.as_ref().unwrap());
        prop_assert_eq!(w.change_id, best.change_id);

        if let Some(p) = synced {
            let state = HashMap::from([(best.email.clone(), SyncedFields::from([(
                FieldKey::Name, SyncedField { value: "synced".into(), precedence: p },
            )]))]);
            let c = coalesce(&decoded(changes), &state);
            let sent = c.records.first().and_then(|r| r.fields.get(&FieldKey::Name));
            prop_assert_eq!(sent.is_some(), best.precedence() > p);
            if let Some(w) = sent { prop_assert_eq!(w.change_id, best.change_id); }
        }
    }
}
