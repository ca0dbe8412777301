//! The backfill on the terminal: a bar of rows posted with the posting rate, and the time the provider
//! needs for them at its capacity (posting is fast; delivery is what the limits pace). Hidden when stderr
//! is not a terminal, where each chunk's answer is a line instead.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::format::duration;

/// A bar of `len` rows, `done` of them already posted by an earlier run.
pub fn bar(len: u64, done: u64, capacity_per_hour: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_position(done);
    bar.reset_eta();
    bar.enable_steady_tick(Duration::from_millis(250));
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40.cyan/blue} {pos}/{len} rows posted, {per_sec} ({elapsed}) · {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(delivery_eta(len, capacity_per_hour));
    bar
}

/// How long the provider needs for `rows` at `capacity_per_hour` (an upper bound on the rate: live
/// traffic shares the capacity, and coalesced duplicates need none).
pub fn delivery_eta(rows: u64, capacity_per_hour: u64) -> String {
    if capacity_per_hour == 0 {
        return "the provider's limits are 0: nothing will be delivered".to_owned();
    }
    let seconds = rows.saturating_mul(3_600).div_ceil(capacity_per_hour);
    format!(
        "delivered in ≥ {} at the provider's {capacity_per_hour}/h",
        duration(i64::try_from(seconds).unwrap_or(i64::MAX))
    )
}

/// A line for the operator: above the bar, or on stderr when there is no bar.
pub fn note(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        bar.println(line.as_ref());
    }
}
