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
use sluice::ports::{CallInfo, Clock, Provider, ProviderError, Reply};

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

    fn reply(&self) -> Reply {
        let (detail, status) = match self {
            Fault::Unavailable => ("503 Service Unavailable".to_string(), Some(503)),
            Fault::Timeout(d) => (format!("timed out after {} ms", d.as_millis()), None),
        };
        Reply {
            result: Err(ProviderError::Transient {
                detail,
                retry_after: None,
            }),
            info: CallInfo {
                status,
                ..CallInfo::default()
            },
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
    /// The circuit's half-open probes (a read; one unit of individual quota).
    pub failed_probe: u64,
    pub passed_batch: u64,
    pub passed_individual: u64,
    pub passed_probe: u64,
}

impl FaultCounts {
    pub fn failed(&self) -> u64 {
        self.failed_batch + self.failed_individual + self.failed_probe
    }
}

/// Which endpoint a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Batch,
    Individual,
    Probe,
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
    fn fault_at(&self, endpoint: Endpoint, now: DateTime<Utc>) -> Option<Fault> {
        let fault = self.outage.filter(|o| o.contains(now)).map(|o| o.fault);
        let mut c = lock(&self.counts);
        let n = match (endpoint, fault.is_some()) {
            (Endpoint::Batch, true) => &mut c.failed_batch,
            (Endpoint::Individual, true) => &mut c.failed_individual,
            (Endpoint::Probe, true) => &mut c.failed_probe,
            (Endpoint::Batch, false) => &mut c.passed_batch,
            (Endpoint::Individual, false) => &mut c.passed_individual,
            (Endpoint::Probe, false) => &mut c.passed_probe,
        };
        *n += 1;
        fault
    }

    async fn fail(&self, fault: Fault, started: DateTime<Utc>) -> Reply {
        if let Fault::Timeout(d) = fault {
            // Let the other calls of the same wave start first (they read the clock on their first poll),
            // then end this one at its own start + the timeout.
            tokio::task::yield_now().await;
            let done = started + chrono::Duration::from_std(d).unwrap_or_default();
            if self.clock.now() < done {
                self.clock.set(done);
            }
        }
        fault.reply()
    }
}

impl Provider for FaultyProvider {
    async fn send_batch(&self, records: &[Subscriber]) -> Reply {
        let now = self.clock.now();
        match self.fault_at(Endpoint::Batch, now) {
            Some(f) => self.fail(f, now).await,
            None => self.inner.send_batch(records).await,
        }
    }

    async fn send_individual(&self, record: &Subscriber) -> Reply {
        let now = self.clock.now();
        match self.fault_at(Endpoint::Individual, now) {
            Some(f) => self.fail(f, now).await,
            None => self.inner.send_individual(record).await,
        }
    }

    async fn probe(&self) -> Reply {
        let now = self.clock.now();
        match self.fault_at(Endpoint::Probe, now) {
            Some(f) => self.fail(f, now).await,
            None => self.inner.probe().await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use futures::stream::{self, StreamExt as _};

    use crate::traffic::{OutagePlan, outage_scenarios};

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    }

    fn plan() -> OutagePlan {
        OutagePlan {
            start_hour: 9,
            hours: 6,
            traffic_hours: 36,
            tail_hours: 12,
            provider_timeout: Duration::from_secs(10),
        }
    }

    fn subscriber(i: usize) -> Subscriber {
        Subscriber {
            email: format!("u{i}@example.com"),
            name: Some(format!("n{i}")),
            ..Subscriber::default()
        }
    }

    /// The provider behind the outage, with limits that never answer 429 (only the fault is under test).
    fn provider(window: OutageWindow) -> (ManualClock, FaultyProvider) {
        let clock = ManualClock::new(start());
        let inner = MemoryProvider::new(clock.clone(), u32::MAX, u32::MAX, 3_600);
        (
            clock.clone(),
            FaultyProvider::new(inner, clock, Some(window)),
        )
    }

    #[tokio::test]
    async fn the_outage_fails_every_call_inside_its_window_and_none_outside() {
        for scenario in outage_scenarios(plan()) {
            let window = scenario.outage.unwrap().window(start());
            assert_eq!(window.from, start() + chrono::Duration::hours(9));
            assert_eq!(window.until, start() + chrono::Duration::hours(15));
            let (clock, p) = provider(window);
            // Every 37 s over the outage day's 48 h, and both edges to the millisecond.
            let ms = chrono::Duration::milliseconds;
            let mut times: Vec<DateTime<Utc>> = (0..48 * 3_600 / 37)
                .map(|k| start() + chrono::Duration::seconds(k * 37))
                .collect();
            times.extend([
                window.from - ms(1),
                window.from,
                window.until - ms(1),
                window.until,
            ]);
            let (mut inside, mut outside) = (0u64, 0u64);
            for (k, &at) in times.iter().enumerate() {
                clock.set(at);
                let batch = p.send_batch(&[subscriber(k)]).await.result;
                clock.set(at);
                let individual = p.send_individual(&subscriber(k)).await.result;
                clock.set(at);
                let probe = p.probe().await.result;
                if window.contains(at) {
                    inside += 1;
                    for r in [batch, individual, probe] {
                        assert!(
                            matches!(r, Err(ProviderError::Transient { .. })),
                            "{} {at}",
                            scenario.name
                        );
                    }
                } else {
                    outside += 1;
                    assert!(
                        batch.is_ok() && individual.is_ok() && probe.is_ok(),
                        "{} {at}",
                        scenario.name
                    );
                }
            }
            assert!(inside > 500 && outside > 3 * inside, "{inside} / {outside}");
            let c = p.counts();
            assert_eq!(
                (c.failed_batch, c.failed_individual, c.failed_probe),
                (inside, inside, inside)
            );
            assert_eq!(
                (c.passed_batch, c.passed_individual, c.passed_probe),
                (outside, outside, outside)
            );
            assert_eq!(
                p.inner().probes(),
                outside,
                "a probe in the outage reached it"
            );
            // Nothing reached the provider while it was down; everything else did.
            let delivered = p.inner().deliveries();
            assert_eq!(delivered.len() as u64, 2 * outside);
            assert!(delivered.iter().all(|d| !window.contains(d.at)));
        }
    }

    #[tokio::test]
    async fn a_timeout_takes_the_provider_timeout_once_per_parallel_wave() {
        let timeout = outage_scenarios(plan())
            .into_iter()
            .find(|s| s.name == "outage-timeout")
            .unwrap()
            .outage
            .unwrap();
        assert_eq!(timeout.fault, Fault::Timeout(Duration::from_secs(10)));
        let window = timeout.window(start());
        let (clock, p) = provider(window);
        let at = window.from + chrono::Duration::minutes(1);
        clock.set(at);
        // The drain's wave: ten individual requests in flight together.
        let results: Vec<_> = stream::iter(0..10)
            .map(|k| {
                let p = &p;
                async move { p.send_individual(&subscriber(k)).await }
            })
            .buffer_unordered(10)
            .collect()
            .await;
        assert!(results.iter().all(|r| r.result.is_err()));
        assert_eq!(clock.now(), at + chrono::Duration::seconds(10));
        assert!(p.send_batch(&[subscriber(0)]).await.result.is_err());
        assert_eq!(clock.now(), at + chrono::Duration::seconds(20));
        // After the outage: at once, and delivered.
        clock.set(window.until);
        assert!(p.send_batch(&[subscriber(1)]).await.result.is_ok());
        assert_eq!(clock.now(), window.until);
    }
}
