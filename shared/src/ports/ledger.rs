//! The quota ledger: one counter per kind and window, reserved before any provider call (DynamoDB in AWS:
//! [`crate::adapters::dynamo`]), and raised to the provider's own count when the provider says more of the
//! window is used than the ledger knows (another client shares the account).
//!
//! Two [`QuotaModel`]s share the one trait: a **fixed** [`Window`] is an epoch-aligned interval with one
//! counter; a **rolling** one is the window-length interval that ends *now*, counted in per-bucket counts
//! ([`RollingCounts`](super::RollingCounts)) so that no window-length interval ever holds more than the limit.
//! Callers build the window for their model ([`Window::at`]) and move it to the time of each write
//! ([`Window::as_of`]); the ledger methods are the same for both.

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

/// How the provider counts its limit (`QUOTA_MODEL`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaModel {
    /// Clock windows aligned to the epoch: the limit holds per window (`fixed`, the default).
    #[default]
    Fixed,
    /// The limit holds in every window-length interval (`rolling`).
    Rolling,
}

impl QuotaModel {
    pub fn as_str(&self) -> &'static str {
        match self {
            QuotaModel::Fixed => "fixed",
            QuotaModel::Rolling => "rolling",
        }
    }
}

impl std::str::FromStr for QuotaModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fixed" => Ok(QuotaModel::Fixed),
            "rolling" => Ok(QuotaModel::Rolling),
            other => Err(format!("`{other}` is neither `fixed` nor `rolling`")),
        }
    }
}

/// A quota window: fixed (aligned to the Unix epoch, `[start, start + length)`), or rolling (the trailing
/// interval `(start, start + length]` that ends at the time it was built for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Start, in seconds since the epoch.
    pub start: i64,
    /// Length in seconds.
    pub length: u32,
    #[serde(default)]
    pub model: QuotaModel,
}

/// A rolling window is counted in this many buckets (plus the one the interval's start falls in).
pub const ROLLING_BUCKETS: u32 = 60;

impl Window {
    /// The fixed window `at` falls in.
    pub fn containing(at: DateTime<Utc>, length: u32) -> Self {
        let len = i64::from(length.max(1));
        let t = at.timestamp();
        Self {
            start: t - t.rem_euclid(len),
            length: length.max(1),
            model: QuotaModel::Fixed,
        }
    }

    /// The rolling window that ends at `at`: the `length` seconds before it.
    pub fn trailing(at: DateTime<Utc>, length: u32) -> Self {
        let length = length.max(1);
        Self {
            start: at.timestamp() - i64::from(length),
            length,
            model: QuotaModel::Rolling,
        }
    }

    /// The window of `model` for a run at `at`.
    pub fn at(model: QuotaModel, at: DateTime<Utc>, length: u32) -> Self {
        match model {
            QuotaModel::Fixed => Self::containing(at, length),
            QuotaModel::Rolling => Self::trailing(at, length),
        }
    }

    /// This window for a write at `now`: a fixed window stays as it is (a run's calls all count in the
    /// window it planned in); a rolling one moves to end at `now`, so each unit is counted from the time
    /// it was reserved.
    pub fn as_of(&self, now: DateTime<Utc>) -> Self {
        match self.model {
            QuotaModel::Fixed => *self,
            QuotaModel::Rolling => Self::trailing(now, self.length),
        }
    }

    /// A rolling window's bucket length: `length / 60` seconds, at least 1.
    pub fn bucket_seconds(&self) -> i64 {
        i64::from((self.length / ROLLING_BUCKETS).max(1))
    }

    /// The buckets a rolling window counts: every bucket that overlaps `(start, end]` — the one `start`
    /// falls in included, so a unit is counted for at least `length` seconds after it was reserved.
    pub fn buckets(&self) -> std::ops::RangeInclusive<i64> {
        let b = self.bucket_seconds();
        self.start.div_euclid(b)..=self.end().div_euclid(b)
    }

    /// How long a rolling window's ledger counts a unit at most: the window and one bucket.
    pub fn counted_seconds(&self) -> i64 {
        i64::from(self.length) + self.bucket_seconds()
    }

    pub fn end(&self) -> i64 {
        self.start + i64::from(self.length)
    }

    pub fn end_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.end(), 0).unwrap_or_default()
    }

    /// The window after this one (a rolling window: the one ending a window length later).
    pub fn next(&self) -> Self {
        Self {
            start: self.end(),
            ..*self
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

/// The quota ledger: one counter per kind and window, reserved before any provider call. For a rolling
/// window, "the window's counter" is the sum of its buckets, and a write adds to the bucket of its end.
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
    /// Marks the window spent (after a 429: the provider disagrees with our count). A rolling window is
    /// filled up to the limit in its last bucket, so nothing more is granted until buckets age out.
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
        assert_eq!(
            Window::containing(at, 60)
                .as_of(at + chrono::Duration::hours(2))
                .start,
            7_260
        );
    }

    #[test]
    fn a_rolling_window_counts_every_bucket_its_interval_touches() {
        let at = DateTime::from_timestamp(7_265, 0).unwrap_or_default();
        let w = Window::trailing(at, 3_600);
        assert_eq!((w.start, w.end(), w.bucket_seconds()), (3_665, 7_265, 60));
        // 61 minutes: the one the interval starts in, up to the one it ends in.
        assert_eq!(w.buckets(), 61..=121);
        let later = w.as_of(at + chrono::Duration::seconds(60));
        assert_eq!(
            (later.buckets(), later.model),
            (62..=122, QuotaModel::Rolling)
        );
        assert_eq!(Window::trailing(at, 30).bucket_seconds(), 1);
        assert_eq!("Rolling".parse::<QuotaModel>(), Ok(QuotaModel::Rolling));
        assert!("sliding".parse::<QuotaModel>().is_err());
    }
}
