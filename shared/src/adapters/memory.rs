//! In-memory adapters with a virtual clock: unit tests of the drain engine, and the simulator. The queue
//! follows SQS semantics that matter to the drain: visibility timeouts, receive counts, redrive to a DLQ
//! after `max_receive_count`, and receipts that go stale when a message is received again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
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
    /// Boxed: no spare capacity per message, which adds up with millions queued.
    body: Box<str>,
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

/// Queue state, indexed so that every operation costs O(log n) however deep the backlog: messages by
/// id, visible ones in send order (receive takes the oldest first, like the `VecDeque` scan it replaces),
/// hidden ones in a heap by the time they become visible again (stale heap entries are skipped).
#[derive(Debug, Default)]
struct QueueState {
    messages: BTreeMap<u64, Stored>,
    visible: BTreeSet<u64>,
    hidden: BinaryHeap<Reverse<(DateTime<Utc>, u64)>>,
    dlq: Vec<DeadLettered>,
    next_id: u64,
    calls: QueueCalls,
}

impl QueueState {
    /// Moves messages whose visibility timeout has passed into the visible set.
    fn promote(&mut self, now: DateTime<Utc>) {
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

    fn hide_until(&mut self, id: u64, at: DateTime<Utc>, now: DateTime<Utc>) {
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
    fn by_receipt(&self, receipt: &Receipt) -> Option<u64> {
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

    fn remove(&mut self, id: u64) -> Option<Stored> {
        self.visible.remove(&id);
        self.messages.remove(&id)
    }
}

/// `ReceiveMessage` calls the SQS adapter makes to get `got` messages when asked for `max`: rounds of up to
/// 10 parallel calls of 10, stopping after the first round that comes back short.
fn receive_calls(max: u32, got: usize) -> u64 {
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

    /// Enqueues one message, visible at once (not counted as an API call: producers batch differently).
    pub fn send(&self, body: String) {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        s.next_id += 1;
        let id = s.next_id;
        s.messages.insert(
            id,
            Stored {
                body: body.into_boxed_str(),
                receive_count: 0,
                visible_at: now,
                receipt: None,
                sent_at: now,
            },
        );
        s.visible.insert(id);
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
            let Some(m) = s.messages.get(&id) else {
                continue;
            };
            if m.visible_at > now {
                // The clock was set back: not visible after all.
                let at = m.visible_at;
                s.hidden.push(Reverse((at, id)));
                continue;
            }
            if m.receive_count >= self.max_receive_count {
                if let Some(m) = s.remove(id) {
                    s.dlq.push(DeadLettered {
                        body: m.body.into(),
                        reason: None,
                        detail: Some("maxReceiveCount exceeded".into()),
                        receive_count: m.receive_count,
                    });
                }
                continue;
            }
            s.next_id += 1;
            let receipt = format!("m{id}#{}", s.next_id);
            s.hidden.push(Reverse((hidden_until, id)));
            let Some(m) = s.messages.get_mut(&id) else {
                continue;
            };
            m.receive_count += 1;
            m.visible_at = hidden_until;
            m.receipt = Some(receipt.clone());
            out.push(ReceivedMessage {
                message_id: format!("m{id}"),
                receipt: Receipt(receipt),
                body: m.body.to_string(),
                receive_count: m.receive_count,
            });
        }
        s.calls.receive += receive_calls(max, out.len());
        Ok(out)
    }

    async fn delete(&self, receipts: &[Receipt]) -> PortResult<Vec<Receipt>> {
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

    async fn release(&self, items: &[(Receipt, Duration)]) -> PortResult<()> {
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

    async fn dead_letter(&self, letters: &[DeadLetter]) -> PortResult<()> {
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
                // Same rule as DynamoDB's condition: never backwards; an equal precedence (a retried record of
                // the same change) may write again.
                Some(existing) if existing.precedence > f.precedence => {}
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
    /// Sequence number of the accepted request that carried this record (records of one batch share it).
    pub request: u64,
    pub subscriber: Subscriber,
}

/// Requests the provider answered, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderCalls {
    /// Accepted batch requests.
    pub batch: u64,
    /// Accepted individual requests.
    pub individual: u64,
    /// Requests answered 429 (over the limit; the same count as [`MemoryProvider::over_limit`]).
    pub rate_limited: u64,
    /// Requests refused with 422, or failed by a scripted error.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct ProviderState {
    deliveries: Vec<Delivery>,
    used: HashMap<(QuotaKind, i64), u32>,
    over_limit: u32,
    scripted: VecDeque<ProviderError>,
    reject: Vec<String>,
    max_users_twice: u32,
    calls: ProviderCalls,
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

    /// Removes and returns the deliveries recorded so far: a long simulation reads them as it goes
    /// instead of holding a day of records. [`Self::latest`] sees only what has not been taken.
    pub fn take_deliveries(&self) -> Vec<Delivery> {
        std::mem::take(&mut lock(&self.state).deliveries)
    }

    /// Requests answered so far, by outcome.
    pub fn calls(&self) -> ProviderCalls {
        lock(&self.state).calls
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
            s.calls.failed += 1;
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
            s.calls.rate_limited += 1;
            return Err(ProviderError::RateLimited { retry_after: None });
        }
        *used += 1;
        if let Some(i) = records.iter().position(|r| s.reject.contains(&r.email)) {
            s.calls.failed += 1;
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
        let request = s.calls.batch + s.calls.individual;
        match kind {
            QuotaKind::Batch => s.calls.batch += 1,
            QuotaKind::Individual => s.calls.individual += 1,
        }
        for r in records {
            s.deliveries.push(Delivery {
                at: now,
                kind,
                request,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn queue() -> (ManualClock, MemoryQueue<ManualClock>) {
        let clock = ManualClock::new(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
        let q = MemoryQueue::new(clock.clone(), Duration::from_secs(120), 2);
        (clock, q)
    }

    #[test]
    fn receive_calls_follow_the_adapters_rounds() {
        assert_eq!(receive_calls(1_000, 1_000), 100);
        assert_eq!(receive_calls(1_000, 5), 10, "one short round of 10 calls");
        assert_eq!(receive_calls(1_000, 250), 30, "two full rounds, one short");
        assert_eq!(receive_calls(25, 25), 3);
        assert_eq!(receive_calls(0, 0), 0);
    }

    #[tokio::test]
    async fn visibility_receipts_and_redrive() {
        let (clock, q) = queue();
        for i in 0..3 {
            q.send(format!("b{i}"));
        }
        let got = q.receive(2).await.unwrap();
        assert_eq!(
            got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["b0", "b1"],
            "oldest first"
        );
        assert_eq!(q.backlog().await.unwrap().visible, 1);
        // Released now: visible again at once; a stale receipt cannot delete.
        q.release(&[(got[0].receipt.clone(), Duration::ZERO)])
            .await
            .unwrap();
        let again = q.receive(1).await.unwrap();
        assert_eq!((again[0].body.as_str(), again[0].receive_count), ("b0", 2));
        assert_eq!(q.delete(&[got[0].receipt.clone()]).await.unwrap().len(), 1);
        // The visibility timeout passes: b1 comes back; b0 is over maxReceiveCount and is redriven.
        clock.advance(Duration::from_secs(121));
        let back = q.receive(10).await.unwrap();
        assert_eq!(
            back.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["b1", "b2"]
        );
        assert_eq!(q.dead_letter_count(), 1);
        assert!(
            q.delete(&[back[0].receipt.clone()])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(q.len(), 1);
    }

    /// Rule: the in-memory sync state guards like DynamoDB's, at full precision: a write 400 µs older is
    /// refused, a later position in the same request is taken, and an equal precedence may write again.
    #[tokio::test]
    async fn sync_state_never_moves_backwards_to_the_nanosecond() {
        use crate::domain::{FieldKey, Precedence};
        use crate::ports::SyncedField;
        let store = MemoryStore::default();
        let email = Email::parse("a@x.io").unwrap();
        let t = Utc.timestamp_opt(1_800_000_000, 700_000).unwrap();
        let field = |value: &str, occurred_at, position| {
            SyncedFields::from([(
                FieldKey::Name,
                SyncedField {
                    value: value.into(),
                    precedence: Precedence {
                        occurred_at,
                        accepted_at: t,
                        position,
                    },
                },
            )])
        };
        let name =
            |store: &MemoryStore| store.synced(&email).unwrap()[&FieldKey::Name].value.clone();
        store.record(&email, &field("new", t, 0)).await.unwrap();
        let older = t - chrono::TimeDelta::microseconds(400);
        store.record(&email, &field("old", older, 5)).await.unwrap();
        assert_eq!(name(&store), "new");
        store.record(&email, &field("new", t, 0)).await.unwrap();
        store.record(&email, &field("later", t, 1)).await.unwrap();
        assert_eq!(name(&store), "later");
    }
}
