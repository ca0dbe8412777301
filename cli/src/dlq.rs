//! `sluice dlq list|show|redrive`: the dead-letter queue for operators.
//!
//! SQS cannot read a message without receiving it, so `list` and `show` *peek*: each message is received
//! with a short visibility timeout ([`PEEK_VISIBILITY_S`]) and made visible again (visibility 0) as soon as
//! the scan ends. Nothing is deleted; the DLQ has no redrive policy, so the extra receives cannot move a
//! message anywhere. If the CLI dies mid-scan, the messages reappear by themselves after the timeout.
//!
//! `redrive` moves messages back to the changes queue. Without `--filter`/`--limit` SQS moves them itself
//! (`StartMessageMoveTask`, which SQS makes safe); otherwise, or where the move task is not available, the
//! CLI receives a batch, sends copies to the changes queue (`SendMessageBatch`) and only then deletes the
//! originals (`DeleteMessageBatch`). An interruption therefore never loses a message; at worst the batch in
//! flight (≤ 10 messages) exists twice, which is harmless: the drain coalesces copies of one change and
//! never resends a value already delivered. Ctrl-C finishes the batch in flight before stopping, so it
//! duplicates nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sluice::adapters::sqs::{ATTR_DETAIL, ATTR_REASON, ATTR_RECEIVE_COUNT, ATTR_SOURCE_MESSAGE_ID};
use sluice::domain::ChangeMessage;

use crate::args::{DlqCommand, GlobalArgs, RedriveFilter};
use crate::format;

/// Seconds a peeked message stays hidden if the CLI dies before making it visible again.
pub const PEEK_VISIBILITY_S: i32 = 30;
/// Seconds a message being redriven client-side stays hidden: long enough for one send and delete.
const MOVE_VISIBILITY_S: i32 = 60;
/// Seconds a message skipped by `--filter` stays hidden while the scan goes on (so a slow, rate-limited
/// scan does not meet it again); it is made visible again when the redrive ends.
const SKIP_VISIBILITY_S: i32 = 900;
/// The prefix of the attributes the drain writes on dead-lettered messages.
const SLUICE_ATTR_PREFIX: &str = "sluice.";
/// StartMessageMoveTask's highest rate.
const MOVE_TASK_MAX_RATE: u32 = 500;

impl RedriveFilter {
    /// The reason as `sluice dlq list` shows it.
    pub fn as_str(&self) -> &'static str {
        match self {
            RedriveFilter::Malformed => "malformed",
            RedriveFilter::Rejected => "rejected",
            RedriveFilter::RetriesExhausted => RETRIES_EXHAUSTED,
        }
    }
}

/// The reason the drain writes when a record's attempts ran out; also what a message SQS moved after
/// `maxReceiveCount` receives (it carries no `sluice.reason`) is listed as.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";

/// One dead-lettered message, read from SQS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqMessage {
    /// The DLQ message id (what `sluice dlq show` takes).
    pub id: String,
    /// `malformed`, `rejected`, `retries_exhausted` (the drain's `sluice.reason`; `retries_exhausted` also
    /// when SQS moved it, with no reason of its own).
    pub reason: String,
    /// The drain's detail (`sluice.detail`): the provider's answer or the parse error.
    pub detail: Option<String>,
    /// The subscriber's email, when the body has one. Shown redacted except by `show`.
    pub email: Option<String>,
    /// SentTimestamp: when the drain dead-lettered it, or for a message SQS moved, its first enqueue
    /// (retention counts from there).
    pub sent_at: Option<DateTime<Utc>>,
    /// Receives on the changes queue (`sluice.receive_count`), else SQS's ApproximateReceiveCount (which
    /// includes earlier `dlq list` peeks).
    pub receive_count: Option<u32>,
    /// The message id it had on the changes queue (`sluice.source_message_id`).
    pub source_message_id: Option<String>,
    /// The queue SQS moved it from (DeadLetterQueueSourceArn).
    pub source_queue_arn: Option<String>,
    /// Every message attribute as text.
    pub attributes: BTreeMap<String, String>,
    pub body: String,
}

impl DlqMessage {
    pub fn from_sqs(m: &Message) -> Self {
        let attributes: BTreeMap<String, String> = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let system =
            |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
        let body = m.body().unwrap_or_default().to_owned();
        let receive_count = attributes
            .get(ATTR_RECEIVE_COUNT)
            .cloned()
            .or_else(|| system(MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|v| v.parse().ok());
        Self {
            id: m.message_id().unwrap_or_default().to_owned(),
            reason: attributes
                .get(ATTR_REASON)
                .cloned()
                .unwrap_or_else(|| RETRIES_EXHAUSTED.to_owned()),
            detail: attributes.get(ATTR_DETAIL).cloned(),
            email: email_in(&body),
            sent_at: system(MessageSystemAttributeName::SentTimestamp)
                .and_then(|v| v.parse().ok())
                .and_then(DateTime::from_timestamp_millis),
            receive_count,
            source_message_id: attributes.get(ATTR_SOURCE_MESSAGE_ID).cloned(),
            source_queue_arn: system(MessageSystemAttributeName::DeadLetterQueueSourceArn),
            attributes,
            body,
        }
    }

    pub fn matches(&self, filter: Option<RedriveFilter>) -> bool {
        filter.is_none_or(|f| self.reason == f.as_str())
    }

    fn age_s(&self, now: DateTime<Utc>) -> Option<i64> {
        self.sent_at.map(|t| (now - t).num_seconds())
    }
}

/// The subscriber's email in a message body: a change message's, or any top-level `email` string of a
/// body that is JSON but not a valid change (a malformed message often still names its subscriber).
fn email_in(body: &str) -> Option<String> {
    if let Ok(message) = ChangeMessage::from_body(body) {
        return Some(message.into_change().email.as_str().to_owned());
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("email")?
        .as_str()
        .map(str::to_owned)
}

/// One row of `sluice dlq list --json`: the email redacted, the body left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    pub id: String,
    pub reason: String,
    pub email: String,
    pub age_s: Option<i64>,
    pub receive_count: Option<u32>,
    pub detail: Option<String>,
}

impl ListEntry {
    pub fn new(m: &DlqMessage, now: DateTime<Utc>) -> Self {
        Self {
            id: m.id.clone(),
            reason: m.reason.clone(),
            email: format::redacted_email(m.email.as_deref()),
            age_s: m.age_s(now),
            receive_count: m.receive_count,
            detail: m.detail.clone(),
        }
    }
}

/// The `sluice dlq list` table, with a one-line tally of reasons.
pub fn render_list(messages: &[DlqMessage], now: DateTime<Utc>, limit: u32) -> String {
    if messages.is_empty() {
        return "the DLQ is empty\n".to_owned();
    }
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let entry = ListEntry::new(m, now);
            vec![
                entry.id,
                entry.reason,
                entry.email,
                entry.age_s.map_or_else(|| "?".into(), format::duration),
                entry
                    .receive_count
                    .map_or_else(|| "?".into(), |c| c.to_string()),
                entry
                    .detail
                    .map(|d| format::shorten(&d, 60))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = format::table(
        &["id", "reason", "email", "age", "receives", "detail"],
        &rows,
    );
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for m in messages {
        *tally.entry(m.reason.as_str()).or_default() += 1;
    }
    let tally: Vec<String> = tally.iter().map(|(r, n)| format!("{n} {r}")).collect();
    out.push_str(&format!(
        "\n{} message(s): {}{}\n",
        messages.len(),
        tally.join(", "),
        if messages.len() as u64 >= u64::from(limit) {
            format!(" (first {limit}; --limit for more)")
        } else {
            String::new()
        }
    ));
    out
}

/// `sluice dlq show`: everything about one message, the body pretty-printed when it is JSON.
pub fn render_show(m: &DlqMessage, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<13}{v}\n"));
    line("id", m.id.clone());
    line("reason", m.reason.clone());
    line(
        "detail",
        m.detail.clone().unwrap_or_else(|| match m.reason.as_str() {
            RETRIES_EXHAUSTED => {
                "moved by SQS after maxReceiveCount receives (transient failures)".into()
            }
            _ => "-".into(),
        }),
    );
    line("email", m.email.clone().unwrap_or_else(|| "-".into()));
    line(
        "age",
        match (m.age_s(now), m.sent_at) {
            (Some(age), Some(at)) => format!(
                "{} (sent {})",
                format::duration(age),
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            _ => "?".into(),
        },
    );
    line(
        "receives",
        m.receive_count
            .map_or_else(|| "?".into(), |c| c.to_string()),
    );
    if let Some(source) = &m.source_message_id {
        line("source id", source.clone());
    }
    if let Some(arn) = &m.source_queue_arn {
        line("source queue", arn.clone());
    }
    let others: Vec<String> = m
        .attributes
        .iter()
        .filter(|(k, _)| {
            ![
                ATTR_REASON,
                ATTR_DETAIL,
                ATTR_SOURCE_MESSAGE_ID,
                ATTR_RECEIVE_COUNT,
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| format!("  {k} = {v}\n"))
        .collect();
    if !others.is_empty() {
        out.push_str("attributes\n");
        out.push_str(&others.concat());
    }
    let body = serde_json::from_str::<serde_json::Value>(&m.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| m.body.clone());
    out.push_str("body\n");
    out.push_str(&body);
    out.push('\n');
    out
}

/// `sluice dlq list|show|redrive`.
pub async fn run(command: &DlqCommand, global: &GlobalArgs, sdk: &SdkConfig) -> anyhow::Result<()> {
    let cf = aws_sdk_cloudformation::Client::new(sdk);
    let stack = crate::stack::read_stack(&cf, &global.stack_name).await?;
    let sqs = Client::new(sdk);
    let dlq_url = &stack.outputs.dlq_url;
    match command {
        DlqCommand::List(args) => {
            let messages = peek(&sqs, dlq_url, args.limit, None).await?;
            let now = Utc::now();
            if args.json {
                let entries: Vec<ListEntry> =
                    messages.iter().map(|m| ListEntry::new(m, now)).collect();
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print!("{}", render_list(&messages, now, args.limit));
            }
        }
        DlqCommand::Show(args) => {
            let message = find(&sqs, dlq_url, &args.id).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&message)?);
            } else {
                print!("{}", render_show(&message, Utc::now()));
            }
        }
        DlqCommand::Redrive(args) => {
            let plan = RedrivePlan {
                max_per_second: args.max_per_second,
                filter: args.filter,
                limit: args.limit,
                client_side: args.client_side,
            };
            let depth = crate::status::queue_depth(&sqs, dlq_url).await?;
            let total = plan
                .limit
                .map_or(depth.visible, |l| depth.visible.min(u64::from(l)));
            let progress = progress_bar(total);
            let stop = Arc::new(AtomicBool::new(false));
            let on_ctrl_c = tokio::spawn(stop_on_ctrl_c(Arc::clone(&stop), progress.clone()));
            let outcome = redrive(&sqs, &stack.outputs, plan, &progress, &stop).await;
            on_ctrl_c.abort();
            progress.finish_and_clear();
            print!("{}", render_outcome(&outcome?));
        }
    }
    Ok(())
}

/// A bar on a terminal; hidden when stderr is not one (scripts, CI, tests).
fn progress_bar(len: u64) -> ProgressBar {
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
fn note(progress: &ProgressBar, line: impl AsRef<str>) {
    if progress.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        progress.println(line.as_ref());
    }
}

/// First Ctrl-C: finish the batch in flight, then stop. Second: exit at once (the batch in flight may
/// then be duplicated, never lost).
async fn stop_on_ctrl_c(stop: Arc<AtomicBool>, progress: ProgressBar) {
    if tokio::signal::ctrl_c().await.is_ok() {
        stop.store(true, Ordering::Relaxed);
        note(
            &progress,
            "stopping after the batch in flight (Ctrl-C again to quit at once)",
        );
    }
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Peeking

fn sqs_error<E>(context: &str, e: aws_sdk_sqs::error::SdkError<E>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    anyhow!("{context}: {}", DisplayErrorContext(e))
}

/// Receives up to 10 messages with every attribute, hidden for `visibility` seconds.
async fn receive(
    sqs: &Client,
    url: &str,
    max: i32,
    visibility: i32,
) -> anyhow::Result<Vec<Message>> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max.clamp(1, 10))
        .visibility_timeout(visibility)
        // A long poll asks every SQS server; a short one samples a few and can miss messages.
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| sqs_error("receiving from the DLQ", e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Makes messages visible again at once. Returns how many could not be (they reappear by themselves
/// when their visibility timeout ends).
async fn make_visible(sqs: &Client, url: &str, receipts: &[String]) -> usize {
    set_visibility(sqs, url, receipts, 0).await
}

/// Sets the visibility timeout of received messages; returns how many could not be changed.
async fn set_visibility(sqs: &Client, url: &str, receipts: &[String], seconds: i32) -> usize {
    let mut failed = 0;
    for chunk in receipts.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(seconds)
                    .build()
                    .ok()
            })
            .collect();
        match sqs
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => failed += out.failed().len(),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), seconds, "could not change the visibility of DLQ messages");
                failed += chunk.len();
            }
        }
    }
    failed
}

/// Reads up to `limit` messages without keeping them (see the module doc); with `id`, stops once that
/// message is found. Every received message is made visible again before this returns.
pub async fn peek(
    sqs: &Client,
    dlq_url: &str,
    limit: u32,
    id: Option<&str>,
) -> anyhow::Result<Vec<DlqMessage>> {
    let mut receipts = Vec::new();
    let scanned = scan(sqs, dlq_url, limit, id, &mut receipts).await;
    let stuck = make_visible(sqs, dlq_url, &receipts).await;
    if stuck > 0 {
        eprintln!(
            "note: {stuck} message(s) stay hidden for up to {PEEK_VISIBILITY_S} s (could not reset their visibility)"
        );
    }
    scanned
}

async fn scan(
    sqs: &Client,
    dlq_url: &str,
    limit: u32,
    id: Option<&str>,
    receipts: &mut Vec<String>,
) -> anyhow::Result<Vec<DlqMessage>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while (out.len() as u64) < u64::from(limit) {
        let want = (u64::from(limit) - out.len() as u64).min(10) as i32;
        let batch = receive(sqs, dlq_url, want, PEEK_VISIBILITY_S).await?;
        // Every receipt first: an early return below must still make the whole batch visible again.
        receipts.extend(
            batch
                .iter()
                .filter_map(|m| m.receipt_handle().map(str::to_owned)),
        );
        let mut new = 0;
        for m in &batch {
            let message = DlqMessage::from_sqs(m);
            if seen.insert(message.id.clone()) && (out.len() as u64) < u64::from(limit) {
                new += 1;
                let found = id == Some(message.id.as_str());
                out.push(message);
                if found {
                    return Ok(out);
                }
            }
        }
        // Empty: everything is hidden by this scan. Only repeats: the first ones came back already.
        if new == 0 {
            break;
        }
    }
    Ok(out)
}

/// Finds one message by its DLQ id.
pub async fn find(sqs: &Client, dlq_url: &str, id: &str) -> anyhow::Result<DlqMessage> {
    // Every message at most once: an unknown id scans the whole DLQ (bounded by SQS's queue size).
    peek(sqs, dlq_url, u32::MAX, Some(id))
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| {
            anyhow!("no message {id} on the DLQ (ids are in the first column of `sluice dlq list`)")
        })
}

// ---------------------------------------------------------------------------------------------------------
// Redrive

/// What a redrive should do.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedrivePlan {
    pub max_per_second: Option<u32>,
    pub filter: Option<RedriveFilter>,
    pub limit: Option<u32>,
    /// Never use StartMessageMoveTask.
    pub client_side: bool,
}

impl RedrivePlan {
    /// SQS can move everything itself: no filter, no limit.
    fn can_use_move_task(&self) -> bool {
        !self.client_side && self.filter.is_none() && self.limit.is_none()
    }
}

/// How the messages moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedriveMethod {
    /// SQS's StartMessageMoveTask.
    MoveTask,
    /// Receive, send a copy, delete the original, from this machine.
    ClientSide,
}

/// What a redrive did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveOutcome {
    pub method: RedriveMethod,
    /// Messages now on the changes queue.
    pub moved: u64,
    /// Messages seen and left on the DLQ because they did not match `--filter`.
    pub skipped: u64,
    /// Copies sent whose original could not be deleted: they stay on the DLQ too (harmless duplicates).
    pub not_deleted: u64,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// Why the move task was not used, when it was tried and refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// Moves DLQ messages back to the changes queue (see the module doc). `progress` is advanced per message;
/// `stop` is checked between batches (set it from a Ctrl-C handler).
pub async fn redrive(
    sqs: &Client,
    outputs: &crate::stack::StackOutputs,
    plan: RedrivePlan,
    progress: &ProgressBar,
    stop: &AtomicBool,
) -> anyhow::Result<RedriveOutcome> {
    let mut fallback_reason = None;
    if plan.can_use_move_task() {
        match move_task(sqs, outputs, plan.max_per_second, progress, stop).await? {
            MoveTask::Done(outcome) => return Ok(outcome),
            MoveTask::Unavailable(reason) => {
                note(
                    progress,
                    format!(
                        "StartMessageMoveTask unavailable ({reason}); moving messages from this machine"
                    ),
                );
                fallback_reason = Some(reason);
            }
        }
    }
    let mut outcome = client_side(sqs, outputs, plan, progress, stop).await?;
    outcome.fallback_reason = fallback_reason;
    Ok(outcome)
}

enum MoveTask {
    Done(RedriveOutcome),
    Unavailable(String),
}

/// Error codes that mean "this endpoint or these credentials cannot run a move task", as opposed to a
/// failure of the task itself.
fn move_task_unavailable(code: &str) -> bool {
    [
        "UnsupportedOperation",
        "InvalidAction",
        "UnknownOperation",
        "NotImplemented",
        "AccessDenied",
    ]
    .iter()
    .any(|c| code.contains(c))
}

async fn move_task(
    sqs: &Client,
    outputs: &crate::stack::StackOutputs,
    max_per_second: Option<u32>,
    progress: &ProgressBar,
    stop: &AtomicBool,
) -> anyhow::Result<MoveTask> {
    let started = sqs
        .start_message_move_task()
        .source_arn(&outputs.dlq_arn)
        // Explicit: the drain's own dead letters carry no DeadLetterQueueSourceArn to go back to.
        .destination_arn(&outputs.queue_arn)
        .set_max_number_of_messages_per_second(
            max_per_second.map(|r| r.min(MOVE_TASK_MAX_RATE) as i32),
        )
        .send()
        .await;
    let handle = match started {
        Ok(out) => out.task_handle.unwrap_or_default(),
        Err(e) => {
            let code = e.code().unwrap_or_default().to_owned();
            if move_task_unavailable(&code) {
                return Ok(MoveTask::Unavailable(code));
            }
            return Err(sqs_error("starting the DLQ move task", e));
        }
    };
    let mut cancelled = false;
    loop {
        let tasks = sqs
            .list_message_move_tasks()
            .source_arn(&outputs.dlq_arn)
            .max_results(1)
            .send()
            .await
            .map_err(|e| sqs_error("reading the move task's progress", e))?;
        let task = tasks
            .results()
            .first()
            .context("the move task is not listed")?;
        if let Some(total) = task.approximate_number_of_messages_to_move() {
            progress.set_length(u64::try_from(total).unwrap_or(0));
        }
        let moved = u64::try_from(task.approximate_number_of_messages_moved()).unwrap_or(0);
        progress.set_position(moved);
        match task.status().unwrap_or_default() {
            "COMPLETED" | "CANCELLED" => {
                return Ok(MoveTask::Done(RedriveOutcome {
                    method: RedriveMethod::MoveTask,
                    moved,
                    skipped: 0,
                    not_deleted: 0,
                    interrupted: cancelled,
                    fallback_reason: None,
                }));
            }
            "FAILED" => bail!(
                "the move task failed after {moved} message(s): {}",
                task.failure_reason().unwrap_or("no reason given")
            ),
            _ => {}
        }
        if stop.load(Ordering::Relaxed) && !cancelled && !handle.is_empty() {
            note(
                progress,
                "cancelling the move task (messages already moved stay moved)",
            );
            sqs.cancel_message_move_task()
                .task_handle(&handle)
                .send()
                .await
                .map_err(|e| sqs_error("cancelling the move task", e))?;
            cancelled = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn client_side(
    sqs: &Client,
    outputs: &crate::stack::StackOutputs,
    plan: RedrivePlan,
    progress: &ProgressBar,
    stop: &AtomicBool,
) -> anyhow::Result<RedriveOutcome> {
    // Messages that did not match: kept hidden while the scan goes on (so it moves past them), then
    // made visible again.
    let mut held: HashMap<String, String> = HashMap::new();
    let mut outcome = RedriveOutcome {
        method: RedriveMethod::ClientSide,
        moved: 0,
        skipped: 0,
        not_deleted: 0,
        interrupted: false,
        fallback_reason: None,
    };
    let moved = move_batches(sqs, outputs, plan, progress, stop, &mut held, &mut outcome).await;
    let receipts: Vec<String> = held.into_values().collect();
    let stuck = make_visible(sqs, &outputs.dlq_url, &receipts).await;
    if stuck > 0 {
        note(
            progress,
            format!("note: {stuck} skipped message(s) stay hidden for up to {SKIP_VISIBILITY_S} s"),
        );
    }
    moved.map(|()| outcome)
}

async fn move_batches(
    sqs: &Client,
    outputs: &crate::stack::StackOutputs,
    plan: RedrivePlan,
    progress: &ProgressBar,
    stop: &AtomicBool,
    held: &mut HashMap<String, String>,
    outcome: &mut RedriveOutcome,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let limit = plan.limit.map_or(u64::MAX, u64::from);
    // A rate under 10/s moves smaller batches, so no second exceeds it.
    let batch_size = plan.max_per_second.map_or(10, |r| r.min(10)) as i32;
    loop {
        if stop.load(Ordering::Relaxed) {
            outcome.interrupted = true;
            return Ok(());
        }
        let remaining = limit.saturating_sub(outcome.moved);
        if remaining == 0 {
            return Ok(());
        }
        let batch = receive(sqs, &outputs.dlq_url, batch_size, MOVE_VISIBILITY_S).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut to_move = Vec::new();
        let mut skipped = Vec::new();
        let mut new_skips = 0;
        for m in batch {
            let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                continue;
            };
            let matches = DlqMessage::from_sqs(&m).matches(plan.filter);
            if matches && (to_move.len() as u64) < remaining {
                to_move.push(m);
            } else {
                skipped.push(receipt.to_owned());
                // Past --limit is not "skipped": it is simply not moved this time.
                if held.insert(id.to_owned(), receipt.to_owned()).is_none() && !matches {
                    new_skips += 1;
                }
            }
        }
        if !skipped.is_empty() {
            set_visibility(sqs, &outputs.dlq_url, &skipped, SKIP_VISIBILITY_S).await;
        }
        outcome.skipped += new_skips;
        progress.inc(new_skips);
        if to_move.is_empty() && new_skips == 0 {
            // Nothing to move and nothing unseen (or only past --limit): done.
            // Only messages skipped before: the whole DLQ has been seen.
            return Ok(());
        }
        if !to_move.is_empty() {
            let (moved, not_deleted) = move_one_batch(sqs, outputs, &to_move).await?;
            outcome.moved += moved;
            outcome.not_deleted += not_deleted;
            progress.inc(moved);
        }
        progress.set_message(format!(
            "moved {}, skipped {}",
            outcome.moved, outcome.skipped
        ));
        if let Some(rate) = plan.max_per_second {
            let due = Duration::from_secs_f64(outcome.moved as f64 / f64::from(rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Sends copies of `messages` to the changes queue, then deletes the originals whose copy was accepted.
/// Returns (moved, copies whose original could not be deleted). A copy that was refused leaves its
/// original on the DLQ, visible again at once.
async fn move_one_batch(
    sqs: &Client,
    outputs: &crate::stack::StackOutputs,
    messages: &[Message],
) -> anyhow::Result<(u64, u64)> {
    let entries = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // The drain's dead-letter attributes are dropped: a message that fails again gets fresh ones.
            let attributes: HashMap<String, MessageAttributeValue> = m
                .message_attributes()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !k.starts_with(SLUICE_ATTR_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(m.body().unwrap_or(" "))
                .set_message_attributes((!attributes.is_empty()).then_some(attributes))
                .build()
                .context("building a SendMessageBatch entry")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sent = sqs
        .send_message_batch()
        .queue_url(&outputs.queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| sqs_error("sending to the changes queue", e))?;
    let refused: Vec<usize> = sent
        .failed()
        .iter()
        .filter_map(|f| f.id().parse().ok())
        .collect();
    let mut copied = Vec::new();
    let mut not_copied = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let receipt = m.receipt_handle().unwrap_or_default().to_owned();
        if refused.contains(&i) {
            not_copied.push(receipt);
        } else {
            copied.push(receipt);
        }
    }
    if !not_copied.is_empty() {
        make_visible(sqs, &outputs.dlq_url, &not_copied).await;
        let reasons: Vec<String> = sent
            .failed()
            .iter()
            .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or_default()))
            .collect();
        // Delete what was copied before stopping, so nothing is left twice.
        let not_deleted = delete(sqs, &outputs.dlq_url, &copied).await?;
        bail!(
            "the changes queue refused {} message(s) ({}); {} moved in this batch, the refused ones stay on the DLQ",
            not_copied.len(),
            reasons.join("; "),
            copied.len() as u64 - not_deleted
        );
    }
    let not_deleted = delete(sqs, &outputs.dlq_url, &copied).await?;
    Ok((copied.len() as u64, not_deleted))
}

/// Deletes from the DLQ; returns how many deletes failed.
async fn delete(sqs: &Client, url: &str, receipts: &[String]) -> anyhow::Result<u64> {
    if receipts.is_empty() {
        return Ok(0);
    }
    let entries = receipts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(r)
                .build()
                .context("building a DeleteMessageBatch entry")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = sqs
        .delete_message_batch()
        .queue_url(url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| sqs_error("deleting redriven messages from the DLQ", e))?;
    Ok(out.failed().len() as u64)
}

/// The line printed when a redrive ends.
pub fn render_outcome(outcome: &RedriveOutcome) -> String {
    let how = match outcome.method {
        RedriveMethod::MoveTask => "by SQS (StartMessageMoveTask)",
        RedriveMethod::ClientSide => "from this machine (receive, send, delete)",
    };
    let mut out = format!(
        "moved {} message(s) from the DLQ to the changes queue {how}",
        outcome.moved
    );
    if outcome.skipped > 0 {
        out.push_str(&format!(
            "; {} left on the DLQ (not matching)",
            outcome.skipped
        ));
    }
    if outcome.interrupted {
        out.push_str("; interrupted: the rest is still on the DLQ");
    }
    out.push('\n');
    if outcome.not_deleted > 0 {
        out.push_str(&format!(
            "note: {} original(s) could not be deleted and will reappear on the DLQ; their copies are on the changes queue (a duplicate is harmless)\n",
            outcome.not_deleted
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sluice::adapters::sqs::ATTR_DEAD_LETTERED_AT;

    fn attr(v: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .unwrap()
    }

    const CHANGE: &str = r#"{"v":"1","change_id":"6f2c1c52-6a53-4a43-9d1f-0c8f3a4d1e01","request_id":"0b7e6f58-2f7a-4a57-9c3e-2f1d6f0e9a02","email":"Ann@Example.com","name":"Ann","occurred_at":"2025-03-01T10:00:00Z","priority":"normal","accepted_at":"2025-03-01T10:00:01Z"}"#;

    fn rejected() -> Message {
        Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body(CHANGE)
            .message_attributes(ATTR_REASON, attr("rejected"))
            .message_attributes(ATTR_DETAIL, attr("422: email is invalid"))
            .message_attributes(ATTR_RECEIVE_COUNT, attr("1"))
            .message_attributes(ATTR_SOURCE_MESSAGE_ID, attr("q-9"))
            .message_attributes(ATTR_DEAD_LETTERED_AT, attr("2025-03-01T10:05:00Z"))
            .attributes(MessageSystemAttributeName::SentTimestamp, "1740823500000")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "4")
            .build()
    }

    fn exhausted() -> Message {
        Message::builder()
            .message_id("m-2")
            .receipt_handle("r-2")
            .body(r#"{"email":"bob@example.org","oops":true}"#)
            .attributes(MessageSystemAttributeName::SentTimestamp, "1740823200000")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "11")
            .attributes(
                MessageSystemAttributeName::DeadLetterQueueSourceArn,
                "arn:aws:sqs:us-east-1:1:changes",
            )
            .build()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T10:10:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn the_drains_attributes_are_read() {
        let m = DlqMessage::from_sqs(&rejected());
        assert_eq!(m.id, "m-1");
        assert_eq!(m.reason, "rejected");
        assert_eq!(m.detail.as_deref(), Some("422: email is invalid"));
        assert_eq!(m.email.as_deref(), Some("ann@example.com"));
        // The drain's count of receives on the changes queue wins over the DLQ's own.
        assert_eq!(m.receive_count, Some(1));
        assert_eq!(m.source_message_id.as_deref(), Some("q-9"));
        assert_eq!(m.age_s(now()), Some(300));
        assert!(m.matches(None));
        assert!(m.matches(Some(RedriveFilter::Rejected)));
        assert!(!m.matches(Some(RedriveFilter::Malformed)));
    }

    #[test]
    fn a_message_sqs_moved_reads_as_retries_exhausted() {
        let m = DlqMessage::from_sqs(&exhausted());
        assert_eq!(m.reason, RETRIES_EXHAUSTED);
        assert!(m.matches(Some(RedriveFilter::RetriesExhausted)));
        assert_eq!(m.receive_count, Some(11));
        assert_eq!(m.email.as_deref(), Some("bob@example.org"));
        assert_eq!(
            m.source_queue_arn.as_deref(),
            Some("arn:aws:sqs:us-east-1:1:changes")
        );
        let garbage = Message::builder()
            .message_id("m-3")
            .body("not json")
            .build();
        assert_eq!(DlqMessage::from_sqs(&garbage).email, None);
    }

    #[test]
    fn the_list_redacts_emails_and_tallies_reasons() {
        let messages = [
            DlqMessage::from_sqs(&rejected()),
            DlqMessage::from_sqs(&exhausted()),
        ];
        let text = render_list(&messages, now(), 100);
        assert!(text.starts_with("id   reason             email"), "{text}");
        assert!(text.contains("a***@example.com"), "{text}");
        assert!(text.contains("b***@example.org"), "{text}");
        assert!(!text.contains("ann@"), "{text}");
        assert!(
            text.contains("m-1  rejected           a***@example.com  5m 00s   1"),
            "{text}"
        );
        assert!(
            text.contains("2 message(s): 1 rejected, 1 retries_exhausted\n"),
            "{text}"
        );
        assert!(render_list(&messages, now(), 2).contains("(first 2; --limit for more)"));
        assert_eq!(render_list(&[], now(), 10), "the DLQ is empty\n");

        let json = serde_json::to_value(ListEntry::new(&messages[0], now())).unwrap();
        assert_eq!(json["email"], "a***@example.com");
        assert_eq!(json["age_s"], 300);
        assert!(json.get("body").is_none());
    }

    #[test]
    fn show_prints_the_full_reason_and_the_body() {
        let text = render_show(&DlqMessage::from_sqs(&rejected()), now());
        assert!(text.contains("reason       rejected\n"), "{text}");
        assert!(
            text.contains("detail       422: email is invalid\n"),
            "{text}"
        );
        assert!(text.contains("email        ann@example.com\n"), "{text}");
        assert!(
            text.contains("age          5m 00s (sent 2025-03-01T10:05:00Z)\n"),
            "{text}"
        );
        assert!(
            text.contains("attributes\n  sluice.dead_lettered_at = 2025-03-01T10:05:00Z\nbody\n"),
            "{text}"
        );
        assert!(text.contains("body\n{\n  \"accepted_at\""), "{text}");

        let text = render_show(&DlqMessage::from_sqs(&exhausted()), now());
        assert!(
            text.contains("moved by SQS after maxReceiveCount"),
            "{text}"
        );
    }

    #[test]
    fn the_move_task_is_used_only_for_a_plain_redrive() {
        assert!(RedrivePlan::default().can_use_move_task());
        let rate = RedrivePlan {
            max_per_second: Some(5),
            ..RedrivePlan::default()
        };
        assert!(rate.can_use_move_task());
        for plan in [
            RedrivePlan {
                filter: Some(RedriveFilter::Rejected),
                ..RedrivePlan::default()
            },
            RedrivePlan {
                limit: Some(3),
                ..RedrivePlan::default()
            },
            RedrivePlan {
                client_side: true,
                ..RedrivePlan::default()
            },
        ] {
            assert!(!plan.can_use_move_task(), "{plan:?}");
        }
        assert!(move_task_unavailable(
            "AWS.SimpleQueueService.UnsupportedOperation"
        ));
        assert!(move_task_unavailable("AccessDeniedException"));
        assert!(!move_task_unavailable("ResourceNotFoundException"));
    }

    #[test]
    fn the_outcome_says_what_moved_and_what_stayed() {
        let outcome = RedriveOutcome {
            method: RedriveMethod::ClientSide,
            moved: 10,
            skipped: 15,
            not_deleted: 0,
            interrupted: false,
            fallback_reason: None,
        };
        assert_eq!(
            render_outcome(&outcome),
            "moved 10 message(s) from the DLQ to the changes queue from this machine (receive, send, delete); 15 left on the DLQ (not matching)\n"
        );
        let interrupted = RedriveOutcome {
            method: RedriveMethod::MoveTask,
            interrupted: true,
            skipped: 0,
            not_deleted: 2,
            ..outcome
        };
        let text = render_outcome(&interrupted);
        assert!(
            text.contains("by SQS (StartMessageMoveTask); interrupted"),
            "{text}"
        );
        assert!(
            text.contains("2 original(s) could not be deleted"),
            "{text}"
        );
    }
}
