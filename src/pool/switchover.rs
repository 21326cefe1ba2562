//! `SWITCHOVER db TO host` and `UNFENCE db host` (pgsluice console
//! commands): the classic zero-downtime switchover (pause, wait for the
//! standby, promote, resume) done by the pooler itself, and taking a fenced
//! host back.
//!
//! A switchover is refused, with nothing changed, when the database has no
//! host list, no pool to log in as (no client has used it yet), the target
//! is not a standby that is up and less than [`MAX_LAG`] behind, no other
//! host is an up primary, or the pool's user may not run `pg_promote()`.
//! Then: PAUSE db (transactions finish, their servers are closed; clients
//! wait), note the primary's WAL position, wait until the target has
//! replayed it, `pg_promote()`, fence the old primary (not used, even
//! though it still says it is primary, until RELOAD or UNFENCE), RESUME.
//! If waiting or promoting fails, the database is resumed on the old
//! primary and the reason reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{ControlError, Pools};
use crate::config::{Config, Endpoint};
use crate::server::{self, ServerConn, ServerError};

/// The most a target may be behind the primary when a switchover starts
/// (one WAL segment): more would hold writes for long.
const MAX_LAG: u64 = 16 * 1024 * 1024;

/// The longest the steps of a switchover may take (pausing, catching up).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a switchover did.
#[derive(Debug, Clone)]
pub struct Switchover {
    /// The primary before.
    pub old: Endpoint,
    /// The primary now.
    pub new: Endpoint,
    /// How long the database's traffic was held.
    pub held: Duration,
}

/// The host of `endpoints` that `name` means: `host:port` as SHOW HOSTS
/// shows it, or a host name that only one entry has.
fn find_host(endpoints: &[Endpoint], name: &str) -> Result<Endpoint, String> {
    if let Some(e) = endpoints.iter().find(|e| e.to_string() == name) {
        return Ok(e.clone());
    }
    let by_host: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| matches!(e, Endpoint::Tcp { host, .. } if host == name))
        .collect();
    match by_host.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!("{name} is not a host of this database")),
        _ => Err(format!(
            "{name} is several hosts of this database: give host:port"
        )),
    }
}

impl Pools {
    /// SWITCHOVER `database` TO `to` (see the module's documentation).
    pub async fn switchover(
        &self,
        cfg: &Config,
        database: &str,
        to: &str,
    ) -> Result<Switchover, String> {
        let db = cfg
            .databases
            .entries
            .get(database)
            .ok_or_else(|| ControlError::NoSuchDatabase(database.to_string()).to_string())?;
        let endpoints = db.endpoints();
        if endpoints.len() < 2 {
            return Err(format!(
                "database {database} has one host: nothing to switch over to"
            ));
        }
        let target = find_host(&endpoints, to)?;
        let pool = self
            .all()
            .into_iter()
            .find(|p| p.database() == database)
            .ok_or_else(|| format!("no pool of {database} yet (no client has used it): pgsluice has no login for it"))?;
        let s = pool.settings_full();
        let creds = pool.credentials();
        let connect = |addr: &Endpoint| {
            let addr = Arc::new(addr.clone());
            let (s, creds) = (s.clone(), creds.clone());
            async move {
                server::connect(
                    &s.target,
                    &addr,
                    &creds,
                    s.connect_timeout.min(STEP_TIMEOUT),
                )
                .await
                .map(|c| c.0)
                .map_err(|e| format!("{addr}: {e}"))
            }
        };
        let mut standby = connect(&target).await?;
        let role = standby.role(&[]).await.map_err(|e| e.to_string())?;
        if !role.hot_standby {
            return Err(format!("{target} is not a standby"));
        }
        let may = standby
            .query_row("SELECT pg_catalog.has_function_privilege('pg_catalog.pg_promote(boolean, integer)', 'EXECUTE')")
            .await
            .map_err(|e| e.to_string())?;
        if may.first().and_then(|v| v.as_deref()) != Some("t") {
            return Err(format!(
                "user {} may not run pg_promote() on {target}",
                pool.user()
            ));
        }
        let (old, mut primary) = self.find_primary(&endpoints, &target, connect).await?;
        let lag = (primary.wal_insert_lsn().await.map_err(|e| e.to_string())?)
            .saturating_sub(standby.wal_replay_lsn().await.map_err(|e| e.to_string())?);
        if lag > MAX_LAG {
            return Err(format!(
                "{target} is {lag} bytes behind {old}: not caught up"
            ));
        }

        if !self.switching.lock().insert(database.to_string()) {
            return Err(format!("a SWITCHOVER of {database} is running"));
        }
        info!(%database, from = %old, to = %target, "SWITCHOVER: pausing");
        let started = Instant::now();
        let paused =
            crate::runtime::timer::timeout(STEP_TIMEOUT, self.pause(cfg, Some(database))).await;
        let old_host = self.topology.host(&old);
        let result = match paused {
            Err(_) => Err(format!(
                "transactions of {database} did not finish within {STEP_TIMEOUT:?}"
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(())) => {
                // Fenced before the promotion: no moment with two
                // primaries in use.
                old_host.fence(format!("old primary: SWITCHOVER to {target}"));
                let promoted = promote(&mut primary, &mut standby, &target).await;
                if promoted.is_err() {
                    old_host.unfence();
                }
                promoted
            }
        };
        if result.is_ok() {
            self.topology.host(&target).reached(false, false);
            for p in self.all() {
                if p.database() == database {
                    p.reconnect();
                }
            }
        }
        let _ = self.resume(cfg, Some(database));
        self.switching.lock().remove(database);
        let held = started.elapsed();
        match result {
            Ok(()) => {
                warn!(%database, from = %old, to = %target, ?held, "SWITCHOVER done; the old primary is fenced until RELOAD or UNFENCE");
                Ok(Switchover {
                    old,
                    new: target,
                    held,
                })
            }
            Err(e) => {
                warn!(%database, ?held, "SWITCHOVER failed, resumed on the old primary: {e}");
                Err(e)
            }
        }
    }

    /// The up, unfenced primary among `endpoints` other than `target`,
    /// with a connection to it.
    async fn find_primary<F, Fut>(
        &self,
        endpoints: &[Endpoint],
        target: &Endpoint,
        connect: F,
    ) -> Result<(Endpoint, Box<ServerConn>), String>
    where
        F: Fn(&Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<Box<ServerConn>, String>>,
    {
        let mut why = Vec::new();
        for e in endpoints.iter().filter(|e| *e != target) {
            if self.topology.host(e).state().fenced.is_some() {
                continue;
            }
            match connect(e).await {
                Ok(mut c) => match c.role(&[]).await {
                    Ok(r) if !r.hot_standby => return Ok((e.clone(), c)),
                    Ok(_) => why.push(format!("{e}: standby")),
                    Err(err) => why.push(format!("{e}: {err}")),
                },
                Err(err) => why.push(err),
            }
        }
        Err(format!("no primary is up ({})", why.join("; ")))
    }

    /// UNFENCE `database` `host`: use a fenced host again.
    pub fn unfence(&self, cfg: &Config, database: &str, host: &str) -> Result<(), String> {
        let db = cfg
            .databases
            .entries
            .get(database)
            .ok_or_else(|| ControlError::NoSuchDatabase(database.to_string()).to_string())?;
        let e = find_host(&db.endpoints(), host)?;
        if !self.topology.host(&e).unfence() {
            return Err(format!("{e} is not fenced"));
        }
        info!(host = %e, %database, "UNFENCE");
        Ok(())
    }
}

/// With the database paused: wait until `standby` (at `target`) has
/// replayed what `primary` wrote, then promote it.
async fn promote(
    primary: &mut ServerConn,
    standby: &mut ServerConn,
    target: &Endpoint,
) -> Result<(), String> {
    let err = |e: ServerError| e.to_string();
    let wanted = primary.wal_insert_lsn().await.map_err(err)?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let replayed = standby.wal_replay_lsn().await.map_err(err)?;
        if replayed >= wanted {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{target} did not replay the primary's last {} bytes within {STEP_TIMEOUT:?}",
                wanted - replayed
            ));
        }
        crate::runtime::timer::sleep(Duration::from_millis(5)).await;
    }
    let done = standby
        .query_row("SELECT pg_catalog.pg_promote(true, 30)::text")
        .await
        .map_err(err)?;
    match done.first().and_then(|v| v.as_deref()) {
        Some("true") => Ok(()),
        other => Err(format!("pg_promote() on {target} answered {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_by_address_or_unique_name() {
        let e = |h: &str, p| Endpoint::Tcp {
            host: h.into(),
            port: p,
        };
        let list = [e("a", 1), e("b", 1), e("b", 2)];
        assert_eq!(find_host(&list, "a"), Ok(e("a", 1)));
        assert_eq!(find_host(&list, "b:2"), Ok(e("b", 2)));
        assert!(find_host(&list, "b").unwrap_err().contains("host:port"));
        assert!(find_host(&list, "c").unwrap_err().contains("not a host"));
    }
}
