//! A Drip-compatible provider emulator: a real HTTP server that plays the rate-limited provider in tests
//! and in the demo, records everything it accepts, and injects faults on demand.
//!
//! # Layout
//! - [`model`]: the public types — [`Subscriber`], [`Received`], [`Stats`], [`Faults`].
//! - `api`: the provider endpoints and the order of checks (auth → faults → quota → body → conflicts);
//!   its module doc says what consumes quota.
//! - `validate`: request bodies → records, or the 422 naming `subscribers[i].field`.
//! - `state`: quota windows (fixed, or rolling: `quota_model`), records, counters, faults and in-flight emails behind one mutex.
//! - `control`: the `/_emulator/*` endpoints (received, latest, stats, faults, reset, health).
//! - `server`: the hyper accept loop (needed to drop connections without answering).
//! - [`cli`]: the `provider-emulator` binary's flags.
//!
//! In tests, [`Emulator::spawn`] starts one on `127.0.0.1:0`; the [`EmulatorHandle`] reads its state
//! directly and stops it when dropped.

pub mod cli;
pub mod model;

mod api;
mod control;
mod server;
mod state;
mod validate;

#[cfg(test)]
mod rolling_tests;
#[cfg(test)]
mod sharing_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

pub use api::RATE_LIMIT_MESSAGE;
pub use model::{
    ApiError, Faults, ForcedResponse, Kind, PerKind, QuotaByKind, QuotaModel, QuotaUsage, Received,
    Stats, Subscriber,
};
pub use validate::{MAX_BATCH_RECORDS, email_problem};

use state::Shared;

/// How the emulated provider account is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorConfig {
    /// The `{account_id}` in `/v2/{account_id}/...`; any other answers 404.
    pub account_id: String,
    /// The Basic-auth username the provider expects.
    pub api_key: String,
    /// Batch requests per window.
    pub batch_limit: u64,
    /// Individual requests per window.
    pub individual_limit: u64,
    /// Window length; windows are fixed and aligned to the unix epoch, unless `quota_model` is
    /// rolling. 0 is treated as 1.
    pub window_seconds: u64,
    /// Fixed windows (Drip's documented hour, the default) or a rolling one: every `window_seconds`-long
    /// interval holds at most the limit. The other client (`other_client_percent`) shares fixed windows
    /// only.
    pub quota_model: QuotaModel,
    /// Faults active from the start (and until changed or reset).
    pub faults: Faults,
    /// Another client of the same account spends this percentage (0..=100) of each kind's limit per
    /// window, evenly over the window: its requests count in the quota and in `X-RateLimit-Remaining`,
    /// and in [`Stats::other_client_requests`], never among the requests recorded.
    pub other_client_percent: u64,
}

impl Default for EmulatorConfig {
    /// Drip's published limits and the demo's account.
    fn default() -> Self {
        Self {
            account_id: "1234567".to_owned(),
            api_key: "test-provider-key".to_owned(),
            batch_limit: 50,
            individual_limit: 3600,
            window_seconds: 3600,
            quota_model: QuotaModel::Fixed,
            faults: Faults::default(),
            other_client_percent: 0,
        }
    }
}

/// Entry points: [`Emulator::spawn`] for tests, [`Emulator::serve`] for the binary.
pub struct Emulator;

impl Emulator {
    /// Starts an emulator on `127.0.0.1:<free port>` in the current tokio runtime.
    pub async fn spawn(config: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(
            listener,
            Arc::clone(&shared),
            router(&shared),
            async {
                // A dropped sender means the handle is gone: stop as well.
                let _ = stopped.await;
            },
        ));
        Ok(EmulatorHandle {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Serves on `listen` until `shutdown` resolves — what the `provider-emulator` binary runs. Prints
    /// `provider emulator listening on http://…` to stdout once it accepts connections.
    pub async fn serve(
        listen: SocketAddr,
        config: EmulatorConfig,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener
            .local_addr()
            .context("listener has no local address")?;
        info!(
            account_id = %config.account_id,
            batch_limit = config.batch_limit,
            individual_limit = config.individual_limit,
            window_seconds = config.window_seconds,
            quota_model = ?config.quota_model,
            faults = ?config.faults,
            "provider emulator starting"
        );
        let shared = Shared::new(config);
        println!("provider emulator listening on http://{addr}");
        server::run(listener, Arc::clone(&shared), router(&shared), shutdown).await;
        info!("provider emulator stopped");
        Ok(())
    }
}

fn router(shared: &Arc<Shared>) -> Router {
    api::routes()
        .merge(control::routes())
        .fallback(control::not_found)
        .with_state(Arc::clone(shared))
}

/// A running in-process emulator. Stops when dropped (abruptly) or on [`EmulatorHandle::shutdown`].
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`, without a trailing slash: the provider base URL to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.config
    }

    pub fn account_id(&self) -> &str {
        &self.shared.config.account_id
    }

    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    /// `{base_url}/v2/{account_id}/subscribers/batches`.
    pub fn batch_url(&self) -> String {
        format!(
            "{}/v2/{}/subscribers/batches",
            self.base_url(),
            self.account_id()
        )
    }

    /// `{base_url}/v2/{account_id}/subscribers`.
    pub fn individual_url(&self) -> String {
        format!("{}/v2/{}/subscribers", self.base_url(), self.account_id())
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats(Utc::now())
    }

    /// Every accepted record, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received(None)
    }

    /// The accepted records for one email (case-insensitive), in arrival order.
    pub fn received_for(&self, email: &str) -> Vec<Received> {
        self.shared.received(Some(email))
    }

    /// The merged state per subscriber (all received fields folded in arrival order), keyed by lowercase
    /// email: what the provider holds now.
    pub fn latest(&self) -> BTreeMap<String, Subscriber> {
        self.shared.latest()
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the fault configuration. Out-of-range values are not rejected here (unlike over HTTP):
    /// `error_rate` is clamped to 0..=1 and a forced status outside 200..=599 answers 500.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// Forgets records, counters, quota usage and faults.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops accepting, lets requests in progress finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `alice@example.com` → `a***@example.com`: enough to follow a subscriber through logs, not to read it.
pub fn redact_email(email: &str) -> String {
    let first: String = email.chars().take(1).collect();
    match email.rsplit_once('@') {
        Some((_, domain)) => format!("{first}***@{domain}"),
        None => format!("{first}***"),
    }
}
