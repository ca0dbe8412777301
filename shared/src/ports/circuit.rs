//! The provider circuit breaker's state, kept between runs (DynamoDB in AWS: [`crate::adapters::dynamo`];
//! the breaker's rules are [`crate::drain::circuit`]).

use std::future::Future;

use chrono::{DateTime, Utc};

use super::PortResult;

/// The provider circuit as stored between runs: consecutive transient failures, and when it is open, until
/// when (the next half-open probe).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CircuitState {
    /// Consecutive transient provider failures, across runs; a success resets it.
    pub failures: u32,
    /// Set while the circuit is open: no call until then, and then one probe.
    pub open_until: Option<DateTime<Utc>>,
    pub reason: String,
}

/// Where the circuit is kept between runs.
pub trait CircuitStore: Send + Sync {
    /// The circuit as stored (closed with no failures when never written).
    fn circuit(&self) -> impl Future<Output = PortResult<CircuitState>> + Send;
    /// Stores the circuit.
    fn set_circuit(&self, state: &CircuitState) -> impl Future<Output = PortResult<()>> + Send;
}
