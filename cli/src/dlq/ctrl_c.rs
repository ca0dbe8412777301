//! Ctrl-C during a redrive: the first stops it between batches, the second quits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::ProgressBar;

use super::progress::note;

/// First Ctrl-C: sets `stop` (the redrive finishes the batch in flight, then stops). Second: exit at once
/// (the batch in flight may then be duplicated, never lost).
pub(super) async fn stop_on_ctrl_c(stop: Arc<AtomicBool>, progress: ProgressBar) {
    if tokio::signal::ctrl_c().await.is_ok() {
        stop.store(true, Ordering::Relaxed);
        note(
            &progress,
            "stopping after the batch in flight (Ctrl-C again to quit at once)",
        );
    }
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}
