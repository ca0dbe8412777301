//! Sluice keeps user attributes in sync with a rate-limited provider: changes are accepted by the ingest
//! function, queued on SQS, and released by the drain function at exactly the rate the provider allows.
//!
//! # Layout
//! - [`domain`]: parse-don't-validate types (`Email`, `TimeZone`, `Change`, the versioned queue message).
//! - [`config`]: the one typed `Config`, read from the environment at cold start.
//! - [`ports`]: the traits the drain is written against (queue, quota ledger, sync state, provider, clock,
//!   lease, request tracker), in domain types only.
//! - [`drain`]: the drain engine — quota, pacing policy, coalescing, settling outcomes, the report.
//! - [`ingest`]: the ingest service — body parsing, enqueueing, idempotency, request status.
//! - [`adapters`]: SQS, DynamoDB and HTTP-provider implementations of the ports, the keys read from
//!   Secrets Manager at cold start, plus in-memory ones for unit tests and the simulator.
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
