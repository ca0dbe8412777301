//! `sluice status`: the state of a deployment at a glance, read-only.
//!
//! Quota comes from the drain's own ledger (`quota#<kind>#<window_start>`, a consistent `GetItem`: reading
//! never reserves; with the part the ledger adopted from the provider's count, another client's requests), queue depths from `GetQueueAttributes` (nothing is received, so no receive count
//! moves), lease and circuit from their items in the table: every read through the library's adapters
//! ([`DynamoState`], [`queue_backlog`]), but the oldest message's age, which is a CloudWatch metric.
//! [`render`](mod@render) is the human view.

pub mod render;
#[cfg(test)]
mod tests;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice::adapters::dynamo::DynamoState;
use sluice::adapters::sqs::queue_backlog;
use sluice::config::Limits;
use sluice::drain::QuotaSummary;
use std::collections::BTreeMap;

use sluice::domain::Priority;
use sluice::ports::{
    Backlog, CircuitState, QuotaKind, QuotaLedger, QuotaModel, Window, WindowUsage,
};

use crate::args::{GlobalArgs, StatusArgs};
use crate::stack::DeployedStack;

pub use render::render;

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
    /// The changes queue: the normal lane's.
    pub queue: QueueStatus,
    /// Every lane with a queue of its own (`high`, `normal`, `bulk`), its depth; one entry on a stack
    /// from before lanes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lanes: BTreeMap<Priority, LaneDepth>,
    pub dlq: DlqDepth,
    pub lease: LeaseStatus,
    pub circuit: CircuitStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStatus {
    pub start: DateTime<Utc>,
    /// A rolling window's end is now: it is the `length_s` before the status was read.
    pub end: DateTime<Utc>,
    pub length_s: u32,
    /// Seconds until the next window opens (and quota resets); 0 for a rolling window, whose units free
    /// one by one, a window after each was reserved.
    pub next_in_s: i64,
    /// `QUOTA_MODEL`: fixed windows, or a rolling one (the quota used is the trailing window's).
    #[serde(default)]
    pub model: QuotaModel,
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

/// One lane's queue depth (approximate, read without receiving).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
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
    let window = limits.window_at(now);
    let read = read_all(sdk, stack, window, now).await?;
    let summary = |limit: u32, usage: WindowUsage| QuotaSummary {
        limit,
        used: usage.used,
        left: limit.saturating_sub(usage.used),
        adopted: usage.adopted,
    };
    let batch = summary(limits.batch_per_window, read.used_batch);
    let individual = summary(limits.individual_per_window, read.used_individual);
    Ok(Status {
        stack: stack.name.clone(),
        at: now,
        window: WindowStatus {
            start: DateTime::from_timestamp(window.start, 0).unwrap_or_default(),
            end: window.end_time(),
            length_s: window.length,
            next_in_s: window.end() - now.timestamp(),
            model: window.model,
        },
        quota: QuotaStatus {
            records_left: u64::from(batch.left) * u64::from(limits.batch_size)
                + u64::from(individual.left),
            batch,
            individual,
            batch_size: limits.batch_size,
        },
        queue: queue_status(&read.queue, read.oldest),
        lanes: read
            .lanes
            .iter()
            .map(|&(lane, b)| {
                let depth = LaneDepth {
                    visible: b.visible,
                    in_flight: b.in_flight,
                    delayed: b.delayed,
                };
                (lane, depth)
            })
            .collect(),
        dlq: DlqDepth {
            visible: read.dlq.visible,
            in_flight: read.dlq.in_flight,
        },
        lease: lease_status(read.lease, now),
        circuit: circuit_status(read.circuit, now),
    })
}

/// What `status` reads, before it is shaped into a [`Status`].
struct Readings {
    used_batch: WindowUsage,
    used_individual: WindowUsage,
    queue: Backlog,
    /// Every lane's own queue's depth (the normal one's is `queue`).
    lanes: Vec<(Priority, Backlog)>,
    dlq: Backlog,
    lease: Option<(String, DateTime<Utc>)>,
    circuit: CircuitState,
    /// (age in seconds, sample time), or the note that says why there is none.
    oldest: Result<(i64, DateTime<Utc>), String>,
}

/// Every read at once: the ledger's quota for `window`, both queues' depths, lease, circuit, oldest age.
async fn read_all(
    sdk: &SdkConfig,
    stack: &DeployedStack,
    window: Window,
    now: DateTime<Utc>,
) -> anyhow::Result<Readings> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let state = DynamoState::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &stack.outputs.table_name,
    );
    let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
    let outputs = &stack.outputs;
    let own_lane = |url: Option<String>| {
        let sqs = &sqs;
        async move {
            match url {
                Some(url) => queue_depth(sqs, &url).await.map(Some),
                None => Ok(None),
            }
        }
    };
    let (used_batch, used_individual, queue, high, bulk, dlq, lease, circuit, oldest) = tokio::try_join!(
        async { Ok::<_, anyhow::Error>(state.usage(QuotaKind::Batch, window).await?) },
        async { Ok(state.usage(QuotaKind::Individual, window).await?) },
        queue_depth(&sqs, &stack.outputs.queue_url),
        own_lane(outputs.high_queue_url.clone()),
        own_lane(outputs.bulk_queue_url.clone()),
        queue_depth(&sqs, &stack.outputs.dlq_url),
        async { Ok(state.lease().await?) },
        async { Ok(state.circuit_state().await?) },
        async { Ok(oldest_age(&cloudwatch, &stack.outputs.queue_url, now).await) },
    )?;
    let lanes = [
        (Priority::High, high),
        (Priority::Normal, Some(queue)),
        (Priority::Bulk, bulk),
    ]
    .into_iter()
    .filter_map(|(lane, depth)| depth.map(|d| (lane, d)))
    .collect();
    Ok(Readings {
        used_batch,
        used_individual,
        queue,
        lanes,
        dlq,
        lease,
        circuit,
        oldest,
    })
}

fn queue_status(queue: &Backlog, oldest: Result<(i64, DateTime<Utc>), String>) -> QueueStatus {
    QueueStatus {
        visible: queue.visible,
        in_flight: queue.in_flight,
        delayed: queue.delayed,
        oldest_age_s: oldest.as_ref().ok().map(|(age, _)| *age),
        oldest_age_at: oldest.as_ref().ok().map(|(_, at)| *at),
        oldest_age_note: oldest.err(),
    }
}

fn lease_status(lease: Option<(String, DateTime<Utc>)>, now: DateTime<Utc>) -> LeaseStatus {
    LeaseStatus {
        held: lease.as_ref().is_some_and(|(_, until)| *until > now),
        holder: lease.as_ref().map(|(h, _)| h.clone()),
        until: lease.map(|(_, until)| until),
    }
}

fn circuit_status(circuit: CircuitState, now: DateTime<Utc>) -> CircuitStatus {
    CircuitStatus {
        open: circuit.open_until.is_some_and(|until| until > now),
        half_open: circuit.open_until.is_some_and(|until| until <= now),
        until: circuit.open_until,
        failures: circuit.failures,
        reason: Some(circuit.reason).filter(|r| !r.is_empty()),
    }
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
