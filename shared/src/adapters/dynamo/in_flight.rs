//! The sync-state port's in-flight notes: what a run may be sending, kept until its sync state is recorded.
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

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::DynamoState;
use super::batch::CALLS_IN_FLIGHT;
use super::item::{Item, NOTE_INDEX_KEY, n, note_key, parse_precedence_key, precedence_key, s};
use crate::adapters::sdk_error::port_error;
use crate::domain::{Email, FieldKey};
use crate::ports::{InFlight, PortError, PortResult};

/// The index's attribute for a note is this prefix and the note's name.
const NOTE_PREFIX: &str = "note#";
/// Bytes of entries per in-flight note chunk: well under DynamoDB's 400 KB item limit.
pub(super) const NOTE_CHUNK_BYTES: usize = 300_000;
/// How long a note guards (its items' TTL, and when the index drops it): a day is far longer than any
/// message of the change can stay unsettled without the drain settling it (visibility timeout, backoff);
/// by then the sync state guards the field.
const NOTE_LIFETIME_SECS: i64 = 86_400;

/// A run's in-flight note as chunk bodies: JSON objects `{email: {field storage key: precedence key}}`,
/// each at most `NOTE_CHUNK_BYTES` (300 KB; a user is never split across chunks). Public so the simulator
/// meters the bytes the adapter really writes.
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
fn listed_notes(index: Option<&Item>) -> Vec<(String, i64, usize)> {
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

/// Adds one note chunk's fields of the `wanted` users to `out`, the newest precedence of each field kept.
fn merge_chunk(
    item: &Item,
    wanted: &HashMap<&str, &Email>,
    out: &mut HashMap<Email, InFlight>,
) -> PortResult<()> {
    let Some(entries) = item.get("entries").and_then(|v| v.as_s().ok()) else {
        return Ok(());
    };
    let note: HashMap<String, BTreeMap<String, String>> = serde_json::from_str(entries)
        .map_err(|e| PortError::permanent("reading an in-flight note", e))?;
    for (email, fields) in note {
        let Some(&email) = wanted.get(email.as_str()) else {
            continue;
        };
        let user = out.entry(email.clone()).or_default();
        for (key, p) in fields {
            let (Some(key), Some(p)) = (FieldKey::from_storage_key(&key), parse_precedence_key(&p))
            else {
                continue;
            };
            let newest = user.entry(key).or_insert(p);
            *newest = (*newest).max(p);
        }
    }
    Ok(())
}

impl DynamoState {
    /// The notes still listed and less than a day old, `(name, chunks)`; older ones are unlisted on the way.
    async fn live_notes(&self) -> PortResult<Vec<(String, usize)>> {
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
        Ok(live
            .into_iter()
            .map(|(name, _, chunks)| (name, chunks))
            .collect())
    }

    /// `SyncStateStore::in_flight`: what the listed notes say of these users.
    pub(super) async fn read_in_flight(
        &self,
        emails: &[Email],
    ) -> PortResult<HashMap<Email, InFlight>> {
        let live = self.live_notes().await?;
        let mut out: HashMap<Email, InFlight> = HashMap::new();
        if live.is_empty() || emails.is_empty() {
            return Ok(out);
        }
        let keys: Vec<String> = live
            .iter()
            .flat_map(|(name, chunks)| (0..*chunks).map(move |i| note_key(name, i)))
            .collect();
        // Chunks are up to 300 KB: 25 per call keeps an answer under BatchGetItem's 16 MB.
        let items = self.read_items(keys, 25, "reading in-flight notes").await?;
        let wanted: HashMap<&str, &Email> = emails.iter().map(|e| (e.as_str(), e)).collect();
        for item in items.values() {
            merge_chunk(item, &wanted, &mut out)?;
        }
        Ok(out)
    }

    /// `SyncStateStore::intend`: the run's note, written and listed.
    pub(super) async fn write_intents(
        &self,
        holder: &str,
        intents: &[(Email, InFlight)],
    ) -> PortResult<()> {
        let chunks = note_chunks(intents);
        if chunks.is_empty() {
            return Ok(());
        }
        self.write_note(holder, &chunks, None).await
    }

    /// `SyncStateStore::resolve`: the run's note unlisted, or replaced by its open remainder.
    pub(super) async fn resolve_note(
        &self,
        holder: &str,
        open: &[(Email, InFlight)],
    ) -> PortResult<()> {
        let chunks = note_chunks(open);
        if chunks.is_empty() {
            return self.unlist_notes(&[holder.to_string()]).await;
        }
        self.write_note(&format!("{holder}-open"), &chunks, Some(holder))
            .await
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
            .map(|c| self.write_batch(c.to_vec(), "recording in-flight fields"))
            .collect();
        stream::iter(calls)
            .buffer_unordered(CALLS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        self.list_note(name, now, chunks.len(), replaces).await
    }

    /// Lists a written note in the index, unlisting `replaces` in the same update.
    async fn list_note(
        &self,
        name: &str,
        now: i64,
        chunks: usize,
        replaces: Option<&str>,
    ) -> PortResult<()> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(NOTE_INDEX_KEY))
            .expression_attribute_names("#note", format!("{NOTE_PREFIX}{name}"))
            .expression_attribute_values(":note", s(format!("{now} {chunks}")))
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
            .map_err(|e| port_error("listing an in-flight note", e))?;
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
            .map_err(|e| port_error("unlisting in-flight notes", e))?;
        Ok(())
    }
}
