#![allow(clippy::unwrap_used)]
//! `sluice status`: the shape of its JSON and of its table, and the CloudWatch sample it picks.

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn sample() -> Status {
    Status {
        stack: "sluice".into(),
        at: at("2025-03-01T10:23:45Z"),
        window: WindowStatus {
            start: at("2025-03-01T10:00:00Z"),
            end: at("2025-03-01T11:00:00Z"),
            length_s: 3600,
            next_in_s: 2175,
            model: QuotaModel::Fixed,
        },
        quota: QuotaStatus {
            batch: QuotaSummary {
                limit: 50,
                used: 2,
                left: 48,
                adopted: 0,
            },
            individual: QuotaSummary {
                limit: 3600,
                used: 5,
                left: 3595,
                adopted: 0,
            },
            batch_size: 1000,
            records_left: 51_595,
        },
        queue: QueueStatus {
            visible: 7,
            in_flight: 1,
            delayed: 0,
            oldest_age_s: None,
            oldest_age_at: None,
            oldest_age_note: Some(OLDEST_AGE_NOTE.into()),
        },
        lanes: BTreeMap::new(),
        dlq: DlqDepth {
            visible: 3,
            in_flight: 0,
        },
        lease: LeaseStatus {
            held: true,
            holder: Some("run-1".into()),
            until: Some(at("2025-03-01T10:24:30Z")),
        },
        circuit: CircuitStatus {
            open: false,
            half_open: false,
            until: None,
            reason: None,
            failures: 0,
        },
    }
}

#[test]
fn the_oldest_age_is_the_latest_cloudwatch_sample() {
    assert_eq!(latest_sample(&[]), None);
    let got = latest_sample(&[
        (1_740_823_200, 90.4),
        (1_740_823_320, 212.6),
        (1_740_823_260, 150.0),
    ]);
    assert_eq!(got, Some((213, at("2025-03-01T10:02:00Z"))));
    assert_eq!(
        latest_sample(&[(1_740_823_200, -1.0)]).map(|(age, _)| age),
        Some(0)
    );
}

#[test]
fn a_cloudwatch_age_is_shown_with_its_sample_time() {
    let mut status = sample();
    status.queue.oldest_age_s = Some(213);
    status.queue.oldest_age_at = Some(at("2025-03-01T10:02:00Z"));
    status.queue.oldest_age_note = None;
    let text = render(&status);
    assert!(
        text.contains("oldest message 3m 33s (CloudWatch, sampled 10:02 UTC)\n"),
        "{text}"
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["queue"]["oldest_age_s"], 213);
    assert_eq!(json["queue"]["oldest_age_at"], "2025-03-01T10:02:00Z");
    assert!(json["queue"].get("oldest_age_note").is_none());
}

#[test]
fn the_table_shows_quota_backlog_dlq_lease_and_circuit() {
    let text = render(&sample());
    assert!(
        text.contains(
            "quota window   2025-03-01T10:00:00Z .. 2025-03-01T11:00:00Z (1h 00m), next window in 36m 15s"
        ),
        "{text}"
    );
    assert!(text.contains("  batch       2     48    50\n"), "{text}");
    assert!(text.contains("  individual  5     3595  3600\n"), "{text}");
    assert!(text.contains("records left this window: 51595"), "{text}");
    assert!(
        text.contains("backlog        7 visible, 1 in flight, 0 delayed"),
        "{text}"
    );
    assert!(
        text.contains(
            "oldest message n/a (no CloudWatch datapoint for ApproximateAgeOfOldestMessage"
        ),
        "{text}"
    );
    assert!(
        text.contains("dlq            3 message(s)  (sluice dlq list)"),
        "{text}"
    );
    assert!(
        text.contains("drain lease    held by run-1 until 2025-03-01T10:24:30Z (in 45s)"),
        "{text}"
    );
    assert!(text.contains("circuit        closed"), "{text}");
}

#[test]
fn a_rolling_window_is_shown_as_the_trailing_interval() {
    let mut status = sample();
    status.window = WindowStatus {
        start: at("2025-03-01T09:23:45Z"),
        end: at("2025-03-01T10:23:45Z"),
        length_s: 3600,
        next_in_s: 0,
        model: QuotaModel::Rolling,
    };
    let text = render(&status);
    assert!(
        text.contains("quota window   rolling: the 1h 00m up to 2025-03-01T10:23:45Z (each unit frees a window after it was reserved)"),
        "{text}"
    );
    assert!(!text.contains("next window"), "{text}");
    assert!(
        text.contains("records left in the rolling window: 51595"),
        "{text}"
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["window"]["model"], "rolling");
}

#[test]
fn units_adopted_from_the_provider_are_shown_only_when_there_are_some() {
    let plain = render(&sample());
    assert!(!plain.contains("adopted"), "{plain}");
    let mut status = sample();
    status.quota.individual.adopted = 120;
    status.quota.batch.adopted = 2;
    let text = render(&status);
    assert!(
        text.contains(
            "  adopted from the provider's count: 2 batch, 120 individual (another client of the account)\n"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["quota"]["individual"]["adopted"], 120);
}

#[test]
fn the_backlog_of_each_lane_is_shown_high_first() {
    let mut status = sample();
    assert!(
        !render(&status).contains("lanes"),
        "one queue: no lane line"
    );
    let depth = |visible, in_flight| LaneDepth {
        visible,
        in_flight,
        delayed: 0,
    };
    status.lanes = BTreeMap::from([
        (Priority::High, depth(1, 0)),
        (Priority::Normal, depth(7, 1)),
        (Priority::Bulk, depth(20_000, 0)),
    ]);
    let text = render(&status);
    assert!(
        text.contains(
            "lanes          high 1 + 0, normal 7 + 1, bulk 20000 + 0  (visible + in flight)"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["lanes"]["bulk"]["visible"], 20_000);
    assert_eq!(json["lanes"]["high"]["in_flight"], 0);
}

#[test]
fn json_field_names_are_stable() {
    let json = serde_json::to_value(sample()).unwrap();
    for pointer in [
        "/stack",
        "/at",
        "/window/start",
        "/window/end",
        "/window/length_s",
        "/window/next_in_s",
        "/window/model",
        "/quota/batch/used",
        "/quota/batch/left",
        "/quota/batch/limit",
        "/quota/individual/used",
        "/quota/batch_size",
        "/quota/records_left",
        "/queue/visible",
        "/queue/in_flight",
        "/queue/delayed",
        "/queue/oldest_age_s",
        "/queue/oldest_age_note",
        "/dlq/visible",
        "/dlq/in_flight",
        "/lease/held",
        "/lease/holder",
        "/lease/until",
        "/circuit/open",
        "/circuit/until",
        "/circuit/reason",
        "/circuit/half_open",
        "/circuit/failures",
    ] {
        assert!(
            json.pointer(pointer).is_some(),
            "missing {pointer} in {json}"
        );
    }
    assert_eq!(json["window"]["start"], "2025-03-01T10:00:00Z");
    assert_eq!(json["queue"]["oldest_age_s"], serde_json::Value::Null);
    let back: Status = serde_json::from_value(json).unwrap();
    assert_eq!(back, sample());
}
