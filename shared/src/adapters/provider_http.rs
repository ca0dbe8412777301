//! The provider over HTTP (the Drip-compatible contract in DESIGN.md): Basic auth with the API key as
//! user name, a User-Agent, JSON bodies; statuses mapped to [`ProviderError`] so the drain can react.

use std::time::Duration;

use reqwest::{Client, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::config::Config;
use crate::domain::Subscriber;
use crate::ports::{CallInfo, Provider, ProviderError, Reply};

const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

/// The provider's HTTP API.
#[derive(Clone)]
pub struct HttpProvider {
    client: Client,
    batch_url: String,
    individual_url: String,
    api_key: String,
}

impl std::fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvider")
            .field("batch_url", &self.batch_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    attribute: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl HttpProvider {
    pub fn new(
        base_url: &str,
        account_id: &str,
        api_key: String,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = Client::builder()
            .user_agent(USER_AGENT)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(16)
            .build()?;
        let base = base_url.trim_end_matches('/');
        Ok(Self {
            client,
            batch_url: format!("{base}/v2/{account_id}/subscribers/batches"),
            individual_url: format!("{base}/v2/{account_id}/subscribers"),
            api_key,
        })
    }

    /// Builds the provider from the config and its API key (read once: [`super::secrets::provider_api_key`]).
    pub fn from_config(config: &Config, key: String) -> anyhow::Result<Self> {
        Ok(Self::new(
            &config.provider_base_url,
            &config.provider_account_id,
            key,
            config.provider_timeout,
        )?)
    }

    async fn post(&self, url: &str, body: serde_json::Value) -> Reply {
        let request = self
            .client
            .post(url)
            .basic_auth(&self.api_key, Some(""))
            .header(header::ACCEPT, "application/json")
            .json(&body);
        call(request).await
    }
}

/// Sends one request and maps the answer, keeping what the provider said about it.
async fn call(request: reqwest::RequestBuilder) -> Reply {
    match request.send().await {
        Ok(response) => {
            let info = call_info(&response);
            Reply {
                result: map_response(response).await,
                info,
            }
        }
        Err(e) => Reply::err(ProviderError::transient(format!("{e}"))),
    }
}

fn call_info(response: &Response) -> CallInfo {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let number = |name: &str| header(name).and_then(|v| v.trim().parse().ok());
    CallInfo {
        status: Some(response.status().as_u16()),
        request_id: header("x-request-id"),
        rate_limit: number("x-ratelimit-limit"),
        rate_remaining: number("x-ratelimit-remaining"),
    }
}

/// Drip's 429 for another client's concurrent update of the same subscriber (not the account's limit).
fn is_same_subscriber_refusal(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    lower.contains("concurrent") && lower.contains("subscriber")
}

/// Maps a provider answer to the drain's categories (README, "What each provider answer does").
async fn map_response(response: Response) -> Result<(), ProviderError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let short = || crate::domain::truncate(&text, 200);
    match status {
        StatusCode::TOO_MANY_REQUESTS if is_same_subscriber_refusal(&text) => {
            Err(ProviderError::SubscriberBusy { retry_after })
        }
        StatusCode::TOO_MANY_REQUESTS => Err(ProviderError::RateLimited { retry_after }),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => Err(rejection(status, &text)),
        StatusCode::PAYLOAD_TOO_LARGE => Err(ProviderError::TooLarge(format!(
            "HTTP {status}: {}",
            short()
        ))),
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::CONFLICT =>
        {
            Err(ProviderError::Transient {
                detail: format!("HTTP {s}: {}", short()),
                retry_after,
            })
        }
        s => Err(ProviderError::Misconfigured(format!(
            "HTTP {s}: {}",
            short()
        ))),
    }
}

/// A 422/400: which records it names (`subscribers[i]…`, every one of them), and the provider's words.
fn rejection(status: StatusCode, text: &str) -> ProviderError {
    let errors = serde_json::from_str::<ErrorBody>(text)
        .map(|b| b.errors)
        .unwrap_or_default();
    let mut indexes: Vec<usize> = errors
        .iter()
        .filter_map(|e| e.attribute.as_deref().and_then(record_index))
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    let detail = if errors.is_empty() {
        crate::domain::truncate(text, 500)
    } else {
        errors
            .iter()
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e.code.as_deref().unwrap_or("invalid"),
                    e.attribute.as_deref().unwrap_or("?"),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    ProviderError::Rejected {
        indexes,
        detail: format!("{}: {detail}", status.as_u16()),
    }
}

/// `subscribers[3].email` → 3.
fn record_index(attribute: &str) -> Option<usize> {
    let rest = attribute.split_once('[')?.1;
    rest.split_once(']')?.0.parse().ok()
}

impl Provider for HttpProvider {
    async fn send_batch(&self, records: &[Subscriber]) -> Reply {
        self.post(
            &self.batch_url,
            json!({"batches": [{"subscribers": records}]}),
        )
        .await
    }

    async fn send_individual(&self, record: &Subscriber) -> Reply {
        self.post(&self.individual_url, json!({"subscribers": [record]}))
            .await
    }

    /// `GET …/subscribers?per_page=1`: lists one subscriber, changes nothing.
    async fn probe(&self) -> Reply {
        let request = self
            .client
            .get(format!("{}?per_page=1", self.individual_url))
            .basic_auth(&self.api_key, Some(""))
            .header(header::ACCEPT, "application/json");
        call(request).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wiremock::matchers::{header_exists, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn sub(email: &str) -> Subscriber {
        Subscriber {
            email: email.into(),
            name: Some("N".into()),
            ..Subscriber::default()
        }
    }

    async fn provider(server: &MockServer) -> HttpProvider {
        HttpProvider::new(
            &server.uri(),
            "42",
            "key".into(),
            Duration::from_millis(300),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn sends_the_documented_wire_shape() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/42/subscribers/batches"))
            .and(header_exists("authorization"))
            .and(header_exists("user-agent"))
            .respond_with(ResponseTemplate::new(201).set_body_string("{}"))
            .expect(1)
            .mount(&server)
            .await;
        provider(&server)
            .await
            .send_batch(&[sub("a@x.io"), sub("b@x.io")])
            .await
            .result
            .unwrap();
        let req = &server.received_requests().await.unwrap()[0];
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["batches"][0]["subscribers"][1]["email"], "b@x.io");
        assert!(
            body["batches"][0]["subscribers"][0]
                .get("time_zone")
                .is_none()
        );
        // Basic auth: the API key as user name, empty password.
        assert_eq!(req.headers["authorization"], "Basic a2V5Og==");
    }

    /// Rule: every 4xx class has one defined outcome (README, "What each provider answer does").
    #[tokio::test]
    async fn statuses_map_to_what_the_drain_does() {
        let server = MockServer::start().await;
        let cases = [
            (
                429,
                r#"{"message":"API rate limit exceeded. Please try again in an hour."}"#,
            ),
            (
                429,
                r#"{"errors":[{"code":"too_many_requests","message":"Too many concurrent requests for the same subscriber"}]}"#,
            ),
            (
                422,
                r#"{"errors":[{"code":"invalid","attribute":"subscribers[3].email","message":"bad"},{"code":"invalid","attribute":"subscribers[7].time_zone","message":"bad"}]}"#,
            ),
            (
                400,
                r#"{"errors":[{"code":"json_error","message":"invalid"}]}"#,
            ),
            (413, ""),
            (503, ""),
            (409, ""),
            (401, ""),
            (404, ""),
        ];
        let p = provider(&server).await;
        let mut got = Vec::new();
        for (status, body) in cases {
            server.reset().await;
            Mock::given(method("POST"))
                .respond_with(
                    ResponseTemplate::new(status)
                        .set_body_string(body)
                        .insert_header("Retry-After", "120"),
                )
                .mount(&server)
                .await;
            got.push(p.send_individual(&sub("a@x.io")).await.result.unwrap_err());
        }
        let after = Some(Duration::from_secs(120));
        assert_eq!(got[0], ProviderError::RateLimited { retry_after: after });
        assert_eq!(got[1], ProviderError::SubscriberBusy { retry_after: after });
        assert!(
            matches!(&got[2], ProviderError::Rejected { indexes, detail } if indexes == &[3, 7] && detail.contains("subscribers[3].email")),
            "{:?}",
            got[2]
        );
        assert!(
            matches!(&got[3], ProviderError::Rejected { indexes, .. } if indexes.is_empty()),
            "{:?}",
            got[3]
        );
        assert!(matches!(got[4], ProviderError::TooLarge(_)));
        assert!(
            matches!(&got[5], ProviderError::Transient { retry_after, .. } if *retry_after == after)
        );
        assert!(matches!(got[6], ProviderError::Transient { .. }));
        assert!(matches!(got[7], ProviderError::Misconfigured(_)));
        assert!(matches!(got[8], ProviderError::Misconfigured(_)));
    }

    /// Rule: every provider call is on the record — status, request id and rate-limit headers are kept.
    #[tokio::test]
    async fn the_answer_s_headers_are_kept_and_the_probe_is_a_read() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v2/42/subscribers"))
            .and(wiremock::matchers::query_param("per_page", "1"))
            .and(header_exists("authorization"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(r#"{"subscribers":[]}"#)
                    .insert_header("x-request-id", "req-9")
                    .insert_header("x-ratelimit-limit", "3600")
                    .insert_header("x-ratelimit-remaining", "3517"),
            )
            .expect(1)
            .mount(&server)
            .await;
        let reply = provider(&server).await.probe().await;
        assert_eq!(reply.result, Ok(()));
        assert_eq!(
            reply.info,
            CallInfo {
                status: Some(200),
                request_id: Some("req-9".into()),
                rate_limit: Some(3_600),
                rate_remaining: Some(3_517),
            }
        );
    }

    #[tokio::test]
    async fn a_timeout_is_transient() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(2)))
            .mount(&server)
            .await;
        let err = provider(&server)
            .await
            .send_individual(&sub("a@x.io"))
            .await
            .result
            .unwrap_err();
        assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    }
}
