//! Text output shared by the commands: durations, aligned tables, redacted emails.

use std::fmt::Write as _;

/// A duration in seconds, short and readable: `42s`, `3m 05s`, `2h 03m`, `3d 04h`; negative → `0s`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m {:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// Columns aligned on the widest cell, two spaces apart; no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<width$}", width = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `a***@example.com` for an address, `-` when there is none: the DLQ listing never shows a full email.
pub fn redacted_email(email: Option<&str>) -> String {
    email.map_or_else(|| "-".to_owned(), sluice::domain::redact_email)
}

/// At most `max` characters, the cut marked with `…`; newlines become spaces (one row per item).
pub fn shorten(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(-5), "0s");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(60), "1m 00s");
        assert_eq!(duration(185), "3m 05s");
        assert_eq!(duration(3_600), "1h 00m");
        assert_eq!(duration(7_380), "2h 03m");
        assert_eq!(duration(86_400 * 3 + 4 * 3_600 + 59), "3d 04h");
    }

    #[test]
    fn tables_align_on_the_widest_cell() {
        let out = table(
            &["id", "reason", "age"],
            &[
                vec!["a1".into(), "rejected".into(), "3m 05s".into()],
                vec!["b22222".into(), "malformed".into(), "".into()],
            ],
        );
        assert_eq!(
            out,
            "id      reason     age\n\
             a1      rejected   3m 05s\n\
             b22222  malformed\n"
        );
    }

    #[test]
    fn long_text_is_shortened_on_one_line() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("line one\nline two", 20), "line one line two");
        assert_eq!(shorten("abcdefghij", 5), "abcd…");
        assert_eq!(shorten("ééééé", 5), "ééééé");
    }

    #[test]
    fn emails_are_redacted() {
        assert_eq!(redacted_email(Some("ann@example.com")), "a***@example.com");
        assert_eq!(redacted_email(Some("not-an-email")), "***");
        assert_eq!(redacted_email(None), "-");
    }
}
