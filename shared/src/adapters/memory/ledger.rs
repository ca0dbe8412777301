//! [`QuotaLedger`] in memory: a count per fixed quota window, never past the limit, and the part of it
//! adopted from the provider; for the rolling model, one [`RollingCounts`] per kind, changed under the
//! store's lock (what the DynamoDB adapter does with a version condition).

use super::{MemoryStore, Op, lock};
use crate::ports::{
    PortResult, QuotaKind, QuotaLedger, QuotaModel, Reservation, RollingCounts, Window, WindowUsage,
};

impl MemoryStore {
    /// Applies `change` to `kind`'s rolling counts.
    fn with_rolling<T>(&self, kind: QuotaKind, change: impl FnOnce(&mut RollingCounts) -> T) -> T {
        change(lock(&self.rolling).entry(kind).or_default())
    }
}

impl QuotaLedger for MemoryStore {
    async fn used(&self, kind: QuotaKind, window: Window) -> PortResult<u32> {
        Ok(self.usage(kind, window).await?.used)
    }

    async fn usage(&self, kind: QuotaKind, window: Window) -> PortResult<WindowUsage> {
        self.faults.check(Op::QuotaRead).await?;
        if window.model == QuotaModel::Rolling {
            return Ok(self.with_rolling(kind, |c| c.usage(window)));
        }
        let key = (kind, window.start);
        Ok(WindowUsage {
            used: lock(&self.quota).get(&key).copied().unwrap_or(0),
            adopted: lock(&self.adopted).get(&key).copied().unwrap_or(0),
        })
    }

    async fn adopt(
        &self,
        kind: QuotaKind,
        window: Window,
        used: u32,
        _limit: u32,
    ) -> PortResult<u32> {
        self.faults.check(Op::Reserve).await?;
        if window.model == QuotaModel::Rolling {
            return Ok(self.with_rolling(kind, |c| c.adopt(window, used)));
        }
        let mut q = lock(&self.quota);
        let held = q.entry((kind, window.start)).or_insert(0);
        if used <= *held {
            return Ok(0);
        }
        let added = used - *held;
        *held = used;
        *lock(&self.adopted).entry((kind, window.start)).or_insert(0) += added;
        Ok(added)
    }

    async fn reserve(
        &self,
        kind: QuotaKind,
        window: Window,
        n: u32,
        limit: u32,
    ) -> PortResult<Reservation> {
        self.faults.check(Op::Reserve).await?;
        if window.model == QuotaModel::Rolling {
            return Ok(self.with_rolling(kind, |c| c.reserve(window, n, limit)));
        }
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
        if window.model == QuotaModel::Rolling {
            self.with_rolling(kind, |c| c.mark_spent(window, limit));
            return Ok(());
        }
        let mut q = lock(&self.quota);
        let used = q.entry((kind, window.start)).or_insert(0);
        *used = (*used).max(limit);
        Ok(())
    }
}
