//! The demo driver behind `make demo`: sends sample traffic to the ingest function, invokes the drain on a
//! timer, and prints tick by tick what the drain did and what the provider emulator received — until every
//! user's latest values have arrived. Exits non-zero if they have not after `--max-ticks`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Sample traffic through a locally running Sluice, shown tick by tick")]
struct Args {
    /// The ingest endpoint (cargo lambda watch function URL).
    #[arg(
        long,
        default_value = "http://127.0.0.1:9000/lambda-url/ingest/v1/changes"
    )]
    ingest_url: String,
    /// The drain's Invoke API under cargo lambda watch.
    #[arg(
        long,
        default_value = "http://127.0.0.1:9000/2015-03-31/functions/drain/invocations"
    )]
    drain_url: String,
    /// The provider emulator.
    #[arg(
        long,
        env = "PROVIDER_BASE_URL",
        default_value = "http://127.0.0.1:8025"
    )]
    emulator_url: String,
    /// `x-api-key` for ingest (local runs).
    #[arg(long, env = "INGEST_API_KEY")]
    api_key: Option<String>,
    /// Changes to send.
    #[arg(long, default_value_t = 3_000)]
    changes: usize,
    /// Distinct users they are spread over.
    #[arg(long, default_value_t = 300)]
    users: usize,
    /// Changes per ingest request.
    #[arg(long, default_value_t = 250)]
    per_request: usize,
    /// Seconds between drain invocations.
    #[arg(long, default_value_t = 5)]
    tick_seconds: u64,
    /// Give up after this many ticks.
    #[arg(long, default_value_t = 60)]
    max_ticks: u32,
    /// The scheduled event the drain is invoked with.
    #[arg(long, default_value = "tests/fixtures/scheduled-event.json")]
    event: String,
}

const PLANS: [&str; 4] = ["free", "pro", "team", "enterprise"];
const ZONES: [&str; 4] = ["Europe/Amsterdam", "America/New_York", "Asia/Tokyo", "UTC"];

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(&args.event).context("reading the event fixture")?,
    )?;

    // Traffic: several changes per user, each touching one field; the last per field is what must arrive.
    let mut expected: BTreeMap<String, BTreeMap<&str, String>> = BTreeMap::new();
    let mut changes = Vec::with_capacity(args.changes);
    let base = chrono::Utc::now() - chrono::Duration::seconds(args.changes as i64);
    for i in 0..args.changes {
        let user = (i * 7_919) % args.users.max(1);
        let email = format!("user{user}@demo.sluice.dev");
        let occurred_at = (base + chrono::Duration::seconds(i as i64)).to_rfc3339();
        let (field, value, change) = match i % 3 {
            0 => (
                "name",
                format!("User {user} v{i}"),
                json!({"email": email, "name": format!("User {user} v{i}"), "occurred_at": occurred_at}),
            ),
            1 => {
                let z = ZONES[i % ZONES.len()];
                (
                    "time_zone",
                    z.to_string(),
                    json!({"email": email, "time_zone": z, "occurred_at": occurred_at}),
                )
            }
            _ => {
                let p = PLANS[i % PLANS.len()];
                (
                    "plan",
                    p.to_string(),
                    json!({"email": email, "custom_fields": {"plan": p}, "occurred_at": occurred_at}),
                )
            }
        };
        expected.entry(email).or_default().insert(field, value);
        changes.push(change);
    }

    let t0 = Instant::now();
    let mut accepted = 0;
    for chunk in changes.chunks(args.per_request.clamp(1, 1_000)) {
        let mut req = http.post(&args.ingest_url).json(&json!({"changes": chunk}));
        if let Some(key) = &args.api_key {
            req = req.header("x-api-key", key);
        }
        let resp = req.send().await.context("POST /v1/changes")?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        ensure!(status.as_u16() == 202, "ingest answered {status}: {body}");
        accepted += body["accepted"].as_u64().unwrap_or(0);
    }
    println!(
        "sent {} changes for {} users in {} requests ({:.1} s); ingest accepted {accepted}",
        changes.len(),
        expected.len(),
        changes.len().div_ceil(args.per_request),
        t0.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "{:>4} {:>6} {:>8} {:>9} {:>10} {:>8} {:>8} {:>11} {:>13} {:>9} {:>10}",
        "tick",
        "t(s)",
        "received",
        "coalesced",
        "delivered",
        "batch",
        "indiv",
        "batch q u/l",
        "indiv q u/l",
        "provider",
        "users done"
    );

    let mut done_at = None;
    for tick in 1..=args.max_ticks {
        let report: Value = http
            .post(&args.drain_url)
            .json(&event)
            .send()
            .await
            .context("invoking the drain")?
            .json()
            .await
            .context("reading the drain's report")?;
        if report.get("errorMessage").is_some() || report.get("errorType").is_some() {
            bail!("the drain failed: {report}");
        }
        let stats: Value = http
            .get(format!("{}/_emulator/stats", args.emulator_url))
            .send()
            .await?
            .json()
            .await?;
        let latest: Value = http
            .get(format!("{}/_emulator/latest", args.emulator_url))
            .send()
            .await?
            .json()
            .await?;
        let users_done = expected
            .iter()
            .filter(|(email, fields)| matches(&latest, email, fields))
            .count();
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        println!(
            "{:>4} {:>6.0} {:>8} {:>9} {:>10} {:>8} {:>8} {:>11} {:>13} {:>9} {:>10}",
            tick,
            t0.elapsed().as_secs_f64(),
            n(&report["received"]),
            n(&report["coalesced"]),
            n(&report["delivered"]["batch"]) + n(&report["delivered"]["individual"]),
            n(&report["requests"]["batch"]),
            n(&report["requests"]["individual"]),
            format!(
                "{}/{}",
                n(&report["quota_batch"]["used"]),
                n(&report["quota_batch"]["left"])
            ),
            format!(
                "{}/{}",
                n(&report["quota_individual"]["used"]),
                n(&report["quota_individual"]["left"])
            ),
            n(&stats["records"]["batch"]) + n(&stats["records"]["individual"]),
            format!("{users_done}/{}", expected.len()),
        );
        if users_done == expected.len() {
            done_at = Some(tick);
            break;
        }
        tokio::time::sleep(Duration::from_secs(args.tick_seconds)).await;
    }

    let stats: Value = http
        .get(format!("{}/_emulator/stats", args.emulator_url))
        .send()
        .await?
        .json()
        .await?;
    println!();
    println!(
        "provider: {} batch requests, {} individual requests, {} records; over-limit requests: {}; users twice in one request: {}",
        stats["requests"]["batch"],
        stats["requests"]["individual"],
        stats["records"]["batch"].as_u64().unwrap_or(0)
            + stats["records"]["individual"].as_u64().unwrap_or(0),
        stats["over_limit"],
        stats["duplicate_emails_in_request"]
    );
    match done_at {
        Some(tick) => {
            ensure!(
                stats["over_limit"].as_u64() == Some(0),
                "the provider saw over-limit requests"
            );
            println!(
                "every user's latest values arrived: {} changes → {} users, after {tick} ticks ({:.0} s)",
                changes.len(),
                expected.len(),
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        None => bail!("not every change arrived after {} ticks", args.max_ticks),
    }
}

/// Whether the provider holds these latest values for the user.
fn matches(latest: &Value, email: &str, fields: &BTreeMap<&str, String>) -> bool {
    let Some(s) = latest.get(email) else {
        return false;
    };
    fields.iter().all(|(field, value)| {
        let got = match *field {
            "plan" => s["custom_fields"]["plan"].as_str(),
            f => s[f].as_str(),
        };
        got == Some(value.as_str())
    })
}
