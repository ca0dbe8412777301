//! The resume state: a small JSON file beside the input (`FILE.backfill-state.json`) saying which file it
//! belongs to (its digest), how many chunks are done, and the rows the API refused with their reasons.
//! It is written after every chunk's answer — atomically, through a temporary file and a rename — so a
//! run stopped at any point resumes at the first chunk without a recorded answer: nothing is skipped, and
//! the one chunk that may have been accepted without being recorded is sent again under the same key,
//! which the API answers as a replay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

/// How far a backfill of one file has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// SHA-256 of the input this state belongs to.
    pub digest: String,
    /// Chunks answered, from the first (they are sent in order).
    pub chunks_done: usize,
    /// Changes the API accepted (replays included: they were accepted by an earlier attempt).
    pub accepted: u64,
    /// Chunks whose answer was a replay of an earlier attempt's.
    pub replayed_chunks: u64,
    /// Row index → the API's reason, for rows it refused.
    pub refused: BTreeMap<usize, String>,
}

impl State {
    pub fn new(digest: &str) -> Self {
        Self {
            version: VERSION,
            digest: digest.to_owned(),
            chunks_done: 0,
            accepted: 0,
            replayed_chunks: 0,
            refused: BTreeMap::new(),
        }
    }
}

/// Where the state of a backfill of `input` lives.
pub fn path_for(input: &Path) -> PathBuf {
    let mut name = input.file_name().unwrap_or_default().to_os_string();
    name.push(".backfill-state.json");
    input.with_file_name(name)
}

/// The saved state for the file with `digest`, a fresh one if there is none; an error if the state
/// belongs to another version of the file (resuming would skip or repeat rows).
pub fn load(path: &Path, digest: &str) -> anyhow::Result<State> {
    let raw = match std::fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::new(digest)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let state: State = serde_json::from_slice(&raw)
        .with_context(|| format!("{} is not a backfill state file", path.display()))?;
    if state.version != VERSION {
        bail!(
            "{} was written by another version of sluice (state version {}); delete it to start over",
            path.display(),
            state.version
        );
    }
    if state.digest != digest {
        bail!(
            "the input changed since the backfill recorded in {} ({} of its chunks were sent): restore \
             the file to resume, or delete the state file to backfill the new file from the start",
            path.display(),
            state.chunks_done
        );
    }
    Ok(state)
}

/// Writes `state` to `path` atomically.
pub fn save(path: &Path, state: &State) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let json = serde_json::to_vec_pretty(state).context("serialising the backfill state")?;
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
