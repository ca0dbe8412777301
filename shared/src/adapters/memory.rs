//! In-memory adapters with a virtual clock: unit tests of the drain engine, and the simulator. The queue
//! follows SQS semantics that matter to the drain: visibility timeouts, receive counts, redrive to a DLQ
//! after `max_receive_count`, and receipts that go stale when a message is received again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{ChangeId, Email, RequestId, Subscriber};
use crate::ports::{
    Backlog, ChangeQueue, CircuitState, CircuitStore, Clock, DeadLetter, DrainLease, InFlight,
    PortError, PortResult, Provider, ProviderError, QuotaKind, QuotaLedger, ReceiptHandle,
    ReceivedMessage, Reply, RequestProgress, RequestTracker, Reservation, Settled, SyncStateStore,
    SyncWrite, SyncedFields, Window,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a test already panicked; keep going with the data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The operations a fault script can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Receive,
    Delete,
    Release,
    Requeue,
    DeadLetter,
    Backlog,
    QuotaRead,
    Reserve,
    SyncLoad,
    SyncRecord,
    Lease,
    Circuit,
    Progress,
}

/// What a faulty operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Returns a transient error without doing anything.
    Fail,
    /// Never returns: the run "crashes" there (the test drops it, e.g. with a timeout).
    Hang,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Per operation: the next calls to break, in order.
    scripted: BTreeMap<Op, VecDeque<Fault>>,
    /// Every operation counts down; the call that reaches 0 hangs (a crash at any step).
    crash_after: Option<u32>,
}

/// Faults shared by the in-memory adapters, for fault-script tests: failed or hanging calls of any port.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<FaultState>>);

impl Faults {
    /// The next `n` calls of `op` fail (or hang).
    pub fn inject(&self, op: Op, fault: Fault, n: usize) {
        lock(&self.0)
            .scripted
            .entry(op)
            .or_default()
            .extend(std::iter::repeat_n(fault, n));
    }

    /// The `n`-th port call from now (of any operation) hangs: a crash at that step.
    pub fn crash_after(&self, n: u32) {
        lock(&self.0).crash_after = Some(n);
    }

    /// Removes every pending fault.
    pub fn clear(&self) {
        *lock(&self.0) = FaultState::default();
    }

    fn next(&self, op: Op) -> Option<Fault> {
        let mut s = lock(&self.0);
        if let Some(n) = s.crash_after.as_mut() {
            if *n == 0 {
                s.crash_after = None;
                return Some(Fault::Hang);
            }
            *n -= 1;
        }
        s.scripted.get_mut(&op).and_then(VecDeque::pop_front)
    }

    /// Applies the next fault of `op`, if any: an error to return, or a hang.
    async fn check(&self, op: Op) -> PortResult<()> {
        match self.next(op) {
            None => Ok(()),
            Some(Fault::Fail) => Err(PortError::transient(
                "injected fault",
                anyhow::anyhow!("{op:?} failed (fault script)"),
            )),
            Some(Fault::Hang) => std::future::pending().await,
        }
    }
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
    /// Attempts carried by a re-queued copy.
    prior_attempts: u32,
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
    receives_by_body: HashMap<String, u32>,
    attempts_by_body: HashMap<String, u32>,
    on_receive: Option<CallHook>,
}

impl QueueState {
    fn enqueue(
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
    fn by_receipt(&self, receipt: &ReceiptHandle) -> Option<u64> {
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
            let message = ReceivedMessage {
                message_id: format!("m{id}"),
                receipt: ReceiptHandle(receipt),
                body: m.body.to_string(),
                receive_count: m.receive_count,
                prior_attempts: m.prior_attempts,
            };
            *s.receives_by_body.entry(message.body.clone()).or_default() += 1;
            let seen = s.attempts_by_body.entry(message.body.clone()).or_default();
            *seen = (*seen).max(message.attempts());
            out.push(message);
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
            });
        }
        Ok(())
    }
}

/// The lease holder and when the lease expires.
type Lease = (String, DateTime<Utc>);

/// Settled changes of one request, by how they settled.
#[derive(Debug, Clone, Default)]
struct RequestSets {
    delivered: BTreeSet<ChangeId>,
    skipped: BTreeSet<ChangeId>,
    dead_lettered: BTreeSet<ChangeId>,
}

/// Quota ledger, sync state, coordination and request progress in memory (what DynamoDB holds in AWS).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    quota: Arc<Mutex<HashMap<(QuotaKind, i64), u32>>>,
    sync: Arc<Mutex<HashMap<Email, SyncedFields>>>,
    /// In-flight notes still listed, by run (`holder`, or `<holder>-open` once resolved with open fields).
    notes: Arc<Mutex<BTreeMap<String, HashMap<Email, InFlight>>>>,
    lease: Arc<Mutex<Option<Lease>>>,
    circuit: Arc<Mutex<CircuitState>>,
    requests: Arc<Mutex<HashMap<RequestId, RequestSets>>>,
    /// Renewals left before another holder takes the lease (a lease lost mid-run).
    lose_lease_after: Arc<Mutex<Option<u32>>>,
    faults: Faults,
}

impl MemoryStore {
    /// The same store, breaking calls as `faults` says.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn synced(&self, email: &Email) -> Option<SyncedFields> {
        lock(&self.sync).get(email).cloned()
    }

    /// What the drain recorded in a request's sets, each change counted once (delivered over dead-lettered
    /// over skipped): a multi-change request's progress as `GET /v1/requests/{id}` shows it. A single-change
    /// request's status is derived from the sync state instead (`ingest::memory::MemoryRequestStore`), and
    /// the drain records only its dead letter here (`None` when it recorded nothing).
    pub fn progress(&self, id: &RequestId) -> Option<RequestProgress> {
        lock(&self.requests).get(id).map(|sets| {
            let dead: BTreeSet<&ChangeId> = sets
                .dead_lettered
                .iter()
                .filter(|c| !sets.delivered.contains(c))
                .collect();
            let skipped = sets
                .skipped
                .iter()
                .filter(|c| !sets.delivered.contains(c) && !dead.contains(c))
                .count();
            RequestProgress {
                delivered: sets.delivered.len() as u32,
                skipped: skipped as u32,
                dead_lettered: dead.len() as u32,
            }
        })
    }

    /// Holds the lease for someone else (tests of single flight, or a lease lost mid-run).
    pub fn hold_lease(&self, holder: &str, until: DateTime<Utc>) {
        *lock(&self.lease) = Some((holder.to_string(), until));
    }

    /// After `n` more successful renewals, another run takes the lease (as if this one had overrun it).
    pub fn lose_lease_after(&self, n: u32) {
        *lock(&self.lose_lease_after) = Some(n);
    }

    /// The in-flight notes still listed: each note's name and the users it guards.
    pub fn in_flight_notes(&self) -> BTreeMap<String, BTreeSet<Email>> {
        lock(&self.notes)
            .iter()
            .map(|(name, note)| (name.clone(), note.keys().cloned().collect()))
            .collect()
    }

    /// The circuit as stored.
    pub fn circuit_state(&self) -> CircuitState {
        lock(&self.circuit).clone()
    }
}

impl QuotaLedger for MemoryStore {
    async fn used(&self, kind: QuotaKind, window: Window) -> PortResult<u32> {
        self.faults.check(Op::QuotaRead).await?;
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
        self.faults.check(Op::Reserve).await?;
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
        self.faults.check(Op::Reserve).await?;
        let mut q = lock(&self.quota);
        let used = q.entry((kind, window.start)).or_insert(0);
        *used = (*used).max(limit);
        Ok(())
    }
}

impl SyncStateStore for MemoryStore {
    async fn load(&self, emails: &[Email]) -> PortResult<HashMap<Email, SyncedFields>> {
        self.faults.check(Op::SyncLoad).await?;
        let s = lock(&self.sync);
        Ok(emails
            .iter()
            .filter_map(|e| s.get(e).map(|f| (e.clone(), f.clone())))
            .collect())
    }

    async fn record(&self, users: &[SyncWrite]) -> PortResult<()> {
        self.faults.check(Op::SyncRecord).await?;
        let mut s = lock(&self.sync);
        for user in users {
            let current = s.entry(user.email.clone()).or_default();
            for (k, f) in &user.fields {
                match current.get(k) {
                    // Same rule as DynamoDB's condition: never backwards; an equal precedence (a retried
                    // record of the same change) may write again.
                    Some(existing) if existing.precedence > f.precedence => {}
                    _ => {
                        current.insert(k.clone(), f.clone());
                    }
                }
            }
        }
        Ok(())
    }

    async fn in_flight(&self, emails: &[Email]) -> PortResult<HashMap<Email, InFlight>> {
        self.faults.check(Op::SyncLoad).await?;
        let notes = lock(&self.notes);
        let mut out: HashMap<Email, InFlight> = HashMap::new();
        for note in notes.values() {
            for email in emails {
                for (key, p) in note.get(email).into_iter().flatten() {
                    let user = out.entry(email.clone()).or_default();
                    let newest = user.entry(key.clone()).or_insert(*p);
                    *newest = (*newest).max(*p);
                }
            }
        }
        Ok(out)
    }

    async fn intend(&self, holder: &str, intents: &[(Email, InFlight)]) -> PortResult<()> {
        self.faults.check(Op::SyncRecord).await?;
        let note = intents
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .cloned()
            .collect();
        lock(&self.notes).insert(holder.to_string(), note);
        Ok(())
    }

    async fn resolve(&self, holder: &str, open: &[(Email, InFlight)]) -> PortResult<()> {
        self.faults.check(Op::SyncRecord).await?;
        let mut notes = lock(&self.notes);
        let open: HashMap<Email, InFlight> = open
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .cloned()
            .collect();
        if !open.is_empty() {
            notes.insert(format!("{holder}-open"), open);
        }
        notes.remove(holder);
        Ok(())
    }
}

impl DrainLease for MemoryStore {
    async fn acquire_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.faults.check(Op::Lease).await?;
        let mut l = lock(&self.lease);
        match &*l {
            Some((_, expires)) if *expires > now => Ok(false),
            _ => {
                *l = Some((holder.to_string(), until));
                Ok(true)
            }
        }
    }

    async fn renew_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.faults.check(Op::Lease).await?;
        let mut l = lock(&self.lease);
        let mut lose = lock(&self.lose_lease_after);
        if *lose == Some(0) {
            *lose = None;
            *l = Some(("another-run".to_string(), until));
        } else if let Some(n) = lose.as_mut() {
            *n -= 1;
        }
        match &mut *l {
            Some((h, expires)) if h == holder && *expires > now => {
                *expires = until;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, holder: &str) -> PortResult<()> {
        self.faults.check(Op::Lease).await?;
        let mut l = lock(&self.lease);
        if l.as_ref().is_some_and(|(h, _)| h == holder) {
            *l = None;
        }
        Ok(())
    }
}

impl CircuitStore for MemoryStore {
    async fn circuit(&self) -> PortResult<CircuitState> {
        self.faults.check(Op::Circuit).await?;
        Ok(lock(&self.circuit).clone())
    }

    async fn set_circuit(&self, state: &CircuitState) -> PortResult<()> {
        self.faults.check(Op::Circuit).await?;
        *lock(&self.circuit) = state.clone();
        Ok(())
    }
}

impl RequestTracker for MemoryStore {
    async fn record(&self, settled: &[(RequestId, ChangeId, Settled)]) -> PortResult<()> {
        self.faults.check(Op::Progress).await?;
        let mut r = lock(&self.requests);
        for (request, change, how) in settled {
            let sets = r.entry(*request).or_default();
            match how {
                Settled::Delivered => sets.delivered.insert(*change),
                Settled::Skipped => sets.skipped.insert(*change),
                Settled::DeadLettered => sets.dead_lettered.insert(*change),
            };
        }
        Ok(())
    }
}

#[derive(Clone)]
struct CallHook(Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for CallHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallHook")
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
    /// Refused records whose refusal does not say which record it is.
    reject_unindexed: Vec<String>,
    max_users_twice: u32,
    calls: ProviderCalls,
    /// Every call before this time fails as a 503 (an outage).
    down_until: Option<DateTime<Utc>>,
    /// Calls made (of any kind, probes included) while down.
    calls_while_down: u64,
    probes: u64,
    /// Records with these emails fail as a 503, whatever else happens.
    fail_emails: Vec<String>,
    /// Calls that carried each email, whatever their answer.
    attempts: HashMap<String, u32>,
}

/// A provider that enforces the limits on its own count (answering 429 over them) and records everything.
#[derive(Debug, Clone)]
pub struct MemoryProvider<C: Clock + Clone> {
    state: Arc<Mutex<ProviderState>>,
    /// Runs before every call (e.g. moves a virtual clock: a slow provider).
    on_call: Arc<Mutex<Option<CallHook>>>,
    clock: C,
    batch_limit: u32,
    individual_limit: u32,
    window_seconds: u32,
}

impl<C: Clock + Clone> MemoryProvider<C> {
    pub fn new(clock: C, batch_limit: u32, individual_limit: u32, window_seconds: u32) -> Self {
        Self {
            state: Arc::default(),
            on_call: Arc::default(),
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

    /// Drops the scripted errors not yet used.
    pub fn clear_script(&self) {
        lock(&self.state).scripted.clear();
    }

    /// Records with this email are refused with a 422 naming them.
    pub fn reject_email(&self, email: &str) {
        lock(&self.state).reject.push(email.to_string());
    }

    /// Records with this email are refused with a 4xx that names no record (a 400 without an index).
    pub fn reject_email_unindexed(&self, email: &str) {
        lock(&self.state).reject_unindexed.push(email.to_string());
    }

    /// Runs `f` at the start of every call (a slow provider on a virtual clock: a call that started at
    /// `t` answers, and stamps its records, at `t` plus what `f` advanced).
    pub fn on_call(&self, f: impl Fn() + Send + Sync + 'static) {
        *lock(&self.on_call) = Some(CallHook(Arc::new(f)));
    }

    fn hook(&self) {
        let hook = lock(&self.on_call).clone();
        if let Some(CallHook(f)) = hook {
            f();
        }
    }

    /// Records with this email fail as a 503 on every call (a record the provider keeps failing).
    pub fn fail_email(&self, email: &str) {
        lock(&self.state).fail_emails.push(email.to_string());
    }

    /// Calls that carried each email (delivery attempts, whatever the answer).
    pub fn attempts_by_email(&self) -> HashMap<String, u32> {
        lock(&self.state).attempts.clone()
    }

    /// The provider is down (every call a 503) until `until`.
    pub fn down_until(&self, until: DateTime<Utc>) {
        lock(&self.state).down_until = Some(until);
    }

    /// Calls that arrived while the provider was down.
    pub fn calls_while_down(&self) -> u64 {
        lock(&self.state).calls_while_down
    }

    /// Half-open probes answered.
    pub fn probes(&self) -> u64 {
        lock(&self.state).probes
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

    /// A call's fate before quota is counted: down, or a scripted error.
    fn fault(&self, s: &mut ProviderState, now: DateTime<Utc>) -> Option<ProviderError> {
        if s.down_until.is_some_and(|t| now < t) {
            s.calls_while_down += 1;
            s.calls.failed += 1;
            return Some(ProviderError::transient(
                "HTTP 503 Service Unavailable (outage)",
            ));
        }
        let e = s.scripted.pop_front()?;
        s.calls.failed += 1;
        Some(e)
    }

    fn call(&self, kind: QuotaKind, records: &[Subscriber]) -> Result<(), ProviderError> {
        self.hook();
        let now = self.clock.now();
        let mut s = lock(&self.state);
        for r in records {
            *s.attempts.entry(r.email.clone()).or_default() += 1;
        }
        if let Some(e) = self.fault(&mut s, now) {
            return Err(e);
        }
        if records.iter().any(|r| s.fail_emails.contains(&r.email)) {
            s.calls.failed += 1;
            return Err(ProviderError::transient(
                "HTTP 503 (this record always fails)",
            ));
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
        let named: Vec<usize> = (0..records.len())
            .filter(|&i| s.reject.contains(&records[i].email))
            .collect();
        if !named.is_empty() {
            s.calls.failed += 1;
            let detail = named
                .iter()
                .map(|i| format!("subscribers[{i}].email: rejected"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ProviderError::Rejected {
                indexes: named,
                detail,
            });
        }
        if records
            .iter()
            .any(|r| s.reject_unindexed.contains(&r.email))
        {
            s.calls.failed += 1;
            return Err(ProviderError::Rejected {
                indexes: Vec::new(),
                detail: "HTTP 400: invalid request".into(),
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

impl<C: Clock + Clone> MemoryProvider<C> {
    fn probe_call(&self) -> Result<(), ProviderError> {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        s.probes += 1;
        if let Some(e) = self.fault(&mut s, now) {
            return Err(e);
        }
        let window = Window::containing(now, self.window_seconds);
        let used = s
            .used
            .entry((QuotaKind::Individual, window.start))
            .or_insert(0);
        if *used >= self.individual_limit {
            s.over_limit += 1;
            s.calls.rate_limited += 1;
            return Err(ProviderError::RateLimited { retry_after: None });
        }
        *used += 1;
        Ok(())
    }
}

impl<C: Clock + Clone> Provider for MemoryProvider<C> {
    async fn send_batch(&self, records: &[Subscriber]) -> Reply {
        reply(self.call(QuotaKind::Batch, records))
    }

    async fn send_individual(&self, record: &Subscriber) -> Reply {
        reply(self.call(QuotaKind::Individual, std::slice::from_ref(record)))
    }

    async fn probe(&self) -> Reply {
        reply(self.probe_call())
    }
}

fn reply(result: Result<(), ProviderError>) -> Reply {
    Reply {
        result,
        info: Default::default(),
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
            [SyncWrite {
                email: email.clone(),
                fields: SyncedFields::from([(
                    FieldKey::Name,
                    SyncedField {
                        value: value.into(),
                        precedence: Precedence {
                            occurred_at,
                            accepted_at: t,
                            position,
                        },
                    },
                )]),
                known: true,
            }]
        };
        let name =
            |store: &MemoryStore| store.synced(&email).unwrap()[&FieldKey::Name].value.clone();
        SyncStateStore::record(&store, &field("new", t, 0))
            .await
            .unwrap();
        let older = t - chrono::TimeDelta::microseconds(400);
        SyncStateStore::record(&store, &field("old", older, 5))
            .await
            .unwrap();
        assert_eq!(name(&store), "new");
        SyncStateStore::record(&store, &field("new", t, 0))
            .await
            .unwrap();
        SyncStateStore::record(&store, &field("later", t, 1))
            .await
            .unwrap();
        assert_eq!(name(&store), "later");
    }
}
