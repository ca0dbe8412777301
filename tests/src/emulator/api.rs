//! The provider API itself: `POST /v2/{account_id}/subscribers[/batches]`.
//!
//! A request goes through these steps, and the first that refuses answers it:
//! 1. `User-Agent` present (400), Basic auth with the API key as username (401), account id (404);
//! 2. fault injection: the `force` queue, then `error_rate` (no quota used, nothing recorded);
//! 3. quota: one request of its kind from the current window (429 with `Retry-After` when spent);
//! 4. body: JSON (400), shape and every record, including `reject_emails` (422);
//! 5. conflicts: an email already held by another in-flight request (409);
//! 6. the configured latency, holding the emails in flight, then every record is recorded.
//!
//! **Quota:** every request that passes step 1 and is not answered by injection consumes one unit of its
//! kind, *including* those then refused with 400, 422 or 409 — like real providers, which count before
//! they read the body, and like Sluice, which reserves quota before it calls. Over-limit requests (429)
//! consume nothing more, and the window's usage never exceeds its limit. Dropped connections are decided
//! before step 1 and consume nothing either.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde_json::{Value, json};

use super::model::{ApiError, Kind, Subscriber};
use super::redact_email;
use super::state::{Injected, Shared};
use super::validate::{BodyError, parse_request};

/// The provider's over-limit message, word for word.
pub const RATE_LIMIT_MESSAGE: &str = "API rate limit exceeded. Please try again in an hour.";
/// Drip's refusal of a concurrent update of one subscriber (a 429 that spends no capacity).
pub const SAME_SUBSCRIBER_MESSAGE: &str = "Too many concurrent requests for the same subscriber";

/// A short description of what happened to a request, for the one log line the server writes for it.
#[derive(Clone)]
pub(crate) struct LogNote(pub(crate) String);

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/{account_id}/subscribers/batches", post(batch))
        .route("/v2/{account_id}/subscribers", post(individual).get(list))
        // 1,000 records with custom fields can pass axum's 2 MB default.
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
}

async fn batch(
    State(app): State<Arc<Shared>>,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&app, Kind::Batch, &account_id, &headers, &body).await
}

async fn individual(
    State(app): State<Arc<Shared>>,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&app, Kind::Individual, &account_id, &headers, &body).await
}

async fn handle(
    app: &Arc<Shared>,
    kind: Kind,
    account_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    // An accepted request spends its latency while holding its emails in flight (so overlapping requests
    // really overlap); any other answer spends it just before leaving.
    let mut latency = app.latency();
    let (mut response, remaining) =
        answer(app, kind, account_id, headers, body, &mut latency).await;
    if let Some(delay) = latency {
        tokio::time::sleep(delay).await;
    }
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(app.limit(kind)));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    response
}

/// `GET /v2/{account_id}/subscribers`: a read that counts against the individual limit like any other
/// request and changes nothing (the drain's half-open probe). Answers with one subscriber at most.
async fn list(
    State(app): State<Arc<Shared>>,
    Path(account_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let kind = Kind::Individual;
    let (mut response, remaining) = match admit(&app, kind, &account_id, &headers) {
        Err(refused) => *refused,
        Ok(remaining) => {
            let first: Vec<Subscriber> = app.latest().into_values().take(1).collect();
            let mut response = axum::Json(json!({ "subscribers": first })).into_response();
            response
                .extensions_mut()
                .insert(LogNote("listed subscribers".into()));
            (response, remaining)
        }
    };
    if let Some(delay) = app.latency() {
        tokio::time::sleep(delay).await;
    }
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(app.limit(kind)));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    response
}

/// Everything a request must pass before its body is read: User-Agent, credentials, account, injected
/// faults, quota. `Ok` with the quota left for its kind, or the refusal.
fn admit(
    app: &Arc<Shared>,
    kind: Kind,
    account_id: &str,
    headers: &HeaderMap,
) -> Result<u64, Box<(Response, u64)>> {
    let untouched = || app.remaining(kind, Utc::now());

    if headers
        .get(USER_AGENT)
        .is_none_or(|ua| ua.as_bytes().is_empty())
    {
        let error = ApiError::new("user_agent_error", None, "a User-Agent header is required");
        return Err(Box::new((
            reject(app, StatusCode::BAD_REQUEST, vec![error], "no User-Agent"),
            untouched(),
        )));
    }
    if !authorized(headers, &app.config.api_key) {
        let error = ApiError::new(
            "authentication_error",
            None,
            "use Basic authentication with your API key as the username",
        );
        return Err(Box::new((
            reject(
                app,
                StatusCode::UNAUTHORIZED,
                vec![error],
                "bad credentials",
            ),
            untouched(),
        )));
    }
    if account_id != app.config.account_id {
        let error = ApiError::new(
            "not_found_error",
            None,
            format!("account {account_id} not found"),
        );
        return Err(Box::new((
            reject(app, StatusCode::NOT_FOUND, vec![error], "unknown account"),
            untouched(),
        )));
    }

    if let Some(injected) = app.take_injected() {
        return Err(Box::new((injected_response(app, injected), untouched())));
    }

    app.try_consume(kind, Utc::now()).map_err(|over| {
        let mut response = rate_limited(app, "over limit");
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(over.retry_after_seconds));
        Box::new((response, 0))
    })
}

/// The response and the quota left for its kind.
async fn answer(
    app: &Arc<Shared>,
    kind: Kind,
    account_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    latency: &mut Option<Duration>,
) -> (Response, u64) {
    let remaining = match admit(app, kind, account_id, headers) {
        Ok(remaining) => remaining,
        Err(refused) => return *refused,
    };

    let records = match parse_request(kind, body, &app.rejected_emails()) {
        Ok(records) => records,
        Err(BodyError::Malformed(message)) => {
            let error = ApiError::new("json_error", None, message);
            return (
                reject(app, StatusCode::BAD_REQUEST, vec![error], "malformed JSON"),
                remaining,
            );
        }
        Err(BodyError::Invalid(errors)) => {
            let note = errors
                .iter()
                .map(|e| e.attribute.as_deref().unwrap_or(&e.code))
                .collect::<Vec<_>>()
                .join(", ");
            let response = reject(
                app,
                StatusCode::UNPROCESSABLE_ENTITY,
                errors,
                &format!("invalid: {note}"),
            );
            return (response, remaining);
        }
    };

    let unindexed = app.rejected_unindexed();
    if records
        .iter()
        .any(|r| unindexed.contains(&r.email.to_lowercase()))
    {
        // Some providers refuse a request without saying which record is at fault.
        let error = ApiError::new("invalid_request_error", None, "the request is invalid");
        return (
            reject(
                app,
                StatusCode::BAD_REQUEST,
                vec![error],
                "invalid (unindexed)",
            ),
            remaining,
        );
    }

    let Some(_in_flight) = app.begin(&records) else {
        // Drip's answer when another request is updating one of these subscribers; it does not consume
        // the account's capacity.
        app.count_rejection(StatusCode::TOO_MANY_REQUESTS);
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({ "errors": [ApiError::new(
                "too_many_requests",
                None,
                SAME_SUBSCRIBER_MESSAGE,
            )] })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(1));
        response
            .extensions_mut()
            .insert(LogNote("concurrent update".into()));
        app.refund(kind, Utc::now());
        return (response, remaining + 1);
    };
    if let Some(delay) = latency.take() {
        tokio::time::sleep(delay).await;
    }

    let request_id = format!("{:016x}", rand::random::<u64>());
    let note = format!(
        "accepted {} {} record(s), first {}",
        kind.as_str(),
        records.len(),
        records
            .first()
            .map(|r| redact_email(&r.email))
            .unwrap_or_default()
    );
    let merged = app.record(kind, &request_id, records);
    let (status, body) = match kind {
        Kind::Batch => (StatusCode::CREATED, json!({})),
        Kind::Individual => (StatusCode::OK, individual_body(merged)),
    };
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response.extensions_mut().insert(LogNote(note));
    (response, remaining)
}

/// The provider answers an individual upsert with the subscriber as it now stands.
fn individual_body(merged: Vec<Subscriber>) -> Value {
    json!({ "subscribers": merged })
}

/// `Authorization: Basic base64(api_key:anything)`; the password is ignored.
fn authorized(headers: &HeaderMap, api_key: &str) -> bool {
    let Some(encoded) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
    else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(credentials) = String::from_utf8(decoded) else {
        return false;
    };
    let username = credentials
        .split_once(':')
        .map_or(credentials.as_str(), |(user, _)| user);
    !api_key.is_empty() && username == api_key
}

/// A counted `{"errors":[…]}` answer.
fn reject(app: &Shared, status: StatusCode, errors: Vec<ApiError>, note: &str) -> Response {
    app.count_rejection(status);
    let mut response = (status, axum::Json(json!({ "errors": errors }))).into_response();
    response.extensions_mut().insert(LogNote(note.to_owned()));
    response
}

/// A counted 429 with the provider's message and a `Retry-After` to the next window.
fn rate_limited(app: &Shared, note: &str) -> Response {
    app.count_rejection(StatusCode::TOO_MANY_REQUESTS);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({ "message": RATE_LIMIT_MESSAGE })),
    )
        .into_response();
    let retry_after = app.retry_after(Utc::now());
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after));
    response.extensions_mut().insert(LogNote(note.to_owned()));
    response
}

fn injected_response(app: &Shared, injected: Injected) -> Response {
    let (status, how) = match injected {
        Injected::Forced(status) => (status, "forced"),
        Injected::Random(status) => (status, "random"),
    };
    let note = format!("{how} {}", status.as_u16());
    if status == StatusCode::TOO_MANY_REQUESTS {
        return rate_limited(app, &note);
    }
    if status.is_success() {
        // A forced success records nothing: it plays a provider that silently lost the write.
        let mut response = if status == StatusCode::NO_CONTENT {
            status.into_response()
        } else {
            (status, axum::Json(json!({}))).into_response()
        };
        response.extensions_mut().insert(LogNote(note));
        return response;
    }
    let error = ApiError::new(
        "injected_error",
        None,
        format!("{note} (emulator fault injection)"),
    );
    reject(app, status, vec![error], &note)
}
