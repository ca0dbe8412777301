//! The rolling model's ledger: one `quota#rolling#<kind>` item per kind holding per-bucket counts (`b`,
//! bucket → units), the adopted part of them (`a`) and a `version`. A write is optimistic: read the item,
//! apply the [`RollingCounts`] rule (which also prunes buckets that no window counts any more), and write
//! the whole maps back on condition that `version` is still the one read — so two drains reserving at
//! once can never together pass the limit; the loser reads again. One item a kind stays small: at most
//! 61 live buckets (a few more while a `Retry-After` has filled later ones).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{Item, get_n, n, quota_key, s};
use super::{DynamoState, conditional_write};
use crate::ports::{PortResult, QuotaKind, RollingCounts, Window, WindowUsage};

/// Attempts of one optimistic write before giving up (another writer moved the version each time).
const ROLLING_ATTEMPTS: usize = 5;

/// A bucket map as stored: `{"<bucket>": N}`.
fn buckets_value(buckets: &BTreeMap<i64, u32>) -> AttributeValue {
    AttributeValue::M(buckets.iter().map(|(b, c)| (b.to_string(), n(c))).collect())
}

fn buckets_of(item: Option<&Item>, name: &str) -> BTreeMap<i64, u32> {
    let Some(map) = item.and_then(|i| i.get(name)).and_then(|v| v.as_m().ok()) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(b, c)| Some((b.parse().ok()?, c.as_n().ok()?.parse().ok()?)))
        .collect()
}

/// The counts and version of a rolling item (`None`: no item yet).
fn parse(item: Option<&Item>) -> (RollingCounts, Option<i64>) {
    let counts = RollingCounts {
        used: buckets_of(item, "b"),
        adopted: buckets_of(item, "a"),
    };
    (counts, get_n(item, "version"))
}

impl DynamoState {
    async fn rolling_read(&self, kind: QuotaKind, window: Window) -> PortResult<Option<Item>> {
        self.get_consistent(quota_key(kind, window), "reading quota")
            .await
    }

    pub(super) async fn rolling_usage(
        &self,
        kind: QuotaKind,
        window: Window,
    ) -> PortResult<WindowUsage> {
        let item = self.rolling_read(kind, window).await?;
        Ok(parse(item.as_ref()).0.usage(window))
    }

    /// Applies `change` to `kind`'s counts and writes them back when it says so (its `bool`), retrying on
    /// a concurrent write. Returns the change's answer from the last attempt and whether that attempt's
    /// counts were stored (`false`: nothing to write, or every attempt lost the race).
    pub(super) async fn rolling_update<T>(
        &self,
        kind: QuotaKind,
        window: Window,
        limit: u32,
        change: impl Fn(&mut RollingCounts) -> (T, bool),
    ) -> PortResult<(T, bool)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let item = self.rolling_read(kind, window).await?;
            let (mut counts, version) = parse(item.as_ref());
            let (answer, write) = change(&mut counts);
            if !write {
                return Ok((answer, false));
            }
            if self
                .rolling_write(kind, window, limit, &counts, version)
                .await?
            {
                return Ok((answer, true));
            }
            if attempt >= ROLLING_ATTEMPTS {
                return Ok((answer, false));
            }
        }
    }

    /// Writes the counts if the item's version is still `seen`; `false` when another write came first.
    async fn rolling_write(
        &self,
        kind: QuotaKind,
        window: Window,
        limit: u32,
        counts: &RollingCounts,
        seen: Option<i64>,
    ) -> PortResult<bool> {
        let expires = window.end() + window.counted_seconds() + 86_400;
        let values = HashMap::from([
            (":b".to_string(), buckets_value(&counts.used)),
            (":a".to_string(), buckets_value(&counts.adopted)),
            (":next".to_string(), n(seen.unwrap_or(0) + 1)),
            (":limit".to_string(), n(limit)),
            (":exp".to_string(), n(expires)),
        ]);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(quota_key(kind, window)))
            .update_expression(
                "SET b = :b, a = :a, version = :next, #limit = :limit, expires_at = :exp",
            )
            .expression_attribute_names("#limit", "limit")
            .set_expression_attribute_values(Some(values));
        let update = match seen {
            Some(version) => update
                .condition_expression("version = :seen")
                .expression_attribute_values(":seen", n(version)),
            None => update.condition_expression("attribute_not_exists(version)"),
        };
        conditional_write(update.send().await, "writing rolling quota")
    }
}
