//! `/_emulator/*`: what tests, scripts and the demo use to inspect and steer the emulator over HTTP. Fault
//! injection never applies here.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::model::{ApiError, Faults};
use super::state::Shared;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_emulator/health", get(health))
        .route("/_emulator/received", get(received))
        .route("/_emulator/latest", get(latest))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/faults", get(faults).post(set_faults))
        .route("/_emulator/reset", post(reset))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

#[derive(Deserialize)]
struct ReceivedFilter {
    email: Option<String>,
}

async fn received(
    State(app): State<Arc<Shared>>,
    Query(filter): Query<ReceivedFilter>,
) -> Response {
    Json(app.received(filter.email.as_deref())).into_response()
}

async fn latest(State(app): State<Arc<Shared>>) -> Response {
    Json(app.latest()).into_response()
}

async fn stats(State(app): State<Arc<Shared>>) -> Response {
    Json(app.stats(Utc::now())).into_response()
}

async fn faults(State(app): State<Arc<Shared>>) -> Response {
    Json(app.faults()).into_response()
}

/// Replaces the whole fault configuration (absent fields mean "no such fault") and echoes it.
async fn set_faults(State(app): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults = match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => faults,
        Err(e) => return bad_request(format!("faults body: {e}")),
    };
    if let Err(problem) = faults.validate() {
        return bad_request(problem);
    }
    app.set_faults(faults.clone());
    Json(faults).into_response()
}

async fn reset(State(app): State<Arc<Shared>>) -> Response {
    app.reset();
    Json(json!({ "reset": true })).into_response()
}

fn bad_request(message: String) -> Response {
    let errors = [ApiError::new("invalid_request", None, message)];
    (StatusCode::BAD_REQUEST, Json(json!({ "errors": errors }))).into_response()
}

/// Anything unrouted: a counted 404 in the provider's error shape.
pub(crate) async fn not_found(
    State(app): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
) -> Response {
    app.count_rejection(StatusCode::NOT_FOUND);
    let errors = [ApiError::new(
        "not_found_error",
        None,
        format!("no route for {method} {}", uri.path()),
    )];
    (StatusCode::NOT_FOUND, Json(json!({ "errors": errors }))).into_response()
}
