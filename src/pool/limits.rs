//! Server connection limits shared by several pools: max_db_connections
//! (every pool of one database) and max_user_connections (every pool of
//! one user).
//!
//! A pool counts a connection against both of its limits before opening
//! it. When a limit is full, the pool's clients wait and the pool is noted
//! as starved; the next connection closed anywhere under that limit wakes
//! it, and an idle server of another pool under the limit is closed to make
//! room at once (as PgBouncer does), so a busy pool is not starved by idle
//! connections of a quiet one.
//!
//! Lock order: a pool's state, then a limit. A limit never calls into a
//! pool while holding its own lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::Pool;

/// One shared limit (0 = none).
#[derive(Default)]
pub struct Limit {
    state: Mutex<LimitState>,
    /// Some pool is waiting for room: servers given back under this limit
    /// are closed instead of kept idle. Read on every checkin, so atomic.
    starved: AtomicBool,
}

#[derive(Default)]
struct LimitState {
    max: usize,
    open: usize,
    starved: VecDeque<Weak<Pool>>,
    members: Vec<Weak<Pool>>,
}

impl Limit {
    /// A limit of `max` connections (0 = no limit).
    pub fn new(max: usize) -> Limit {
        let l = Limit::default();
        l.state.lock().max = max;
        l
    }

    /// Change the maximum (RELOAD). Connections above it are not closed;
    /// no new one opens until the count is below it.
    pub(crate) fn set_max(&self, max: usize) {
        self.state.lock().max = max;
    }

    /// (max, open), for the admin console and tests.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.max, st.open)
    }

    /// Count one more connection if the limit allows it.
    pub(super) fn try_acquire(&self) -> bool {
        let mut st = self.state.lock();
        if st.max > 0 && st.open >= st.max {
            return false;
        }
        st.open += 1;
        true
    }

    /// Uncount a connection just counted and never opened, waking no one.
    pub(super) fn undo(&self) {
        let mut st = self.state.lock();
        st.open = st.open.saturating_sub(1);
    }

    /// One connection counted here was closed. Returns a starved pool to
    /// wake, if any (the caller wakes it after letting go of every lock).
    pub(super) fn release(&self) -> Option<Arc<Pool>> {
        let mut st = self.state.lock();
        st.open = st.open.saturating_sub(1);
        let next = loop {
            match st.starved.pop_front() {
                Some(w) => {
                    if let Some(p) = w.upgrade() {
                        break Some(p);
                    }
                }
                None => break None,
            }
        };
        self.starved
            .store(!st.starved.is_empty(), Ordering::Relaxed);
        next
    }

    /// Note `pool` as waiting for room under this limit.
    pub(super) fn starve(&self, pool: &Weak<Pool>) {
        let mut st = self.state.lock();
        if !st.starved.iter().any(|w| w.ptr_eq(pool)) {
            st.starved.push_back(pool.clone());
        }
        self.starved.store(true, Ordering::Relaxed);
    }

    /// Whether a pool waits for room under this limit: then a server
    /// given back under it is closed rather than kept idle. One atomic load
    /// while no pool was noted as starved; otherwise the noted pools are
    /// asked whether clients still wait in them, and those served meanwhile
    /// (by a server handed over, or by room made under the other limit)
    /// are forgotten, so that servers are not closed for nobody.
    pub(super) fn has_starved(&self) -> bool {
        if !self.starved.load(Ordering::Relaxed) {
            return false;
        }
        self.prune_starved()
    }

    /// Forget starved pools that no longer wait; whether one still does.
    /// # Concurrency note
    /// Pools are looked at with this limit's lock let go (lock order: a
    /// pool, then a limit). A pool that starves again meanwhile notes
    /// itself again after its look here, so it is not lost; one forgotten
    /// a moment before it queues a client is noted again by that
    /// checkout's `starve`.
    #[cold]
    #[inline(never)]
    fn prune_starved(&self) -> bool {
        let noted: Vec<Weak<Pool>> = self.state.lock().starved.iter().cloned().collect();
        let idle: Vec<Weak<Pool>> = noted
            .into_iter()
            .filter(|w| w.upgrade().is_none_or(|p| !p.has_waiters()))
            .collect();
        if idle.is_empty() {
            return true;
        }
        let mut st = self.state.lock();
        st.starved.retain(|w| !idle.iter().any(|i| i.ptr_eq(w)));
        let any = !st.starved.is_empty();
        self.starved.store(any, Ordering::Relaxed);
        any
    }

    /// Register `pool` as counted under this limit.
    pub(super) fn join(&self, pool: &Weak<Pool>) {
        let mut st = self.state.lock();
        st.members.retain(|w| w.strong_count() > 0);
        st.members.push(pool.clone());
    }

    /// The pools under this limit except `except`.
    pub(super) fn others(&self, except: &Weak<Pool>) -> Vec<Arc<Pool>> {
        let st = self.state.lock();
        st.members
            .iter()
            .filter(|w| !w.ptr_eq(except))
            .filter_map(Weak::upgrade)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_and_zero_means_none() {
        let l = Limit::new(2);
        assert!(l.try_acquire() && l.try_acquire());
        assert!(!l.try_acquire());
        assert!(l.release().is_none());
        assert!(l.try_acquire());
        let unlimited = Limit::new(0);
        for _ in 0..1000 {
            assert!(unlimited.try_acquire());
        }
        assert_eq!(unlimited.counts(), (0, 1000));
    }
}
