//! The monthly AWS estimate at 40,000 changes/h, from measured call counts — the steady day under Sluice
//! with one change per `POST`, and the same changes posted in bulk requests of 100 (`steady-bulk`) — and
//! the LocalStack benchmark's measured durations and log volume.

use std::fmt::Write as _;

use crate::report::int;
use crate::summary::{CostInputs, LocalstackFigures, SimSummary};

/// List prices, us-east-1, as of writing.
pub mod price {
    pub const SQS_PER_MILLION: f64 = 0.40;
    /// DynamoDB on-demand, since AWS halved on-demand throughput prices in November 2024 (it was $1.25
    /// per million WRU and $0.25 per million RRU before).
    pub const DDB_WRU_PER_MILLION: f64 = 0.625;
    pub const DDB_RRU_PER_MILLION: f64 = 0.125;
    pub const LAMBDA_GB_SECOND_ARM: f64 = 0.000_013_333_4;
    pub const LAMBDA_PER_MILLION: f64 = 0.20;
    pub const APIGW_HTTP_PER_MILLION: f64 = 1.00;
    pub const APIGW_REST_PER_MILLION: f64 = 3.50;
    pub const LOGS_INGEST_PER_GB: f64 = 0.50;
    pub const SECRET_PER_MONTH: f64 = 0.40;
}

/// Hours in an average month.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Lambda memory from `template.yaml`.
pub const INGEST_MEMORY_GB: f64 = 256.0 / 1024.0;
pub const DRAIN_MEMORY_GB: f64 = 512.0 / 1024.0;
/// Assumed latency of one call to the real provider (the emulator answers in about a millisecond).
pub const ASSUMED_PROVIDER_LATENCY_S: f64 = 0.3;
/// Lambda's START / END / REPORT lines per invocation, bytes (estimate).
pub const PLATFORM_LOG_BYTES: f64 = 300.0;
/// The LocalStack benchmark's name for the ingest function invoked with a bulk `POST` of 100 changes.
pub const INGEST_BULK: &str = "ingest-bulk-100";
/// Secrets the stack reads: the provider's key and the ingest key.
const SECRETS: f64 = 2.0;

/// One item of the bill for one way of posting.
struct Line {
    what: &'static str,
    quantity: String,
    price: String,
    monthly: Option<f64>,
}

/// The cost section, or a note saying what is missing.
pub fn cost_section(sim: Option<&SimSummary>, ls: Option<&LocalstackFigures>) -> String {
    let Some(sim) = sim else {
        return "Not computed yet: run `make bench` (and `make bench-localstack` for durations)."
            .into();
    };
    let single = lines(&sim.steady_cost, ls, "ingest");
    let bulk = sim
        .steady_bulk_cost
        .as_ref()
        .map(|c| lines(c, ls, INGEST_BULK));
    let total = |ls: &[Line]| ls.iter().filter_map(|l| l.monthly).sum::<f64>();
    let c = &sim.steady_cost;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "At {} changes/h ({} a month), from the steady day under Sluice's defaults: one change per `POST`, \
         and the same changes posted in bulk requests of 100 (simulator day `steady-bulk`). List prices as of \
         writing, us-east-1: API Gateway HTTP API $1.00/M requests (the template's default door; the REST door \
         is $3.50/M); Lambda $0.0000133334/GB-s (arm64) + $0.20/M requests; SQS $0.40/M requests; DynamoDB \
         on-demand $0.625/M WRU and $0.125/M RRU (halved by AWS in November 2024; estimates before issue 11 \
         used $1.25 and $0.25); Secrets Manager $0.40/secret-month; CloudWatch Logs ingestion $0.50/GB. Free \
         tiers ignored. \"–\" = not measured yet (`make bench-localstack`).\n",
        int(c.changes_per_hour as u64),
        int((c.changes_per_hour * HOURS_PER_MONTH) as u64)
    );
    s.push_str(
        "| item | price | single-change POSTs: quantity / month | $ / month | bulk POSTs of 100: quantity / month | $ / month |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let money = |m: Option<f64>| m.map_or("–".to_string(), |m| format!("{m:.2}"));
    for (i, l) in single.iter().enumerate() {
        let b = bulk.as_ref().map(|b| &b[i]);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            l.what,
            l.price,
            l.quantity,
            money(l.monthly),
            b.map_or("not simulated".to_string(), |b| b.quantity.clone()),
            money(b.and_then(|b| b.monthly)),
        );
    }
    let _ = writeln!(
        s,
        "| **total** | | | **{:.2}** | | **{}** |",
        total(&single),
        bulk.as_ref()
            .map_or("–".to_string(), |b| format!("{:.2}", total(b)))
    );
    let rest_extra = c.changes_per_hour * HOURS_PER_MONTH / 1e6
        * (price::APIGW_REST_PER_MILLION - price::APIGW_HTTP_PER_MILLION);
    let _ = writeln!(
        s,
        "\nThe REST door instead of the HTTP API adds ${rest_extra:.2} a month at one change per `POST` \
         (${:.2} in bulk). Not included: EventBridge's scheduled rule (free), Secrets Manager calls (one per \
         cold start, $0.05 per 10,000), storage (≈ 100,000 user items of < 1 KB), data transfer, and \
         `Idempotency-Key` (+2 WRU per `POST` that carries one).",
        rest_extra / 100.0
    );
    s
}

/// The cost goals of issue 11: ≤ $100 a month at one change per `POST`, ≤ $40 in bulk POSTs of 100.
pub fn cost_goals(sim: &SimSummary, ls: Option<&LocalstackFigures>) -> String {
    let total =
        |lines: &[Line]| -> Option<f64> { lines.iter().map(|l| l.monthly).sum::<Option<f64>>() };
    let single = total(&lines(&sim.steady_cost, ls, "ingest"));
    let bulk = sim
        .steady_bulk_cost
        .as_ref()
        .and_then(|c| total(&lines(c, ls, INGEST_BULK)));
    let mut s = String::new();
    for (what, got, goal) in [
        ("single-change POSTs", single, 100.0),
        ("bulk POSTs of 100", bulk, 40.0),
    ] {
        let _ = match got {
            Some(g) => writeln!(
                s,
                "| estimated AWS cost at 40,000 changes/h, {what}: ≤ ${goal:.0}/month | ${g:.2} | {} |",
                if g <= goal {
                    "**met**".to_string()
                } else {
                    format!("**missed** — by ${:.2}", g - goal)
                }
            ),
            None => writeln!(
                s,
                "| estimated AWS cost at 40,000 changes/h, {what}: ≤ ${goal:.0}/month | not measured yet (`make bench` and `make bench-localstack`) | – |"
            ),
        };
    }
    s
}

/// The bill of one day's measured calls, scaled to a month. `ingest_function` names the LocalStack
/// benchmark's ingest case whose warm duration and log volume stand for one `POST`.
fn lines(c: &CostInputs, ls: Option<&LocalstackFigures>, ingest_function: &str) -> Vec<Line> {
    let m = HOURS_PER_MONTH;
    let posts = c.changes_per_hour / c.changes_per_request.max(1.0) * m;
    let runs = c.drain_invocations_per_hour * m;
    let ingest = ls.and_then(|l| l.cold_starts.iter().find(|x| x.function == ingest_function));
    let drain_cold = ls.and_then(|l| l.cold_starts.iter().find(|x| x.function == "drain"));
    // Seconds per drain run: the measured LocalStack time per received message (1,000 messages of
    // distinct users, excluding provider time) times the messages a run receives on this day, plus the
    // sequential provider waits (each batch, each wave of 10 individual requests) at an assumed latency.
    let drain_s = ls.and_then(|l| l.drain.first()).map(|d| {
        let per_message_s = d.wall_excluding_provider_ms / 1_000.0 / f64::from(d.received.max(1));
        let messages_per_run = c.messages_received_per_hour / c.drain_invocations_per_hour.max(1.0);
        let waits = (c.provider_batch_per_hour + (c.provider_individual_per_hour / 10.0).ceil())
            / c.drain_invocations_per_hour.max(1.0);
        per_message_s * messages_per_run + waits * ASSUMED_PROVIDER_LATENCY_S
    });
    let per_million = |n: f64, p: f64| n / 1e6 * p;
    let gb_s = |n: f64, s: f64, gb: f64| n * s * gb;
    let wru = (c.ddb_write_units_per_hour * m) + posts; // + ingest's request record, < 1 KB
    let rru = c.ddb_read_units_per_hour * m;
    let sqs_ingest = c.sqs_send_per_hour * m;
    let sqs_drain = (c.sqs_receive_per_hour
        + c.sqs_delete_per_hour
        + c.sqs_change_visibility_per_hour
        + c.sqs_get_attributes_per_hour
        + c.sqs_dlq_send_per_hour)
        * m;
    let log_gb = match (ingest, drain_cold) {
        (Some(i), Some(d)) => Some(
            (posts * (i.log_bytes_per_invoke + PLATFORM_LOG_BYTES)
                + runs * (d.log_bytes_per_invoke + PLATFORM_LOG_BYTES))
                / 1e9,
        ),
        _ => None,
    };
    vec![
        Line {
            what: "API Gateway HTTP API (ingest `POST`s)",
            quantity: format!("{} requests", int(posts as u64)),
            price: format!("${:.2}/M", price::APIGW_HTTP_PER_MILLION),
            monthly: Some(per_million(posts, price::APIGW_HTTP_PER_MILLION)),
        },
        Line {
            what: "Lambda requests (ingest + drain)",
            quantity: format!("{} + {}", int(posts as u64), int(runs as u64)),
            price: format!("${:.2}/M", price::LAMBDA_PER_MILLION),
            monthly: Some(per_million(posts + runs, price::LAMBDA_PER_MILLION)),
        },
        Line {
            what: "Lambda duration, ingest (256 MB; warm p50 per `POST` against LocalStack, billed per ms)",
            quantity: ingest.map_or("–".into(), |i| {
                format!(
                    "{} GB-s ({:.0} ms each)",
                    int(gb_s(posts, i.warm_p50_ms.ceil() / 1e3, INGEST_MEMORY_GB) as u64),
                    i.warm_p50_ms.ceil()
                )
            }),
            price: "$0.0000133334/GB-s".into(),
            monthly: ingest.map(|i| {
                gb_s(posts, i.warm_p50_ms.ceil() / 1e3, INGEST_MEMORY_GB)
                    * price::LAMBDA_GB_SECOND_ARM
            }),
        },
        Line {
            what: "Lambda duration, drain (512 MB; LocalStack time per message × messages per run + provider round trips × 300 ms assumed)",
            quantity: drain_s.map_or("–".into(), |s| {
                format!(
                    "{} GB-s ({s:.2} s per run)",
                    int(gb_s(runs, s, DRAIN_MEMORY_GB) as u64)
                )
            }),
            price: "$0.0000133334/GB-s".into(),
            monthly: drain_s.map(|s| gb_s(runs, s, DRAIN_MEMORY_GB) * price::LAMBDA_GB_SECOND_ARM),
        },
        Line {
            what: "SQS, ingest (`SendMessageBatch` of ≤ 10 entries)",
            quantity: format!("{} requests", int(sqs_ingest as u64)),
            price: format!("${:.2}/M", price::SQS_PER_MILLION),
            monthly: Some(per_million(sqs_ingest, price::SQS_PER_MILLION)),
        },
        Line {
            what: "SQS, drain (receive, delete, change-visibility, get-attributes, re-queue, DLQ)",
            quantity: format!("{} requests", int(sqs_drain as u64)),
            price: format!("${:.2}/M", price::SQS_PER_MILLION),
            monthly: Some(per_million(sqs_drain, price::SQS_PER_MILLION)),
        },
        Line {
            what: "DynamoDB writes (drain: quota, sync state, in-flight note, lease, progress of multi-change requests; ingest: 1 request record per `POST`)",
            quantity: format!("{} WRU", int(wru as u64)),
            price: format!("${:.3}/M WRU", price::DDB_WRU_PER_MILLION),
            monthly: Some(per_million(wru, price::DDB_WRU_PER_MILLION)),
        },
        Line {
            what: "DynamoDB reads (drain: quota, circuit, sync state, in-flight notes)",
            quantity: format!("{} RRU", int(rru as u64)),
            price: format!("${:.3}/M RRU", price::DDB_RRU_PER_MILLION),
            monthly: Some(per_million(rru, price::DDB_RRU_PER_MILLION)),
        },
        Line {
            what: "Secrets Manager (provider key, ingest key)",
            quantity: format!("{SECRETS:.0} secrets"),
            price: format!("${:.2}/secret-month", price::SECRET_PER_MONTH),
            monthly: Some(SECRETS * price::SECRET_PER_MONTH),
        },
        Line {
            what: "CloudWatch Logs ingestion (measured bytes per ingest `POST` and drain run, + 300 B platform lines each)",
            quantity: log_gb.map_or("–".into(), |g| format!("{g:.2} GB")),
            price: format!("${:.2}/GB", price::LOGS_INGEST_PER_GB),
            monthly: log_gb.map(|g| g * price::LOGS_INGEST_PER_GB),
        },
    ]
}
