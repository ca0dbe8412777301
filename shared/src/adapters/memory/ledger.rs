//! [`QuotaLedger`] in memory: a count per quota window, never past the limit.

use super::{MemoryStore, Op, lock};
use crate::ports::{PortResult, QuotaKind, QuotaLedger, Reservation, Window};

impl QuotaLedger for MemoryStore {
    async fn used(&self, kind: QuotaKind, window: Window) -> PortResult<u32> {
        self.faults.check(Op::QuotaRead).await?;
        Ok(lock(&self.quota)
            .get(&(kind, window.start))
            .copied()
            .unwrap_or(0))
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
