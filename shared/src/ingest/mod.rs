//! The ingest service: what the ingest function does, independent of Lambda and AWS.
//!
//! # Layout
//! - [`parse`]: the body parser — bytes in, validated [`Change`](crate::domain::Change)s out, or every
//!   problem by change index and field. Limits: [`MAX_BODY_BYTES`], [`MAX_CHANGES`], [`MAX_FUTURE_SKEW`].
//! - [`problem`]: [`IngestError`], the one error type, and its `application/problem+json` rendering.
//! - [`service`]: [`IngestService`] — `submit` (`POST /v1/changes`) and `request_status`
//!   (`GET /v1/requests/{id}`).
//! - [`auth`]: [`ApiKey`], the constant-time `x-api-key` check for local runs.
//! - [`memory`]: in-memory ports for tests, the benchmark and the fuzz harness.
//!
//! Its ports ([`ChangeSink`](crate::ports::ChangeSink), [`IdempotencyStore`](crate::ports::IdempotencyStore),
//! [`RequestStore`](crate::ports::RequestStore)) are in [`crate::ports`] with the
//! drain's; AWS adapters live in [`crate::adapters::sqs::sink`] and [`crate::adapters::dynamo_ingest`].

pub mod auth;
pub mod memory;
pub mod parse;
pub mod problem;
pub mod service;

pub use auth::ApiKey;
pub use parse::{
    MAX_BODY_BYTES, MAX_CHANGES, MAX_FUTURE_SKEW, ParseError, RequestStamp, parse_changes,
};
pub use problem::{FieldProblem, IngestError, PROBLEM_CONTENT_TYPE, Problem};
pub use service::{ChangesRequest, IngestService, IngestSettings, Submitted};
