//! The entry-level batch calls the drain's queue and the operators' DLQ tools share, at most
//! [`MAX_BATCH_ENTRIES`] entries a call: delete, change visibility, send. Each returns what SQS refused
//! entry by entry; what a refusal means (retry later, leave it, report it) is the caller's to say.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    SendMessageBatchRequestEntry,
};

use super::MAX_BATCH_ENTRIES;
use crate::adapters::sdk_error::port_error;
use crate::ports::{PortError, PortResult, ReceiptHandle};

/// SQS's longest visibility timeout (12 h).
const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// One entry of a batch call that SQS refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RefusedEntry {
    /// The entry's position in the call.
    pub index: usize,
    /// `code: message`, as SQS gave them.
    pub reason: String,
}

/// Deletes received messages (at most [`MAX_BATCH_ENTRIES`]); returns the receipts SQS did not delete.
pub(super) async fn delete(
    client: &Client,
    queue_url: &str,
    receipts: &[ReceiptHandle],
    what: &'static str,
) -> PortResult<Vec<ReceiptHandle>> {
    debug_assert!(receipts.len() <= MAX_BATCH_ENTRIES);
    if receipts.is_empty() {
        return Ok(Vec::new());
    }
    let entries = receipts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(entry_id(i))
                .receipt_handle(&r.0)
                .build()
                .map_err(|e| PortError::permanent("building a delete entry", e))
        })
        .collect::<PortResult<Vec<_>>>()?;
    let out = client
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| port_error(what, e))?;
    Ok(out
        .failed()
        .iter()
        .filter_map(|f| f.id().parse::<usize>().ok())
        .filter_map(|i| receipts.get(i).cloned())
        .collect())
}

/// Sets the visibility timeout of received messages (at most [`MAX_BATCH_ENTRIES`], each capped at
/// SQS's 12 h); returns how many SQS did not change.
pub(super) async fn change_visibility(
    client: &Client,
    queue_url: &str,
    items: &[(ReceiptHandle, Duration)],
    what: &'static str,
) -> PortResult<usize> {
    debug_assert!(items.len() <= MAX_BATCH_ENTRIES);
    if items.is_empty() {
        return Ok(0);
    }
    let entries = items
        .iter()
        .enumerate()
        .map(|(i, (r, timeout))| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(entry_id(i))
                .receipt_handle(&r.0)
                .visibility_timeout(timeout.min(&MAX_VISIBILITY).as_secs() as i32)
                .build()
                .map_err(|e| PortError::permanent("building a visibility entry", e))
        })
        .collect::<PortResult<Vec<_>>>()?;
    let out = client
        .change_message_visibility_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| port_error(what, e))?;
    Ok(out.failed().len())
}

/// One `SendMessageBatch` (entries with ids `0..n`, see [`entry_id`]); returns the entries SQS refused.
pub(super) async fn send(
    client: &Client,
    queue_url: &str,
    entries: Vec<SendMessageBatchRequestEntry>,
    what: &'static str,
) -> PortResult<Vec<RefusedEntry>> {
    debug_assert!(entries.len() <= MAX_BATCH_ENTRIES);
    let out = client
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| port_error(what, e))?;
    Ok(out
        .failed()
        .iter()
        .filter_map(|f| {
            Some(RefusedEntry {
                index: f.id().parse().ok()?,
                reason: format!("{}: {}", f.code(), f.message().unwrap_or_default()),
            })
        })
        .collect())
}

/// The id of the entry at `index` in a batch call: its position, so a refusal names its item.
pub(super) fn entry_id(index: usize) -> String {
    index.to_string()
}

/// `items` (in the order their entries were sent) split into (accepted, refused).
pub(super) fn split_refused<T: Clone>(items: &[T], refused: &[RefusedEntry]) -> (Vec<T>, Vec<T>) {
    let mut accepted = Vec::with_capacity(items.len());
    let mut not = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if refused.iter().any(|r| r.index == i) {
            not.push(item.clone());
        } else {
            accepted.push(item.clone());
        }
    }
    (accepted, not)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_entries_are_split_out_by_position() {
        let refused = [RefusedEntry {
            index: 1,
            reason: "InternalError: x".into(),
        }];
        assert_eq!(
            split_refused(&["a", "b", "c"], &refused),
            (vec!["a", "c"], vec!["b"])
        );
        assert_eq!(split_refused(&["a"], &[]), (vec!["a"], vec![]));
    }
}
