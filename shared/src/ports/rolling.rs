//! The rolling model's counts: units per bucket of `length / 60` seconds, one map per kind, and the rules
//! every ledger adapter applies to them (the DynamoDB adapter reads the item, applies one of these and
//! writes it back under a version condition; the memory adapter applies them under its lock).
//!
//! A rolling window's counter is the sum of every bucket its interval touches ([`Window::buckets`]): 61
//! buckets for 60 in the window, because the oldest bucket is only partly inside the interval and the
//! counts do not say where in it a unit fell. Counting it whole means a unit is held for between one
//! window and one window plus a bucket, so no window-length interval can ever hold more than the limit —
//! at the cost of up to one bucket (1/61 of the limit) of capacity.

use std::collections::BTreeMap;

use super::{Reservation, Window, WindowUsage};

/// One kind's rolling counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollingCounts {
    /// Units per bucket (the bucket's start in seconds since the epoch, divided by the bucket length).
    pub used: BTreeMap<i64, u32>,
    /// Of `used`, the units adopted from the provider's count, per bucket.
    pub adopted: BTreeMap<i64, u32>,
}

fn sum(buckets: &BTreeMap<i64, u32>, window: Window) -> u32 {
    buckets
        .range(window.buckets())
        .fold(0u32, |total, (_, &n)| total.saturating_add(n))
}

impl RollingCounts {
    /// The window's counter: its buckets' sum (later buckets, filled by a `Retry-After`, do not count yet).
    pub fn usage(&self, window: Window) -> WindowUsage {
        WindowUsage {
            used: sum(&self.used, window),
            adopted: sum(&self.adopted, window),
        }
    }

    /// Adds `n` units to the bucket the window ends in.
    fn add(&mut self, window: Window, n: u32) {
        let bucket = *window.buckets().end();
        let slot = self.used.entry(bucket).or_insert(0);
        *slot = slot.saturating_add(n);
    }

    /// Forgets buckets older than any a window at the same time or later will count.
    fn prune(&mut self, window: Window) {
        let first = *window.buckets().start();
        self.used.retain(|&b, _| b >= first);
        self.adopted.retain(|&b, _| b >= first);
    }

    /// Adds `n` units if the window then holds at most `limit`.
    pub fn reserve(&mut self, window: Window, n: u32, limit: u32) -> Reservation {
        self.prune(window);
        let used = self.usage(window).used;
        if used.saturating_add(n) > limit {
            return Reservation::Exhausted { used };
        }
        self.add(window, n);
        Reservation::Granted { used: used + n }
    }

    /// Raises the window's counter to `used` (the provider's count) when it holds less, the difference
    /// going into the current bucket; returns the units added.
    pub fn adopt(&mut self, window: Window, used: u32) -> u32 {
        self.prune(window);
        let held = self.usage(window).used;
        if used <= held {
            return 0;
        }
        let added = used - held;
        self.add(window, added);
        let slot = self.adopted.entry(*window.buckets().end()).or_insert(0);
        *slot = slot.saturating_add(added);
        added
    }

    /// Fills the window up to `limit` in its last bucket, so nothing more is granted until buckets age
    /// out; returns whether anything was added. Nothing is pruned: the window may lie in the future (a
    /// `Retry-After` beyond one window).
    pub fn mark_spent(&mut self, window: Window, limit: u32) -> bool {
        let held = self.usage(window).used;
        if held >= limit {
            return false;
        }
        self.add(window, limit - held);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn at(seconds: i64) -> Window {
        Window::trailing(
            DateTime::from_timestamp(seconds, 0).unwrap_or_default(),
            3_600,
        )
    }

    #[test]
    fn a_unit_counts_until_its_bucket_leaves_the_interval() {
        let mut c = RollingCounts::default();
        assert_eq!(
            c.reserve(at(100_000), 50, 50),
            Reservation::Granted { used: 50 }
        );
        assert_eq!(
            c.reserve(at(100_001), 1, 50),
            Reservation::Exhausted { used: 50 }
        );
        // Bucket 1,666 is [99,960, 100,020): a window later it is still the interval's first, counted.
        assert_eq!(c.usage(at(103_600)).used, 50);
        assert_eq!(
            c.reserve(at(103_619), 1, 50),
            Reservation::Exhausted { used: 50 }
        );
        // Once the interval starts past it: free again, and the old bucket is pruned on the write.
        assert_eq!(
            c.reserve(at(103_620), 50, 50),
            Reservation::Granted { used: 50 }
        );
        assert_eq!(c.used.len(), 1);
    }

    #[test]
    fn adoption_and_spending_fill_the_current_bucket() {
        let mut c = RollingCounts::default();
        c.reserve(at(0), 10, 50);
        assert_eq!(c.adopt(at(600), 30), 20);
        assert_eq!(c.adopt(at(600), 25), 0);
        assert_eq!(
            c.usage(at(600)),
            WindowUsage {
                used: 30,
                adopted: 20
            }
        );
        assert!(c.mark_spent(at(900), 50));
        assert!(!c.mark_spent(at(900), 50));
        assert_eq!(c.usage(at(900)).used, 50);
        // A later window filled ahead of time does not count now, only once it is reached.
        let later = at(900).next();
        assert!(c.mark_spent(later, 50));
        assert_eq!(c.usage(at(900)).used, 50);
        assert_eq!(c.usage(later).used, 50);
    }
}
