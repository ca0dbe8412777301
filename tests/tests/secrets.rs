//! Keys read from Secrets Manager (LocalStack) at cold start, as the deployed functions read them: the
//! ingest key behind the HTTP API (the template's generated secret, JSON `{"api_key": …}`), which the
//! function then requires as `x-api-key`, and the provider's key (bare or JSON).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use ingest::AwsIngest;
use serde_json::json;
use sluice::adapters::secrets;
use sluice::config::{FromVars, IngestConfig};
use sluice_test_support::events::{HTTP_API_POST, JSON, event};

async fn create_secret(sdk: &aws_config::SdkConfig, value: &str) -> String {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(format!("sluice-test-{}", uuid::Uuid::new_v4()))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

/// An HTTP API (payload 2.0) `POST /v1/changes` of one change, with `key` as `x-api-key` if given.
fn post(key: Option<&str>) -> lambda_http::Request {
    let body = json!({"email": "a@x.io", "name": "A"}).to_string();
    let mut headers = vec![JSON];
    if let Some(key) = key {
        headers.push(("x-api-key", key));
    }
    event(
        HTTP_API_POST,
        "POST",
        "/v1/changes",
        Some(body.as_bytes()),
        &headers,
    )
}

#[tokio::test]
async fn the_ingest_key_comes_from_its_secret_and_guards_every_write() {
    let stack = common::stack().await;
    let arn = create_secret(&stack.sdk, r#"{"api_key":"k3y-from-the-secret"}"#).await;
    let env: HashMap<&str, String> = HashMap::from([
        ("QUEUE_URL", stack.outputs.queue_url.clone()),
        ("TABLE_NAME", stack.outputs.table_name.clone()),
        // The secret wins over a plain key.
        ("INGEST_API_KEY", "plain".to_string()),
        ("INGEST_API_KEY_SECRET_ARN", arn.clone()),
    ]);
    let config = IngestConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
    let config = secrets::resolve_ingest_key(config, &stack.sdk)
        .await
        .unwrap();
    let ingest = AwsIngest::aws(&config, &stack.sdk);

    for key in [None, Some("plain"), Some("k3y-from-the-secret ")] {
        let r = ingest.handle(post(key)).await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{key:?}");
    }
    assert_eq!(stack.depth(&stack.outputs.queue_url).await, (0, 0));
    let r = ingest
        .handle(post(Some("k3y-from-the-secret")))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);

    // A missing secret stops the cold start, naming it.
    let missing = arn.replace("sluice-test-", "sluice-missing-");
    let env: HashMap<&str, String> = HashMap::from([
        ("QUEUE_URL", "q".to_string()),
        ("TABLE_NAME", "t".to_string()),
        ("INGEST_API_KEY_SECRET_ARN", missing.clone()),
    ]);
    let config = IngestConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
    let err = secrets::resolve_ingest_key(config, &stack.sdk)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&missing), "{err}");
    stack.destroy().await;
}

#[tokio::test]
async fn a_key_secret_may_be_bare_or_json() {
    let sdk = sluice_test_support::localstack::sdk_config().await;
    for (value, want) in [
        ("bare-key\n", "bare-key"),
        (r#"{"api_key": "json-key"}"#, "json-key"),
    ] {
        let arn = create_secret(&sdk, value).await;
        let key = secrets::read_api_key(&sdk, &arn, "a key").await.unwrap();
        assert_eq!(key, want);
    }
    let empty = create_secret(&sdk, "  ").await;
    let err = secrets::read_api_key(&sdk, &empty, "the provider API key")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&empty) && err.contains("holds no key (the provider API key)"),
        "{err}"
    );
}
