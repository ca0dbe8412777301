//! The drain's state in one DynamoDB table (key `pk`, TTL attribute `expires_at`):
//!
//! | item                     | attributes                                              | written by |
//! |--------------------------|---------------------------------------------------------|------------|
//! | `quota#<kind>#<start>`   | `used` (N), `limit` (N), `expires_at`                   | reserve: conditional `ADD used :n` |
//! | `user#<email>`           | `f.<field>` = `{v: S, k: S (precedence), t: N (ms)}` per delivered field, `updated_at` | record: PartiQL `INSERT` (new user) or `UPDATE … WHERE` with a condition per field, 25 per BatchExecuteStatement |
//! | `inflight#run#<holder>#<n>` | `entries` (S: JSON `{email: {field: precedence key}}`, ≤ 300 KB a chunk), `expires_at` (+1 day) | BatchWriteItem (put) before the provider call: one note per run |
//! | `inflight#runs`          | `note#<holder>` = `"<written at, s> <chunks>"` per note still listed | UpdateItem: SET once the note is written, REMOVE when resolved (or a day old, on read) |
//! | `lease#drain`            | `holder`, `until_ms`, `expires_at`                      | conditional put; renewed by a conditional update on `holder` |
//! | `circuit#provider`       | `failures`, `open_until_ms` (absent when closed), `reason`, `expires_at` | put, when a run changed it |
//! | `request#<id>`           | `accepted` (ingest); `delivered_ids`, `skipped_ids`, `dead_lettered_ids` (SS of change ids) | `ADD` of sets, once per request per run: idempotent per change. A single-change request's item (ingest also put its change's `email`, `field_keys`, `precedence` in it) gets only its dead letters: its status is derived from `user#<email>` (`ports::requests`) |
//!
//! A synced field's `k` is the [`Precedence`] of the change that set it, at full precision, as a string that
//! sorts as the precedence does: `<occurred_at>.<accepted_at>.<position>`, the two times as nanoseconds since
//! the epoch plus 10^22 (so never negative) in 23 digits, the position in 10. `t` is `occurred_at` in
//! milliseconds (rounded down): the whole of the format before `k` existed, still written so a drain rolled
//! back to that format keeps working. A field without `k` is read as the latest change its millisecond
//! could hold (`t` + 999,999 ns, highest tie-breaks), and the write guard refuses anything not in a later
//! millisecond, so no older change passes an old item; the next write replaces it with the full format.
//!
//! **Sync state in batches.** One drain run records every delivered user at once: PartiQL
//! `BatchExecuteStatement`, 25 statements a call, 8 calls in flight, each statement carrying its own
//! per-field condition (`"f.x" IS MISSING OR "f.x".k <= ? OR "f.x".t < ?`, the guard above). PartiQL batch
//! was chosen because it is the only batch write that takes a condition per item at 1 WRU per item:
//! BatchWriteItem takes no conditions, TransactWriteItems costs 2 WRU per item, and single UpdateItems are
//! one round trip each — on LocalStack (2 cores) 1,000 users are recorded in 1.0–1.3 s (insert, update,
//! or all refused), and a drain run of 1,000 messages of 1,000 users fell from 5.4–5.8 s to 1.4–2.2 s
//! (`a_thousand_users_are_recorded_in_one_batched_write`, `a_drain_of_1000_users_is_timed`). `UPDATE` of
//! a missing item fails its condition (it is no upsert) and `INSERT` of an existing one fails as a
//! duplicate, so a user `load` found is updated and
//! another inserted; a statement that fails is resolved by reading its item (unless the failure carried
//! it): missing → insert, present → update only the fields the guard lets through (a newer one is kept).
//!
//! **In-flight notes per run.** Before its first provider call a run writes one note — the precedence of
//! every field it may send — in a few chunk items, then lists it in `inflight#runs`; `in_flight` reads
//! that index and the listed notes (normally none: only crashed runs' and open remainders). Once the run's
//! sync state is recorded, `resolve` unlists the note, or replaces it by a note of only the records whose
//! call got no answer (5xx, timeout: `<holder>-open`), whose fields the provider may hold; a rejection or
//! a same-subscriber 429 says the provider took nothing, so those leave no open note. So a run writes
//! O(KB of its note) + 2 small updates instead of one item per record (1,000 records of one field: ~95 KB,
//! so ~96 WRU instead of 1,000); a note left by a crash keeps guarding for its day, then is dropped from
//! the index on read (the items go by TTL). Per-user `inflight#<email>` items of the earlier format are
//! no longer read: deploy this version while no run has just died mid-call (or wait a drain interval
//! plus the longest retry backoff after such a run).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, BatchStatementErrorCodeEnum, BatchStatementRequest, KeysAndAttributes,
    PutRequest, ReturnValue, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::sqs::classify;
use crate::domain::{ChangeId, Email, FieldKey, Precedence, RequestId};
use crate::ports::{
    CircuitState, CircuitStore, DrainLease, InFlight, PortError, PortResult, QuotaKind,
    QuotaLedger, RequestTracker, Reservation, Settled, SyncStateStore, SyncWrite, SyncedField,
    SyncedFields, Window,
};

const LEASE_KEY: &str = "lease#drain";
const CIRCUIT_KEY: &str = "circuit#provider";
const FIELD_PREFIX: &str = "f.";
const NOTE_INDEX_KEY: &str = "inflight#runs";
const NOTE_PREFIX: &str = "note#";
/// Bytes of entries per in-flight note chunk: well under DynamoDB's 400 KB item limit.
const NOTE_CHUNK_BYTES: usize = 300_000;
/// How long a note guards (its items' TTL, and when the index drops it): a day is far longer than any
/// message of the change can stay unsettled without the drain settling it (visibility timeout, backoff);
/// by then the sync state guards the field.
const NOTE_LIFETIME_SECS: i64 = 86_400;
/// Statements per BatchExecuteStatement (DynamoDB's maximum).
const STATEMENTS_PER_CALL: usize = 25;
/// BatchExecuteStatement calls in flight.
const CALLS_IN_FLIGHT: usize = 8;
/// Characters of one PartiQL statement, below DynamoDB's 8,192: a record with more fields is split into
/// several statements (in successive rounds: a batch may not name one item twice). Every field is guarded
/// on its own, so splitting a record changes nothing else.
const STATEMENT_BUDGET: usize = 7_000;
/// Fields per statement: each adds about 7 operators to the condition (IS MISSING, two ORs, two
/// comparisons, AND, the SET's `=`), and DynamoDB refuses an expression of more than 300.
const FIELDS_PER_STATEMENT: usize = 32;
/// Rounds of batched statements before `record` gives up (transiently): a split record takes one per
/// part, a failed condition one more for the reread and one for the retry.
const RECORD_ROUNDS: usize = 8;
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

/// One chunk of a run's in-flight note.
pub fn note_key(holder: &str, chunk: usize) -> String {
    format!("inflight#run#{holder}#{chunk}")
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

    /// Every user's item (`key` names it), in BatchGetItems of 100 keys, 8 in flight.
    async fn read_users<T>(
        &self,
        emails: &[Email],
        key: fn(&Email) -> String,
        parse: fn(&HashMap<String, AttributeValue>) -> T,
    ) -> PortResult<HashMap<Email, T>> {
        let by_key: HashMap<String, &Email> = emails.iter().map(|e| (key(e), e)).collect();
        let keys: Vec<String> = by_key.keys().cloned().collect();
        let items = self.read_items(keys, 100, "reading sync state").await?;
        Ok(items
            .iter()
            .filter_map(|(k, item)| Some(((*by_key.get(k)?).clone(), parse(item))))
            .collect())
    }

    /// Items by key, read consistently in BatchGetItems of `per_call` keys, 8 in flight; missing ones are
    /// absent from the answer.
    async fn read_items(
        &self,
        keys: Vec<String>,
        per_call: usize,
        what: &'static str,
    ) -> PortResult<HashMap<String, HashMap<String, AttributeValue>>> {
        let calls: Vec<_> = keys
            .chunks(per_call)
            .map(|c| self.read_chunk(c.to_vec(), what))
            .collect();
        let chunks: Vec<Vec<HashMap<String, AttributeValue>>> = stream::iter(calls)
            .buffer_unordered(8)
            .try_collect()
            .await?;
        Ok(chunks
            .into_iter()
            .flatten()
            .filter_map(|item| Some((item.get("pk")?.as_s().ok()?.clone(), item)))
            .collect())
    }

    /// One BatchGetItem, retrying unprocessed keys.
    async fn read_chunk(
        &self,
        chunk: Vec<String>,
        what: &'static str,
    ) -> PortResult<Vec<HashMap<String, AttributeValue>>> {
        let mut found = Vec::new();
        let keys: Vec<HashMap<String, AttributeValue>> = chunk
            .into_iter()
            .map(|k| HashMap::from([("pk".to_string(), s(k))]))
            .collect();
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::permanent("building a batch read", e))?,
        );
        let mut attempts = 0;
        while let Some(keys) = request.take() {
            attempts += 1;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| classify(what, e))?;
            if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                found.extend(items.iter().cloned());
            }
            request = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
            if request.is_some() {
                unprocessed_backoff(attempts, what).await?;
            }
        }
        Ok(found)
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

/// One user's pending sync-state write: the fields still to write, in parts that each fit a statement.
struct UserWrite<'a> {
    email: &'a Email,
    parts: std::collections::VecDeque<Vec<(&'a FieldKey, &'a SyncedField)>>,
    /// What this call has learned about the item (a write succeeded, a read or a duplicate said so);
    /// `None` until then, when the caller's hint picks the verb.
    exists: Option<bool>,
    hint: bool,
}

impl UserWrite<'_> {
    fn insert(&self) -> bool {
        !self.exists.unwrap_or(self.hint)
    }

    /// The item as stored says which fields of the current part may still be written (the guard, in
    /// Rust): keep those, or drop the part when a newer value holds every one of them.
    fn refine(&mut self, item: &HashMap<String, AttributeValue>) {
        self.exists = Some(true);
        if let Some(part) = self.parts.front_mut() {
            part.retain(|(key, field)| {
                may_overwrite(
                    item.get(&format!("{FIELD_PREFIX}{}", key.storage_key())),
                    field,
                )
            });
            if part.is_empty() {
                self.parts.pop_front();
            }
        }
    }
}

/// How one statement of a batch ended.
enum StatementResult {
    Written,
    /// The condition failed; the item as stored, when DynamoDB returned it.
    ConditionFailed(Option<HashMap<String, AttributeValue>>),
    /// `INSERT` of an item that exists.
    Duplicate,
    /// Throttled or an internal error: the same statement again after a pause.
    Retry,
}

/// The write guard of the module doc, as DynamoDB evaluates it: absent, or no greater precedence, or (an
/// item from before `k`) an earlier millisecond.
fn may_overwrite(stored: Option<&AttributeValue>, new: &SyncedField) -> bool {
    let Some(stored) = stored else {
        return true;
    };
    let map = stored.as_m().ok();
    let k = map.and_then(|m| m.get("k")).and_then(|k| k.as_s().ok());
    let t = map
        .and_then(|m| m.get("t"))
        .and_then(|t| t.as_n().ok())
        .and_then(|t| t.parse::<i64>().ok());
    k.is_some_and(|k| k.as_bytes() <= precedence_key(&new.precedence).as_bytes())
        || t.is_some_and(|t| t < new.precedence.occurred_at.timestamp_millis())
}

fn field_value(field: &SyncedField) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("v".to_string(), s(field.value.clone())),
        ("k".to_string(), s(precedence_key(&field.precedence))),
        (
            "t".to_string(),
            n(field.precedence.occurred_at.timestamp_millis()),
        ),
    ]))
}

/// A statement's length grows by about this much per field (set, condition, with the name four times).
fn field_cost(key: &FieldKey) -> usize {
    4 * (FIELD_PREFIX.len() + key.storage_key().len() + 2) + 64
}

/// Splits a user's fields into parts that each fit one statement.
fn split_fields<'a>(
    table: &str,
    fields: &'a SyncedFields,
) -> std::collections::VecDeque<Vec<(&'a FieldKey, &'a SyncedField)>> {
    let mut parts = std::collections::VecDeque::new();
    let mut part = Vec::new();
    let mut len = 96 + table.len();
    for (key, field) in fields {
        let cost = field_cost(key);
        if !part.is_empty() && (len + cost > STATEMENT_BUDGET || part.len() == FIELDS_PER_STATEMENT)
        {
            parts.push_back(std::mem::take(&mut part));
            len = 96 + table.len();
        }
        len += cost;
        part.push((key, field));
    }
    if !part.is_empty() {
        parts.push_back(part);
    }
    parts
}

/// `INSERT` of a new user item, or a guarded `UPDATE` of its fields (PartiQL, parameters in order).
fn sync_statement(
    table: &str,
    email: &Email,
    fields: &[(&FieldKey, &SyncedField)],
    insert: bool,
) -> (String, Vec<AttributeValue>) {
    let now = s(Utc::now().to_rfc3339());
    let name = |key: &FieldKey| format!("{FIELD_PREFIX}{}", key.storage_key());
    if insert {
        let mut tuple = vec!["'pk': ?".to_string(), "'updated_at': ?".to_string()];
        let mut params = vec![s(user_key(email)), now];
        for (key, field) in fields {
            tuple.push(format!("'{}': ?", name(key)));
            params.push(field_value(field));
        }
        let statement = format!("INSERT INTO \"{table}\" VALUE {{{}}}", tuple.join(", "));
        return (statement, params);
    }
    let mut sets = Vec::new();
    let mut conditions = vec!["pk = ?".to_string()];
    let mut params = Vec::new();
    let mut condition_params = vec![s(user_key(email))];
    for (key, field) in fields {
        let name = name(key);
        sets.push(format!("SET \"{name}\" = ?"));
        params.push(field_value(field));
        // Never backwards: absent, or of no greater precedence (equal: this same change, recorded
        // again), or — for an item from before `k` — from an earlier millisecond. `t` is the floor of the
        // recorded time, so `t < :m` also implies an earlier `k` where `k` exists.
        conditions.push(format!(
            "(\"{name}\" IS MISSING OR \"{name}\".k <= ? OR \"{name}\".t < ?)"
        ));
        condition_params.push(s(precedence_key(&field.precedence)));
        condition_params.push(n(field.precedence.occurred_at.timestamp_millis()));
    }
    sets.push("SET updated_at = ?".to_string());
    params.push(now);
    params.extend(condition_params);
    let statement = format!(
        "UPDATE \"{table}\" {} WHERE {}",
        sets.join(" "),
        conditions.join(" AND ")
    );
    (statement, params)
}

impl DynamoState {
    /// Runs statements in BatchExecuteStatements of 25, 8 in flight; one result per statement, in order.
    async fn execute_statements(
        &self,
        statements: Vec<(String, Vec<AttributeValue>)>,
    ) -> PortResult<Vec<StatementResult>> {
        let mut requests = Vec::with_capacity(statements.len());
        for (statement, params) in statements {
            requests.push(
                BatchStatementRequest::builder()
                    .statement(statement)
                    .set_parameters(Some(params))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(|e| PortError::permanent("building a sync-state statement", e))?,
            );
        }
        let calls: Vec<_> = requests
            .chunks(STATEMENTS_PER_CALL)
            .map(|chunk| self.execute_batch(chunk.to_vec()))
            .collect();
        let results: Vec<Vec<StatementResult>> = stream::iter(calls)
            .buffered(CALLS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(results.into_iter().flatten().collect())
    }

    async fn execute_batch(
        &self,
        requests: Vec<BatchStatementRequest>,
    ) -> PortResult<Vec<StatementResult>> {
        let count = requests.len();
        let out = self
            .client
            .batch_execute_statement()
            .set_statements(Some(requests))
            .send()
            .await
            .map_err(|e| classify("recording sync state", e))?;
        let responses = out.responses();
        if responses.len() != count {
            return Err(PortError::transient(
                "recording sync state",
                anyhow::anyhow!("{} answers to {count} statements", responses.len()),
            ));
        }
        responses
            .iter()
            .map(|r| {
                let Some(error) = r.error() else {
                    return Ok(StatementResult::Written);
                };
                use BatchStatementErrorCodeEnum as Code;
                match error.code() {
                    Some(Code::ConditionalCheckFailed) => Ok(StatementResult::ConditionFailed(
                        error.item().filter(|i| !i.is_empty()).cloned(),
                    )),
                    Some(Code::DuplicateItem) => Ok(StatementResult::Duplicate),
                    Some(
                        Code::ThrottlingError
                        | Code::ProvisionedThroughputExceeded
                        | Code::RequestLimitExceeded
                        | Code::InternalServerError
                        | Code::TransactionConflict,
                    ) => Ok(StatementResult::Retry),
                    code => Err(PortError::permanent(
                        "recording sync state",
                        anyhow::anyhow!(
                            "statement refused ({code:?}): {}",
                            error.message().unwrap_or_default()
                        ),
                    )),
                }
            })
            .collect()
    }

    /// Writes one note's chunks (BatchWriteItem, retrying unprocessed items), then lists it in the index
    /// (replacing `replaces`, when given) — in that order, so a listed note is always whole.
    async fn write_note(
        &self,
        name: &str,
        chunks: &[String],
        replaces: Option<&str>,
    ) -> PortResult<()> {
        let now = Utc::now().timestamp();
        let expires = n(now + NOTE_LIFETIME_SECS);
        let mut requests = Vec::with_capacity(chunks.len());
        for (i, entries) in chunks.iter().enumerate() {
            let put = PutRequest::builder()
                .item("pk", s(note_key(name, i)))
                .item("entries", s(entries.clone()))
                .item("expires_at", expires.clone())
                .build()
                .map_err(|e| PortError::permanent("building an in-flight note", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        // Chunks are up to 300 KB: a few per call keeps each call under BatchWriteItem's 16 MB.
        let calls: Vec<_> = requests
            .chunks(25)
            .map(|c| self.write_batch(c.to_vec()))
            .collect();
        stream::iter(calls)
            .buffer_unordered(CALLS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(NOTE_INDEX_KEY))
            .expression_attribute_names("#note", format!("{NOTE_PREFIX}{name}"))
            .expression_attribute_values(":note", s(format!("{now} {}", chunks.len())))
            .expression_attribute_values(":exp", n(now + 2 * NOTE_LIFETIME_SECS));
        let mut expression = "SET #note = :note, expires_at = :exp".to_string();
        if let Some(old) = replaces {
            update = update.expression_attribute_names("#old", format!("{NOTE_PREFIX}{old}"));
            expression.push_str(" REMOVE #old");
        }
        update
            .update_expression(expression)
            .send()
            .await
            .map_err(|e| classify("listing an in-flight note", e))?;
        Ok(())
    }

    /// Removes notes from the index (their items go by TTL).
    async fn unlist_notes(&self, names: &[String]) -> PortResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(NOTE_INDEX_KEY));
        let mut removes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            removes.push(format!("#n{i}"));
            update =
                update.expression_attribute_names(format!("#n{i}"), format!("{NOTE_PREFIX}{name}"));
        }
        update
            .update_expression(format!("REMOVE {}", removes.join(", ")))
            .send()
            .await
            .map_err(|e| classify("unlisting in-flight notes", e))?;
        Ok(())
    }

    /// One BatchWriteItem of up to 25 items, retrying unprocessed ones.
    async fn write_batch(&self, chunk: Vec<WriteRequest>) -> PortResult<()> {
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

/// A run's in-flight note as chunk bodies: JSON objects `{email: {field storage key: precedence key}}`,
/// each at most [`NOTE_CHUNK_BYTES`] (a user is never split across chunks). Public so the simulator meters
/// the bytes the adapter really writes.
pub fn note_chunks(intents: &[(Email, InFlight)]) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut chunk = String::from("{");
    for (email, fields) in intents.iter().filter(|(_, f)| !f.is_empty()) {
        let fields: BTreeMap<String, String> = fields
            .iter()
            .map(|(k, p)| (k.storage_key(), precedence_key(p)))
            .collect();
        let entry = format!(
            "{}:{}",
            serde_json::Value::String(email.as_str().to_string()),
            serde_json::to_string(&fields).unwrap_or_default()
        );
        if chunk.len() > 1 && chunk.len() + entry.len() + 2 > NOTE_CHUNK_BYTES {
            chunk.push('}');
            chunks.push(std::mem::replace(&mut chunk, String::from("{")));
        }
        if chunk.len() > 1 {
            chunk.push(',');
        }
        chunk.push_str(&entry);
    }
    if chunk.len() > 1 {
        chunk.push('}');
        chunks.push(chunk);
    }
    chunks
}

/// The notes the index lists, `(name, written at (s), chunks)`.
fn listed_notes(index: Option<&HashMap<String, AttributeValue>>) -> Vec<(String, i64, usize)> {
    index
        .into_iter()
        .flatten()
        .filter_map(|(attr, value)| {
            let name = attr.strip_prefix(NOTE_PREFIX)?;
            let mut parts = value.as_s().ok()?.split(' ');
            let at = parts.next()?.parse().ok()?;
            let chunks = parts.next()?.parse().ok()?;
            Some((name.to_string(), at, chunks))
        })
        .collect()
}

impl SyncStateStore for DynamoState {
    async fn in_flight(&self, emails: &[Email]) -> PortResult<HashMap<Email, InFlight>> {
        let index = self
            .get_consistent(NOTE_INDEX_KEY.to_owned(), "reading the in-flight index")
            .await?;
        let oldest = Utc::now().timestamp() - NOTE_LIFETIME_SECS;
        let (live, expired): (Vec<_>, Vec<_>) = listed_notes(index.as_ref())
            .into_iter()
            .partition(|(_, at, _)| *at >= oldest);
        if !expired.is_empty() {
            let names: Vec<String> = expired.into_iter().map(|(name, _, _)| name).collect();
            if let Err(e) = self.unlist_notes(&names).await {
                // They are ignored all the same; the next read tries again.
                tracing::warn!(error = %e, "could not unlist expired in-flight notes");
            }
        }
        let mut out: HashMap<Email, InFlight> = HashMap::new();
        if live.is_empty() || emails.is_empty() {
            return Ok(out);
        }
        let keys: Vec<String> = live
            .iter()
            .flat_map(|(name, _, chunks)| (0..*chunks).map(move |i| note_key(name, i)))
            .collect();
        // Chunks are up to 300 KB: 25 per call keeps an answer under BatchGetItem's 16 MB.
        let items = self.read_items(keys, 25, "reading in-flight notes").await?;
        let wanted: HashMap<&str, &Email> = emails.iter().map(|e| (e.as_str(), e)).collect();
        for item in items.values() {
            let Some(entries) = item.get("entries").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            let note: HashMap<String, BTreeMap<String, String>> = serde_json::from_str(entries)
                .map_err(|e| PortError::permanent("reading an in-flight note", e))?;
            for (email, fields) in note {
                let Some(&email) = wanted.get(email.as_str()) else {
                    continue;
                };
                let user = out.entry(email.clone()).or_default();
                for (key, p) in fields {
                    let (Some(key), Some(p)) =
                        (FieldKey::from_storage_key(&key), parse_precedence_key(&p))
                    else {
                        continue;
                    };
                    let newest = user.entry(key).or_insert(p);
                    *newest = (*newest).max(p);
                }
            }
        }
        Ok(out)
    }

    async fn intend(&self, holder: &str, intents: &[(Email, InFlight)]) -> PortResult<()> {
        let chunks = note_chunks(intents);
        if chunks.is_empty() {
            return Ok(());
        }
        self.write_note(holder, &chunks, None).await
    }

    async fn resolve(&self, holder: &str, open: &[(Email, InFlight)]) -> PortResult<()> {
        let chunks = note_chunks(open);
        if chunks.is_empty() {
            return self.unlist_notes(&[holder.to_string()]).await;
        }
        self.write_note(&format!("{holder}-open"), &chunks, Some(holder))
            .await
    }

    async fn load(&self, emails: &[Email]) -> PortResult<HashMap<Email, SyncedFields>> {
        self.read_users(emails, user_key, parse_fields).await
    }

    async fn record(&self, users: &[SyncWrite]) -> PortResult<()> {
        let mut pending: Vec<UserWrite> = users
            .iter()
            .map(|u| UserWrite {
                email: &u.email,
                parts: split_fields(&self.table, &u.fields),
                exists: None,
                hint: u.known,
            })
            .collect();
        for round in 0.. {
            // One statement per user per round: a batch may not name one item twice.
            let active: Vec<usize> = (0..pending.len())
                .filter(|&i| !pending[i].parts.is_empty())
                .collect();
            if active.is_empty() {
                return Ok(());
            }
            if round >= RECORD_ROUNDS + pending.iter().map(|u| u.parts.len()).max().unwrap_or(0) {
                return Err(PortError::transient(
                    "recording sync state",
                    anyhow::anyhow!(
                        "{} users still unwritten after {round} rounds",
                        active.len()
                    ),
                ));
            }
            let statements = active
                .iter()
                .map(|&i| {
                    let u = &pending[i];
                    sync_statement(&self.table, u.email, &u.parts[0], u.insert())
                })
                .collect();
            let results = self.execute_statements(statements).await?;
            let mut reread = Vec::new();
            let mut retry = false;
            for (&i, result) in active.iter().zip(results) {
                let u = &mut pending[i];
                match result {
                    StatementResult::Written => {
                        u.exists = Some(true);
                        u.parts.pop_front();
                    }
                    StatementResult::ConditionFailed(Some(item)) => u.refine(&item),
                    // A missing item (UPDATE is no upsert) or a newer field: the item says which.
                    StatementResult::ConditionFailed(None) | StatementResult::Duplicate => {
                        reread.push(i)
                    }
                    StatementResult::Retry => retry = true,
                }
            }
            if !reread.is_empty() {
                let keys = reread.iter().map(|&i| user_key(pending[i].email)).collect();
                let items = self.read_items(keys, 100, "reading sync state").await?;
                for i in reread {
                    let u = &mut pending[i];
                    match items.get(&user_key(u.email)) {
                        Some(item) => u.refine(item),
                        None => u.exists = Some(false),
                    }
                }
            }
            if retry {
                unprocessed_backoff(round as u32 + 1, "recording sync state").await?;
            }
        }
        Ok(())
    }
}

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
}

impl CircuitStore for DynamoState {
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

    /// Rule: a record of any size fits PartiQL's 8,192-character statement limit (it is split into
    /// parts), and every field lands in exactly one part.
    #[test]
    fn every_part_of_a_wide_record_fits_a_statement() {
        let field = SyncedField {
            value: "v".into(),
            precedence: legacy_precedence(0).unwrap(),
        };
        let fields: SyncedFields = (0..200)
            .map(|i| (FieldKey::Custom(format!("{i:0>64}")), field.clone()))
            .collect();
        let table = "t".repeat(255);
        let parts = split_fields(&table, &fields);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 200);
        assert!(parts.iter().all(|p| p.len() <= FIELDS_PER_STATEMENT));
        let email = Email::parse("a@x.io").unwrap();
        for part in &parts {
            for insert in [false, true] {
                let (statement, params) = sync_statement(&table, &email, part, insert);
                assert!(statement.len() <= 8_192, "{} characters", statement.len());
                assert_eq!(statement.matches('?').count(), params.len());
            }
        }
    }

    /// Rule: the Rust guard (used when a failed statement's item is read back) is DynamoDB's condition:
    /// absent, no greater `k`, or — without `k` — an earlier millisecond.
    #[test]
    fn the_reread_guard_is_the_statement_condition() {
        let at = |ms: i64, ns: i64| Precedence {
            occurred_at: DateTime::from_timestamp_millis(ms).unwrap()
                + chrono::TimeDelta::nanoseconds(ns),
            accepted_at: DateTime::from_timestamp(0, 0).unwrap(),
            position: 0,
        };
        let new = |p| SyncedField {
            value: "x".into(),
            precedence: p,
        };
        let full = |p: &Precedence| field_value(&new(*p));
        let legacy = AttributeValue::M(HashMap::from([("t".to_string(), n(1_000))]));
        assert!(may_overwrite(None, &new(at(5, 0))));
        assert!(
            may_overwrite(Some(&full(&at(5, 0))), &new(at(5, 0))),
            "equal"
        );
        assert!(may_overwrite(Some(&full(&at(5, 0))), &new(at(5, 1))));
        assert!(!may_overwrite(Some(&full(&at(5, 1))), &new(at(5, 0))));
        assert!(!may_overwrite(Some(&legacy), &new(at(1_000, 999_999))));
        assert!(may_overwrite(Some(&legacy), &new(at(1_001, 0))));
        assert!(!may_overwrite(Some(&s("not a map")), &new(at(5, 0))));
    }

    /// Rule: a note is split into chunks under the item limit, a user never across two, and reads back.
    #[test]
    fn a_large_note_is_chunked_and_reads_back() {
        let p = legacy_precedence(1_800_000_000_000).unwrap();
        let intents: Vec<(Email, InFlight)> = (0..6_000)
            .map(|i| {
                (
                    Email::parse(&format!("user{i}@example.com")).unwrap(),
                    InFlight::from([(FieldKey::Name, p), (FieldKey::Custom("plan".into()), p)]),
                )
            })
            .collect();
        let chunks = note_chunks(&intents);
        assert!(chunks.len() > 1);
        let mut seen = 0;
        for c in &chunks {
            assert!(c.len() <= NOTE_CHUNK_BYTES);
            let note: HashMap<String, BTreeMap<String, String>> = serde_json::from_str(c).unwrap();
            for fields in note.values() {
                assert_eq!(parse_precedence_key(&fields["cf.plan"]), Some(p));
            }
            seen += note.len();
        }
        assert_eq!(seen, 6_000);
        assert!(note_chunks(&[]).is_empty());
    }
}
