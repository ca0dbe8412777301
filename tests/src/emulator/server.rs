//! The accept loop. The emulator serves HTTP/1.1 with hyper directly rather than `axum::serve` for one
//! reason: `drop_connections` must close a connection *without* answering, and only a service error at
//! the hyper level does that. Everything else is the axum router.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::api::LogNote;
use super::redact_email;
use super::state::Shared;

/// How long a graceful shutdown waits for requests in progress before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The service error that makes hyper close the connection without writing a response.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in progress finish (up to
/// [`SHUTDOWN_GRACE`]). Dropping the returned future cuts every connection at once.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(
                        stream,
                        Arc::clone(&shared),
                        router.clone(),
                        closing_rx.clone(),
                    ));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("requests still running after the shutdown grace period; closing them");
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    router: Router,
    mut closing: watch::Receiver<bool>,
) {
    let router = TowerToHyperService::new(router);
    let service = service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let router = router.clone();
        async move { serve_request(&shared, &router, request).await }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        // `is_ok()` drops the watch guard before the await below (it is not `Send`).
        true = async { closing.wait_for(|closing| *closing).await.is_ok() } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "connection ended");
    }
}

async fn serve_request(
    shared: &Shared,
    router: &TowerToHyperService<Router>,
    request: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = redacted_path(request.uri());
    let provider_call = request.uri().path().starts_with("/v2/");

    if provider_call && let Some(hang) = shared.take_drop() {
        if !hang.is_zero() {
            tokio::time::sleep(hang).await;
        }
        info!(%method, %path, elapsed_ms = started.elapsed().as_millis(), "dropped the connection (fault injection)");
        return Err(DropConnection);
    }

    let response = match router.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_millis();
    let note = response
        .extensions()
        .get::<LogNote>()
        .map_or("", |n| n.0.as_str());
    if provider_call {
        info!(%method, %path, status, elapsed_ms, "{note}");
    } else {
        debug!(%method, %path, status, elapsed_ms, "{note}");
    }
    Ok(response)
}

/// The request path with any `email=` query value redacted, for logs.
fn redacted_path(uri: &axum::http::Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("email", value)) => format!("email={}", redact_email(&value.replace("%40", "@"))),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
}
