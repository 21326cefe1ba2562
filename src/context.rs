//! What every session shares: the current config, the pools, the cancel
//! registry and the shutdown signal. Read at login, not per message.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::RwLock;
use tokio::sync::{Semaphore, watch};

use crate::cancel::CancelRegistry;
use crate::config::Config;
use crate::pool::Pools;

/// Shared state of one running pooler.
pub struct Context {
    config: RwLock<Arc<Config>>,
    /// All pools.
    pub pools: Pools,
    /// Client cancel keys.
    pub cancel: CancelRegistry,
    /// max_client_conn permits; all of them are free again once every
    /// client session has ended (used to wait for shutdown).
    pub client_slots: Arc<Semaphore>,
    /// Becomes true when the pooler shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Parking epoch, advanced by the sweeper (see `CancelRegistry::sweep`).
    pub epoch: AtomicU64,
    /// The runtime, to start tasks for parked clients from any thread.
    pub runtime: tokio::runtime::Handle,
}

impl Context {
    /// A context for `config`. Must be called inside the runtime.
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> Context {
        let slots = config.general.max_client_conn as usize;
        Context {
            config: RwLock::new(Arc::new(config)),
            pools: Pools::new(),
            cancel: CancelRegistry::new(),
            client_slots: Arc::new(Semaphore::new(slots)),
            shutdown,
            epoch: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// Whether shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}
