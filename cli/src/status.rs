//! `sluice status`: the state of a deployment at a glance, read-only.
//!
//! Quota comes from the drain's own ledger (`quota#<kind>#<window_start>`, a consistent `GetItem`: reading
//! never reserves), queue depths from `GetQueueAttributes` (nothing is received, so no receive count
//! moves), lease and circuit from their items in the table.

use aws_config::SdkConfig;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sluice::adapters::dynamo::DynamoState;
use sluice::adapters::sqs::queue_backlog;
use sluice::config::Limits;
use sluice::drain::QuotaSummary;
use sluice::ports::{Backlog, QuotaKind, QuotaLedger, Window};

use crate::args::{GlobalArgs, StatusArgs};
use crate::format;
use crate::stack::DeployedStack;

/// Why there is no oldest-message age: SQS exposes it only as a CloudWatch metric, and peeking at the
/// queue would raise the receive counts that push messages toward the DLQ. `status` reads the metric; this
/// is the note when CloudWatch has no datapoint for the queue (LocalStack publishes none).
pub const OLDEST_AGE_NOTE: &str =
    "n/a (no CloudWatch datapoint for ApproximateAgeOfOldestMessage in the last 15 minutes)";

/// How far back `status` looks for the queue's `ApproximateAgeOfOldestMessage` (SQS publishes it every
/// minute while the queue is active).
const OLDEST_AGE_LOOKBACK_S: i64 = 15 * 60;

/// What `sluice status --json` prints. Field names are stable (scripts rely on them); new fields may be
/// added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub stack: String,
    pub at: DateTime<Utc>,
    pub window: WindowStatus,
    pub quota: QuotaStatus,
    pub queue: QueueStatus,
    pub dlq: DlqDepth,
    pub lease: LeaseStatus,
    pub circuit: CircuitStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStatus {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub length_s: u32,
    /// Seconds until the next window opens (and quota resets).
    pub next_in_s: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaStatus {
    /// Batch requests this window.
    pub batch: QuotaSummary,
    /// Individual requests this window.
    pub individual: QuotaSummary,
    pub batch_size: u32,
    /// Records the provider still takes this window: `batch.left × batch_size + individual.left`.
    pub records_left: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Waiting to be received (ApproximateNumberOfMessages).
    pub visible: u64,
    /// Received by a drain and not yet settled, or waiting out a retry backoff
    /// (ApproximateNumberOfMessagesNotVisible).
    pub in_flight: u64,
    pub delayed: u64,
    /// Age of the oldest message in seconds, when it can be read without side effects.
    pub oldest_age_s: Option<i64>,
    /// When CloudWatch sampled `oldest_age_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_at: Option<DateTime<Utc>>,
    /// Why `oldest_age_s` is null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqDepth {
    pub visible: u64,
    pub in_flight: u64,
}

impl DlqDepth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// A drain run holds the single-flight lease right now.
    pub held: bool,
    pub holder: Option<String>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitStatus {
    /// Provider calls are paused after repeated failures.
    pub open: bool,
    /// The cool-down has passed: the next drain run makes one probe call, and closes it if that answers.
    #[serde(default)]
    pub half_open: bool,
    /// Open: the next probe. Half-open: when the cool-down ended.
    pub until: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// Consecutive transient provider failures, kept across runs (a success resets them).
    #[serde(default)]
    pub failures: u32,
}

/// `sluice status [--json]`.
pub async fn run(args: &StatusArgs, global: &GlobalArgs, sdk: &SdkConfig) -> anyhow::Result<()> {
    let cf = aws_sdk_cloudformation::Client::new(sdk);
    let stack = crate::stack::read_stack(&cf, &global.stack_name).await?;
    let vars = crate::settings::function_env(&stack, |k| std::env::var(k).ok());
    let limits = crate::settings::limits(&vars)?;
    let status = gather(sdk, &stack, &limits, Utc::now()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// Reads everything `sluice status` shows, at `now`.
pub async fn gather(
    sdk: &SdkConfig,
    stack: &DeployedStack,
    limits: &Limits,
    now: DateTime<Utc>,
) -> anyhow::Result<Status> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let state = DynamoState::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &stack.outputs.table_name,
    );
    let window = Window::containing(now, limits.window_seconds);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
    let (used_batch, used_individual, queue, dlq, lease, circuit, oldest) = tokio::try_join!(
        async { Ok::<_, anyhow::Error>(state.used(QuotaKind::Batch, window).await?) },
        async { Ok(state.used(QuotaKind::Individual, window).await?) },
        queue_depth(&sqs, &stack.outputs.queue_url),
        queue_depth(&sqs, &stack.outputs.dlq_url),
        async { Ok(state.lease().await?) },
        async { Ok(state.circuit_state().await?) },
        async { Ok(oldest_age(&cloudwatch, &stack.outputs.queue_url, now).await) },
    )?;
    let summary = |limit: u32, used: u32| QuotaSummary {
        limit,
        used,
        left: limit.saturating_sub(used),
    };
    let batch = summary(limits.batch_per_window, used_batch);
    let individual = summary(limits.individual_per_window, used_individual);
    Ok(Status {
        stack: stack.name.clone(),
        at: now,
        window: WindowStatus {
            start: DateTime::from_timestamp(window.start, 0).unwrap_or_default(),
            end: window.end_time(),
            length_s: window.length,
            next_in_s: window.end() - now.timestamp(),
        },
        quota: QuotaStatus {
            records_left: u64::from(batch.left) * u64::from(limits.batch_size)
                + u64::from(individual.left),
            batch,
            individual,
            batch_size: limits.batch_size,
        },
        queue: QueueStatus {
            visible: queue.visible,
            in_flight: queue.in_flight,
            delayed: queue.delayed,
            oldest_age_s: oldest.as_ref().ok().map(|(age, _)| *age),
            oldest_age_at: oldest.as_ref().ok().map(|(_, at)| *at),
            oldest_age_note: oldest.err(),
        },
        dlq: DlqDepth {
            visible: dlq.visible,
            in_flight: dlq.in_flight,
        },
        lease: LeaseStatus {
            held: lease.as_ref().is_some_and(|(_, until)| *until > now),
            holder: lease.as_ref().map(|(h, _)| h.clone()),
            until: lease.map(|(_, until)| until),
        },
        circuit: CircuitStatus {
            open: circuit.open_until.is_some_and(|until| until > now),
            half_open: circuit.open_until.is_some_and(|until| until <= now),
            until: circuit.open_until,
            failures: circuit.failures,
            reason: Some(circuit.reason).filter(|r| !r.is_empty()),
        },
    })
}

/// The queue's `ApproximateAgeOfOldestMessage` from CloudWatch: the latest per-minute maximum of the last
/// 15 minutes, as (age in seconds, sample time). Never fails `status`: the error is the note to print.
async fn oldest_age(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    queue_url: &str,
    now: DateTime<Utc>,
) -> Result<(i64, DateTime<Utc>), String> {
    use aws_sdk_cloudwatch::primitives::DateTime as SdkTime;
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let queue_name = queue_url.rsplit('/').next().unwrap_or(queue_url);
    let out = cloudwatch
        .get_metric_statistics()
        .namespace("AWS/SQS")
        .metric_name("ApproximateAgeOfOldestMessage")
        .dimensions(
            Dimension::builder()
                .name("QueueName")
                .value(queue_name)
                .build(),
        )
        .start_time(SdkTime::from_secs(now.timestamp() - OLDEST_AGE_LOOKBACK_S))
        .end_time(SdkTime::from_secs(now.timestamp()))
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .map_err(|e| {
            format!(
                "n/a (reading CloudWatch failed: {})",
                aws_sdk_cloudwatch::error::DisplayErrorContext(e)
            )
        })?;
    let points: Vec<(i64, f64)> = out
        .datapoints()
        .iter()
        .filter_map(|p| Some((p.timestamp()?.secs(), p.maximum()?)))
        .collect();
    latest_sample(&points).ok_or_else(|| OLDEST_AGE_NOTE.to_owned())
}

/// The most recent (timestamp, value) sample as (age in whole seconds, sample time).
fn latest_sample(points: &[(i64, f64)]) -> Option<(i64, DateTime<Utc>)> {
    let &(at, value) = points.iter().max_by_key(|(at, _)| *at)?;
    Some((
        value.max(0.0).round() as i64,
        DateTime::from_timestamp(at, 0)?,
    ))
}

/// Approximate depth of a queue, read with `GetQueueAttributes` (receives nothing); errors name the queue.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<Backlog> {
    queue_backlog(sqs, url)
        .await
        .map_err(|e| anyhow::anyhow!("reading the depth of {url}: {e}"))
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The human view: a few aligned lines, quota as a small table.
pub fn render(status: &Status) -> String {
    let mut out = format!("stack {}  at {}\n\n", status.stack, time(status.at));
    let w = &status.window;
    out.push_str(&format!(
        "quota window   {} .. {} ({}), next window in {}\n",
        time(w.start),
        time(w.end),
        format::duration(i64::from(w.length_s)),
        format::duration(w.next_in_s)
    ));
    let q = &status.quota;
    let row = |kind: QuotaKind, s: &QuotaSummary| {
        vec![
            format!("  {}", kind.as_str()),
            s.used.to_string(),
            s.left.to_string(),
            s.limit.to_string(),
        ]
    };
    out.push_str(&format::table(
        &["  requests", "used", "left", "limit"],
        &[
            row(QuotaKind::Batch, &q.batch),
            row(QuotaKind::Individual, &q.individual),
        ],
    ));
    out.push_str(&format!(
        "  records left this window: {} ({} per batch)\n\n",
        q.records_left, q.batch_size
    ));
    let queue = &status.queue;
    out.push_str(&format!(
        "backlog        {} visible, {} in flight, {} delayed\n",
        queue.visible, queue.in_flight, queue.delayed
    ));
    let oldest = match (queue.oldest_age_s, &queue.oldest_age_note) {
        (Some(age), _) => match queue.oldest_age_at {
            Some(at) => format!(
                "{} (CloudWatch, sampled {})",
                format::duration(age),
                at.format("%H:%M UTC")
            ),
            None => format::duration(age),
        },
        (None, Some(note)) => note.clone(),
        (None, None) => "n/a".to_owned(),
    };
    out.push_str(&format!("oldest message {oldest}\n"));
    let dlq = &status.dlq;
    out.push_str(&format!(
        "dlq            {} message(s){}\n",
        dlq.total(),
        if dlq.total() > 0 {
            "  (sluice dlq list)"
        } else {
            ""
        }
    ));
    let lease = match (&status.lease, status.lease.held) {
        (
            LeaseStatus {
                holder: Some(h),
                until: Some(u),
                ..
            },
            true,
        ) => format!(
            "held by {h} until {} (in {})",
            time(*u),
            format::duration((*u - status.at).num_seconds())
        ),
        _ => "free (no drain running)".to_owned(),
    };
    out.push_str(&format!("drain lease    {lease}\n"));
    let c = &status.circuit;
    let reason = c
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let circuit = match (c.until, c.open, c.half_open) {
        (Some(u), true, _) => format!(
            "OPEN until {} (next probe in {}), {} consecutive failures{reason}",
            time(u),
            format::duration((u - status.at).num_seconds()),
            c.failures
        ),
        (_, _, true) => format!(
            "HALF-OPEN (the next drain run probes the provider), {} consecutive failures{reason}",
            c.failures
        ),
        _ if c.failures > 0 => format!(
            "closed (provider calls allowed), {} consecutive failure(s)",
            c.failures
        ),
        _ => "closed (provider calls allowed)".to_owned(),
    };
    out.push_str(&format!("circuit        {circuit}\n"));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn sample() -> Status {
        Status {
            stack: "sluice".into(),
            at: at("2025-03-01T10:23:45Z"),
            window: WindowStatus {
                start: at("2025-03-01T10:00:00Z"),
                end: at("2025-03-01T11:00:00Z"),
                length_s: 3600,
                next_in_s: 2175,
            },
            quota: QuotaStatus {
                batch: QuotaSummary {
                    limit: 50,
                    used: 2,
                    left: 48,
                },
                individual: QuotaSummary {
                    limit: 3600,
                    used: 5,
                    left: 3595,
                },
                batch_size: 1000,
                records_left: 51_595,
            },
            queue: QueueStatus {
                visible: 7,
                in_flight: 1,
                delayed: 0,
                oldest_age_s: None,
                oldest_age_at: None,
                oldest_age_note: Some(OLDEST_AGE_NOTE.into()),
            },
            dlq: DlqDepth {
                visible: 3,
                in_flight: 0,
            },
            lease: LeaseStatus {
                held: true,
                holder: Some("run-1".into()),
                until: Some(at("2025-03-01T10:24:30Z")),
            },
            circuit: CircuitStatus {
                open: false,
                half_open: false,
                until: None,
                reason: None,
                failures: 0,
            },
        }
    }

    #[test]
    fn the_oldest_age_is_the_latest_cloudwatch_sample() {
        assert_eq!(latest_sample(&[]), None);
        let got = latest_sample(&[
            (1_740_823_200, 90.4),
            (1_740_823_320, 212.6),
            (1_740_823_260, 150.0),
        ]);
        assert_eq!(got, Some((213, at("2025-03-01T10:02:00Z"))));
        assert_eq!(
            latest_sample(&[(1_740_823_200, -1.0)]).map(|(age, _)| age),
            Some(0)
        );
    }

    #[test]
    fn a_cloudwatch_age_is_shown_with_its_sample_time() {
        let mut status = sample();
        status.queue.oldest_age_s = Some(213);
        status.queue.oldest_age_at = Some(at("2025-03-01T10:02:00Z"));
        status.queue.oldest_age_note = None;
        let text = render(&status);
        assert!(
            text.contains("oldest message 3m 33s (CloudWatch, sampled 10:02 UTC)\n"),
            "{text}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["queue"]["oldest_age_s"], 213);
        assert_eq!(json["queue"]["oldest_age_at"], "2025-03-01T10:02:00Z");
        assert!(json["queue"].get("oldest_age_note").is_none());
    }

    #[test]
    fn the_table_shows_quota_backlog_dlq_lease_and_circuit() {
        let text = render(&sample());
        assert!(
            text.contains(
                "quota window   2025-03-01T10:00:00Z .. 2025-03-01T11:00:00Z (1h 00m), next window in 36m 15s"
            ),
            "{text}"
        );
        assert!(text.contains("  batch       2     48    50\n"), "{text}");
        assert!(text.contains("  individual  5     3595  3600\n"), "{text}");
        assert!(text.contains("records left this window: 51595"), "{text}");
        assert!(
            text.contains("backlog        7 visible, 1 in flight, 0 delayed"),
            "{text}"
        );
        assert!(
            text.contains(
                "oldest message n/a (no CloudWatch datapoint for ApproximateAgeOfOldestMessage"
            ),
            "{text}"
        );
        assert!(
            text.contains("dlq            3 message(s)  (sluice dlq list)"),
            "{text}"
        );
        assert!(
            text.contains("drain lease    held by run-1 until 2025-03-01T10:24:30Z (in 45s)"),
            "{text}"
        );
        assert!(text.contains("circuit        closed"), "{text}");
    }

    #[test]
    fn an_open_circuit_and_a_free_lease_read_plainly() {
        let mut status = sample();
        status.lease.held = false;
        status.circuit = CircuitStatus {
            open: true,
            half_open: false,
            until: Some(at("2025-03-01T10:28:45Z")),
            reason: Some("HTTP 503".into()),
            failures: 3,
        };
        let text = render(&status);
        assert!(text.contains("drain lease    free"), "{text}");
        assert!(
            text.contains(
                "circuit        OPEN until 2025-03-01T10:28:45Z (next probe in 5m 00s), 3 consecutive failures: HTTP 503"
            ),
            "{text}"
        );
        status.circuit.open = false;
        status.circuit.half_open = true;
        let text = render(&status);
        assert!(
            text.contains("circuit        HALF-OPEN (the next drain run probes the provider)"),
            "{text}"
        );
    }

    #[test]
    fn json_field_names_are_stable() {
        let json = serde_json::to_value(sample()).unwrap();
        for pointer in [
            "/stack",
            "/at",
            "/window/start",
            "/window/end",
            "/window/length_s",
            "/window/next_in_s",
            "/quota/batch/used",
            "/quota/batch/left",
            "/quota/batch/limit",
            "/quota/individual/used",
            "/quota/batch_size",
            "/quota/records_left",
            "/queue/visible",
            "/queue/in_flight",
            "/queue/delayed",
            "/queue/oldest_age_s",
            "/queue/oldest_age_note",
            "/dlq/visible",
            "/dlq/in_flight",
            "/lease/held",
            "/lease/holder",
            "/lease/until",
            "/circuit/open",
            "/circuit/until",
            "/circuit/reason",
            "/circuit/half_open",
            "/circuit/failures",
        ] {
            assert!(
                json.pointer(pointer).is_some(),
                "missing {pointer} in {json}"
            );
        }
        assert_eq!(json["window"]["start"], "2025-03-01T10:00:00Z");
        assert_eq!(json["queue"]["oldest_age_s"], serde_json::Value::Null);
        let back: Status = serde_json::from_value(json).unwrap();
        assert_eq!(back, sample());
    }
}
