//! Reading the DLQ without keeping anything (`list`, `show`). SQS cannot read a message without
//! receiving it, so each message is received with a short visibility timeout ([`PEEK_VISIBILITY_S`]) and
//! made visible again as soon as the scan ends.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::anyhow;
use sluice::adapters::sqs::SqsDeadLetters;
use sluice::adapters::sqs::dead_letters::receipt_of;
use sluice::ports::ReceiptHandle;

use super::message::DlqMessage;

/// Seconds a peeked message stays hidden if the CLI dies before making it visible again.
pub const PEEK_VISIBILITY_S: i32 = 30;

/// Reads up to `limit` messages without keeping them (see the module doc); with `id`, stops once that
/// message is found. Every received message is made visible again before this returns.
pub async fn peek(
    dlq: &SqsDeadLetters,
    limit: u32,
    id: Option<&str>,
) -> anyhow::Result<Vec<DlqMessage>> {
    let mut receipts = Vec::new();
    let scanned = scan(dlq, limit, id, &mut receipts).await;
    let stuck = dlq.make_visible(&receipts).await;
    if stuck > 0 {
        eprintln!(
            "note: {stuck} message(s) stay hidden for up to {PEEK_VISIBILITY_S} s (could not reset their visibility)"
        );
    }
    scanned
}

async fn scan(
    dlq: &SqsDeadLetters,
    limit: u32,
    id: Option<&str>,
    receipts: &mut Vec<ReceiptHandle>,
) -> anyhow::Result<Vec<DlqMessage>> {
    let visibility = Duration::from_secs(PEEK_VISIBILITY_S as u64);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while (out.len() as u64) < u64::from(limit) {
        let want = (u64::from(limit) - out.len() as u64).min(10) as i32;
        let batch = dlq.receive(want, visibility).await?;
        // Every receipt first: an early return below must still make the whole batch visible again.
        receipts.extend(
            batch
                .iter()
                .filter(|m| m.receipt_handle().is_some())
                .map(receipt_of),
        );
        let mut new = 0;
        for m in &batch {
            let message = DlqMessage::from_sqs(m);
            if seen.insert(message.id.clone()) && (out.len() as u64) < u64::from(limit) {
                new += 1;
                let found = id == Some(message.id.as_str());
                out.push(message);
                if found {
                    return Ok(out);
                }
            }
        }
        // Empty: everything is hidden by this scan. Only repeats: the first ones came back already.
        if new == 0 {
            break;
        }
    }
    Ok(out)
}

/// Finds one message by its DLQ id.
pub async fn find(dlq: &SqsDeadLetters, id: &str) -> anyhow::Result<DlqMessage> {
    // Every message at most once: an unknown id scans the whole DLQ (bounded by SQS's queue size).
    peek(dlq, u32::MAX, Some(id))
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| {
            anyhow!("no message {id} on the DLQ (ids are in the first column of `sluice dlq list`)")
        })
}
