//! The provider circuit breaker, as pure transitions over the stored [`CircuitState`].
//!
//! - **Closed**: calls go out; each transient failure adds to `failures` (kept across runs), a success
//!   resets it. At `threshold` consecutive failures — or at once for an answer that says the account or
//!   configuration is wrong (401/403/404) — the circuit opens.
//! - **Open** until `open_until`: no run calls the provider or receives a message.
//! - **Half-open** once `open_until` has passed: the next run makes one probe (a read that touches no
//!   subscriber and no message). Success closes the circuit and the run goes on; failure opens it again
//!   for twice as long, up to the cap. So an outage of any length costs one request per cool-down and no
//!   message a receive.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ports::CircuitState;

/// How the circuit reacts, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct CircuitPolicy {
    /// Consecutive transient failures that open the circuit.
    pub threshold: u32,
    /// The first cool-down; doubles with each failed probe.
    pub cool_down: Duration,
    /// The longest cool-down.
    pub cool_down_cap: Duration,
}

/// Where the circuit stands for a run starting at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed,
    Open { until: DateTime<Utc> },
    HalfOpen,
}

pub fn phase(state: &CircuitState, now: DateTime<Utc>) -> Phase {
    match state.open_until {
        None => Phase::Closed,
        Some(until) if until > now => Phase::Open { until },
        Some(_) => Phase::HalfOpen,
    }
}

impl CircuitPolicy {
    /// The cool-down after `failures` consecutive failures (the first opening waits `cool_down`).
    pub fn cool_down_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(self.threshold).min(16);
        self.cool_down
            .saturating_mul(1u32 << doublings)
            .min(self.cool_down_cap)
    }

    /// A call succeeded (or the provider answered in a way that shows it is up): closed, count reset.
    pub fn success(&self, state: &mut CircuitState) {
        state.failures = 0;
        state.open_until = None;
        state.reason.clear();
    }

    /// A transient failure; returns when the circuit opened, if it did.
    pub fn failure(
        &self,
        state: &mut CircuitState,
        now: DateTime<Utc>,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> Option<DateTime<Utc>> {
        state.failures = state.failures.saturating_add(1);
        if state.failures < self.threshold {
            return None;
        }
        Some(self.open(state, now, reason, retry_after))
    }

    /// Opens the circuit now (a failed probe, or an answer that no retry will fix).
    pub fn open(
        &self,
        state: &mut CircuitState,
        now: DateTime<Utc>,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> DateTime<Utc> {
        state.failures = state.failures.max(self.threshold);
        let wait = self
            .cool_down_after(state.failures)
            .max(retry_after.unwrap_or_default().min(self.cool_down_cap));
        let until = now + chrono::Duration::from_std(wait).unwrap_or_default();
        state.open_until = Some(until);
        state.reason = crate::domain::truncate(reason, 500);
        until
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    const POLICY: CircuitPolicy = CircuitPolicy {
        threshold: 3,
        cool_down: Duration::from_secs(300),
        cool_down_cap: Duration::from_secs(3_600),
    };

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    /// Rule: the failure count is kept across runs; a success resets it.
    #[test]
    fn failures_accumulate_until_the_threshold_and_a_success_resets_them() {
        let mut s = CircuitState::default();
        assert_eq!(POLICY.failure(&mut s, t(0), "503", None), None);
        assert_eq!(POLICY.failure(&mut s, t(60), "503", None), None);
        POLICY.success(&mut s);
        assert_eq!(s.failures, 0);
        POLICY.failure(&mut s, t(0), "503", None);
        POLICY.failure(&mut s, t(1), "503", None);
        let until = POLICY.failure(&mut s, t(2), "503", None).unwrap();
        assert_eq!(until, t(302));
        assert_eq!(phase(&s, t(100)), Phase::Open { until });
        assert_eq!(phase(&s, t(302)), Phase::HalfOpen);
    }

    /// Rule: each failed probe doubles the cool-down up to the cap; Retry-After lengthens it.
    #[test]
    fn failed_probes_back_off_to_the_cap() {
        let mut s = CircuitState::default();
        let mut waits = Vec::new();
        let mut now = t(0);
        for _ in 0..8 {
            let until = POLICY.open(&mut s, now, "probe failed", None);
            waits.push((until - now).num_seconds());
            s.failures += 1;
            now = until;
        }
        assert_eq!(waits, [300, 600, 1200, 2400, 3600, 3600, 3600, 3600]);
        let mut s = CircuitState::default();
        let until = POLICY.open(&mut s, t(0), "503", Some(Duration::from_secs(900)));
        assert_eq!(until, t(900));
    }
}
