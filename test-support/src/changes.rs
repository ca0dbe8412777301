//! Changes as ingest accepts them, for tests that put them on the queue directly.

use std::collections::BTreeMap;

use chrono::Utc;
use sluice::domain::{Change, ChangeId, Email, Priority, RequestId};

/// A change of `email`'s name to `name`, occurring and accepted now, alone in its request: what a
/// single-change `POST /v1/changes` enqueues. Adjust fields with struct update syntax.
pub fn name_change(email: &str, name: &str) -> Change {
    let now = Utc::now();
    Change {
        change_id: ChangeId::new(),
        request_id: RequestId::new(),
        email: Email::parse(email).unwrap(),
        name: Some(name.to_owned()),
        time_zone: None,
        custom_fields: BTreeMap::new(),
        occurred_at: now,
        priority: Priority::Normal,
        accepted_at: now,
        position: 0,
        request_size: None,
    }
}
