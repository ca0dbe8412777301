//! The shared-account day (issue 14): another client of the provider account spends a share of both
//! limits that the ledger never reserved. What each policy then sends over the limit — in all, and after
//! the provider's first answer of each window (whose `X-RateLimit-Remaining` told the client) — what the
//! ledger adopted, and what it costs in capacity and freshness.

use crate::day::DayResult;
use crate::report::{int, secs};

/// The day's table, one row per policy.
pub fn shared_account_section(days: &[&DayResult]) -> String {
    let mut out = String::from(
        "| policy | records delivered | our requests (batch / individual) | other client's requests (accepted / refused, counted at each drain invocation) | over-limit (all) | over-limit after the window's first reply | units adopted | freshness p50 / p99 | unsatisfied at end |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for d in days {
        let (other, refused) = d.other_client;
        let adopted = d
            .engine
            .as_ref()
            .map_or("n/a".to_string(), |e| int(e.adopted));
        out.push_str(&format!(
            "| {} | {} | {} / {} | {} / {} | {} | {} | {} | {} / {} | {} |\n",
            d.policy.label(),
            int(d.records),
            int(d.provider_calls.batch),
            int(d.provider_calls.individual),
            int(other - refused),
            int(refused),
            int(u64::from(d.over_limit)),
            int(u64::from(d.over_limit_after_reply)),
            adopted,
            secs(d.freshness.p50_s),
            secs(d.freshness.p99_s),
            int(d.unsatisfied),
        ));
    }
    out
}
