//! The file cut into the bulk requests the ingest API takes: in file order, up to `chunk_size` (≤ 1,000)
//! changes and under the body limit each, and the `Idempotency-Key` of each. The cut depends only on the
//! file's rows, so every run of the same file makes the same chunks, and a chunk's key — derived from the
//! file's digest, the chunk's position and the rows left out of it — is the same on every run: a chunk sent
//! again after a crash is a replay of the first answer, never a second copy.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::source::Row;

/// Most changes in one request (the ingest API's limit).
pub const MAX_CHUNK: usize = 1_000;
/// Largest body a chunk makes, in bytes: under the ingest API's 1 MiB with room for the envelope.
pub const MAX_BODY: usize = 1_000_000;

/// One bulk request: the indexes (into the input's rows) of the changes it carries, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position among the file's chunks, from 0.
    pub index: usize,
    pub rows: Vec<usize>,
}

/// Cuts the rows that are changes into chunks of at most `chunk_size` changes and [`MAX_BODY`] bytes.
/// Rows refused while reading are in no chunk. A change over the body limit on its own goes alone (the
/// API refuses it, and says why).
pub fn plan(rows: &[Row], chunk_size: usize) -> Vec<Chunk> {
    let chunk_size = chunk_size.clamp(1, MAX_CHUNK);
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for (i, row) in rows.iter().enumerate() {
        let Ok(change) = &row.change else { continue };
        let size = change.len() + 1;
        if !current.is_empty() && (current.len() == chunk_size || bytes + size > MAX_BODY) {
            let index = chunks.len();
            chunks.push(Chunk {
                index,
                rows: std::mem::take(&mut current),
            });
            bytes = 0;
        }
        current.push(i);
        bytes += size;
    }
    if !current.is_empty() {
        let index = chunks.len();
        chunks.push(Chunk {
            index,
            rows: current,
        });
    }
    chunks
}

impl Chunk {
    /// The rows this chunk sends once `refused` (row indexes the API refused earlier) are left out.
    pub fn sendable<V>(&self, refused: &BTreeMap<usize, V>) -> Vec<usize> {
        self.rows
            .iter()
            .copied()
            .filter(|i| !refused.contains_key(i))
            .collect()
    }

    /// The `Idempotency-Key` of this chunk of the file with digest `digest`, carrying `sending`.
    /// Leaving refused rows out changes the body, so it changes the key too (the API refuses a key
    /// reused with another body); the same rows left out give the same key on every run.
    pub fn key(&self, digest: &str, sending: &[usize]) -> String {
        let mut hash = Sha256::new();
        hash.update(b"sluice-backfill/1\n");
        hash.update(digest.as_bytes());
        hash.update(format!("\nchunk {}\n", self.index).as_bytes());
        for i in sending {
            hash.update(format!("{i},").as_bytes());
        }
        format!("backfill-{}", &hex::encode(hash.finalize())[..40])
    }
}

/// The request body for `sending`: `{"changes":[...]}`.
pub fn body(rows: &[Row], sending: &[usize]) -> String {
    let changes: Vec<&str> = sending
        .iter()
        .filter_map(|i| rows.get(*i)?.change.as_deref().ok())
        .collect();
    format!("{{\"changes\":[{}]}}", changes.join(","))
}
