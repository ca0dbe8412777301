//! How the in-memory provider counts its limit: per fixed window (with the other client's requests due
//! by then taken first), or — counting a rolling window — refusing a request while the limit's worth of
//! accepted requests of its kind fall in the trailing interval `(now − window, now]`.

use chrono::{DateTime, Utc};

use super::{MemoryProvider, ProviderState};
use crate::ports::{CallInfo, Clock, ProviderError, QuotaKind, QuotaModel, Window};

impl<C: Clock + Clone> MemoryProvider<C> {
    /// Counts one request of `kind` in the window of `now` (after the other client's requests due by
    /// then) — or in the trailing interval, counting a rolling window — or answers 429 when it is full.
    /// Either way the answer carries what is left.
    pub(super) fn spend_request(
        &self,
        s: &mut ProviderState,
        kind: QuotaKind,
        now: DateTime<Utc>,
    ) -> (Result<(), ProviderError>, CallInfo) {
        let limit = self.limit(kind);
        let (key, used) = match self.model {
            QuotaModel::Fixed => {
                let window = Window::containing(now, self.window_seconds);
                s.other_client_catch_up(kind, window, limit, now);
                let key = (kind, window.start);
                (key, *s.used.entry(key).or_insert(0))
            }
            QuotaModel::Rolling => (
                (kind, i64::MIN),
                s.rolling_used(kind, self.window_seconds, now),
            ),
        };
        let informed = !s.answered.insert(key);
        let result = if used >= limit {
            s.over_limit += 1;
            s.over_limit_after_reply += u32::from(informed);
            s.calls.rate_limited += 1;
            Err(ProviderError::RateLimited { retry_after: None })
        } else {
            match self.model {
                QuotaModel::Fixed => *s.used.entry(key).or_insert(0) += 1,
                QuotaModel::Rolling => s.rolling.entry(kind).or_default().push_back(now),
            }
            Ok(())
        };
        let info = CallInfo {
            rate_limit: Some(limit),
            rate_remaining: Some(limit.saturating_sub(used + u32::from(result.is_ok()))),
            ..CallInfo::default()
        };
        (result, info)
    }
}

impl ProviderState {
    /// Accepted requests of `kind` inside the `length` seconds ending at `now` (older ones forgotten).
    fn rolling_used(&mut self, kind: QuotaKind, length: u32, now: DateTime<Utc>) -> u32 {
        let from = now - chrono::Duration::seconds(i64::from(length.max(1)));
        let times = self.rolling.entry(kind).or_default();
        while times.front().is_some_and(|&t| t <= from) {
            times.pop_front();
        }
        u32::try_from(times.len()).unwrap_or(u32::MAX)
    }
}
