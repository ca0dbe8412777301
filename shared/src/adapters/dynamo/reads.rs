//! What operators read (`sluice status`): the lease and the circuit as stored. Read-only, consistent.

use chrono::{DateTime, Utc};

use super::DynamoState;
use super::item::{CIRCUIT_KEY, LEASE_KEY, counter, get_millis, get_s};
use crate::ports::{CircuitState, PortResult};

impl DynamoState {
    /// The drain lease as stored (holder, held until), for operators (`sluice status`). Read-only; an
    /// expired lease may still be listed until a drain replaces it or TTL removes it.
    pub async fn lease(&self) -> PortResult<Option<(String, DateTime<Utc>)>> {
        let item = self
            .get_consistent(LEASE_KEY.to_owned(), "reading the drain lease")
            .await?;
        let holder = get_s(item.as_ref(), "holder").map(str::to_owned);
        Ok(holder.zip(get_millis(item.as_ref(), "until_ms")))
    }

    /// The provider circuit as stored, for the drain and operators. Read-only.
    pub async fn circuit_state(&self) -> PortResult<CircuitState> {
        let item = self
            .get_consistent(CIRCUIT_KEY.to_owned(), "reading the circuit")
            .await?;
        Ok(CircuitState {
            failures: counter(item.as_ref(), "failures"),
            open_until: get_millis(item.as_ref(), "open_until_ms"),
            reason: get_s(item.as_ref(), "reason")
                .unwrap_or_default()
                .to_owned(),
        })
    }
}
