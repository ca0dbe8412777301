//! The in-memory provider's account shared with another client: its requests, due evenly over each
//! window, take their units before ours are counted.

use chrono::{DateTime, Utc};

use super::ProviderState;
use crate::ports::{QuotaKind, Window};

impl ProviderState {
    /// The other client's requests of `kind` due by `now` in `window`, made while the window has room.
    pub(super) fn other_client_catch_up(
        &mut self,
        kind: QuotaKind,
        window: Window,
        limit: u32,
        now: DateTime<Utc>,
    ) {
        if self.other_percent == 0 {
            return;
        }
        let elapsed = (now.timestamp() - window.start).clamp(0, i64::from(window.length));
        let due = i64::from(limit) * i64::from(self.other_percent) * elapsed
            / (100 * i64::from(window.length));
        let due = u32::try_from(due).unwrap_or(u32::MAX);
        let key = (kind, window.start);
        let made = self.other_used.entry(key).or_insert(0);
        let used = self.used.entry(key).or_insert(0);
        while *made < due {
            *made += 1;
            if *used < limit {
                *used += 1;
            } else {
                self.other_refused += 1;
            }
        }
    }
}
