//! The emulator over real HTTP, the way Sluice's provider adapter talks to it.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("sluice-emulator-tests")
        .timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client")
}

async fn spawn(config: EmulatorConfig) -> EmulatorHandle {
    Emulator::spawn(config).await.expect("emulator starts")
}

async fn spawn_default() -> EmulatorHandle {
    spawn(EmulatorConfig::default()).await
}

fn batch_body(records: &[Value]) -> Value {
    json!({ "batches": [{ "subscribers": records }] })
}

async fn post_json(em: &EmulatorHandle, url: &str, body: &Value) -> reqwest::Response {
    client()
        .post(url)
        .basic_auth(em.api_key(), None::<&str>)
        .json(body)
        .send()
        .await
        .expect("request answered")
}

async fn post_batch(em: &EmulatorHandle, records: &[Value]) -> reqwest::Response {
    post_json(em, &em.batch_url(), &batch_body(records)).await
}

async fn post_individual(em: &EmulatorHandle, record: Value) -> reqwest::Response {
    post_json(
        em,
        &em.individual_url(),
        &json!({ "subscribers": [record] }),
    )
    .await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn error_attributes(response: reqwest::Response) -> Vec<String> {
    let body: Value = response.json().await.expect("JSON error body");
    body["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .filter_map(|e| e["attribute"].as_str().map(str::to_owned))
        .collect()
}

async fn get<T: serde::de::DeserializeOwned>(em: &EmulatorHandle, path: &str) -> T {
    client()
        .get(format!("{}{path}", em.base_url()))
        .send()
        .await
        .expect("control endpoint answers")
        .json()
        .await
        .expect("control endpoint JSON")
}

/// Sleeps until just after the next window boundary, so a test's requests share one window.
async fn start_of_next_window(window_seconds: u64) {
    let window_ms = i64::try_from(window_seconds * 1000).expect("small window");
    let now = Utc::now().timestamp_millis();
    let next = (now.div_euclid(window_ms) + 1) * window_ms;
    let wait = u64::try_from(next - now).expect("future boundary") + 20;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

#[tokio::test]
async fn accepted_batch_and_individual_requests_are_recorded() {
    let em = spawn_default().await;

    let response = post_batch(
        &em,
        &[
            json!({"email": "ann@example.com", "name": "Ann", "time_zone": "Europe/Amsterdam"}),
            json!({"email": "bob@example.com", "custom_fields": {"plan": "pro"}, "ignored": 1}),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "x-ratelimit-limit").as_deref(),
        Some("50")
    );
    assert_eq!(
        header(&response, "x-ratelimit-remaining").as_deref(),
        Some("49")
    );
    assert!(header(&response, "x-request-id").is_some());
    assert_eq!(response.json::<Value>().await.expect("JSON"), json!({}));

    let response = post_individual(&em, json!({"email": "ann@example.com", "name": "Ann B"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-ratelimit-limit").as_deref(),
        Some("3600")
    );
    assert_eq!(
        header(&response, "x-ratelimit-remaining").as_deref(),
        Some("3599")
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"subscribers": [{"email": "ann@example.com", "name": "Ann B", "time_zone": "Europe/Amsterdam"}]})
    );

    let received = em.received();
    assert_eq!(received.len(), 3);
    assert_eq!(
        received.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(received[0].kind, Kind::Batch);
    assert_eq!(received[0].request_id, received[1].request_id);
    assert_eq!(received[2].kind, Kind::Individual);
    assert_ne!(received[2].request_id, received[0].request_id);
    assert_eq!(
        received[1].subscriber,
        Subscriber::new("bob@example.com").with_custom_field("plan", "pro")
    );

    let stats = em.stats();
    assert_eq!(
        stats.requests,
        PerKind {
            batch: 1,
            individual: 1
        }
    );
    assert_eq!(
        stats.records,
        PerKind {
            batch: 2,
            individual: 1
        }
    );
    assert_eq!(
        stats.quota.batch,
        QuotaUsage {
            limit: 50,
            used: 1,
            remaining: 49
        }
    );
    assert_eq!(
        stats.over_limit + stats.duplicate_emails_in_request + stats.concurrent_conflicts,
        0
    );

    // The same data over the control endpoints, in the documented shapes.
    let over_http: Vec<Received> = get(&em, "/_emulator/received").await;
    assert_eq!(over_http, received);
    let for_ann: Vec<Received> = get(&em, "/_emulator/received?email=ann%40example.com").await;
    assert_eq!(for_ann.len(), 2);
    let raw: Value = get(&em, "/_emulator/received?email=bob@example.com").await;
    let received_at = raw[0]["received_at"].as_str().expect("timestamp");
    assert!(received_at.ends_with('Z') && received_at.len() == "2026-01-01T00:00:00.000Z".len());
    assert_eq!(raw[0]["kind"], "batch");
    let stats_over_http: Stats = get(&em, "/_emulator/stats").await;
    assert_eq!(stats_over_http.records, stats.records);
    let latest: BTreeMap<String, Subscriber> = get(&em, "/_emulator/latest").await;
    assert_eq!(latest, em.latest());
}

#[tokio::test]
async fn over_the_limit_answers_429_until_the_next_window() {
    let em = spawn(EmulatorConfig {
        batch_limit: 2,
        individual_limit: 1,
        window_seconds: 1,
        ..EmulatorConfig::default()
    })
    .await;
    start_of_next_window(1).await;

    for remaining in ["1", "0"] {
        let response = post_batch(&em, &[json!({"email": "a@example.com"})]).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            header(&response, "x-ratelimit-remaining").as_deref(),
            Some(remaining)
        );
    }
    let response = post_batch(&em, &[json!({"email": "a@example.com"})]).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "x-ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(
        header(&response, "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({"message": RATE_LIMIT_MESSAGE})
    );

    // The individual quota is separate.
    assert_eq!(
        post_individual(&em, json!({"email": "b@example.com"}))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        post_individual(&em, json!({"email": "b@example.com"}))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let stats = em.stats();
    assert_eq!(stats.over_limit, 2);
    assert_eq!(stats.rejected_429, 2);
    assert_eq!(
        stats.quota.batch,
        QuotaUsage {
            limit: 2,
            used: 2,
            remaining: 0
        }
    );
    assert_eq!(em.received().len(), 3, "over-limit requests record nothing");

    start_of_next_window(1).await;
    let response = post_batch(&em, &[json!({"email": "a@example.com"})]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "x-ratelimit-remaining").as_deref(),
        Some("1")
    );
    assert_eq!(em.stats().quota.batch.used, 1);
}

#[tokio::test]
async fn invalid_records_answer_422_naming_the_record_and_consume_quota() {
    let em = spawn_default().await;

    let response = post_batch(
        &em,
        &[
            json!({"email": "ok@example.com"}),
            json!({"email": "tz@example.com", "time_zone": "Mars/Olympus_Mons"}),
            json!({"email": "not-an-email"}),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error_attributes(response).await,
        ["subscribers[1].time_zone", "subscribers[2].email"]
    );

    let response = post_individual(&em, json!({"email": "nobody@localhost"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_attributes(response).await, ["subscribers[0].email"]);

    let response = post_batch(&em, &[]).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_attributes(response).await, ["subscribers"]);

    let two_batches = json!({"batches": [
        {"subscribers": [{"email": "a@example.com"}]},
        {"subscribers": [{"email": "b@example.com"}]}
    ]});
    let response = post_json(&em, &em.batch_url(), &two_batches).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_attributes(response).await, ["batches"]);

    let response = client()
        .post(em.batch_url())
        .basic_auth(em.api_key(), Some(""))
        .header("content-type", "application/json")
        .body("{\"batches\": [")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    assert!(
        em.received().is_empty(),
        "nothing from a rejected request is recorded"
    );
    let stats = em.stats();
    assert_eq!(stats.rejected_422, 4);
    assert_eq!(stats.rejected_400, 1);
    assert_eq!(stats.requests.total(), 0);
    assert_eq!(
        stats.quota.batch.used, 4,
        "rejected requests still count against the quota"
    );
    assert_eq!(stats.quota.individual.used, 1);
}

#[tokio::test]
async fn bad_credentials_account_or_user_agent_are_refused_without_quota() {
    let em = spawn_default().await;
    let body = batch_body(&[json!({"email": "a@example.com"})]);

    let no_auth = client()
        .post(em.batch_url())
        .json(&body)
        .send()
        .await
        .expect("answered");
    assert_eq!(no_auth.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&no_auth, "x-ratelimit-remaining").as_deref(),
        Some("50")
    );

    let wrong_key = client()
        .post(em.batch_url())
        .basic_auth("wrong-key", Some(em.api_key()))
        .json(&body)
        .send()
        .await
        .expect("answered");
    assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);

    let wrong_account = post_json(
        &em,
        &format!("{}/v2/999/subscribers/batches", em.base_url()),
        &body,
    )
    .await;
    assert_eq!(wrong_account.status(), StatusCode::NOT_FOUND);

    let no_user_agent = reqwest::Client::new()
        .post(em.batch_url())
        .basic_auth(em.api_key(), None::<&str>)
        .json(&body)
        .send()
        .await
        .expect("answered");
    assert_eq!(no_user_agent.status(), StatusCode::BAD_REQUEST);

    let stats = em.stats();
    assert_eq!(
        (stats.rejected_401, stats.rejected_404, stats.rejected_400),
        (2, 1, 1)
    );
    assert_eq!(stats.quota.batch.used, 0);
    assert!(em.received().is_empty());
}

#[tokio::test]
async fn forced_statuses_answer_in_order_without_quota() {
    let em = spawn(EmulatorConfig {
        faults: Faults {
            force: vec![
                ForcedResponse {
                    status: 503,
                    count: 2,
                },
                ForcedResponse {
                    status: 429,
                    count: 1,
                },
            ],
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let record = [json!({"email": "a@example.com"})];

    assert_eq!(
        post_batch(&em, &record).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        em.faults().force,
        [
            ForcedResponse {
                status: 503,
                count: 1
            },
            ForcedResponse {
                status: 429,
                count: 1
            }
        ]
    );
    assert_eq!(
        post_batch(&em, &record).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let forced_429 = post_batch(&em, &record).await;
    assert_eq!(forced_429.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&forced_429, "retry-after").is_some());
    assert_eq!(post_batch(&em, &record).await.status(), StatusCode::CREATED);

    let stats = em.stats();
    assert_eq!(stats.forced_responses, 3);
    assert_eq!(stats.rejected_5xx_injected, 2);
    assert_eq!(stats.rejected_429, 1);
    assert_eq!(
        stats.over_limit, 0,
        "a forced 429 is not the client's fault"
    );
    assert_eq!(
        stats.quota.batch.used, 1,
        "injected failures consume no quota"
    );
    assert_eq!(em.received().len(), 1);
    assert!(em.faults().force.is_empty());
}

#[tokio::test]
async fn error_rate_one_always_answers_a_5xx() {
    let em = spawn_default().await;
    em.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    for _ in 0..5 {
        let status = post_individual(&em, json!({"email": "a@example.com"}))
            .await
            .status();
        assert!([500, 502, 503].contains(&status.as_u16()), "{status}");
    }
    let stats = em.stats();
    assert_eq!(stats.rejected_5xx_injected, 5);
    assert_eq!(stats.quota.individual.used, 0);
    assert!(em.received().is_empty());
}

#[tokio::test]
async fn rejected_emails_refuse_the_whole_batch_naming_the_index() {
    let em = spawn_default().await;
    em.set_faults(Faults::reject(["Bad@Example.com"]));

    let response = post_batch(
        &em,
        &[
            json!({"email": "a@example.com"}),
            json!({"email": "bad@example.com", "name": "Bad"}),
            json!({"email": "c@example.com"}),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_attributes(response).await, ["subscribers[1].email"]);
    assert!(em.received().is_empty());
    assert_eq!(em.stats().rejected_422, 1);

    let response = post_batch(&em, &[json!({"email": "a@example.com"})]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn dropped_connections_give_the_client_an_error() {
    let em = spawn_default().await;
    em.set_faults(Faults::drop_next(1));
    let body = batch_body(&[json!({"email": "a@example.com"})]);

    let dropped = client()
        .post(em.batch_url())
        .basic_auth(em.api_key(), None::<&str>)
        .json(&body)
        .send()
        .await;
    assert!(
        dropped.is_err(),
        "expected a connection error, got {dropped:?}"
    );

    // Hanging past the client's timeout looks like a timeout instead.
    em.set_faults(Faults {
        drop_connections: 1,
        hang_ms: 1_000,
        ..Faults::default()
    });
    let timed_out = client()
        .post(em.batch_url())
        .basic_auth(em.api_key(), None::<&str>)
        .timeout(Duration::from_millis(200))
        .json(&body)
        .send()
        .await;
    assert!(
        timed_out.as_ref().is_err_and(reqwest::Error::is_timeout),
        "{timed_out:?}"
    );

    // Control endpoints are never dropped, and the next provider call is answered.
    em.set_faults(Faults::drop_next(1));
    let _: Stats = get(&em, "/_emulator/stats").await;
    assert_eq!(em.faults().drop_connections, 1);
    assert!(
        client()
            .post(em.batch_url())
            .json(&body)
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        post_batch(&em, &[json!({"email": "a@example.com"})])
            .await
            .status(),
        StatusCode::CREATED
    );

    let stats = em.stats();
    assert_eq!(stats.dropped_connections, 3);
    assert_eq!(stats.quota.batch.used, 1);
    assert_eq!(em.received().len(), 1);
}

#[tokio::test]
async fn concurrent_requests_for_one_email_get_drip_s_same_subscriber_429() {
    let em = spawn_default().await;
    em.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });

    let first_records = [json!({"email": "same@example.com", "name": "One"})];
    let (first, second, other) = tokio::join!(
        post_batch(&em, &first_records),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            post_individual(&em, json!({"email": "SAME@example.com", "name": "Two"})).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            post_individual(&em, json!({"email": "other@example.com"})).await
        },
    );
    // The stagger makes the batch the likely winner, but which one wins does not matter.
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    assert!(
        statuses == [200, 429] || statuses == [201, 429],
        "{statuses:?}"
    );
    let refused = if first.status() == StatusCode::TOO_MANY_REQUESTS {
        first
    } else {
        second
    };
    let body = refused.text().await.expect("body");
    assert!(
        body.contains("Too many concurrent requests for the same subscriber"),
        "{body}"
    );
    assert_eq!(other.status(), StatusCode::OK);

    let stats = em.stats();
    assert_eq!(stats.concurrent_conflicts, 1);
    assert_eq!(stats.rejected_429, 1);
    assert_eq!(stats.over_limit, 0, "not the account's limit");
    // The refusal spent no capacity: one batch and two individual requests were accepted.
    assert_eq!((stats.quota.batch.used + stats.quota.individual.used), 2);
    assert_eq!(em.received_for("same@example.com").len(), 1);

    // Once the first has been answered, the email is free again.
    let again = post_individual(&em, json!({"email": "same@example.com", "name": "Two"})).await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn duplicate_emails_in_one_request_are_accepted_but_counted() {
    let em = spawn_default().await;
    let response = post_batch(
        &em,
        &[
            json!({"email": "dup@example.com", "name": "First"}),
            json!({"email": "x@example.com"}),
            json!({"email": "Dup@example.com", "time_zone": "Asia/Tokyo"}),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let stats = em.stats();
    assert_eq!(stats.duplicate_emails_in_request, 1);
    assert_eq!(stats.records.batch, 3);
    assert_eq!(
        em.latest().get("dup@example.com"),
        Some(
            &Subscriber::new("Dup@example.com")
                .with_name("First")
                .with_time_zone("Asia/Tokyo")
        )
    );
}

#[tokio::test]
async fn latest_folds_every_field_in_arrival_order() {
    let em = spawn_default().await;
    post_batch(
        &em,
        &[json!({"email": "ann@example.com", "name": "Ann", "custom_fields": {"plan": "free", "seats": "1"}})],
    )
    .await;
    post_individual(
        &em,
        json!({"email": "ann@example.com", "time_zone": "America/New_York"}),
    )
    .await;
    post_batch(
        &em,
        &[
            json!({"email": "ann@example.com", "custom_fields": {"plan": "pro"}}),
            json!({"email": "bob@example.com", "name": "Bob"}),
        ],
    )
    .await;

    let expected = BTreeMap::from([
        (
            "ann@example.com".to_owned(),
            Subscriber::new("ann@example.com")
                .with_name("Ann")
                .with_time_zone("America/New_York")
                .with_custom_field("plan", "pro")
                .with_custom_field("seats", "1"),
        ),
        (
            "bob@example.com".to_owned(),
            Subscriber::new("bob@example.com").with_name("Bob"),
        ),
    ]);
    assert_eq!(em.latest(), expected);
    let over_http: BTreeMap<String, Subscriber> = get(&em, "/_emulator/latest").await;
    assert_eq!(over_http, expected);
}

#[tokio::test]
async fn faults_and_reset_over_http() {
    let em = spawn_default().await;
    post_batch(&em, &[json!({"email": "a@example.com"})]).await;

    let faults = json!({"error_rate": 0.5, "force": [{"status": 503, "count": 2}], "reject_emails": ["x@example.com"]});
    let response = client()
        .post(format!("{}/_emulator/faults", em.base_url()))
        .json(&faults)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let current: Faults = get(&em, "/_emulator/faults").await;
    assert_eq!(current.error_rate, 0.5);
    assert_eq!(
        current.force,
        [ForcedResponse {
            status: 503,
            count: 2
        }]
    );
    assert_eq!(current, em.faults());

    for invalid in [
        json!({"error_rate": 2.0}),
        json!({"force": [{"status": 42, "count": 1}]}),
        json!({"typo": 1}),
    ] {
        let response = client()
            .post(format!("{}/_emulator/faults", em.base_url()))
            .json(&invalid)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{invalid}");
    }

    let response = client()
        .post(format!("{}/_emulator/reset", em.base_url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(em.received().is_empty());
    assert!(em.latest().is_empty());
    assert_eq!(em.faults(), Faults::default());
    let stats = em.stats();
    assert_eq!(stats.requests.total() + stats.quota.batch.used, 0);

    let health: Value = get(&em, "/_emulator/health").await;
    assert_eq!(health, json!({"status": "ok"}));
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let em = spawn_default().await;
    let url = em.batch_url();
    em.shutdown().await;
    let result = client().post(url).json(&json!({})).send().await;
    assert!(result.is_err());
}

#[test]
fn emails_are_redacted_for_logs() {
    assert_eq!(redact_email("alice@example.com"), "a***@example.com");
    assert_eq!(redact_email("nope"), "n***");
    assert_eq!(redact_email(""), "***");
}

/// The half-open probe's endpoint: a read that counts against the individual limit and changes nothing.
#[tokio::test]
async fn listing_subscribers_is_a_read_that_counts_as_an_individual_request() {
    let em = spawn_default().await;
    assert_eq!(
        post_individual(&em, json!({"email": "a@example.com", "name": "A"}))
            .await
            .status(),
        StatusCode::OK
    );
    let listed = client()
        .get(format!("{}?per_page=1", em.individual_url()))
        .basic_auth(em.api_key(), None::<&str>)
        .send()
        .await
        .expect("answer");
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(header(&listed, "x-ratelimit-remaining").is_some());
    let body: Value = listed.json().await.expect("json");
    assert_eq!(body["subscribers"][0]["email"], "a@example.com");
    let stats = em.stats();
    assert_eq!(stats.quota.individual.used, 2);
    assert_eq!(em.received().len(), 1, "the read recorded nothing");
}

/// A refusal that names no record: the drain must isolate the record itself.
#[tokio::test]
async fn unindexed_rejections_refuse_the_request_without_naming_a_record() {
    let em = spawn_default().await;
    em.set_faults(Faults {
        reject_emails_unindexed: ["bad@example.com".to_string()].into(),
        ..Faults::default()
    });
    let records = [
        json!({"email": "ok@example.com"}),
        json!({"email": "BAD@example.com"}),
    ];
    let refused = post_batch(&em, &records).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["errors"][0]
            .get("attribute")
            .is_none_or(Value::is_null),
        "{body}"
    );
    assert_eq!(
        post_batch(&em, &records[..1]).await.status(),
        StatusCode::CREATED
    );
}
