//! Pools of server connections keyed by (database, user): the registry
//! (`Pools`) and one pool (`pool::Pool`).
//!
//! The admin console and stats read pools; they never reach into sessions.

mod checkout;
mod server_pool;
mod settings;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

pub use checkout::CheckoutError;
pub use server_pool::{Pool, Welcome};
pub use settings::PoolSettings;

/// Identity of a pool: the database name clients use and the user the
/// pooler logs in to PostgreSQL as (the forced user, or the client's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Database name as clients ask for it.
    pub database: String,
    /// Server-side user.
    pub user: String,
}

/// All pools, created on first use.
#[derive(Default)]
pub struct Pools {
    map: Mutex<HashMap<PoolKey, Arc<Pool>>>,
}

impl Pools {
    /// An empty registry.
    pub fn new() -> Pools {
        Pools::default()
    }

    /// The pool for `key`, created with `make` when missing. Called once
    /// per client login, never on the hot path.
    pub fn get_or_create(&self, key: PoolKey, make: impl FnOnce() -> PoolSettings) -> Arc<Pool> {
        let mut map = self.map.lock();
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(Pool::new(key, make())))
            .clone()
    }

    /// A snapshot of all pools (for the admin console and stats).
    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.map.lock().values().cloned().collect()
    }
}
