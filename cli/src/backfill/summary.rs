//! The closing summary of a backfill run: rows, chunks, accepted, refused with reasons, and where the
//! refused rows and the state are. Text for people, `--json` for scripts (stable field names).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::chunk::Chunk;
use super::source::Input;
use super::state::State;

/// Refused rows listed in the text summary; the file has them all.
const LISTED: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub file: String,
    pub rows: usize,
    pub chunks: usize,
    pub chunks_done: usize,
    pub finished: bool,
    pub accepted: u64,
    pub replayed_chunks: u64,
    pub refused: usize,
    /// The refused-rows file (absent when nothing was refused).
    pub refused_file: Option<String>,
    /// Each refused row: its line in the input and the reason.
    pub refused_rows: Vec<RefusedRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusedRow {
    pub line: u64,
    pub reason: String,
}

impl Summary {
    pub fn new(
        file: &Path,
        input: &Input,
        chunks: &[Chunk],
        state: &State,
        refused: &BTreeMap<usize, String>,
        refused_path: &Path,
    ) -> Self {
        Self {
            file: file.display().to_string(),
            rows: input.rows.len(),
            chunks: chunks.len(),
            chunks_done: state.chunks_done,
            finished: state.chunks_done == chunks.len(),
            accepted: state.accepted,
            replayed_chunks: state.replayed_chunks,
            refused: refused.len(),
            refused_file: (!refused.is_empty()).then(|| refused_path.display().to_string()),
            refused_rows: refused
                .iter()
                .map(|(i, reason)| RefusedRow {
                    line: input.rows.get(*i).map_or(0, |r| r.line),
                    reason: reason.clone(),
                })
                .collect(),
        }
    }

    pub fn print(&self, json: bool, capacity_per_hour: u64) {
        if json {
            match serde_json::to_string_pretty(self) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("error: the summary did not serialise: {e}"),
            }
        } else {
            print!("{}", self.text(capacity_per_hour));
        }
    }

    pub fn text(&self, capacity_per_hour: u64) -> String {
        let mut out = format!(
            "{}: {} rows, {} of {} chunks sent — {} accepted, {} refused\n",
            self.file, self.rows, self.chunks_done, self.chunks, self.accepted, self.refused
        );
        if self.replayed_chunks > 0 {
            out.push_str(&format!(
                "{} chunks were answered as replays of an earlier run's request (nothing enqueued twice)\n",
                self.replayed_chunks
            ));
        }
        if self.accepted > 0 {
            out.push_str(&format!(
                "queued on the bulk priority: {}\n",
                super::progress::delivery_eta(self.accepted, capacity_per_hour)
            ));
        }
        if let Some(path) = &self.refused_file {
            out.push_str(&format!(
                "refused rows (fix them in {path}, then `sluice backfill {path}`):\n"
            ));
            for row in self.refused_rows.iter().take(LISTED) {
                out.push_str(&format!("  line {}: {}\n", row.line, row.reason));
            }
            if self.refused_rows.len() > LISTED {
                out.push_str(&format!(
                    "  … and {} more\n",
                    self.refused_rows.len() - LISTED
                ));
            }
        }
        out
    }
}
