//! Outcomes as data: every record a run sends (or holds) ends with one [`Outcome`], and one table —
//! [`action`] — maps each outcome to what happens to its messages. No phase needs another phase's
//! bookkeeping: the send phase only produces outcomes, the settle phase only carries out actions.
//!
//! | outcome                    | what it means                                   | queue action                                  |
//! |----------------------------|-------------------------------------------------|-----------------------------------------------|
//! | `Delivered`                | the provider has the record                     | record sync state, then delete                |
//! | `Absorbed`                 | nothing to send (no-op or superseded)           | record no-op timestamps, then delete          |
//! | `Rejected(detail)`         | the provider refused *this* record              | DLQ `rejected` with the provider's answer     |
//! | `Malformed(detail)`        | the body is not a change message                | DLQ `malformed`                               |
//! | `Failed(detail)`           | tried; transient failure (5xx, timeout)         | visible again after backoff; DLQ `retries_exhausted` once the change's attempts reach `MAX_RECEIVE_COUNT` |
//! | `Busy(delay)`              | tried; another client updates this subscriber   | visible again after `delay` (same exhaustion rule) |
//! | `Held(until)`              | not tried (circuit open, quota spent, deadline) | a fresh copy, hidden until `until`; the original deleted — its receive count is not spent |

use std::time::Duration;

use crate::ports::DeadLetterReason;

/// How one record (and so each of its messages) leaves the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Absorbed,
    Rejected(String),
    Malformed(String),
    Failed(String),
    Busy(Duration),
    /// Held, to be tried again after this delay.
    Held(Duration),
}

/// What happens to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// Delete (after the sync state or no-op timestamps are recorded).
    Delete,
    DeadLetter {
        reason: DeadLetterReason,
        detail: String,
    },
    /// Visible again after this delay (the message was tried: its receive count counted an attempt).
    Release(Duration),
    /// Re-queued as a fresh copy, delayed by this much (the message was not tried).
    Requeue(Duration),
}

/// The one table from outcomes to queue actions. `attempts` is the message's delivery attempts so far
/// (this one included), `max_attempts` the configured `MAX_RECEIVE_COUNT`, `backoff` the retry delay for
/// that many attempts.
pub fn action(
    outcome: &Outcome,
    attempts: u32,
    max_attempts: u32,
    backoff: impl FnOnce(u32) -> Duration,
) -> QueueAction {
    let exhausted = |detail: String| QueueAction::DeadLetter {
        reason: DeadLetterReason::RetriesExhausted,
        detail: format!("{attempts} attempts, the last: {detail}"),
    };
    match outcome {
        Outcome::Delivered | Outcome::Absorbed => QueueAction::Delete,
        Outcome::Rejected(detail) => QueueAction::DeadLetter {
            reason: DeadLetterReason::Rejected,
            detail: detail.clone(),
        },
        Outcome::Malformed(detail) => QueueAction::DeadLetter {
            reason: DeadLetterReason::Malformed,
            detail: detail.clone(),
        },
        Outcome::Failed(detail) if attempts >= max_attempts => exhausted(detail.clone()),
        Outcome::Failed(_) => QueueAction::Release(backoff(attempts)),
        Outcome::Busy(_) if attempts >= max_attempts => {
            exhausted("another client kept updating this subscriber".into())
        }
        Outcome::Busy(delay) => QueueAction::Release(*delay),
        Outcome::Held(delay) => QueueAction::Requeue(*delay),
    }
}

impl Outcome {
    /// Whether the provider was called with this record (so its receive counted a real attempt).
    pub fn was_tried(&self) -> bool {
        !matches!(
            self,
            Outcome::Held(_) | Outcome::Absorbed | Outcome::Malformed(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(outcome: Outcome, attempts: u32) -> QueueAction {
        action(&outcome, attempts, 10, |n| {
            Duration::from_secs(u64::from(n))
        })
    }

    #[test]
    fn each_outcome_has_one_queue_action() {
        assert_eq!(act(Outcome::Delivered, 1), QueueAction::Delete);
        assert_eq!(act(Outcome::Absorbed, 1), QueueAction::Delete);
        assert_eq!(
            act(Outcome::Rejected("422".into()), 1),
            QueueAction::DeadLetter {
                reason: DeadLetterReason::Rejected,
                detail: "422".into()
            }
        );
        assert!(matches!(
            act(Outcome::Malformed("x".into()), 1),
            QueueAction::DeadLetter {
                reason: DeadLetterReason::Malformed,
                ..
            }
        ));
        assert_eq!(
            act(Outcome::Failed("503".into()), 3),
            QueueAction::Release(Duration::from_secs(3))
        );
        assert_eq!(
            act(Outcome::Busy(Duration::from_secs(7)), 3),
            QueueAction::Release(Duration::from_secs(7))
        );
        assert_eq!(
            act(Outcome::Held(Duration::from_secs(300)), 9),
            QueueAction::Requeue(Duration::from_secs(300))
        );
    }

    /// Rule: only real attempts exhaust a change; a held change is never dead-lettered, however often held.
    #[test]
    fn only_tried_changes_can_exhaust_their_attempts() {
        assert!(matches!(
            act(Outcome::Failed("503".into()), 10),
            QueueAction::DeadLetter {
                reason: DeadLetterReason::RetriesExhausted,
                ..
            }
        ));
        assert!(matches!(
            act(Outcome::Busy(Duration::from_secs(1)), 10),
            QueueAction::DeadLetter {
                reason: DeadLetterReason::RetriesExhausted,
                ..
            }
        ));
        assert_eq!(
            act(Outcome::Held(Duration::from_secs(60)), 500),
            QueueAction::Requeue(Duration::from_secs(60))
        );
        assert!(!Outcome::Held(Duration::ZERO).was_tried());
        assert!(Outcome::Failed(String::new()).was_tried());
    }
}
