//! The health checker: every `host_check_period` (1 s; 0 = off) one small
//! query to each host of every database that wants a role
//! (target_session_attrs other than `any`; a PgBouncer host list gets no
//! connections PgBouncer would not make), over one connection per host kept between
//! checks, logged in as the pool of that database that came first (its
//! user and secret). It finds:
//!
//! - whether the host is reachable (a host that is not is retried with a
//!   doubling backoff up to [`MAX_BACKOFF`]; new connections skip it
//!   meanwhile, `topology::Rank::Down`);
//! - its role, so a promotion is noticed within one period even with no
//!   traffic: a role change closes the servers of the database's pools
//!   that want a role as they are released (the next ones go to the right
//!   host);
//! - split brain: two hosts of one database saying they are primary. The
//!   one that has said so the longest is kept; the other is fenced (never
//!   used, its servers closed) until RELOAD or `UNFENCE`, and logged as an
//!   error;
//! - for standbys, the lag behind the primary in bytes and in seconds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::{Pool, Pools};
use crate::config::{Endpoint, SessionAttrs};
use crate::server::{self, ServerConn, ServerError};
use crate::topology::{Check, StandbyCheck};

/// The one query of a check: role, read-only default, WAL position (a
/// primary's insert position: past every acknowledged commit, even with
/// synchronous_commit off; a standby's replay position), and
/// seconds since the last replayed transaction.
const HEALTH_QUERY: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     pg_catalog.current_setting('default_transaction_read_only'), \
     (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
      ELSE pg_catalog.pg_current_wal_insert_lsn() END - '0/0'::pg_lsn)::text, \
     COALESCE(EXTRACT(EPOCH FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()), 0)::text";

/// The longest wait before an unreachable host is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The longest a check of one host may take (connecting included).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The most primary WAL positions remembered per database (one per check
/// that found the primary further on: at a 1 s period, 17 minutes of
/// writing).
const POSITIONS: usize = 1024;

/// The checker's connections and backoffs, kept between rounds.
#[derive(Default)]
pub struct HealthChecker {
    conns: HashMap<Endpoint, Box<ServerConn>>,
    backoff: HashMap<Endpoint, (Instant, Duration)>,
    /// Per database, the primary's WAL position at past checks when it
    /// had moved on, oldest first (for [`lag_seconds`]).
    positions: HashMap<String, VecDeque<(Instant, u64)>>,
}

/// How far behind in time a standby that has replayed `lsn` is: since the
/// first check that found the primary past `lsn` (`positions`, oldest
/// first). Behind even the oldest position remembered, the time since
/// its last replayed transaction (`since_replay`) when that is longer.
/// Not the time since the last replayed transaction alone: after an idle
/// spell the primary's first new WAL record would make a standby that
/// replays it a moment later look as far behind as the spell was long.
fn lag_seconds(positions: &VecDeque<(Instant, u64)>, lsn: u64, since_replay: f64) -> f64 {
    let Some(k) = positions.iter().position(|&(_, p)| p > lsn) else {
        return 0.0;
    };
    let behind = positions[k].0.elapsed().as_secs_f64();
    if k == 0 {
        behind.max(since_replay)
    } else {
        behind
    }
}

/// A database's host list, as its pools' settings hold it.
type HostList = Arc<Vec<Arc<Endpoint>>>;

/// What one check found: (in recovery, read-only default, WAL position,
/// seconds since the last replayed transaction).
type Found = (bool, bool, u64, f64);

impl Pools {
    /// One round of checks (see the module's documentation).
    pub async fn check_hosts(&self, checker: &mut HealthChecker) {
        // The databases to check, each with its hosts and the pool whose
        // login the checks use.
        let mut databases: HashMap<String, (HostList, Arc<Pool>)> = HashMap::new();
        for p in self.all() {
            let s = p.settings();
            // Only where a role is wanted: a PgBouncer host list (any
            // role) gets no connections PgBouncer would not make.
            if s.attrs != SessionAttrs::Any {
                databases
                    .entry(p.database().to_string())
                    .or_insert_with(|| (s.hosts.clone(), p.clone()));
            }
        }
        let now = Instant::now();
        let mut seen = HashSet::new();
        let mut work = tokio::task::JoinSet::new();
        for (hosts, pool) in databases.values() {
            for addr in hosts.iter() {
                if !seen.insert((**addr).clone()) {
                    continue;
                }
                if checker
                    .backoff
                    .get(&**addr)
                    .is_some_and(|(next, _)| *next > now)
                {
                    continue;
                }
                let conn = checker.conns.remove(&**addr);
                work.spawn(check_one(pool.clone(), addr.clone(), conn));
            }
        }
        let mut found: HashMap<Endpoint, Found> = HashMap::new();
        while let Some(joined) = work.join_next().await {
            let Ok((addr, result)) = joined else {
                continue;
            };
            let host = self.topology.host(&addr);
            match result {
                Ok((conn, f)) => {
                    checker.conns.insert((*addr).clone(), conn);
                    checker.backoff.remove(&*addr);
                    found.insert((*addr).clone(), f);
                }
                Err(e) => {
                    let wait = checker
                        .backoff
                        .get(&*addr)
                        .map_or(Duration::from_secs(1), |(_, d)| (*d * 2).min(MAX_BACKOFF));
                    checker.backoff.insert((*addr).clone(), (now + wait, wait));
                    if host.state().failure.is_none() {
                        warn!(host = %addr, "health check failed: {e}; retrying in {wait:?}");
                    }
                    host.failed(e.to_string());
                    host.retry_at(now + wait);
                }
            }
        }
        checker.positions.retain(|d, _| databases.contains_key(d));
        for (database, (hosts, _)) in &databases {
            let positions = checker.positions.entry(database.clone()).or_default();
            self.judge(database, hosts, &found, (now, positions));
        }
    }

    /// Apply one database's findings to the topology and its pools.
    fn judge(
        &self,
        database: &str,
        hosts: &[Arc<Endpoint>],
        found: &HashMap<Endpoint, Found>,
        (started, positions): (Instant, &mut VecDeque<(Instant, u64)>),
    ) {
        let mut roles_changed = false;
        for addr in hosts {
            if let Some(&(recovery, read_only, _, _)) = found.get(&**addr)
                && let Some((was, _)) = self.topology.host(addr).reached(recovery, read_only)
            {
                let name = |standby| if standby { "standby" } else { "primary" };
                warn!(host = %addr, %database, "host changed role: was {}, now {}", name(was), name(recovery));
                roles_changed = true;
                if !recovery {
                    // A promotion: say how long the database was without
                    // its primary, if one went away.
                    for other in hosts.iter().filter(|o| *o != addr) {
                        if let Some(since) = self.topology.host(other).state().down_since {
                            warn!(%database, primary = %addr, old = %other, "failover: {addr} is the primary now; {other} has been unreachable for {:?}", since.elapsed());
                        }
                    }
                }
            }
        }
        if self.switching.lock().contains(database) {
            // A SWITCHOVER decides who is primary.
            return;
        }
        // Split brain: of the hosts saying they are primary, the one that
        // has said so the longest is kept.
        let mut primaries: Vec<(Instant, &Arc<Endpoint>)> = hosts
            .iter()
            .filter(|a| found.get(&***a).is_some_and(|f| !f.0))
            .filter_map(|a| {
                let st = self.topology.host(a).state();
                (st.fenced.is_none()).then_some((st.primary_since?, a))
            })
            .collect();
        primaries.sort_by_key(|(since, _)| *since);
        let mut fenced = false;
        if let Some(((_, keep), others)) = primaries.split_first() {
            for (_, other) in others {
                let why = format!("split brain: it says it is primary while {keep} is");
                if self.topology.host(other).fence(why) {
                    error!(host = %other, %database, primary = %keep, "split brain: two hosts say they are primary; fenced this one (not used until RELOAD or UNFENCE)");
                    fenced = true;
                }
            }
        }
        // Lag of each standby behind the primary.
        let primary_lsn = primaries
            .first()
            .and_then(|(_, a)| found.get(&***a))
            .map(|f| f.2);
        if let Some(p) = primary_lsn {
            match positions.back() {
                Some(&(_, last)) if p == last => {}
                // Another primary behind the last one: start again.
                Some(&(_, last)) if p < last => {
                    positions.clear();
                    positions.push_back((started, p));
                }
                _ => positions.push_back((started, p)),
            }
            if positions.len() > POSITIONS {
                positions.pop_front();
            }
        }
        let mut standbys = Vec::new();
        for addr in hosts {
            let Some(&(recovery, _, lsn, since_replay)) = found.get(&**addr) else {
                standbys.push(StandbyCheck {
                    endpoint: (**addr).clone(),
                    usable: false,
                    lag_bytes: None,
                    lag_seconds: None,
                    lsn: 0,
                });
                continue;
            };
            let (lag_bytes, lag_seconds) = match (recovery, primary_lsn) {
                (false, _) => (None, None),
                (true, None) => (None, None),
                (true, Some(p)) if lsn >= p => (Some(0), Some(0.0)),
                (true, Some(p)) => (
                    Some(p - lsn),
                    Some(lag_seconds(positions, lsn, since_replay)),
                ),
            };
            self.topology.host(addr).checked(Check {
                at: Instant::now(),
                lsn,
                lag_bytes,
                lag_seconds,
            });
            if recovery {
                standbys.push(StandbyCheck {
                    endpoint: (**addr).clone(),
                    usable: self.topology.host(addr).state().fenced.is_none(),
                    lag_bytes,
                    lag_seconds,
                    lsn,
                });
            }
        }
        let primary = primary_lsn.map(|lsn| (started, lsn));
        self.rotate(database, &standbys, primary);
        if roles_changed || fenced {
            for p in self.all() {
                if p.database() == database && (fenced || p.settings().attrs != SessionAttrs::Any) {
                    p.reconnect();
                }
            }
        }
    }
}

impl Pools {
    /// Apply a check of a database's standbys to its read rotation, when
    /// it splits reads: standbys out of it (lag) or back are logged, and
    /// the database's standby pools replace their servers as they are
    /// released (the next ones go to a standby in the rotation).
    fn rotate(&self, database: &str, standbys: &[StandbyCheck], primary: Option<(Instant, u64)>) {
        let pools: Vec<Arc<Pool>> = self
            .all()
            .into_iter()
            .filter(|p| p.database() == database)
            .collect();
        let Some((rotation, limits)) = pools.iter().find_map(|p| p.settings().rotation.clone())
        else {
            return;
        };
        let change = rotation.checked(standbys, limits, primary);
        for host in &change.left {
            warn!(%database, %host, "standby left the read rotation: it lags behind the primary more than max_standby_lag / max_standby_lag_bytes");
        }
        for host in &change.back {
            info!(%database, %host, "standby is back in the read rotation");
        }
        if !change.left.is_empty() || !change.back.is_empty() {
            for p in pools
                .iter()
                .filter(|p| p.key().role == super::Role::Standby)
            {
                p.reconnect();
            }
        }
    }
}

/// Check `addr` over `conn` (or a new connection logged in as `pool`).
async fn check_one(
    pool: Arc<Pool>,
    addr: Arc<Endpoint>,
    conn: Option<Box<ServerConn>>,
) -> (Arc<Endpoint>, Result<(Box<ServerConn>, Found), ServerError>) {
    let result = crate::runtime::timer::timeout(CHECK_TIMEOUT, async {
        let mut conn = match conn {
            Some(c) if !c.is_broken() => c,
            _ => {
                let s = pool.settings_full();
                let timeout = s.connect_timeout.min(CHECK_TIMEOUT);
                server::connect(&s.target, &addr, &pool.credentials(), timeout)
                    .await?
                    .0
            }
        };
        let row = conn.query_row(HEALTH_QUERY).await?;
        let found = parse_found(&row).ok_or_else(|| {
            ServerError::Protocol(format!("unexpected answer to the health check: {row:?}"))
        })?;
        Ok((conn, found))
    })
    .await
    .unwrap_or_else(|_| {
        Err(ServerError::Timeout {
            addr: (*addr).clone(),
        })
    });
    (addr, result)
}

fn parse_found(row: &[Option<String>]) -> Option<Found> {
    match row {
        [Some(recovery), Some(read_only), lsn, Some(since)] => Some((
            recovery == "t",
            read_only == "on",
            lsn.as_deref().and_then(|l| l.parse().ok()).unwrap_or(0),
            since.parse().ok()?,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_a_primary_and_a_standby() {
        let row = |v: [Option<&str>; 4]| v.map(|v| v.map(String::from)).to_vec();
        assert_eq!(
            parse_found(&row([Some("f"), Some("off"), Some("50331816"), Some("0")])),
            Some((false, false, 50_331_816, 0.0))
        );
        assert_eq!(
            parse_found(&row([Some("t"), Some("on"), Some("1024"), Some("2.5")])),
            Some((true, true, 1024, 2.5))
        );
        assert_eq!(
            parse_found(&row([Some("t"), Some("off"), None, Some("0")])),
            Some((true, false, 0, 0.0))
        );
        assert_eq!(parse_found(&row([Some("t"), None, None, None])), None);
    }

    #[test]
    fn lag_is_time_since_the_primary_was_first_seen_past_the_standby() {
        let now = Instant::now();
        let ago = |s: u64| now - Duration::from_secs(s);
        // The primary idled for an hour at 100, then wrote up to 120.
        let positions = VecDeque::from([(ago(3600), 100), (ago(2), 110), (ago(1), 120)]);
        // Caught up: none. Replaying the newest writes: seconds, not the
        // hour since its last replayed transaction.
        assert_eq!(lag_seconds(&positions, 120, 3600.0), 0.0);
        let lag = lag_seconds(&positions, 115, 3600.0);
        assert!((1.0..1.5).contains(&lag), "{lag}");
        let lag = lag_seconds(&positions, 100, 3600.0);
        assert!((2.0..2.5).contains(&lag), "{lag}");
        // Behind even the oldest position remembered: at least that old,
        // or the time since its last replayed transaction if longer.
        let lag = lag_seconds(&positions, 50, 7200.0);
        assert!((7200.0..7200.5).contains(&lag), "{lag}");
        let lag = lag_seconds(&positions, 50, 10.0);
        assert!((3600.0..3600.5).contains(&lag), "{lag}");
    }
}
