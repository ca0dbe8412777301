//! The in-memory queue's state, indexed so that every operation costs O(log n) however deep the backlog,
//! and how many `ReceiveMessage` calls the SQS adapter would have made.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use chrono::{DateTime, Utc};

use super::CallHook;
use super::queue::{DeadLettered, QueueCalls};
use crate::ports::{ReceiptHandle, ReceivedMessage};

/// A message on the queue.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    /// Boxed: no spare capacity per message, which adds up with millions queued.
    pub(super) body: Box<str>,
    pub(super) receive_count: u32,
    pub(super) visible_at: DateTime<Utc>,
    pub(super) receipt: Option<String>,
    pub(super) sent_at: DateTime<Utc>,
    /// Attempts carried by a re-queued copy.
    pub(super) prior_attempts: u32,
}

/// Queue state, indexed so that every operation costs O(log n) however deep the backlog: messages by
/// id, visible ones in send order (receive takes the oldest first, like the `VecDeque` scan it replaces),
/// hidden ones in a heap by the time they become visible again (stale heap entries are skipped).
#[derive(Debug, Default)]
pub(super) struct QueueState {
    pub(super) messages: BTreeMap<u64, Stored>,
    pub(super) visible: BTreeSet<u64>,
    pub(super) hidden: BinaryHeap<Reverse<(DateTime<Utc>, u64)>>,
    pub(super) dlq: Vec<DeadLettered>,
    pub(super) next_id: u64,
    pub(super) calls: QueueCalls,
    pub(super) receives_by_body: HashMap<String, u32>,
    pub(super) attempts_by_body: HashMap<String, u32>,
    /// Keep neither map above (see `MemoryQueue::without_receive_history`).
    pub(super) forget_receives: bool,
    pub(super) on_receive: Option<CallHook>,
}

impl QueueState {
    pub(super) fn enqueue(
        &mut self,
        body: Box<str>,
        now: DateTime<Utc>,
        visible_at: DateTime<Utc>,
        prior: u32,
    ) {
        self.next_id += 1;
        let id = self.next_id;
        self.messages.insert(
            id,
            Stored {
                body,
                receive_count: 0,
                visible_at,
                receipt: None,
                sent_at: now,
                prior_attempts: prior,
            },
        );
        self.hide_until(id, visible_at, now);
    }

    /// Moves messages whose visibility timeout has passed into the visible set.
    pub(super) fn promote(&mut self, now: DateTime<Utc>) {
        while let Some(Reverse((at, id))) = self.hidden.peek().copied() {
            if at > now {
                break;
            }
            self.hidden.pop();
            // Skip entries made stale by a later receive, release or delete.
            if self.messages.get(&id).is_some_and(|m| m.visible_at == at) {
                self.visible.insert(id);
            }
        }
    }

    pub(super) fn hide_until(&mut self, id: u64, at: DateTime<Utc>, now: DateTime<Utc>) {
        if let Some(m) = self.messages.get_mut(&id) {
            m.visible_at = at;
            if at <= now {
                self.visible.insert(id);
            } else {
                self.visible.remove(&id);
                self.hidden.push(Reverse((at, id)));
            }
        }
    }

    /// The message a receipt belongs to, if the receipt is still the message's latest.
    pub(super) fn by_receipt(&self, receipt: &ReceiptHandle) -> Option<u64> {
        let id: u64 = receipt
            .0
            .strip_prefix('m')?
            .split('#')
            .next()?
            .parse()
            .ok()?;
        let m = self.messages.get(&id)?;
        (m.receipt.as_deref() == Some(receipt.0.as_str())).then_some(id)
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<Stored> {
        self.visible.remove(&id);
        self.messages.remove(&id)
    }

    /// Receives the visible message `id` (hidden until `hidden_until`, with a fresh receipt), or redrives
    /// it to the DLQ once it has been received `max_receive_count` times; `None` when there is nothing to
    /// hand out.
    pub(super) fn receive_one(
        &mut self,
        id: u64,
        now: DateTime<Utc>,
        hidden_until: DateTime<Utc>,
        max_receive_count: u32,
    ) -> Option<ReceivedMessage> {
        let m = self.messages.get(&id)?;
        if m.visible_at > now {
            // The clock was set back: not visible after all.
            let at = m.visible_at;
            self.hidden.push(Reverse((at, id)));
            return None;
        }
        if m.receive_count >= max_receive_count {
            if let Some(m) = self.remove(id) {
                self.dlq.push(DeadLettered {
                    body: m.body.into(),
                    reason: None,
                    detail: Some("maxReceiveCount exceeded".into()),
                    receive_count: m.receive_count,
                    lane: None,
                });
            }
            return None;
        }
        self.next_id += 1;
        let receipt = format!("m{id}#{}", self.next_id);
        self.hidden.push(Reverse((hidden_until, id)));
        let m = self.messages.get_mut(&id)?;
        m.receive_count += 1;
        m.visible_at = hidden_until;
        m.receipt = Some(receipt.clone());
        let message = ReceivedMessage {
            message_id: format!("m{id}"),
            receipt: ReceiptHandle(receipt),
            body: m.body.to_string(),
            receive_count: m.receive_count,
            prior_attempts: m.prior_attempts,
        };
        if self.forget_receives {
            return Some(message);
        }
        *self
            .receives_by_body
            .entry(message.body.clone())
            .or_default() += 1;
        let seen = self
            .attempts_by_body
            .entry(message.body.clone())
            .or_default();
        *seen = (*seen).max(message.attempts());
        Some(message)
    }
}

/// `ReceiveMessage` calls the SQS adapter makes to get `got` messages when asked for `max`: rounds of up to
/// 10 parallel calls of 10, stopping after the first round that comes back short.
pub(super) fn receive_calls(max: u32, got: usize) -> u64 {
    let (mut remaining, mut left, mut calls) = (u64::from(max), got as u64, 0u64);
    while remaining > 0 {
        let round = remaining.div_ceil(10).min(10);
        let asked = remaining.min(round * 10);
        calls += round;
        let served = asked.min(left);
        left -= served;
        remaining -= served;
        if served < asked {
            break;
        }
    }
    calls
}
