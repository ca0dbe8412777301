//! Quota: reserve before every provider call (a partial grant when fewer units are left), adopt the
//! provider's count when its `X-RateLimit-Remaining` says fewer requests are left than the ledger knows,
//! mark windows spent when the provider answers 429 for the account, and the counters the report shows.
//!
//! **Adoption.** Another client of the same account spends the same quota without going through the
//! ledger. Every reply tells us the provider's count (`limit − remaining`); when it is above what the
//! ledger holds, the ledger is raised to it for the rest of that window (never lowered: a reply that left
//! before some of our own reserved requests arrived says less than we know), so the next reservation is
//! made against what the provider will accept rather than answered 429.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::{Drain, DrainError, DrainReport, QuotaSummary, Run, chrono_duration};
use crate::ports::{
    CallInfo, DrainPorts, QuotaKind, QuotaLedger, QuotaModel, Reservation, Window, WindowUsage,
};

impl<P: DrainPorts> Drain<P> {
    /// Reserves up to `n` units of the run's window (fewer if fewer are left); returns how many were
    /// granted.
    pub(super) async fn reserve(
        &self,
        run: &mut Run,
        kind: QuotaKind,
        n: u32,
    ) -> Result<u32, DrainError> {
        let limit = self.settings.limit(kind);
        let ledger = self.ports.ledger();
        let window = run.window.as_of(self.now());
        match ledger.reserve(kind, window, n, limit).await? {
            Reservation::Granted { used } => {
                run.ledger_used.note(kind, used);
                Ok(n)
            }
            Reservation::Exhausted { used } => {
                run.ledger_used.note(kind, used);
                let left = limit.saturating_sub(used);
                if left == 0 || left >= n {
                    return Ok(0);
                }
                match ledger.reserve(kind, window, left, limit).await? {
                    Reservation::Granted { used } => {
                        run.ledger_used.note(kind, used);
                        Ok(left)
                    }
                    Reservation::Exhausted { used } => {
                        run.ledger_used.note(kind, used);
                        Ok(0)
                    }
                }
            }
        }
    }

    /// The provider's count of `kind` after the calls that brought `infos` (one call's, or a wave's
    /// replies): the ledger adopts it when it is above what the ledger holds. A failed write is logged and
    /// not fatal — the worst it costs is a 429, which spends the window as before.
    pub(super) async fn adopt<'a>(
        &self,
        run: &mut Run,
        kind: QuotaKind,
        infos: impl IntoIterator<Item = &'a CallInfo>,
    ) {
        let limit = self.settings.limit(kind);
        let Some(provider_used) = infos
            .into_iter()
            .filter_map(|i| i.rate_remaining)
            .map(|remaining| limit.saturating_sub(remaining))
            .max()
        else {
            return;
        };
        if provider_used <= run.ledger_used.get(kind) {
            return;
        }
        match self
            .ports
            .ledger()
            .adopt(kind, run.window.as_of(self.now()), provider_used, limit)
            .await
        {
            Ok(added) => {
                if added > 0 {
                    info!(
                        kind = kind.as_str(),
                        provider_used,
                        added,
                        "the provider counts more of the window than the ledger; adopting its count"
                    );
                }
                *run.report.adopted.get_mut(kind) += added;
                run.ledger_used.note(kind, provider_used);
            }
            Err(e) => {
                warn!(kind = kind.as_str(), error = %e, "could not adopt the provider's count")
            }
        }
    }

    /// The account's limit answered 429 for `kind`: its window is spent, and so is every window up to the
    /// provider's `Retry-After` (a rolling window: filled now, and as many windows ahead). Returns when the
    /// kind can be used again (for a rolling window without `Retry-After`, not before the next run).
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
        let mut window = run.window.as_of(now);
        ledger.mark_spent(kind, window, limit).await?;
        // At most a day of windows ahead: a Retry-After longer than that is not believed.
        if window.model == QuotaModel::Rolling {
            // A window filled at `t` holds until `t + length`: fill again until that reaches `until`.
            let length = chrono::Duration::seconds(i64::from(window.length));
            for _ in 0..24 {
                if window.end_time() + length >= until {
                    break;
                }
                let at = (window.end_time() + length).min(until - length);
                window = window.as_of(at);
                ledger.mark_spent(kind, window, limit).await?;
            }
            return Ok(until.max(now));
        }
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
        let window = window.as_of(self.now());
        let ledger = self.ports.ledger();
        let (b, i) = futures::try_join!(
            ledger.usage(QuotaKind::Batch, window),
            ledger.usage(QuotaKind::Individual, window)
        )?;
        let summary = |limit: u32, usage: WindowUsage| QuotaSummary {
            limit,
            used: usage.used.min(limit),
            left: limit.saturating_sub(usage.used),
            adopted: usage.adopted,
        };
        report.quota_batch = summary(self.settings.limits.batch_per_window, b);
        report.quota_individual = summary(self.settings.limits.individual_per_window, i);
        Ok(())
    }
}

/// The ledger's count of each kind as this run last saw it (the plan's read, each reservation's answer,
/// each adoption): a reply above it is what another client spent.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LedgerUsed {
    batch: u32,
    individual: u32,
}

impl LedgerUsed {
    pub(super) fn get(&self, kind: QuotaKind) -> u32 {
        match kind {
            QuotaKind::Batch => self.batch,
            QuotaKind::Individual => self.individual,
        }
    }

    /// The ledger held at least `used` (counts only grow within a window).
    pub(super) fn note(&mut self, kind: QuotaKind, used: u32) {
        let slot = match kind {
            QuotaKind::Batch => &mut self.batch,
            QuotaKind::Individual => &mut self.individual,
        };
        *slot = (*slot).max(used);
    }
}
