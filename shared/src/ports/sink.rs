//! Where ingest puts accepted changes: the changes queue (SQS in AWS: [`crate::adapters::sqs::sink`]).

use std::future::Future;

use super::PortResult;
use crate::domain::Change;

/// Where accepted changes go.
pub trait ChangeSink: Send + Sync {
    /// Puts every change on the queue, retrying what can be retried. `Ok` means all of them are on it;
    /// an error means some may not be (the caller answers 503 and the client retries the whole request:
    /// duplicates are harmless, the drain coalesces them).
    fn enqueue(&self, changes: &[Change]) -> impl Future<Output = PortResult<()>> + Send;
}

/// Largest message body the queue carries (SQS: 256 KiB); also the largest SQS batch.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Whether the queue can carry this body: its size, and its characters (SQS allows #x9 | #xA | #xD |
/// #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF). Ingest's parser guarantees both for valid changes;
/// every sink checks them (the in-memory one too, so tests catch any regression).
pub fn check_message_body(body: &str) -> Result<(), String> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "message of {} bytes is over the SQS limit",
            body.len()
        ));
    }
    let allowed = |c: char| matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    match body.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(format!(
            "character U+{:04X} cannot be sent through SQS",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_sqs_cannot_carry_are_refused() {
        assert!(check_message_body("{\"v\":\"1\",\"name\":\"Zoë 😀\"}").is_ok());
        assert!(check_message_body("\u{FFFF}").is_err());
        assert!(check_message_body("\u{1}").is_err());
        assert!(check_message_body(&"x".repeat(MAX_MESSAGE_BYTES + 1)).is_err());
    }
}
