//! [`SyncStateStore`] in memory: each user's synced fields under DynamoDB's guard (never backwards), and
//! the in-flight notes by run.

use std::collections::HashMap;

use super::{MemoryStore, Op, lock};
use crate::domain::Email;
use crate::ports::{InFlight, PortResult, SyncStateStore, SyncWrite, SyncedFields};

impl SyncStateStore for MemoryStore {
    async fn load(&self, emails: &[Email]) -> PortResult<HashMap<Email, SyncedFields>> {
        self.faults.check(Op::SyncLoad).await?;
        let s = lock(&self.sync);
        Ok(emails
            .iter()
            .filter_map(|e| s.get(e).map(|f| (e.clone(), f.clone())))
            .collect())
    }

    async fn record(&self, users: &[SyncWrite]) -> PortResult<()> {
        self.faults.check(Op::SyncRecord).await?;
        let mut s = lock(&self.sync);
        for user in users {
            let current = s.entry(user.email.clone()).or_default();
            for (k, f) in &user.fields {
                match current.get(k) {
                    // Same rule as DynamoDB's condition: never backwards; an equal precedence (a retried
                    // record of the same change) may write again.
                    Some(existing) if existing.precedence > f.precedence => {}
                    _ => {
                        current.insert(k.clone(), f.clone());
                    }
                }
            }
        }
        Ok(())
    }

    async fn in_flight(&self, emails: &[Email]) -> PortResult<HashMap<Email, InFlight>> {
        self.faults.check(Op::SyncLoad).await?;
        let notes = lock(&self.notes);
        let mut out: HashMap<Email, InFlight> = HashMap::new();
        for note in notes.values() {
            for email in emails {
                for (key, p) in note.get(email).into_iter().flatten() {
                    let user = out.entry(email.clone()).or_default();
                    let newest = user.entry(key.clone()).or_insert(*p);
                    *newest = (*newest).max(*p);
                }
            }
        }
        Ok(out)
    }

    async fn intend(&self, holder: &str, intents: &[(Email, InFlight)]) -> PortResult<()> {
        self.faults.check(Op::SyncRecord).await?;
        let note = intents
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .cloned()
            .collect();
        lock(&self.notes).insert(holder.to_string(), note);
        Ok(())
    }

    async fn resolve(&self, holder: &str, open: &[(Email, InFlight)]) -> PortResult<()> {
        self.faults.check(Op::SyncRecord).await?;
        let mut notes = lock(&self.notes);
        let open: HashMap<Email, InFlight> = open
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .cloned()
            .collect();
        if !open.is_empty() {
            notes.insert(format!("{holder}-open"), open);
        }
        notes.remove(holder);
        Ok(())
    }
}
