//! `sluice local serve`: both functions as one long-lived local process, against a local (or any) stack.
//!
//! - **ingest**: the function's own axum router ([`ingest::Ingest::api`]) served by `axum::serve` — the
//!   same routes, handler code and answers as the Lambda, at the URLs `cargo lambda watch` used
//!   (`/lambda-url/ingest/v1/changes`, and `/v1/changes` without the prefix).
//! - **drain**: the function's own handler ([`drain::handle`]) — on a timer, as EventBridge runs it, and on
//!   the Lambda Invoke API route `POST /2015-03-31/functions/drain/invocations` (what `cargo lambda invoke`
//!   and the demo driver call), which answers the handler's JSON summary.
//!
//! A plain HTTP server has no idle state to lose: the process answers after hours of quiet as it does
//! after a second. `infra/local/up` runs it under `infra/local/supervise`, which starts it again if it
//! exits. `cargo lambda watch` remains the way to exercise the Lambda runtime itself (see README).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::SdkConfig;
use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use sluice::config::{FromVars, IngestConfig};
use sluice::drain::{Drain, DrainReport};
use sluice::startup::AwsDrainPorts;
use tokio::sync::{mpsc, oneshot};

use crate::args::{GlobalArgs, LocalServeArgs};

/// The drain as the local server runs it: the handler's engine, its stack name and its timeout.
struct LocalDrain {
    drain: Drain<AwsDrainPorts>,
    stack: String,
    timeout: Duration,
}

impl LocalDrain {
    /// One invocation of the Lambda handler, with a deadline `timeout` from now (as Lambda sets it).
    async fn invoke(&self, event: CloudWatchEvent) -> DrainResult {
        let mut context = Context::default();
        context.request_id = uuid::Uuid::new_v4().to_string();
        let deadline = Utc::now() + self.timeout;
        context.deadline = u64::try_from(deadline.timestamp_millis()).unwrap_or_default();
        drain::handle(&self.drain, &self.stack, LambdaEvent::new(event, context))
            .await
            .map_err(|e| e.to_string())
    }
}

type DrainResult = Result<DrainReport, String>;
type Invocation = (CloudWatchEvent, oneshot::Sender<DrainResult>);

/// A handle on the drain worker: invocations go in one at a time, results come back.
#[derive(Clone)]
struct DrainWorker(mpsc::Sender<Invocation>);

impl DrainWorker {
    /// Starts the drain on a thread of its own. The engine's future is not `Send` (the Lambda runtime
    /// never needs it to be), so it runs on a single-threaded runtime there; each invocation is its own
    /// local task, so a panic fails that invocation and the next one still runs.
    async fn start(
        config: sluice::Config,
        sdk: SdkConfig,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the drain's runtime")?;
        let (tx, mut rx) = mpsc::channel::<Invocation>(8);
        let (ready_tx, ready) = oneshot::channel::<anyhow::Result<()>>();
        std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    // Built here, so its connection pools live on this runtime.
                    let drain = match sluice::startup::aws_drain(&config, &sdk).await {
                        Ok(drain) => {
                            let _ = ready_tx.send(Ok(()));
                            Rc::new(LocalDrain {
                                drain,
                                stack: config.stack_name.clone(),
                                timeout,
                            })
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.context("building the drain")));
                            return;
                        }
                    };
                    while let Some((event, reply)) = rx.recv().await {
                        let drain = drain.clone();
                        let run =
                            tokio::task::spawn_local(async move { drain.invoke(event).await });
                        let result = run
                            .await
                            .unwrap_or_else(|panic| Err(format!("the drain panicked: {panic}")));
                        let _ = reply.send(result);
                    }
                });
            })
            .context("starting the drain's thread")?;
        ready.await.context("the drain's thread ended early")??;
        Ok(Self(tx))
    }

    async fn invoke(&self, event: CloudWatchEvent) -> DrainResult {
        let (reply, result) = oneshot::channel();
        self.0
            .send((event, reply))
            .await
            .map_err(|_| "the drain worker has stopped".to_owned())?;
        result
            .await
            .map_err(|_| "the drain worker dropped the invocation".to_owned())?
    }
}

/// `sluice local serve`.
pub async fn run(
    args: &LocalServeArgs,
    global: &GlobalArgs,
    sdk: &SdkConfig,
) -> anyhow::Result<()> {
    let cf = aws_sdk_cloudformation::Client::new(sdk);
    let stack = crate::stack::read_stack(&cf, &global.stack_name).await?;
    // What each function would see: the environment first, then the stack (as `drain --once`).
    let vars = crate::settings::function_env(&stack, |k| std::env::var(k).ok());
    let ingest_config = IngestConfig::from_lookup(|k| vars.get(k).cloned())
        .context("configuring ingest (environment first, then the stack)")?;
    let drain_config = crate::drain::config(&stack, |k| std::env::var(k).ok())?;
    let timeout = Duration::from_secs(u64::from(args.deadline_seconds));
    let drain = DrainWorker::start(drain_config, sdk.clone(), timeout).await?;
    let app = app(ingest::AwsIngest::aws(&ingest_config, sdk), drain.clone());

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    if args.drain_every > 0 {
        tokio::spawn(drain_on_a_timer(
            drain,
            Duration::from_secs(u64::from(args.drain_every)),
        ));
    }
    eprintln!(
        "sluice local serve: ingest on http://{addr}/lambda-url/ingest/v1/changes, drain on \
         http://{addr}/2015-03-31/functions/drain/invocations{}",
        match args.drain_every {
            0 => " (no timer)".to_owned(),
            s => format!(" and every {s} s"),
        }
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving")
}

/// The local server's routes: the drain's Invoke API route, and everything else to ingest's own router.
fn app(ingest: ingest::AwsIngest, drain: DrainWorker) -> Router {
    Router::new()
        .route("/2015-03-31/functions/{function}/invocations", post(invoke))
        .with_state(drain)
        .fallback_service(ingest.api())
        .layer(axum::middleware::from_fn(run_to_completion))
}

/// Runs each request to its end even when the client goes away, as a Lambda invocation does: hyper drops
/// a request's future when its connection closes, which would stop ingest between claiming an
/// `Idempotency-Key` and enqueueing (the key then held until its lease ends, the changes maybe partly
/// enqueued) — a state the deployed function never reaches for a client that hung up.
async fn run_to_completion(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(e) => invoke_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            &format!("the request's task failed: {e}"),
        ),
    }
}

/// `POST /2015-03-31/functions/drain/invocations`, answered as the Lambda Invoke API does: the function's
/// result as JSON, or — when the function fails — `{errorType, errorMessage}` with `X-Amz-Function-Error`.
async fn invoke(
    State(drain): State<DrainWorker>,
    Path(function): Path<String>,
    body: Bytes,
) -> Response {
    if function != "drain" {
        return invoke_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {function} (this server runs `drain`; ingest is HTTP)"),
        );
    }
    // An empty payload is a manual invocation with no event, as `aws lambda invoke` without --payload.
    let event = if body.iter().all(u8::is_ascii_whitespace) {
        scheduled_event()
    } else {
        match serde_json::from_slice::<CloudWatchEvent>(&body) {
            Ok(event) => event,
            Err(e) => {
                return invoke_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("the payload is not a scheduled event: {e}"),
                );
            }
        }
    };
    match drain.invoke(event).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(message) => {
            tracing::error!(error = %message, "drain invocation failed");
            let mut r = invoke_error(StatusCode::OK, "DrainError", &message);
            r.headers_mut().insert(
                HeaderName::from_static("x-amz-function-error"),
                HeaderValue::from_static("Unhandled"),
            );
            r
        }
    }
}

fn invoke_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errorType": kind, "errorMessage": message})),
    )
        .into_response()
}

/// What EventBridge's `rate(...)` schedule sends.
fn scheduled_event() -> CloudWatchEvent {
    let mut event = CloudWatchEvent::default();
    event.id = Some(uuid::Uuid::new_v4().to_string());
    event.detail_type = Some("Scheduled Event".to_owned());
    event.source = Some("aws.events".to_owned());
    event.time = Utc::now();
    event
}

/// The schedule: one run every `every`, never two at once (a run longer than the period delays the next;
/// the drain's lease would make a concurrent one idle anyway).
async fn drain_on_a_timer(drain: DrainWorker, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match drain.invoke(scheduled_event()).await {
            Ok(report) => tracing::info!(
                report = %serde_json::to_string(&report).unwrap_or_default(),
                "scheduled drain run"
            ),
            Err(message) => tracing::error!(error = %message, "scheduled drain run failed"),
        }
    }
}

/// Ctrl-C or SIGTERM (`make down`): finish the requests in flight, then exit.
async fn shutdown() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
