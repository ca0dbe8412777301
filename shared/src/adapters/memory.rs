//! In-memory adapters with a virtual clock: unit tests of the drain engine, and the simulator. The queue
//! follows SQS semantics that matter to the drain: visibility timeouts, receive counts, redrive to a DLQ
//! after `max_receive_count`, and receipts that go stale when a message is received again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{Email, RequestId, Subscriber};
use crate::ports::{
    Backlog, ChangeQueue, Clock, Coordination, DeadLetter, PortResult, Provider, ProviderError,
    QuotaKind, QuotaLedger, Receipt, ReceivedMessage, RequestProgress, RequestTracker, Reservation,
    SyncStateStore, SyncedFields, Window,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a test already panicked; keep going with the data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A clock tests and the simulator move by hand.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: Duration) {
        let mut t = lock(&self.0);
        *t += chrono::Duration::from_std(by).unwrap_or_default();
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *lock(&self.0) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }
}

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: DateTime<Utc>,
    receipt: Option<String>,
    sent_at: DateTime<Utc>,
}

/// A message that landed in the in-memory DLQ.
#[derive(Debug, Clone)]
pub struct DeadLettered {
    pub body: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub receive_count: u32,
}

#[derive(Debug, Default)]
struct QueueState {
    messages: VecDeque<Stored>,
    dlq: Vec<DeadLettered>,
    next_id: u64,
    receive_calls: u64,
    delete_calls: u64,
    release_calls: u64,
}

/// An SQS-like queue in memory.
#[derive(Debug, Clone)]
pub struct MemoryQueue<C: Clock + Clone> {
    state: Arc<Mutex<QueueState>>,
    clock: C,
    visibility_timeout: Duration,
    max_receive_count: u32,
}

impl<C: Clock + Clone> MemoryQueue<C> {
    pub fn new(clock: C, visibility_timeout: Duration, max_receive_count: u32) -> Self {
        Self {
            state: Arc::default(),
            clock,
            visibility_timeout,
            max_receive_count,
        }
    }

    pub fn send(&self, body: String) {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        s.next_id += 1;
        let id = format!("m{}", s.next_id);
        s.messages.push_back(Stored {
            id,
            body,
            receive_count: 0,
            visible_at: now,
            receipt: None,
            sent_at: now,
        });
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

    /// (receive, delete, release) API calls made, each counting one SQS request of up to 10 entries.
    pub fn calls(&self) -> (u64, u64, u64) {
        let s = lock(&self.state);
        (s.receive_calls, s.delete_calls, s.release_calls)
    }

    /// When the oldest message still queued was sent.
    pub fn oldest_sent_at(&self) -> Option<DateTime<Utc>> {
        lock(&self.state).messages.iter().map(|m| m.sent_at).min()
    }
}

impl<C: Clock + Clone> ChangeQueue for MemoryQueue<C> {
    async fn backlog(&self) -> PortResult<Backlog> {
        let now = self.clock.now();
        let s = lock(&self.state);
        let visible = s.messages.iter().filter(|m| m.visible_at <= now).count() as u64;
        Ok(Backlog {
            visible,
            in_flight: s.messages.len() as u64 - visible,
            delayed: 0,
        })
    }

    async fn receive(&self, max: u32) -> PortResult<Vec<ReceivedMessage>> {
        let now = self.clock.now();
        let hidden_until =
            now + chrono::Duration::from_std(self.visibility_timeout).unwrap_or_default();
        let mut s = lock(&self.state);
        s.receive_calls += u64::from(max.div_ceil(10));
        let mut out = Vec::new();
        let mut redrive = Vec::new();
        let mut receipt_seq = s.next_id;
        for (pos, m) in s.messages.iter_mut().enumerate() {
            if out.len() as u32 >= max {
                break;
            }
            if m.visible_at > now {
                continue;
            }
            if m.receive_count >= self.max_receive_count {
                redrive.push(pos);
                continue;
            }
            m.receive_count += 1;
            m.visible_at = hidden_until;
            receipt_seq += 1;
            let receipt = format!("{}#{}", m.id, receipt_seq);
            m.receipt = Some(receipt.clone());
            out.push(ReceivedMessage {
                message_id: m.id.clone(),
                receipt: Receipt(receipt),
                body: m.body.clone(),
                receive_count: m.receive_count,
            });
        }
        s.next_id = receipt_seq;
        for pos in redrive.into_iter().rev() {
            if let Some(m) = s.messages.remove(pos) {
                s.dlq.push(DeadLettered {
                    body: m.body,
                    reason: None,
                    detail: Some("maxReceiveCount exceeded".into()),
                    receive_count: m.receive_count,
                });
            }
        }
        Ok(out)
    }

    async fn delete(&self, receipts: &[Receipt]) -> PortResult<Vec<Receipt>> {
        let mut s = lock(&self.state);
        s.delete_calls += (receipts.len() as u64).div_ceil(10);
        let mut failed = Vec::new();
        for r in receipts {
            match s
                .messages
                .iter()
                .position(|m| m.receipt.as_deref() == Some(r.0.as_str()))
            {
                Some(pos) => {
                    s.messages.remove(pos);
                }
                None => failed.push(r.clone()),
            }
        }
        Ok(failed)
    }

    async fn release(&self, items: &[(Receipt, Duration)]) -> PortResult<()> {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        s.release_calls += (items.len() as u64).div_ceil(10);
        for (r, delay) in items {
            if let Some(m) = s
                .messages
                .iter_mut()
                .find(|m| m.receipt.as_deref() == Some(r.0.as_str()))
            {
                m.visible_at = now + chrono::Duration::from_std(*delay).unwrap_or_default();
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> PortResult<()> {
        let mut s = lock(&self.state);
        for l in letters {
            if let Some(pos) = s
                .messages
                .iter()
                .position(|m| m.receipt.as_deref() == Some(l.message.receipt.0.as_str()))
            {
                s.messages.remove(pos);
            }
            s.dlq.push(DeadLettered {
                body: l.message.body.clone(),
                reason: Some(l.reason.as_str().to_string()),
                detail: Some(l.detail.clone()),
                receive_count: l.message.receive_count,
            });
        }
        Ok(())
    }
}

/// The lease holder and when the lease expires.
type Lease = (String, DateTime<Utc>);

/// Quota ledger, sync state, coordination and request progress in memory (what DynamoDB holds in AWS).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    quota: Arc<Mutex<HashMap<(QuotaKind, i64), u32>>>,
    sync: Arc<Mutex<HashMap<Email, SyncedFields>>>,
    lease: Arc<Mutex<Option<Lease>>>,
    circuit: Arc<Mutex<Option<DateTime<Utc>>>>,
    requests: Arc<Mutex<HashMap<RequestId, RequestProgress>>>,
}

impl MemoryStore {
    pub fn synced(&self, email: &Email) -> Option<SyncedFields> {
        lock(&self.sync).get(email).cloned()
    }

    pub fn progress(&self, id: &RequestId) -> Option<RequestProgress> {
        lock(&self.requests).get(id).copied()
    }

    /// Holds the lease for someone else (tests of single flight).
    pub fn hold_lease(&self, holder: &str, until: DateTime<Utc>) {
        *lock(&self.lease) = Some((holder.to_string(), until));
    }
}

impl QuotaLedger for MemoryStore {
    async fn used(&self, kind: QuotaKind, window: Window) -> PortResult<u32> {
        Ok(lock(&self.quota)
            .get(&(kind, window.start))
            .copied()
            .unwrap_or(0))
    }

    async fn reserve(
        &self,
        kind: QuotaKind,
        window: Window,
        n: u32,
        limit: u32,
    ) -> PortResult<Reservation> {
        let mut q = lock(&self.quota);
        let used = q.entry((kind, window.start)).or_insert(0);
        if used.saturating_add(n) <= limit {
            *used += n;
            Ok(Reservation::Granted { used: *used })
        } else {
            Ok(Reservation::Exhausted { used: *used })
        }
    }

    async fn mark_spent(&self, kind: QuotaKind, window: Window, limit: u32) -> PortResult<()> {
        let mut q = lock(&self.quota);
        let used = q.entry((kind, window.start)).or_insert(0);
        *used = (*used).max(limit);
        Ok(())
    }
}

impl SyncStateStore for MemoryStore {
    async fn load(&self, emails: &[Email]) -> PortResult<HashMap<Email, SyncedFields>> {
        let s = lock(&self.sync);
        Ok(emails
            .iter()
            .filter_map(|e| s.get(e).map(|f| (e.clone(), f.clone())))
            .collect())
    }

    async fn record(&self, email: &Email, fields: &SyncedFields) -> PortResult<()> {
        let mut s = lock(&self.sync);
        let current = s.entry(email.clone()).or_default();
        for (k, f) in fields {
            match current.get(k) {
                Some(existing) if existing.occurred_at > f.occurred_at => {}
                _ => {
                    current.insert(k.clone(), f.clone());
                }
            }
        }
        Ok(())
    }
}

impl Coordination for MemoryStore {
    async fn acquire_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<bool> {
        let mut l = lock(&self.lease);
        match &*l {
            Some((_, expires)) if *expires > now => Ok(false),
            _ => {
                *l = Some((holder.to_string(), until));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, holder: &str) -> PortResult<()> {
        let mut l = lock(&self.lease);
        if l.as_ref().is_some_and(|(h, _)| h == holder) {
            *l = None;
        }
        Ok(())
    }

    async fn circuit_open_until(&self) -> PortResult<Option<DateTime<Utc>>> {
        Ok(*lock(&self.circuit))
    }

    async fn open_circuit(&self, until: DateTime<Utc>, _reason: &str) -> PortResult<()> {
        *lock(&self.circuit) = Some(until);
        Ok(())
    }
}

impl RequestTracker for MemoryStore {
    async fn add(&self, progress: &HashMap<RequestId, RequestProgress>) -> PortResult<()> {
        let mut r = lock(&self.requests);
        for (id, p) in progress {
            let e = r.entry(*id).or_default();
            e.delivered += p.delivered;
            e.skipped += p.skipped;
            e.dead_lettered += p.dead_lettered;
        }
        Ok(())
    }
}

/// What the in-memory provider received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub at: DateTime<Utc>,
    pub kind: QuotaKind,
    pub subscriber: Subscriber,
}

#[derive(Debug, Default)]
struct ProviderState {
    deliveries: Vec<Delivery>,
    used: HashMap<(QuotaKind, i64), u32>,
    over_limit: u32,
    scripted: VecDeque<ProviderError>,
    reject: Vec<String>,
    max_users_twice: u32,
}

/// A provider that enforces the limits on its own count (answering 429 over them) and records everything.
#[derive(Debug, Clone)]
pub struct MemoryProvider<C: Clock + Clone> {
    state: Arc<Mutex<ProviderState>>,
    clock: C,
    batch_limit: u32,
    individual_limit: u32,
    window_seconds: u32,
}

impl<C: Clock + Clone> MemoryProvider<C> {
    pub fn new(clock: C, batch_limit: u32, individual_limit: u32, window_seconds: u32) -> Self {
        Self {
            state: Arc::default(),
            clock,
            batch_limit,
            individual_limit,
            window_seconds,
        }
    }

    /// The next calls fail with these errors, in order (before quota is counted).
    pub fn script(&self, errors: impl IntoIterator<Item = ProviderError>) {
        lock(&self.state).scripted.extend(errors);
    }

    /// Records with this email are refused with a 422 naming them.
    pub fn reject_email(&self, email: &str) {
        lock(&self.state).reject.push(email.to_string());
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.state).deliveries.clone()
    }

    /// Requests that arrived over the limit (answered 429). Must stay 0.
    pub fn over_limit(&self) -> u32 {
        lock(&self.state).over_limit
    }

    /// Requests that named one user twice. Must stay 0.
    pub fn users_twice_in_one_request(&self) -> u32 {
        lock(&self.state).max_users_twice
    }

    /// The provider's view: every delivered field folded in arrival order.
    pub fn latest(&self) -> BTreeMap<String, Subscriber> {
        let mut out: BTreeMap<String, Subscriber> = BTreeMap::new();
        for d in lock(&self.state).deliveries.iter() {
            let s = out
                .entry(d.subscriber.email.clone())
                .or_insert_with(|| Subscriber {
                    email: d.subscriber.email.clone(),
                    ..Subscriber::default()
                });
            if let Some(n) = &d.subscriber.name {
                s.name = Some(n.clone());
            }
            if let Some(t) = &d.subscriber.time_zone {
                s.time_zone = Some(t.clone());
            }
            s.custom_fields.extend(d.subscriber.custom_fields.clone());
        }
        out
    }

    fn call(&self, kind: QuotaKind, records: &[Subscriber]) -> Result<(), ProviderError> {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        if let Some(e) = s.scripted.pop_front() {
            return Err(e);
        }
        let window = Window::containing(now, self.window_seconds);
        let limit = match kind {
            QuotaKind::Batch => self.batch_limit,
            QuotaKind::Individual => self.individual_limit,
        };
        let used = s.used.entry((kind, window.start)).or_insert(0);
        if *used >= limit {
            s.over_limit += 1;
            return Err(ProviderError::RateLimited { retry_after: None });
        }
        *used += 1;
        if let Some(i) = records.iter().position(|r| s.reject.contains(&r.email)) {
            return Err(ProviderError::Rejected {
                index: Some(i),
                detail: format!("subscribers[{i}].email: rejected"),
            });
        }
        let mut emails: Vec<&str> = records.iter().map(|r| r.email.as_str()).collect();
        emails.sort_unstable();
        let n = emails.len();
        emails.dedup();
        if emails.len() != n {
            s.max_users_twice += 1;
        }
        for r in records {
            s.deliveries.push(Delivery {
                at: now,
                kind,
                subscriber: r.clone(),
            });
        }
        Ok(())
    }
}

impl<C: Clock + Clone> Provider for MemoryProvider<C> {
    async fn send_batch(&self, records: &[Subscriber]) -> Result<(), ProviderError> {
        self.call(QuotaKind::Batch, records)
    }

    async fn send_individual(&self, record: &Subscriber) -> Result<(), ProviderError> {
        self.call(QuotaKind::Individual, std::slice::from_ref(record))
    }
}
