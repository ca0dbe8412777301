//! The ingest API: `POST /v1/changes` and `GET /v1/requests/{request_id}` as one axum [`Router`]
//! ([`Ingest::api`]). The same router answers in both places it runs: `lambda_http::run` serves it as the
//! Lambda behind API Gateway or a function URL (`main.rs`), and `axum::serve` serves it as a plain local
//! HTTP server (`sluice local serve`), so a local run has the deployed routes, handler code and answers.
//! Business rules live in `sluice::ingest`; this file only routes, authenticates and renders.
//!
//! Routes, optionally behind one stage segment (`/live/v1/changes`, REST API) or `/lambda-url/<function>`
//! (the local URL of `cargo lambda watch`, kept by `sluice local serve`). Every answer is an HTTP response,
//! `202`/`200` JSON or `application/problem+json`: never a runtime error (which API Gateway would turn
//! into an opaque 502), never a plain-text rejection from the framework.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER,
};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use serde::Serialize;
use sluice::adapters::dynamo_ingest::DynamoIngestStore;
use sluice::adapters::sqs::{self, SqsChangeSink};
use sluice::config::IngestConfig;
use sluice::ingest::{
    ApiKey, ChangesRequest, IngestError, IngestService, MAX_BODY_BYTES, PROBLEM_CONTENT_TYPE,
};
use sluice::ports::{ChangeSink, Clock, IdempotencyStore, RequestStore, SystemClock};
use tower::ServiceExt;
use tower_http::normalize_path::NormalizePath;

/// The `Idempotency-Key` request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a replayed answer (same `Idempotency-Key` and body as an earlier request).
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// The API key header, checked here when the function has a key (`INGEST_API_KEY`, or the secret behind
/// `INGEST_API_KEY_SECRET_ARN` — the template's default HTTP API); behind the REST API, API Gateway checks it.
pub const API_KEY: &str = "x-api-key";

/// The ingest function on AWS (or LocalStack, through `AWS_ENDPOINT_URL`).
pub type AwsIngest = Ingest<SqsChangeSink, DynamoIngestStore, DynamoIngestStore>;

/// The handler's state: the service, and the API key to require (if any).
#[derive(Debug, Clone)]
pub struct Ingest<S, I, R, C = SystemClock> {
    service: IngestService<S, I, R, C>,
    api_key: Option<ApiKey>,
}

impl AwsIngest {
    /// Builds the SDK-backed ingest from one shared SDK configuration (clients are built once, at cold start).
    pub fn aws(config: &IngestConfig, aws: &aws_config::SdkConfig) -> Self {
        let store = DynamoIngestStore::new(aws_sdk_dynamodb::Client::new(aws), &config.table_name);
        let sink = SqsChangeSink::with_lanes(sqs::ingest_client(aws), config.lanes.clone());
        Self::new(
            IngestService::new(sink, store.clone(), store),
            config.ingest_api_key.as_deref().map(ApiKey::new),
        )
    }
}

/// The ingest API as one service: the [`Router`], with a trailing slash trimmed before routing
/// (`/v1/changes/` is `/v1/changes`). `lambda_http::run` and `axum::serve` both take it as is.
pub type Api = NormalizePath<Router>;

/// The routes, relative to where the API is mounted.
const ROUTES: &str = "POST /v1/changes and GET /v1/requests/{request_id}";

impl<S, I, R, C> Ingest<S, I, R, C>
where
    S: ChangeSink + Clone + 'static,
    I: IdempotencyStore + Clone + 'static,
    R: RequestStore + Clone + 'static,
    C: Clock + Clone + 'static,
{
    pub fn new(service: IngestService<S, I, R, C>, api_key: Option<ApiKey>) -> Self {
        Self { service, api_key }
    }

    pub fn service(&self) -> &IngestService<S, I, R, C> {
        &self.service
    }

    /// The API: the routes at the root, behind one stage segment (API Gateway REST stages, named HTTP
    /// API stages) and behind `/lambda-url/<function>` (the local URL). The API key (when configured) is
    /// checked before routing, so an unauthenticated caller learns nothing about the routes.
    pub fn api(self) -> Api {
        let v1 = Router::new()
            .route(
                "/v1/changes",
                post(submit::<S, I, R, C>).fallback(method_not_allowed("POST")),
            )
            .route(
                "/v1/requests/{request_id}",
                get(request_status::<S, I, R, C>).fallback(method_not_allowed("GET")),
            );
        let state = Arc::new(self);
        let router = Router::new()
            .merge(v1.clone())
            .nest("/lambda-url/{function}", v1.clone())
            .nest("/{stage}", v1)
            .fallback(not_found)
            // One byte over the service's own limit: the service answers a body just over it (413 with
            // the size); a larger one stops being read here, and is answered with the same problem.
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                authenticate::<S, I, R, C>,
            ))
            .layer(middleware::from_fn(log_request))
            .with_state(state);
        NormalizePath::trim_trailing_slash(router)
    }

    /// Answers one Lambda HTTP event exactly as the deployed function does: through [`Ingest::api`], then
    /// `lambda_http`'s own response conversion (text bodies for JSON and problem+json). For tests and
    /// benchmarks; `main.rs` hands the API to `lambda_http::run` instead.
    pub async fn handle(
        &self,
        req: lambda_http::Request,
    ) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
        let response = self.clone().api().oneshot(req).await?;
        Ok(lambda_http::IntoResponse::into_response(response).await)
    }
}

type Shared<S, I, R, C> = State<Arc<Ingest<S, I, R, C>>>;

/// Checks `x-api-key` when the function has one configured (locally and behind the HTTP API; behind the
/// REST API, API Gateway does it).
async fn authenticate<S, I, R, C>(
    State(ingest): Shared<S, I, R, C>,
    req: Request,
    next: Next,
) -> Response
where
    S: ChangeSink,
    I: IdempotencyStore,
    R: RequestStore,
    C: Clock,
{
    if let Some(key) = &ingest.api_key
        && let Err(e) = key.verify(req.headers().get(API_KEY).map(HeaderValue::as_bytes))
    {
        return problem_response(&e);
    }
    next.run(req).await
}

/// One log line per request, with the matched route, the status and the latency.
async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = next.run(req).await;
    tracing::info!(
        %method,
        route = route.as_deref().unwrap_or("(none)"),
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "ingest request"
    );
    response
}

/// `POST /v1/changes`.
async fn submit<S, I, R, C>(
    State(ingest): Shared<S, I, R, C>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response
where
    S: ChangeSink,
    I: IdempotencyStore,
    R: RequestStore,
    C: Clock,
{
    let result = match body {
        Ok(body) => post_changes(&ingest.service, &headers, &body).await,
        Err(e) => Err(unreadable_body(&e, &headers)),
    };
    result.unwrap_or_else(|e| failure(&e))
}

/// The path's `{request_id}` (a stage or function segment in front of the route is ignored).
#[derive(Debug, serde::Deserialize)]
struct RequestPath {
    request_id: String,
}

/// `GET /v1/requests/{request_id}`.
async fn request_status<S, I, R, C>(
    State(ingest): Shared<S, I, R, C>,
    id: Result<Path<RequestPath>, PathRejection>,
) -> Response
where
    S: ChangeSink,
    I: IdempotencyStore,
    R: RequestStore,
    C: Clock,
{
    // An id that does not even decode (percent-encoded bytes that are not UTF-8) names no request.
    let Ok(Path(RequestPath { request_id: id })) = id else {
        return failure(&IngestError::NotFound(
            "No request with that id is known.".into(),
        ));
    };
    match ingest.service.request_status(&id).await {
        Ok(status) => json_response(StatusCode::OK, &status),
        Err(e) => failure(&e),
    }
}

async fn not_found(req: Request) -> Response {
    failure(&IngestError::NotFound(format!(
        "No resource at '{}'. The API has {ROUTES}.",
        truncate(req.uri().path(), 100)
    )))
}

/// A route's answer to any other method: 405 with `Allow`, as problem+json.
fn method_not_allowed<St: Clone + Send + Sync + 'static>(allow: &'static str) -> MethodRouter<St> {
    MethodRouter::new()
        .fallback(move || async move { failure(&IngestError::MethodNotAllowed { allow }) })
}

async fn post_changes<S, I, R, C>(
    service: &IngestService<S, I, R, C>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, IngestError>
where
    S: ChangeSink,
    I: IdempotencyStore,
    R: RequestStore,
    C: Clock,
{
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not ASCII)"));
    let mut keys = headers.get_all(IDEMPOTENCY_KEY).iter();
    let idempotency_key = match (keys.next(), keys.next()) {
        (None, _) => None,
        (Some(key), None) => Some(key.to_str().map_err(|_| {
            IngestError::BadIdempotencyKey(
                "Idempotency-Key must contain only printable ASCII characters.".into(),
            )
        })?),
        (Some(_), Some(_)) => {
            return Err(IngestError::BadIdempotencyKey(
                "Send Idempotency-Key once.".into(),
            ));
        }
    };
    let submitted = service
        .submit(ChangesRequest {
            content_type,
            body,
            idempotency_key,
        })
        .await?;
    let mut response = json_response(StatusCode::ACCEPTED, &submitted.answer);
    if submitted.replayed {
        response.headers_mut().insert(
            HeaderName::from_static(IDEMPOTENT_REPLAYED),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// A body the server stopped reading: over the limit (413, as the service answers one), or cut off.
fn unreadable_body(e: &BytesRejection, headers: &HeaderMap) -> IngestError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let got = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(MAX_BODY_BYTES + 1);
        IngestError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
            got,
        }
    } else {
        IngestError::Malformed(format!("The body could not be read: {e}."))
    }
}

/// The problem answer for `e`, logged with its whole chain when it is the server's fault.
fn failure(e: &IngestError) -> Response {
    if e.status() >= 500 {
        tracing::error!(status = e.status(), error = %chain(e), "ingest request failed");
    }
    problem_response(e)
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    // Plain data with string keys: serialising cannot fail.
    let json = serde_json::to_string(body).unwrap_or_default();
    response(status, "application/json", json)
}

/// The `application/problem+json` answer for an error, with `Allow` / `Retry-After` where they apply.
pub fn problem_response(e: &IngestError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let json = serde_json::to_string(&e.problem()).unwrap_or_default();
    let mut r = response(status, PROBLEM_CONTENT_TYPE, json);
    if let IngestError::MethodNotAllowed { allow } = e {
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(secs) = e.retry_after_seconds() {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The error and its sources, for logs.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max).chain(std::iter::once('…')).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
