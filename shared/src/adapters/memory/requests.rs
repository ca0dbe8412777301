//! [`RequestTracker`] in memory: each request's settled change ids, by how they settled.

use super::{MemoryStore, Op, lock};
use crate::domain::{ChangeId, RequestId};
use crate::ports::{PortResult, RequestTracker, Settled};

impl RequestTracker for MemoryStore {
    async fn record(&self, settled: &[(RequestId, ChangeId, Settled)]) -> PortResult<()> {
        self.faults.check(Op::Progress).await?;
        let mut r = lock(&self.requests);
        for (request, change, how) in settled {
            let sets = r.entry(*request).or_default();
            match how {
                Settled::Delivered => sets.delivered.insert(*change),
                Settled::Skipped => sets.skipped.insert(*change),
                Settled::DeadLettered => sets.dead_lettered.insert(*change),
            };
        }
        Ok(())
    }
}
