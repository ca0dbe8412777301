//! Quota: reserve before every provider call (a partial grant when fewer units are left), mark windows
//! spent when the provider answers 429 for the account, and the counters the report shows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::{Drain, DrainError, DrainReport, QuotaSummary, Run, chrono_duration};
use crate::ports::{DrainPorts, QuotaKind, QuotaLedger, Reservation, Window};

impl<P: DrainPorts> Drain<P> {
    /// Reserves up to `n` units (fewer if fewer are left); returns how many were granted.
    pub(super) async fn reserve(
        &self,
        kind: QuotaKind,
        window: Window,
        n: u32,
    ) -> Result<u32, DrainError> {
        let limit = self.settings.limit(kind);
        let ledger = self.ports.ledger();
        match ledger.reserve(kind, window, n, limit).await? {
            Reservation::Granted { .. } => Ok(n),
            Reservation::Exhausted { used } => {
                let left = limit.saturating_sub(used);
                if left == 0 || left >= n {
                    return Ok(0);
                }
                match ledger.reserve(kind, window, left, limit).await? {
                    Reservation::Granted { .. } => Ok(left),
                    Reservation::Exhausted { .. } => Ok(0),
                }
            }
        }
    }

    /// The account's limit answered 429 for `kind`: its window is spent, and so is every window up to the
    /// provider's `Retry-After`. Returns when the kind can be used again.
    pub(super) async fn spend(
        &self,
        run: &mut Run,
        kind: QuotaKind,
        retry_after: Option<Duration>,
    ) -> Result<DateTime<Utc>, DrainError> {
        warn!(
            kind = kind.as_str(),
            ?retry_after,
            "provider answered 429 for the account's limit; marking the window spent"
        );
        run.report.rate_limited += 1;
        let limit = self.settings.limit(kind);
        let ledger = self.ports.ledger();
        let now = self.now();
        let until = now + chrono_duration(retry_after.unwrap_or_default());
        let mut window = run.window;
        ledger.mark_spent(kind, window, limit).await?;
        // At most a day of windows ahead: a Retry-After longer than that is not believed.
        for _ in 0..24 {
            if window.end_time() >= until {
                break;
            }
            window = window.next();
            ledger.mark_spent(kind, window, limit).await?;
        }
        Ok(window.end_time().max(until))
    }

    pub(super) async fn report_quota(
        &self,
        report: &mut DrainReport,
        window: Window,
    ) -> Result<(), DrainError> {
        let ledger = self.ports.ledger();
        let (b, i) = futures::try_join!(
            ledger.used(QuotaKind::Batch, window),
            ledger.used(QuotaKind::Individual, window)
        )?;
        let summary = |limit: u32, used: u32| QuotaSummary {
            limit,
            used: used.min(limit),
            left: limit.saturating_sub(used),
        };
        report.quota_batch = summary(self.settings.limits.batch_per_window, b);
        report.quota_individual = summary(self.settings.limits.individual_per_window, i);
        Ok(())
    }
}
