//! [`DrainLease`] and [`CircuitStore`] in memory, with a lease that can be lost mid-run on purpose.

use chrono::{DateTime, Utc};

use super::{MemoryStore, Op, lock};
use crate::ports::{CircuitState, CircuitStore, DrainLease, PortResult};

impl DrainLease for MemoryStore {
    async fn acquire_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.faults.check(Op::Lease).await?;
        let mut l = lock(&self.lease);
        match &*l {
            Some((_, expires)) if *expires > now => Ok(false),
            _ => {
                *l = Some((holder.to_string(), until));
                Ok(true)
            }
        }
    }

    async fn renew_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.faults.check(Op::Lease).await?;
        let mut l = lock(&self.lease);
        let mut lose = lock(&self.lose_lease_after);
        if *lose == Some(0) {
            *lose = None;
            *l = Some(("another-run".to_string(), until));
        } else if let Some(n) = lose.as_mut() {
            *n -= 1;
        }
        match &mut *l {
            Some((h, expires)) if h == holder && *expires > now => {
                *expires = until;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, holder: &str) -> PortResult<()> {
        self.faults.check(Op::Lease).await?;
        let mut l = lock(&self.lease);
        if l.as_ref().is_some_and(|(h, _)| h == holder) {
            *l = None;
        }
        Ok(())
    }
}

impl CircuitStore for MemoryStore {
    async fn circuit(&self) -> PortResult<CircuitState> {
        self.faults.check(Op::Circuit).await?;
        Ok(lock(&self.circuit).clone())
    }

    async fn set_circuit(&self, state: &CircuitState) -> PortResult<()> {
        self.faults.check(Op::Circuit).await?;
        *lock(&self.circuit) = state.clone();
        Ok(())
    }
}
