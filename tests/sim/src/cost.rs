//! The monthly AWS estimate at 40,000 changes/h, from the steady day's measured call counts and the
//! benchmark's measured durations and log volume.

use std::fmt::Write as _;

use crate::report::int;
use crate::summary::{LocalstackFigures, SimSummary};

/// List prices, us-east-1, as of writing.
pub mod price {
    pub const SQS_PER_MILLION: f64 = 0.40;
    pub const DDB_WRU_PER_MILLION: f64 = 1.25;
    pub const DDB_RRU_PER_MILLION: f64 = 0.25;
    pub const LAMBDA_GB_SECOND_ARM: f64 = 0.000_013_333_4;
    pub const LAMBDA_PER_MILLION: f64 = 0.20;
    pub const APIGW_REST_PER_MILLION: f64 = 3.50;
    pub const LOGS_INGEST_PER_GB: f64 = 0.50;
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

struct Line {
    what: String,
    quantity: String,
    price: String,
    monthly: f64,
}

/// The cost section, or a note saying what is missing.
pub fn cost_section(sim: Option<&SimSummary>, ls: Option<&LocalstackFigures>) -> String {
    let Some(sim) = sim else {
        return "Not computed yet: run `make bench` (and `make bench-localstack` for durations)."
            .into();
    };
    let c = &sim.steady_cost;
    let m = HOURS_PER_MONTH;
    let requests = c.changes_per_hour * m; // one change per POST
    let ingest_ms = ls
        .and_then(|l| l.cold_starts.iter().find(|x| x.function == "ingest"))
        .map(|x| x.warm_p50_ms.ceil());
    let ingest_log = ls
        .and_then(|l| l.cold_starts.iter().find(|x| x.function == "ingest"))
        .map_or(0.0, |x| x.log_bytes_per_invoke);
    let drain_log = ls
        .and_then(|l| l.cold_starts.iter().find(|x| x.function == "drain"))
        .map_or(1_000.0, |x| x.log_bytes_per_invoke);
    let drain_wall_s = ls
        .and_then(|l| l.drain.first())
        .map(|d| d.wall_ms / 1_000.0);
    let runs = c.drain_invocations_per_hour * m;
    // Sequential provider waits per run: each batch, and each wave of 10 individual requests.
    let provider_waits_per_run = (c.provider_batch_per_hour
        + (c.provider_individual_per_hour / 10.0).ceil())
        / c.drain_invocations_per_hour.max(1.0);
    let drain_s = drain_wall_s.map(|w| w + provider_waits_per_run * ASSUMED_PROVIDER_LATENCY_S);

    let mut lines = Vec::new();
    lines.push(Line {
        what: "API Gateway REST (ingest `POST`s, one change each)".into(),
        quantity: format!("{} requests", int(requests as u64)),
        price: format!("${:.2}/M", price::APIGW_REST_PER_MILLION),
        monthly: requests / 1e6 * price::APIGW_REST_PER_MILLION,
    });
    lines.push(Line {
        what: "Lambda requests (ingest + drain)".into(),
        quantity: format!("{} + {}", int(requests as u64), int(runs as u64)),
        price: format!("${:.2}/M", price::LAMBDA_PER_MILLION),
        monthly: (requests + runs) / 1e6 * price::LAMBDA_PER_MILLION,
    });
    match ingest_ms {
        Some(ms) => lines.push(Line {
            what: format!("Lambda duration, ingest (256 MB, {ms:.0} ms billed per request — warm p50 against LocalStack)"),
            quantity: format!("{} GB-s", int((requests * ms / 1_000.0 * INGEST_MEMORY_GB) as u64)),
            price: "$0.0000133334/GB-s (arm64)".into(),
            monthly: requests * ms / 1_000.0 * INGEST_MEMORY_GB * price::LAMBDA_GB_SECOND_ARM,
        }),
        None => lines.push(Line {
            what: "Lambda duration, ingest: not measured yet (`make bench-localstack`)".into(),
            quantity: "–".into(),
            price: "–".into(),
            monthly: 0.0,
        }),
    }
    match drain_s {
        Some(s) => lines.push(Line {
            what: format!(
                "Lambda duration, drain (512 MB, {s:.2} s per run: the 1,000-message LocalStack run + {provider_waits_per_run:.1} provider round trips × {:.0} ms assumed)",
                ASSUMED_PROVIDER_LATENCY_S * 1_000.0
            ),
            quantity: format!("{} GB-s", int((runs * s * DRAIN_MEMORY_GB) as u64)),
            price: "$0.0000133334/GB-s (arm64)".into(),
            monthly: runs * s * DRAIN_MEMORY_GB * price::LAMBDA_GB_SECOND_ARM,
        }),
        None => lines.push(Line {
            what: "Lambda duration, drain: not measured yet (`make bench-localstack`)".into(),
            quantity: "–".into(),
            price: "–".into(),
            monthly: 0.0,
        }),
    }
    let sqs_ingest = c.sqs_send_per_hour * m;
    let sqs_drain = (c.sqs_receive_per_hour
        + c.sqs_delete_per_hour
        + c.sqs_change_visibility_per_hour
        + c.sqs_get_attributes_per_hour
        + c.sqs_dlq_send_per_hour)
        * m;
    lines.push(Line {
        what: "SQS, ingest (`SendMessageBatch`, 1 entry)".into(),
        quantity: format!("{} requests", int(sqs_ingest as u64)),
        price: format!("${:.2}/M", price::SQS_PER_MILLION),
        monthly: sqs_ingest / 1e6 * price::SQS_PER_MILLION,
    });
    lines.push(Line {
        what: "SQS, drain (receive, delete, change-visibility, get-attributes)".into(),
        quantity: format!("{} requests", int(sqs_drain as u64)),
        price: format!("${:.2}/M", price::SQS_PER_MILLION),
        monthly: sqs_drain / 1e6 * price::SQS_PER_MILLION,
    });
    let wru = (c.ddb_write_units_per_hour + c.changes_per_hour) * m; // + ingest's request record
    let rru = c.ddb_read_units_per_hour * m;
    lines.push(Line {
        what: "DynamoDB writes (drain: quota, sync state, lease, progress; ingest: 1 request record per POST)".into(),
        quantity: format!("{} WRU", int(wru as u64)),
        price: format!("${:.2}/M WRU", price::DDB_WRU_PER_MILLION),
        monthly: wru / 1e6 * price::DDB_WRU_PER_MILLION,
    });
    lines.push(Line {
        what: "DynamoDB reads (drain: quota, circuit, sync state)".into(),
        quantity: format!("{} RRU", int(rru as u64)),
        price: format!("${:.2}/M RRU", price::DDB_RRU_PER_MILLION),
        monthly: rru / 1e6 * price::DDB_RRU_PER_MILLION,
    });
    let log_gb = (requests * (ingest_log + PLATFORM_LOG_BYTES)
        + runs * (drain_log + PLATFORM_LOG_BYTES))
        / 1e9;
    lines.push(Line {
        what: format!(
            "CloudWatch Logs ingestion ({ingest_log:.0} B per ingest call, {drain_log:.0} B per drain run measured, + {PLATFORM_LOG_BYTES:.0} B platform lines each)"
        ),
        quantity: format!("{log_gb:.2} GB"),
        price: format!("${:.2}/GB", price::LOGS_INGEST_PER_GB),
        monthly: log_gb * price::LOGS_INGEST_PER_GB,
    });

    let total: f64 = lines.iter().map(|l| l.monthly).sum();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "At {} changes/h ({} a month), from the steady day under Sluice. List prices as of writing, us-east-1: \
         SQS $0.40/M requests; DynamoDB on-demand $1.25/M WRU and $0.25/M RRU; Lambda $0.0000133334/GB-s (arm64) \
         + $0.20/M requests; API Gateway REST $3.50/M; CloudWatch Logs ingestion $0.50/GB. Free tiers ignored.\n",
        int(c.changes_per_hour as u64),
        int(requests as u64)
    );
    s.push_str("| item | quantity / month | price | $ / month |\n|---|---:|---:|---:|\n");
    for l in &lines {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} |",
            l.what, l.quantity, l.price, l.monthly
        );
    }
    let _ = writeln!(s, "| **total** | | | **{total:.2}** |");
    let apigw = lines.first().map_or(0.0, |l| l.monthly);
    let _ = writeln!(
        s,
        "\nThe ingest edge dominates: API Gateway alone is {:.0} % of the total, because every change arrives in \
         its own `POST`. Posting changes in bulk (`{{\"changes\":[…]}}`, up to 1,000) divides the API Gateway, \
         Lambda-request, ingest-SQS and ingest-DynamoDB lines by the batch size. The drain's own share — SQS \
         receive/delete, DynamoDB quota/sync-state/progress, one invocation a minute — is the rest. Not \
         included: EventBridge's scheduled rule (free), Secrets Manager for the provider key ($0.40/secret-month \
         + $0.05 per 10,000 calls, one call per cold start), storage (≈ 100,000 user items of < 1 KB), data \
         transfer, and `Idempotency-Key` (+2 WRU per `POST` that carries one).",
        apigw / total.max(f64::EPSILON) * 100.0
    );
    s
}
