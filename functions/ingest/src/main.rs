//! The ingest Lambda: `POST /v1/changes` and `GET /v1/requests/{id}`, behind API Gateway or a function URL.

use lambda_http::{Error, run};
use sluice::adapters::secrets;
use sluice::config::{FromVars, IngestConfig};
use sluice::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let aws = aws_config::load_from_env().await;
    let config = secrets::resolve_ingest_key(IngestConfig::from_env()?, &aws).await?;
    // The same axum router `sluice local serve` runs with `axum::serve`.
    run(ingest::AwsIngest::aws(&config, &aws).api()).await
}
