//! The AWS SDK configuration every command shares.

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::config::Credentials;

/// Region used with a custom endpoint when none is configured (LocalStack's default).
const LOCAL_REGION: &str = "us-east-1";

/// Loads the SDK configuration the usual way (environment, profile), with `endpoint_url` and
/// `region` taking precedence when given.
///
/// With an endpoint on the loopback interface (LocalStack), the region comes from `--region`,
/// `AWS_REGION` or defaults to us-east-1, and without `AWS_ACCESS_KEY_ID` in the environment static
/// `test` credentials are used: nothing probes the instance-metadata service.
pub async fn sdk_config(endpoint_url: Option<&str>, region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    let chain = RegionProviderChain::first_try(region.map(|r| Region::new(r.to_owned())));
    let local = endpoint_url.is_some_and(is_loopback);
    loader = loader.region(match endpoint_url {
        Some(_) if local => chain
            .or_else(EnvironmentVariableRegionProvider::new())
            .or_else(Region::new(LOCAL_REGION)),
        Some(_) => chain
            .or_default_provider()
            .or_else(Region::new(LOCAL_REGION)),
        None => chain.or_default_provider(),
    });
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
        if local && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            let test = Credentials::new("test", "test", None, None, "sluice-local");
            loader = loader.credentials_provider(test);
        }
    }
    loader.load().await
}

/// True for `http(s)://127.x.x.x`, `localhost` and `[::1]` endpoints.
pub(crate) fn is_loopback(url: &str) -> bool {
    let host = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = host.split(['/', '?']).next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:4566"));
        assert!(is_loopback("http://localhost:4566/"));
        assert!(is_loopback("http://[::1]:4566"));
        assert!(!is_loopback("https://sqs.eu-west-1.amazonaws.com"));
        assert!(!is_loopback("http://127.example.com"));
    }
}
