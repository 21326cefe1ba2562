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

mod rotation;

pub use rotation::{Rotation, RotationChange, Routed, StandbyCheck};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
    /// Read rotations of the databases with read/write splitting, by
    /// client-side database name.
    rotations: Mutex<HashMap<String, Arc<Rotation>>>,
}

/// One host.
pub struct Host {
    endpoint: Endpoint,
    state: Mutex<HostState>,
    /// The WAL position the host had replayed (inserted, for a primary) at
    /// its last check, raised by what sessions saw since
    /// (read_your_writes = wal asks a standby's server when the check is
    /// not recent enough). The next check sets it again: a host that went
    /// back (rebuilt) is believed for one period at most.
    replayed: AtomicU64,
}

/// What is known of a host.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    /// (in hot standby, default_transaction_read_only) at its last login
    /// or health check.
    pub role: Option<(bool, bool)>,
    /// When a connection to it last succeeded.
    pub last_ok: Option<Instant>,
    /// When a connection to it last failed, and why (cleared by a success).
    pub failure: Option<(Instant, String)>,
    /// Since when it has been unreachable (the first failure after a
    /// success; cleared by a success).
    pub down_since: Option<Instant>,
    /// When the health checker, backing off, tries it next: until then it
    /// counts as down however old its last failure.
    pub retry_at: Option<Instant>,
    /// The last health check that reached it.
    pub check: Option<Check>,
    /// Not used for anything, and why (split brain, a switchover's old
    /// primary), until RELOAD or UNFENCE.
    pub fenced: Option<String>,
    /// Since when it has said it is a primary, uninterrupted (what decides
    /// which of two primaries is the real one).
    pub primary_since: Option<Instant>,
}

/// What a health check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// When.
    pub at: Instant,
    /// Its WAL position: written (a primary) or replayed (a standby).
    pub lsn: u64,
    /// For a standby: bytes behind its database's primary, if known.
    pub lag_bytes: Option<u64>,
    /// For a standby: seconds since it last replayed a transaction while
    /// behind the primary (0 when caught up).
    pub lag_seconds: Option<f64>,
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
    /// Fenced: never used.
    Fenced,
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
                    replayed: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// The read rotation of `database`, made when new.
    pub fn rotation(&self, database: &str) -> Arc<Rotation> {
        let mut map = self.rotations.lock();
        if let Some(r) = map.get(database) {
            return r.clone();
        }
        let r = Arc::new(Rotation::default());
        map.insert(database.to_string(), r.clone());
        r
    }

    /// Every read rotation, by database name (sorted).
    pub fn rotations(&self) -> Vec<(String, Arc<Rotation>)> {
        let mut all: Vec<_> = self
            .rotations
            .lock()
            .iter()
            .map(|(d, r)| (d.clone(), r.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Unfence every host (RELOAD); returns those that were fenced.
    pub fn unfence_all(&self) -> Vec<Endpoint> {
        self.all()
            .into_iter()
            .filter(|h| h.unfence())
            .map(|h| h.endpoint.clone())
            .collect()
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
        let now = Instant::now();
        st.last_ok = Some(now);
        st.failure = None;
        st.down_since = None;
        st.retry_at = None;
        if hot_standby {
            st.primary_since = None;
        } else if st.primary_since.is_none() {
            st.primary_since = Some(now);
        }
        before.filter(|b| *b != (hot_standby, read_only))
    }

    /// The health checker could not reach it and tries again at `at`.
    pub fn retry_at(&self, at: Instant) {
        self.state.lock().retry_at = Some(at);
    }

    /// A connection logged in to a server that did not report its role
    /// (older than PostgreSQL 14): reached, role unchanged.
    pub fn reached_unknown(&self) {
        let mut st = self.state.lock();
        st.last_ok = Some(Instant::now());
        st.failure = None;
        st.down_since = None;
        st.retry_at = None;
    }

    /// A health check reached it and found `check`.
    pub fn checked(&self, check: Check) {
        self.replayed.store(check.lsn, Relaxed);
        self.state.lock().check = Some(check);
    }

    /// A session asked the host (a standby) and it had replayed `lsn`.
    pub fn saw_replayed(&self, lsn: u64) {
        self.replayed.fetch_max(lsn, Relaxed);
    }

    /// The latest WAL position the host is known to have replayed (see
    /// the field); 0 before its first check.
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Relaxed)
    }

    /// Stop using it, for `why`. Returns false when it was fenced already.
    pub fn fence(&self, why: String) -> bool {
        let mut st = self.state.lock();
        let new = st.fenced.is_none();
        st.fenced.get_or_insert(why);
        new
    }

    /// Use it again. Returns false when it was not fenced.
    pub fn unfence(&self) -> bool {
        let mut st = self.state.lock();
        // Its claim to be primary starts over.
        st.primary_since = None;
        st.fenced.take().is_some()
    }

    /// A connection to it failed for `why`.
    pub fn failed(&self, why: String) {
        let mut st = self.state.lock();
        let now = Instant::now();
        st.failure = Some((now, why));
        st.down_since.get_or_insert(now);
        st.primary_since = None;
    }

    /// What is known of it.
    pub fn state(&self) -> HostState {
        self.state.lock().clone()
    }

    /// Where it stands for a connection wanting `attrs` (`relaxed`: the
    /// second pass of prefer-standby).
    pub fn rank(&self, attrs: SessionAttrs, relaxed: bool) -> Rank {
        let st = self.state.lock();
        if st.fenced.is_some() {
            return Rank::Fenced;
        }
        if st.failure.as_ref().is_some_and(|(at, _)| {
            at.elapsed() < DOWN_FOR || st.retry_at.is_some_and(|r| r > Instant::now())
        }) {
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
        assert!(h.fence("split brain".into()) && !h.fence("again".into()));
        assert_eq!(h.rank(SessionAttrs::Any, false), Rank::Fenced);
        assert_eq!(h.state().fenced.as_deref(), Some("split brain"));
        assert!(h.unfence() && !h.unfence());
        assert_eq!(t.all().len(), 1);
    }
}
