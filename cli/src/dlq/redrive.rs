//! `sluice dlq redrive`: DLQ messages back to the changes queue, by SQS's move task when it can move
//! everything, else from this machine in batches (copy, then delete), through the library's
//! [`SqsDeadLetters`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sqs::types::Message;
use indicatif::ProgressBar;
use serde::Serialize;
use sluice::adapters::sqs::dead_letters::receipt_of;
use sluice::adapters::sqs::{MoveTaskProgress, MoveTaskStart, SqsDeadLetters};
use sluice::domain::Priority;
use sluice::ports::ReceiptHandle;

use super::message::DlqMessage;
use super::progress::note;
use crate::args::RedriveFilter;

/// Seconds a message being redriven client-side stays hidden: long enough for one send and delete.
const MOVE_VISIBILITY_S: u64 = 60;
/// Seconds a message skipped by `--filter` stays hidden while the scan goes on (so a slow, rate-limited
/// scan does not meet it again); it is made visible again when the redrive ends.
const SKIP_VISIBILITY_S: u64 = 900;

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
    pub(crate) fn can_use_move_task(&self) -> bool {
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
    /// Of those, per lane they went back to (client-side redrives; the move task's all go to `normal`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub moved_by_lane: BTreeMap<Priority, u64>,
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

impl RedriveOutcome {
    fn new(method: RedriveMethod) -> Self {
        Self {
            method,
            moved: 0,
            moved_by_lane: BTreeMap::new(),
            skipped: 0,
            not_deleted: 0,
            interrupted: false,
            fallback_reason: None,
        }
    }
}

/// Moves DLQ messages back to the changes queue (see the module doc). `progress` is advanced per message;
/// `stop` is checked between batches (set it from a Ctrl-C handler).
pub async fn redrive(
    dlq: &SqsDeadLetters,
    plan: RedrivePlan,
    progress: &ProgressBar,
    stop: &AtomicBool,
) -> anyhow::Result<RedriveOutcome> {
    let mut fallback_reason = None;
    // The move task has one destination: with lanes, only a client-side redrive sends each message back
    // to the lane it came from.
    if plan.can_use_move_task() && !dlq.has_lanes() {
        match move_task(dlq, plan.max_per_second, progress, stop).await? {
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
    let mut outcome = client_side(dlq, plan, progress, stop).await?;
    outcome.fallback_reason = fallback_reason;
    Ok(outcome)
}

enum MoveTask {
    Done(RedriveOutcome),
    Unavailable(String),
}

/// Starts SQS's move task and follows it to its end; Ctrl-C cancels it.
async fn move_task(
    dlq: &SqsDeadLetters,
    max_per_second: Option<u32>,
    progress: &ProgressBar,
    stop: &AtomicBool,
) -> anyhow::Result<MoveTask> {
    let handle = match dlq.start_move_task(max_per_second).await? {
        MoveTaskStart::Started(handle) => handle,
        MoveTaskStart::Unavailable(code) => return Ok(MoveTask::Unavailable(code)),
    };
    let mut cancelled = false;
    loop {
        let task = dlq
            .move_task_progress()
            .await?
            .context("the move task is not listed")?;
        if let Some(done) = finished(&task, progress, cancelled)? {
            return Ok(MoveTask::Done(done));
        }
        if stop.load(Ordering::Relaxed) && !cancelled && !handle.is_empty() {
            note(
                progress,
                "cancelling the move task (messages already moved stay moved)",
            );
            dlq.cancel_move_task(&handle).await?;
            cancelled = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Shows the task's progress; its outcome once it has ended, an error if it failed.
fn finished(
    task: &MoveTaskProgress,
    progress: &ProgressBar,
    cancelled: bool,
) -> anyhow::Result<Option<RedriveOutcome>> {
    if let Some(total) = task.to_move {
        progress.set_length(total);
    }
    progress.set_position(task.moved);
    match task.status.as_str() {
        "COMPLETED" | "CANCELLED" => Ok(Some(RedriveOutcome {
            moved: task.moved,
            interrupted: cancelled,
            ..RedriveOutcome::new(RedriveMethod::MoveTask)
        })),
        "FAILED" => bail!(
            "the move task failed after {} message(s): {}",
            task.moved,
            task.failure_reason.as_deref().unwrap_or("no reason given")
        ),
        _ => Ok(None),
    }
}

async fn client_side(
    dlq: &SqsDeadLetters,
    plan: RedrivePlan,
    progress: &ProgressBar,
    stop: &AtomicBool,
) -> anyhow::Result<RedriveOutcome> {
    // Messages that did not match: kept hidden while the scan goes on (so it moves past them), then
    // made visible again.
    let mut held: HashMap<String, ReceiptHandle> = HashMap::new();
    let mut outcome = RedriveOutcome::new(RedriveMethod::ClientSide);
    let moved = move_batches(dlq, plan, progress, stop, &mut held, &mut outcome).await;
    let receipts: Vec<ReceiptHandle> = held.into_values().collect();
    let stuck = dlq.make_visible(&receipts).await;
    if stuck > 0 {
        note(
            progress,
            format!("note: {stuck} skipped message(s) stay hidden for up to {SKIP_VISIBILITY_S} s"),
        );
    }
    moved.map(|()| outcome)
}

async fn move_batches(
    dlq: &SqsDeadLetters,
    plan: RedrivePlan,
    progress: &ProgressBar,
    stop: &AtomicBool,
    held: &mut HashMap<String, ReceiptHandle>,
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
        let visibility = Duration::from_secs(MOVE_VISIBILITY_S);
        let batch = dlq.receive(batch_size, visibility).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let sorted = sort_batch(batch, plan.filter, remaining, held);
        if !sorted.skipped.is_empty() {
            let hide = Duration::from_secs(SKIP_VISIBILITY_S);
            dlq.set_visibility(&sorted.skipped, hide).await;
        }
        outcome.skipped += sorted.new_skips;
        progress.inc(sorted.new_skips);
        if sorted.to_move.is_empty() && sorted.new_skips == 0 {
            // Nothing to move and nothing unseen (or only past --limit): done.
            // Only messages skipped before: the whole DLQ has been seen.
            return Ok(());
        }
        if !sorted.to_move.is_empty() {
            let (moved, not_deleted) = move_one_batch(dlq, &sorted.to_move, outcome).await?;
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

/// One received batch, sorted: what to move now, and what to leave hidden.
struct SortedBatch {
    to_move: Vec<Message>,
    /// Receipts of the messages left on the DLQ this time (not matching, or past `--limit`).
    skipped: Vec<ReceiptHandle>,
    /// Messages not matching the filter seen for the first time.
    new_skips: u64,
}

/// Sorts a batch: matching messages up to `remaining` move; the others are held (and counted as skipped
/// the first time a non-matching one is seen).
fn sort_batch(
    batch: Vec<Message>,
    filter: Option<RedriveFilter>,
    remaining: u64,
    held: &mut HashMap<String, ReceiptHandle>,
) -> SortedBatch {
    let mut sorted = SortedBatch {
        to_move: Vec::new(),
        skipped: Vec::new(),
        new_skips: 0,
    };
    for m in batch {
        let (Some(id), Some(_)) = (m.message_id(), m.receipt_handle()) else {
            continue;
        };
        let matches = DlqMessage::from_sqs(&m).matches(filter);
        if matches && (sorted.to_move.len() as u64) < remaining {
            sorted.to_move.push(m);
        } else {
            let receipt = receipt_of(&m);
            sorted.skipped.push(receipt.clone());
            // Past --limit is not "skipped": it is simply not moved this time.
            if held.insert(id.to_owned(), receipt).is_none() && !matches {
                sorted.new_skips += 1;
            }
        }
    }
    sorted
}

/// Copies `messages` to the changes queue and deletes the originals whose copy was accepted. Returns
/// (moved, copies whose original could not be deleted); a refused copy ends the redrive, its original
/// left on the DLQ.
async fn move_one_batch(
    dlq: &SqsDeadLetters,
    messages: &[Message],
    outcome: &mut RedriveOutcome,
) -> anyhow::Result<(u64, u64)> {
    let batch = dlq.redrive_batch(messages).await?;
    for (lane, n) in &batch.by_lane {
        *outcome.moved_by_lane.entry(*lane).or_default() += n;
    }
    if batch.refused > 0 {
        bail!(
            "the changes queue refused {} message(s) ({}); {} moved in this batch, the refused ones stay on the DLQ",
            batch.refused,
            batch.refusals.join("; "),
            batch.copied - batch.not_deleted
        );
    }
    Ok((batch.copied, batch.not_deleted))
}
