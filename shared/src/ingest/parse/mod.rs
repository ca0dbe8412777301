//! The body parser: raw bytes in, validated [`Change`]s out — or every problem, by change index and field.
//!
//! The body is first read into a small JSON tree that keeps duplicate keys (serde_json's `Value` would
//! silently keep the last one), then each change is checked field by field so one answer names every bad
//! item. A body is one change object, or `{"changes": [ … 1..=1000 … ]}`.

//!
//! - this file: the limits, the envelope (one change, or `changes`), and the answer;
//! - `change.rs`: one change, field by field, its problems capped;
//! - `json.rs`: the JSON tree that keeps duplicate keys.

mod change;
mod json;
#[cfg(test)]
mod tests;

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{Change, RequestId, truncate};
use change::parse_change;
use json::Json;

use super::problem::FieldProblem;

/// Largest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most changes in one request.
pub const MAX_CHANGES: usize = 1_000;
/// How far ahead of stamp `occurred_at` may be (clock skew between the client and us).
pub const MAX_FUTURE_SKEW: TimeDelta = TimeDelta::minutes(5);
/// Problems reported per change at most; the rest are summarised, so an answer stays small.
pub const MAX_PROBLEMS_PER_CHANGE: usize = 5;

/// The fields a change may have.
pub const CHANGE_FIELDS: [&str; 6] = [
    "email",
    "name",
    "time_zone",
    "custom_fields",
    "occurred_at",
    "priority",
];

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON, or not a JSON object (400).
    Malformed(String),
    /// Well-formed, but some changes or the envelope are invalid (422). Never empty.
    Invalid(Vec<FieldProblem>),
}

/// When and under which request the changes were received: stamps every change.
#[derive(Debug, Clone, Copy)]
pub struct RequestStamp {
    pub request_id: RequestId,
    pub received_at: DateTime<Utc>,
}

/// Parses a request body into changes, all or nothing.
pub fn parse_changes(body: &[u8], stamp: RequestStamp) -> Result<Vec<Change>, ParseError> {
    let root: Json = serde_json::from_slice(body)
        .map_err(|e| ParseError::Malformed(format!("The body is not valid JSON: {e}.")))?;
    let Json::Object(entries) = root else {
        return Err(ParseError::Malformed(format!(
            "The body must be a JSON object (one change, or {{\"changes\": [...]}}), not {}.",
            root.kind()
        )));
    };
    if !entries.iter().any(|(k, _)| k == "changes") {
        return parse_change(Json::Object(entries), 0, 1, stamp)
            .map(|c| vec![c])
            .map_err(ParseError::Invalid);
    }

    let mut problems = Vec::new();
    let items = envelope_items(entries, &mut problems)?;
    let mut changes = Vec::with_capacity(items.len());
    // At most MAX_CHANGES, so this always fits.
    let size = u32::try_from(items.len()).unwrap_or(u32::MAX);
    for (index, item) in items.into_iter().enumerate() {
        match parse_change(item, index, size, stamp) {
            Ok(change) => changes.push(change),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(changes)
    } else {
        Err(ParseError::Invalid(problems))
    }
}

/// The `changes` array of a `{"changes": [...]}` body, with the envelope's problems in `problems` (an error
/// when none of the changes could be read).
fn envelope_items(
    entries: Vec<(String, Json)>,
    problems: &mut Vec<FieldProblem>,
) -> Result<Vec<Json>, ParseError> {
    let mut items = None;
    for (key, value) in entries {
        if key != "changes" {
            problems.push(FieldProblem::new(
                None,
                Some(&field_name(&key)),
                "unknown field: a body is one change, or an object with only \"changes\"",
            ));
        } else if items.is_some() {
            problems.push(FieldProblem::new(
                None,
                Some("changes"),
                "appears more than once",
            ));
        } else {
            items = Some(value);
        }
    }
    let items = match items {
        Some(Json::Array(items)) => items,
        Some(other) => {
            problems.push(FieldProblem::new(
                None,
                Some("changes"),
                format!("must be an array of change objects, not {}", other.kind()),
            ));
            return Err(ParseError::Invalid(std::mem::take(problems)));
        }
        None => Vec::new(), // unreachable: the key was found by the caller
    };
    if items.is_empty() {
        problems.push(FieldProblem::new(
            None,
            Some("changes"),
            "must contain at least one change",
        ));
    }
    if items.len() > MAX_CHANGES {
        problems.push(FieldProblem::new(
            None,
            Some("changes"),
            format!(
                "at most {MAX_CHANGES} changes per request, got {}",
                items.len()
            ),
        ));
        return Err(ParseError::Invalid(std::mem::take(problems)));
    }
    Ok(items)
}

/// One change, or its problems (at most [`MAX_PROBLEMS_PER_CHANGE`], plus a summary line).
/// `size` is the number of changes in the request (1 for a single-change body).
/// A client-supplied key, made safe to echo in a `field` path.
fn field_name(key: &str) -> String {
    truncate(key, 64)
}
