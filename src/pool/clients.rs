//! Client connections counted per pool, per database and per user, for
//! max_db_client_connections, max_user_client_connections and the admin
//! console. A logged-in client holds a [`PoolClient`]; dropping it (the
//! session ended) uncounts the client.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Pool;

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
        self.pool.user_clients.remove();
    }
}

impl Pool {
    /// Count a new client of this pool, within max_db_client_connections
    /// and max_user_client_connections.
    pub(crate) fn add_client(self: &Arc<Self>) -> Result<PoolClient, ClientLimit> {
        let s = self.settings();
        if !self.db_clients.try_add(s.max_db_client_connections) {
            return Err(ClientLimit::Database);
        }
        if !self.user_clients.try_add(s.max_user_client_connections) {
            self.db_clients.remove();
            return Err(ClientLimit::User);
        }
        self.clients.try_add(0);
        Ok(PoolClient { pool: self.clone() })
    }

    /// Clients logged in to this pool.
    pub(crate) fn client_count(&self) -> usize {
        self.clients.get()
    }
}
