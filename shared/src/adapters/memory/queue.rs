//! An SQS-like queue in memory: visibility timeouts, receive counts, redrive to a DLQ after
//! `max_receive_count`, receipts that go stale when a message is received again, and the API calls the
//! SQS adapter would have made for the same work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::queue_state::{QueueState, receive_calls};
use super::{CallHook, Faults, Op, lock};
use crate::domain::Priority;
use crate::ports::{
    Backlog, ChangeQueue, Clock, DeadLetter, PortResult, ReceiptHandle, ReceivedMessage,
};

/// A message that landed in the in-memory DLQ.
#[derive(Debug, Clone)]
pub struct DeadLettered {
    pub body: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub receive_count: u32,
    /// The lane it was received from (what the SQS adapter writes as `sluice.lane`); `None` when the
    /// queue's own redrive moved it (SQS writes no attribute either).
    pub lane: Option<Priority>,
}

/// SQS API calls the queue has answered, counted the way the SQS adapter makes them (requests of at most
/// 10 entries; receives in parallel rounds of up to 10 calls that stop after a short round).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCalls {
    /// `SendMessageBatch` calls producers reported with [`MemoryQueue::count_send_calls`].
    pub send: u64,
    /// `ReceiveMessage` calls.
    pub receive: u64,
    /// `DeleteMessageBatch` calls (dead-lettering included).
    pub delete: u64,
    /// `ChangeMessageVisibilityBatch` calls.
    pub change_visibility: u64,
    /// `GetQueueAttributes` calls (the backlog read).
    pub get_attributes: u64,
    /// `SendMessageBatch` calls to the DLQ.
    pub dlq_send: u64,
}

impl std::ops::Add for QueueCalls {
    type Output = Self;

    /// The calls of two queues together (a day's lanes).
    fn add(self, other: Self) -> Self {
        Self {
            send: self.send + other.send,
            receive: self.receive + other.receive,
            delete: self.delete + other.delete,
            change_visibility: self.change_visibility + other.change_visibility,
            get_attributes: self.get_attributes + other.get_attributes,
            dlq_send: self.dlq_send + other.dlq_send,
        }
    }
}

/// An SQS-like queue in memory.
#[derive(Debug, Clone)]
pub struct MemoryQueue<C: Clock + Clone> {
    state: Arc<Mutex<QueueState>>,
    clock: C,
    visibility_timeout: Duration,
    max_receive_count: u32,
    faults: Faults,
}

impl<C: Clock + Clone> MemoryQueue<C> {
    pub fn new(clock: C, visibility_timeout: Duration, max_receive_count: u32) -> Self {
        Self {
            state: Arc::default(),
            clock,
            visibility_timeout,
            max_receive_count,
            faults: Faults::default(),
        }
    }

    /// The same queue, breaking calls as `faults` says.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The same queue without [`Self::receives_by_body`] and [`Self::attempts_by_body`] (they stay empty):
    /// they keep a copy of every body ever received, which a simulated day of millions cannot afford.
    pub fn without_receive_history(self) -> Self {
        lock(&self.state).forget_receives = true;
        self
    }

    /// Runs `f` at the start of every receive (a slow queue on a virtual clock).
    pub fn on_receive(&self, f: impl Fn() + Send + Sync + 'static) {
        lock(&self.state).on_receive = Some(CallHook(Arc::new(f)));
    }

    /// Receives of every message ever received, by body (copies of one change share a body), for
    /// invariant checks: receives on the changes queue, over all copies.
    pub fn receives_by_body(&self) -> HashMap<String, u32> {
        lock(&self.state).receives_by_body.clone()
    }

    /// The highest attempt count (`ReceivedMessage::attempts`, which decides `retries_exhausted`) any
    /// copy of each change was received with, by body.
    pub fn attempts_by_body(&self) -> HashMap<String, u32> {
        lock(&self.state).attempts_by_body.clone()
    }

    /// Enqueues one message, visible at once (not counted as an API call: producers batch differently).
    pub fn send(&self, body: String) {
        let now = self.clock.now();
        lock(&self.state).enqueue(body.into_boxed_str(), now, now, 0);
    }

    /// Counts `SendMessageBatch` calls a producer made (ingest sends up to 10 messages per call).
    pub fn count_send_calls(&self, calls: u64) {
        lock(&self.state).calls.send += calls;
    }

    /// Messages still on the queue (visible or not).
    pub fn len(&self) -> usize {
        lock(&self.state).messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dead_letters(&self) -> Vec<DeadLettered> {
        lock(&self.state).dlq.clone()
    }

    /// Messages in the DLQ.
    pub fn dead_letter_count(&self) -> usize {
        lock(&self.state).dlq.len()
    }

    /// (receive, delete, release) API calls made.
    pub fn calls(&self) -> (u64, u64, u64) {
        let c = lock(&self.state).calls;
        (c.receive, c.delete, c.change_visibility)
    }

    /// Every kind of SQS call made so far.
    pub fn api_calls(&self) -> QueueCalls {
        lock(&self.state).calls
    }

    /// When the oldest message still queued was sent.
    pub fn oldest_sent_at(&self) -> Option<DateTime<Utc>> {
        lock(&self.state).messages.values().map(|m| m.sent_at).min()
    }
}

impl<C: Clock + Clone> ChangeQueue for MemoryQueue<C> {
    async fn backlog(&self) -> PortResult<Backlog> {
        self.faults.check(Op::Backlog).await?;
        let now = self.clock.now();
        let mut s = lock(&self.state);
        s.calls.get_attributes += 1;
        s.promote(now);
        let visible = s.visible.len() as u64;
        Ok(Backlog {
            visible,
            in_flight: s.messages.len() as u64 - visible,
            delayed: 0,
        })
    }

    async fn receive(&self, max: u32) -> PortResult<Vec<ReceivedMessage>> {
        self.faults.check(Op::Receive).await?;
        let hook = lock(&self.state).on_receive.clone();
        if let Some(CallHook(f)) = hook {
            f();
        }
        let now = self.clock.now();
        let hidden_until =
            now + chrono::Duration::from_std(self.visibility_timeout).unwrap_or_default();
        let mut s = lock(&self.state);
        s.promote(now);
        let mut out = Vec::new();
        while (out.len() as u32) < max {
            let Some(id) = s.visible.pop_first() else {
                break;
            };
            out.extend(s.receive_one(id, now, hidden_until, self.max_receive_count));
        }
        s.calls.receive += receive_calls(max, out.len());
        Ok(out)
    }

    async fn delete(&self, receipts: &[ReceiptHandle]) -> PortResult<Vec<ReceiptHandle>> {
        self.faults.check(Op::Delete).await?;
        let mut s = lock(&self.state);
        s.calls.delete += (receipts.len() as u64).div_ceil(10);
        let mut failed = Vec::new();
        for r in receipts {
            match s.by_receipt(r) {
                Some(id) => {
                    s.remove(id);
                }
                None => failed.push(r.clone()),
            }
        }
        Ok(failed)
    }

    async fn release(&self, items: &[(ReceiptHandle, Duration)]) -> PortResult<()> {
        self.faults.check(Op::Release).await?;
        let now = self.clock.now();
        let mut s = lock(&self.state);
        s.calls.change_visibility += (items.len() as u64).div_ceil(10);
        for (r, delay) in items {
            if let Some(id) = s.by_receipt(r) {
                let at = now + chrono::Duration::from_std(*delay).unwrap_or_default();
                s.hide_until(id, at, now);
            }
        }
        Ok(())
    }

    async fn requeue(
        &self,
        items: &[(ReceivedMessage, Duration)],
    ) -> PortResult<Vec<ReceiptHandle>> {
        self.faults.check(Op::Requeue).await?;
        let now = self.clock.now();
        let mut s = lock(&self.state);
        let calls = (items.len() as u64).div_ceil(10);
        s.calls.send += calls;
        s.calls.delete += calls;
        let mut failed = Vec::new();
        for (m, delay) in items {
            // SQS delays a message by at most 15 minutes.
            let delay = (*delay).min(Duration::from_secs(900));
            let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
            let attempts = m.attempts_before_this_receive();
            s.enqueue(m.body.clone().into_boxed_str(), now, at, attempts);
            match s.by_receipt(&m.receipt) {
                Some(id) => {
                    s.remove(id);
                }
                None => failed.push(m.receipt.clone()),
            }
        }
        Ok(failed)
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> PortResult<()> {
        self.faults.check(Op::DeadLetter).await?;
        let mut s = lock(&self.state);
        let calls = (letters.len() as u64).div_ceil(10);
        s.calls.dlq_send += calls;
        s.calls.delete += calls;
        for l in letters {
            if let Some(id) = s.by_receipt(&l.message.receipt) {
                s.remove(id);
            }
            s.dlq.push(DeadLettered {
                body: l.message.body.clone(),
                reason: Some(l.reason.as_str().to_string()),
                detail: Some(l.detail.clone()),
                receive_count: l.message.attempts(),
                lane: Some(l.lane),
            });
        }
        Ok(())
    }
}
