//! Domain types. Parse, don't validate: a value of these types is valid by construction, so nothing past
//! the edge (ingest's body parser, the drain's message decoder) re-checks it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Longest email we accept (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest `name` we accept, in characters.
pub const MAX_NAME_LEN: usize = 200;
/// Longest custom field key, in characters.
pub const MAX_FIELD_KEY_LEN: usize = 64;
/// Longest custom field value, in characters.
pub const MAX_FIELD_VALUE_LEN: usize = 1_000;
/// Most custom fields in one change.
pub const MAX_CUSTOM_FIELDS: usize = 50;

/// Why a raw value was refused. The message is safe to show to API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A subscriber's email: the provider's key. Trimmed and lower-cased so one person is one key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Invalid("must not be empty".into()));
        }
        if s.len() > MAX_EMAIL_LEN {
            return Err(Invalid(format!("must be at most {MAX_EMAIL_LEN} bytes")));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(Invalid("must contain '@'".into()));
        };
        let domain_ok = !domain.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.chars().any(|c| c.is_whitespace() || c.is_control());
        if !local_ok || !domain_ok {
            return Err(Invalid("is not a valid email address".into()));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A form safe for logs: first character and domain (`j***@example.com`).
    pub fn redacted(&self) -> String {
        redact_email(&self.0)
    }
}

/// Redacts anything that looks like an email for logs; used where only a raw string is at hand.
pub fn redact_email(s: &str) -> String {
    match s.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

impl fmt::Display for Email {
    /// Display redacts, so an email never reaches a log line by accident; use `as_str` for the wire.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Email::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An IANA time zone name, checked against the tz database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        chrono_tz::Tz::from_str(raw).map(Self).map_err(|_| {
            Invalid(format!(
                "'{}' is not an IANA time zone name",
                truncate(raw, 64)
            ))
        })
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        TimeZone::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Which changes go first when quota is short.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Normal,
    High,
}

/// An identifier that is a random (v4) UUID, shown as the UUID.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Identifies one accepted change (one queue message).
    ChangeId
);
uuid_id!(
    /// Identifies one ingest request (1..1,000 changes); its progress is readable at `/v1/requests/{id}`.
    RequestId
);

/// One subscriber attribute Sluice keeps in sync. Custom fields are fields of their own: two changes to
/// different custom fields of one user both survive coalescing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldKey {
    Name,
    TimeZone,
    Custom(String),
}

impl FieldKey {
    /// Stable storage form: `name`, `time_zone`, `cf.<key>`.
    pub fn storage_key(&self) -> String {
        match self {
            FieldKey::Name => "name".into(),
            FieldKey::TimeZone => "time_zone".into(),
            FieldKey::Custom(k) => format!("cf.{k}"),
        }
    }

    pub fn from_storage_key(s: &str) -> Option<Self> {
        match s {
            "name" => Some(FieldKey::Name),
            "time_zone" => Some(FieldKey::TimeZone),
            _ => s
                .strip_prefix("cf.")
                .map(|k| FieldKey::Custom(k.to_string())),
        }
    }
}

/// A validated change to one subscriber, as accepted by ingest and carried on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub change_id: ChangeId,
    pub request_id: RequestId,
    pub email: Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<TimeZone>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
    pub occurred_at: DateTime<Utc>,
    #[serde(default)]
    pub priority: Priority,
    pub accepted_at: DateTime<Utc>,
    /// Index of this change in its request's `changes` array (0 for a single-change body): within one
    /// request, a later change wins a tie. Messages written before this field existed read as 0.
    #[serde(default)]
    pub position: u32,
    /// How many changes its request carried (set by ingest). The drain writes no progress for the
    /// delivered or skipped change of a single-change request: its status is derived from the sync state
    /// ([`crate::ports::requests`]). Messages written before this field existed read as `None`, tracked as a
    /// multi-change request's are (by the drain's sets), which is right for either kind of request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_size: Option<u32>,
}

impl Change {
    /// Where this change stands in "latest wins".
    pub fn precedence(&self) -> Precedence {
        Precedence {
            occurred_at: self.occurred_at,
            accepted_at: self.accepted_at,
            position: self.position,
        }
    }

    /// The attribute values this change sets, keyed by field.
    pub fn fields(&self) -> Vec<(FieldKey, String)> {
        let mut out = Vec::with_capacity(2 + self.custom_fields.len());
        if let Some(name) = &self.name {
            out.push((FieldKey::Name, name.clone()));
        }
        if let Some(tz) = &self.time_zone {
            out.push((FieldKey::TimeZone, tz.name().to_string()));
        }
        for (k, v) in &self.custom_fields {
            out.push((FieldKey::Custom(k.clone()), v.clone()));
        }
        out
    }
}

/// Which of two changes to one field is the later one: compared by `occurred_at`, then `accepted_at` (a later
/// request wins a tie), then `position` (within one request, a later change wins a tie) — all at full
/// (nanosecond) precision. The derived order is that lexicographic order, so field order matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Precedence {
    pub occurred_at: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
    pub position: u32,
}

impl Precedence {
    /// The greatest precedence below this one: a change of exactly this precedence beats it, any older one
    /// does not.
    pub fn just_before(&self) -> Self {
        match self.position.checked_sub(1) {
            Some(position) => Self { position, ..*self },
            None => Self {
                accepted_at: self.accepted_at - chrono::Duration::nanoseconds(1),
                position: u32::MAX,
                ..*self
            },
        }
    }
}

/// The queue message body: versioned, so a drain can read what an older or newer ingest wrote.
///
/// A field that readers may do without (`#[serde(default)]`, e.g. `position`) is added to the current
/// version: a drain still running older code ignores it, so ingest and drain can be deployed in either
/// order. Only a change old readers cannot survive gets a new variant, and the drain ships first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum ChangeMessage {
    #[serde(rename = "1")]
    V1(Change),
}

impl ChangeMessage {
    pub fn into_change(self) -> Change {
        match self {
            ChangeMessage::V1(c) => c,
        }
    }

    pub fn to_body(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_body(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// The record sent to the provider: email plus only the fields that changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subscriber {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
}

impl Subscriber {
    pub fn new(email: &Email) -> Self {
        Self {
            email: email.as_str().to_string(),
            ..Self::default()
        }
    }

    pub fn set(&mut self, key: &FieldKey, value: String) {
        match key {
            FieldKey::Name => self.name = Some(value),
            FieldKey::TimeZone => self.time_zone = Some(value),
            FieldKey::Custom(k) => {
                self.custom_fields.insert(k.clone(), value);
            }
        }
    }
}

/// A subscriber's display name, kept exactly as sent: at most [`MAX_NAME_LEN`] characters, no control
/// characters or noncharacters. An empty name is allowed: it clears the name at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.chars().count() > MAX_NAME_LEN {
            return Err(Invalid(format!(
                "must be at most {MAX_NAME_LEN} characters"
            )));
        }
        if s.chars().any(|c| c.is_control() || is_noncharacter(c)) {
            return Err(Invalid(
                "must not contain control characters or Unicode noncharacters".into(),
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A custom field identifier: 1..=[`MAX_FIELD_KEY_LEN`] ASCII letters, digits or underscores (the
/// provider's identifier alphabet, and safe inside the `cf.<key>` storage form).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomFieldKey(String);

impl CustomFieldKey {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid("custom field names must not be empty".into()));
        }
        if raw.len() > MAX_FIELD_KEY_LEN {
            return Err(Invalid(format!(
                "custom field names must be at most {MAX_FIELD_KEY_LEN} characters"
            )));
        }
        if !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Invalid(
                "custom field names may contain only ASCII letters, digits and '_'".into(),
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A custom field value: at most [`MAX_FIELD_VALUE_LEN`] characters; tab and line breaks are the only
/// control characters allowed. An empty value is allowed: it clears the field at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomFieldValue(String);

impl CustomFieldValue {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.chars().count() > MAX_FIELD_VALUE_LEN {
            return Err(Invalid(format!(
                "must be at most {MAX_FIELD_VALUE_LEN} characters"
            )));
        }
        if raw
            .chars()
            .any(|c| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || is_noncharacter(c))
        {
            return Err(Invalid(
                "must not contain control characters (other than tab and line breaks) or Unicode noncharacters"
                    .into(),
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The Basic Multilingual Plane's noncharacters (U+FDD0..=U+FDEF, U+FFFE, U+FFFF): never meant for
/// interchange, and SQS refuses U+FFFE/U+FFFF in a message body.
pub fn is_noncharacter(c: char) -> bool {
    matches!(c, '\u{FDD0}'..='\u{FDEF}' | '\u{FFFE}' | '\u{FFFF}')
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
}
