//! Read-only figures of a pool for the admin console (SHOW POOLS,
//! SERVERS, DATABASES, USERS). Each accessor takes the pool's lock once,
//! copies what it needs and lets go; nothing here changes a pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Pool, Pools};
use crate::config::Endpoint;
use crate::server::BackendKey;

/// A pool's figures in SHOW POOLS terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolFigures {
    /// Logged-in clients (waiting or not).
    pub clients: usize,
    /// Clients waiting for a server.
    pub waiting: usize,
    /// Servers linked to a client (open, not idle, not logging in).
    pub active: usize,
    /// Idle servers usable at once.
    pub idle: usize,
    /// Idle servers unused for longer than server_check_delay (they run
    /// server_check_query before their next use).
    pub used: usize,
    /// Servers logging in.
    pub login: usize,
    /// How long the longest-waiting client has waited.
    pub max_wait: Duration,
}

/// One idle server, for SHOW SERVERS.
#[derive(Debug, Clone)]
pub struct IdleServer {
    /// The connection's id.
    pub id: u64,
    /// Its backend's cancel key (process id = backend pid).
    pub key: BackendKey,
    /// Where it is connected.
    pub addr: Arc<Endpoint>,
    /// Our end of the connection (TCP only).
    pub local: Option<SocketAddr>,
    /// When it was opened.
    pub created: Instant,
    /// When it was last given back.
    pub last_used: Instant,
    /// It will be closed instead of reused.
    pub close_needed: bool,
    /// Unused for longer than server_check_delay.
    pub used: bool,
    /// Prepared statements it has (see `server::statements`).
    pub statements: usize,
    /// Its TLS (None: plaintext).
    pub tls: Option<Arc<str>>,
}

impl Pool {
    /// Whether an idle server last used at `last_used` needs a check first.
    fn needs_check(&self, last_used: Instant, now: Instant) -> bool {
        self.settings().check_query.is_some()
            && now.saturating_duration_since(last_used) > self.settings().check_delay
    }

    /// The pool's figures now.
    pub fn figures(&self) -> PoolFigures {
        let now = Instant::now();
        let st = self.state.lock();
        let used = st
            .idle
            .iter()
            .filter(|s| self.needs_check(s.last_used(), now))
            .count();
        let idle = st.idle.len();
        let waiting = st.waiters.len();
        PoolFigures {
            clients: self.client_count(),
            waiting,
            active: st.total.saturating_sub(idle + st.opening),
            idle: idle - used,
            used,
            login: st.opening,
            max_wait: st
                .waiters
                .front()
                .map_or(Duration::ZERO, |w| now.saturating_duration_since(w.since)),
        }
    }

    /// The pool's idle servers, most recently used last.
    pub(crate) fn idle_servers(&self) -> Vec<IdleServer> {
        let now = Instant::now();
        let st = self.state.lock();
        st.idle
            .iter()
            .map(|s| IdleServer {
                id: s.id,
                key: s.key,
                addr: s.addr.clone(),
                local: s.stream.local_tcp_addr(),
                created: s.created,
                last_used: s.last_used(),
                close_needed: s.close_needed,
                used: self.needs_check(s.last_used(), now),
                statements: s.statements.len(),
                tls: s.tls.clone(),
            })
            .collect()
    }

    /// The TLS of its latest server login.
    pub(crate) fn server_tls(&self) -> Option<Arc<str>> {
        self.server_tls.lock().clone()
    }

    /// Servers open or being opened.
    pub(crate) fn server_count(&self) -> usize {
        self.state.lock().total
    }
}

impl Pools {
    /// Names of the users that have pools or shared limits (SHOW USERS).
    pub(crate) fn user_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.user_limits.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// Names of the databases that have pools (SHOW DATABASES for `*` pools).
    pub(crate) fn database_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.db_limits.lock().keys().cloned().collect();
        names.sort();
        names
    }
}
