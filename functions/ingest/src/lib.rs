//! The ingest handler: turns an API Gateway (REST or HTTP API) or function-URL event into a call on
//! [`IngestService`], and its result into a response — `202`/`200` JSON, or `application/problem+json`.
//! Business rules live in `sluice::ingest`; this file only routes, authenticates and renders.
//!
//! Routes (after any stage or `/lambda-url/<function>` prefix): `POST /v1/changes`,
//! `GET /v1/requests/{request_id}`. Every answer is `Ok` to the Lambda runtime: a failure is an HTTP
//! status, never a runtime error (which API Gateway would turn into an opaque 502).

use std::time::Instant;

use lambda_http::http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER,
};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use serde::Serialize;
use sluice::adapters::dynamo_ingest::DynamoIngestStore;
use sluice::adapters::sqs_sink::SqsChangeSink;
use sluice::config::IngestConfig;
use sluice::ingest::{
    ApiKey, ChangeSink, ChangesRequest, IdempotencyStore, IngestError, IngestService,
    PROBLEM_CONTENT_TYPE, RequestStore,
};
use sluice::ports::{Clock, SystemClock};

/// The `Idempotency-Key` request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a replayed answer (same `Idempotency-Key` and body as an earlier request).
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// The API key header (checked here only when `INGEST_API_KEY` is set; API Gateway checks it in AWS).
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
        let sink = SqsChangeSink::new(aws_sdk_sqs::Client::new(aws), &config.queue_url);
        Self::new(
            IngestService::new(sink, store.clone(), store),
            config.ingest_api_key.as_deref().map(ApiKey::new),
        )
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Changes,
    Request(&'a str),
}

impl<'a> Route<'a> {
    /// Routes on the path's suffix, so `/v1/changes`, `/Prod/v1/changes` (REST API stage) and
    /// `/lambda-url/ingest/v1/changes` (`cargo lambda watch`) are the same resource.
    pub fn from_path(path: &'a str) -> Option<Self> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        (0..=segments.len().min(2)).find_map(|skip| match segments[skip..] {
            ["v1", "changes"] => Some(Route::Changes),
            ["v1", "requests", id] => Some(Route::Request(id)),
            _ => None,
        })
    }
}

impl<S, I, R, C> Ingest<S, I, R, C>
where
    S: ChangeSink,
    I: IdempotencyStore,
    R: RequestStore,
    C: Clock,
{
    pub fn new(service: IngestService<S, I, R, C>, api_key: Option<ApiKey>) -> Self {
        Self { service, api_key }
    }

    pub fn service(&self) -> &IngestService<S, I, R, C> {
        &self.service
    }

    /// The Lambda entry point. Never fails: every outcome is an HTTP response.
    pub async fn handle(&self, req: Request) -> Result<Response<Body>, Error> {
        Ok(self.respond(&req).await)
    }

    /// Answers one request, and logs one line about it.
    pub async fn respond(&self, req: &Request) -> Response<Body> {
        let started = Instant::now();
        let route = Route::from_path(req.uri().path());
        let response = match self.route(req, route).await {
            Ok(response) => response,
            Err(e) => {
                if e.status() >= 500 {
                    tracing::error!(status = e.status(), error = %chain(&e), "ingest request failed");
                }
                problem_response(&e)
            }
        };
        tracing::info!(
            method = %req.method(),
            route = ?route,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "ingest request"
        );
        response
    }

    async fn route(
        &self,
        req: &Request,
        route: Option<Route<'_>>,
    ) -> Result<Response<Body>, IngestError> {
        if let Some(key) = &self.api_key {
            key.verify(req.headers().get(API_KEY).map(HeaderValue::as_bytes))?;
        }
        match (route, req.method()) {
            (Some(Route::Changes), &Method::POST) => self.post_changes(req).await,
            (Some(Route::Request(id)), &Method::GET) => {
                let status = self.service.request_status(id).await?;
                Ok(json_response(StatusCode::OK, &status))
            }
            (Some(Route::Changes), _) => Err(IngestError::MethodNotAllowed { allow: "POST" }),
            (Some(Route::Request(_)), _) => Err(IngestError::MethodNotAllowed { allow: "GET" }),
            (None, _) => Err(IngestError::NotFound(format!(
                "No resource at '{}'. The API has POST /v1/changes and GET /v1/requests/{{request_id}}.",
                truncate(req.uri().path(), 100)
            ))),
        }
    }

    async fn post_changes(&self, req: &Request) -> Result<Response<Body>, IngestError> {
        let headers = req.headers();
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
        let submitted = self
            .service
            .submit(ChangesRequest {
                content_type,
                body: req.body().as_ref(),
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
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    // Plain data with string keys: serialising cannot fail.
    let json = serde_json::to_string(body).unwrap_or_default();
    response(status, "application/json", json)
}

/// The `application/problem+json` answer for an error, with `Allow` / `Retry-After` where they apply.
pub fn problem_response(e: &IngestError) -> Response<Body> {
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

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::Text(body));
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
