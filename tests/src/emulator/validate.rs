//! Request bodies → validated subscriber records, or the provider's error for them.
//!
//! Parsing is done by hand over `serde_json::Value` rather than by deriving, so that every problem can
//! name the exact record and field (`subscribers[3].time_zone`) the way the provider's 422 does.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::model::{ApiError, Kind, Subscriber};

/// The most records one batch may carry.
pub const MAX_BATCH_RECORDS: usize = 1000;

/// Cap on the errors listed in one 422 body, so a bad 1,000-record batch gets a readable answer.
const MAX_ERRORS: usize = 100;

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON at all → 400.
    Malformed(String),
    /// JSON, but the shape or a record is invalid → 422 listing every problem found.
    Invalid(Vec<ApiError>),
}

/// Parses and validates the body of a provider request of `kind`. `reject_emails` must be lowercase.
pub fn parse_request(
    kind: Kind,
    body: &[u8],
    reject_emails: &BTreeSet<String>,
) -> Result<Vec<Subscriber>, BodyError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BodyError::Malformed(format!("request body is not valid JSON: {e}")))?;
    let raw_records = match kind {
        Kind::Batch => batch_records(&value),
        Kind::Individual => individual_records(&value),
    }
    .map_err(|e| BodyError::Invalid(vec![e]))?;

    let mut errors = Vec::new();
    let mut records = Vec::with_capacity(raw_records.len());
    for (index, raw) in raw_records.iter().enumerate() {
        match parse_subscriber(index, raw, reject_emails) {
            Ok(subscriber) => records.push(subscriber),
            Err(mut problems) => errors.append(&mut problems),
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        errors.truncate(MAX_ERRORS);
        Err(BodyError::Invalid(errors))
    }
}

/// `{"batches":[{"subscribers":[…1..1000]}]}` — exactly one batch object.
fn batch_records(value: &Value) -> Result<&[Value], ApiError> {
    let batches = required_array(object(value, None)?, "batches")?;
    let batch = match batches {
        [] => {
            return Err(ApiError::new(
                "presence_error",
                Some("batches".into()),
                "batches must contain one batch",
            ));
        }
        [batch] => batch,
        more => {
            return Err(ApiError::new(
                "length_error",
                Some("batches".into()),
                format!("batches must contain exactly one batch, got {}", more.len()),
            ));
        }
    };
    let records = subscribers(object(batch, Some("batches[0]"))?)?;
    if records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::new(
            "length_error",
            Some("subscribers".into()),
            format!(
                "a batch holds at most {MAX_BATCH_RECORDS} subscribers, got {}",
                records.len()
            ),
        ));
    }
    Ok(records)
}

/// `{"subscribers":[S]}` — exactly one record.
fn individual_records(value: &Value) -> Result<&[Value], ApiError> {
    let records = subscribers(object(value, None)?)?;
    if records.len() != 1 {
        return Err(ApiError::new(
            "length_error",
            Some("subscribers".into()),
            format!(
                "subscribers must contain exactly one subscriber, got {}",
                records.len()
            ),
        ));
    }
    Ok(records)
}

fn object<'a>(
    value: &'a Value,
    attribute: Option<&str>,
) -> Result<&'a Map<String, Value>, ApiError> {
    value.as_object().ok_or_else(|| {
        let what = attribute.unwrap_or("request body");
        ApiError::new(
            "format_error",
            attribute.map(str::to_owned),
            format!("{what} must be a JSON object"),
        )
    })
}

/// `object[key]` as an array: a `presence_error` if it is missing or null, a `format_error` if it is not
/// an array.
fn required_array<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], ApiError> {
    object
        .get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| {
            ApiError::new(
                "presence_error",
                Some(key.to_owned()),
                format!("{key} is required"),
            )
        })?
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| {
            ApiError::new(
                "format_error",
                Some(key.to_owned()),
                format!("{key} must be an array"),
            )
        })
}

/// The non-empty `subscribers` array of an object.
fn subscribers(object: &Map<String, Value>) -> Result<&[Value], ApiError> {
    let records = required_array(object, "subscribers")?;
    if records.is_empty() {
        return Err(ApiError::new(
            "presence_error",
            Some("subscribers".into()),
            "subscribers must not be empty",
        ));
    }
    Ok(records)
}

/// One record; unknown fields are ignored, known ones must have the documented types.
fn parse_subscriber(
    index: usize,
    raw: &Value,
    reject_emails: &BTreeSet<String>,
) -> Result<Subscriber, Vec<ApiError>> {
    let at = |field: &str| Some(format!("subscribers[{index}].{field}"));
    let Some(fields) = raw.as_object() else {
        return Err(vec![ApiError::new(
            "format_error",
            Some(format!("subscribers[{index}]")),
            "a subscriber must be a JSON object",
        )]);
    };
    let mut errors = Vec::new();

    let email = match fields.get("email") {
        None | Some(Value::Null) => {
            errors.push(ApiError::new(
                "presence_error",
                at("email"),
                "email is required",
            ));
            None
        }
        Some(Value::String(email)) => match email_problem(email) {
            Some(problem) => {
                errors.push(ApiError::new("email_error", at("email"), problem));
                None
            }
            None if reject_emails.contains(&email.to_lowercase()) => {
                errors.push(ApiError::new(
                    "email_error",
                    at("email"),
                    "email was rejected by the provider",
                ));
                None
            }
            None => Some(email.clone()),
        },
        Some(_) => {
            errors.push(ApiError::new(
                "email_error",
                at("email"),
                "email must be a string",
            ));
            None
        }
    };

    let name = optional_string(fields, "name").unwrap_or_else(|e| {
        errors.push(ApiError::new("format_error", at("name"), e));
        None
    });

    let time_zone = match optional_string(fields, "time_zone") {
        Ok(Some(zone)) if zone.parse::<chrono_tz::Tz>().is_err() => {
            errors.push(ApiError::new(
                "time_zone_error",
                at("time_zone"),
                format!("{zone:?} is not a known IANA time zone"),
            ));
            None
        }
        Ok(zone) => zone,
        Err(e) => {
            errors.push(ApiError::new("time_zone_error", at("time_zone"), e));
            None
        }
    };

    let mut custom_fields = BTreeMap::new();
    match fields.get("custom_fields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match value {
                    _ if key.is_empty() => errors.push(ApiError::new(
                        "format_error",
                        at("custom_fields"),
                        "custom field names must not be empty",
                    )),
                    Value::String(text) => {
                        custom_fields.insert(key.clone(), text.clone());
                    }
                    _ => errors.push(ApiError::new(
                        "format_error",
                        at(&format!("custom_fields.{key}")),
                        "custom field values must be strings",
                    )),
                }
            }
        }
        Some(_) => errors.push(ApiError::new(
            "format_error",
            at("custom_fields"),
            "custom_fields must be an object of strings",
        )),
    }

    match email {
        Some(email) if errors.is_empty() => Ok(Subscriber {
            email,
            name,
            time_zone,
            custom_fields,
        }),
        _ => Err(errors),
    }
}

/// Absent or null → `None`; a string → `Some`; anything else is an error.
fn optional_string(fields: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

/// Why `email` is not an address the provider accepts, if it is not: one `@`, a non-empty local part and a
/// dotted domain of letters, digits and hyphens; no whitespace.
pub fn email_problem(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("email is required");
    }
    if email.len() > 254 {
        return Some("email is longer than 254 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("email must not contain whitespace");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Some("email must contain an @");
    };
    if local.is_empty() {
        return Some("email has nothing before the @");
    }
    if domain.contains('@') {
        return Some("email must contain exactly one @");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Some("email domain is not valid");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: Kind, body: &str) -> Result<Vec<Subscriber>, BodyError> {
        parse_request(kind, body.as_bytes(), &BTreeSet::new())
    }

    fn attributes(result: Result<Vec<Subscriber>, BodyError>) -> Vec<String> {
        match result {
            Err(BodyError::Invalid(errors)) => {
                errors.into_iter().filter_map(|e| e.attribute).collect()
            }
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn emails() {
        for good in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "x@xn--bcher-kva.example",
        ] {
            assert_eq!(email_problem(good), None, "{good}");
        }
        for bad in [
            "", "plain", "@b.co", "a@", "a@b", "a@b..co", "a b@c.co", "a@b@c.co", "a@-b.co",
            "a@b.co.",
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn batch_shape_errors_name_the_part() {
        assert_eq!(
            attributes(parse(Kind::Batch, r#"{"batches":[]}"#)),
            ["batches"]
        );
        assert_eq!(
            attributes(parse(
                Kind::Batch,
                r#"{"batches":[{"subscribers":[{"email":"a@b.co"}]},{"subscribers":[{"email":"c@d.co"}]}]}"#
            )),
            ["batches"]
        );
        assert_eq!(
            attributes(parse(Kind::Batch, r#"{"batches":[{"subscribers":[]}]}"#)),
            ["subscribers"]
        );
        let too_many: Vec<Value> = (0..=MAX_BATCH_RECORDS)
            .map(|i| serde_json::json!({"email": format!("u{i}@example.com")}))
            .collect();
        let body = serde_json::json!({"batches":[{"subscribers": too_many}]}).to_string();
        assert_eq!(attributes(parse(Kind::Batch, &body)), ["subscribers"]);
        assert!(matches!(
            parse(Kind::Batch, "{not json"),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn record_errors_name_index_and_field() {
        let body = r#"{"batches":[{"subscribers":[
            {"email":"ok@example.com","time_zone":"Europe/Amsterdam","custom_fields":{"plan":"pro"}},
            {"email":"no-at-sign"},
            {"email":"tz@example.com","time_zone":"Mars/Olympus"},
            {"email":"cf@example.com","custom_fields":{"n":1}},
            {"name":"missing email"}
        ]}]}"#;
        assert_eq!(
            attributes(parse(Kind::Batch, body)),
            [
                "subscribers[1].email",
                "subscribers[2].time_zone",
                "subscribers[3].custom_fields.n",
                "subscribers[4].email"
            ]
        );
    }

    #[test]
    fn individual_needs_exactly_one() {
        assert_eq!(
            attributes(parse(
                Kind::Individual,
                r#"{"subscribers":[{"email":"a@b.co"},{"email":"c@d.co"}]}"#
            )),
            ["subscribers"]
        );
        let records = parse(
            Kind::Individual,
            r#"{"subscribers":[{"email":"a@b.co","name":"A","unknown":true,"time_zone":null}]}"#,
        )
        .expect("valid");
        assert_eq!(records, [Subscriber::new("a@b.co").with_name("A")]);
    }

    #[test]
    fn rejected_emails_are_case_insensitive() {
        let reject = BTreeSet::from(["bad@example.com".to_owned()]);
        let body = r#"{"subscribers":[{"email":"Bad@Example.com"}]}"#;
        let result = parse_request(Kind::Individual, body.as_bytes(), &reject);
        assert_eq!(attributes(result), ["subscribers[0].email"]);
    }
}
