//! The drain's tunables, derived once from the drain's [`Config`].

use std::time::Duration;

use super::circuit::CircuitPolicy;
use crate::config::{Config, Limits, RUN_OVERHEAD};
use crate::ports::QuotaKind;

/// Tunables of the drain, derived from [`Config`].
#[derive(Debug, Clone)]
pub struct DrainSettings {
    pub limits: Limits,
    pub interval_seconds: u32,
    pub max_messages: u32,
    /// First retry delay after a transient failure; doubles per attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    /// When the provider circuit opens and how long it stays open.
    pub circuit: CircuitPolicy,
    /// Parallel individual requests.
    pub individual_concurrency: usize,
    /// No provider call starts this close to the deadline: one call's timeout plus the settling after it.
    pub send_margin: Duration,
    /// No settling write starts this close to the deadline.
    pub settle_margin: Duration,
    /// How far each renewal extends the lease: longer than any one provider call plus settling, so no other
    /// run can start while a call of this one is in flight.
    pub lease_length: Duration,
    /// Delivery attempts before a change is dead-lettered as `retries_exhausted` (`MAX_RECEIVE_COUNT`).
    pub max_attempts: u32,
    /// Retry delay for a record the provider refused because another client was updating it.
    pub busy_retry: Duration,
}

impl DrainSettings {
    pub fn from_config(config: &Config) -> Self {
        let window = Duration::from_secs(u64::from(config.limits.window_seconds));
        Self {
            limits: config.limits,
            interval_seconds: config.drain_interval_seconds,
            max_messages: config.drain_max_messages,
            backoff_base: Duration::from_secs(30).min(window / 4),
            backoff_cap: Duration::from_secs(900).min(window),
            circuit: CircuitPolicy {
                threshold: 3,
                cool_down: Duration::from_secs(300).min(window / 2),
                cool_down_cap: Duration::from_secs(3_600).min(window),
            },
            individual_concurrency: 10,
            send_margin: config.provider_timeout + Duration::from_secs(8),
            settle_margin: Duration::from_secs(1),
            lease_length: config.provider_timeout + RUN_OVERHEAD,
            max_attempts: config.max_receive_count,
            busy_retry: Duration::from_secs(10),
        }
    }

    pub(super) fn limit(&self, kind: QuotaKind) -> u32 {
        match kind {
            QuotaKind::Batch => self.limits.batch_per_window,
            QuotaKind::Individual => self.limits.individual_per_window,
        }
    }
}
