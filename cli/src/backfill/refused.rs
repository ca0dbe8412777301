//! The refused-rows file: every row that was not enqueued — refused while reading, or by the API's 422 —
//! written in the input's own format beside it (`FILE.refused.jsonl` / `FILE.refused.csv`), each with a
//! `refused_reason` (a key of the JSON object, or a last CSV column). Fix the rows and backfill the file
//! as it is: the backfill ignores `refused_reason` when it reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::source::{Format, Input, REFUSED_REASON, Raw};

/// Where the refused rows of `input_path` go.
pub fn path_for(input_path: &Path, format: Format) -> PathBuf {
    let mut name = input_path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".refused.{}", format.extension()));
    input_path.with_file_name(name)
}

/// Every refused row, by row index, with its reason: the ones the reader refused, then `by_api`.
pub fn all(input: &Input, by_api: &BTreeMap<usize, String>) -> BTreeMap<usize, String> {
    let mut refused: BTreeMap<usize, String> = input
        .rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| Some((i, row.change.clone().err()?)))
        .collect();
    refused.extend(by_api.iter().map(|(i, why)| (*i, why.clone())));
    refused
}

/// The refused-rows file's contents, in the input's format (rows in file order).
pub fn render(input: &Input, refused: &BTreeMap<usize, String>) -> anyhow::Result<Vec<u8>> {
    match input.format {
        Format::Jsonl => Ok(render_jsonl(input, refused)),
        Format::Csv => render_csv(input, refused),
    }
}

fn render_jsonl(input: &Input, refused: &BTreeMap<usize, String>) -> Vec<u8> {
    let mut out = String::new();
    for (i, why) in refused {
        let Some(Raw::Line(line)) = input.rows.get(*i).map(|r| &r.raw) else {
            continue;
        };
        // A line that is an object carries its reason; any other line goes back as it was.
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(mut change)) => {
                change.insert(REFUSED_REASON.to_owned(), Value::String(why.clone()));
                out.push_str(&Value::Object(change).to_string());
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn render_csv(input: &Input, refused: &BTreeMap<usize, String>) -> anyhow::Result<Vec<u8>> {
    let mut header = input.header.clone().unwrap_or_default();
    let reason_at = match header.iter().position(|c| c == REFUSED_REASON) {
        Some(at) => at,
        None => {
            header.push(REFUSED_REASON.to_owned());
            header.len() - 1
        }
    };
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    writer.write_record(&header)?;
    for (i, why) in refused {
        let Some(row) = input.rows.get(*i) else {
            continue;
        };
        let mut fields = match &row.raw {
            Raw::Fields(fields) => fields.clone(),
            Raw::Line(line) => vec![line.clone()],
        };
        let reason = format!("line {}: {why}", row.line);
        if fields.len() == input.header.as_ref().map_or(0, Vec::len) {
            fields.resize(header.len(), String::new());
            fields[reason_at] = reason;
        } else {
            // A record of the wrong length goes back whole, its reason after it, for the user to fix.
            fields.push(reason);
        }
        writer.write_record(&fields)?;
    }
    writer.into_inner().context("writing the refused rows")
}

/// Writes the refused rows beside the input, or removes a stale file when nothing was refused.
pub fn write(path: &Path, input: &Input, refused: &BTreeMap<usize, String>) -> anyhow::Result<()> {
    if refused.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let bytes = render(input, refused)?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
