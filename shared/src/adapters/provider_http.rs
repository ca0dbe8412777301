//! The provider over HTTP (the Drip-compatible contract in DESIGN.md): Basic auth with the API key as
//! user name, a User-Agent, JSON bodies; statuses mapped to [`ProviderError`] so the drain can react.

use std::time::Duration;

use reqwest::{Client, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::config::{Config, ProviderKeySource};
use crate::domain::Subscriber;
use crate::ports::{Provider, ProviderError};

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

    /// Builds the provider from the config, reading the API key from Secrets Manager when deployed.
    pub async fn from_config(config: &Config, aws: &aws_config::SdkConfig) -> anyhow::Result<Self> {
        let key = provider_api_key(config, aws).await?;
        Ok(Self::new(
            &config.provider_base_url,
            &config.provider_account_id,
            key,
            config.provider_timeout,
        )?)
    }

    async fn post(&self, url: &str, body: serde_json::Value) -> Result<(), ProviderError> {
        let response = self
            .client
            .post(url)
            .basic_auth(&self.api_key, Some(""))
            .header(header::ACCEPT, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| ProviderError::Transient(format!("{e}")))?;
        map_response(response).await
    }
}

/// Maps a provider answer to the drain's categories.
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
    match status {
        StatusCode::TOO_MANY_REQUESTS => Err(ProviderError::RateLimited { retry_after }),
        StatusCode::UNPROCESSABLE_ENTITY => {
            let errors = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| b.errors)
                .unwrap_or_default();
            let index = errors
                .iter()
                .find_map(|e| e.attribute.as_deref().and_then(record_index));
            let detail = if errors.is_empty() {
                crate::domain::truncate(&text, 500)
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
            Err(ProviderError::Rejected { index, detail })
        }
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::CONFLICT =>
        {
            Err(ProviderError::Transient(format!(
                "HTTP {s}: {}",
                crate::domain::truncate(&text, 200)
            )))
        }
        s => Err(ProviderError::Misconfigured(format!(
            "HTTP {s}: {}",
            crate::domain::truncate(&text, 200)
        ))),
    }
}

/// `subscribers[3].email` → 3.
fn record_index(attribute: &str) -> Option<usize> {
    let rest = attribute.split_once('[')?.1;
    rest.split_once(']')?.0.parse().ok()
}

/// Reads the provider API key once: plain from the environment locally, from Secrets Manager when deployed.
/// The secret may be the bare key or JSON with an `api_key` field.
pub async fn provider_api_key(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<String> {
    match &config.provider_key {
        ProviderKeySource::Plain(key) => Ok(key.clone()),
        ProviderKeySource::SecretArn(arn) => {
            let client = aws_sdk_secretsmanager::Client::new(aws);
            let out = client
                .get_secret_value()
                .secret_id(arn)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "reading the provider API key from {arn}: {}",
                        aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                    )
                })?;
            let raw = out.secret_string().unwrap_or_default().trim().to_string();
            let key = match serde_json::from_str::<serde_json::Value>(&raw) {
                Ok(v) => v
                    .get("api_key")
                    .and_then(|k| k.as_str())
                    .map(str::to_string)
                    .unwrap_or(raw),
                Err(_) => raw,
            };
            anyhow::ensure!(
                !key.is_empty(),
                "the secret {arn} holds no provider API key"
            );
            Ok(key)
        }
    }
}

impl Provider for HttpProvider {
    async fn send_batch(&self, records: &[Subscriber]) -> Result<(), ProviderError> {
        self.post(
            &self.batch_url,
            json!({"batches": [{"subscribers": records}]}),
        )
        .await
    }

    async fn send_individual(&self, record: &Subscriber) -> Result<(), ProviderError> {
        self.post(&self.individual_url, json!({"subscribers": [record]}))
            .await
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

    #[tokio::test]
    async fn statuses_map_to_what_the_drain_does() {
        let server = MockServer::start().await;
        let cases = [
            (429, r#"{"message":"API rate limit exceeded"}"#),
            (
                422,
                r#"{"errors":[{"code":"invalid","attribute":"subscribers[3].email","message":"bad"}]}"#,
            ),
            (503, ""),
            (401, ""),
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
            got.push(p.send_individual(&sub("a@x.io")).await.unwrap_err());
        }
        assert_eq!(
            got[0],
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(120))
            }
        );
        assert!(
            matches!(&got[1], ProviderError::Rejected { index: Some(3), detail } if detail.contains("subscribers[3].email"))
        );
        assert!(matches!(got[2], ProviderError::Transient(_)));
        assert!(matches!(got[3], ProviderError::Misconfigured(_)));
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
            .unwrap_err();
        assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    }
}
