//! The emulator's shared state: quota, recorded records, counters, faults and in-flight emails, behind one
//! mutex that is never held across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use rand::Rng;

use super::EmulatorConfig;
use super::model::{
    Faults, Kind, PerKind, QuotaByKind, QuotaModel, QuotaUsage, Received, Stats, Subscriber,
};

/// Statuses `error_rate` picks from.
const RANDOM_5XX: [StatusCode; 3] = [
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
];

pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: Vec<Received>,
    /// Keyed by lowercase email: the provider identifies a subscriber case-insensitively.
    latest: BTreeMap<String, Subscriber>,
    counters: Counters,
    window_start: i64,
    used: PerKind,
    /// Counting a rolling window: each kind's accepted requests still inside it, oldest first.
    accepted_at: HashMap<Kind, VecDeque<DateTime<Utc>>>,
    /// The other client's requests due so far in this window (made, or refused when it was full).
    other_due: PerKind,
    faults: Faults,
    /// Lowercase emails of requests between validation and their answer. Survives a reset: those
    /// requests are still running and release their emails when they finish.
    in_flight: HashSet<String>,
}

/// The counting half of [`Stats`].
#[derive(Default)]
struct Counters {
    requests: PerKind,
    records: PerKind,
    rejected_429: u64,
    over_limit: u64,
    rejected_422: u64,
    rejected_5xx_injected: u64,
    rejected_400: u64,
    rejected_401: u64,
    rejected_404: u64,
    rejected_409: u64,
    forced_responses: u64,
    dropped_connections: u64,
    duplicate_emails_in_request: u64,
    concurrent_conflicts: u64,
    other_client_requests: PerKind,
}

/// A failure chosen by fault injection.
pub(crate) enum Injected {
    Forced(StatusCode),
    Random(StatusCode),
}

/// The quota of one kind is spent until the next window.
pub(crate) struct OverLimit {
    pub(crate) retry_after_seconds: u64,
}

impl Shared {
    pub(crate) fn new(config: EmulatorConfig) -> Arc<Self> {
        let inner = Inner {
            faults: config.faults.clone(),
            ..Inner::default()
        };
        Arc::new(Self {
            config,
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters half-updated in a way that matters to a
        // test double; keep serving rather than poisoning every later request.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn window_seconds(&self) -> i64 {
        i64::try_from(self.config.window_seconds.max(1)).unwrap_or(i64::MAX)
    }

    pub(crate) fn limit(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Batch => self.config.batch_limit,
            Kind::Individual => self.config.individual_limit,
        }
    }

    /// Moves the quota to the window `now` falls in, forgetting the usage of an older one. Counting a
    /// rolling window: the window is the `window_seconds` before `now`, and `used` what was accepted in it.
    fn roll_window(&self, inner: &mut Inner, now: DateTime<Utc>) {
        if self.config.quota_model == QuotaModel::Rolling {
            self.roll_trailing(inner, now);
            return;
        }
        let window = self.window_seconds();
        let start = now.timestamp().div_euclid(window) * window;
        if start != inner.window_start {
            inner.window_start = start;
            inner.used = PerKind::default();
            inner.other_due = PerKind::default();
        }
        self.other_client_catch_up(inner, now);
    }

    /// The rolling window ending at `now`: requests older than it forgotten, `used` what is left in it.
    fn roll_trailing(&self, inner: &mut Inner, now: DateTime<Utc>) {
        let from = now - chrono::Duration::seconds(self.window_seconds());
        inner.window_start = from.timestamp();
        for kind in [Kind::Batch, Kind::Individual] {
            let times = inner.accepted_at.entry(kind).or_default();
            while times.front().is_some_and(|&t| t <= from) {
                times.pop_front();
            }
            *inner.used.get_mut(kind) = times.len() as u64;
        }
    }

    /// The other client's requests due by `now` (`other_client_percent` of each limit per window, spread
    /// evenly), each taking a unit of the window while it has one.
    fn other_client_catch_up(&self, inner: &mut Inner, now: DateTime<Utc>) {
        let percent = self.config.other_client_percent.min(100);
        if percent == 0 {
            return;
        }
        let window = self.window_seconds();
        let elapsed =
            u64::try_from((now.timestamp() - inner.window_start).clamp(0, window)).unwrap_or(0);
        let window = u64::try_from(window).unwrap_or(1);
        for kind in [Kind::Batch, Kind::Individual] {
            let limit = self.limit(kind);
            let due = limit * percent * elapsed / (100 * window);
            while inner.other_due.get(kind) < due {
                *inner.other_due.get_mut(kind) += 1;
                if inner.used.get(kind) < limit {
                    *inner.used.get_mut(kind) += 1;
                    *inner.counters.other_client_requests.get_mut(kind) += 1;
                }
            }
        }
    }

    pub(crate) fn remaining(&self, kind: Kind, now: DateTime<Utc>) -> u64 {
        let mut inner = self.lock();
        self.roll_window(&mut inner, now);
        self.limit(kind).saturating_sub(inner.used.get(kind))
    }

    /// Takes one request of `kind` from the current window; on success returns what is left.
    pub(crate) fn try_consume(&self, kind: Kind, now: DateTime<Utc>) -> Result<u64, OverLimit> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        self.roll_window(inner, now);
        let limit = self.limit(kind);
        let used = inner.used.get_mut(kind);
        if *used < limit {
            *used += 1;
            let left = limit - *used;
            if self.config.quota_model == QuotaModel::Rolling {
                inner.accepted_at.entry(kind).or_default().push_back(now);
            }
            Ok(left)
        } else {
            inner.counters.over_limit += 1;
            Err(OverLimit {
                retry_after_seconds: self.seconds_to_next_window(inner, now, Some(kind)),
            })
        }
    }

    /// Gives back one unit of `kind` (a request the provider refused without spending capacity).
    pub(crate) fn refund(&self, kind: Kind, now: DateTime<Utc>) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        self.roll_window(inner, now);
        let used = inner.used.get_mut(kind);
        *used = used.saturating_sub(1);
        if let Some(times) = inner.accepted_at.get_mut(&kind) {
            times.pop_back();
        }
    }

    /// Whole seconds (at least 1) until the window after the one `now` falls in: the `Retry-After`.
    pub(crate) fn retry_after(&self, now: DateTime<Utc>) -> u64 {
        let mut inner = self.lock();
        self.roll_window(&mut inner, now);
        self.seconds_to_next_window(&inner, now, None)
    }

    /// Counting a rolling window: until the oldest request still counted (of `kind`, or of either) leaves
    /// it.
    fn seconds_to_next_window(&self, inner: &Inner, now: DateTime<Utc>, kind: Option<Kind>) -> u64 {
        let oldest = inner
            .accepted_at
            .iter()
            .filter(|(k, _)| kind.is_none_or(|kind| **k == kind))
            .filter_map(|(_, t)| t.front())
            .min();
        let next_window_ms = match (self.config.quota_model, oldest) {
            (QuotaModel::Rolling, Some(oldest)) => {
                oldest.timestamp_millis() + self.window_seconds() * 1000
            }
            _ => (inner.window_start + self.window_seconds()) * 1000,
        };
        let wait_ms = u64::try_from(next_window_ms - now.timestamp_millis()).unwrap_or(0);
        wait_ms.div_ceil(1000).max(1)
    }

    /// Counts a response that did not accept the request, by status.
    pub(crate) fn count_rejection(&self, status: StatusCode) {
        let mut inner = self.lock();
        let counters = &mut inner.counters;
        match status.as_u16() {
            400 => counters.rejected_400 += 1,
            401 => counters.rejected_401 += 1,
            404 => counters.rejected_404 += 1,
            409 => counters.rejected_409 += 1,
            422 => counters.rejected_422 += 1,
            429 => counters.rejected_429 += 1,
            500..=599 => counters.rejected_5xx_injected += 1,
            _ => {}
        }
    }

    /// If a connection drop is queued, takes it and returns how long to hang first.
    pub(crate) fn take_drop(&self) -> Option<Duration> {
        let mut inner = self.lock();
        if inner.faults.drop_connections == 0 {
            return None;
        }
        inner.faults.drop_connections -= 1;
        inner.counters.dropped_connections += 1;
        Some(Duration::from_millis(inner.faults.hang_ms))
    }

    /// The next forced status if one is queued, else maybe a random 5xx per `error_rate`.
    pub(crate) fn take_injected(&self) -> Option<Injected> {
        let mut inner = self.lock();
        if let Some(front) = inner.faults.force.first_mut() {
            // `Faults::validate` keeps this within 200..=599 over HTTP; in-process callers get a 500 for
            // anything else rather than an invalid final status.
            let status = Some(front.status)
                .filter(|s| (200..=599).contains(s))
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            front.count = front.count.saturating_sub(1);
            if front.count == 0 {
                inner.faults.force.remove(0);
            }
            inner.counters.forced_responses += 1;
            return Some(Injected::Forced(status));
        }
        let rate = inner.faults.error_rate;
        let mut rng = rand::rng();
        if rate > 0.0 && rng.random_bool(rate.clamp(0.0, 1.0)) {
            let status = RANDOM_5XX[rng.random_range(0..RANDOM_5XX.len())];
            return Some(Injected::Random(status));
        }
        None
    }

    /// The delay to add to this response, if any.
    pub(crate) fn latency(&self) -> Option<Duration> {
        let (base, jitter) = {
            let inner = self.lock();
            (inner.faults.latency_ms, inner.faults.latency_jitter_ms)
        };
        let extra = if jitter > 0 {
            rand::rng().random_range(0..=jitter)
        } else {
            0
        };
        let total = base.saturating_add(extra);
        (total > 0).then(|| Duration::from_millis(total))
    }

    pub(crate) fn rejected_unindexed(&self) -> BTreeSet<String> {
        self.lock()
            .faults
            .reject_emails_unindexed
            .iter()
            .map(|e| e.to_lowercase())
            .collect()
    }

    pub(crate) fn rejected_emails(&self) -> BTreeSet<String> {
        self.lock()
            .faults
            .reject_emails
            .iter()
            .map(|e| e.to_lowercase())
            .collect()
    }

    /// Marks the emails of a request as in flight, or reports a conflict (and counts it) if another
    /// request holds one of them. The emails are released when the returned guard drops.
    pub(crate) fn begin(self: &Arc<Self>, records: &[Subscriber]) -> Option<InFlight> {
        let emails: BTreeSet<String> = records.iter().map(|r| r.email.to_lowercase()).collect();
        let mut inner = self.lock();
        if emails.iter().any(|e| inner.in_flight.contains(e)) {
            inner.counters.concurrent_conflicts += 1;
            return None;
        }
        inner.in_flight.extend(emails.iter().cloned());
        Some(InFlight {
            shared: Arc::clone(self),
            emails,
        })
    }

    /// Records an accepted request and returns the merged state of each of its subscribers, in order.
    pub(crate) fn record(
        &self,
        kind: Kind,
        request_id: &str,
        records: Vec<Subscriber>,
    ) -> Vec<Subscriber> {
        // Millisecond precision, like the wire format, so in-process and HTTP readers see equal values.
        let received_at = Utc::now().trunc_subsecs(3);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let distinct: BTreeSet<String> = records.iter().map(|r| r.email.to_lowercase()).collect();
        let duplicates = records.len() - distinct.len();
        let counters = &mut inner.counters;
        counters.duplicate_emails_in_request += duplicates as u64;
        *counters.requests.get_mut(kind) += 1;
        *counters.records.get_mut(kind) += records.len() as u64;

        let mut merged = Vec::with_capacity(records.len());
        for subscriber in records {
            let state = inner
                .latest
                .entry(subscriber.email.to_lowercase())
                .or_insert_with(|| Subscriber::new(subscriber.email.clone()));
            state.merge(&subscriber);
            merged.push(state.clone());
            let seq = inner.records.len() as u64 + 1;
            inner.records.push(Received {
                seq,
                received_at,
                kind,
                request_id: request_id.to_owned(),
                subscriber,
            });
        }
        merged
    }

    pub(crate) fn stats(&self, now: DateTime<Utc>) -> Stats {
        let mut inner = self.lock();
        self.roll_window(&mut inner, now);
        let usage = |kind: Kind| {
            let limit = self.limit(kind);
            let used = inner.used.get(kind);
            QuotaUsage {
                limit,
                used,
                remaining: limit.saturating_sub(used),
            }
        };
        let quota = QuotaByKind {
            batch: usage(Kind::Batch),
            individual: usage(Kind::Individual),
        };
        let c = &inner.counters;
        Stats {
            requests: c.requests,
            records: c.records,
            rejected_429: c.rejected_429,
            over_limit: c.over_limit,
            rejected_422: c.rejected_422,
            rejected_5xx_injected: c.rejected_5xx_injected,
            rejected_400: c.rejected_400,
            rejected_401: c.rejected_401,
            rejected_404: c.rejected_404,
            rejected_409: c.rejected_409,
            forced_responses: c.forced_responses,
            dropped_connections: c.dropped_connections,
            duplicate_emails_in_request: c.duplicate_emails_in_request,
            concurrent_conflicts: c.concurrent_conflicts,
            window_seconds: self.config.window_seconds.max(1),
            window_start: Utc
                .timestamp_opt(inner.window_start, 0)
                .single()
                .unwrap_or(now),
            quota,
            quota_model: self.config.quota_model,
            other_client_requests: c.other_client_requests,
        }
    }

    /// Every accepted record in arrival order, optionally only those for one email (case-insensitive).
    pub(crate) fn received(&self, email: Option<&str>) -> Vec<Received> {
        let inner = self.lock();
        match email.map(str::to_lowercase) {
            None => inner.records.clone(),
            Some(email) => inner
                .records
                .iter()
                .filter(|r| r.subscriber.email.to_lowercase() == email)
                .cloned()
                .collect(),
        }
    }

    /// The merged state per subscriber, keyed by lowercase email.
    pub(crate) fn latest(&self) -> BTreeMap<String, Subscriber> {
        self.lock().latest.clone()
    }

    pub(crate) fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Forgets records, counters, quota usage and faults.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        let in_flight = std::mem::take(&mut inner.in_flight);
        *inner = Inner {
            in_flight,
            ..Inner::default()
        };
    }
}

/// The emails of one request while it is being processed.
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    emails: BTreeSet<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        for email in &self.emails {
            inner.in_flight.remove(email);
        }
    }
}
