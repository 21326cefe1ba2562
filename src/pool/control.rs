//! What DBAs do to pools at run time (admin console, signals): PAUSE,
//! RESUME, SUSPEND, DISABLE/ENABLE, RECONNECT, WAIT_CLOSE, and applying a
//! reloaded configuration to live pools.
//!
//! The state lives in a [`DbControl`] per database, shared by the pools of
//! that database. The hot path reads one atomic of it per checkout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tracing::info;

use super::{Pool, PoolKey, PoolSettings, Pools};
use crate::config::Config;
use crate::server::ServerEnd;

const RUNNING: u8 = 0;
/// PAUSE / KILL: no server is handed out; servers are closed once released.
const PAUSED: u8 = 1;
/// SUSPEND: no server is handed out; servers stay open.
const SUSPENDED: u8 = 2;

/// Run-time state of one database.
#[derive(Debug, Default)]
pub struct DbControl {
    state: AtomicU8,
    disabled: AtomicBool,
}

impl DbControl {
    /// Whether servers may be handed out.
    #[inline]
    pub fn blocked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != RUNNING
    }

    /// PAUSE (or KILL) is in force: released servers are closed.
    pub fn paused(&self) -> bool {
        self.state.load(Ordering::Relaxed) == PAUSED
    }

    /// SUSPEND is in force.
    pub(crate) fn suspended(&self) -> bool {
        self.state.load(Ordering::Relaxed) == SUSPENDED
    }

    /// DISABLE is in force: new clients are refused.
    pub fn disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }
}

/// Why a control command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// RESUME with nothing paused or suspended.
    #[error("pooler is not paused/suspended")]
    NotPaused,
    /// A database name that is not configured.
    #[error("no such database: {0}")]
    NoSuchDatabase(String),
    /// A command that needs a database name got none.
    #[error("database name required")]
    DatabaseRequired,
}

/// How often waiting commands look again.
const POLL: Duration = Duration::from_millis(20);

impl Pools {
    /// The control state of database `name` (created running, or paused
    /// when a global PAUSE/SUSPEND is in force).
    pub(crate) fn db_control(&self, name: &str) -> Arc<DbControl> {
        let mut map = self.controls.lock();
        map.entry(name.to_string())
            .or_insert_with(|| {
                let c = DbControl::default();
                c.state
                    .store(self.global.load(Ordering::Relaxed), Ordering::Relaxed);
                Arc::new(c)
            })
            .clone()
    }

    /// Known databases (configured or with pools) matching `db` (all if None).
    fn targets(&self, cfg: &Config, db: Option<&str>) -> Result<Vec<String>, ControlError> {
        let mut names: Vec<String> = cfg.databases.entries.keys().cloned().collect();
        for p in self.all() {
            if !names.iter().any(|n| n == p.database()) {
                names.push(p.database().to_string());
            }
        }
        match db {
            None => Ok(names),
            Some(d) if names.iter().any(|n| n == d) || cfg.databases.fallback.is_some() => {
                Ok(vec![d.to_string()])
            }
            Some(d) => Err(ControlError::NoSuchDatabase(d.to_string())),
        }
    }

    fn pools_of(&self, names: &[String]) -> Vec<Arc<Pool>> {
        self.all()
            .into_iter()
            .filter(|p| names.iter().any(|n| n == p.database()))
            .collect()
    }

    fn set_state(
        &self,
        cfg: &Config,
        db: Option<&str>,
        state: u8,
    ) -> Result<Vec<Arc<Pool>>, ControlError> {
        let names = self.targets(cfg, db)?;
        if db.is_none() {
            self.global.store(state, Ordering::Relaxed);
        }
        for n in &names {
            self.db_control(n).state.store(state, Ordering::Relaxed);
        }
        Ok(self.pools_of(&names))
    }

    /// PAUSE [db]: stop handing out servers, close them as they are
    /// released, and return once none is left. Waiting clients wait.
    pub async fn pause(&self, cfg: &Config, db: Option<&str>) -> Result<(), ControlError> {
        let pools = self.set_state(cfg, db, PAUSED)?;
        info!(
            database = db.unwrap_or("*"),
            "PAUSE: waiting for servers to be released"
        );
        loop {
            for p in &pools {
                p.close_idle_for(ServerEnd::Admin);
            }
            if pools.iter().all(|p| p.counts().total == 0) {
                return Ok(());
            }
            crate::runtime::timer::sleep(POLL).await;
        }
    }

    /// KILL's half on the pools: pause db (or all) at once and close their
    /// idle servers; servers in use close with their killed sessions.
    pub(crate) fn pause_now(&self, cfg: &Config, db: Option<&str>) -> Result<(), ControlError> {
        for p in self.set_state(cfg, db, PAUSED)? {
            p.close_idle_for(ServerEnd::Admin);
        }
        Ok(())
    }

    /// Whether a global PAUSE (or KILL) / SUSPEND is in force, for SHOW STATE.
    pub(crate) fn global_state(&self) -> (bool, bool) {
        let s = self.global.load(Ordering::Relaxed);
        (s == PAUSED, s == SUSPENDED)
    }

    /// SUSPEND: stop handing out servers (kept open) and return once every
    /// server is back in its pool.
    pub(crate) async fn suspend(&self, cfg: &Config) -> Result<(), ControlError> {
        let pools = self.set_state(cfg, None, SUSPENDED)?;
        info!("SUSPEND: waiting for servers to be released");
        loop {
            if pools.iter().all(|p| {
                let c = p.counts();
                c.total == c.idle
            }) {
                return Ok(());
            }
            crate::runtime::timer::sleep(POLL).await;
        }
    }

    /// RESUME [db]: undo PAUSE, SUSPEND or KILL; waiting clients are served.
    pub fn resume(&self, cfg: &Config, db: Option<&str>) -> Result<(), ControlError> {
        let names = self.targets(cfg, db)?;
        let was_blocked = names.iter().any(|n| self.db_control(n).blocked())
            || (db.is_none() && self.global.load(Ordering::Relaxed) != RUNNING);
        if !was_blocked {
            return Err(ControlError::NotPaused);
        }
        self.set_state(cfg, db, RUNNING)?;
        info!(database = db.unwrap_or("*"), "RESUME");
        for p in self.pools_of(&names) {
            p.kick();
        }
        Ok(())
    }

    /// DISABLE db / ENABLE db: refuse or accept new clients of db.
    pub fn set_disabled(&self, cfg: &Config, db: &str, disabled: bool) -> Result<(), ControlError> {
        self.targets(cfg, Some(db))?;
        self.db_control(db)
            .disabled
            .store(disabled, Ordering::Relaxed);
        Ok(())
    }

    /// RECONNECT [db]: close every server once it is released (idle ones
    /// now); new ones are opened as needed.
    pub fn reconnect(&self, cfg: &Config, db: Option<&str>) -> Result<(), ControlError> {
        let names = self.targets(cfg, db)?;
        for p in self.pools_of(&names) {
            p.reconnect();
        }
        Ok(())
    }

    /// WAIT_CLOSE [db]: return once no server marked by RECONNECT (or by a
    /// reload that changed its connection settings) is left.
    pub async fn wait_close(&self, cfg: &Config, db: Option<&str>) -> Result<(), ControlError> {
        let names = self.targets(cfg, db)?;
        let pools = self.pools_of(&names);
        while pools
            .iter()
            .any(|p| p.old_servers.load(Ordering::Relaxed) > 0)
        {
            crate::runtime::timer::sleep(POLL).await;
        }
        Ok(())
    }

    /// Apply a reloaded configuration to live pools: new settings (sizes,
    /// limits, timeouts) from now on; servers of a database whose
    /// connection settings changed are closed as they are released. Pools
    /// of a removed database keep serving their clients (new ones are
    /// refused at login).
    pub(crate) fn apply_config(&self, cfg: &Config) {
        for host in self.topology.unfence_all() {
            tracing::info!(%host, "RELOAD unfenced this host");
        }
        for p in self.all() {
            let Some(db) = cfg.databases.lookup(p.database()) else {
                continue;
            };
            let endpoints = db.endpoints();
            // The pool keeps its place in the host list and follows the
            // host there (one host: the new host, as before).
            let endpoint = &endpoints[p.slot.min(endpoints.len() - 1)];
            if *endpoint != p.key().endpoint {
                self.rekey(&p, endpoint);
            }
            let mut new = PoolSettings::resolve(cfg, db, (p.database(), p.user()), endpoint);
            let role = p.key().role;
            if role != super::Role::Any {
                let split = cfg.general.split.with(&db.split);
                new = new.for_role(role, &split, self.topology.rotation(p.database()));
            }
            let old = p.settings_full();
            let changed = !new.same_connection(&old);
            p.db_limit.set_max(new.max_db_connections);
            p.user_limit.set_max(new.max_user_connections);
            p.set_settings(new);
            if changed {
                // The pool's name leads the text, as in PgBouncer's line.
                let key = p.key();
                info!(
                    "{key}: database configuration changed: servers are replaced as they are released"
                );
                p.state.lock().login_failure = None;
                p.reconnect();
            }
            p.kick();
        }
    }

    /// Point `pool` at `endpoint` under its new key. When another pool has
    /// that key already, the moved one leaves the registry (its sessions
    /// keep it; new logins get the other).
    fn rekey(&self, pool: &Arc<Pool>, endpoint: &crate::config::Endpoint) {
        let old = (**pool.key()).clone();
        let new = PoolKey {
            endpoint: endpoint.clone(),
            ..old.clone()
        };
        let mut map = self.map.lock();
        if map.get(&old).is_some_and(|p| Arc::ptr_eq(p, pool)) {
            map.remove(&old);
        }
        if map.contains_key(&new) {
            info!(pool = %old, to = %endpoint, "a reload moved this pool onto another pool's server: it serves its sessions until they end");
        } else {
            map.insert(new.clone(), pool.clone());
        }
        pool.set_key(new);
    }
}

impl Pool {
    /// Mark every current server as old: idle ones are closed now, the
    /// others when they are released.
    pub fn reconnect(&self) {
        let closing = {
            let mut st = self.state.lock();
            let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
            let idle = std::mem::take(&mut st.idle);
            st.total -= idle.len();
            let in_use = st.total - st.opening;
            self.old_servers.store(in_use, Ordering::Relaxed);
            debug_assert!(idle.iter().all(|s| s.generation < generation));
            idle
        };
        let n = closing.len();
        for s in closing {
            s.terminate();
        }
        self.events.closed(ServerEnd::Admin, n);
        self.release_limits(n);
    }

    /// Serve waiting clients while servers or room are available (after
    /// RESUME, or when a reload made the pool larger).
    pub(super) fn kick(&self) {
        loop {
            let before = self.counts().waiting;
            if before == 0 || self.control.blocked() {
                return;
            }
            let idle = self.state.lock().idle.pop_back();
            match idle {
                // Handed on, not used: lifetime 0 does not close it.
                Some(s) => self.checkin_unused(s),
                None => {
                    self.on_room();
                }
            }
            if self.counts().waiting >= before {
                return;
            }
        }
    }
}

/// Count of servers opened before the last RECONNECT that are still open.
pub(super) type OldServers = AtomicUsize;
