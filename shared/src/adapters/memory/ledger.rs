//! [`QuotaLedger`] in memory: a count per quota window, never past the limit, and the part of it adopted
//! from the provider.

use super::{MemoryStore, Op, lock};
use crate::ports::{PortResult, QuotaKind, QuotaLedger, Reservation, Window, WindowUsage};

impl QuotaLedger for MemoryStore {
    async fn used(&self, kind: QuotaKind, window: Window) -> PortResult<u32> {
        self.faults.check(Op::QuotaRead).await?;
        Ok(lock(&self.quota)
            .get(&(kind, window.start))
            .copied()
            .unwrap_or(0))
    }

    async fn usage(&self, kind: QuotaKind, window: Window) -> PortResult<WindowUsage> {
        let used = self.used(kind, window).await?;
        let adopted = lock(&self.adopted)
            .get(&(kind, window.start))
            .copied()
            .unwrap_or(0);
        Ok(WindowUsage { used, adopted })
    }

    async fn adopt(
        &self,
        kind: QuotaKind,
        window: Window,
        used: u32,
        _limit: u32,
    ) -> PortResult<u32> {
        self.faults.check(Op::Reserve).await?;
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
