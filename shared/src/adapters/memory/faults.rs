//! Fault scripts for the in-memory adapters: failed or hanging calls of any port, shared by the doubles
//! of one test or simulated day.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::lock;
use crate::ports::{PortError, PortResult};

/// The operations a fault script can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Receive,
    Delete,
    Release,
    Requeue,
    DeadLetter,
    Backlog,
    QuotaRead,
    Reserve,
    SyncLoad,
    SyncRecord,
    Lease,
    Circuit,
    Progress,
}

/// What a faulty operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Returns a transient error without doing anything.
    Fail,
    /// Never returns: the run "crashes" there (the test drops it, e.g. with a timeout).
    Hang,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Per operation: the next calls to break, in order.
    scripted: BTreeMap<Op, VecDeque<Fault>>,
    /// Every operation counts down; the call that reaches 0 hangs (a crash at any step).
    crash_after: Option<u32>,
}

/// Faults shared by the in-memory adapters, for fault-script tests: failed or hanging calls of any port.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<FaultState>>);

impl Faults {
    /// The next `n` calls of `op` fail (or hang).
    pub fn inject(&self, op: Op, fault: Fault, n: usize) {
        lock(&self.0)
            .scripted
            .entry(op)
            .or_default()
            .extend(std::iter::repeat_n(fault, n));
    }

    /// The `n`-th port call from now (of any operation) hangs: a crash at that step.
    pub fn crash_after(&self, n: u32) {
        lock(&self.0).crash_after = Some(n);
    }

    /// Removes every pending fault.
    pub fn clear(&self) {
        *lock(&self.0) = FaultState::default();
    }

    fn next(&self, op: Op) -> Option<Fault> {
        let mut s = lock(&self.0);
        if let Some(n) = s.crash_after.as_mut() {
            if *n == 0 {
                s.crash_after = None;
                return Some(Fault::Hang);
            }
            *n -= 1;
        }
        s.scripted.get_mut(&op).and_then(VecDeque::pop_front)
    }

    /// Applies the next fault of `op`, if any: an error to return, or a hang.
    pub(super) async fn check(&self, op: Op) -> PortResult<()> {
        match self.next(op) {
            None => Ok(()),
            Some(Fault::Fail) => Err(PortError::transient(
                "injected fault",
                anyhow::anyhow!("{op:?} failed (fault script)"),
            )),
            Some(Fault::Hang) => std::future::pending().await,
        }
    }
}
