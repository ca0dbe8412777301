//! `sluice dlq list|show|redrive`: the dead-letter queue for operators, over the library's
//! [`SqsDeadLetters`] (every SQS call is the adapter's).
//!
//! - [`message`]: one dead-lettered message, read from its SQS attributes.
//! - [`peek`](mod@peek): `list` and `show` *peek*: SQS cannot read a message without receiving it, so each message is
//!   received with a short visibility timeout ([`PEEK_VISIBILITY_S`]) and made visible again (visibility 0)
//!   as soon as the scan ends. Nothing is deleted; the DLQ has no redrive policy, so the extra receives
//!   cannot move a message anywhere. If the CLI dies mid-scan, the messages reappear by themselves after
//!   the timeout.
//! - [`redrive`](mod@redrive): moves messages back to the changes queue. Without `--filter`/`--limit` SQS moves them
//!   itself (`StartMessageMoveTask`, which SQS makes safe); otherwise, or where the move task is not
//!   available, the CLI receives a batch, sends copies to the changes queue and only then deletes the
//!   originals. An interruption therefore never loses a message; at worst the batch in flight (≤ 10
//!   messages) exists twice, which is harmless: the drain coalesces copies of one change and never resends
//!   a value already delivered. Ctrl-C (`ctrl_c`) finishes the batch in flight before stopping, so it
//!   duplicates nothing.
//! - [`render`]: what `list`, `show` and a redrive print; `progress`: the redrive's bar.

mod ctrl_c;
pub mod message;
pub mod peek;
mod progress;
pub mod redrive;
pub mod render;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use aws_config::SdkConfig;
use chrono::Utc;
use sluice::adapters::sqs::{QueueRef, SqsDeadLetters};

pub use message::{DlqMessage, ListEntry, RETRIES_EXHAUSTED};
pub use peek::{PEEK_VISIBILITY_S, find, peek};
pub use redrive::{RedriveMethod, RedriveOutcome, RedrivePlan, redrive};
pub use render::{render_list, render_outcome, render_show};

use crate::args::{DlqCommand, DlqRedriveArgs, GlobalArgs};
use crate::stack::StackOutputs;

/// The stack's DLQ and changes queue, for the operators' calls.
pub fn dead_letters(sdk: &SdkConfig, outputs: &StackOutputs) -> SqsDeadLetters {
    let queue = |url: &str, arn: &str| QueueRef {
        url: url.to_owned(),
        arn: arn.to_owned(),
    };
    SqsDeadLetters::new(
        aws_sdk_sqs::Client::new(sdk),
        queue(&outputs.dlq_url, &outputs.dlq_arn),
        queue(&outputs.queue_url, &outputs.queue_arn),
    )
    .with_lanes(outputs.lanes())
}

/// `sluice dlq list|show|redrive`.
pub async fn run(command: &DlqCommand, global: &GlobalArgs, sdk: &SdkConfig) -> anyhow::Result<()> {
    let cf = aws_sdk_cloudformation::Client::new(sdk);
    let stack = crate::stack::read_stack(&cf, &global.stack_name).await?;
    let dlq = dead_letters(sdk, &stack.outputs);
    match command {
        DlqCommand::List(args) => {
            let messages = peek(&dlq, args.limit, None).await?;
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
            let message = find(&dlq, &args.id).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&message)?);
            } else {
                print!("{}", render_show(&message, Utc::now()));
            }
        }
        DlqCommand::Redrive(args) => run_redrive(&dlq, args, &stack.outputs.dlq_url).await?,
    }
    Ok(())
}

/// `sluice dlq redrive`: a progress bar over the DLQ's depth, Ctrl-C to stop between batches.
async fn run_redrive(
    dlq: &SqsDeadLetters,
    args: &DlqRedriveArgs,
    dlq_url: &str,
) -> anyhow::Result<()> {
    let plan = RedrivePlan {
        max_per_second: args.max_per_second,
        filter: args.filter,
        limit: args.limit,
        client_side: args.client_side,
    };
    let depth = dlq
        .depth()
        .await
        .with_context(|| format!("reading the depth of {dlq_url}"))?;
    let total = plan
        .limit
        .map_or(depth.visible, |l| depth.visible.min(u64::from(l)));
    let progress = progress::progress_bar(total);
    let stop = Arc::new(AtomicBool::new(false));
    let on_ctrl_c = tokio::spawn(ctrl_c::stop_on_ctrl_c(Arc::clone(&stop), progress.clone()));
    let outcome = redrive(dlq, plan, &progress, &stop).await;
    on_ctrl_c.abort();
    progress.finish_and_clear();
    print!("{}", render_outcome(&outcome?));
    Ok(())
}
