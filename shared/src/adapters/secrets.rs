//! Keys read once, at cold start, from Secrets Manager: the provider's API key (drain) and the ingest API
//! key (ingest behind an HTTP API, which has no API keys of its own, so the function checks `x-api-key`).

use crate::config::{Config, IngestConfig, ProviderKeySource};

/// The provider API key, read once: plain from the environment locally, from Secrets Manager when deployed.
pub async fn provider_api_key(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<String> {
    match &config.provider_key {
        ProviderKeySource::Plain(key) => Ok(key.clone()),
        ProviderKeySource::SecretArn(arn) => read_api_key(aws, arn, "the provider API key").await,
    }
}

/// The key a secret holds: the bare string, or JSON with an `api_key` field (what the template's
/// generated secret and a hand-made `{"api_key": "…"}` both are). `what` names the key in errors.
pub async fn read_api_key(
    aws: &aws_config::SdkConfig,
    arn: &str,
    what: &str,
) -> anyhow::Result<String> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "reading {what} from {arn}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        })?;
    let key = key_in(out.secret_string().unwrap_or_default());
    anyhow::ensure!(!key.is_empty(), "the secret {arn} holds no key ({what})");
    Ok(key)
}

/// Fills in the ingest API key from `INGEST_API_KEY_SECRET_ARN`, when set (it wins over `INGEST_API_KEY`).
pub async fn resolve_ingest_key(
    mut config: IngestConfig,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<IngestConfig> {
    if let Some(arn) = config.ingest_api_key_secret_arn.clone() {
        config.ingest_api_key = Some(read_api_key(aws, &arn, "the ingest API key").await?);
    }
    Ok(config)
}

fn key_in(raw: &str) -> String {
    let raw = raw.trim();
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v) => v
            .get("api_key")
            .and_then(|k| k.as_str())
            .map_or_else(|| raw.to_string(), str::to_string),
        Err(_) => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::key_in;

    #[test]
    fn a_secret_is_the_bare_key_or_json_with_api_key() {
        assert_eq!(key_in(" k3y\n"), "k3y");
        assert_eq!(key_in(r#"{"api_key": "k3y"}"#), "k3y");
        assert_eq!(key_in(r#"{"other": 1}"#), r#"{"other": 1}"#);
    }
}
