//! `sluice status` for people: a few aligned lines, quota as a small table (`--json` prints [`Status`]).

use chrono::{DateTime, SecondsFormat, Utc};
use sluice::drain::QuotaSummary;
use sluice::ports::{QuotaKind, QuotaModel};

use super::{CircuitStatus, LeaseStatus, QueueStatus, Status};
use crate::format;

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The human view: a few aligned lines, quota as a small table.
pub fn render(status: &Status) -> String {
    let mut out = format!("stack {}  at {}\n\n", status.stack, time(status.at));
    out.push_str(&quota(status));
    let queue = &status.queue;
    out.push_str(&format!(
        "backlog        {} visible, {} in flight, {} delayed\n",
        queue.visible, queue.in_flight, queue.delayed
    ));
    if status.lanes.len() > 1 {
        let lanes: Vec<String> = status
            .lanes
            .iter()
            .rev() // high first
            .map(|(lane, d)| format!("{} {} + {}", lane.as_str(), d.visible, d.in_flight))
            .collect();
        out.push_str(&format!(
            "lanes          {}  (visible + in flight)\n",
            lanes.join(", ")
        ));
    }
    out.push_str(&format!("oldest message {}\n", oldest(queue)));
    let dlq = &status.dlq;
    out.push_str(&format!(
        "dlq            {} message(s){}\n",
        dlq.total(),
        if dlq.total() > 0 {
            "  (sluice dlq list)"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "drain lease    {}\n",
        lease(&status.lease, status.at)
    ));
    out.push_str(&format!(
        "circuit        {}\n",
        circuit(&status.circuit, status.at)
    ));
    out
}

/// The window line and the quota table.
fn quota(status: &Status) -> String {
    let w = &status.window;
    let mut out = match w.model {
        QuotaModel::Fixed => format!(
            "quota window   {} .. {} ({}), next window in {}\n",
            time(w.start),
            time(w.end),
            format::duration(i64::from(w.length_s)),
            format::duration(w.next_in_s)
        ),
        QuotaModel::Rolling => format!(
            "quota window   rolling: the {} up to {} (each unit frees a window after it was reserved)\n",
            format::duration(i64::from(w.length_s)),
            time(w.end),
        ),
    };
    let q = &status.quota;
    let row = |kind: QuotaKind, s: &QuotaSummary| {
        vec![
            format!("  {}", kind.as_str()),
            s.used.to_string(),
            s.left.to_string(),
            s.limit.to_string(),
        ]
    };
    out.push_str(&format::table(
        &["  requests", "used", "left", "limit"],
        &[
            row(QuotaKind::Batch, &q.batch),
            row(QuotaKind::Individual, &q.individual),
        ],
    ));
    if q.batch.adopted > 0 || q.individual.adopted > 0 {
        out.push_str(&format!(
            "  adopted from the provider's count: {} batch, {} individual (another client of the account)\n",
            q.batch.adopted, q.individual.adopted
        ));
    }
    out.push_str(&format!(
        "  records left {}: {} ({} per batch)\n\n",
        match w.model {
            QuotaModel::Fixed => "this window",
            QuotaModel::Rolling => "in the rolling window",
        },
        q.records_left,
        q.batch_size
    ));
    out
}

fn oldest(queue: &QueueStatus) -> String {
    match (queue.oldest_age_s, &queue.oldest_age_note) {
        (Some(age), _) => match queue.oldest_age_at {
            Some(at) => format!(
                "{} (CloudWatch, sampled {})",
                format::duration(age),
                at.format("%H:%M UTC")
            ),
            None => format::duration(age),
        },
        (None, Some(note)) => note.clone(),
        (None, None) => "n/a".to_owned(),
    }
}

fn lease(lease: &LeaseStatus, at: DateTime<Utc>) -> String {
    match (lease, lease.held) {
        (
            LeaseStatus {
                holder: Some(h),
                until: Some(u),
                ..
            },
            true,
        ) => format!(
            "held by {h} until {} (in {})",
            time(*u),
            format::duration((*u - at).num_seconds())
        ),
        _ => "free (no drain running)".to_owned(),
    }
}

fn circuit(c: &CircuitStatus, at: DateTime<Utc>) -> String {
    let reason = c
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    match (c.until, c.open, c.half_open) {
        (Some(u), true, _) => format!(
            "OPEN until {} (next probe in {}), {} consecutive failures{reason}",
            time(u),
            format::duration((u - at).num_seconds()),
            c.failures
        ),
        (_, _, true) => format!(
            "HALF-OPEN (the next drain run probes the provider), {} consecutive failures{reason}",
            c.failures
        ),
        _ if c.failures > 0 => format!(
            "closed (provider calls allowed), {} consecutive failure(s)",
            c.failures
        ),
        _ => "closed (provider calls allowed)".to_owned(),
    }
}
