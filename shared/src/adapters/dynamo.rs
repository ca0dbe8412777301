//! The drain's state in one DynamoDB table (key `pk`, TTL attribute `expires_at`):
//!
//! | item                     | attributes                                              | written by |
//! |--------------------------|---------------------------------------------------------|------------|
//! | `quota#<kind>#<start>`   | `used` (N), `limit` (N), `expires_at`                   | reserve: conditional `ADD used :n` |
//! | `user#<email>`           | `f.<field>` = `{v: S, k: S (precedence), t: N (ms)}` per delivered field | record: conditional per field |
//! | `inflight#<email>`       | `f.<field>` = precedence key (S) per field a run was about to send, `expires_at` (+1 day) | BatchWriteItem (put) before the provider call |
//! | `lease#drain`            | `holder`, `until_ms`, `expires_at`                      | conditional put; renewed by a conditional update on `holder` |
//! | `circuit#provider`       | `failures`, `open_until_ms` (absent when closed), `reason`, `expires_at` | put, when a run changed it |
//! | `request#<id>`           | `accepted` (ingest); `delivered_ids`, `skipped_ids`, `dead_lettered_ids` (SS of change ids) | `ADD` of sets, once per request per run: idempotent per change. A single-change request's item (ingest also put its change's `email`, `field_keys`, `precedence` in it) gets only its dead letters: its status is derived from `user#<email>` (`ingest::tracking`) |
//!
//! A synced field's `k` is the [`Precedence`] of the change that set it, at full precision, as a string that
//! sorts as the precedence does: `<occurred_at>.<accepted_at>.<position>`, the two times as nanoseconds since
//! the epoch plus 10^22 (so never negative) in 23 digits, the position in 10. `t` is `occurred_at` in
//! milliseconds (rounded down): the whole of the format before `k` existed, still written so a drain rolled
//! back to that format keeps working. A field without `k` is read as the latest change its millisecond
//! could hold (`t` + 999,999 ns, highest tie-breaks), and the write guard refuses anything not in a later
//! millisecond, so no older change passes an old item; the next write replaces it with the full format.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, PutRequest, ReturnValue,
    ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::sqs::classify;
use crate::domain::{ChangeId, Email, FieldKey, Precedence, RequestId};
use crate::ports::{
    CircuitState, Coordination, InFlight, PortError, PortResult, QuotaKind, QuotaLedger,
    RequestTracker, Reservation, Settled, SyncStateStore, SyncedField, SyncedFields, Window,
};

const LEASE_KEY: &str = "lease#drain";
const CIRCUIT_KEY: &str = "circuit#provider";
const FIELD_PREFIX: &str = "f.";
/// Fields per sync-state UpdateItem: each adds ~70 bytes of condition, and DynamoDB refuses an expression
/// over 4 KB. Every field is guarded on its own, so splitting a record changes nothing else.
const FIELDS_PER_UPDATE: usize = 25;
/// Shifts nanoseconds since the epoch to non-negative: chrono spans ±262,143 years, about ±8.3 × 10^21 ns.
const NS_OFFSET: i128 = 10_i128.pow(22);
const NS_PER_SEC: i128 = 1_000_000_000;

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

pub fn in_flight_key(email: &Email) -> String {
    format!("inflight#{}", email.as_str())
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
    /// Every user's item (`key` names it), in BatchGetItems of 100 keys, 8 in flight.
    async fn read_users<T>(
        &self,
        emails: &[Email],
        key: fn(&Email) -> String,
        parse: fn(&HashMap<String, AttributeValue>) -> T,
    ) -> PortResult<HashMap<Email, T>> {
        let calls: Vec<_> = emails
            .chunks(100)
            .map(|c| self.read_chunk(c.to_vec(), key, parse))
            .collect();
        let chunks: Vec<HashMap<Email, T>> = stream::iter(calls)
            .buffer_unordered(8)
            .try_collect()
            .await?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// One BatchGetItem of up to 100 users' items (`key` names each user's item), retrying unprocessed
    /// keys; `parse` reads each item found.
    async fn read_chunk<T>(
        &self,
        chunk: Vec<Email>,
        key: fn(&Email) -> String,
        parse: fn(&HashMap<String, AttributeValue>) -> T,
    ) -> PortResult<HashMap<Email, T>> {
        let mut found = HashMap::new();
        let keys: Vec<HashMap<String, AttributeValue>> = chunk
            .iter()
            .map(|e| HashMap::from([("pk".to_string(), s(key(e)))]))
            .collect();
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::permanent("building a sync-state read", e))?,
        );
        let by_key: HashMap<String, &Email> = chunk.iter().map(|e| (key(e), e)).collect();
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
                    found.insert((*email).clone(), parse(item));
                }
            }
            request = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
            if request.is_some() {
                unprocessed_backoff(attempts, "reading sync state").await?;
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

    async fn record_one_by_one(
        &self,
        email: &Email,
        fields: &[(&FieldKey, &SyncedField)],
    ) -> PortResult<()> {
        for field in fields {
            match self
                .record_update(email, std::slice::from_ref(field))
                .send()
                .await
            {
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
        fields: &[(&FieldKey, &SyncedField)],
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
            let (name, value, k, ms) = (
                format!("#f{i}"),
                format!(":v{i}"),
                format!(":k{i}"),
                format!(":m{i}"),
            );
            let precedence = precedence_key(&field.precedence);
            let millis = field.precedence.occurred_at.timestamp_millis();
            sets.push(format!("{name} = {value}"));
            // Never backwards: the recorded field must be absent, or of no greater precedence (equal: this
            // same change, recorded again), or — for an item from before `k` — from an earlier millisecond.
            // `t` is the floor of the recorded time, so `t < :m` also implies an earlier `k` where `k` exists.
            conditions.push(format!(
                "(attribute_not_exists({name}) OR {name}.k <= {k} OR {name}.t < {ms})"
            ));
            req = req
                .expression_attribute_names(&name, format!("{FIELD_PREFIX}{}", key.storage_key()))
                .expression_attribute_values(
                    &value,
                    AttributeValue::M(HashMap::from([
                        ("v".to_string(), s(field.value.clone())),
                        ("k".to_string(), s(precedence.clone())),
                        ("t".to_string(), n(millis)),
                    ])),
                )
                .expression_attribute_values(&k, s(precedence))
                .expression_attribute_values(&ms, n(millis));
        }
        req.update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(conditions.join(" AND "))
    }
}

fn nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * NS_PER_SEC + i128::from(t.timestamp_subsec_nanos())
}

fn from_nanos(ns: i128) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(ns.div_euclid(NS_PER_SEC)).ok()?;
    let sub = u32::try_from(ns.rem_euclid(NS_PER_SEC)).ok()?;
    DateTime::from_timestamp(secs, sub)
}

/// The stored form of a precedence (see the module doc): fixed-width digits, so DynamoDB's string order
/// (by bytes) is the precedence order.
pub(crate) fn precedence_key(p: &Precedence) -> String {
    format!(
        "{:023}.{:023}.{:010}",
        nanos(p.occurred_at) + NS_OFFSET,
        nanos(p.accepted_at) + NS_OFFSET,
        p.position
    )
}

pub(crate) fn parse_precedence_key(k: &str) -> Option<Precedence> {
    let mut parts = k.split('.');
    let mut time = || from_nanos(parts.next()?.parse::<i128>().ok()? - NS_OFFSET);
    let (occurred_at, accepted_at) = (time()?, time()?);
    let position = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Precedence {
        occurred_at,
        accepted_at,
        position,
    })
}

/// A field recorded before `k` existed: only its millisecond is known, so it stands for the latest change
/// that millisecond could hold — anything not strictly later is stale against it.
fn legacy_precedence(millis: i64) -> Option<Precedence> {
    Some(Precedence {
        occurred_at: DateTime::from_timestamp_millis(millis)?
            + chrono::TimeDelta::nanoseconds(999_999),
        accepted_at: DateTime::<Utc>::MAX_UTC,
        position: u32::MAX,
    })
}

/// Between retries of a batch call's unprocessed keys or items (DynamoDB's answer to throttling inside a
/// batch, which the SDK's own retries do not see): a short exponential wait, and an error after 8 tries.
async fn unprocessed_backoff(attempts: u32, what: &'static str) -> PortResult<()> {
    if attempts >= 8 {
        return Err(PortError::transient(
            what,
            anyhow::anyhow!("unprocessed keys or items after {attempts} attempts"),
        ));
    }
    tokio::time::sleep(std::time::Duration::from_millis(10 << attempts)).await;
    Ok(())
}

fn parse_in_flight(item: &HashMap<String, AttributeValue>) -> InFlight {
    item.iter()
        .filter_map(|(name, value)| {
            let key = FieldKey::from_storage_key(name.strip_prefix(FIELD_PREFIX)?)?;
            Some((key, parse_precedence_key(value.as_s().ok()?)?))
        })
        .collect()
}

/// A user's synced fields from their `user#<email>` item (also read by ingest, to derive a single-change
/// request's status).
pub(crate) fn parse_fields(item: &HashMap<String, AttributeValue>) -> SyncedFields {
    item.iter()
        .filter_map(|(name, value)| {
            let key = FieldKey::from_storage_key(name.strip_prefix(FIELD_PREFIX)?)?;
            let map = value.as_m().ok()?;
            let v = map.get("v")?.as_s().ok()?.clone();
            let full = map
                .get("k")
                .and_then(|k| k.as_s().ok())
                .and_then(|k| parse_precedence_key(k));
            let precedence = match full {
                Some(p) => p,
                None => legacy_precedence(map.get("t")?.as_n().ok()?.parse().ok()?)?,
            };
            Some((
                key,
                SyncedField {
                    value: v,
                    precedence,
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

impl DynamoState {
    /// One BatchWriteItem of up to 25 in-flight items, retrying unprocessed ones.
    async fn write_in_flight(&self, chunk: Vec<WriteRequest>) -> PortResult<()> {
        let mut pending = Some(chunk);
        let mut attempts = 0;
        while let Some(requests) = pending.take() {
            attempts += 1;
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| classify("recording in-flight fields", e))?;
            pending = out
                .unprocessed_items()
                .and_then(|u| u.get(&self.table))
                .filter(|r| !r.is_empty())
                .cloned();
            if pending.is_some() {
                unprocessed_backoff(attempts, "recording in-flight fields").await?;
            }
        }
        Ok(())
    }
}

impl SyncStateStore for DynamoState {
    async fn in_flight(&self, emails: &[Email]) -> PortResult<HashMap<Email, InFlight>> {
        self.read_users(emails, in_flight_key, parse_in_flight)
            .await
    }

    async fn intend(&self, intents: &[(Email, InFlight)]) -> PortResult<()> {
        // A day is far longer than any message of the change can stay unsettled without the drain
        // settling it (visibility timeout, backoff); by then the sync state guards the field.
        let expires = n(Utc::now().timestamp() + 86_400);
        let mut requests = Vec::with_capacity(intents.len());
        for (email, fields) in intents.iter().filter(|(_, f)| !f.is_empty()) {
            let mut item = HashMap::from([
                ("pk".to_string(), s(in_flight_key(email))),
                ("expires_at".to_string(), expires.clone()),
            ]);
            for (key, precedence) in fields {
                item.insert(
                    format!("{FIELD_PREFIX}{}", key.storage_key()),
                    s(precedence_key(precedence)),
                );
            }
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| PortError::permanent("building an in-flight item", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        let calls: Vec<_> = requests
            .chunks(25)
            .map(|c| self.write_in_flight(c.to_vec()))
            .collect();
        stream::iter(calls)
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn load(&self, emails: &[Email]) -> PortResult<HashMap<Email, SyncedFields>> {
        self.read_users(emails, user_key, parse_fields).await
    }

    async fn record(&self, email: &Email, fields: &SyncedFields) -> PortResult<()> {
        let fields: Vec<(&FieldKey, &SyncedField)> = fields.iter().collect();
        for chunk in fields.chunks(FIELDS_PER_UPDATE) {
            match self.record_update(email, chunk).send().await {
                Ok(_) => {}
                // Some field already has a newer value: write the others one by one, keeping the newer ones.
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    self.record_one_by_one(email, chunk).await?;
                }
                Err(e) => return Err(classify("recording sync state", e)),
            }
        }
        Ok(())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            Just(DateTime::<Utc>::MIN_UTC),
            Just(DateTime::<Utc>::MAX_UTC),
            (-100_000_000_000i64..100_000_000_000, 0..1_000_000_000u32)
                .prop_map(|(secs, ns)| DateTime::from_timestamp(secs, ns).unwrap()),
            // Around one instant, so neighbours one nanosecond apart are compared.
            (0..3_000_000i64).prop_map(|ns| {
                DateTime::from_timestamp(1_800_000_000, 0).unwrap()
                    + chrono::TimeDelta::nanoseconds(ns)
            }),
        ]
    }

    fn arb_precedence() -> impl Strategy<Value = Precedence> {
        (arb_time(), arb_time(), prop_oneof![0..3u32, Just(u32::MAX)]).prop_map(
            |(occurred_at, accepted_at, position)| Precedence {
                occurred_at,
                accepted_at,
                position,
            },
        )
    }

    proptest! {
        /// Rule: the stored precedence keeps every nanosecond and sorts as the precedence does, so
        /// DynamoDB's string comparison in the write guard is the drain's comparison.
        #[test]
        fn stored_precedence_round_trips_and_sorts_like_precedence(a in arb_precedence(), b in arb_precedence()) {
            let (ka, kb) = (precedence_key(&a), precedence_key(&b));
            prop_assert_eq!(parse_precedence_key(&ka), Some(a));
            prop_assert_eq!(ka.len(), 58);
            prop_assert_eq!(ka.as_bytes().cmp(kb.as_bytes()), a.cmp(&b));
        }

        /// Rule: an old millisecond item never lets an older change pass — the read precedence is above every
        /// change its millisecond could have held, and below every change of a later millisecond.
        #[test]
        fn a_millisecond_item_reads_as_the_latest_its_millisecond_could_hold(
            millis in -100_000_000_000_000i64..100_000_000_000_000,
            sub_ns in 0..1_000_000i64,
        ) {
            let old = legacy_precedence(millis).unwrap();
            let same_ms = DateTime::from_timestamp_millis(millis).unwrap() + chrono::TimeDelta::nanoseconds(sub_ns);
            let change = |t| Precedence { occurred_at: t, accepted_at: DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::seconds(1), position: u32::MAX };
            prop_assert!(old >= change(same_ms));
            prop_assert_eq!(same_ms.timestamp_millis(), millis, "the write guard's `t < :m` refuses it too");
            let next_ms = DateTime::from_timestamp_millis(millis + 1).unwrap();
            prop_assert!(old < change(next_ms));
        }
    }

    #[test]
    fn a_millisecond_item_is_parsed_and_a_full_item_preferred() {
        let legacy = HashMap::from([
            ("pk".to_string(), s("user#a@x.io")),
            (
                "f.name".to_string(),
                AttributeValue::M(HashMap::from([
                    ("v".to_string(), s("old")),
                    ("t".to_string(), n(1_800_000_000_123_i64)),
                ])),
            ),
        ]);
        let got = parse_fields(&legacy);
        let p = got[&FieldKey::Name].precedence;
        assert_eq!(got[&FieldKey::Name].value, "old");
        assert_eq!(nanos(p.occurred_at), 1_800_000_000_123_999_999);

        let full = Precedence {
            occurred_at: DateTime::from_timestamp(1_800_000_000, 123_400_001).unwrap(),
            accepted_at: DateTime::from_timestamp(1_800_000_001, 5).unwrap(),
            position: 2,
        };
        let item = HashMap::from([(
            "f.cf.plan".to_string(),
            AttributeValue::M(HashMap::from([
                ("v".to_string(), s("pro")),
                ("k".to_string(), s(precedence_key(&full))),
                ("t".to_string(), n(full.occurred_at.timestamp_millis())),
            ])),
        )]);
        assert_eq!(
            parse_fields(&item)[&FieldKey::Custom("plan".into())].precedence,
            full
        );
    }

    /// Rule: a record of any size fits DynamoDB's 4 KB expression limit (it is split into chunks).
    #[test]
    fn a_full_chunk_of_fields_fits_the_expression_limit() {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        let state = DynamoState::new(Client::from_conf(conf), "t");
        let field = SyncedField {
            value: "v".into(),
            precedence: legacy_precedence(0).unwrap(),
        };
        let keys: Vec<FieldKey> = (0..FIELDS_PER_UPDATE)
            .map(|i| FieldKey::Custom(format!("{i:0>64}")))
            .collect();
        let fields: Vec<(&FieldKey, &SyncedField)> = keys.iter().map(|k| (k, &field)).collect();
        let req = state.record_update(&Email::parse("a@x.io").unwrap(), &fields);
        let condition = req.get_condition_expression().clone().unwrap();
        let update = req.get_update_expression().clone().unwrap();
        assert!(condition.len() < 4096 / 2, "{} bytes", condition.len());
        assert!(update.len() < 4096 / 2, "{} bytes", update.len());
    }
}
