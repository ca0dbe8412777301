//! A port wrapper that counts and times every call, for any adapter: in the simulator it counts the
//! DynamoDB requests and capacity units the drain would spend (the in-memory store has no such notion);
//! against LocalStack it splits a run's wall time into SQS, DynamoDB and provider time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sluice::domain::{ChangeId, Email, RequestId, Subscriber};
use sluice::ports::{
    Backlog, ChangeQueue, CircuitState, CircuitStore, DeadLetter, DrainLease, InFlight, PortResult,
    Provider, QuotaKind, QuotaLedger, QuotaModel, ReceiptHandle, ReceivedMessage, Reply,
    RequestTracker, Reservation, Settled, SyncStateStore, SyncWrite, SyncedFields, Window,
    WindowUsage,
};

/// The service behind a port call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Sqs,
    DynamoDb,
    Provider,
}

/// Every port operation the drain makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    QueueBacklog,
    QueueReceive,
    QueueDelete,
    QueueRelease,
    QueueDeadLetter,
    QueueRequeue,
    LedgerUsed,
    LedgerReserve,
    LedgerMarkSpent,
    /// A raise to the provider's count: a consistent read and a conditional write (the first attempt's).
    LedgerAdopt,
    /// The rolling model's write (a reservation granted, an adoption, a 429's fill): a consistent read of
    /// the kind's item, then its write on `version = :seen` (the first attempt's). A refused rolling
    /// reservation is only the read ([`Op::LedgerUsed`]).
    LedgerRollingWrite,
    SyncLoad,
    SyncRecord,
    SyncInFlight,
    SyncIntend,
    SyncResolve,
    LeaseAcquire,
    LeaseRenew,
    LeaseRelease,
    CircuitRead,
    CircuitOpen,
    RequestsAdd,
    ProviderBatch,
    ProviderIndividual,
    ProviderProbe,
}

impl Op {
    pub fn service(self) -> Service {
        use Op::*;
        match self {
            QueueBacklog | QueueReceive | QueueDelete | QueueRelease | QueueDeadLetter
            | QueueRequeue => Service::Sqs,
            ProviderBatch | ProviderIndividual | ProviderProbe => Service::Provider,
            _ => Service::DynamoDb,
        }
    }

    /// DynamoDB (requests, read units, write units) one call with `items` items costs, following the
    /// DynamoDB adapter: strongly consistent reads of items under 4 KB (1 RRU each, found or not), writes
    /// of items under 1 KB (1 WRU each, conditional failures included); `BatchGetItem` takes 100 keys,
    /// `BatchExecuteStatement` 25 statements (one per user: the sync state's conditional INSERT/UPDATE).
    /// The in-flight note's operations depend on the note's size, not on a count: [`Meter`] works them
    /// out from the bytes the adapter writes ([`sluice::adapters::dynamo::note_chunks`]).
    pub fn dynamo_units(self, items: u64) -> (u64, u64, u64) {
        use Op::*;
        match self {
            LedgerUsed | CircuitRead => (1, 1, 0),
            LedgerAdopt | LedgerRollingWrite => (2, 1, 1),
            LedgerReserve | LedgerMarkSpent | LeaseAcquire | LeaseRenew | LeaseRelease
            | CircuitOpen => (1, 0, 1),
            SyncLoad => (items.div_ceil(100), items, 0),
            SyncRecord => (items.div_ceil(25), 0, items),
            RequestsAdd => (items, 0, items),
            _ => (0, 0, 0),
        }
    }
}

/// Calls of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    pub calls: u64,
    /// Messages, emails, records or requests the calls carried.
    pub items: u64,
    /// Summed duration (calls may overlap).
    pub total: Duration,
    /// What the calls cost in DynamoDB.
    pub dynamo: DynamoUnits,
}

/// DynamoDB requests and capacity units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DynamoUnits {
    pub requests: u64,
    pub read_units: u64,
    pub write_units: u64,
}

impl DynamoUnits {
    fn add(&mut self, other: DynamoUnits) {
        self.requests += other.requests;
        self.read_units += other.read_units;
        self.write_units += other.write_units;
    }
}

#[derive(Debug, Default)]
struct MeterState {
    stats: BTreeMap<Op, OpStats>,
    dynamo: DynamoUnits,
    /// (service, start, end) of every call, kept only when asked for.
    spans: Option<Vec<(Service, Instant, Instant)>>,
    /// Change ids in each request item's sets so far (an update is billed at the item's size).
    request_ids: HashMap<RequestId, u64>,
    /// In-flight notes listed, as the adapter would hold them: bytes of each chunk item, by note name.
    notes: BTreeMap<String, Vec<u64>>,
}

/// Bytes of one note chunk item besides its entries (key, `expires_at`, attribute names).
const NOTE_ITEM_OVERHEAD: u64 = 100;

/// Bytes of each chunk item of a note of these intents, as the DynamoDB adapter writes it.
fn note_items(intents: &[(Email, InFlight)]) -> Vec<u64> {
    sluice::adapters::dynamo::note_chunks(intents)
        .iter()
        .map(|c| c.len() as u64 + NOTE_ITEM_OVERHEAD)
        .collect()
}

/// Writing a note: BatchWriteItem of its chunks (25 a call, 1 WRU per KB) + the index's UpdateItem.
fn note_write_units(chunks: &[u64]) -> DynamoUnits {
    DynamoUnits {
        requests: (chunks.len() as u64).div_ceil(25) + 1,
        read_units: 0,
        write_units: chunks.iter().map(|b| b.div_ceil(1024)).sum::<u64>() + 1,
    }
}

/// Shared by every wrapped port of one drain.
#[derive(Debug, Clone, Default)]
pub struct Meter(Arc<Mutex<MeterState>>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Meter {
    /// A meter that also keeps each call's interval (for wall-time splits).
    pub fn with_spans() -> Self {
        let m = Self::default();
        lock(&m.0).spans = Some(Vec::new());
        m
    }

    fn record(&self, op: Op, items: u64, start: Instant) {
        let (requests, read_units, write_units) = op.dynamo_units(items);
        self.record_units(
            op,
            items,
            DynamoUnits {
                requests,
                read_units,
                write_units,
            },
            start,
        );
    }

    fn record_units(&self, op: Op, items: u64, units: DynamoUnits, start: Instant) {
        let end = Instant::now();
        let mut s = lock(&self.0);
        let e = s.stats.entry(op).or_default();
        e.calls += 1;
        e.items += items;
        e.total += end - start;
        e.dynamo.add(units);
        s.dynamo.add(units);
        if let Some(spans) = s.spans.as_mut() {
            spans.push((op.service(), start, end));
        }
    }

    /// One `UpdateItem` per request id that `ADD`s its settled change ids to the item's string sets:
    /// billed, like every update, at the larger of the item's size before and after, per started KB —
    /// ~37 B per id in the sets plus ~150 B for the rest of the item.
    fn record_request_sets(&self, added: &HashMap<RequestId, u64>, start: Instant) {
        const ITEM_BYTES: u64 = 150;
        const ID_BYTES: u64 = 37;
        let end = Instant::now();
        let mut s = lock(&self.0);
        let mut writes = 0;
        for (id, n) in added {
            let ids = s.request_ids.entry(*id).or_default();
            *ids += n;
            writes += (ITEM_BYTES + ID_BYTES * *ids).div_ceil(1_024);
        }
        let e = s.stats.entry(Op::RequestsAdd).or_default();
        e.calls += 1;
        e.items += added.len() as u64;
        e.total += end - start;
        e.dynamo.requests += added.len() as u64;
        e.dynamo.write_units += writes;
        s.dynamo.requests += added.len() as u64;
        s.dynamo.write_units += writes;
        if let Some(spans) = s.spans.as_mut() {
            spans.push((Service::DynamoDb, start, end));
        }
    }

    pub fn stats(&self) -> BTreeMap<Op, OpStats> {
        lock(&self.0).stats.clone()
    }

    pub fn op(&self, op: Op) -> OpStats {
        lock(&self.0).stats.get(&op).copied().unwrap_or_default()
    }

    pub fn dynamo(&self) -> DynamoUnits {
        lock(&self.0).dynamo
    }

    /// Empties counters and spans (between benchmark iterations).
    pub fn reset(&self) {
        let mut s = lock(&self.0);
        s.stats.clear();
        s.dynamo = DynamoUnits::default();
        if let Some(spans) = s.spans.as_mut() {
            spans.clear();
        }
    }

    /// Wall time covered by calls to `service` (overlapping calls counted once), or by any call if `None`.
    pub fn covered(&self, service: Option<Service>) -> Duration {
        let s = lock(&self.0);
        let mut spans: Vec<(Instant, Instant)> = s
            .spans
            .iter()
            .flatten()
            .filter(|(svc, _, _)| service.is_none_or(|w| *svc == w))
            .map(|&(_, a, b)| (a, b))
            .collect();
        spans.sort();
        let mut total = Duration::ZERO;
        let mut current: Option<(Instant, Instant)> = None;
        for (a, b) in spans {
            match current {
                Some((ca, cb)) if a <= cb => current = Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    total += cb - ca;
                    current = Some((a, b));
                }
                None => current = Some((a, b)),
            }
        }
        if let Some((a, b)) = current {
            total += b - a;
        }
        total
    }
}

/// A port with every call counted and timed.
#[derive(Debug, Clone)]
pub struct Metered<T> {
    inner: T,
    meter: Meter,
}

impl<T> Metered<T> {
    pub fn new(inner: T, meter: Meter) -> Self {
        Self { inner, meter }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: ChangeQueue> ChangeQueue for Metered<T> {
    async fn backlog(&self) -> PortResult<Backlog> {
        let t = Instant::now();
        let r = self.inner.backlog().await;
        self.meter.record(Op::QueueBacklog, 0, t);
        r
    }

    async fn receive(&self, max: u32) -> PortResult<Vec<ReceivedMessage>> {
        let t = Instant::now();
        let r = self.inner.receive(max).await;
        let n = r.as_ref().map_or(0, |m| m.len() as u64);
        self.meter.record(Op::QueueReceive, n, t);
        r
    }

    async fn delete(&self, receipts: &[ReceiptHandle]) -> PortResult<Vec<ReceiptHandle>> {
        let t = Instant::now();
        let r = self.inner.delete(receipts).await;
        self.meter.record(Op::QueueDelete, receipts.len() as u64, t);
        r
    }

    async fn release(&self, items: &[(ReceiptHandle, Duration)]) -> PortResult<()> {
        let t = Instant::now();
        let r = self.inner.release(items).await;
        self.meter.record(Op::QueueRelease, items.len() as u64, t);
        r
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> PortResult<()> {
        let t = Instant::now();
        let r = self.inner.dead_letter(letters).await;
        self.meter
            .record(Op::QueueDeadLetter, letters.len() as u64, t);
        r
    }

    async fn requeue(
        &self,
        items: &[(ReceivedMessage, Duration)],
    ) -> PortResult<Vec<ReceiptHandle>> {
        let t = Instant::now();
        let r = self.inner.requeue(items).await;
        self.meter.record(Op::QueueRequeue, items.len() as u64, t);
        r
    }
}

impl<T: QuotaLedger> QuotaLedger for Metered<T> {
    async fn used(&self, kind: QuotaKind, window: Window) -> PortResult<u32> {
        let t = Instant::now();
        let r = self.inner.used(kind, window).await;
        self.meter.record(Op::LedgerUsed, 1, t);
        r
    }

    async fn usage(&self, kind: QuotaKind, window: Window) -> PortResult<WindowUsage> {
        let t = Instant::now();
        let r = self.inner.usage(kind, window).await;
        self.meter.record(Op::LedgerUsed, 1, t);
        r
    }

    async fn adopt(
        &self,
        kind: QuotaKind,
        window: Window,
        used: u32,
        limit: u32,
    ) -> PortResult<u32> {
        let t = Instant::now();
        let r = self.inner.adopt(kind, window, used, limit).await;
        let op = match (window.model, &r) {
            (QuotaModel::Fixed, _) => Op::LedgerAdopt,
            (QuotaModel::Rolling, Ok(added)) if *added > 0 => Op::LedgerRollingWrite,
            (QuotaModel::Rolling, _) => Op::LedgerUsed,
        };
        self.meter.record(op, 1, t);
        r
    }

    async fn reserve(
        &self,
        kind: QuotaKind,
        window: Window,
        n: u32,
        limit: u32,
    ) -> PortResult<Reservation> {
        let t = Instant::now();
        let r = self.inner.reserve(kind, window, n, limit).await;
        let op = match (window.model, &r) {
            (QuotaModel::Fixed, _) => Op::LedgerReserve,
            (QuotaModel::Rolling, Ok(Reservation::Granted { .. })) => Op::LedgerRollingWrite,
            (QuotaModel::Rolling, _) => Op::LedgerUsed,
        };
        self.meter.record(op, 1, t);
        r
    }

    async fn mark_spent(&self, kind: QuotaKind, window: Window, limit: u32) -> PortResult<()> {
        let t = Instant::now();
        let r = self.inner.mark_spent(kind, window, limit).await;
        let op = match window.model {
            QuotaModel::Fixed => Op::LedgerMarkSpent,
            QuotaModel::Rolling => Op::LedgerRollingWrite,
        };
        self.meter.record(op, 1, t);
        r
    }
}

impl<T: SyncStateStore> SyncStateStore for Metered<T> {
    async fn load(&self, emails: &[Email]) -> PortResult<HashMap<Email, SyncedFields>> {
        let t = Instant::now();
        let r = self.inner.load(emails).await;
        self.meter.record(Op::SyncLoad, emails.len() as u64, t);
        r
    }

    async fn record(&self, users: &[SyncWrite]) -> PortResult<()> {
        let t = Instant::now();
        let r = self.inner.record(users).await;
        self.meter.record(Op::SyncRecord, users.len() as u64, t);
        r
    }

    async fn in_flight(&self, emails: &[Email]) -> PortResult<HashMap<Email, InFlight>> {
        let t = Instant::now();
        let r = self.inner.in_flight(emails).await;
        // GetItem of the index, then BatchGetItem (25 keys a call) of every listed note's chunks.
        let chunks: Vec<u64> = lock(&self.meter.0)
            .notes
            .values()
            .flatten()
            .copied()
            .collect();
        let units = DynamoUnits {
            requests: 1 + (chunks.len() as u64).div_ceil(25),
            read_units: 1 + chunks.iter().map(|b| b.div_ceil(4096)).sum::<u64>(),
            write_units: 0,
        };
        self.meter
            .record_units(Op::SyncInFlight, emails.len() as u64, units, t);
        r
    }

    async fn intend(&self, holder: &str, intents: &[(Email, InFlight)]) -> PortResult<()> {
        let t = Instant::now();
        let r = self.inner.intend(holder, intents).await;
        let chunks = note_items(intents);
        let units = if chunks.is_empty() {
            DynamoUnits::default()
        } else {
            note_write_units(&chunks)
        };
        if r.is_ok() && !chunks.is_empty() {
            lock(&self.meter.0).notes.insert(holder.to_string(), chunks);
        }
        self.meter
            .record_units(Op::SyncIntend, intents.len() as u64, units, t);
        r
    }

    async fn resolve(&self, holder: &str, open: &[(Email, InFlight)]) -> PortResult<()> {
        let t = Instant::now();
        let r = self.inner.resolve(holder, open).await;
        let chunks = note_items(open);
        // An UpdateItem that unlists the note, or the open remainder written and listed in its place.
        let units = if chunks.is_empty() {
            DynamoUnits {
                requests: 1,
                read_units: 0,
                write_units: 1,
            }
        } else {
            note_write_units(&chunks)
        };
        if r.is_ok() {
            let mut s = lock(&self.meter.0);
            s.notes.remove(holder);
            if !chunks.is_empty() {
                s.notes.insert(format!("{holder}-open"), chunks);
            }
        }
        self.meter
            .record_units(Op::SyncResolve, open.len() as u64, units, t);
        r
    }
}

impl<T: DrainLease> DrainLease for Metered<T> {
    async fn acquire_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<bool> {
        let t = Instant::now();
        let r = self.inner.acquire_lease(holder, now, until).await;
        self.meter.record(Op::LeaseAcquire, 1, t);
        r
    }

    async fn release_lease(&self, holder: &str) -> PortResult<()> {
        let t = Instant::now();
        let r = self.inner.release_lease(holder).await;
        self.meter.record(Op::LeaseRelease, 1, t);
        r
    }

    async fn renew_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<bool> {
        let t = Instant::now();
        let r = self.inner.renew_lease(holder, now, until).await;
        self.meter.record(Op::LeaseRenew, 1, t);
        r
    }
}

impl<T: CircuitStore> CircuitStore for Metered<T> {
    async fn circuit(&self) -> PortResult<CircuitState> {
        let t = Instant::now();
        let r = self.inner.circuit().await;
        self.meter.record(Op::CircuitRead, 1, t);
        r
    }

    async fn set_circuit(&self, state: &CircuitState) -> PortResult<()> {
        let t = Instant::now();
        let r = self.inner.set_circuit(state).await;
        self.meter.record(Op::CircuitOpen, 1, t);
        r
    }
}

impl<T: RequestTracker> RequestTracker for Metered<T> {
    async fn record(&self, settled: &[(RequestId, ChangeId, Settled)]) -> PortResult<()> {
        let t = Instant::now();
        let r = self.inner.record(settled).await;
        // One UpdateItem per request id, as the DynamoDB adapter makes them. The drain passes only what it
        // writes: multi-change requests (and messages without `request_size`), and a single-change
        // request's dead letter — its delivery or skip is derived from the sync state when read, so the
        // simulator's single-change POSTs cost no UpdateItem here unless dead-lettered.
        let mut added: HashMap<RequestId, u64> = HashMap::new();
        for (request, _, _) in settled {
            *added.entry(*request).or_default() += 1;
        }
        self.meter.record_request_sets(&added, t);
        r
    }
}

impl<T: Provider> Provider for Metered<T> {
    async fn send_batch(&self, records: &[Subscriber]) -> Reply {
        let t = Instant::now();
        let r = self.inner.send_batch(records).await;
        self.meter
            .record(Op::ProviderBatch, records.len() as u64, t);
        r
    }

    async fn send_individual(&self, record: &Subscriber) -> Reply {
        let t = Instant::now();
        let r = self.inner.send_individual(record).await;
        self.meter.record(Op::ProviderIndividual, 1, t);
        r
    }

    async fn probe(&self) -> Reply {
        let t = Instant::now();
        let r = self.inner.probe().await;
        self.meter.record(Op::ProviderProbe, 0, t);
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dynamo_units_follow_the_adapter() {
        let m = Meter::default();
        let t = Instant::now();
        m.record(Op::SyncLoad, 250, t); // 3 BatchGetItem, 250 RRU
        m.record(Op::RequestsAdd, 40, t); // 40 UpdateItem
        m.record(Op::LedgerUsed, 1, t);
        m.record(Op::LedgerReserve, 1, t);
        m.record(Op::QueueReceive, 10, t);
        m.record(Op::SyncRecord, 1_000, t); // 40 BatchExecuteStatement of 25, 1 WRU per user
        assert_eq!(
            m.dynamo(),
            DynamoUnits {
                requests: 3 + 40 + 1 + 1 + 40,
                read_units: 251,
                write_units: 41 + 1_000,
            }
        );
    }

    /// The in-flight note costs its KB, not one item per record; a resolved note is no longer read.
    #[tokio::test]
    async fn the_in_flight_note_costs_its_size() {
        use sluice::adapters::memory::MemoryStore;
        use sluice::domain::{FieldKey, Precedence};
        let m = Meter::default();
        let store = Metered::new(MemoryStore::default(), m.clone());
        let p = Precedence {
            occurred_at: Utc::now(),
            accepted_at: Utc::now(),
            position: 0,
        };
        let intents: Vec<(Email, InFlight)> = (0..1_000)
            .map(|i| {
                (
                    Email::parse(&format!("user{i}@example.com")).unwrap(),
                    InFlight::from([(FieldKey::Name, p)]),
                )
            })
            .collect();
        store.intend("run-1", &intents).await.unwrap();
        let note = m.op(Op::SyncIntend).dynamo;
        let bytes: u64 = note_items(&intents).iter().sum();
        assert_eq!(
            note.requests, 2,
            "one BatchWriteItem of chunks, one index update"
        );
        assert_eq!(note.write_units, bytes.div_ceil(1024) + 1);
        assert!(note.write_units < 150, "{note:?}: KB, not 1,000 items");
        store.in_flight(&[]).await.unwrap();
        assert_eq!(
            m.op(Op::SyncInFlight).dynamo.read_units,
            1 + bytes.div_ceil(4096)
        );
        store.resolve("run-1", &[]).await.unwrap();
        store.in_flight(&[]).await.unwrap();
        assert_eq!(
            m.op(Op::SyncInFlight).dynamo.read_units,
            1 + bytes.div_ceil(4096) + 1,
            "only the index once resolved"
        );
    }

    #[tokio::test]
    async fn a_rolling_write_is_a_read_and_a_write_and_a_refusal_only_the_read() {
        let m = Meter::default();
        let ledger = Metered::new(sluice::adapters::memory::MemoryStore::default(), m.clone());
        let window = Window::trailing(chrono::Utc::now(), 3_600);
        let kind = QuotaKind::Batch;
        ledger.reserve(kind, window, 2, 2).await.unwrap();
        ledger.reserve(kind, window, 1, 2).await.unwrap();
        assert_eq!(ledger.adopt(kind, window, 2, 2).await.unwrap(), 0);
        ledger.mark_spent(kind, window, 2).await.unwrap();
        let write = m.op(Op::LedgerRollingWrite);
        assert_eq!((write.calls, write.dynamo.requests), (2, 4));
        assert_eq!(
            m.op(Op::LedgerUsed).calls,
            2,
            "the refusal and the adoption that added nothing"
        );
        assert_eq!(m.op(Op::LedgerReserve).calls, 0);
    }

    #[test]
    fn covered_time_counts_overlaps_once() {
        let m = Meter::with_spans();
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        {
            let mut s = lock(&m.0);
            let spans = s.spans.as_mut().unwrap();
            spans.push((Service::Sqs, at(0), at(10)));
            spans.push((Service::Sqs, at(5), at(20)));
            spans.push((Service::DynamoDb, at(30), at(40)));
        }
        assert_eq!(m.covered(Some(Service::Sqs)), Duration::from_millis(20));
        assert_eq!(m.covered(None), Duration::from_millis(30));
    }
}
