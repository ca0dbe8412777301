//! The provider circuit (`circuit#provider`), kept between runs: read consistently at a run's start,
//! stored whole when the run changed it.

use chrono::Utc;

use super::DynamoState;
use super::item::{CIRCUIT_KEY, n, s};
use crate::adapters::sdk_error::port_error;
use crate::ports::{CircuitState, CircuitStore, PortResult};

impl CircuitStore for DynamoState {
    async fn circuit(&self) -> PortResult<CircuitState> {
        self.circuit_state().await
    }

    async fn set_circuit(&self, state: &CircuitState) -> PortResult<()> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(CIRCUIT_KEY))
            .item("failures", n(state.failures))
            .item("reason", s(crate::domain::truncate(&state.reason, 500)))
            // Kept a week after the last change: a closed circuit with no failures is the default anyway.
            .item("expires_at", n(Utc::now().timestamp() + 7 * 86_400));
        if let Some(until) = state.open_until {
            put = put.item("open_until_ms", n(until.timestamp_millis()));
        }
        put.send()
            .await
            .map_err(|e| port_error("storing the circuit", e))?;
        Ok(())
    }
}
