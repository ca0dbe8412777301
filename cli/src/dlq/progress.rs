//! The redrive's progress on the terminal: a bar, and notes printed above it.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar on a terminal; hidden when stderr is not one (scripts, CI, tests).
pub(super) fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    // Ticks while a rate limit sleeps, so elapsed time and ETA keep moving.
    bar.enable_steady_tick(Duration::from_millis(250));
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} {msg} ({elapsed}, eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// A line for the operator above the bar, or on stderr when there is no bar (hidden bars print nothing).
pub(super) fn note(progress: &ProgressBar, line: impl AsRef<str>) {
    if progress.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        progress.println(line.as_ref());
    }
}
