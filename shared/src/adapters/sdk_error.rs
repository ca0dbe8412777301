//! The one classification of AWS SDK errors, for every adapter (SQS, DynamoDB, Secrets Manager).
//!
//! By the time an error reaches an adapter, the SDK's own retry (standard mode, configured where the
//! clients are built) has already retried it; what is classified here is what is left. Worth retrying on a
//! later call or run (*transient*): throttling, any 5xx, and everything on the way (timeouts, dispatch and
//! response failures). A mistake on our side (*permanent*): every other service refusal (missing table or
//! queue, bad request, access denied) and a request that could not be built.

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::ports::{ErrorKind, PortError};

/// Service error codes that mean "not now" rather than "not this".
const TRANSIENT_CODES: [&str; 7] = [
    "Throttl",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
    "InternalServerError",
    "ProvisionedThroughputExceeded",
    "TransactionConflict",
];

/// Whether `err` is worth retrying later.
pub fn error_kind<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> ErrorKind {
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if service.raw().status().as_u16() >= 500
                || TRANSIENT_CODES.iter().any(|t| code.contains(t))
            {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            }
        }
        SdkError::ConstructionFailure(_) => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    }
}

/// `err` as a port error of its kind, with the SDK's full error context in the message.
pub fn port_error<E>(context: &'static str, err: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = error_kind(&err);
    let source = anyhow::anyhow!("{}", DisplayErrorContext(&err));
    match kind {
        ErrorKind::Transient => PortError::transient(context, source),
        ErrorKind::Permanent => PortError::permanent(context, source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::send_message::SendMessageError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(status: u16, code: &str) -> SdkError<SendMessageError, HttpResponse> {
        let raw = HttpResponse::new(status.try_into().expect("a valid status"), SdkBody::empty());
        let meta = ErrorMetadata::builder().code(code).build();
        SdkError::service_error(SendMessageError::generic(meta), raw)
    }

    #[test]
    fn throttling_and_server_errors_are_transient_refusals_permanent() {
        for (status, code) in [
            (400, "ThrottlingException"),
            (400, "ProvisionedThroughputExceededException"),
            (400, "RequestLimitExceeded"),
            (400, "TransactionConflictException"),
            (503, "ServiceUnavailable"),
            (500, "AnythingAtAll"),
        ] {
            assert_eq!(
                error_kind(&service_error(status, code)),
                ErrorKind::Transient,
                "{status} {code}"
            );
        }
        for (status, code) in [
            (400, "ResourceNotFoundException"),
            (400, "AWS.SimpleQueueService.NonExistentQueue"),
            (403, "AccessDeniedException"),
            (400, "ValidationException"),
        ] {
            assert_eq!(
                error_kind(&service_error(status, code)),
                ErrorKind::Permanent,
                "{status} {code}"
            );
        }
    }

    #[test]
    fn a_timeout_is_transient() {
        let err: SdkError<SendMessageError, HttpResponse> =
            SdkError::timeout_error("operation timed out");
        assert_eq!(error_kind(&err), ErrorKind::Transient);
    }
}
