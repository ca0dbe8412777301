//! Re-implementations of the two policies Sluice replaces, as small drain loops over the same in-memory
//! queue and provider. They are written from their one-line descriptions in issue 6, not taken from any
//! product:
//!
//! - [`ThresholdSweep`]: every minute, send a batch whenever ≥ `BATCH_SIZE` (1,000) changes are queued
//!   and batch quota remains; in the last run of each hour, sweep the rest — batches while batch quota
//!   remains, then one individual request per user while individual quota remains.
//! - [`FixedSpacing`]: batch-only, one batch every 72 s (3,600 s / 50) carrying up to 1,000 queued changes.
//!
//! What they share with Sluice: receive from the queue oldest first, delete after a successful send, count
//! their own quota per provider window (so they never exceed it). What they do *not* do: no sync state,
//! so no no-op dropping and no stale-overwrite guard, and no coalescing across requests. The provider
//! refuses a request that names one user twice, so within **one request** changes to the same email are
//! merged (newest `occurred_at` wins per field), which is the least any client must do.
//!
//! Like Sluice's drain (and any Lambda), a run stops starting provider calls at its deadline
//! ([`RUN_DEADLINE`] after it starts). Only a provider that hangs (the outage day's timeouts) moves the
//! clock during a run, so on the other days the deadline never bites.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice::adapters::memory::{ManualClock, MemoryQueue};
use sluice::config::Limits;
use sluice::domain::{Change, ChangeMessage, FieldKey, Subscriber};
use sluice::ports::{
    ChangeQueue, Clock as _, Provider, QuotaModel, ReceiptHandle, ReceivedMessage, Window,
};

use crate::day::RUN_DEADLINE;
use crate::fault::FaultyProvider;

type Queue = MemoryQueue<ManualClock>;
type Prov = FaultyProvider;

/// Quota a baseline has used in the current window, by its own count.
#[derive(Debug, Clone, Copy)]
struct OwnQuota {
    window: Window,
    batch: u32,
    individual: u32,
}

impl OwnQuota {
    fn at(&mut self, now: DateTime<Utc>, length: u32) {
        let window = Window::containing(now, length);
        if window != self.window {
            *self = Self {
                window,
                batch: 0,
                individual: 0,
            };
        }
    }
}

/// Received messages merged into one record per email (newest `occurred_at` per field wins).
fn merge_per_email(messages: &[ReceivedMessage]) -> Vec<Subscriber> {
    let mut by_email: BTreeMap<String, BTreeMap<FieldKey, (DateTime<Utc>, String)>> =
        BTreeMap::new();
    for m in messages {
        let Ok(msg) = ChangeMessage::from_body(&m.body) else {
            continue;
        };
        let change: Change = msg.into_change();
        let fields = by_email
            .entry(change.email.as_str().to_string())
            .or_default();
        for (key, value) in change.fields() {
            match fields.get(&key) {
                Some((at, _)) if *at >= change.occurred_at => {}
                _ => {
                    fields.insert(key, (change.occurred_at, value));
                }
            }
        }
    }
    by_email
        .into_iter()
        .map(|(email, fields)| {
            let mut s = Subscriber {
                email,
                ..Subscriber::default()
            };
            for (key, (_, value)) in fields {
                s.set(&key, value);
            }
            s
        })
        .collect()
}

fn receipts(messages: &[ReceivedMessage]) -> Vec<ReceiptHandle> {
    messages.iter().map(|m| m.receipt.clone()).collect()
}

/// Shared plumbing of both baselines.
struct Loop {
    queue: Queue,
    provider: Prov,
    limits: Limits,
    quota: OwnQuota,
    /// No provider call starts at or after this (set by each invocation).
    deadline: DateTime<Utc>,
}

impl Loop {
    fn new(queue: Queue, provider: Prov, limits: Limits) -> Self {
        Self {
            queue,
            provider,
            limits,
            quota: OwnQuota {
                window: Window {
                    start: i64::MIN,
                    length: limits.window_seconds,
                    model: QuotaModel::Fixed,
                },
                batch: 0,
                individual: 0,
            },
            deadline: DateTime::<Utc>::MIN_UTC,
        }
    }

    /// A new run at `now`: the quota count follows the window, the deadline the run.
    fn start(&mut self, now: DateTime<Utc>) {
        self.quota.at(now, self.limits.window_seconds);
        self.deadline = now + chrono::Duration::from_std(RUN_DEADLINE).unwrap_or_default();
    }

    fn past_deadline(&self) -> bool {
        self.provider.clock().now() >= self.deadline
    }

    async fn visible(&self) -> anyhow::Result<u64> {
        Ok(self.queue.backlog().await?.visible)
    }

    /// Receives up to one batch, sends it merged per email, deletes it. Returns records sent.
    async fn one_batch(&mut self) -> anyhow::Result<usize> {
        let messages = self.queue.receive(self.limits.batch_size).await?;
        if messages.is_empty() {
            return Ok(0);
        }
        let records = merge_per_email(&messages);
        self.quota.batch += 1;
        match self.provider.send_batch(&records).await.result {
            Ok(()) => {
                self.queue.delete(&receipts(&messages)).await?;
                Ok(records.len())
            }
            Err(_) => {
                let back: Vec<(ReceiptHandle, Duration)> = messages
                    .iter()
                    .map(|m| (m.receipt.clone(), Duration::ZERO))
                    .collect();
                self.queue.release(&back).await?;
                Ok(0)
            }
        }
    }

    /// Sends what is queued as individual requests (one per user) while individual quota remains.
    async fn individually(&mut self) -> anyhow::Result<()> {
        loop {
            let left = self
                .limits
                .individual_per_window
                .saturating_sub(self.quota.individual);
            if left == 0 || self.visible().await? == 0 {
                return Ok(());
            }
            let messages = self.queue.receive(left.min(1_000)).await?;
            if messages.is_empty() {
                return Ok(());
            }
            let records = merge_per_email(&messages);
            let mut failed = false;
            for r in &records {
                if self.past_deadline() {
                    failed = true;
                    break;
                }
                self.quota.individual += 1;
                failed |= self.provider.send_individual(r).await.result.is_err();
            }
            if failed {
                // A provider failure or the deadline (own quota count: never a 429); leave the messages
                // to reappear after the visibility timeout.
                return Ok(());
            }
            self.queue.delete(&receipts(&messages)).await?;
        }
    }
}

/// Baseline (a): a batch whenever ≥ 1,000 changes are queued, the rest swept hourly.
pub struct ThresholdSweep {
    inner: Loop,
    period: Duration,
}

impl ThresholdSweep {
    pub fn new(queue: Queue, provider: Prov, limits: Limits, period: Duration) -> Self {
        Self {
            inner: Loop::new(queue, provider, limits),
            period,
        }
    }

    pub async fn invoke(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let l = &mut self.inner;
        l.start(now);
        let sweep = now + chrono::Duration::from_std(self.period)? >= l.quota.window.end_time();
        while l.quota.batch < l.limits.batch_per_window && !l.past_deadline() {
            let visible = l.visible().await?;
            let due = visible >= u64::from(l.limits.batch_size) || (sweep && visible > 0);
            if !due || l.one_batch().await? == 0 {
                break;
            }
        }
        if sweep {
            l.individually().await?;
        }
        Ok(())
    }
}

/// Baseline (b): batch-only, one batch every 72 s.
pub struct FixedSpacing {
    inner: Loop,
}

impl FixedSpacing {
    pub fn new(queue: Queue, provider: Prov, limits: Limits) -> Self {
        Self {
            inner: Loop::new(queue, provider, limits),
        }
    }

    /// 3,600 s / 50 batches.
    pub fn period(limits: &Limits) -> Duration {
        Duration::from_secs(u64::from(
            limits.window_seconds / limits.batch_per_window.max(1),
        ))
    }

    pub async fn invoke(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let l = &mut self.inner;
        l.start(now);
        if l.quota.batch < l.limits.batch_per_window && l.visible().await? > 0 {
            l.one_batch().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sluice_test_support::changes::name_change;

    fn message(email: &str, secs: i64, name: &str) -> ReceivedMessage {
        let at = DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        let change = Change {
            occurred_at: at,
            accepted_at: at,
            ..name_change(email, name)
        };
        ReceivedMessage {
            message_id: "m".into(),
            receipt: ReceiptHandle("r".into()),
            body: ChangeMessage::V1(change).to_body(),
            receive_count: 1,
            prior_attempts: 0,
        }
    }

    #[test]
    fn a_request_never_names_a_user_twice_and_newest_wins() {
        let merged = merge_per_email(&[
            message("a@x.io", 2, "new"),
            message("a@x.io", 1, "old"),
            message("b@x.io", 1, "b"),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].name.as_deref(), Some("new"));
    }
}
