//! Tests of the configuration views.

use super::*;
use crate::domain::Priority;
use std::collections::HashMap;

fn base() -> HashMap<&'static str, String> {
    HashMap::from([
        ("QUEUE_URL", "http://q".to_string()),
        ("DLQ_URL", "http://d".to_string()),
        ("TABLE_NAME", "t".to_string()),
        ("PROVIDER_BASE_URL", "http://127.0.0.1:8025/".to_string()),
        ("PROVIDER_ACCOUNT_ID", "1".to_string()),
        ("PROVIDER_API_KEY", "k".to_string()),
    ])
}

fn load(m: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
    Config::from_lookup(|k| m.get(k).cloned())
}

#[test]
fn defaults_are_the_providers_published_limits() {
    let c = load(&base()).unwrap();
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.limits.capacity_per_window(), 53_600);
    assert_eq!(c.provider_base_url, "http://127.0.0.1:8025");
    assert_eq!(format!("{:?}", c.provider_key), "Plain(<redacted>)");
}

#[test]
fn ingest_needs_only_the_queue_and_table() {
    let m = HashMap::from([
        ("QUEUE_URL", "http://q".to_string()),
        ("TABLE_NAME", "t".to_string()),
    ]);
    let c = IngestConfig::from_lookup(|k| m.get(k).cloned()).unwrap();
    assert_eq!(
        (
            c.queue_url.as_str(),
            c.table_name.as_str(),
            c.ingest_api_key
        ),
        ("http://q", "t", None)
    );
    let err = IngestConfig::from_lookup(|k| {
        if k == "QUEUE_URL" {
            Some("q".into())
        } else {
            None
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("TABLE_NAME"), "{err}");
}

#[test]
fn lanes_without_a_queue_share_the_normal_one_and_a_shared_url_is_refused() {
    let c = load(&base()).unwrap();
    assert_eq!(c.lanes.queue(Priority::High), "http://q");
    assert_eq!(c.lanes.served().count(), 1);
    let mut m = base();
    m.insert("QUEUE_URL_HIGH", "http://h".into());
    m.insert("QUEUE_URL_BULK", "http://b".into());
    let c = load(&m).unwrap();
    assert_eq!(c.lanes.queue(Priority::High), "http://h");
    assert_eq!(c.lanes.queue(Priority::Normal), "http://q");
    assert_eq!(c.lanes.queue(Priority::Bulk), "http://b");
    m.insert("QUEUE_URL_BULK", "http://h".into());
    let err = load(&m).unwrap_err().to_string();
    assert!(err.contains("QUEUE_URL_HIGH"), "{err}");
    let mut m = base();
    m.insert("QUEUE_URL_BULK", "http://q".into());
    let err = load(&m).unwrap_err().to_string();
    assert!(err.contains("QUEUE_URL_BULK"), "{err}");
}

#[test]
fn a_provider_timeout_that_cannot_fit_the_run_is_refused() {
    let mut m = base();
    m.insert("PROVIDER_TIMEOUT_MS", "120000".into());
    let err = load(&m).unwrap_err().to_string();
    assert!(
        err.contains("PROVIDER_TIMEOUT_MS") && err.contains("45000"),
        "{err}"
    );
    m.insert("DRAIN_TIMEOUT_SECONDS", "900".into());
    let c = load(&m).unwrap();
    assert_eq!(c.drain_timeout, Duration::from_secs(900));
    assert_eq!(c.max_receive_count, 10);
}

#[test]
fn errors_name_the_variable() {
    let mut m = base();
    m.remove("QUEUE_URL");
    assert!(load(&m).unwrap_err().to_string().contains("QUEUE_URL"));
    let mut m = base();
    m.insert("BATCH_SIZE", "5000".into());
    assert!(load(&m).unwrap_err().to_string().contains("BATCH_SIZE"));
    let mut m = base();
    m.insert("QUOTA_WINDOW_SECONDS", "soon".into());
    assert!(
        load(&m)
            .unwrap_err()
            .to_string()
            .contains("QUOTA_WINDOW_SECONDS")
    );
}

#[test]
fn the_quota_model_is_fixed_unless_rolling_is_asked_for() {
    assert_eq!(load(&base()).unwrap().limits.quota_model, QuotaModel::Fixed);
    let mut m = base();
    m.insert("QUOTA_MODEL", "rolling".into());
    assert_eq!(load(&m).unwrap().limits.quota_model, QuotaModel::Rolling);
    m.insert("QUOTA_MODEL", "sliding".into());
    let err = load(&m).unwrap_err().to_string();
    assert!(
        err.contains("QUOTA_MODEL") && err.contains("sliding"),
        "{err}"
    );
}
