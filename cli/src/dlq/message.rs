//! One dead-lettered message as operators see it, read from the attributes SQS and the drain put on it
//! (the drain's names are [`sluice::adapters::sqs`]'s `ATTR_*`).

use std::collections::BTreeMap;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice::adapters::sqs::{ATTR_DETAIL, ATTR_REASON, ATTR_RECEIVE_COUNT, ATTR_SOURCE_MESSAGE_ID};
use sluice::domain::ChangeMessage;

use crate::args::RedriveFilter;
use crate::format;

/// The reason the drain writes when a record's attempts ran out; also what a message SQS moved after
/// `maxReceiveCount` receives (it carries no `sluice.reason`) is listed as.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";

impl RedriveFilter {
    /// The reason as `sluice dlq list` shows it.
    pub fn as_str(&self) -> &'static str {
        match self {
            RedriveFilter::Malformed => "malformed",
            RedriveFilter::Rejected => "rejected",
            RedriveFilter::RetriesExhausted => RETRIES_EXHAUSTED,
        }
    }
}

/// One dead-lettered message, read from SQS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqMessage {
    /// The DLQ message id (what `sluice dlq show` takes).
    pub id: String,
    /// `malformed`, `rejected`, `retries_exhausted` (the drain's `sluice.reason`; `retries_exhausted` also
    /// when SQS moved it, with no reason of its own).
    pub reason: String,
    /// The drain's detail (`sluice.detail`): the provider's answer or the parse error.
    pub detail: Option<String>,
    /// The subscriber's email, when the body has one. Shown redacted except by `show`.
    pub email: Option<String>,
    /// SentTimestamp: when the drain dead-lettered it, or for a message SQS moved, its first enqueue
    /// (retention counts from there).
    pub sent_at: Option<DateTime<Utc>>,
    /// Receives on the changes queue (`sluice.receive_count`), else SQS's ApproximateReceiveCount (which
    /// includes earlier `dlq list` peeks).
    pub receive_count: Option<u32>,
    /// The message id it had on the changes queue (`sluice.source_message_id`).
    pub source_message_id: Option<String>,
    /// The queue SQS moved it from (DeadLetterQueueSourceArn).
    pub source_queue_arn: Option<String>,
    /// Every message attribute as text.
    pub attributes: BTreeMap<String, String>,
    pub body: String,
}

impl DlqMessage {
    pub fn from_sqs(m: &Message) -> Self {
        let attributes: BTreeMap<String, String> = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let system =
            |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
        let body = m.body().unwrap_or_default().to_owned();
        let receive_count = attributes
            .get(ATTR_RECEIVE_COUNT)
            .cloned()
            .or_else(|| system(MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|v| v.parse().ok());
        Self {
            id: m.message_id().unwrap_or_default().to_owned(),
            reason: attributes
                .get(ATTR_REASON)
                .cloned()
                .unwrap_or_else(|| RETRIES_EXHAUSTED.to_owned()),
            detail: attributes.get(ATTR_DETAIL).cloned(),
            email: email_in(&body),
            sent_at: system(MessageSystemAttributeName::SentTimestamp)
                .and_then(|v| v.parse().ok())
                .and_then(DateTime::from_timestamp_millis),
            receive_count,
            source_message_id: attributes.get(ATTR_SOURCE_MESSAGE_ID).cloned(),
            source_queue_arn: system(MessageSystemAttributeName::DeadLetterQueueSourceArn),
            attributes,
            body,
        }
    }

    pub fn matches(&self, filter: Option<RedriveFilter>) -> bool {
        filter.is_none_or(|f| self.reason == f.as_str())
    }

    pub(crate) fn age_s(&self, now: DateTime<Utc>) -> Option<i64> {
        self.sent_at.map(|t| (now - t).num_seconds())
    }
}

/// The subscriber's email in a message body: a change message's, or any top-level `email` string of a
/// body that is JSON but not a valid change (a malformed message often still names its subscriber).
fn email_in(body: &str) -> Option<String> {
    if let Ok(message) = ChangeMessage::from_body(body) {
        return Some(message.into_change().email.as_str().to_owned());
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("email")?
        .as_str()
        .map(str::to_owned)
}

/// One row of `sluice dlq list --json`: the email redacted, the body left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    pub id: String,
    pub reason: String,
    pub email: String,
    pub age_s: Option<i64>,
    pub receive_count: Option<u32>,
    pub detail: Option<String>,
}

impl ListEntry {
    pub fn new(m: &DlqMessage, now: DateTime<Utc>) -> Self {
        Self {
            id: m.id.clone(),
            reason: m.reason.clone(),
            email: format::redacted_email(m.email.as_deref()),
            age_s: m.age_s(now),
            receive_count: m.receive_count,
            detail: m.detail.clone(),
        }
    }
}
