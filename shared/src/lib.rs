//! Sluice keeps user attributes in sync with a rate-limited provider: changes are accepted by the ingest
//! function, queued on SQS, and released by the drain function at exactly the rate the provider allows.
//!
//! # Layout
//! Arrows run downward only: the engine and the services are written against the ports; the adapters
//! implement the ports; [`startup`] alone knows both and wires them.
//!
//! - [`domain`]: parse-don't-validate types (`Email`, `TimeZone`, `Change`, the versioned queue message).
//! - [`config`]: one reader of the environment ([`config::Vars`]) with the drain's view ([`Config`]) and
//!   ingest's ([`config::IngestConfig`]), validated at cold start.
//! - [`ports`]: every trait the engine and the services are written against, a file per capability — the
//!   changes queue and its lanes ([`ports::Lanes`]), the **quota ledger** ([`ports::QuotaLedger`], with
//!   the fixed and rolling [`ports::QuotaModel`]s and the rolling window's [`ports::RollingCounts`]), the
//!   **sync-state store** ([`ports::SyncStateStore`]), the provider, the clock, the lease, the circuit,
//!   request tracking, and ingest's sink and idempotency store — in domain types only.
//! - [`drain`]: the drain engine, a file per phase of a run (gate, plan and receive over the lanes,
//!   gather — coalesce and top up —, send, settle); the **send policy** (how much each run may send, batches or individual requests) is
//!   [`drain::policy`], the outcome → queue-action table [`drain::outcome`], the breaker [`drain::circuit`].
//! - [`ingest`]: the ingest service — body parsing, problems, enqueueing, idempotency, request status.
//! - [`adapters`]: the ports' implementations, by service and port:
//!   - [`adapters::dynamo`]: the drain's DynamoDB side — the quota ledger ([`adapters::dynamo::ledger`],
//!     a rolling window's one versioned item per kind in its `rolling.rs`),
//!     the sync-state store ([`adapters::dynamo::sync_state`] and its PartiQL statements), in-flight notes,
//!     lease, circuit, request progress, the operators' reads, over one item-mapping module;
//!   - [`adapters::dynamo_ingest`]: ingest's DynamoDB side (idempotency records, request records);
//!   - [`adapters::sqs`]: the drain's queue, ingest's sink, and the DLQ as operators handle it — the
//!     **redrive** (`sluice dlq redrive`, in the CLI's `dlq/redrive.rs`) calls
//!     [`adapters::sqs::dead_letters`];
//!   - [`adapters::provider_http`] (the provider over HTTP), [`adapters::secrets`] (keys read once at cold
//!     start), [`adapters::memory`] (in-memory doubles for unit tests and the simulator);
//!   - [`adapters::sdk_error`]: the one classification of AWS SDK errors (transient or permanent).
//! - [`startup`]: builds the drain on AWS — clients with their retry and timeout configuration, the
//!   adapters, the engine.
//! - [`telemetry`]: JSON logs with emails redacted, and CloudWatch Embedded Metric Format lines.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod drain;
pub mod ingest;
pub mod ports;
pub mod startup;
pub mod telemetry;

pub use config::Config;
