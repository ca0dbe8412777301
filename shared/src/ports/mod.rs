//! The ports: every trait the drain engine and the ingest service are written against, in domain types
//! only (never SDK types), a file per capability. Adapters in [`crate::adapters`] implement them for AWS
//! (SQS, DynamoDB), the provider over HTTP, and in memory (unit tests and the simulator, with a virtual
//! clock). Arrows run one way: the engine, the services and the adapters import these; these import only
//! [`crate::domain`].
//!
//! The drain's: [`ChangeQueue`] ([`queue`]), one per lane ([`Lanes`], [`lanes`]), [`QuotaLedger`] ([`ledger`], its rolling model's counts in [`rolling`]), [`SyncStateStore`]
//! ([`sync_state`]), [`Provider`] ([`provider`]), [`Clock`] ([`clock`]), [`DrainLease`] ([`lease`]),
//! [`CircuitStore`] ([`circuit`]), [`RequestTracker`] ([`requests`]), bundled as [`DrainPorts`]
//! ([`DrainAdapters`] is the plain bundle). Ingest's: [`ChangeSink`] ([`sink`]), [`IdempotencyStore`]
//! ([`idempotency`]), [`RequestStore`] ([`requests`]).

pub mod circuit;
pub mod clock;
pub mod idempotency;
pub mod lanes;
pub mod lease;
pub mod ledger;
pub mod provider;
pub mod queue;
pub mod requests;
pub mod rolling;
pub mod sink;
pub mod sync_state;

pub use circuit::{CircuitState, CircuitStore};
pub use clock::{Clock, SystemClock};
pub use idempotency::{
    Accepted, Claim, IdempotencyKey, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    MAX_IDEMPOTENCY_KEY_LEN, NewClaim, sha256_hex,
};
pub use lanes::Lanes;
pub use lease::DrainLease;
pub use ledger::{QuotaKind, QuotaLedger, QuotaModel, Reservation, Window, WindowUsage};
pub use provider::{CallInfo, Provider, ProviderError, Reply};
pub use queue::{
    Backlog, ChangeQueue, DeadLetter, DeadLetterReason, ReceiptHandle, ReceivedMessage,
};
pub use requests::{
    NewRequest, RequestCounters, RequestProgress, RequestStatus, RequestStore, RequestTracker,
    Settled, TrackedChange, single_change_counters,
};
pub use rolling::RollingCounts;
pub use sink::ChangeSink;
pub use sync_state::{InFlight, SyncStateStore, SyncWrite, SyncedField, SyncedFields};

/// What an adapter failure means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying later (throttling, network, 5xx).
    Transient,
    /// Retrying will not help (bad request, missing resource, access denied).
    Permanent,
}

/// A failure in an adapter, with the category that drives behaviour and the whole chain for logs.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source:#}")]
pub struct PortError {
    pub kind: ErrorKind,
    pub context: &'static str,
    #[source]
    pub source: anyhow::Error,
}

impl PortError {
    pub fn transient(context: &'static str, source: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            context,
            source: source.into(),
        }
    }

    pub fn permanent(context: &'static str, source: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            context,
            source: source.into(),
        }
    }
}

pub type PortResult<T> = Result<T, PortError>;

/// Everything the drain needs, bundled so the engine has one type parameter.
pub trait DrainPorts: Send + Sync {
    type Queue: ChangeQueue;
    type Ledger: QuotaLedger;
    type SyncState: SyncStateStore;
    type Provider: Provider;
    type Clock: Clock;
    type Lease: DrainLease;
    type Circuit: CircuitStore;
    type Requests: RequestTracker;

    /// The changes queue of each lane.
    fn lanes(&self) -> &Lanes<Self::Queue>;
    fn ledger(&self) -> &Self::Ledger;
    fn sync_state(&self) -> &Self::SyncState;
    fn provider(&self) -> &Self::Provider;
    fn clock(&self) -> &Self::Clock;
    fn lease(&self) -> &Self::Lease;
    fn circuit(&self) -> &Self::Circuit;
    fn requests(&self) -> &Self::Requests;
}

/// The drain's ports as a plain struct of adapters (one adapter may serve several ports: on AWS one
/// DynamoDB store is the ledger, the sync state, the lease, the circuit and the request tracker).
#[derive(Debug, Clone)]
pub struct DrainAdapters<Queue, Ledger, SyncState, Provider, Clock, Lease, Circuit, Requests> {
    pub lanes: Lanes<Queue>,
    pub ledger: Ledger,
    pub sync_state: SyncState,
    pub provider: Provider,
    pub clock: Clock,
    pub lease: Lease,
    pub circuit: Circuit,
    pub requests: Requests,
}

impl<Q, L, S, P, C, Le, Ci, R> DrainPorts for DrainAdapters<Q, L, S, P, C, Le, Ci, R>
where
    Q: ChangeQueue,
    L: QuotaLedger,
    S: SyncStateStore,
    P: Provider,
    C: Clock,
    Le: DrainLease,
    Ci: CircuitStore,
    R: RequestTracker,
{
    type Queue = Q;
    type Ledger = L;
    type SyncState = S;
    type Provider = P;
    type Clock = C;
    type Lease = Le;
    type Circuit = Ci;
    type Requests = R;

    fn lanes(&self) -> &Lanes<Q> {
        &self.lanes
    }
    fn ledger(&self) -> &L {
        &self.ledger
    }
    fn sync_state(&self) -> &S {
        &self.sync_state
    }
    fn provider(&self) -> &P {
        &self.provider
    }
    fn clock(&self) -> &C {
        &self.clock
    }
    fn lease(&self) -> &Le {
        &self.lease
    }
    fn circuit(&self) -> &Ci {
        &self.circuit
    }
    fn requests(&self) -> &R {
        &self.requests
    }
}
