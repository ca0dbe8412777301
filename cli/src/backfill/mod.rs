//! `sluice backfill FILE`: loads a file of changes (JSON Lines, or CSV with a header row) through the
//! ingest API, on the `bulk` priority, in bulk requests of up to 1,000 changes, each under an
//! `Idempotency-Key` derived from the file and the chunk's position. It resumes where it stopped (the
//! state file beside the input), writes the rows that were refused to a file in the input's format, and
//! ends with a summary.
//!
//! - this file: the run — read, plan, send the chunks in order, save the state after each, summarise;
//! - [`source`]: the file read into rows (JSON Lines, CSV through serde);
//! - [`chunk`]: the rows cut into requests, and each request's key;
//! - [`state`]: the resume state;
//! - [`client`]: the ingest API over HTTP, with retries of transient answers;
//! - [`refused`]: the refused-rows file;
//! - [`target`]: the ingest URL, its key and the provider's limits, as `sluice` finds them;
//! - [`progress`]: the bar, with the posting rate and the delivery time at the provider's capacity;
//! - [`summary`]: the closing summary (text or JSON).

pub mod chunk;
pub mod client;
pub mod progress;
pub mod refused;
#[cfg(test)]
mod send_tests;
pub mod source;
pub mod state;
pub mod summary;
pub mod target;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow, bail};
use aws_config::SdkConfig;
use indicatif::ProgressBar;

use crate::args::{BackfillArgs, GlobalArgs};
use chunk::Chunk;
use client::{Answer, IngestClient};
use progress::note;
use source::{Format, Input};
use state::State;

/// How a run of the send loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Every chunk answered.
    Finished,
    /// Ctrl-C: the chunk in flight was finished and the state saved.
    Stopped,
}

pub async fn run(args: &BackfillArgs, global: &GlobalArgs, sdk: &SdkConfig) -> anyhow::Result<()> {
    let format = input_format(args)?;
    let input = source::read(&args.file, format)?;
    let chunks = chunk::plan(&input.rows, args.chunk_size as usize);
    let state_path = state::path_for(&args.file);
    let mut state = state::load(&state_path, &input.digest)?;
    if state.chunks_done > chunks.len() {
        bail!(
            "{} records {} chunks done, but the file makes {} (another --chunk-size?): delete it to start over",
            state_path.display(),
            state.chunks_done,
            chunks.len()
        );
    }
    let target = target::resolve(args, global, sdk).await?;
    let client = IngestClient::new(&target.url, target.api_key.clone())?;
    let capacity = target::capacity_per_hour(&target.limits);
    let rows = |chunks: &[Chunk]| chunks.iter().map(|c| c.rows.len() as u64).sum::<u64>();
    let bar = progress::bar(rows(&chunks), rows(&chunks[..state.chunks_done]), capacity);
    note(
        &bar,
        where_it_starts(&args.file, &state_path, &state, chunks.len()),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(stop_on_ctrl_c(stop.clone(), bar.clone()));
    let run = Run {
        input: &input,
        client: &client,
        state_path: &state_path,
        bar: &bar,
        stop: &stop,
    };
    let started_at = state.chunks_done;
    let ended = run.send(&chunks, &mut state).await;
    watcher.abort();
    bar.finish_and_clear();

    let refused_path = refused::path_for(&args.file, format);
    let refused = refused::all(&input, &state.refused);
    // A run that sent nothing leaves the file alone: the user may be fixing it.
    if state.chunks_done > started_at || !refused_path.exists() {
        refused::write(&refused_path, &input, &refused)?;
    }
    let summary =
        summary::Summary::new(&args.file, &input, &chunks, &state, &refused, &refused_path);
    summary.print(args.json, capacity);
    match ended? {
        Ended::Finished => Ok(()),
        Ended::Stopped => Err(anyhow!(
            "stopped after {} of {} chunks (state in {}): run the same command again to resume",
            state.chunks_done,
            chunks.len(),
            state_path.display()
        )),
    }
}

/// `--format`, else what the file's extension says.
fn input_format(args: &BackfillArgs) -> anyhow::Result<Format> {
    args.format
        .or_else(|| Format::from_path(&args.file))
        .ok_or_else(|| {
            anyhow!(
                "cannot tell the format of {} from its name: pass --format jsonl or --format csv",
                args.file.display()
            )
        })
}

/// The run's first line: a fresh start, a resume, or nothing left to send.
fn where_it_starts(file: &Path, state_path: &Path, state: &State, chunks: usize) -> String {
    let file = file.display();
    match state.chunks_done {
        0 => format!("backfilling {file}: {chunks} chunks"),
        done if done == chunks => format!(
            "every chunk of {file} was sent by an earlier run: nothing to send (without {}, the API \
             would answer its chunks as replays for 24 h)",
            state_path.display()
        ),
        done => format!("resuming {file}: {done} of {chunks} chunks were sent by an earlier run"),
    }
}

/// What the send loop works with.
struct Run<'a> {
    input: &'a Input,
    client: &'a IngestClient,
    state_path: &'a Path,
    bar: &'a ProgressBar,
    stop: &'a AtomicBool,
}

impl Run<'_> {
    /// Sends the chunks not yet done, in order, saving the state after each answer.
    async fn send(&self, chunks: &[Chunk], state: &mut State) -> anyhow::Result<Ended> {
        state::save(self.state_path, state)?;
        while let Some(chunk) = chunks.get(state.chunks_done) {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Ended::Stopped);
            }
            let result = self.send_chunk(chunk, state).await;
            if let Err(e) = result {
                // The refusals learnt so far are kept; the chunk itself is sent again on the next run.
                state::save(self.state_path, state)?;
                return Err(e.context(format!(
                    "chunk {} of {} (state saved in {}: run the same command again to resume)",
                    chunk.index + 1,
                    chunks.len(),
                    self.state_path.display()
                )));
            }
            state.chunks_done += 1;
            state::save(self.state_path, state)?;
            self.bar.inc(chunk.rows.len() as u64);
        }
        Ok(Ended::Finished)
    }

    /// One chunk, until the API accepts what is left of it: each 422 names the bad changes, which are
    /// recorded as refused and left out of the next attempt (under that attempt's own key).
    async fn send_chunk(&self, chunk: &Chunk, state: &mut State) -> anyhow::Result<()> {
        loop {
            let sending = chunk.sendable(&state.refused);
            if sending.is_empty() {
                return Ok(());
            }
            let key = chunk.key(&self.input.digest, &sending);
            let body = chunk::body(&self.input.rows, &sending);
            let answer = self
                .client
                .post(&key, body, |why, wait| {
                    note(
                        self.bar,
                        format!("chunk {}: {why}; retrying in {wait:?}", chunk.index + 1),
                    );
                })
                .await?;
            match answer {
                Answer::Accepted { accepted, replayed } => {
                    state.accepted += accepted;
                    state.replayed_chunks += u64::from(replayed);
                    let how = if replayed { " (replayed)" } else { "" };
                    note(
                        self.bar,
                        format!("chunk {}: {accepted} accepted{how}", chunk.index + 1),
                    );
                    return Ok(());
                }
                Answer::Refused(problems) => self.refuse(chunk, &sending, problems, state)?,
            }
        }
    }

    /// Records the refused changes of one attempt (indexes into `sending`) by row.
    fn refuse(
        &self,
        chunk: &Chunk,
        sending: &[usize],
        problems: Vec<(usize, String)>,
        state: &mut State,
    ) -> anyhow::Result<()> {
        let before = state.refused.len();
        for (index, why) in problems {
            let row = *sending.get(index).with_context(|| {
                format!(
                    "the ingest API refused change {index} of a request of {}",
                    sending.len()
                )
            })?;
            state
                .refused
                .entry(row)
                .and_modify(|w| {
                    w.push_str("; ");
                    w.push_str(&why);
                })
                .or_insert(why);
        }
        let now = state.refused.len() - before;
        if now == 0 {
            bail!(
                "the ingest API refused the request without naming a change it had not refused before"
            );
        }
        note(
            self.bar,
            format!("chunk {}: {now} refused, sending the rest", chunk.index + 1),
        );
        Ok(())
    }
}

/// First Ctrl-C: finish the chunk in flight, save the state, stop. Second: exit at once (the chunk in
/// flight is then sent again on the next run, under the same key: a replay, not a copy).
async fn stop_on_ctrl_c(stop: Arc<AtomicBool>, bar: ProgressBar) {
    if tokio::signal::ctrl_c().await.is_ok() {
        stop.store(true, Ordering::Relaxed);
        note(
            &bar,
            "stopping after the chunk in flight (Ctrl-C again to quit at once)",
        );
    }
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}
