//! Provider faults on the virtual clock: a wrapper around the in-memory provider that fails every call
//! inside an outage window, the way a provider that is down fails (the in-memory adapters in `shared/`
//! stay as they are).
//!
//! Inside the window nothing reaches the provider: no delivery, no quota counted on its side. Outside it,
//! every call passes through unchanged, so a day without an outage behaves exactly as the bare provider.
//! Two shapes of failure:
//! - [`Fault::Unavailable`]: an immediate `503 Service Unavailable`;
//! - [`Fault::Timeout`]: the request hangs until the client gives up after `PROVIDER_TIMEOUT_MS`; the
//!   call takes that long on the virtual clock. Calls in flight together (the drain's parallel individual
//!   requests) each take the timeout from their own start, so ten parallel timeouts cost one timeout of
//!   clock, not ten.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice::adapters::memory::{ManualClock, MemoryProvider};
use sluice::domain::Subscriber;
use sluice::ports::{Clock, Provider, ProviderError, QuotaKind};

/// How the provider fails while it is down. Both are transient errors to the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every call answers `503` at once.
    Unavailable,
    /// Every call times out after this long (the drain's `PROVIDER_TIMEOUT_MS`).
    Timeout(Duration),
}

impl Fault {
    /// For tables: "503" / "timeout 10 s".
    pub fn label(&self) -> String {
        match self {
            Fault::Unavailable => "503 at once".into(),
            Fault::Timeout(d) => format!("timeout after {} s", d.as_secs_f64()),
        }
    }

    fn error(&self) -> ProviderError {
        match self {
            Fault::Unavailable => ProviderError::Transient("503 Service Unavailable".into()),
            Fault::Timeout(d) => {
                ProviderError::Transient(format!("timed out after {} ms", d.as_millis()))
            }
        }
    }
}

/// The provider is down from `from` (inclusive) to `until` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageWindow {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub fault: Fault,
}

impl OutageWindow {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.until
    }
}

/// Calls the wrapper failed (inside the outage) and passed through (outside it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub failed_batch: u64,
    pub failed_individual: u64,
    pub passed_batch: u64,
    pub passed_individual: u64,
}

impl FaultCounts {
    pub fn failed(&self) -> u64 {
        self.failed_batch + self.failed_individual
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The in-memory provider behind an optional outage.
#[derive(Debug, Clone)]
pub struct FaultyProvider {
    inner: MemoryProvider<ManualClock>,
    clock: ManualClock,
    outage: Option<OutageWindow>,
    counts: Arc<Mutex<FaultCounts>>,
}

impl FaultyProvider {
    pub fn new(
        inner: MemoryProvider<ManualClock>,
        clock: ManualClock,
        outage: Option<OutageWindow>,
    ) -> Self {
        Self {
            inner,
            clock,
            outage,
            counts: Arc::default(),
        }
    }

    /// The provider itself (deliveries, its own counts).
    pub fn inner(&self) -> &MemoryProvider<ManualClock> {
        &self.inner
    }

    /// The clock calls are timed on.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    pub fn outage(&self) -> Option<OutageWindow> {
        self.outage
    }

    pub fn counts(&self) -> FaultCounts {
        *lock(&self.counts)
    }

    /// The fault for a call starting now, if the provider is down; counts the call either way.
    fn fault_at(&self, kind: QuotaKind, now: DateTime<Utc>) -> Option<Fault> {
        let fault = self.outage.filter(|o| o.contains(now)).map(|o| o.fault);
        let mut c = lock(&self.counts);
        match (kind, fault.is_some()) {
            (QuotaKind::Batch, true) => c.failed_batch += 1,
            (QuotaKind::Individual, true) => c.failed_individual += 1,
            (QuotaKind::Batch, false) => c.passed_batch += 1,
            (QuotaKind::Individual, false) => c.passed_individual += 1,
        }
        fault
    }

    async fn fail(&self, fault: Fault, started: DateTime<Utc>) -> ProviderError {
        if let Fault::Timeout(d) = fault {
            // Let the other calls of the same wave start first (they read the clock on their first poll),
            // then end this one at its own start + the timeout.
            tokio::task::yield_now().await;
            let done = started + chrono::Duration::from_std(d).unwrap_or_default();
            if self.clock.now() < done {
                self.clock.set(done);
            }
        }
        fault.error()
    }
}

impl Provider for FaultyProvider {
    async fn send_batch(&self, records: &[Subscriber]) -> Result<(), ProviderError> {
        let now = self.clock.now();
        match self.fault_at(QuotaKind::Batch, now) {
            Some(f) => Err(self.fail(f, now).await),
            None => self.inner.send_batch(records).await,
        }
    }

    async fn send_individual(&self, record: &Subscriber) -> Result<(), ProviderError> {
        let now = self.clock.now();
        match self.fault_at(QuotaKind::Individual, now) {
            Some(f) => Err(self.fail(f, now).await),
            None => self.inner.send_individual(record).await,
        }
    }
}
