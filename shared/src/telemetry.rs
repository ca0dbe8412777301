//! Logs and metrics. Logs are JSON lines (CloudWatch-friendly); emails never appear in them in full
//! (`Email`'s `Display` redacts). Metrics are CloudWatch Embedded Metric Format lines on stdout.

use serde_json::{Map, Value, json};
use tracing_subscriber::EnvFilter;

/// Installs JSON logging once; `RUST_LOG` filters (default `info`). Safe to call twice.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time() // Lambda stamps every line itself.
        .try_init();
}

/// Redacts everything in free text that looks like an email (`j***@example.com`), for provider answers
/// and other text that reaches a log line.
pub fn redact_emails_in(text: &str) -> String {
    let is_part = |c: char| c.is_alphanumeric() || "._%+-'".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let start = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_part(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = rest[at + 1..]
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || ".-".contains(*c)))
            .map_or(rest.len(), |(i, _)| at + 1 + i);
        out.push_str(&rest[..start]);
        if start == at {
            out.push('@');
        } else {
            out.push_str(&crate::domain::redact_email(&rest[start..end]));
        }
        rest = if start == at {
            &rest[at + 1..]
        } else {
            &rest[end..]
        };
    }
    out.push_str(rest);
    out
}

/// One EMF document: `metrics` (name → value, unit `Count` unless the name ends in `Ms`) under
/// `namespace`, with the given dimensions. CloudWatch turns the printed line into metrics for free.
pub fn emf_line(
    namespace: &str,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64)],
    timestamp_ms: i64,
) -> String {
    let mut doc = Map::new();
    let dim_names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let defs: Vec<Value> = metrics
        .iter()
        .map(|(name, _)| {
            let unit = if name.ends_with("Ms") {
                "Milliseconds"
            } else {
                "Count"
            };
            json!({"Name": name, "Unit": unit})
        })
        .collect();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [dim_names], "Metrics": defs}],
        }),
    );
    for (k, v) in dimensions {
        doc.insert((*k).into(), Value::String((*v).into()));
    }
    for (name, value) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn emails_in_free_text_are_redacted() {
        assert_eq!(
            redact_emails_in(r#"422: {"email":"ann.lee@example.com is bad"} and bo@x.io."#),
            r#"422: {"email":"a***@example.com is bad"} and b***@x.io."#
        );
        assert_eq!(redact_emails_in("no at sign"), "no at sign");
        assert_eq!(redact_emails_in("a lone @ here"), "a lone @ here");
    }

    #[test]
    fn emf_line_declares_every_metric_and_dimension() {
        let line = emf_line(
            "Sluice",
            &[("Stack", "s")],
            &[("Received", 3.0), ("DrainDurationMs", 12.0)],
            1,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "Sluice");
        assert_eq!(cw["Dimensions"][0][0], "Stack");
        assert_eq!(cw["Metrics"][1]["Unit"], "Milliseconds");
        assert_eq!(v["Received"], 3.0);
        assert_eq!(v["Stack"], "s");
    }
}
