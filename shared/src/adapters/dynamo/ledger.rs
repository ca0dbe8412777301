//! The quota ledger: one `quota#<kind>#<start>` item per window, its `used` counter moved only by
//! conditional updates, so no two runs can together reserve past the limit. `adopted` counts the units
//! raised to the provider's own figure (another client's requests), for the report and `sluice status`.
//! A rolling window goes to the one versioned item per kind of [`super::rolling`].

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::item::{clamp_u32, counter, get_n, n, quota_key, s};
use super::{DynamoState, conditional_write};
use crate::adapters::sdk_error::port_error;
use crate::ports::{
    PortResult, QuotaKind, QuotaLedger, QuotaModel, Reservation, Window, WindowUsage,
};

/// Attempts of the optimistic raise before giving up for this reply (a reservation moved the counter
/// between the read and the write each time; the next reply adopts again).
const ADOPT_ATTEMPTS: usize = 3;

impl DynamoState {
    /// An update of a window's quota item that also stores its limit and expiry (a day after the window
    /// after it): `#limit` and `:limit`, `:exp` are bound for the caller's expressions.
    fn quota_update(&self, kind: QuotaKind, window: Window, limit: u32) -> UpdateItemFluentBuilder {
        let expires = window.end() + i64::from(window.length) + 86_400;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(quota_key(kind, window)))
            .expression_attribute_names("#limit", "limit")
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":exp", n(expires))
    }
}

impl QuotaLedger for DynamoState {
    async fn used(&self, kind: QuotaKind, window: Window) -> PortResult<u32> {
        if window.model == QuotaModel::Rolling {
            return Ok(self.rolling_usage(kind, window).await?.used);
        }
        let item = self
            .get_consistent(quota_key(kind, window), "reading quota")
            .await?;
        Ok(counter(item.as_ref(), "used"))
    }

    async fn usage(&self, kind: QuotaKind, window: Window) -> PortResult<WindowUsage> {
        if window.model == QuotaModel::Rolling {
            return self.rolling_usage(kind, window).await;
        }
        let item = self
            .get_consistent(quota_key(kind, window), "reading quota")
            .await?;
        Ok(WindowUsage {
            used: counter(item.as_ref(), "used"),
            adopted: counter(item.as_ref(), "adopted"),
        })
    }

    async fn adopt(
        &self,
        kind: QuotaKind,
        window: Window,
        used: u32,
        limit: u32,
    ) -> PortResult<u32> {
        if window.model == QuotaModel::Rolling {
            let (added, stored) = self
                .rolling_update(kind, window, limit, |c| {
                    let added = c.adopt(window, used);
                    (added, added > 0)
                })
                .await?;
            return Ok(if stored { added } else { 0 });
        }
        // Optimistic: read the counter, then set it with a condition that it has not moved, so the
        // added units (the `adopted` counter) are exact and no concurrent reservation is overwritten.
        for _ in 0..ADOPT_ATTEMPTS {
            let held = self.used(kind, window).await?;
            if used <= held {
                return Ok(0);
            }
            let result = self
                .quota_update(kind, window, limit)
                .update_expression(
                    "SET used = :used, #limit = :limit, expires_at = :exp ADD adopted :added",
                )
                .condition_expression("attribute_not_exists(used) OR used = :held")
                .expression_attribute_values(":used", n(used))
                .expression_attribute_values(":held", n(held))
                .expression_attribute_values(":added", n(used - held))
                .send()
                .await;
            if conditional_write(result, "adopting the provider's quota count")? {
                return Ok(used - held);
            }
        }
        Ok(0)
    }

    async fn reserve(
        &self,
        kind: QuotaKind,
        window: Window,
        units: u32,
        limit: u32,
    ) -> PortResult<Reservation> {
        if window.model == QuotaModel::Rolling {
            let (answer, stored) = self
                .rolling_update(kind, window, limit, |c| {
                    let answer = c.reserve(window, units, limit);
                    (answer, matches!(answer, Reservation::Granted { .. }))
                })
                .await?;
            // Every attempt lost the race: nothing was consumed, and the counts it read are the news.
            return Ok(match answer {
                Reservation::Granted { used } if !stored => {
                    Reservation::Exhausted { used: used - units }
                }
                other => other,
            });
        }
        if units > limit {
            return Ok(Reservation::Exhausted {
                used: self.used(kind, window).await?,
            });
        }
        let result = self
            .quota_update(kind, window, limit)
            .update_expression("ADD used :n SET #limit = :limit, expires_at = :exp")
            .condition_expression("attribute_not_exists(used) OR used <= :max")
            .expression_attribute_values(":n", n(units))
            .expression_attribute_values(":max", n(limit - units))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Reservation::Granted {
                used: get_n(out.attributes(), "used").unwrap_or(i64::from(units)) as u32,
            }),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let used = match e.err() {
                    UpdateItemError::ConditionalCheckFailedException(c) => get_n(c.item(), "used"),
                    _ => None,
                };
                Ok(Reservation::Exhausted {
                    used: clamp_u32(used.unwrap_or(i64::from(limit))),
                })
            }
            Err(e) => Err(port_error("reserving quota", e)),
        }
    }

    async fn mark_spent(&self, kind: QuotaKind, window: Window, limit: u32) -> PortResult<()> {
        if window.model == QuotaModel::Rolling {
            // A write lost every race: the winners were reservations, which the next 429 spends again.
            self.rolling_update(kind, window, limit, |c| ((), c.mark_spent(window, limit)))
                .await?;
            return Ok(());
        }
        let result = self
            .quota_update(kind, window, limit)
            .update_expression("SET used = :limit, #limit = :limit, expires_at = :exp")
            .condition_expression("attribute_not_exists(used) OR used < :limit")
            .send()
            .await;
        // Already at (or past) the limit: nothing to mark.
        conditional_write(result, "marking quota spent").map(drop)
    }
}
