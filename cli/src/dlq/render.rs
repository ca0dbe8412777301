//! What `sluice dlq` prints: the `list` table, everything `show` knows about one message, and the line a
//! redrive ends with.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sluice::adapters::sqs::{ATTR_DETAIL, ATTR_REASON, ATTR_RECEIVE_COUNT, ATTR_SOURCE_MESSAGE_ID};

use super::message::{DlqMessage, ListEntry, RETRIES_EXHAUSTED};
use super::redrive::{RedriveMethod, RedriveOutcome};
use crate::format;

/// The `sluice dlq list` table, with a one-line tally of reasons.
pub fn render_list(messages: &[DlqMessage], now: DateTime<Utc>, limit: u32) -> String {
    if messages.is_empty() {
        return "the DLQ is empty\n".to_owned();
    }
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let entry = ListEntry::new(m, now);
            vec![
                entry.id,
                entry.reason,
                entry.email,
                entry.age_s.map_or_else(|| "?".into(), format::duration),
                entry
                    .receive_count
                    .map_or_else(|| "?".into(), |c| c.to_string()),
                entry
                    .detail
                    .map(|d| format::shorten(&d, 60))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = format::table(
        &["id", "reason", "email", "age", "receives", "detail"],
        &rows,
    );
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for m in messages {
        *tally.entry(m.reason.as_str()).or_default() += 1;
    }
    let tally: Vec<String> = tally.iter().map(|(r, n)| format!("{n} {r}")).collect();
    out.push_str(&format!(
        "\n{} message(s): {}{}\n",
        messages.len(),
        tally.join(", "),
        if messages.len() as u64 >= u64::from(limit) {
            format!(" (first {limit}; --limit for more)")
        } else {
            String::new()
        }
    ));
    out
}

/// `sluice dlq show`: everything about one message, the body pretty-printed when it is JSON.
pub fn render_show(m: &DlqMessage, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<13}{v}\n"));
    line("id", m.id.clone());
    line("reason", m.reason.clone());
    line(
        "detail",
        m.detail.clone().unwrap_or_else(|| match m.reason.as_str() {
            RETRIES_EXHAUSTED => {
                "moved by SQS after maxReceiveCount receives (transient failures)".into()
            }
            _ => "-".into(),
        }),
    );
    line("email", m.email.clone().unwrap_or_else(|| "-".into()));
    line(
        "age",
        match (m.age_s(now), m.sent_at) {
            (Some(age), Some(at)) => format!(
                "{} (sent {})",
                format::duration(age),
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            _ => "?".into(),
        },
    );
    line(
        "receives",
        m.receive_count
            .map_or_else(|| "?".into(), |c| c.to_string()),
    );
    if let Some(source) = &m.source_message_id {
        line("source id", source.clone());
    }
    if let Some(arn) = &m.source_queue_arn {
        line("source queue", arn.clone());
    }
    out.push_str(&other_attributes(m));
    out.push_str("body\n");
    out.push_str(&pretty_body(&m.body));
    out.push('\n');
    out
}

/// The attributes `show` has not already printed on a line of their own.
fn other_attributes(m: &DlqMessage) -> String {
    let shown = [
        ATTR_REASON,
        ATTR_DETAIL,
        ATTR_SOURCE_MESSAGE_ID,
        ATTR_RECEIVE_COUNT,
    ];
    let others: Vec<String> = m
        .attributes
        .iter()
        .filter(|(k, _)| !shown.contains(&k.as_str()))
        .map(|(k, v)| format!("  {k} = {v}\n"))
        .collect();
    if others.is_empty() {
        return String::new();
    }
    format!("attributes\n{}", others.concat())
}

/// The body pretty-printed when it is JSON, else as it is.
fn pretty_body(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned())
}

/// The line printed when a redrive ends.
pub fn render_outcome(outcome: &RedriveOutcome) -> String {
    let how = match outcome.method {
        RedriveMethod::MoveTask => "by SQS (StartMessageMoveTask)",
        RedriveMethod::ClientSide => "from this machine (receive, send, delete)",
    };
    let mut out = format!(
        "moved {} message(s) from the DLQ to the changes queue {how}",
        outcome.moved
    );
    if !outcome.moved_by_lane.is_empty() {
        let lanes: Vec<String> = outcome
            .moved_by_lane
            .iter()
            .rev() // high first
            .map(|(lane, n)| format!("{} {n}", lane.as_str()))
            .collect();
        out.push_str(&format!(", each back to its lane ({})", lanes.join(", ")));
    }
    if outcome.skipped > 0 {
        out.push_str(&format!(
            "; {} left on the DLQ (not matching)",
            outcome.skipped
        ));
    }
    if outcome.interrupted {
        out.push_str("; interrupted: the rest is still on the DLQ");
    }
    out.push('\n');
    if outcome.not_deleted > 0 {
        out.push_str(&format!(
            "note: {} original(s) could not be deleted and will reappear on the DLQ; their copies are on the changes queue (a duplicate is harmless)\n",
            outcome.not_deleted
        ));
    }
    out
}
