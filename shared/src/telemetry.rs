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
