//! In-memory adapters with a virtual clock: unit tests of the drain engine, and the simulator. The queue
//! follows SQS semantics that matter to the drain: visibility timeouts, receive counts, redrive to a DLQ
//! after `max_receive_count`, and receipts that go stale when a message is received again.
//!
//! # Layout
//! - `faults`: [`Faults`] scripts ([`Op`], [`Fault`]) that break or hang any port's calls.
//! - `clock`: [`ManualClock`], moved by hand.
//! - `queue` (state in `queue_state`): [`MemoryQueue`], the changes queue and its DLQ.
//! - `store`: [`MemoryStore`], what DynamoDB holds in AWS; its ports in `ledger`, `sync_state`, `lease`
//!   (lease and circuit) and `requests`.
//! - `provider`: [`MemoryProvider`], a provider that counts its own limits, says what is left, and records
//!   [`Delivery`]s; `provider_sharing` (a child of it): the account shared with another client.

use std::sync::{Arc, Mutex, MutexGuard};

mod clock;
mod faults;
mod lease;
mod ledger;
mod provider;
mod queue;
mod queue_state;
mod requests;
mod store;
mod sync_state;
#[cfg(test)]
mod tests;

pub use clock::ManualClock;
pub use faults::{Fault, Faults, Op};
pub use provider::{Delivery, MemoryProvider, ProviderCalls};
pub use queue::{DeadLettered, MemoryQueue, QueueCalls};
pub use store::MemoryStore;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a test already panicked; keep going with the data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A callback run at the start of a call (a slow queue or provider on a virtual clock).
#[derive(Clone)]
struct CallHook(Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for CallHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallHook")
    }
}
