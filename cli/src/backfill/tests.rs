//! The backfill's parts on their own: both formats, chunking, keys, state, the refused-rows file, the
//! API's answers (the send loop over HTTP is in `send_tests.rs`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use sluice::ports::IdempotencyKey;

use super::chunk::{self, MAX_BODY};
use super::client::{Answer, classify_for_tests};
use super::source::{self, Format, Raw};
use super::state::{self, State};
use super::*;

fn change(row: &source::Row) -> Value {
    serde_json::from_str(row.change.as_ref().unwrap()).unwrap()
}

pub(super) fn jsonl(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"email\":\"u{i}@backfill.test\",\"name\":\"User {i}\"}}\n"))
        .collect()
}

#[test]
fn json_lines_become_bulk_changes_and_bad_lines_are_refused_with_their_line() {
    let text = "{\"email\":\"a@x.test\",\"name\":\"A\"}\n\n\
                {\"email\":\"b@x.test\",\"priority\":\"high\",\"refused_reason\":\"old\"}\r\n\
                not json\n[1,2]\n";
    let input = source::parse(text.as_bytes(), Format::Jsonl).unwrap();
    assert_eq!(input.rows.len(), 4, "the blank line is no row");
    assert_eq!(
        change(&input.rows[0]),
        json!({"email": "a@x.test", "name": "A", "priority": "bulk"})
    );
    // A row's own priority is kept; a refused-rows file's reason is dropped.
    assert_eq!(
        change(&input.rows[1]),
        json!({"email": "b@x.test", "priority": "high"})
    );
    assert_eq!((input.rows[2].line, input.rows[3].line), (4, 5));
    assert!(
        input.rows[2]
            .change
            .as_ref()
            .unwrap_err()
            .starts_with("not valid JSON")
    );
    assert!(
        input.rows[3]
            .change
            .as_ref()
            .unwrap_err()
            .contains("not a JSON object")
    );
    assert_eq!(input.rows[2].raw, Raw::Line("not json".into()));
}

#[test]
fn csv_columns_map_to_change_fields_and_empty_cells_are_unset() {
    let text = "email,name,time_zone,occurred_at,custom_fields.plan,custom_fields.seats\n\
                a@x.test,\"Doe, Jane\",Europe/Amsterdam,2026-01-02T03:04:05Z,pro,3\n\
                b@x.test,,,,,7\n\
                c@x.test,short\n";
    let input = source::parse(text.as_bytes(), Format::Csv).unwrap();
    assert_eq!(input.rows.len(), 3);
    assert_eq!(
        change(&input.rows[0]),
        json!({"email": "a@x.test", "name": "Doe, Jane", "time_zone": "Europe/Amsterdam",
               "occurred_at": "2026-01-02T03:04:05Z", "priority": "bulk",
               "custom_fields": {"plan": "pro", "seats": "3"}})
    );
    assert_eq!(
        change(&input.rows[1]),
        json!({"email": "b@x.test", "priority": "bulk", "custom_fields": {"seats": "7"}})
    );
    // A short record is refused and kept whole, with its line.
    let short = &input.rows[2];
    assert_eq!(short.line, 4);
    assert_eq!(short.change, Err("2 fields where the header has 6".into()));
    assert_eq!(
        short.raw,
        Raw::Fields(vec!["c@x.test".into(), "short".into()])
    );
}

#[test]
fn a_csv_header_the_backfill_cannot_map_is_an_error_before_anything_is_sent() {
    for (header, says) in [
        ("email,nmae\n", "'nmae' is not a change field"),
        ("email,name,name\n", "'name' appears twice"),
        ("name,time_zone\n", "no 'email' column"),
        (
            "email,custom_fields.\n",
            "'custom_fields.' is not a change field",
        ),
    ] {
        let err = source::parse(header.as_bytes(), Format::Csv).unwrap_err();
        assert!(err.to_string().contains(says), "{header}: {err}");
    }
}

#[test]
fn the_format_comes_from_the_extension() {
    assert_eq!(Format::from_path("a/users.CSV".as_ref()), Some(Format::Csv));
    assert_eq!(Format::from_path("u.ndjson".as_ref()), Some(Format::Jsonl));
    assert_eq!(Format::from_path("u.jsonl".as_ref()), Some(Format::Jsonl));
    assert_eq!(Format::from_path("u.txt".as_ref()), None);
}

#[test]
fn chunks_hold_at_most_the_chunk_size_in_file_order_and_skip_refused_rows() {
    let mut text = jsonl(2_500);
    text.insert_str(0, "oops\n");
    let input = source::parse(text.as_bytes(), Format::Jsonl).unwrap();
    let chunks = chunk::plan(&input.rows, 1_000);
    let sizes: Vec<usize> = chunks.iter().map(|c| c.rows.len()).collect();
    assert_eq!(sizes, [1_000, 1_000, 500]);
    let all: Vec<usize> = chunks.iter().flat_map(|c| c.rows.clone()).collect();
    assert_eq!(
        all,
        (1..=2_500).collect::<Vec<_>>(),
        "every change once, in order"
    );
    assert_eq!(chunk::plan(&input.rows, 5_000).len(), 3, "never over 1,000");
    assert_eq!(chunk::plan(&input.rows, 700).len(), 4);
}

#[test]
fn chunks_stay_under_the_body_limit() {
    let big = "x".repeat(3_000);
    let text: String = (0..1_000)
        .map(|i| format!("{{\"email\":\"u{i}@x.test\",\"name\":\"{big}\"}}\n"))
        .collect();
    let input = source::parse(text.as_bytes(), Format::Jsonl).unwrap();
    let chunks = chunk::plan(&input.rows, 1_000);
    assert!(chunks.len() > 1);
    for c in &chunks {
        assert!(chunk::body(&input.rows, &c.rows).len() <= MAX_BODY + 20);
    }
    assert_eq!(chunks.iter().map(|c| c.rows.len()).sum::<usize>(), 1_000);
}

#[test]
fn chunk_keys_are_stable_across_runs_and_differ_by_file_position_and_content() {
    let text = jsonl(2_100);
    let keys = |text: &str| -> Vec<String> {
        let input = source::parse(text.as_bytes(), Format::Jsonl).unwrap();
        chunk::plan(&input.rows, 1_000)
            .iter()
            .map(|c| c.key(&input.digest, &c.rows))
            .collect()
    };
    let first = keys(&text);
    assert_eq!(first, keys(&text), "the same file gives the same keys");
    assert_eq!(first.len(), 3);
    assert!(first[0] != first[1] && first[1] != first[2]);
    let other = keys(&text.replace("User 5\"", "User five\""));
    assert!(
        first.iter().zip(&other).all(|(a, b)| a != b),
        "another file, other keys"
    );
    for key in &first {
        assert!(IdempotencyKey::parse(key).is_ok(), "{key}");
    }
    // Leaving a refused row out changes the key (the API refuses a key reused with another body).
    let input = source::parse(text.as_bytes(), Format::Jsonl).unwrap();
    let c = &chunk::plan(&input.rows, 1_000)[0];
    let refused = BTreeMap::from([(3_usize, "bad")]);
    let sending = c.sendable(&refused);
    assert_eq!(sending.len(), 999);
    assert_ne!(c.key(&input.digest, &sending), first[0]);
    assert_eq!(
        c.key(&input.digest, &sending),
        c.key(&input.digest, &c.sendable(&refused))
    );
}

pub(super) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-backfill-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn the_state_round_trips_and_belongs_to_one_version_of_the_file() {
    let input = scratch("users.csv");
    let path = state::path_for(&input);
    assert_eq!(path.file_name().unwrap(), "users.csv.backfill-state.json");
    assert_eq!(
        state::load(&path, "d1").unwrap(),
        State::new("d1"),
        "none yet"
    );
    let mut s = State::new("d1");
    s.chunks_done = 7;
    s.accepted = 6_990;
    s.refused.insert(12, "email: not an email".into());
    state::save(&path, &s).unwrap();
    assert_eq!(state::load(&path, "d1").unwrap(), s);
    let err = state::load(&path, "d2").unwrap_err().to_string();
    assert!(
        err.contains("the input changed") && err.contains("7 of its chunks"),
        "{err}"
    );
    std::fs::write(&path, "{").unwrap();
    assert!(state::load(&path, "d1").is_err());
}

#[test]
fn refused_rows_are_written_in_the_input_format_and_read_back_without_the_reason() {
    let csv_text = "email,name\na@x.test,A\nbad,B\nc@x.test,C,extra\n";
    let input = source::parse(csv_text.as_bytes(), Format::Csv).unwrap();
    let by_api = BTreeMap::from([(1_usize, "email: not a valid email address".to_owned())]);
    let all = refused::all(&input, &by_api);
    assert_eq!(all.len(), 2);
    let written = String::from_utf8(refused::render(&input, &all).unwrap()).unwrap();
    assert_eq!(
        written,
        "email,name,refused_reason\n\
         bad,B,line 3: email: not a valid email address\n\
         c@x.test,C,extra,line 4: 3 fields where the header has 2\n"
    );
    // The fixed file reads like any other: the reason column is ignored.
    let again = source::parse(written.as_bytes(), Format::Csv).unwrap();
    assert_eq!(
        change(&again.rows[0]),
        json!({"email": "bad", "name": "B", "priority": "bulk"})
    );

    let lines =
        "{\"email\":\"a@x.test\",\"name\":\"A\"}\n{\"email\":\"bad\",\"name\":\"B\"}\n{oops\n";
    let input = source::parse(lines.as_bytes(), Format::Jsonl).unwrap();
    let all = refused::all(&input, &BTreeMap::from([(1, "email: bad".to_owned())]));
    let written = String::from_utf8(refused::render(&input, &all).unwrap()).unwrap();
    let mut out = written.lines();
    let first: Value = serde_json::from_str(out.next().unwrap()).unwrap();
    assert_eq!(
        first,
        json!({"email": "bad", "name": "B", "refused_reason": "email: bad"})
    );
    assert_eq!(
        out.next(),
        Some("{oops"),
        "a line that is no object goes back as it was"
    );
    assert_eq!(
        refused::path_for("d/u.jsonl".as_ref(), Format::Jsonl),
        PathBuf::from("d/u.jsonl.refused.jsonl")
    );
}

#[test]
fn the_apis_answers_are_classified() {
    assert_eq!(
        classify_for_tests(202, r#"{"request_id":"r","accepted":3,"change_ids":[]}"#),
        Ok(Answer::Accepted {
            accepted: 3,
            replayed: false
        })
    );
    let problem = json!({"type": "urn:sluice:problem:invalid-changes", "title": "t", "status": 422,
        "detail": "d", "errors": [{"index": 2, "field": "email", "message": "bad"},
                                  {"index": 2, "field": "name", "message": "long"}]});
    assert_eq!(
        classify_for_tests(422, &problem.to_string()),
        Ok(Answer::Refused(vec![
            (2, "email: bad".into()),
            (2, "name: long".into())
        ]))
    );
    let reused = json!({"type": "urn:sluice:problem:idempotency-key-reused", "detail": "reused"});
    assert!(
        classify_for_tests(422, &reused.to_string())
            .unwrap_err()
            .contains("refused the request")
    );
    for status in [409, 429, 500, 503] {
        assert!(
            classify_for_tests(status, "{}")
                .unwrap_err()
                .starts_with("transient"),
            "{status}"
        );
    }
    assert!(
        classify_for_tests(401, "{}")
            .unwrap_err()
            .contains("--api-key")
    );
}
