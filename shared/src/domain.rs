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

/// Which changes go first when quota is short: `high` before `normal`, and `bulk` (backfills) only with
/// what the others leave. Ordered lowest first.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Bulk,
    #[default]
    Normal,
    High,
}

impl Priority {
    /// Every priority in the order the drain serves their lanes: high, normal, bulk.
    pub const FIRST_SERVED_FIRST: [Priority; 3] =
        [Priority::High, Priority::Normal, Priority::Bulk];

    /// The name ingest accepts and the DLQ's `sluice.lane` attribute carries.
    pub fn as_str(&self) -> &'static str {
        match self {
            Priority::Bulk => "bulk",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    /// The priority named `s` (as [`Priority::as_str`] writes it), if any.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::FIRST_SERVED_FIRST
            .into_iter()
            .find(|p| p.as_str() == s)
    }
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
#[path = "domain_tests.rs"]
mod tests;
