//! The provider's endpoints, and what a call's answer means (HTTP in AWS:
//! [`crate::adapters::provider_http`]).

use std::future::Future;
use std::time::Duration;

use crate::domain::Subscriber;

/// How a provider call failed; each variant has exactly one handling in the drain (README, "What each
/// provider answer does").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// 429 for the account's limit: this kind's window is spent (until `retry_after`, when given).
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// 429 "Too many concurrent requests for the same subscriber": another client is updating one of
    /// these subscribers. Not the account's limit and not the record's fault: retry the record shortly.
    #[error("subscriber busy (retry after {retry_after:?})")]
    SubscriberBusy { retry_after: Option<Duration> },
    /// A 4xx about the request's records (422, 400). `indexes` names the refused records within the
    /// request when the provider says which (`subscribers[i]…`); empty when it does not.
    #[error("rejected {indexes:?}: {detail}")]
    Rejected { indexes: Vec<usize>, detail: String },
    /// 413: the request is too large. Not a record's fault unless the request held one record.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// 5xx, timeout, connection error, 409: try again later.
    #[error("transient failure: {detail}")]
    Transient {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// 401, 403, 404 and other 4xx about the account, not a record: configuration is wrong, and retrying
    /// the same way will not help until someone fixes it.
    #[error("provider refused the request: {0}")]
    Misconfigured(String),
}

impl ProviderError {
    pub fn transient(detail: impl Into<String>) -> Self {
        Self::Transient {
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A short name for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::SubscriberBusy { .. } => "subscriber_busy",
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::TooLarge(_) => "too_large",
            ProviderError::Transient { .. } => "transient",
            ProviderError::Misconfigured(_) => "misconfigured",
        }
    }
}

/// What the provider said about a call besides its outcome, for the call log and the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// The provider's request id (`X-Request-Id`), when given.
    pub request_id: Option<String>,
    /// `X-RateLimit-Limit` and `X-RateLimit-Remaining`, when given.
    pub rate_limit: Option<u32>,
    pub rate_remaining: Option<u32>,
}

/// One provider call's outcome and what came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub result: Result<(), ProviderError>,
    pub info: CallInfo,
}

impl Reply {
    pub fn ok() -> Self {
        Self {
            result: Ok(()),
            info: CallInfo::default(),
        }
    }

    pub fn err(error: ProviderError) -> Self {
        Self {
            result: Err(error),
            info: CallInfo::default(),
        }
    }
}

/// The provider's endpoints.
pub trait Provider: Send + Sync {
    /// One batch request of 1..=`BATCH_SIZE` records (one unit of batch quota).
    fn send_batch(&self, records: &[Subscriber]) -> impl Future<Output = Reply> + Send;
    /// One individual request (one unit of individual quota).
    fn send_individual(&self, record: &Subscriber) -> impl Future<Output = Reply> + Send;
    /// A read that touches no subscriber (one unit of individual quota): the circuit's half-open probe,
    /// so an outage of any length costs no message a receive.
    fn probe(&self) -> impl Future<Output = Reply> + Send;
}
