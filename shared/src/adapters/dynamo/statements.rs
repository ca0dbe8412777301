//! The sync state's PartiQL: one `INSERT` or guarded `UPDATE` per user (part), run in
//! BatchExecuteStatements of 25, 8 in flight, with one `StatementResult` per statement.

use std::collections::VecDeque;

use aws_sdk_dynamodb::types::{
    AttributeValue, BatchStatementErrorCodeEnum, BatchStatementRequest, BatchStatementResponse,
    ReturnValuesOnConditionCheckFailure,
};
use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::DynamoState;
use super::item::{
    FIELD_PREFIX, Item, field_attribute, field_value, n, precedence_key, s, user_key,
};
use crate::adapters::sdk_error::port_error;
use crate::domain::{Email, FieldKey};
use crate::ports::{PortError, PortResult, SyncedField, SyncedFields};

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
pub(super) const FIELDS_PER_STATEMENT: usize = 32;

/// Some of one user's fields, few enough for one statement.
pub(super) type FieldPart<'a> = Vec<(&'a FieldKey, &'a SyncedField)>;

/// How one statement of a batch ended.
pub(super) enum StatementResult {
    Written,
    /// The condition failed; the item as stored, when DynamoDB returned it.
    ConditionFailed(Option<Item>),
    /// `INSERT` of an item that exists.
    Duplicate,
    /// Throttled or an internal error: the same statement again after a pause.
    Retry,
}

/// A statement's length grows by about this much per field (set, condition, with the name four times).
fn field_cost(key: &FieldKey) -> usize {
    4 * (FIELD_PREFIX.len() + key.storage_key().len() + 2) + 64
}

/// Splits a user's fields into parts that each fit one statement.
pub(super) fn split_fields<'a>(table: &str, fields: &'a SyncedFields) -> VecDeque<FieldPart<'a>> {
    let mut parts = VecDeque::new();
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
pub(super) fn sync_statement(
    table: &str,
    email: &Email,
    fields: &[(&FieldKey, &SyncedField)],
    insert: bool,
) -> (String, Vec<AttributeValue>) {
    let now = s(Utc::now().to_rfc3339());
    if insert {
        let mut tuple = vec!["'pk': ?".to_string(), "'updated_at': ?".to_string()];
        let mut params = vec![s(user_key(email)), now];
        for (key, field) in fields {
            tuple.push(format!("'{}': ?", field_attribute(key)));
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
        let name = field_attribute(key);
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

/// One statement's answer: written, or why not.
fn statement_result(response: &BatchStatementResponse) -> PortResult<StatementResult> {
    let Some(error) = response.error() else {
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
}

impl DynamoState {
    /// Runs statements in BatchExecuteStatements of 25, 8 in flight; one result per statement, in order.
    pub(super) async fn execute_statements(
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
            .map_err(|e| port_error("recording sync state", e))?;
        let responses = out.responses();
        if responses.len() != count {
            return Err(PortError::transient(
                "recording sync state",
                anyhow::anyhow!("{} answers to {count} statements", responses.len()),
            ));
        }
        responses.iter().map(statement_result).collect()
    }
}
