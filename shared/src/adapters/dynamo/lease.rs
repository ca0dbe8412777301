//! The drain lease (`lease#drain`): one run at a time holds it, taken by a conditional put when absent or
//! expired, renewed and released only by its holder.

use chrono::{DateTime, Utc};

use super::item::{LEASE_KEY, n, s};
use super::{DynamoState, conditional_write};
use crate::ports::{DrainLease, PortResult};

impl DrainLease for DynamoState {
    async fn acquire_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(LEASE_KEY))
            .item("holder", s(holder))
            .item("until_ms", n(until.timestamp_millis()))
            .item("expires_at", n(until.timestamp() + 86_400))
            .condition_expression("attribute_not_exists(pk) OR until_ms < :now")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .send()
            .await;
        conditional_write(result, "taking the drain lease")
    }

    async fn release_lease(&self, holder: &str) -> PortResult<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(LEASE_KEY))
            .condition_expression("holder = :h")
            .expression_attribute_values(":h", s(holder))
            .send()
            .await;
        // Not ours (any more): nothing to release.
        conditional_write(result, "releasing the drain lease").map(drop)
    }

    async fn renew_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(LEASE_KEY))
            .update_expression("SET until_ms = :until, expires_at = :exp")
            .condition_expression("holder = :h AND until_ms >= :now")
            .expression_attribute_values(":h", s(holder))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .expression_attribute_values(":exp", n(until.timestamp() + 86_400))
            .send()
            .await;
        conditional_write(result, "renewing the drain lease")
    }
}
