//! Client connections counted per pool, per database and per login user,
//! for max_db_client_connections, max_user_client_connections and the
//! admin console, as PgBouncer counts them: a database's count includes
//! the console's own (`pgbouncer`), a user's is by the name the client
//! logged in with (console included), not the pool's forced user; admin
//! users on the console are counted but never refused. A logged-in client
//! holds a [`PoolClient`] and a [`LoginCount`]; dropping them (the session
//! ended) uncounts the client.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Pool, Pools};

/// A count shared by the pools of one database or one user.
#[derive(Debug, Default)]
pub struct ClientCount(AtomicUsize);

impl ClientCount {
    /// Clients counted now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Count one more unless `max` (non-zero) is reached.
    fn try_add(&self, max: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn remove(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Which limit refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientLimit {
    /// max_db_client_connections.
    #[error("no more connections allowed for this database (max_db_client_connections)")]
    Database,
    /// max_user_client_connections.
    #[error("no more connections allowed for this user (max_user_client_connections)")]
    User,
}

/// A client logged in to a pool. Derefs to the pool.
pub struct PoolClient {
    pool: Arc<Pool>,
}

impl Deref for PoolClient {
    type Target = Arc<Pool>;

    fn deref(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for PoolClient {
    fn drop(&mut self) {
        self.pool.clients.remove();
        self.pool.db_clients.remove();
    }
}

/// A client counted under the user it logged in as (and, on the console,
/// under the console's database); uncounted on drop.
pub struct LoginCount {
    user: Arc<ClientCount>,
    console: Option<Arc<ClientCount>>,
}

impl std::fmt::Debug for LoginCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCount")
            .field("user", &self.user.get())
            .field("console", &self.console.as_ref().map(|c| c.get()))
            .finish()
    }
}

impl Drop for LoginCount {
    fn drop(&mut self) {
        self.user.remove();
        if let Some(db) = &self.console {
            db.remove();
        }
    }
}

impl Pools {
    /// The client count of login user `user`.
    fn login_count(&self, user: &str) -> Arc<ClientCount> {
        self.login_clients
            .lock()
            .entry(user.to_string())
            .or_default()
            .clone()
    }

    /// Count a client logging in as `user` to a pool, within `max_user`
    /// (its max_user_client_connections; 0 = no limit).
    pub(crate) fn count_login(
        &self,
        user: &str,
        max_user: usize,
    ) -> Result<LoginCount, ClientLimit> {
        let count = self.login_count(user);
        if !count.try_add(max_user) {
            return Err(ClientLimit::User);
        }
        Ok(LoginCount {
            user: count,
            console: None,
        })
    }

    /// Count a client of the admin console logging in as `user`, within
    /// `max_db` (max_db_client_connections) and `max_user`, unless it is
    /// an admin user (`exempt`), counted but never refused (PgBouncer's
    /// rule).
    pub(crate) fn count_console(
        &self,
        user: &str,
        (max_db, max_user): (usize, usize),
        exempt: bool,
    ) -> Result<LoginCount, ClientLimit> {
        let (max_db, max_user) = if exempt { (0, 0) } else { (max_db, max_user) };
        let db = Self::limit(&self.db_limits, crate::config::ADMIN_DB, 0).1;
        if !db.try_add(max_db) {
            return Err(ClientLimit::Database);
        }
        let user = self.login_count(user);
        if !user.try_add(max_user) {
            db.remove();
            return Err(ClientLimit::User);
        }
        Ok(LoginCount {
            user,
            console: Some(db),
        })
    }

    /// Clients logged in as `user` (pools and console).
    pub(crate) fn login_clients(&self, user: &str) -> usize {
        self.login_clients.lock().get(user).map_or(0, |c| c.get())
    }

    /// Users clients have logged in as (SHOW USERS).
    pub(crate) fn login_user_names(&self) -> Vec<String> {
        self.login_clients.lock().keys().cloned().collect()
    }
}

impl Pool {
    /// Count a new client of this pool, within max_db_client_connections
    /// (the user's limit is counted by login user: `Pools::count_login`).
    pub(crate) fn add_client(self: &Arc<Self>) -> Result<PoolClient, ClientLimit> {
        let s = self.settings();
        if !self.db_clients.try_add(s.max_db_client_connections) {
            return Err(ClientLimit::Database);
        }
        self.clients.try_add(0);
        Ok(PoolClient { pool: self.clone() })
    }

    /// Clients logged in to this pool.
    pub(crate) fn client_count(&self) -> usize {
        self.clients.get()
    }
}
