//! The ingest error: one enum whose variants say what went wrong and what the client should do, rendered as
//! an RFC 9457 `application/problem+json` body. Client mistakes are 4xx and name every bad item; only our
//! own failures are 5xx, and their detail never leaks internals (logs carry the whole chain instead).

use serde::{Deserialize, Serialize};

use crate::ports::{ErrorKind, PortError};

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One bad item: `index` is the change's position in `changes` (0 for a single-change body; absent for
/// request-level problems), `field` the offending field (absent when the whole change is at fault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    pub index: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl FieldProblem {
    pub fn new(index: Option<usize>, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            index,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

/// The problem+json body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every bad item, for validation problems; empty otherwise.
    #[serde(default)]
    pub errors: Vec<FieldProblem>,
}

/// Everything the ingest API can answer other than success.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("missing or wrong x-api-key header")]
    Unauthorized,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed (allowed: {allow})")]
    MethodNotAllowed { allow: &'static str },
    #[error("unsupported content type {got:?}")]
    UnsupportedMediaType { got: Option<String> },
    #[error("body of {got} bytes is over the {limit}-byte limit")]
    PayloadTooLarge { limit: usize, got: usize },
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("invalid Idempotency-Key header: {0}")]
    BadIdempotencyKey(String),
    #[error("{} problem(s) in the changes", .0.len())]
    Invalid(Vec<FieldProblem>),
    #[error("Idempotency-Key reused with a different body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInProgress,
    /// A dependency failed in a way worth retrying (the queue, the table); nothing the client did wrong.
    #[error("temporarily unavailable")]
    Unavailable(#[source] PortError),
    #[error("unexpected failure")]
    Unexpected(#[source] anyhow::Error),
}

impl From<PortError> for IngestError {
    fn from(e: PortError) -> Self {
        match e.kind {
            ErrorKind::Transient => IngestError::Unavailable(e),
            ErrorKind::Permanent => IngestError::Unexpected(e.into()),
        }
    }
}

impl IngestError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::Unauthorized => 401,
            IngestError::NotFound(_) => 404,
            IngestError::MethodNotAllowed { .. } => 405,
            IngestError::UnsupportedMediaType { .. } => 415,
            IngestError::PayloadTooLarge { .. } => 413,
            IngestError::Malformed(_) | IngestError::BadIdempotencyKey(_) => 400,
            IngestError::Invalid(_) | IngestError::IdempotencyKeyReused => 422,
            IngestError::IdempotencyInProgress => 409,
            IngestError::Unavailable(_) => 503,
            IngestError::Unexpected(_) => 500,
        }
    }

    /// Whether the client may send the same request again unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            IngestError::Unavailable(_)
                | IngestError::IdempotencyInProgress
                | IngestError::Unexpected(_)
        )
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for retryable answers.
    pub fn retry_after_seconds(&self) -> Option<u32> {
        match self {
            IngestError::Unavailable(_) | IngestError::IdempotencyInProgress => Some(1),
            _ => None,
        }
    }

    /// The problem+json body: safe to show to any client.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let errors = match self {
            IngestError::Invalid(problems) => problems.clone(),
            _ => vec![],
        };
        Problem {
            kind: format!("urn:sluice:problem:{slug}"),
            title: title.to_string(),
            status: self.status(),
            detail: self.detail(),
            errors,
        }
    }

    /// The problem type's slug (`urn:sluice:problem:<slug>`) and title.
    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            IngestError::Unauthorized => ("unauthorized", "Unauthorized"),
            IngestError::NotFound(_) => ("not-found", "Not found"),
            IngestError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            IngestError::UnsupportedMediaType { .. } => {
                ("unsupported-media-type", "Unsupported media type")
            }
            IngestError::PayloadTooLarge { .. } => ("payload-too-large", "Payload too large"),
            IngestError::Malformed(_) => ("malformed-body", "Malformed body"),
            IngestError::BadIdempotencyKey(_) => {
                ("invalid-idempotency-key", "Invalid Idempotency-Key")
            }
            IngestError::Invalid(_) => ("validation", "Invalid changes"),
            IngestError::IdempotencyKeyReused => {
                ("idempotency-key-reused", "Idempotency-Key reused")
            }
            IngestError::IdempotencyInProgress => ("request-in-progress", "Request in progress"),
            IngestError::Unavailable(_) => ("unavailable", "Service unavailable"),
            IngestError::Unexpected(_) => ("internal", "Internal error"),
        }
    }

    /// What happened and what to do about it, for the client.
    fn detail(&self) -> String {
        match self {
            IngestError::Unauthorized => "Send the API key in the x-api-key header.".to_string(),
            IngestError::NotFound(what) => what.clone(),
            IngestError::MethodNotAllowed { allow } => {
                format!("This resource allows {allow} only.")
            }
            IngestError::UnsupportedMediaType { got } => match got {
                Some(got) => format!(
                    "Content-Type must be application/json, not '{}'.",
                    crate::domain::truncate(got, 64)
                ),
                None => "Content-Type must be application/json.".to_string(),
            },
            IngestError::PayloadTooLarge { limit, got } => format!(
                "The body is {got} bytes; at most {limit} bytes are accepted. Split the changes over several requests."
            ),
            IngestError::Malformed(why) | IngestError::BadIdempotencyKey(why) => why.clone(),
            IngestError::Invalid(problems) => {
                let mut items: Vec<usize> = problems.iter().filter_map(|p| p.index).collect();
                items.dedup();
                if items.is_empty() {
                    "The request is invalid; nothing was accepted.".to_string()
                } else {
                    format!(
                        "{} change(s) are invalid; nothing was accepted. Fix every item listed in `errors` and send the request again.",
                        items.len()
                    )
                }
            }
            IngestError::IdempotencyKeyReused => "This Idempotency-Key was used within the last 24 hours with a different body. Use a new key for a new request.".to_string(),
            IngestError::IdempotencyInProgress => "A request with this Idempotency-Key is still being processed; retry shortly with the same key and body.".to_string(),
            IngestError::Unavailable(_) => "The changes could not all be queued; nothing should be assumed accepted. Retry the same request (with the same Idempotency-Key).".to_string(),
            IngestError::Unexpected(_) => {
                "Something went wrong on our side. Retrying may help.".to_string()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_split_client_mistakes_from_our_failures() {
        assert_eq!(IngestError::Invalid(vec![]).status(), 422);
        assert_eq!(IngestError::Malformed("x".into()).status(), 400);
        let transient = PortError::transient("enqueue", anyhow::anyhow!("throttled"));
        assert_eq!(IngestError::from(transient).status(), 503);
        let permanent = PortError::permanent("enqueue", anyhow::anyhow!("no such queue"));
        let e = IngestError::from(permanent);
        assert_eq!(e.status(), 500);
        // The chain stays in the error (for logs) but never reaches the problem body.
        assert!(
            !serde_json::to_string(&e.problem())
                .unwrap()
                .contains("no such queue")
        );
    }

    #[test]
    fn problem_has_the_rfc9457_members_and_every_error() {
        let e = IngestError::Invalid(vec![
            FieldProblem::new(Some(0), Some("email"), "is required"),
            FieldProblem::new(Some(3), None, "changes nothing"),
        ]);
        let v = serde_json::to_value(e.problem()).unwrap();
        assert_eq!(v["type"], "urn:sluice:problem:validation");
        assert_eq!(v["status"], 422);
        assert_eq!(v["errors"][1]["index"], 3);
        assert!(v["errors"][1]["field"].is_null());
        assert!(v["detail"].as_str().unwrap().starts_with("2 change(s)"));
    }
}
