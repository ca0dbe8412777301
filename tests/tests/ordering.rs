//! "Latest wins, never backwards" at full precision, on LocalStack: the DynamoDB sync state against its
//! guard (nanosecond precedence, old millisecond items), and black-box through the real ingest handler
//! (real API Gateway fixture), the real drain handler (scheduled-event fixture) and the provider emulator.
//! Each test names the rule it guards.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use ingest::AwsIngest;
use lambda_http::Request;
use serde_json::{Value, json};
use sluice::adapters::dynamo::DynamoState;
use sluice::config::{FromVars, IngestConfig};
use sluice::domain::{ChangeMessage, Email, FieldKey, Precedence};
use sluice::ports::{InFlight, SyncStateStore, SyncWrite, SyncedField, SyncedFields};
use sluice_tests::emulator::{EmulatorConfig, EmulatorHandle};

use common::{TestStack, invoke};

const REST_POST: &str = include_str!("../fixtures/apigw-post-changes.json");

// ---- driving the functions -----------------------------------------------------------------------------

fn ingest_for(stack: &TestStack) -> AwsIngest {
    let env: HashMap<&str, String> = HashMap::from([
        ("QUEUE_URL", stack.outputs.queue_url.clone()),
        ("TABLE_NAME", stack.outputs.table_name.clone()),
        ("INGEST_API_KEY", String::new()),
    ]);
    let config = IngestConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
    AwsIngest::aws(&config, &stack.sdk)
}

/// `POST /v1/changes` with this body through the real handler, as API Gateway would deliver it; 202 asserted.
async fn post(ingest: &AwsIngest, body: &Value) -> Value {
    let mut e: Value = serde_json::from_str(REST_POST).unwrap();
    e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body.to_string()));
    e["isBase64Encoded"] = json!(true);
    e["httpMethod"] = json!("POST");
    e["path"] = json!("/v1/changes");
    e["headers"]["Content-Type"] = json!("application/json");
    e["multiValueHeaders"]["Content-Type"] = json!(["application/json"]);
    let req: Request = lambda_http::request::from_str(&e.to_string()).unwrap();
    let r = ingest.handle(req).await.unwrap();
    let answer: Value = serde_json::from_slice(r.body().as_ref()).unwrap();
    assert_eq!(r.status().as_u16(), 202, "{answer}");
    answer
}

fn latest_name(emulator: &EmulatorHandle, email: &str) -> Option<String> {
    emulator.latest().get(email).and_then(|s| s.name.clone())
}

/// A recent instant on a whole second, so sub-second offsets land where the test says (same millisecond
/// or not) and stay well inside ingest's accepted range.
fn recent_second() -> DateTime<Utc> {
    (Utc::now() - TimeDelta::minutes(1)).trunc_subsecs(0)
}

fn rfc3339_ns(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

// ---- the DynamoDB sync state ---------------------------------------------------------------------------

fn name_field(value: &str, occurred_at: DateTime<Utc>, position: u32) -> SyncedFields {
    SyncedFields::from([(
        FieldKey::Name,
        SyncedField {
            value: value.into(),
            precedence: Precedence {
                occurred_at,
                accepted_at: occurred_at,
                position,
            },
        },
    )])
}

/// A write of one user, whose state `load` found (the hint only picks UPDATE before INSERT).
fn write(email: &Email, fields: SyncedFields) -> SyncWrite {
    SyncWrite {
        email: email.clone(),
        fields,
        known: true,
    }
}

async fn synced_name(state: &DynamoState, email: &Email) -> SyncedField {
    state.load(std::slice::from_ref(email)).await.unwrap()[email][&FieldKey::Name].clone()
}

/// A user item as the sync-state write before full precision left it: `{v, t: ms}` for the name.
async fn put_millisecond_item(stack: &TestStack, email: &Email, t: DateTime<Utc>) {
    stack
        .ddb
        .put_item()
        .table_name(&stack.outputs.table_name)
        .item("pk", AttributeValue::S(format!("user#{}", email.as_str())))
        .item(
            "f.name",
            AttributeValue::M(HashMap::from([
                ("v".to_string(), AttributeValue::S("old-format".into())),
                (
                    "t".to_string(),
                    AttributeValue::N(t.timestamp_millis().to_string()),
                ),
            ])),
        )
        .send()
        .await
        .unwrap();
}

async fn user_item(stack: &TestStack, email: &Email) -> HashMap<String, AttributeValue> {
    stack
        .ddb
        .get_item()
        .table_name(&stack.outputs.table_name)
        .key("pk", AttributeValue::S(format!("user#{}", email.as_str())))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap()
}

/// Rule: never backwards, to the nanosecond, in DynamoDB. A write 400 µs (and one 1 ns) older than the
/// recorded field is refused by the condition; the same change recorded again and a 1 ns newer one are
/// taken; what is read back is exact to the nanosecond.
#[tokio::test]
async fn sync_state_refuses_a_sub_millisecond_older_write() {
    let stack = common::stack().await;
    let state = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let email = Email::parse("a@x.io").unwrap();
    let t = recent_second() + TimeDelta::nanoseconds(700_123_456);

    state
        .record(&[write(&email, name_field("new", t, 0))])
        .await
        .unwrap();
    let read = synced_name(&state, &email).await;
    assert_eq!(
        (read.value.as_str(), read.precedence.occurred_at),
        ("new", t)
    );

    for older in [TimeDelta::microseconds(400), TimeDelta::nanoseconds(1)] {
        state
            .record(&[write(&email, name_field("old", t - older, 9))])
            .await
            .unwrap();
        assert_eq!(
            synced_name(&state, &email).await.value,
            "new",
            "{older:?} older overwrote"
        );
    }
    // Same millisecond, same nanosecond, later in its request: the later change wins the tie.
    state
        .record(&[write(&email, name_field("new", t, 0))])
        .await
        .unwrap();
    state
        .record(&[write(&email, name_field("tie", t, 1))])
        .await
        .unwrap();
    assert_eq!(synced_name(&state, &email).await.value, "tie");
    let newer = t + TimeDelta::nanoseconds(1);
    state
        .record(&[write(&email, name_field("newer", newer, 0))])
        .await
        .unwrap();
    let read = synced_name(&state, &email).await;
    assert_eq!(
        (read.value.as_str(), read.precedence.occurred_at),
        ("newer", newer)
    );

    // The item format the module doc states: {v, k, t (ms)}.
    let item = user_item(&stack, &email).await;
    let field = item["f.name"].as_m().unwrap();
    assert_eq!(field["v"].as_s().unwrap(), "newer");
    assert_eq!(
        field["t"].as_n().unwrap(),
        &newer.timestamp_millis().to_string()
    );
    assert_eq!(field["k"].as_s().unwrap().len(), 58);
    stack.destroy().await;
}

/// Rule: an item written with millisecond `t` (before nanoseconds were stored) keeps working: it is read,
/// nothing older — nor anything in its own millisecond, which might be older — passes it, in the drain's
/// comparison or in DynamoDB's condition; a change from a later millisecond replaces it in the new format.
#[tokio::test]
async fn an_old_millisecond_item_is_read_and_guarded() {
    let stack = common::stack().await;
    let state = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let email = Email::parse("legacy@x.io").unwrap();
    let t = recent_second() + TimeDelta::milliseconds(5);
    // What the previous `record_update` wrote: `{v, t: ms}`.
    put_millisecond_item(&stack, &email, t).await;

    let read = synced_name(&state, &email).await;
    assert_eq!(read.value, "old-format");
    // Read as the latest its millisecond could hold: a change 400 µs into that millisecond is not newer.
    let inside = name_field("inside", t + TimeDelta::microseconds(400), 999);
    assert!(read.precedence >= inside[&FieldKey::Name].precedence);
    assert!(
        read.precedence
            < name_field("", t + TimeDelta::milliseconds(1), 0)[&FieldKey::Name].precedence
    );

    // DynamoDB's own guard agrees (the drain would not send these, but a racing run might write them).
    for (value, at) in [
        ("older", t - TimeDelta::microseconds(400)),
        ("inside", t + TimeDelta::microseconds(400)),
        ("last-ns", t + TimeDelta::nanoseconds(999_999)),
    ] {
        state
            .record(&[write(&email, name_field(value, at, 0))])
            .await
            .unwrap();
        assert_eq!(
            synced_name(&state, &email).await.value,
            "old-format",
            "{value} passed"
        );
    }
    let next_ms = t + TimeDelta::milliseconds(1);
    state
        .record(&[write(&email, name_field("next", next_ms, 0))])
        .await
        .unwrap();
    let read = synced_name(&state, &email).await;
    assert_eq!(
        (read.value.as_str(), read.precedence.occurred_at),
        ("next", next_ms)
    );
    assert!(
        user_item(&stack, &email).await["f.name"]
            .as_m()
            .unwrap()
            .contains_key("k")
    );
    stack.destroy().await;
}

/// Rule: a record with more fields than one UpdateItem carries (DynamoDB's 4 KB expression limit) is
/// written whole, and a stale field among them is kept back while the rest are written.
#[tokio::test]
async fn a_record_of_many_fields_is_written_whole_and_guarded_per_field() {
    let stack = common::stack().await;
    let state = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let email = Email::parse("wide@x.io").unwrap();
    let t = recent_second();
    let field = |value: String, occurred_at| SyncedField {
        value,
        precedence: Precedence {
            occurred_at,
            accepted_at: occurred_at,
            position: 0,
        },
    };
    let newer = t + TimeDelta::microseconds(1);
    // One field already holds a newer value.
    state
        .record(&[write(
            &email,
            BTreeMap::from([(FieldKey::Custom("k37".into()), field("kept".into(), newer))]),
        )])
        .await
        .unwrap();
    let wide: SyncedFields = (0..80)
        .map(|i| (FieldKey::Custom(format!("k{i}")), field(format!("v{i}"), t)))
        .collect();
    state.record(&[write(&email, wide)]).await.unwrap();
    let got = state.load(std::slice::from_ref(&email)).await.unwrap()[&email].clone();
    assert_eq!(got.len(), 80);
    for i in 0..80 {
        let expected = if i == 37 {
            "kept".to_string()
        } else {
            format!("v{i}")
        };
        assert_eq!(got[&FieldKey::Custom(format!("k{i}"))].value, expected);
    }
    stack.destroy().await;
}

fn at(occurred_at: DateTime<Utc>, position: u32) -> Precedence {
    Precedence {
        occurred_at,
        accepted_at: occurred_at,
        position,
    }
}

fn synced(value: &str, precedence: Precedence) -> SyncedField {
    SyncedField {
        value: value.into(),
        precedence,
    }
}

/// Rule: one batched write records many users (more than a call's 25 statements), each statement guarded
/// on its own: new users are inserted, known ones updated, a field holding a newer value is kept while
/// the user's other fields in the same statement are written, an equal precedence (the same change
/// again) writes, an old millisecond item is guarded and replaced from a later millisecond — and a wrong
/// hint (a known user that is new, a new one that exists) costs a retry, never a field.
#[tokio::test]
async fn one_batched_write_inserts_updates_and_guards_each_field() {
    let stack = common::stack().await;
    let state = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let t = recent_second() + TimeDelta::milliseconds(5);
    let plan = FieldKey::Custom("plan".into());
    let email = |i: usize| Email::parse(&format!("u{i}@batch.io")).unwrap();
    // Users 0..30 exist with `plan` newer than what the batch brings (and `name` at `t`).
    let existing: Vec<SyncWrite> = (0..30)
        .map(|i| SyncWrite {
            email: email(i),
            fields: SyncedFields::from([
                (FieldKey::Name, synced("first", at(t, 0))),
                (
                    plan.clone(),
                    synced("kept", at(t + TimeDelta::nanoseconds(1), 0)),
                ),
            ]),
            known: i % 2 == 0, // half of them with a wrong hint: they are new
        })
        .collect();
    state.record(&existing).await.unwrap();
    // Users 30..40 hold old millisecond items: `{v, t}`; the batch brings 30..35 a change in that same
    // millisecond (refused) and 35..40 one from the next millisecond (taken).
    for i in 30..40 {
        put_millisecond_item(&stack, &email(i), t).await;
    }
    // The batch: 70 users (three calls); users 40..70 are new.
    let batch: Vec<SyncWrite> = (0..70)
        .map(|i| {
            let name_at = match i {
                30..35 => at(t + TimeDelta::microseconds(400), 9),
                35..40 => at(t + TimeDelta::milliseconds(1), 0),
                _ => at(t, 0),
            };
            SyncWrite {
                email: email(i),
                fields: SyncedFields::from([
                    (FieldKey::Name, synced("again", name_at)),
                    (plan.clone(), synced("batch", at(t, 0))),
                ]),
                // Wrong for users 30..35 (exist) and 60..70 (new).
                known: i < 30 || (35..40).contains(&i) || i >= 60,
            }
        })
        .collect();
    state.record(&batch).await.unwrap();

    let emails: Vec<Email> = (0..70).map(email).collect();
    let got = state.load(&emails).await.unwrap();
    for i in 0..70 {
        let user = &got[&email(i)];
        let (name, plan_value) = (&user[&FieldKey::Name].value, &user[&plan].value);
        let expected = match i {
            0..30 => ("again", "kept"),
            30..35 => ("old-format", "batch"),
            _ => ("again", "batch"),
        };
        assert_eq!((name.as_str(), plan_value.as_str()), expected, "user {i}");
    }
    stack.destroy().await;
}

/// Rule (measured, issue 11): recording 1,000 users is one port call that takes about a second on
/// LocalStack (where single UpdateItems ran at ~145/s), for new users and again for known ones.
#[tokio::test]
async fn a_thousand_users_are_recorded_in_one_batched_write() {
    let stack = common::stack().await;
    let state = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let t = recent_second();
    let users = |value: &str, p: Precedence, known: bool| -> Vec<SyncWrite> {
        (0..1_000)
            .map(|i| SyncWrite {
                email: Email::parse(&format!("user{i}@bench.io")).unwrap(),
                fields: SyncedFields::from([
                    (FieldKey::Name, synced(value, p)),
                    (FieldKey::Custom("plan".into()), synced(value, p)),
                ]),
                known,
            })
            .collect()
    };
    for (what, batch) in [
        ("insert (new users)", users("a", at(t, 0), false)),
        ("update (known users)", users("b", at(t, 1), true)),
        (
            "update refused (older)",
            users("c", at(t - TimeDelta::seconds(1), 0), true),
        ),
    ] {
        let started = std::time::Instant::now();
        state.record(&batch).await.unwrap();
        eprintln!(
            "record of 1,000 users, {what}: {} ms",
            started.elapsed().as_millis()
        );
    }
    let emails: Vec<Email> = (0..1_000)
        .map(|i| Email::parse(&format!("user{i}@bench.io")).unwrap())
        .collect();
    let got = state.load(&emails).await.unwrap();
    assert_eq!(got.len(), 1_000);
    assert!(got.values().all(|f| f[&FieldKey::Name].value == "b"));
    stack.destroy().await;
}

/// Rule: the in-flight guard costs a run one note, not one item per record. A note is read back by a
/// later run until resolved; resolving keeps only the open records (tried, not delivered); a crashed
/// run's note stays listed; a note older than a day is dropped from the index on read.
#[tokio::test]
async fn in_flight_notes_are_per_run_and_resolved_down_to_open_records() {
    let stack = common::stack().await;
    let state = DynamoState::new(stack.ddb.clone(), &stack.outputs.table_name);
    let t = recent_second();
    let email = |i: usize| Email::parse(&format!("n{i}@note.io")).unwrap();
    let note = |range: std::ops::Range<usize>, p: Precedence| -> Vec<(Email, InFlight)> {
        range
            .map(|i| (email(i), InFlight::from([(FieldKey::Name, p)])))
            .collect()
    };
    // Run A notes 5,000 users (more than one chunk), then resolves with users 7 and 8 still open.
    state
        .intend("run-a", &note(0..5_000, at(t, 0)))
        .await
        .unwrap();
    let asked: Vec<Email> = [0, 7, 8, 4_999, 6_000].into_iter().map(email).collect();
    let got = state.in_flight(&asked).await.unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[&email(4_999)][&FieldKey::Name], at(t, 0));
    state.resolve("run-a", &note(7..9, at(t, 0))).await.unwrap();
    let got = state.in_flight(&asked).await.unwrap();
    assert_eq!(
        got.keys().collect::<std::collections::BTreeSet<_>>(),
        [&email(7), &email(8)].into()
    );

    // Run B crashes after its note (never resolves): its newer precedence for user 7 wins the merge.
    state.intend("run-b", &note(7..8, at(t, 5))).await.unwrap();
    let got = state.in_flight(&asked).await.unwrap();
    assert_eq!(got[&email(7)][&FieldKey::Name], at(t, 5));
    assert_eq!(got[&email(8)][&FieldKey::Name], at(t, 0));

    // A note listed more than a day ago is ignored and unlisted.
    let stale = (Utc::now() - TimeDelta::days(2)).timestamp();
    stack
        .ddb
        .update_item()
        .table_name(&stack.outputs.table_name)
        .key("pk", AttributeValue::S("inflight#runs".into()))
        .update_expression("SET #n = :v")
        .expression_attribute_names("#n", "note#run-b")
        .expression_attribute_values(":v", AttributeValue::S(format!("{stale} 1")))
        .send()
        .await
        .unwrap();
    let got = state.in_flight(&asked).await.unwrap();
    assert_eq!(got[&email(7)][&FieldKey::Name], at(t, 0));
    let index = stack
        .ddb
        .get_item()
        .table_name(&stack.outputs.table_name)
        .key("pk", AttributeValue::S("inflight#runs".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let listed: Vec<&String> = index.keys().filter(|k| k.starts_with("note#")).collect();
    assert_eq!(listed, [&"note#run-a-open".to_string()]);

    stack.destroy().await;
}

// ---- black-box: ingest → queue → drain → provider ------------------------------------------------------

/// Rule: within one request a later change wins a tie. The reproduction — two changes to one field, no
/// `occurred_at` — plus 30 more such pairs in one request (the old tie-break by random id would get all 31
/// right once in 2^31): the provider ends with the later value of every pair.
#[tokio::test]
async fn within_one_request_the_later_change_wins_a_tie() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig::default()).await;
    let ingest = ingest_for(&stack);
    post(
        &ingest,
        &json!({"changes":[{"email":"a@x.io","name":"FIRST"},{"email":"a@x.io","name":"SECOND"}]}),
    )
    .await;
    let mut pairs = Vec::new();
    for i in 0..30 {
        let email = format!("u{i}@x.io");
        pairs.push(json!({"email": email, "name": "FIRST", "custom_fields": {"n": "1"}}));
        pairs.push(json!({"email": email, "name": "SECOND"}));
    }
    post(&ingest, &json!({ "changes": pairs })).await;

    let drain = stack.drain(&emulator, &[]).await;
    let report = invoke(&drain).await;
    assert_eq!(report.received, 62, "{report:?}");
    assert_eq!(latest_name(&emulator, "a@x.io").as_deref(), Some("SECOND"));
    for i in 0..30 {
        let email = format!("u{i}@x.io");
        let got = emulator.latest()[&email].clone();
        assert_eq!(got.name.as_deref(), Some("SECOND"), "{email}");
        assert_eq!(
            got.custom_fields["n"], "1",
            "the other field of FIRST is kept"
        );
    }
    assert_eq!(
        stack.depth(&stack.outputs.queue_url).await,
        (0, 0),
        "messages left on the queue"
    );
    stack.destroy().await;
}

/// Receives both messages of a FIRST/SECOND request and lets `first_name`'s come back at once and the other
/// after `later`: the next drain run can take only `first_name`'s change.
async fn release_in_order(stack: &TestStack, first_name: &str, later: i32) {
    let mut held = Vec::new();
    while held.len() < 2 {
        held.extend(stack.receive(&stack.outputs.queue_url, 10, 30).await);
    }
    assert_eq!(held.len(), 2);
    for m in held {
        let change = ChangeMessage::from_body(m.body().unwrap())
            .unwrap()
            .into_change();
        let delay = if change.name.as_deref() == Some(first_name) {
            0
        } else {
            later
        };
        stack
            .sqs
            .change_message_visibility()
            .queue_url(&stack.outputs.queue_url)
            .receipt_handle(m.receipt_handle().unwrap())
            .visibility_timeout(delay)
            .send()
            .await
            .unwrap();
    }
}

/// Rule: the same tie ends the same way when its changes are drained in different runs, in either order:
/// SECOND delivered first leaves FIRST stale; FIRST delivered first is then replaced by SECOND.
#[tokio::test]
async fn a_tie_drained_in_separate_runs_ends_as_within_one() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig::default()).await;
    let ingest = ingest_for(&stack);
    let drain = stack.drain(&emulator, &[("DRAIN_MAX_MESSAGES", "1")]).await;
    for (email, first_out, expected_sends) in [
        ("a@x.io", "SECOND", vec!["SECOND"]),
        ("b@x.io", "FIRST", vec!["FIRST", "SECOND"]),
    ] {
        post(
            &ingest,
            &json!({"changes":[{"email": email, "name":"FIRST"},{"email": email, "name":"SECOND"}]}),
        )
        .await;
        release_in_order(&stack, first_out, 2).await;
        let first = invoke(&drain).await;
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        let second = invoke(&drain).await;
        assert_eq!(
            (first.received, second.received),
            (1, 1),
            "{first:?} {second:?}"
        );
        let sent: Vec<String> = emulator
            .received_for(email)
            .into_iter()
            .filter_map(|r| r.subscriber.name)
            .collect();
        assert_eq!(sent, expected_sends, "{email}: {first_out} drained first");
        assert_eq!(latest_name(&emulator, email).as_deref(), Some("SECOND"));
    }
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (0, 0));
    stack.destroy().await;
}

/// Rule: never backwards, to the nanosecond, end to end. A change 400 µs older than one already delivered
/// — in the same millisecond, which the millisecond sync state could not tell apart — is not sent; a
/// change 1 ns newer is.
#[tokio::test]
async fn a_change_older_by_less_than_a_millisecond_never_overwrites_a_newer_one() {
    let stack = common::stack().await;
    let emulator = common::emulator(EmulatorConfig::default()).await;
    let ingest = ingest_for(&stack);
    let drain = stack.drain(&emulator, &[]).await;
    let t = recent_second() + TimeDelta::microseconds(700);
    let change = |name: &str, at: DateTime<Utc>| json!({"email": "a@x.io", "name": name, "occurred_at": rfc3339_ns(at)});

    post(&ingest, &change("new", t)).await;
    assert_eq!(invoke(&drain).await.delivered_records(), 1);
    // Microsecond precision on the wire, as many clients send it.
    let older =
        (t - TimeDelta::microseconds(400)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    post(
        &ingest,
        &json!({"email": "a@x.io", "name": "old", "occurred_at": older}),
    )
    .await;
    let report = invoke(&drain).await;
    assert_eq!(
        (
            report.received,
            report.delivered_records(),
            report.skipped_stale
        ),
        (1, 0, 1),
        "{report:?}"
    );
    assert_eq!(latest_name(&emulator, "a@x.io").as_deref(), Some("new"));
    assert_eq!(emulator.received_for("a@x.io").len(), 1);

    post(&ingest, &change("newer", t + TimeDelta::nanoseconds(1))).await;
    assert_eq!(invoke(&drain).await.delivered_records(), 1);
    assert_eq!(latest_name(&emulator, "a@x.io").as_deref(), Some("newer"));
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (0, 0));
    stack.destroy().await;
}
