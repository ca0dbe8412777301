//! The drain lease (`lease#drain`): one run at a time holds it, taken by a conditional put when absent or
//! expired, renewed and released only by its holder.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use chrono::{DateTime, Utc};

use super::DynamoState;
use super::item::{LEASE_KEY, n, s};
use crate::adapters::sdk_error::port_error;
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
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(port_error("taking the drain lease", e)),
        }
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
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(port_error("releasing the drain lease", e)),
        }
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
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(port_error("renewing the drain lease", e)),
        }
    }
}
