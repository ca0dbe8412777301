//! The shared-secret check: local runs (`INGEST_API_KEY`) and the HTTP API (`INGEST_API_KEY_SECRET_ARN`,
//! read at cold start). Behind the REST API, API Gateway checks the usage plan's key instead.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::problem::IngestError;

/// The expected `x-api-key`. Kept as a SHA-256 digest, so the comparison is constant-time in both the
/// content and the length of what a client presents.
#[derive(Clone)]
pub struct ApiKey([u8; 32]);

impl ApiKey {
    pub fn new(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// `Ok` when the presented header value matches.
    pub fn verify(&self, presented: Option<&[u8]>) -> Result<(), IngestError> {
        let presented = presented.ok_or(IngestError::Unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(presented).into();
        if bool::from(self.0.ct_eq(&digest)) {
            Ok(())
        } else {
            Err(IngestError::Unauthorized)
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_passes() {
        let key = ApiKey::new("s3cret");
        assert!(key.verify(Some(b"s3cret")).is_ok());
        for bad in [
            None,
            Some(&b""[..]),
            Some(b"s3cre"),
            Some(b"s3cret "),
            Some(b"S3CRET"),
        ] {
            assert!(
                matches!(key.verify(bad), Err(IngestError::Unauthorized)),
                "{bad:?}"
            );
        }
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
    }
}
