//! What pgsluice knows of the hosts of its databases' host lists: per
//! endpoint, the role it last said it had (in hot standby or not,
//! default_transaction_read_only), when it was last reached, and whether
//! and why the last connection to it failed. Learned from every server
//! login (`pool::checkout`); read to order a host list for a new
//! connection (hosts known to have the wanted role first, hosts known to
//! be down last) and by the console.
//!
//! Facts about a host are facts about the server, shared by every pool
//! that connects to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::{Endpoint, SessionAttrs};

/// How long a failed host is tried after the others (it is still tried:
/// it may be back).
const DOWN_FOR: Duration = Duration::from_secs(5);

/// How long a host seen with another role than the wanted one is not
/// tried again for that role (a promotion is noticed this much later at
/// worst).
const ROLE_FRESH: Duration = Duration::from_secs(1);

/// Every host pgsluice has tried, by endpoint.
#[derive(Default)]
pub struct Topology {
    hosts: Mutex<HashMap<Endpoint, Arc<Host>>>,
}

/// One host.
pub struct Host {
    endpoint: Endpoint,
    state: Mutex<HostState>,
}

/// What is known of a host.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    /// (in hot standby, default_transaction_read_only) at its last login.
    pub role: Option<(bool, bool)>,
    /// When a connection to it last succeeded.
    pub last_ok: Option<Instant>,
    /// When a connection to it last failed, and why (cleared by a success).
    pub failure: Option<(Instant, String)>,
}

/// Where a host stands for a new connection wanting some attributes,
/// best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// Up, and last seen with the wanted role.
    Fits,
    /// Never reached yet.
    Unknown,
    /// Seen with another role less than a second ago (roles change: after
    /// that it ranks as unknown again).
    OtherRole,
    /// Its last connection failed a moment ago.
    Down,
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Topology {
        Topology::default()
    }

    /// The host at `endpoint`, added when new.
    pub fn host(&self, endpoint: &Endpoint) -> Arc<Host> {
        self.hosts
            .lock()
            .entry(endpoint.clone())
            .or_insert_with(|| {
                Arc::new(Host {
                    endpoint: endpoint.clone(),
                    state: Mutex::new(HostState::default()),
                })
            })
            .clone()
    }

    /// Every host known, in no order.
    pub fn all(&self) -> Vec<Arc<Host>> {
        self.hosts.lock().values().cloned().collect()
    }
}

impl Host {
    /// Where it listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A connection logged in; the server said it is (`hot_standby`,
    /// `read_only`). Returns the role it had before when that differs (a
    /// promotion, a demotion), for the caller to log.
    pub fn reached(&self, hot_standby: bool, read_only: bool) -> Option<(bool, bool)> {
        let mut st = self.state.lock();
        let before = st.role.replace((hot_standby, read_only));
        st.last_ok = Some(Instant::now());
        st.failure = None;
        before.filter(|b| *b != (hot_standby, read_only))
    }

    /// A connection to it failed for `why`.
    pub fn failed(&self, why: String) {
        self.state.lock().failure = Some((Instant::now(), why));
    }

    /// What is known of it.
    pub fn state(&self) -> HostState {
        self.state.lock().clone()
    }

    /// Where it stands for a connection wanting `attrs` (`relaxed`: the
    /// second pass of prefer-standby).
    pub fn rank(&self, attrs: SessionAttrs, relaxed: bool) -> Rank {
        let st = self.state.lock();
        if st
            .failure
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < DOWN_FOR)
        {
            return Rank::Down;
        }
        let fresh = st.last_ok.is_some_and(|at| at.elapsed() < ROLE_FRESH);
        match st.role {
            None => Rank::Unknown,
            Some((h, r)) if attrs.accepts(h, r, relaxed) => Rank::Fits,
            Some(_) if fresh => Rank::OtherRole,
            Some(_) => Rank::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_rank_by_role_and_failures() {
        let t = Topology::new();
        let e = Endpoint::Tcp {
            host: "h".into(),
            port: 1,
        };
        let h = t.host(&e);
        assert!(Arc::ptr_eq(&h, &t.host(&e)));
        assert_eq!(h.rank(SessionAttrs::ReadWrite, false), Rank::Unknown);
        assert_eq!(h.reached(true, true), None);
        assert_eq!(h.rank(SessionAttrs::ReadWrite, false), Rank::OtherRole);
        assert_eq!(h.rank(SessionAttrs::Standby, false), Rank::Fits);
        // A promotion is reported once.
        assert_eq!(h.reached(false, false), Some((true, true)));
        assert_eq!(h.reached(false, false), None);
        assert_eq!(h.rank(SessionAttrs::ReadWrite, false), Rank::Fits);
        h.failed("connection refused".into());
        assert_eq!(h.rank(SessionAttrs::Any, false), Rank::Down);
        assert!(h.state().failure.unwrap().1.contains("refused"));
        assert!(Rank::Fits < Rank::Unknown && Rank::OtherRole < Rank::Down);
        assert_eq!(t.all().len(), 1);
    }
}
