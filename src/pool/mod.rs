//! Pools of server connections keyed by (database, user, endpoint, role):
//! the registry (`Pools`) and one pool (`pool::Pool`). A pool's endpoint is
//! the first host of its database's host list as routing chose it
//! (`crate::routing`); its new server connections may go to any host of
//! the list (`hosts.rs`: load_balance_hosts, target_session_attrs, what
//! the `topology` knows of each host).
//!
//! The admin console and stats read pools; they never reach into sessions.

mod answers;
mod checkout;
mod clients;
mod control;
mod dedicated;
mod events;
mod health;
mod hosts;
mod hot;
pub mod info;
mod intern;
mod limits;
mod lookups;
mod maintain;
mod server_pool;
mod settings;
mod switchover;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::Endpoint;

pub use answers::LoginAnswer;
pub use checkout::CheckoutError;
pub use clients::{ClientCount, ClientLimit, LoginCount, PoolClient};
pub use control::{ControlError, DbControl};
pub use events::ServerEvents;
pub use health::HealthChecker;
pub use limits::Limit;
pub(crate) use lookups::Lookup;
pub use server_pool::{Pool, PoolCounts, Welcome};
pub use settings::PoolSettings;
pub use switchover::Switchover;

/// What a pool's servers are for: any host, or only a primary (read-write)
/// or only a standby. Every pool is `Any` until host roles are known (the
/// high-availability work); the role is part of a pool's identity so that
/// one server can have a pool per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// Whatever the host is.
    #[default]
    Any,
    /// A primary (accepts writes).
    Primary,
    /// A standby (read-only).
    Standby,
}

/// Identity of a pool: the database name clients use, the user the pooler
/// logs in to PostgreSQL as (the forced user, or the client's), the server
/// it connects to, and the role it serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Database name as clients ask for it.
    pub database: String,
    /// Server-side user.
    pub user: String,
    /// The server.
    pub endpoint: Endpoint,
    /// The role its servers serve.
    pub role: Role,
}

/// A pool key looked up without building one (no allocation per login):
/// `PoolKey` borrows as this, hashing and comparing the same way.
trait KeyRef {
    fn parts(&self) -> (&str, &str, &Endpoint, Role);
}

impl KeyRef for PoolKey {
    fn parts(&self) -> (&str, &str, &Endpoint, Role) {
        (&self.database, &self.user, &self.endpoint, self.role)
    }
}

impl KeyRef for (&str, &str, &Endpoint, Role) {
    fn parts(&self) -> (&str, &str, &Endpoint, Role) {
        (self.0, self.1, self.2, self.3)
    }
}

impl<'a> std::borrow::Borrow<dyn KeyRef + 'a> for PoolKey {
    fn borrow(&self) -> &(dyn KeyRef + 'a) {
        self
    }
}

impl std::hash::Hash for dyn KeyRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // As the derived Hash of PoolKey: its fields in order.
        let (database, user, endpoint, role) = self.parts();
        database.hash(h);
        user.hash(h);
        endpoint.hash(h);
        role.hash(h);
    }
}

impl PartialEq for dyn KeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyRef + '_ {}

impl std::fmt::Display for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.database, self.user, self.endpoint)?;
        match self.role {
            Role::Any => Ok(()),
            Role::Primary => f.write_str(" (primary)"),
            Role::Standby => f.write_str(" (standby)"),
        }
    }
}

/// All pools, created on first use, and the limits they share.
#[derive(Default)]
pub struct Pools {
    map: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    /// max_db_connections and client counts, by client-side database name.
    db_limits: Mutex<HashMap<String, server_pool::Shared>>,
    /// max_user_connections and client counts, by server-side user name.
    user_limits: Mutex<HashMap<String, server_pool::Shared>>,
    /// PAUSE/SUSPEND/DISABLE state, by client-side database name.
    controls: Mutex<HashMap<String, Arc<DbControl>>>,
    /// The state new databases start in (a global PAUSE or SUSPEND).
    global: std::sync::atomic::AtomicU8,
    /// What is known of the hosts the pools connect to.
    topology: Arc<crate::topology::Topology>,
    /// Clients by the user they logged in as (max_user_client_connections).
    login_clients: Mutex<HashMap<String, Arc<ClientCount>>>,
    /// Databases a SWITCHOVER is running for (the health checker leaves
    /// their roles to it).
    switching: Mutex<std::collections::HashSet<String>>,
}

impl Pools {
    /// An empty registry.
    pub fn new() -> Pools {
        Pools::default()
    }

    /// The pool of `database` and server-side `user` at `endpoint` for
    /// `role`, created with `make` when missing. Called once per client
    /// login, never on the hot path.
    /// `slot` is the endpoint's place in its database's host list.
    pub(crate) fn get_or_create(
        &self,
        (database, user, endpoint, role): (&str, &str, &Endpoint, Role),
        slot: usize,
        make: impl FnOnce() -> PoolSettings,
    ) -> Arc<Pool> {
        let mut map = self.map.lock();
        if let Some(p) = map.get(&(database, user, endpoint, role) as &dyn KeyRef) {
            return p.clone();
        }
        let key = PoolKey {
            database: database.to_string(),
            user: user.to_string(),
            endpoint: endpoint.clone(),
            role,
        };
        let settings = make();
        if settings.autodb_idle_timeout.is_some() && !map.keys().any(|k| k.database == database) {
            // PgBouncer's words, which logs are searched for.
            tracing::info!("registered new auto-database: {database}");
        }
        let db_limit = Self::limit(&self.db_limits, &key.database, settings.max_db_connections);
        let user_limit = Self::limit(&self.user_limits, &key.user, settings.max_user_connections);
        let control = self.db_control(&key.database);
        let pool = Pool::with_limits(
            (key.clone(), slot),
            settings,
            (db_limit, control),
            (user_limit, self.topology.clone()),
        );
        map.insert(key, pool.clone());
        pool
    }

    fn limit(
        map: &Mutex<HashMap<String, server_pool::Shared>>,
        name: &str,
        max: usize,
    ) -> server_pool::Shared {
        map.lock()
            .entry(name.to_string())
            .or_insert_with(|| (Arc::new(Limit::new(max)), Arc::default()))
            .clone()
    }

    /// What is known of the hosts (for the admin console and metrics).
    pub fn topology(&self) -> &crate::topology::Topology {
        &self.topology
    }

    /// A snapshot of all pools (for the admin console and stats).
    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.map.lock().values().cloned().collect()
    }

    /// The pool for `key`, if it exists.
    pub fn get(&self, key: &PoolKey) -> Option<Arc<Pool>> {
        self.map.lock().get(key).cloned()
    }

    /// (max, open) server connections of a database's limit.
    pub fn db_limit(&self, database: &str) -> Option<(usize, usize)> {
        self.db_limits.lock().get(database).map(|l| l.0.counts())
    }

    /// (max, open) server connections of a user's limit.
    pub(crate) fn user_limit(&self, user: &str) -> Option<(usize, usize)> {
        self.user_limits.lock().get(user).map(|l| l.0.counts())
    }

    /// Clients logged in to a database's pools.
    pub fn db_clients(&self, database: &str) -> usize {
        self.db_limits.lock().get(database).map_or(0, |l| l.1.get())
    }
}

#[cfg(test)]
mod tests;
