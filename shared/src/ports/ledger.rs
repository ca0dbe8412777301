//! The quota ledger: one counter per kind and window, reserved before any provider call (DynamoDB in AWS:
//! [`crate::adapters::dynamo`]), and raised to the provider's own count when the provider says more of the
//! window is used than the ledger knows (another client shares the account).

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::PortResult;

/// The provider's two kinds of quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaKind {
    Batch,
    Individual,
}

impl QuotaKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            QuotaKind::Batch => "batch",
            QuotaKind::Individual => "individual",
        }
    }
}

/// A fixed quota window aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Start, in seconds since the epoch.
    pub start: i64,
    /// Length in seconds.
    pub length: u32,
}

impl Window {
    pub fn containing(at: DateTime<Utc>, length: u32) -> Self {
        let len = i64::from(length.max(1));
        let t = at.timestamp();
        Self {
            start: t - t.rem_euclid(len),
            length: length.max(1),
        }
    }

    pub fn end(&self) -> i64 {
        self.start + i64::from(self.length)
    }

    pub fn end_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.end(), 0).unwrap_or_default()
    }

    pub fn next(&self) -> Self {
        Self {
            start: self.end(),
            length: self.length,
        }
    }
}

/// Result of a reservation attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Granted; `used` is the window's count after this reservation.
    Granted { used: u32 },
    /// Refused: granting it would exceed the limit. Nothing was consumed.
    Exhausted { used: u32 },
}

/// A window's counter as the ledger holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowUsage {
    /// Units used in the window: reserved by the drain, plus what was adopted from the provider.
    pub used: u32,
    /// Of `used`, the units adopted from the provider's `X-RateLimit-Remaining`: requests this ledger did
    /// not reserve (another client of the account made them).
    pub adopted: u32,
}

/// The quota ledger: one counter per kind and window, reserved before any provider call.
pub trait QuotaLedger: Send + Sync {
    /// Units used in the window so far. Reading does not consume.
    fn used(&self, kind: QuotaKind, window: Window)
    -> impl Future<Output = PortResult<u32>> + Send;
    /// The window's counter with the part of it adopted from the provider. Reading does not consume.
    fn usage(
        &self,
        kind: QuotaKind,
        window: Window,
    ) -> impl Future<Output = PortResult<WindowUsage>> + Send;
    /// The provider says `used` units of the window are spent (`limit − X-RateLimit-Remaining`): raises
    /// the window's counter to `used` when it holds less, and never lowers it (so a reply that left
    /// before some of our own reservations reached the provider takes nothing back). The raise is a
    /// conditional write, so a concurrent reservation is never overwritten. Returns the units added (0
    /// when the ledger already held as many).
    fn adopt(
        &self,
        kind: QuotaKind,
        window: Window,
        used: u32,
        limit: u32,
    ) -> impl Future<Output = PortResult<u32>> + Send;
    /// Atomically adds `n` units if `used + n <= limit`.
    fn reserve(
        &self,
        kind: QuotaKind,
        window: Window,
        n: u32,
        limit: u32,
    ) -> impl Future<Output = PortResult<Reservation>> + Send;
    /// Marks the window spent (after a 429: the provider disagrees with our count).
    fn mark_spent(
        &self,
        kind: QuotaKind,
        window: Window,
        limit: u32,
    ) -> impl Future<Output = PortResult<()>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let at = DateTime::from_timestamp(7_265, 0).unwrap_or_default();
        let w = Window::containing(at, 3_600);
        assert_eq!((w.start, w.end()), (7_200, 10_800));
        assert_eq!(w.next().start, 10_800);
        assert_eq!(Window::containing(at, 60).start, 7_260);
    }
}
