//! Where LocalStack is and how to talk to it: the endpoint from `AWS_ENDPOINT_URL` and the SDK
//! configuration the `sluice` CLI itself uses for a local endpoint.

use aws_config::SdkConfig;

/// The region every LocalStack stack lives in.
pub const REGION: &str = "us-east-1";

/// `AWS_ENDPOINT_URL`, or LocalStack's default address.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// The SDK configuration for [`endpoint`] in [`REGION`] (static `test` credentials unless the
/// environment has its own), as `sluice --endpoint-url` builds it.
pub async fn sdk_config() -> SdkConfig {
    sluice_cli::aws::sdk_config(Some(&endpoint()), Some(REGION)).await
}

/// `<prefix>-<12 random hex digits>`: a resource name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
