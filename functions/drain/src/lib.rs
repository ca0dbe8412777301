//! The drain handler: translates the scheduled event into one run of [`sluice::drain::Drain`], prints the
//! run's metrics as an EMF line and returns its JSON summary.

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use chrono::{DateTime, Utc};
use lambda_runtime::{Error, LambdaEvent};
use sluice::drain::{Drain, DrainReport};
use sluice::ports::DrainPorts;

/// One scheduled (or manual) invocation. Work stops before the invocation's deadline.
pub async fn handle<P: DrainPorts>(
    drain: &Drain<P>,
    stack: &str,
    event: LambdaEvent<CloudWatchEvent>,
) -> Result<DrainReport, Error> {
    let now = Utc::now();
    let given = i64::try_from(event.context.deadline)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    // Lambda always sends a deadline; local runtimes may not send a usable one. A run needs one that is
    // ahead and within Lambda's 15-minute limit; otherwise it assumes the template's 60 s timeout.
    let deadline = match given {
        Some(d) if d > now && d <= now + chrono::Duration::minutes(15) => d,
        _ => {
            tracing::warn!(?given, "no usable invocation deadline; assuming 60 s");
            now + chrono::Duration::seconds(60)
        }
    };
    tracing::debug!(%deadline, "drain invocation");
    let report = drain.run(deadline).await?;
    // EMF: CloudWatch turns this stdout line into metrics for the dashboard and alarms.
    println!("{}", report.emf(stack, Utc::now().timestamp_millis()));
    Ok(report)
}
