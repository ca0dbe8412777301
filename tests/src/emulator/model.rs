//! The emulator's public data types: what the provider receives, what it counts, and the faults it can be
//! told to inject. All of them are serde types so the `/_emulator/*` endpoints return the same shapes the
//! in-process helpers do.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One subscriber record as the provider sees it: `email` always, every other field only when it changed.
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
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            ..Self::default()
        }
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn with_time_zone(mut self, time_zone: impl Into<String>) -> Self {
        self.time_zone = Some(time_zone.into());
        self
    }

    pub fn with_custom_field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.custom_fields.insert(key.into(), value.into());
        self
    }

    /// Folds a later record over this state: every field the later record carries wins, custom fields
    /// merge key by key (a record only carries the fields that changed).
    pub fn merge(&mut self, later: &Subscriber) {
        self.email.clone_from(&later.email);
        if later.name.is_some() {
            self.name.clone_from(&later.name);
        }
        if later.time_zone.is_some() {
            self.time_zone.clone_from(&later.time_zone);
        }
        for (key, value) in &later.custom_fields {
            self.custom_fields.insert(key.clone(), value.clone());
        }
    }
}

/// How the provider counts its limit.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum QuotaModel {
    /// Windows of `window_seconds`, fixed and aligned to the unix epoch; the count resets at each.
    #[default]
    Fixed,
    /// A request is refused while the limit's worth of requests of its kind were accepted in the
    /// `window_seconds` before it (a rolling hour).
    Rolling,
}

/// Which provider endpoint a request used; each has its own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Batch,
    Individual,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Batch => "batch",
            Kind::Individual => "individual",
        }
    }
}

/// One accepted record, in arrival order (`seq` starts at 1 and survives nothing but a reset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub seq: u64,
    #[serde(with = "rfc3339_millis")]
    pub received_at: DateTime<Utc>,
    pub kind: Kind,
    /// Shared by every record of one provider request (also sent back as `X-Request-Id`).
    pub request_id: String,
    pub subscriber: Subscriber,
}

/// A count per endpoint kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PerKind {
    pub batch: u64,
    pub individual: u64,
}

impl PerKind {
    pub fn get(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Batch => self.batch,
            Kind::Individual => self.individual,
        }
    }

    pub fn get_mut(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Batch => &mut self.batch,
            Kind::Individual => &mut self.individual,
        }
    }

    pub fn total(&self) -> u64 {
        self.batch + self.individual
    }
}

/// Quota of one kind in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QuotaUsage {
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
}

/// Quota of both kinds in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QuotaByKind {
    pub batch: QuotaUsage,
    pub individual: QuotaUsage,
}

/// What the emulator has seen since start or the last reset. Every request to the provider API lands in
/// exactly one of `requests` (accepted), the `rejected_*` counters (one per answered status, whatever the
/// cause) or `dropped_connections` — except a forced 2xx/3xx, counted only in `forced_responses`. `over_limit`, `concurrent_conflicts` and `duplicate_emails_in_request`
/// count the client mistakes themselves, never injected faults: tests assert they stay 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Accepted requests per kind.
    pub requests: PerKind,
    /// Accepted records per kind.
    pub records: PerKind,
    /// Every 429 answered: real over-limit requests and forced ones.
    pub rejected_429: u64,
    /// Requests that arrived while their kind's quota was spent. A correct client keeps this at 0.
    pub over_limit: u64,
    /// Every 422 answered: invalid records, `reject_emails`, forced 422s.
    pub rejected_422: u64,
    /// Every 5xx answered (all of them are injected: `error_rate` or `force`).
    pub rejected_5xx_injected: u64,
    /// 400: malformed JSON or a missing `User-Agent`.
    pub rejected_400: u64,
    /// 401: missing or wrong API key.
    pub rejected_401: u64,
    /// 404: wrong account id or unknown path.
    pub rejected_404: u64,
    /// Every 409 answered: real concurrent conflicts and forced ones.
    pub rejected_409: u64,
    /// Responses that came from the `force` queue, whatever their status.
    pub forced_responses: u64,
    /// Requests whose connection was closed without an answer (`drop_connections`).
    pub dropped_connections: u64,
    /// Extra occurrences of an email already present in the same accepted request. A correct client
    /// merges per email first and keeps this at 0.
    pub duplicate_emails_in_request: u64,
    /// Requests refused with 409 because another in-flight request touched the same email.
    pub concurrent_conflicts: u64,
    pub window_seconds: u64,
    /// The current window's start; counting a rolling window, `window_seconds` before now.
    #[serde(with = "rfc3339_millis")]
    pub window_start: DateTime<Utc>,
    #[serde(default)]
    pub quota_model: QuotaModel,
    pub quota: QuotaByKind,
    /// Requests the other client of the account made and the provider accepted (`other_client_percent`).
    #[serde(default)]
    pub other_client_requests: PerKind,
}

/// One entry of the `force` queue: answer the next `count` provider requests with `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForcedResponse {
    pub status: u16,
    pub count: u32,
}

/// Faults to inject into provider requests (`/v2/...`); the `/_emulator` endpoints are never affected.
///
/// Order of evaluation for a provider request: `drop_connections`, then (after the auth, `User-Agent`
/// and account checks) `force`, then `error_rate`, then the quota, then validation including
/// `reject_emails`. `latency_ms` (+ jitter) is added to every provider response that is not dropped.
/// Injected failures (`drop_connections`, `force`, `error_rate`) happen *before* the quota is counted, so
/// they consume none and record nothing; `reject_emails` is a validation failure and behaves like any other
/// 422 (quota consumed, nothing recorded).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability (0..=1) that a provider request is answered with a random 500, 502 or 503.
    pub error_rate: f64,
    /// Added to every provider response.
    pub latency_ms: u64,
    /// Uniform random extra latency in `0..=latency_jitter_ms`.
    pub latency_jitter_ms: u64,
    /// Answer the next requests with these statuses, front of the queue first, regardless of the body.
    pub force: Vec<ForcedResponse>,
    /// Records with one of these emails (case-insensitive) are refused with a 422; a batch containing one
    /// is refused as a whole, naming the record's index.
    pub reject_emails: BTreeSet<String>,
    /// Records with one of these emails make the whole request fail with a 400 that names no record.
    #[serde(default)]
    pub reject_emails_unindexed: BTreeSet<String>,
    /// Close the connection of the next N provider requests without answering.
    pub drop_connections: u32,
    /// How long a dropped request hangs before its connection is closed (0 = at once). Set it above
    /// the client's timeout to produce a client-side timeout rather than a connection error.
    pub hang_ms: u64,
}

impl Faults {
    /// Answer the next `count` provider requests with `status`.
    pub fn forced(status: u16, count: u32) -> Self {
        Self {
            force: vec![ForcedResponse { status, count }],
            ..Self::default()
        }
    }

    /// Drop the connection of the next `count` provider requests.
    pub fn drop_next(count: u32) -> Self {
        Self {
            drop_connections: count,
            ..Self::default()
        }
    }

    /// Refuse records for these emails with a 422.
    pub fn reject<I, S>(emails: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            reject_emails: emails.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Why these faults cannot be applied, if they cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate must be within 0..=1, got {}",
                self.error_rate
            ));
        }
        if let Some(bad) = self.force.iter().find(|f| !(200..=599).contains(&f.status)) {
            return Err(format!(
                "force status must be within 200..=599, got {}",
                bad.status
            ));
        }
        Ok(())
    }
}

/// One entry of a provider error body: `{"errors":[{"code","attribute","message"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, attribute: Option<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            attribute,
            message: message.into(),
        }
    }
}

/// Timestamps on the wire: RFC 3339, UTC, millisecond precision.
pub mod rfc3339_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
