//! The drain's state in one DynamoDB table (key `pk`, TTL attribute `expires_at`):
//!
//! | item                     | attributes                                              | written by |
//! |--------------------------|---------------------------------------------------------|------------|
//! | `quota#<kind>#<start>`   | `used` (N), `limit` (N), `expires_at`                   | reserve: conditional `ADD used :n` |
//! | `user#<email>`           | `f.<field>` = `{v: S, t: N (ms)}` per delivered field   | record: conditional per field |
//! | `lease#drain`            | `holder`, `until_ms`, `expires_at`                      | conditional put; renewed by a conditional update on `holder` |
//! | `circuit#provider`       | `failures`, `open_until_ms` (absent when closed), `reason`, `expires_at` | put, when a run changed it |
//! | `request#<id>`           | `accepted` (ingest); `delivered_ids`, `skipped_ids`, `dead_lettered_ids` (SS of change ids) | `ADD` of sets, once per request per run: idempotent per change |

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure,
};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::sqs::classify;
use crate::domain::{ChangeId, Email, FieldKey, RequestId};
use crate::ports::{
    CircuitState, Coordination, PortError, PortResult, QuotaKind, QuotaLedger, RequestTracker,
    Reservation, Settled, SyncStateStore, SyncedField, SyncedFields, Window,
};

const LEASE_KEY: &str = "lease#drain";
const CIRCUIT_KEY: &str = "circuit#provider";
const FIELD_PREFIX: &str = "f.";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_n(item: Option<&HashMap<String, AttributeValue>>, name: &str) -> Option<i64> {
    item?.get(name)?.as_n().ok()?.parse().ok()
}

pub fn quota_key(kind: QuotaKind, window: Window) -> String {
    format!("quota#{}#{}", kind.as_str(), window.start)
}

pub fn user_key(email: &Email) -> String {
    format!("user#{}", email.as_str())
}

pub fn request_key(id: &RequestId) -> String {
    format!("request#{id}")
}

/// The drain's DynamoDB state: quota ledger, sync state, lease and circuit, request progress.
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
}

impl DynamoState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// One item by key, read consistently; `what` names the read in errors.
    async fn get_consistent(
        &self,
        key: String,
        what: &'static str,
    ) -> PortResult<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(what, e))?;
        Ok(out.item)
    }

    /// The drain lease as stored (holder, held until), for operators (`sluice status`). Read-only; an
    /// expired lease may still be listed until a drain replaces it or TTL removes it.
    pub async fn lease(&self) -> PortResult<Option<(String, DateTime<Utc>)>> {
        let item = self
            .get_consistent(LEASE_KEY.to_owned(), "reading the drain lease")
            .await?;
        let holder = item
            .as_ref()
            .and_then(|i| i.get("holder"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        let until = get_n(item.as_ref(), "until_ms").and_then(DateTime::from_timestamp_millis);
        Ok(holder.zip(until))
    }

    /// The provider circuit as stored, for the drain and operators. Read-only.
    pub async fn circuit_state(&self) -> PortResult<CircuitState> {
        let item = self
            .get_consistent(CIRCUIT_KEY.to_owned(), "reading the circuit")
            .await?;
        let reason = item
            .as_ref()
            .and_then(|i| i.get("reason"))
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        Ok(CircuitState {
            failures: get_n(item.as_ref(), "failures")
                .unwrap_or(0)
                .clamp(0, i64::from(u32::MAX)) as u32,
            open_until: get_n(item.as_ref(), "open_until_ms")
                .and_then(DateTime::from_timestamp_millis),
            reason,
        })
    }

    /// One BatchGetItem of up to 100 users, retrying unprocessed keys.
    async fn load_chunk(&self, chunk: Vec<Email>) -> PortResult<HashMap<Email, SyncedFields>> {
        let mut found = HashMap::new();
        let keys: Vec<HashMap<String, AttributeValue>> = chunk
            .iter()
            .map(|e| HashMap::from([("pk".to_string(), s(user_key(e)))]))
            .collect();
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::permanent("building a sync-state read", e))?,
        );
        let by_key: HashMap<String, &Email> = chunk.iter().map(|e| (user_key(e), e)).collect();
        let mut attempts = 0;
        while let Some(keys) = request.take() {
            attempts += 1;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| classify("reading sync state", e))?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                if let Some(email) = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|k| by_key.get(k))
                {
                    found.insert((*email).clone(), parse_fields(item));
                }
            }
            request = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
            if request.is_some() {
                if attempts >= 8 {
                    return Err(PortError::transient(
                        "reading sync state",
                        anyhow::anyhow!("unprocessed keys after {attempts} attempts"),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempts)).await;
            }
        }
        Ok::<_, PortError>(found)
    }

    /// Adds settled change ids to one request's sets: a set union, so a change settled twice (a
    /// redelivery, a copy) is counted once.
    async fn add_settled(&self, id: RequestId, sets: [Vec<String>; 3]) -> PortResult<()> {
        let mut adds = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(request_key(&id)))
            .expression_attribute_values(":exp", n(Utc::now().timestamp() + 7 * 86_400));
        for (name, ids) in ["delivered_ids", "skipped_ids", "dead_lettered_ids"]
            .into_iter()
            .zip(sets)
        {
            if ids.is_empty() {
                continue;
            }
            adds.push(format!("{name} :{name}"));
            req = req.expression_attribute_values(format!(":{name}"), AttributeValue::Ss(ids));
        }
        if adds.is_empty() {
            return Ok(());
        }
        req.update_expression(format!(
            "ADD {} SET expires_at = if_not_exists(expires_at, :exp)",
            adds.join(", ")
        ))
        .send()
        .await
        .map_err(|e| classify("updating request progress", e))?;
        Ok(())
    }

    async fn record_one_by_one(&self, email: &Email, fields: &SyncedFields) -> PortResult<()> {
        for (key, field) in fields {
            let single = SyncedFields::from([(key.clone(), field.clone())]);
            match self.record_update(email, &single).send().await {
                Ok(_) => {}
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    // A newer value is already recorded for this field: keep it.
                }
                Err(e) => return Err(classify("recording sync state", e)),
            }
        }
        Ok(())
    }

    fn record_update(
        &self,
        email: &Email,
        fields: &SyncedFields,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let mut sets = vec!["updated_at = :now".to_string()];
        let mut conditions = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(user_key(email)))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()));
        for (i, (key, field)) in fields.iter().enumerate() {
            let (name, value, t) = (format!("#f{i}"), format!(":v{i}"), format!(":t{i}"));
            sets.push(format!("{name} = {value}"));
            // Never backwards in time: the recorded field must be absent or not newer than this one.
            conditions.push(format!("(attribute_not_exists({name}) OR {name}.t <= {t})"));
            req = req
                .expression_attribute_names(&name, format!("{FIELD_PREFIX}{}", key.storage_key()))
                .expression_attribute_values(
                    &value,
                    AttributeValue::M(HashMap::from([
                        ("v".to_string(), s(field.value.clone())),
                        ("t".to_string(), n(field.occurred_at.timestamp_millis())),
                    ])),
                )
                .expression_attribute_values(&t, n(field.occurred_at.timestamp_millis()));
        }
        req.update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(conditions.join(" AND "))
    }
}

fn parse_fields(item: &HashMap<String, AttributeValue>) -> SyncedFields {
    item.iter()
        .filter_map(|(name, value)| {
            let key = FieldKey::from_storage_key(name.strip_prefix(FIELD_PREFIX)?)?;
            let map = value.as_m().ok()?;
            let v = map.get("v")?.as_s().ok()?.clone();
            let t: i64 = map.get("t")?.as_n().ok()?.parse().ok()?;
            Some((
                key,
                SyncedField {
                    value: v,
                    occurred_at: DateTime::from_timestamp_millis(t)?,
                },
            ))
        })
        .collect()
}

impl QuotaLedger for DynamoState {
    async fn used(&self, kind: QuotaKind, window: Window) -> PortResult<u32> {
        let item = self
            .get_consistent(quota_key(kind, window), "reading quota")
            .await?;
        Ok(get_n(item.as_ref(), "used")
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32)
    }

    async fn reserve(
        &self,
        kind: QuotaKind,
        window: Window,
        units: u32,
        limit: u32,
    ) -> PortResult<Reservation> {
        if units > limit {
            return Ok(Reservation::Exhausted {
                used: self.used(kind, window).await?,
            });
        }
        let expires = window.end() + i64::from(window.length) + 86_400;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(quota_key(kind, window)))
            .update_expression("ADD used :n SET #limit = :limit, expires_at = :exp")
            .condition_expression("attribute_not_exists(used) OR used <= :max")
            .expression_attribute_names("#limit", "limit")
            .expression_attribute_values(":n", n(units))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":max", n(limit - units))
            .expression_attribute_values(":exp", n(expires))
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
                    used: used
                        .unwrap_or(i64::from(limit))
                        .clamp(0, i64::from(u32::MAX)) as u32,
                })
            }
            Err(e) => Err(classify("reserving quota", e)),
        }
    }

    async fn mark_spent(&self, kind: QuotaKind, window: Window, limit: u32) -> PortResult<()> {
        let expires = window.end() + i64::from(window.length) + 86_400;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(quota_key(kind, window)))
            .update_expression("SET used = :limit, #limit = :limit, expires_at = :exp")
            .condition_expression("attribute_not_exists(used) OR used < :limit")
            .expression_attribute_names("#limit", "limit")
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":exp", n(expires))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(classify("marking quota spent", e)),
        }
    }
}

impl SyncStateStore for DynamoState {
    async fn load(&self, emails: &[Email]) -> PortResult<HashMap<Email, SyncedFields>> {
        let calls: Vec<_> = emails
            .chunks(100)
            .map(|c| self.load_chunk(c.to_vec()))
            .collect();
        let chunks: Vec<HashMap<Email, SyncedFields>> = stream::iter(calls)
            .buffer_unordered(8)
            .try_collect()
            .await?;
        Ok(chunks.into_iter().flatten().collect())
    }

    async fn record(&self, email: &Email, fields: &SyncedFields) -> PortResult<()> {
        if fields.is_empty() {
            return Ok(());
        }
        match self.record_update(email, fields).send().await {
            Ok(_) => Ok(()),
            // Some field already has a newer value: write the others one by one, keeping the newer ones.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                self.record_one_by_one(email, fields).await
            }
            Err(e) => Err(classify("recording sync state", e)),
        }
    }
}

impl Coordination for DynamoState {
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
            Err(e) => Err(classify("taking the drain lease", e)),
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
            Err(e) => Err(classify("releasing the drain lease", e)),
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
            Err(e) => Err(classify("renewing the drain lease", e)),
        }
    }

    async fn circuit(&self) -> PortResult<CircuitState> {
        self.circuit_state().await
    }

    async fn set_circuit(&self, state: &CircuitState) -> PortResult<()> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(CIRCUIT_KEY))
            .item("failures", n(state.failures))
            .item("reason", s(crate::domain::truncate(&state.reason, 500)))
            // Kept a week after the last change: a closed circuit with no failures is the default anyway.
            .item("expires_at", n(Utc::now().timestamp() + 7 * 86_400));
        if let Some(until) = state.open_until {
            put = put.item("open_until_ms", n(until.timestamp_millis()));
        }
        put.send()
            .await
            .map_err(|e| classify("storing the circuit", e))?;
        Ok(())
    }
}

impl RequestTracker for DynamoState {
    async fn record(&self, settled: &[(RequestId, ChangeId, Settled)]) -> PortResult<()> {
        let mut by_request: HashMap<RequestId, [Vec<String>; 3]> = HashMap::new();
        for (request, change, how) in settled {
            let slot = match how {
                Settled::Delivered => 0,
                Settled::Skipped => 1,
                Settled::DeadLettered => 2,
            };
            by_request.entry(*request).or_default()[slot].push(change.to_string());
        }
        let calls: Vec<_> = by_request
            .into_iter()
            .map(|(id, sets)| self.add_settled(id, sets))
            .collect();
        stream::iter(calls)
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}
