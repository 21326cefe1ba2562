//! Which host of its database's host list a new server connection goes to.
//!
//! - `load_balance_hosts = round-robin` (PgBouncer's default): each new
//!   connection starts at the next host of the list; `disable`: at the
//!   host in use, until a connection to it fails.
//! - A host that cannot be reached is not the end of it, unlike PgBouncer
//!   (which fails that connection and waits server_login_retry): the next
//!   host is tried at once, as libpq does with a host list. Hosts that
//!   failed a moment ago are tried last (`topology::Rank`).
//! - `target_session_attrs` (libpq's values): a server that logs in with
//!   another role than the wanted one is closed and the next host tried;
//!   when no host fits (a failover in progress: the primary is gone, no
//!   standby promoted yet) the connection keeps trying, every
//!   [`RETRY_EVERY`], for up to primary_wait_timeout, skipping hosts that
//!   failed or had another role a moment ago, so the client waits instead
//!   of failing. prefer-standby takes a primary it reached when no standby
//!   answers.
//!
//! Every login teaches the topology the host's role (PostgreSQL 14+
//! reports it at login; older servers are asked) and every failure its
//! reason; a role change is logged.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Pool, PoolSettings};
use crate::config::{Endpoint, LoadBalance, SessionAttrs};
use crate::server::{self, ServerConn, ServerCredentials, ServerError, Tried, TriedHosts};
use crate::topology::Rank;

/// How often a connection waiting for a host with the wanted role tries
/// again.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// A logged-in server and the ParameterStatus it reported.
type LoggedIn = (Box<ServerConn>, Vec<(String, String)>);

impl Pool {
    /// Open and log in a server connection on one of `s.hosts`.
    pub(super) async fn connect_hosts(
        &self,
        s: &PoolSettings,
        creds: &ServerCredentials,
    ) -> Result<LoggedIn, ServerError> {
        if s.attrs == SessionAttrs::Any {
            return self.try_hosts(s, creds, false).await;
        }
        let deadline = Instant::now() + s.primary_wait;
        let mut retry = false;
        loop {
            match self.try_hosts(s, creds, retry).await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() + RETRY_EVERY >= deadline => return Err(e),
                Err(e) => {
                    if !retry {
                        warn!(pool = %self.key(), "{e}; waiting up to {:?} (primary_wait_timeout)", s.primary_wait);
                    }
                    retry = true;
                    crate::runtime::timer::sleep(RETRY_EVERY).await;
                }
            }
        }
    }

    /// One pass over the hosts in the order they are tried. On a `retry`
    /// pass (and whenever a role is wanted) hosts that failed or had
    /// another role a moment ago are skipped.
    async fn try_hosts(
        &self,
        s: &PoolSettings,
        creds: &ServerCredentials,
        retry: bool,
    ) -> Result<LoggedIn, ServerError> {
        let mut order: std::collections::VecDeque<(usize, Rank, bool)> = self
            .host_order(s)
            .into_iter()
            .map(|(i, r)| (i, r, false))
            .collect();
        let mut tried = Vec::new();
        let mut last_err = None;
        // prefer-standby: the first primary reached, kept in case no
        // standby answers.
        let mut fallback: Option<LoggedIn> = None;
        while let Some((i, rank, deferred)) = order.pop_front() {
            let addr = &s.hosts[i];
            // prefer-standby takes a primary too (last).
            let other_role_skipped =
                !matches!(s.attrs, SessionAttrs::Any | SessionAttrs::PreferStandby);
            if rank == Rank::Fenced
                || (other_role_skipped && rank == Rank::OtherRole)
                || (s.attrs != SessionAttrs::Any && retry && rank == Rank::Down)
            {
                tried.push(Tried::new(addr, i, skipped(rank)));
                continue;
            }
            if lagging(s, addr) {
                tried.push(Tried::new(
                    addr,
                    i,
                    "out of the read rotation (max_standby_lag)",
                ));
                continue;
            }
            let host = self.topology.host(addr);
            // A host of a list not known to be good is probed by one
            // connection of the pool at a time: the others wait for its
            // outcome instead of all running into a dead host (PgBouncer
            // opens one connection at a time; this keeps parallel opening
            // for hosts known to work).
            let _probe = if s.hosts.len() > 1 && rank != Rank::Fits {
                let guard = self.host_probe.lock().await;
                let now = host.rank(s.attrs, false);
                if now == Rank::Down && !deferred && !order.is_empty() {
                    // It failed meanwhile: the others first.
                    order.push_back((i, now, true));
                    continue;
                }
                if now == Rank::Fenced || (other_role_skipped && now == Rank::OtherRole) {
                    tried.push(Tried::new(addr, i, skipped(now)));
                    continue;
                }
                (now != Rank::Fits).then_some(guard)
            } else {
                None
            };
            let attempt = async {
                let (mut conn, reported) =
                    server::connect(&s.target, addr, creds, s.connect_timeout).await?;
                // With any role, only what the server reported (no query:
                // a server older than 14, or not PostgreSQL at all, works
                // as it did).
                let facts = if s.attrs == SessionAttrs::Any {
                    server::reported_role(&reported)
                } else {
                    Some(conn.role(&reported).await?)
                };
                Ok::<_, ServerError>((conn, reported, facts))
            }
            .await;
            match attempt {
                Ok((conn, reported, None)) => {
                    // Reached, role not reported (any role is wanted).
                    host.reached_unknown();
                    self.used_host(s, i);
                    return Ok((conn, reported));
                }
                Ok((conn, reported, Some(facts))) => {
                    if let Some((was, _)) = host.reached(facts.hot_standby, facts.read_only) {
                        let now = role_name(facts.hot_standby);
                        warn!(host = %addr, "host changed role: was {}, now {now}", role_name(was));
                    }
                    if s.attrs.accepts(facts.hot_standby, facts.read_only, false) {
                        self.used_host(s, i);
                        drop(fallback);
                        return Ok((conn, reported));
                    }
                    tried.push(Tried::new(addr, i, role_name(facts.hot_standby)));
                    if s.attrs == SessionAttrs::PreferStandby && fallback.is_none() {
                        fallback = Some((conn, reported));
                    } else {
                        (*conn).terminate();
                    }
                }
                Err(e) => {
                    self.host_failed(s, i, &e);
                    host.failed(e.to_string());
                    let why = match &e {
                        ServerError::Connect { source, .. } => source.to_string(),
                        other => other.to_string(),
                    };
                    tried.push(Tried::new(addr, i, why));
                    last_err = Some(e);
                }
            }
        }
        if let Some(f) = fallback {
            return Ok(f);
        }
        match (s.attrs, last_err) {
            // One failure, or a server's own refusal (a bad password is
            // the same on every host): as it is.
            (SessionAttrs::Any, Some(e))
                if tried.len() == 1 || matches!(e, ServerError::Rejected { .. }) =>
            {
                Err(e)
            }
            (SessionAttrs::Any, _) => Err(ServerError::Unreachable(TriedHosts(tried))),
            (attrs, _) => Err(ServerError::NoHost {
                wanted: attrs.name(),
                tried: TriedHosts(tried),
            }),
        }
    }

    /// The hosts in the order a new connection tries them, with their
    /// rank: from the cursor on (load_balance_hosts), and when a role is
    /// wanted, best rank first (a stable sort keeps the cursor's order
    /// among equals); with any role, hosts that failed a moment ago last.
    fn host_order(&self, s: &PoolSettings) -> Vec<(usize, Rank)> {
        let n = s.hosts.len();
        let start = match s.balance {
            LoadBalance::RoundRobin => self.host_cursor.fetch_add(1, Ordering::Relaxed),
            LoadBalance::Disable => self.host_cursor.load(Ordering::Relaxed),
        } % n;
        let mut order: Vec<(usize, Rank)> = (0..n)
            .map(|k| {
                let i = (start + k) % n;
                (i, self.topology.host(&s.hosts[i]).rank(s.attrs, false))
            })
            .collect();
        if s.attrs == SessionAttrs::Any {
            order.sort_by_key(|&(_, r)| r == Rank::Down);
        } else {
            order.sort_by_key(|&(_, r)| r);
        }
        order
    }

    /// A connection to host `i` logged in: with load_balance_hosts=disable
    /// the next ones start there too.
    fn used_host(&self, s: &PoolSettings, i: usize) {
        if s.balance == LoadBalance::Disable {
            self.host_cursor.store(i, Ordering::Relaxed);
        }
    }

    /// A connection to host `i` failed: logged in PgBouncer's words when
    /// the database has a host list (one host: the caller logs it), and
    /// with load_balance_hosts=disable the next connection starts at the
    /// next host.
    fn host_failed(&self, s: &PoolSettings, i: usize, e: &ServerError) {
        if s.balance == LoadBalance::Disable {
            let _ = self.host_cursor.compare_exchange(
                i,
                (i + 1) % s.hosts.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        if s.hosts.len() > 1 {
            let why = match e {
                ServerError::Connect { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            info!(
                "{} closing because: {why} (age=0s)",
                at_host(self.database(), self.user(), &s.hosts[i])
            );
        }
    }
}

/// `database/user@host:port`, as PgBouncer names a server connection.
pub(super) fn at_host(database: &str, user: &str, addr: &Arc<Endpoint>) -> String {
    format!("{database}/{user}@{addr}")
}

/// A standby pool's host that lags too far behind to take reads.
fn lagging(s: &PoolSettings, addr: &Endpoint) -> bool {
    matches!(s.attrs, SessionAttrs::Standby | SessionAttrs::PreferStandby)
        && s.rotation.as_ref().is_some_and(|(r, _)| r.lagging(addr))
}

fn role_name(hot_standby: bool) -> &'static str {
    if hot_standby { "standby" } else { "primary" }
}

fn skipped(rank: Rank) -> &'static str {
    match rank {
        Rank::Down => "failed a moment ago",
        Rank::Fenced => "fenced",
        _ => "had another role a moment ago",
    }
}
