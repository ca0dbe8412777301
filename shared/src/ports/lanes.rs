//! The changes queue as lanes: one queue per [`Priority`], so the drain can receive from each lane only
//! what its share of the run's quota can send (quota-before-receive stays exact per lane).
//!
//! The engine's queue port stays one trait ([`super::ChangeQueue`]); the engine holds a [`Lanes`] of
//! three such queues and picks one per call. This keeps every queue adapter a plain queue (no lane
//! parameter on each of its six methods), and keeps the lane a fact the engine decides with, not one each
//! adapter must route.
//!
//! A lane may have no queue of its own (a stack from before lanes, or a local run with one queue): its
//! changes then share the normal lane's queue, so nothing is lost and the lane only loses its head start.

use crate::domain::Priority;

/// One queue per lane; `high` and `bulk` may share the normal lane's queue.
#[derive(Debug, Clone)]
pub struct Lanes<Q> {
    high: Option<Q>,
    normal: Q,
    bulk: Option<Q>,
}

impl<Q> Lanes<Q> {
    /// Every lane with a queue of its own.
    pub fn new(high: Q, normal: Q, bulk: Q) -> Self {
        Self {
            high: Some(high),
            normal,
            bulk: Some(bulk),
        }
    }

    /// Lanes where `high` or `bulk` may have no queue of their own (they then share `normal`'s).
    pub fn with_optional(high: Option<Q>, normal: Q, bulk: Option<Q>) -> Self {
        Self { high, normal, bulk }
    }

    /// One queue for every lane: priority then orders only what one run received.
    pub fn single(normal: Q) -> Self {
        Self::with_optional(None, normal, None)
    }

    /// The queue a lane's changes go to and come from: its own, else the normal lane's.
    pub fn queue(&self, lane: Priority) -> &Q {
        self.own(lane).unwrap_or(&self.normal)
    }

    /// The lane's own queue, if it has one (`normal` always has).
    pub fn own(&self, lane: Priority) -> Option<&Q> {
        match lane {
            Priority::High => self.high.as_ref(),
            Priority::Normal => Some(&self.normal),
            Priority::Bulk => self.bulk.as_ref(),
        }
    }

    /// The lane a change of `priority` is queued on: its own, or normal when it shares normal's queue.
    pub fn lane_of(&self, priority: Priority) -> Priority {
        if self.own(priority).is_some() {
            priority
        } else {
            Priority::Normal
        }
    }

    /// The lanes with a queue of their own, in the order the drain serves them (high, normal, bulk).
    pub fn served(&self) -> impl Iterator<Item = (Priority, &Q)> {
        Priority::FIRST_SERVED_FIRST
            .into_iter()
            .filter_map(|lane| self.own(lane).map(|q| (lane, q)))
    }

    /// The same lanes with each queue mapped.
    pub fn map<R>(self, mut f: impl FnMut(Priority, Q) -> R) -> Lanes<R> {
        Lanes {
            high: self.high.map(|q| f(Priority::High, q)),
            normal: f(Priority::Normal, self.normal),
            bulk: self.bulk.map(|q| f(Priority::Bulk, q)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_without_a_queue_shares_the_normal_one() {
        let lanes = Lanes::with_optional(Some("h"), "n", None);
        assert_eq!(*lanes.queue(Priority::High), "h");
        assert_eq!(*lanes.queue(Priority::Bulk), "n");
        assert_eq!(lanes.lane_of(Priority::Bulk), Priority::Normal);
        let served: Vec<_> = lanes.served().map(|(l, q)| (l, *q)).collect();
        assert_eq!(served, [(Priority::High, "h"), (Priority::Normal, "n")]);
        let all = Lanes::new("h", "n", "b");
        let served: Vec<Priority> = all.served().map(|(l, _)| l).collect();
        assert_eq!(served, Priority::FIRST_SERVED_FIRST);
        assert_eq!(Priority::from_name("bulk"), Some(Priority::Bulk));
        assert_eq!(Priority::from_name("urgent"), None);
    }
}
