//! Traffic: the four scenarios of issue 6 and a seeded generator of changes in time order.
//!
//! Every change touches one field (70 %) or two (30 %) of `name`, `time_zone` and the custom field
//! `last_order`. `name` and `last_order` get a value unique to the change (`n<seq>`, `o<seq>`), so a value
//! seen at the provider names the change it came from; `time_zone` is drawn from [`TIME_ZONES`] (IANA names
//! cannot be unique per change), so it repeats and produces the no-ops the drain must drop.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson, Zipf};
use sluice::domain::{Change, ChangeId, Email, Priority, RequestId, TimeZone};
use sluice::ports::QuotaModel;

use crate::fault::{Fault, OutageWindow};

/// Users changes are drawn from.
pub const USERS: u32 = 100_000;
/// Exponent of the Zipf distribution of users (rank 1 is the busiest user).
pub const ZIPF_EXPONENT: f64 = 1.1;
/// The custom field every generated change may set.
pub const CUSTOM_FIELD: &str = "last_order";
/// Time zones generated changes choose from.
pub const TIME_ZONES: [&str; 24] = [
    "UTC",
    "Europe/London",
    "Europe/Amsterdam",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Madrid",
    "Europe/Athens",
    "Europe/Moscow",
    "Africa/Cairo",
    "Africa/Lagos",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
];

/// A provider attribute the generator changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Name,
    TimeZone,
    LastOrder,
}

impl Field {
    /// Whether every change gets its own value for this field, so a delivered value names its change.
    pub fn traced(self) -> bool {
        !matches!(self, Field::TimeZone)
    }

    /// The wire value of value id `id`.
    pub fn value(self, id: u64) -> String {
        match self {
            Field::Name => format!("n{id}"),
            Field::LastOrder => format!("o{id}"),
            Field::TimeZone => TIME_ZONES[id as usize % TIME_ZONES.len()].to_string(),
        }
    }

    /// The value id of a wire value (the inverse of [`Field::value`]).
    pub fn parse(self, value: &str) -> Option<u64> {
        match self {
            Field::Name => value.strip_prefix('n')?.parse().ok(),
            Field::LastOrder => value.strip_prefix('o')?.parse().ok(),
            Field::TimeZone => TIME_ZONES
                .iter()
                .position(|z| *z == value)
                .map(|i| i as u64),
        }
    }
}

/// The email of user number `user`: `u<n>` for the live traffic's users, `b<n>` for a backfill's new ones
/// (numbered from [`USERS`]).
pub fn email(user: u32) -> String {
    match user.checked_sub(USERS) {
        Some(n) => format!("b{n}@example.com"),
        None => format!("u{user}@example.com"),
    }
}

/// The user number of a generated email (the inverse of [`email`]).
pub fn user_of(email: &str) -> Option<u32> {
    let local = email.split('@').next()?;
    if let Some(n) = local.strip_prefix('b') {
        return n.parse::<u32>().ok()?.checked_add(USERS);
    }
    local.strip_prefix('u')?.parse().ok().filter(|&u| u < USERS)
}

/// Whether `user` is one of a backfill's new users.
pub fn is_backfill_user(user: u32) -> bool {
    user >= USERS
}

/// `high` for a `share` of changes, chosen by the top bits of the change id (already drawn: the RNG stream,
/// and so the traffic, stay those of the same day without lanes).
fn priority_of(id_bits: u128, share: f64) -> Priority {
    let draw = (id_bits >> 64) as u64 as f64 / u64::MAX as f64;
    if draw < share {
        Priority::High
    } else {
        Priority::Normal
    }
}

/// One generated change: which user, when, and the value id of each field it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenChange {
    /// Position in generation order; also the value id of traced fields.
    pub seq: u64,
    pub user: u32,
    /// `occurred_at` and `accepted_at` (ingest is taken as instantaneous).
    pub at: DateTime<Utc>,
    pub fields: Vec<(Field, u64)>,
    /// Random bits of the change and request ids (from the seeded RNG: no system randomness per change).
    pub ids: (u128, u128),
    /// Changes per request ([`Scenario::changes_per_request`]).
    pub per_request: u32,
    /// Its lane ([`Scenario::high_share`]; `bulk` for a backfill's).
    pub priority: Priority,
    /// Its position in the day's backfill, for a backfill's change: its request is `n / per_request`.
    pub backfill: Option<u64>,
}

impl GenChange {
    /// The request id's bits: the change's own draw for a single-change request; in bulk, one id per
    /// run of `per_request` consecutive changes (derived from the run's index, so the RNG stream — and
    /// with it the traffic — is the same as the single-change day's).
    fn request_bits(&self) -> u128 {
        match (self.per_request, self.backfill) {
            (k, Some(n)) => (0xBF_u128 << 120) | u128::from(n / u64::from(k.max(1))),
            (0 | 1, None) => self.ids.1,
            (k, None) => (0xB0_u128 << 120) | u128::from(self.seq / u64::from(k)),
        }
    }

    /// Its position in its request.
    pub fn position(&self) -> u64 {
        self.backfill.unwrap_or(self.seq) % u64::from(self.per_request.max(1))
    }

    /// The domain change ingest would enqueue for it.
    pub fn to_change(&self) -> anyhow::Result<Change> {
        let uuid = |bits: u128| uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid();
        let mut change = Change {
            change_id: ChangeId(uuid(self.ids.0)),
            request_id: RequestId(uuid(self.request_bits())),
            email: Email::parse(&email(self.user))?,
            name: None,
            time_zone: None,
            custom_fields: BTreeMap::new(),
            occurred_at: self.at,
            priority: self.priority,
            accepted_at: self.at,
            position: u32::try_from(self.position()).unwrap_or(0),
            request_size: Some(self.per_request.max(1)),
        };
        for &(field, id) in &self.fields {
            let value = field.value(id);
            match field {
                Field::Name => change.name = Some(value),
                Field::TimeZone => change.time_zone = Some(TimeZone::parse(&value)?),
                Field::LastOrder => {
                    change.custom_fields.insert(CUSTOM_FIELD.to_string(), value);
                }
            }
        }
        Ok(change)
    }
}

/// Arrival rate over the day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Constant {
        per_hour: f64,
    },
    /// `mean × (1 + amplitude × cos(2π (t − peak) / 24 h))`.
    Diurnal {
        mean_per_hour: f64,
        amplitude: f64,
        peak_hour: f64,
    },
    /// `base_per_hour`, except `pulse_per_hour` from `from_hour` for `pulse_hours` of every
    /// `every_hours` (quiet spells, each ended by a backlog).
    Pulsed {
        base_per_hour: f64,
        pulse_per_hour: f64,
        every_hours: f64,
        from_hour: f64,
        pulse_hours: f64,
    },
}

impl Rate {
    pub fn per_hour_at(&self, hours: f64) -> f64 {
        match *self {
            Rate::Constant { per_hour } => per_hour,
            Rate::Diurnal {
                mean_per_hour,
                amplitude,
                peak_hour,
            } => {
                let phase = (hours - peak_hour) / 24.0 * std::f64::consts::TAU;
                (mean_per_hour * (1.0 + amplitude * phase.cos())).max(0.0)
            }
            Rate::Pulsed {
                base_per_hour,
                pulse_per_hour,
                every_hours,
                from_hour,
                pulse_hours,
            } => {
                let phase = hours.rem_euclid(every_hours);
                if (from_hour..from_hour + pulse_hours).contains(&phase) {
                    pulse_per_hour
                } else {
                    base_per_hour
                }
            }
        }
    }
}

/// A one-off spike on top of the base rate: `changes` spread evenly over `length` from `start`. Each spike
/// change is a different user (a bulk import), so coalescing cannot shrink it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    pub start: Duration,
    pub length: Duration,
    pub changes: u64,
}

/// A backfill (issue 14's `backfill` day): one change each to `users` new users (`b<n>@example.com`), on
/// the `bulk` lane, posted from `start` in requests of `per_request` changes, one request a second (as
/// `sluice backfill` posts them: 1 ms apart), while the live traffic goes on for `traffic_hours`; the day
/// runs `tail_hours` more.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backfill {
    pub start: Duration,
    pub users: u32,
    pub per_request: u32,
    pub traffic_hours: u32,
    pub tail_hours: u32,
}

impl Backfill {
    /// When its last change is posted, from the start of the day.
    pub fn posted_by(&self) -> Duration {
        self.start + Duration::from_millis(u64::from(self.users))
    }
}

/// The provider down for a while (issue 10's outage day): where in the day, how it fails, and how long the
/// day runs so the backlog can drain after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    /// From the start of the day.
    pub start: Duration,
    pub length: Duration,
    pub fault: Fault,
    /// Hours of traffic (the steady day's first 24 h are the same changes: same seed, same generator).
    pub traffic_hours: u32,
    /// Hours the policy keeps running after traffic stops.
    pub tail_hours: u32,
}

impl Outage {
    /// The outage on the clock of a day starting at `start`.
    pub fn window(&self, start: DateTime<Utc>) -> OutageWindow {
        let from = start + chrono::Duration::from_std(self.start).unwrap_or_default();
        OutageWindow {
            from,
            until: from + chrono::Duration::from_std(self.length).unwrap_or_default(),
            fault: self.fault,
        }
    }
}

/// One traffic scenario of issue 6 (and issue 10's outage day).
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: &'static str,
    pub summary: &'static str,
    pub rate: Rate,
    pub spike: Option<Spike>,
    /// Changes per `POST`: 1, or a client posting consecutive changes in bulk requests of this size (the
    /// changes themselves are the same; only their request ids, positions and request sizes differ).
    pub changes_per_request: u32,
    /// The provider down for part of the day.
    pub outage: Option<Outage>,
    /// Another client of the provider account spends this percentage of both limits, evenly (0: the
    /// account is Sluice's alone).
    pub other_client_percent: u32,
    /// Share of changes posted `high` (the urgent day's 1 %), the rest `normal`; drawn from each change's
    /// id bits, so the traffic itself is the same as with none.
    pub high_share: f64,
    /// A backfill posted on the `bulk` lane during the day.
    pub backfill: Option<Backfill>,
    /// How the provider counts its limit: Drip's documented clock hour, or a rolling one.
    pub provider_quota: QuotaModel,
}

impl Scenario {
    /// Expected changes in `hours` hours (the spike included).
    pub fn expected_changes(&self, hours: u32) -> f64 {
        let base: f64 = (0..hours * 60)
            .map(|m| self.rate.per_hour_at((f64::from(m) + 0.5) / 60.0) / 60.0)
            .sum();
        base + self.spike.map_or(0.0, |s| s.changes as f64)
    }
}

/// Steady, saturated, bursty and diurnal.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "steady",
            summary: "40,000 changes/h all day",
            rate: Rate::Constant { per_hour: 40_000.0 },
            spike: None,
            changes_per_request: 1,
            high_share: 0.0,
            outage: None,
            other_client_percent: 0,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        },
        Scenario {
            name: "steady-bulk",
            summary: "the steady day's changes, posted in bulk requests of 100 (the cost estimate's second column)",
            rate: Rate::Constant { per_hour: 40_000.0 },
            spike: None,
            changes_per_request: 100,
            high_share: 0.0,
            outage: None,
            other_client_percent: 0,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        },
        Scenario {
            name: "saturated",
            summary: "200,000 changes/h all day (3.7× capacity)",
            rate: Rate::Constant {
                per_hour: 200_000.0,
            },
            spike: None,
            changes_per_request: 1,
            high_share: 0.0,
            outage: None,
            other_client_percent: 0,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        },
        Scenario {
            name: "urgent",
            summary: "the saturated day with 1 % of changes posted `high`: they jump the backlog on their lane",
            rate: Rate::Constant {
                per_hour: 200_000.0,
            },
            spike: None,
            changes_per_request: 1,
            high_share: 0.01,
            outage: None,
            other_client_percent: 0,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        },
        Scenario {
            name: "bursty",
            summary: "20,000 changes/h, plus 100,000 changes to distinct users within 5 min at 06:00",
            rate: Rate::Constant { per_hour: 20_000.0 },
            spike: Some(Spike {
                start: Duration::from_secs(6 * 3_600),
                length: Duration::from_secs(300),
                changes: 100_000,
            }),
            changes_per_request: 1,
            high_share: 0.0,
            outage: None,
            other_client_percent: 0,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        },
        Scenario {
            name: "diurnal",
            summary: "mean 40,000 changes/h, 10,000/h at 03:00 to 70,000/h at 15:00",
            rate: Rate::Diurnal {
                mean_per_hour: 40_000.0,
                amplitude: 0.75,
                peak_hour: 15.0,
            },
            spike: None,
            changes_per_request: 1,
            high_share: 0.0,
            outage: None,
            other_client_percent: 0,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        },
        Scenario {
            name: "shared-account",
            summary: "the steady day's 40,000 changes/h; another client of the account spends 20 % of both limits",
            rate: Rate::Constant { per_hour: 40_000.0 },
            spike: None,
            changes_per_request: 1,
            high_share: 0.0,
            outage: None,
            other_client_percent: 20,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        },
        Scenario {
            name: "backfill",
            summary: "the steady day's 40,000 changes/h, plus a backfill of 1,000,000 new users posted on `bulk` at 02:00",
            rate: Rate::Constant { per_hour: 40_000.0 },
            spike: None,
            changes_per_request: 1,
            high_share: 0.0,
            outage: None,
            other_client_percent: 0,
            backfill: Some(Backfill {
                start: Duration::from_secs(2 * 3_600),
                users: 1_000_000,
                per_request: 1_000,
                traffic_hours: 36,
                tail_hours: 1,
            }),
            provider_quota: QuotaModel::Fixed,
        },
        rolling_provider(QuotaModel::Rolling),
        rolling_provider(QuotaModel::Fixed),
    ]
}

/// The rolling-provider day (issue 14): every four hours a quiet spell of 3 h 40 min (2,000 changes/h,
/// less than the individual limit, so quota carries over in fixed mode), then 20 minutes at
/// 480,000 changes/h from 40 minutes past the hour — a backlog that starts mid-window and lasts into the
/// next (41,800 changes/h on average, 78 % of capacity). `rolling-provider`
/// has the provider count a rolling hour; `fixed-hour-provider` is the same traffic against Drip's
/// documented clock hour.
pub fn rolling_provider(provider_quota: QuotaModel) -> Scenario {
    let (name, summary) = match provider_quota {
        QuotaModel::Rolling => (
            "rolling-provider",
            "every 4 h: 3 h 40 min quiet (2,000 changes/h), then 20 min at 480,000/h from :40; the provider counts a rolling hour",
        ),
        QuotaModel::Fixed => (
            "fixed-hour-provider",
            "the rolling-provider day's traffic against a provider that counts clock hours",
        ),
    };
    Scenario {
        name,
        summary,
        rate: Rate::Pulsed {
            base_per_hour: 2_000.0,
            pulse_per_hour: 480_000.0,
            every_hours: 4.0,
            from_hour: 3.0 + 40.0 / 60.0,
            pulse_hours: 20.0 / 60.0,
        },
        spike: None,
        changes_per_request: 1,
        high_share: 0.0,
        outage: None,
        other_client_percent: 0,
        provider_quota,
        backfill: None,
    }
}

/// Where the outage days put their outage and how long they run (the `sluice-sim` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutagePlan {
    /// Hour of the day the provider goes down.
    pub start_hour: u32,
    pub hours: u32,
    pub traffic_hours: u32,
    pub tail_hours: u32,
    /// `PROVIDER_TIMEOUT_MS` of the drain (what a timed-out call takes).
    pub provider_timeout: Duration,
}

/// The steady day's load with the provider down for `plan.hours` from `plan.start_hour`: `outage` answers
/// 503 at once, `outage-timeout` lets every call hang until the provider timeout.
pub fn outage_scenarios(plan: OutagePlan) -> Vec<Scenario> {
    let steady = Rate::Constant { per_hour: 40_000.0 };
    let outage = |fault| Outage {
        start: Duration::from_secs(u64::from(plan.start_hour) * 3_600),
        length: Duration::from_secs(u64::from(plan.hours) * 3_600),
        fault,
        traffic_hours: plan.traffic_hours,
        tail_hours: plan.tail_hours,
    };
    vec![
        Scenario {
            name: "outage",
            summary: "the steady day's 40,000 changes/h; during the outage every provider call answers 503 at once",
            rate: steady,
            spike: None,
            changes_per_request: 1,
            high_share: 0.0,
            outage: Some(outage(Fault::Unavailable)),
            other_client_percent: 0,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        },
        Scenario {
            name: "outage-timeout",
            summary: "as `outage`, but every call hangs until the provider timeout",
            rate: steady,
            spike: None,
            changes_per_request: 1,
            high_share: 0.0,
            outage: Some(outage(Fault::Timeout(plan.provider_timeout))),
            other_client_percent: 0,
            backfill: None,
            provider_quota: QuotaModel::Fixed,
        },
    ]
}

/// Generates a scenario's changes minute by minute, strictly increasing in time (1 ms apart at least, so
/// "newer" is never a tie).
pub struct Traffic {
    scenario: Scenario,
    rng: StdRng,
    zipf: Zipf<f64>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    next_minute: i64,
    buffer: VecDeque<GenChange>,
    seq: u64,
    last_ms: i64,
    spike_users: Vec<u32>,
    spike_sent: u64,
    backfill_sent: u32,
}

/// What brings a change in a minute: the base rate (a Zipf user), the spike (its user), or the backfill
/// (its change's number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Arrival {
    Live,
    Spike(u32),
    Backfill(u32),
}

impl Traffic {
    /// Traffic from `start` for `length`; the same seed gives the same changes.
    pub fn new(
        scenario: Scenario,
        start: DateTime<Utc>,
        length: Duration,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let zipf = Zipf::new(f64::from(USERS), ZIPF_EXPONENT)?;
        let mut spike_users: Vec<u32> = (0..USERS).collect();
        spike_users.shuffle(&mut rng);
        Ok(Self {
            scenario,
            rng,
            zipf,
            start,
            end: start + chrono::Duration::from_std(length)?,
            next_minute: 0,
            buffer: VecDeque::new(),
            seq: 0,
            last_ms: i64::MIN,
            spike_users,
            spike_sent: 0,
            backfill_sent: 0,
        })
    }

    /// Every change that occurs before `t`, in time order.
    pub fn until(&mut self, t: DateTime<Utc>) -> Vec<GenChange> {
        while self.minute_start(self.next_minute) < t.min(self.end) {
            self.generate_minute();
        }
        let mut out = Vec::new();
        while self.buffer.front().is_some_and(|c| c.at < t) {
            if let Some(c) = self.buffer.pop_front() {
                out.push(c);
            }
        }
        out
    }

    fn minute_start(&self, minute: i64) -> DateTime<Utc> {
        self.start + chrono::Duration::minutes(minute)
    }

    fn generate_minute(&mut self) {
        let minute = self.next_minute;
        self.next_minute += 1;
        let from = self.minute_start(minute);
        let from_ms = from.timestamp_millis();
        let mut arrivals = self.live_arrivals(minute);
        self.spike_arrivals(minute, &mut arrivals);
        self.backfill_arrivals(minute, &mut arrivals);
        arrivals.sort_unstable();
        for (offset, arrival) in arrivals {
            let ms = (from_ms + offset).max(self.last_ms + 1);
            self.last_ms = ms;
            let (user, backfill) = match arrival {
                Arrival::Live => (self.zipf_user(), None),
                Arrival::Spike(user) => (user, None),
                Arrival::Backfill(n) => (USERS + n, Some(u64::from(n))),
            };
            let seq = self.seq;
            self.seq += 1;
            let fields = self.fields(seq);
            let ids = (self.rng.random(), self.rng.random());
            let at = DateTime::from_timestamp_millis(ms).unwrap_or(from);
            if at >= self.end {
                continue;
            }
            let (per_request, priority) = match (backfill, self.scenario.backfill) {
                (Some(_), Some(b)) => (b.per_request, Priority::Bulk),
                _ => (
                    self.scenario.changes_per_request,
                    priority_of(ids.0, self.scenario.high_share),
                ),
            };
            self.buffer.push_back(GenChange {
                seq,
                user,
                at,
                fields,
                ids,
                per_request,
                priority,
                backfill,
            });
        }
    }

    /// The base rate's arrivals in `minute`: (offset in ms within the minute, [`Arrival::Live`]).
    fn live_arrivals(&mut self, minute: i64) -> Vec<(i64, Arrival)> {
        let hours = (minute as f64 + 0.5) / 60.0;
        let lambda = self.scenario.rate.per_hour_at(hours) / 60.0;
        let base = if lambda > 0.0 {
            Poisson::new(lambda).map_or(0, |p| p.sample(&mut self.rng) as u64)
        } else {
            0
        };
        (0..base)
            .map(|_| (self.rng.random_range(0..60_000), Arrival::Live))
            .collect()
    }

    fn spike_arrivals(&mut self, minute: i64, arrivals: &mut Vec<(i64, Arrival)>) {
        let Some(spike) = self.scenario.spike else {
            return;
        };
        let s_from = spike.start.as_millis() as i64;
        let len = (spike.length.as_millis() as i64).max(1);
        let m_from = minute * 60_000;
        while self.spike_sent < spike.changes {
            let at = s_from + (self.spike_sent as i64 * len) / spike.changes as i64;
            if at >= m_from + 60_000 {
                break;
            }
            let user = self.spike_users[(self.spike_sent % u64::from(USERS)) as usize];
            arrivals.push(((at - m_from).max(0), Arrival::Spike(user)));
            self.spike_sent += 1;
        }
    }

    /// The backfill's changes posted in `minute`: one every millisecond from its start.
    fn backfill_arrivals(&mut self, minute: i64, arrivals: &mut Vec<(i64, Arrival)>) {
        let Some(backfill) = self.scenario.backfill else {
            return;
        };
        let b_from = backfill.start.as_millis() as i64;
        let m_from = minute * 60_000;
        while self.backfill_sent < backfill.users {
            let at = b_from + i64::from(self.backfill_sent);
            if at >= m_from + 60_000 {
                break;
            }
            arrivals.push(((at - m_from).max(0), Arrival::Backfill(self.backfill_sent)));
            self.backfill_sent += 1;
        }
    }

    fn zipf_user(&mut self) -> u32 {
        let rank = self.zipf.sample(&mut self.rng) as u32;
        rank.clamp(1, USERS) - 1
    }

    /// One field (70 %) or two (30 %): name 40 %, time_zone 20 %, last_order 40 %.
    fn fields(&mut self, seq: u64) -> Vec<(Field, u64)> {
        let count = if self.rng.random_bool(0.7) { 1 } else { 2 };
        let mut pool = vec![
            (Field::Name, 0.4),
            (Field::TimeZone, 0.2),
            (Field::LastOrder, 0.4),
        ];
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let total: f64 = pool.iter().map(|(_, w)| w).sum();
            let mut pick = self.rng.random_range(0.0..total);
            let mut chosen = pool.len() - 1;
            for (i, (_, w)) in pool.iter().enumerate() {
                if pick < *w {
                    chosen = i;
                    break;
                }
                pick -= w;
            }
            let (field, _) = pool.remove(chosen);
            let id = match field {
                Field::TimeZone => self.rng.random_range(0..TIME_ZONES.len() as u64),
                _ => seq,
            };
            out.push((field, id));
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    }

    #[test]
    fn same_seed_same_traffic_strictly_increasing() {
        let s = scenarios().remove(0);
        let mut a = Traffic::new(s.clone(), start(), Duration::from_secs(600), 7).unwrap();
        let mut b = Traffic::new(s, start(), Duration::from_secs(600), 7).unwrap();
        let t = start() + chrono::Duration::seconds(600);
        let (xa, xb) = (a.until(t), b.until(t));
        assert_eq!(xa, xb);
        // 40,000/h over 10 minutes: about 6,667.
        assert!((6_300..7_000).contains(&xa.len()), "{}", xa.len());
        assert!(
            xa.windows(2)
                .all(|w| w[0].at < w[1].at && w[0].seq < w[1].seq)
        );
        assert!(xa.iter().all(|c| (1..=2).contains(&c.fields.len())));
    }

    #[test]
    fn the_rolling_provider_day_is_quiet_spells_each_ended_by_a_backlog_from_40_minutes_past() {
        let day = rolling_provider(QuotaModel::Rolling);
        assert_eq!(day.provider_quota, QuotaModel::Rolling);
        let control = rolling_provider(QuotaModel::Fixed);
        assert_eq!(
            (control.rate, control.provider_quota),
            (day.rate, QuotaModel::Fixed)
        );
        let at = |h: f64| day.rate.per_hour_at(h);
        assert_eq!(
            (at(0.5), at(3.6), at(3.7), at(3.99), at(4.0)),
            (2_000.0, 2_000.0, 480_000.0, 480_000.0, 2_000.0)
        );
        assert_eq!(at(23.8), 480_000.0);
        // 6 pulses of 160,000 changes and 22 h of 2,000/h.
        let expected = day.expected_changes(24);
        assert!(
            (expected - (6.0 * 160_000.0 + 22.0 * 2_000.0)).abs() < 100.0,
            "{expected}"
        );
    }

    #[test]
    fn the_urgent_day_is_the_saturated_one_with_one_percent_high() {
        let day = |name: &str| {
            let s = scenarios().into_iter().find(|s| s.name == name).unwrap();
            let mut t = Traffic::new(s, start(), Duration::from_secs(600), 7).unwrap();
            t.until(start() + chrono::Duration::seconds(600))
        };
        let (saturated, urgent) = (day("saturated"), day("urgent"));
        assert_eq!(saturated.len(), urgent.len());
        let high = urgent
            .iter()
            .filter(|c| c.priority == Priority::High)
            .count();
        // 200,000/h over 10 minutes: ~33,300 changes, ~333 of them high.
        assert!(
            (250..420).contains(&high),
            "{high} high of {}",
            urgent.len()
        );
        for (a, b) in saturated.iter().zip(&urgent) {
            assert_eq!(
                (a.seq, a.user, a.at, &a.fields),
                (b.seq, b.user, b.at, &b.fields)
            );
            assert_eq!(a.priority, Priority::Normal);
            assert_eq!(b.to_change().unwrap().priority, b.priority);
        }
    }

    #[test]
    fn values_round_trip_and_changes_are_valid() {
        for f in [Field::Name, Field::TimeZone, Field::LastOrder] {
            assert_eq!(f.parse(&f.value(17)), Some(17));
        }
        let mut t =
            Traffic::new(scenarios().remove(0), start(), Duration::from_secs(120), 1).unwrap();
        for c in t.until(start() + chrono::Duration::seconds(120)) {
            let change = c.to_change().unwrap();
            assert_eq!(user_of(change.email.as_str()), Some(c.user));
        }
    }

    /// A scenario's changes (seed 3) from `hour` for `minutes`.
    fn generated_between(name: &str, hour: i64, minutes: i64) -> Vec<GenChange> {
        let day = scenarios().into_iter().find(|s| s.name == name).unwrap();
        let from = start() + chrono::Duration::hours(hour);
        let length = Duration::from_secs((hour as u64 + 1) * 3_600);
        let mut t = Traffic::new(day, start(), length, 3).unwrap();
        let before = t.until(from);
        assert!(
            before
                .iter()
                .all(|c| c.backfill.is_none() && !is_backfill_user(c.user))
        );
        t.until(from + chrono::Duration::minutes(minutes))
    }

    #[test]
    fn the_spike_is_one_change_per_distinct_user() {
        let spike = generated_between("bursty", 6, 5);
        assert!(spike.len() >= 100_000, "{}", spike.len());
        let mut users: Vec<u32> = spike.iter().map(|c| c.user).collect();
        users.sort_unstable();
        users.dedup();
        assert!(users.len() >= 100_000 * 9 / 10);
    }

    #[test]
    fn the_backfill_is_one_change_per_new_user_on_bulk_in_requests_of_a_thousand() {
        let posting = generated_between("backfill", 2, 20);
        let backfill: Vec<&GenChange> = posting.iter().filter(|c| c.backfill.is_some()).collect();
        assert_eq!(backfill.len(), 1_000_000);
        let live = posting.len() - backfill.len();
        // 40,000/h over 20 minutes: about 13,300 live changes go on meanwhile, on `normal`.
        assert!((12_500..14_200).contains(&live), "{live}");
        let mut users: Vec<u32> = backfill.iter().map(|c| c.user).collect();
        users.sort_unstable();
        users.dedup();
        assert_eq!(users.len(), 1_000_000);
        let first = backfill[0].to_change().unwrap();
        let last = backfill[999_999].to_change().unwrap();
        assert_eq!(first.email.as_str(), "b0@example.com");
        assert_eq!(user_of(last.email.as_str()), Some(USERS + 999_999));
        assert_eq!(
            (first.priority, first.request_size, first.position),
            (Priority::Bulk, Some(1_000), 0)
        );
        let same_request = backfill[999].to_change().unwrap();
        assert_eq!(
            (same_request.request_id, same_request.position),
            (first.request_id, 999)
        );
        assert_ne!(
            backfill[1_000].to_change().unwrap().request_id,
            first.request_id
        );
        assert!(posting.windows(2).all(|w| w[0].at < w[1].at));
        assert!(
            posting
                .iter()
                .filter(|c| c.backfill.is_none())
                .all(|c| c.priority == Priority::Normal)
        );
    }
}
