//! One change of a body, read field by field into a [`Draft`], every problem kept (capped per change).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::json::Json;
use super::{
    CHANGE_FIELDS, FieldProblem, MAX_FUTURE_SKEW, MAX_PROBLEMS_PER_CHANGE, RequestStamp, field_name,
};
use crate::domain::{
    Change, ChangeId, CustomFieldKey, CustomFieldValue, Email, MAX_CUSTOM_FIELDS, Name, Priority,
    TimeZone, is_noncharacter, truncate,
};

pub(super) fn parse_change(
    item: Json,
    index: usize,
    size: u32,
    stamp: RequestStamp,
) -> Result<Change, Vec<FieldProblem>> {
    let Json::Object(entries) = item else {
        return Err(vec![FieldProblem::new(
            Some(index),
            None,
            format!("must be a change object, not {}", item.kind()),
        )]);
    };
    let mut p = Problems::new(index);
    let mut draft = Draft::default();
    for (key, value) in entries {
        let Some(field) = CHANGE_FIELDS.iter().copied().find(|f| *f == key) else {
            p.push(
                &field_name(&key),
                format!(
                    "unknown field; a change has only {}",
                    CHANGE_FIELDS.join(", ")
                ),
            );
            continue;
        };
        if draft.seen.contains(&field) {
            p.push(field, "appears more than once");
            continue;
        }
        draft.seen.push(field);
        draft.take(field, value, &mut p, stamp);
    }
    draft.into_change(p, index, size, stamp)
}

/// One change's fields as they are read, before the change is whole.
#[derive(Default)]
struct Draft {
    seen: Vec<&'static str>,
    email: Option<Email>,
    name: Option<Name>,
    time_zone: Option<TimeZone>,
    custom_fields: BTreeMap<String, String>,
    occurred_at: Option<DateTime<Utc>>,
    priority: Priority,
    /// Whether any attribute was sent at all (even an invalid one), to tell "empty" from "bad".
    sets_something: bool,
}

impl Draft {
    /// Reads one known field (its name checked and not seen before).
    fn take(&mut self, field: &'static str, value: Json, p: &mut Problems, stamp: RequestStamp) {
        match field {
            "email" => self.email = p.check(field, string(&value).and_then(parse_email)),
            "name" => {
                self.sets_something = true;
                self.name = p.check(
                    field,
                    string(&value).and_then(|s| Name::parse(s).map_err(|e| e.0)),
                );
            }
            "time_zone" => {
                self.sets_something = true;
                self.time_zone = p.check(
                    field,
                    string(&value).and_then(|s| TimeZone::parse(s).map_err(|e| e.0)),
                );
            }
            "custom_fields" => self.take_custom_fields(value, p),
            "occurred_at" => {
                self.occurred_at = p.check(
                    field,
                    string(&value).and_then(|s| parse_occurred_at(s, stamp.received_at)),
                );
            }
            "priority" => {
                if let Some(v) = p.check(field, string(&value).and_then(parse_priority)) {
                    self.priority = v;
                }
            }
            _ => {}
        }
    }

    fn take_custom_fields(&mut self, value: Json, p: &mut Problems) {
        let field = "custom_fields";
        let Json::Object(fields) = value else {
            p.push(
                field,
                format!("must be an object of string values, not {}", value.kind()),
            );
            self.sets_something = true;
            return;
        };
        self.sets_something |= !fields.is_empty();
        if fields.len() > MAX_CUSTOM_FIELDS {
            p.push(
                field,
                format!(
                    "at most {MAX_CUSTOM_FIELDS} custom fields per change, got {}",
                    fields.len()
                ),
            );
            return;
        }
        for (raw_key, raw_value) in fields {
            let path = format!("custom_fields.{}", truncate(&raw_key, 64));
            let key = match CustomFieldKey::parse(&raw_key) {
                Ok(k) => k,
                Err(e) => {
                    p.push(&path, e.0);
                    continue;
                }
            };
            if self.custom_fields.contains_key(key.as_str()) {
                p.push(&path, "appears more than once");
                continue;
            }
            let parsed =
                string(&raw_value).and_then(|s| CustomFieldValue::parse(s).map_err(|e| e.0));
            if let Some(v) = p.check(&path, parsed) {
                self.custom_fields
                    .insert(key.into_string(), v.into_string());
            }
        }
    }

    /// The change, or every problem found in it.
    fn into_change(
        self,
        mut p: Problems,
        index: usize,
        size: u32,
        stamp: RequestStamp,
    ) -> Result<Change, Vec<FieldProblem>> {
        if !self.seen.contains(&"email") {
            p.push("email", "is required");
        }
        if !self.sets_something {
            p.push_whole("changes nothing: set at least one of name, time_zone, custom_fields");
        }
        let problems = p.finish();
        if !problems.is_empty() {
            return Err(problems);
        }
        let Some(email) = self.email else {
            // Unreachable: a missing or invalid email was reported above.
            return Err(vec![FieldProblem::new(
                Some(index),
                Some("email"),
                "is required",
            )]);
        };
        Ok(Change {
            change_id: ChangeId::new(),
            request_id: stamp.request_id,
            email,
            name: self.name.map(Name::into_string),
            time_zone: self.time_zone,
            custom_fields: self.custom_fields,
            // Absent, `occurred_at` is the request's stamp time for every change in it; `position` then
            // decides which of them is the latest (the later one in the array).
            occurred_at: self.occurred_at.unwrap_or(stamp.received_at),
            priority: self.priority,
            accepted_at: stamp.received_at,
            // At most MAX_CHANGES, so this always fits.
            position: u32::try_from(index).unwrap_or(u32::MAX),
            request_size: Some(size),
        })
    }
}

/// Collects one change's problems, capped.
struct Problems {
    index: usize,
    list: Vec<FieldProblem>,
    dropped: usize,
}

impl Problems {
    fn new(index: usize) -> Self {
        Self {
            index,
            list: Vec::new(),
            dropped: 0,
        }
    }

    fn add(&mut self, field: Option<&str>, message: String) {
        if self.list.len() < MAX_PROBLEMS_PER_CHANGE {
            self.list
                .push(FieldProblem::new(Some(self.index), field, message));
        } else {
            self.dropped += 1;
        }
    }

    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.add(Some(field), message.into());
    }

    fn push_whole(&mut self, message: &str) {
        self.add(None, message.to_string());
    }

    fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.push(field, e)).ok()
    }

    fn finish(mut self) -> Vec<FieldProblem> {
        if self.dropped > 0 {
            let msg = format!("and {} more problem(s) in this change", self.dropped);
            self.list
                .push(FieldProblem::new(Some(self.index), None, msg));
        }
        self.list
    }
}

fn string(v: &Json) -> Result<&str, String> {
    match v {
        Json::String(s) => Ok(s),
        Json::Null => {
            Err("must be a string (leave the field out to leave the value unchanged)".into())
        }
        other => Err(format!("must be a string, not {}", other.kind())),
    }
}

fn parse_email(s: &str) -> Result<Email, String> {
    // SQS cannot carry U+FFFE/U+FFFF, and no mail system uses them; the rest is Email's own rule.
    if s.chars().any(is_noncharacter) {
        return Err("is not a valid email address".into());
    }
    Email::parse(s).map_err(|e| e.0)
}

fn parse_occurred_at(s: &str, received_at: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let at = DateTime::parse_from_rfc3339(s)
        .map_err(|_| {
            format!(
                "'{}' is not an RFC 3339 date-time (e.g. 2026-01-31T09:30:00Z)",
                truncate(s, 40)
            )
        })?
        .to_utc();
    if at > received_at + MAX_FUTURE_SKEW {
        return Err(format!(
            "is more than {} minutes in the future",
            MAX_FUTURE_SKEW.num_minutes()
        ));
    }
    Ok(at)
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    match s {
        "normal" => Ok(Priority::Normal),
        "high" => Ok(Priority::High),
        "bulk" => Ok(Priority::Bulk),
        other => Err(format!(
            "must be \"high\", \"normal\" or \"bulk\", not '{}'",
            truncate(other, 20)
        )),
    }
}
