//! A provider in memory that enforces the limits on its own count (answering 429 over them) and says what
//! is left in `X-RateLimit-Limit` / `X-RateLimit-Remaining` as Drip does, can share the account with
//! another client that spends part of the quota, can be scripted to fail, refuse or go down, and records
//! every delivery.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::{CallHook, lock};

#[path = "provider_quota.rs"]
mod quota;
#[path = "provider_sharing.rs"]
mod sharing;
use crate::domain::Subscriber;
use crate::ports::{Clock, Provider, ProviderError, QuotaKind, QuotaModel, Reply, Window};

/// What the in-memory provider received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub at: DateTime<Utc>,
    pub kind: QuotaKind,
    /// Sequence number of the accepted request that carried this record (records of one batch share it).
    pub request: u64,
    pub subscriber: Subscriber,
}

/// Requests the provider answered, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderCalls {
    /// Accepted batch requests.
    pub batch: u64,
    /// Accepted individual requests.
    pub individual: u64,
    /// Requests answered 429 (over the limit; the same count as [`MemoryProvider::over_limit`]).
    pub rate_limited: u64,
    /// Requests refused with 422, or failed by a scripted error.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct ProviderState {
    deliveries: Vec<Delivery>,
    used: HashMap<(QuotaKind, i64), u32>,
    over_limit: u32,
    /// Of `over_limit`, the requests that came after the provider had already answered one of this kind
    /// in the window (and so told the client, in its headers, how much was left).
    over_limit_after_reply: u32,
    /// Windows (by kind) in which the provider has answered a request of ours.
    answered: std::collections::HashSet<(QuotaKind, i64)>,
    /// Counting a rolling window: each kind's accepted requests still inside it, oldest first.
    rolling: HashMap<QuotaKind, VecDeque<DateTime<Utc>>>,
    /// Another client of the account: the percentage of each kind's limit it spends per window, evenly.
    other_percent: u32,
    /// Requests the other client made (by kind and window), and those it could not make (window full).
    other_used: HashMap<(QuotaKind, i64), u32>,
    other_refused: u64,
    scripted: VecDeque<ProviderError>,
    reject: Vec<String>,
    /// Refused records whose refusal does not say which record it is.
    reject_unindexed: Vec<String>,
    max_users_twice: u32,
    calls: ProviderCalls,
    /// Every call before this time fails as a 503 (an outage).
    down_until: Option<DateTime<Utc>>,
    /// Calls made (of any kind, probes included) while down.
    calls_while_down: u64,
    probes: u64,
    /// Records with these emails fail as a 503, whatever else happens.
    fail_emails: Vec<String>,
    /// Calls that carried each email, whatever their answer.
    attempts: HashMap<String, u32>,
}

/// A provider that enforces the limits on its own count (answering 429 over them) and records everything.
#[derive(Debug, Clone)]
pub struct MemoryProvider<C: Clock + Clone> {
    state: Arc<Mutex<ProviderState>>,
    /// Runs before every call (e.g. moves a virtual clock: a slow provider).
    on_call: Arc<Mutex<Option<CallHook>>>,
    clock: C,
    batch_limit: u32,
    individual_limit: u32,
    window_seconds: u32,
    /// How the limit is counted: per fixed window (the default) or over the trailing interval.
    model: QuotaModel,
}

impl<C: Clock + Clone> MemoryProvider<C> {
    pub fn new(clock: C, batch_limit: u32, individual_limit: u32, window_seconds: u32) -> Self {
        Self {
            state: Arc::default(),
            on_call: Arc::default(),
            clock,
            batch_limit,
            individual_limit,
            window_seconds,
            model: QuotaModel::Fixed,
        }
    }

    /// The same provider counting its limit in `model`: `Rolling` refuses a request while the limit's
    /// worth of requests fall in the `window_seconds` before it (the other client shares fixed windows
    /// only).
    pub fn counting(mut self, model: QuotaModel) -> Self {
        self.model = model;
        self
    }

    /// Another client shares the account and spends `percent` % of each kind's limit per window, spread
    /// evenly over the window (at a time `t` into it, `limit × percent/100 × t/length` requests, when the
    /// window still has them). Its requests count in this provider's quota and headers, not in
    /// [`Self::calls`] or [`Self::deliveries`].
    pub fn share_with_other_client(&self, percent: u32) {
        lock(&self.state).other_percent = percent.min(100);
    }

    /// The other client makes the requests due by now (it otherwise catches up only when one of ours
    /// arrives, so a window we stop using early would miss its tail).
    pub fn other_client_catch_up(&self) {
        let now = self.clock.now();
        let window = Window::containing(now, self.window_seconds);
        let mut s = lock(&self.state);
        for kind in [QuotaKind::Batch, QuotaKind::Individual] {
            s.other_client_catch_up(kind, window, self.limit(kind), now);
        }
    }

    /// Requests the other client made in all, and those the provider refused it (its window was full).
    pub fn other_client_requests(&self) -> (u64, u64) {
        let s = lock(&self.state);
        (
            s.other_used.values().map(|&n| u64::from(n)).sum(),
            s.other_refused,
        )
    }

    /// Our requests that arrived over the limit after the provider had answered one of the same kind in
    /// that window (the headers had said how much was left). With header adoption, this stays 0.
    pub fn over_limit_after_reply(&self) -> u32 {
        lock(&self.state).over_limit_after_reply
    }

    /// The next calls fail with these errors, in order (before quota is counted).
    pub fn script(&self, errors: impl IntoIterator<Item = ProviderError>) {
        lock(&self.state).scripted.extend(errors);
    }

    /// Drops the scripted errors not yet used.
    pub fn clear_script(&self) {
        lock(&self.state).scripted.clear();
    }

    /// Records with this email are refused with a 422 naming them.
    pub fn reject_email(&self, email: &str) {
        lock(&self.state).reject.push(email.to_string());
    }

    /// Records with this email are refused with a 4xx that names no record (a 400 without an index).
    pub fn reject_email_unindexed(&self, email: &str) {
        lock(&self.state).reject_unindexed.push(email.to_string());
    }

    /// Runs `f` at the start of every call (a slow provider on a virtual clock: a call that started at
    /// `t` answers, and stamps its records, at `t` plus what `f` advanced).
    pub fn on_call(&self, f: impl Fn() + Send + Sync + 'static) {
        *lock(&self.on_call) = Some(CallHook(Arc::new(f)));
    }

    fn hook(&self) {
        let hook = lock(&self.on_call).clone();
        if let Some(CallHook(f)) = hook {
            f();
        }
    }

    /// Records with this email fail as a 503 on every call (a record the provider keeps failing).
    pub fn fail_email(&self, email: &str) {
        lock(&self.state).fail_emails.push(email.to_string());
    }

    /// Calls that carried each email (delivery attempts, whatever the answer).
    pub fn attempts_by_email(&self) -> HashMap<String, u32> {
        lock(&self.state).attempts.clone()
    }

    /// The provider is down (every call a 503) until `until`.
    pub fn down_until(&self, until: DateTime<Utc>) {
        lock(&self.state).down_until = Some(until);
    }

    /// Calls that arrived while the provider was down.
    pub fn calls_while_down(&self) -> u64 {
        lock(&self.state).calls_while_down
    }

    /// Half-open probes answered.
    pub fn probes(&self) -> u64 {
        lock(&self.state).probes
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.state).deliveries.clone()
    }

    /// Removes and returns the deliveries recorded so far: a long simulation reads them as it goes
    /// instead of holding a day of records. [`Self::latest`] sees only what has not been taken.
    pub fn take_deliveries(&self) -> Vec<Delivery> {
        std::mem::take(&mut lock(&self.state).deliveries)
    }

    /// Requests answered so far, by outcome.
    pub fn calls(&self) -> ProviderCalls {
        lock(&self.state).calls
    }

    /// Requests that arrived over the limit (answered 429). Must stay 0.
    pub fn over_limit(&self) -> u32 {
        lock(&self.state).over_limit
    }

    /// Requests that named one user twice. Must stay 0.
    pub fn users_twice_in_one_request(&self) -> u32 {
        lock(&self.state).max_users_twice
    }

    /// The provider's view: every delivered field folded in arrival order.
    pub fn latest(&self) -> BTreeMap<String, Subscriber> {
        let mut out: BTreeMap<String, Subscriber> = BTreeMap::new();
        for d in lock(&self.state).deliveries.iter() {
            let s = out
                .entry(d.subscriber.email.clone())
                .or_insert_with(|| Subscriber {
                    email: d.subscriber.email.clone(),
                    ..Subscriber::default()
                });
            if let Some(n) = &d.subscriber.name {
                s.name = Some(n.clone());
            }
            if let Some(t) = &d.subscriber.time_zone {
                s.time_zone = Some(t.clone());
            }
            s.custom_fields.extend(d.subscriber.custom_fields.clone());
        }
        out
    }

    /// The limit of `kind`'s requests per window.
    fn limit(&self, kind: QuotaKind) -> u32 {
        match kind {
            QuotaKind::Batch => self.batch_limit,
            QuotaKind::Individual => self.individual_limit,
        }
    }

    /// A request of `records`: attempts counted, then (in order) an outage or scripted error, a record that
    /// always fails, the rate limit, a refusal; else every record delivered.
    fn call(&self, kind: QuotaKind, records: &[Subscriber]) -> Reply {
        self.hook();
        let now = self.clock.now();
        let mut s = lock(&self.state);
        for r in records {
            *s.attempts.entry(r.email.clone()).or_default() += 1;
        }
        if let Some(e) = s.fault(now) {
            return Reply::err(e);
        }
        if records.iter().any(|r| s.fail_emails.contains(&r.email)) {
            s.calls.failed += 1;
            return Reply::err(ProviderError::transient(
                "HTTP 503 (this record always fails)",
            ));
        }
        let (result, info) = self.spend_request(&mut s, kind, now);
        let result = result.and_then(|()| match s.refusal(records) {
            Some(refusal) => Err(refusal),
            None => {
                s.deliver(kind, records, now);
                Ok(())
            }
        });
        Reply { result, info }
    }

    /// A half-open probe: an outage or scripted error, else one individual request of the window.
    fn probe_call(&self) -> Reply {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        s.probes += 1;
        if let Some(e) = s.fault(now) {
            return Reply::err(e);
        }
        let (result, info) = self.spend_request(&mut s, QuotaKind::Individual, now);
        Reply { result, info }
    }
}

impl ProviderState {
    /// A call's fate before quota is counted: down, or a scripted error.
    fn fault(&mut self, now: DateTime<Utc>) -> Option<ProviderError> {
        if self.down_until.is_some_and(|t| now < t) {
            self.calls_while_down += 1;
            self.calls.failed += 1;
            return Some(ProviderError::transient(
                "HTTP 503 Service Unavailable (outage)",
            ));
        }
        let e = self.scripted.pop_front()?;
        self.calls.failed += 1;
        Some(e)
    }

    /// The refusal of a request with a refused record: a 422 naming the records, or a 400 naming none.
    fn refusal(&mut self, records: &[Subscriber]) -> Option<ProviderError> {
        let named: Vec<usize> = (0..records.len())
            .filter(|&i| self.reject.contains(&records[i].email))
            .collect();
        if !named.is_empty() {
            self.calls.failed += 1;
            let detail = named
                .iter()
                .map(|i| format!("subscribers[{i}].email: rejected"))
                .collect::<Vec<_>>()
                .join("; ");
            return Some(ProviderError::Rejected {
                indexes: named,
                detail,
            });
        }
        if records
            .iter()
            .any(|r| self.reject_unindexed.contains(&r.email))
        {
            self.calls.failed += 1;
            return Some(ProviderError::Rejected {
                indexes: Vec::new(),
                detail: "HTTP 400: invalid request".into(),
            });
        }
        None
    }

    /// An accepted request: its records delivered (and a user named twice counted).
    fn deliver(&mut self, kind: QuotaKind, records: &[Subscriber], now: DateTime<Utc>) {
        let mut emails: Vec<&str> = records.iter().map(|r| r.email.as_str()).collect();
        emails.sort_unstable();
        let n = emails.len();
        emails.dedup();
        if emails.len() != n {
            self.max_users_twice += 1;
        }
        let request = self.calls.batch + self.calls.individual;
        match kind {
            QuotaKind::Batch => self.calls.batch += 1,
            QuotaKind::Individual => self.calls.individual += 1,
        }
        for r in records {
            self.deliveries.push(Delivery {
                at: now,
                kind,
                request,
                subscriber: r.clone(),
            });
        }
    }
}

impl<C: Clock + Clone> Provider for MemoryProvider<C> {
    async fn send_batch(&self, records: &[Subscriber]) -> Reply {
        self.call(QuotaKind::Batch, records)
    }

    async fn send_individual(&self, record: &Subscriber) -> Reply {
        self.call(QuotaKind::Individual, std::slice::from_ref(record))
    }

    async fn probe(&self) -> Reply {
        self.probe_call()
    }
}
