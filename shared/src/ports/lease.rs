//! The drain's single-flight lease: one run at a time writes (DynamoDB in AWS:
//! [`crate::adapters::dynamo`]).

use std::future::Future;

use chrono::{DateTime, Utc};

use super::PortResult;

/// The single-flight lease, held by one run (`holder`) at a time.
pub trait DrainLease: Send + Sync {
    /// Takes the drain lease for `holder` until `until` if it is free or expired.
    fn acquire_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<bool>> + Send;
    /// Extends the lease to `until` if `holder` still holds it and it has not expired at `now`; `false`
    /// means the lease is lost and the run must stop writing.
    fn renew_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<bool>> + Send;
    /// Releases the lease if `holder` still holds it.
    fn release_lease(&self, holder: &str) -> impl Future<Output = PortResult<()>> + Send;
}
