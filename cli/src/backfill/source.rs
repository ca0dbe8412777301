//! The input file, read into rows: JSON Lines (one change object a line) or CSV with a header row
//! (`email`, `name`, `time_zone`, `occurred_at`, `priority`, `custom_fields.<key>` columns, read with the
//! `csv` crate through serde). Each row keeps what it was in the file, so a refused row can be written back
//! as it came; a row that cannot be a change at all (not JSON, not an object, a short CSV record) is
//! refused here with the reason instead of stopping the run. A header the backfill cannot map is an error
//! before anything is sent. The file's SHA-256 identifies it across runs (chunk keys, resume state).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The column (CSV) or key (JSON Lines) a refused-rows file adds with the reason; ignored when read back,
/// so the fixed file can be backfilled as it is.
pub const REFUSED_REASON: &str = "refused_reason";
/// The priority every row is sent with unless it names its own.
pub const BACKFILL_PRIORITY: &str = "bulk";
/// The plain columns a CSV header may have; `custom_fields.<key>` columns add custom fields.
const CSV_COLUMNS: [&str; 5] = ["email", "name", "time_zone", "occurred_at", "priority"];
const CUSTOM_PREFIX: &str = "custom_fields.";

/// How the input is written.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON Lines: one change object per line (`.jsonl`, `.ndjson`).
    Jsonl,
    /// CSV with a header row (`.csv`).
    Csv,
}

impl Format {
    /// The format a file name says, if it says one.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// One row as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// A JSON line, as written (lossy only where it was not UTF-8).
    Line(String),
    /// A CSV record's fields.
    Fields(Vec<String>),
}

/// One row of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Where it is in the file: the line (JSON Lines) or the record's line (CSV, the header is line 1).
    pub line: u64,
    pub raw: Raw,
    /// The change as compact JSON, ready for a `changes` array — or why this row cannot be one.
    pub change: Result<String, String>,
}

/// The whole input: its format, digest, CSV header and rows.
#[derive(Debug, Clone)]
pub struct Input {
    pub format: Format,
    /// SHA-256 of the file's bytes, hex.
    pub digest: String,
    pub header: Option<Vec<String>>,
    pub rows: Vec<Row>,
}

/// Reads and parses the file at `path`.
pub fn read(path: &Path, format: Format) -> anyhow::Result<Input> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes, format).with_context(|| format!("reading {}", path.display()))
}

/// Parses a file's bytes.
pub fn parse(bytes: &[u8], format: Format) -> anyhow::Result<Input> {
    let digest = hex::encode(Sha256::digest(bytes));
    let (header, rows) = match format {
        Format::Jsonl => (None, jsonl_rows(bytes)),
        Format::Csv => {
            let (header, rows) = csv_rows(bytes)?;
            (Some(header), rows)
        }
    };
    Ok(Input {
        format,
        digest,
        header,
        rows,
    })
}

fn jsonl_rows(bytes: &[u8]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let change = match std::str::from_utf8(line) {
            Err(e) => Err(format!("not UTF-8: {e}")),
            Ok(text) => match serde_json::from_str::<Value>(text) {
                Err(e) => Err(format!("not valid JSON: {e}")),
                Ok(Value::Object(change)) => Ok(finish(change)),
                Ok(_) => Err("not a JSON object (one change per line)".to_owned()),
            },
        };
        rows.push(Row {
            line: n as u64 + 1,
            raw: Raw::Line(String::from_utf8_lossy(line).into_owned()),
            change,
        });
    }
    rows
}

/// Drops a refused-rows file's reason, sets the backfill's priority unless the row has one, serialises.
fn finish(mut change: Map<String, Value>) -> String {
    change.remove(REFUSED_REASON);
    change
        .entry("priority")
        .or_insert_with(|| Value::String(BACKFILL_PRIORITY.to_owned()));
    Value::Object(change).to_string()
}

fn csv_rows(bytes: &[u8]) -> anyhow::Result<(Vec<String>, Vec<Row>)> {
    // Flexible, so a record of the wrong length is a refused row kept whole, not a lost one.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .context("reading the CSV header row")?
        .clone();
    check_header(&headers)?;
    let mut rows = Vec::new();
    for record in reader.byte_records() {
        let record = record.context("reading the CSV")?;
        let line = record.position().map_or(0, csv::Position::line);
        let fields = record
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let change = if record.len() != headers.len() {
            Err(format!(
                "{} fields where the header has {}",
                record.len(),
                headers.len()
            ))
        } else {
            csv::StringRecord::from_byte_record(record)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(|record| {
                    record
                        .deserialize::<BTreeMap<String, String>>(Some(&headers))
                        .map_err(|e| format!("unreadable record: {e}"))
                })
                .map(csv_change)
        };
        rows.push(Row {
            line,
            raw: Raw::Fields(fields),
            change,
        });
    }
    Ok((headers.iter().map(str::to_owned).collect(), rows))
}

/// Every column must map to a change field, once; `email` is required.
fn check_header(headers: &csv::StringRecord) -> anyhow::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for column in headers {
        let known = CSV_COLUMNS.contains(&column)
            || column == REFUSED_REASON
            || column
                .strip_prefix(CUSTOM_PREFIX)
                .is_some_and(|key| !key.is_empty());
        if !known {
            bail!(
                "the CSV column '{column}' is not a change field (columns: {}, {CUSTOM_PREFIX}<key>)",
                CSV_COLUMNS.join(", ")
            );
        }
        if !seen.insert(column) {
            bail!("the CSV column '{column}' appears twice in the header");
        }
    }
    if !seen.contains("email") {
        bail!("the CSV header has no 'email' column");
    }
    Ok(())
}

/// A CSV record's cells as a change: an empty cell is a field left unset.
fn csv_change(cells: BTreeMap<String, String>) -> String {
    let mut change = Map::new();
    let mut custom = Map::new();
    for (column, value) in cells {
        if value.is_empty() || column == REFUSED_REASON {
            continue;
        }
        match column.strip_prefix(CUSTOM_PREFIX) {
            Some(key) => custom.insert(key.to_owned(), Value::String(value)),
            None => change.insert(column, Value::String(value)),
        };
    }
    if !custom.is_empty() {
        change.insert("custom_fields".to_owned(), Value::Object(custom));
    }
    finish(change)
}
