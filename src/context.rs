//! What every session shares: the current config, the pools, the cancel
//! registry and the shutdown signal. Read at login, not per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use crate::config::Config;
use crate::pool::Pools;
use crate::protocol::SqlState;
use crate::registry::Registry;

/// Shared state of one running pooler.
pub struct Context {
    config: RwLock<Arc<Config>>,
    /// All pools.
    pub pools: Pools,
    /// Every client session.
    pub registry: Registry,
    /// How many permits `client_slots` has (max_client_conn, as far as a
    /// reload could change it).
    client_capacity: AtomicU32,
    /// Shutdown asked for by the admin console or a signal.
    shutdown_request: watch::Sender<Option<ShutdownMode>>,
    /// TAKEOVER asked this process to stop (see `hand_over`).
    handing_over: std::sync::atomic::AtomicBool,
    /// Errors sent to clients, by SQLSTATE (for the metrics endpoint).
    pub client_errors: Mutex<std::collections::BTreeMap<SqlState, u64>>,
    /// Failed logins, by SQLSTATE.
    pub login_failures: Mutex<std::collections::BTreeMap<SqlState, u64>>,
    /// The admin console's statistics (database `pgbouncer` in SHOW STATS
    /// and counted in SHOW TOTALS, as PgBouncer counts its console): each
    /// command is a transaction and a query.
    pub admin_stats: crate::stats::PoolStats,
    /// Serializes reloads; holds the values set with SET (kept over
    /// reloads, as long as the process runs).
    reloading: Mutex<Vec<(String, String)>>,
    /// max_client_conn permits; all of them are free again once every
    /// client session has ended (used to wait for shutdown).
    pub client_slots: Arc<Semaphore>,
    /// Becomes true when the pooler shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Parking epoch, advanced by the sweeper (see `Registry::sweep`).
    pub epoch: AtomicU64,
    /// A shutdown of any mode has begun (WAIT_FOR_CLIENTS included): only
    /// the admin console takes new connections, RESUME is refused.
    stopping: std::sync::atomic::AtomicBool,
    /// The shards' runtimes (`crate::runtime::shard`), to start tasks for parked
    /// clients from any thread.
    shards: Vec<tokio::runtime::Handle>,
    /// The shard the next resumed client goes to.
    next_shard: std::sync::atomic::AtomicUsize,
}

impl Context {
    /// A context for `config`, with the current runtime as the only shard.
    /// Must be called inside the runtime.
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> Context {
        Self::sharded(config, shutdown, vec![tokio::runtime::Handle::current()])
    }

    /// A context for `config` whose sessions run on `shards` (shard 0 first).
    pub(crate) fn sharded(
        config: Config,
        shutdown: watch::Receiver<bool>,
        shards: Vec<tokio::runtime::Handle>,
    ) -> Context {
        assert!(!shards.is_empty(), "at least one runtime");
        let slots = config.general.max_client_conn as usize;
        let registry = Registry::new();
        registry.set_peer_id(config.general.peer_id);
        Context {
            config: RwLock::new(Arc::new(config)),
            pools: Pools::new(),
            registry,
            client_slots: Arc::new(Semaphore::new(slots)),
            client_capacity: AtomicU32::new(slots as u32),
            shutdown_request: watch::channel(None).0,
            handing_over: std::sync::atomic::AtomicBool::new(false),
            reloading: Mutex::new(Vec::new()),
            client_errors: Mutex::new(Default::default()),
            login_failures: Mutex::new(Default::default()),
            admin_stats: crate::stats::PoolStats::new(),
            shutdown,
            epoch: AtomicU64::new(1),
            stopping: Default::default(),
            shards,
            next_shard: Default::default(),
        }
    }

    /// The runtime a resumed (parked) client gets its task on: the shards
    /// in turn.
    pub(crate) fn resume_runtime(&self) -> &tokio::runtime::Handle {
        let n = self.next_shard.fetch_add(1, Ordering::Relaxed);
        &self.shards[n % self.shards.len()]
    }

    /// Every shard's runtime, shard 0 first.
    pub fn shards(&self) -> &[tokio::runtime::Handle] {
        &self.shards
    }

    /// A shutdown begins (any mode).
    pub(crate) fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether a shutdown (any mode) has begun.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// Whether shutdown has begun.
    pub(crate) fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// The number of client slots (max_client_conn in force).
    pub(crate) fn client_capacity(&self) -> u32 {
        self.client_capacity.load(Ordering::Relaxed)
    }

    /// RELOAD: re-read the config file and auth_file and apply them: sizes,
    /// limits and timeouts to live pools, replaced connection settings as
    /// servers are released, new and removed databases for new logins,
    /// passwords for the next login. An invalid file leaves everything as
    /// it was; the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let sets = self.reloading.lock();
        self.apply(&sets)
    }

    /// SET key = value: change a setting that can change at run time; it
    /// stays over reloads until the process ends.
    pub fn set(&self, key: &str, value: &str) -> Result<(), String> {
        let key = key.to_ascii_lowercase();
        match crate::config::changeable(&key) {
            None => return Err(format!("unknown config variable: {key}")),
            Some(false) => return Err(format!("{key} cannot be changed at run time")),
            Some(true) => {}
        }
        let mut sets = self.reloading.lock();
        let mut next = sets.clone();
        next.retain(|(k, _)| *k != key);
        next.push((key, value.to_string()));
        self.apply(&next)?;
        *sets = next;
        Ok(())
    }

    fn apply(&self, sets: &[(String, String)]) -> Result<(), String> {
        let path = self.config().file.clone();
        let running = self.config().tls.clone();
        let loaded =
            crate::config::reload_with(&path, sets, &running).map_err(|e| e.to_string())?;
        for w in &loaded.warnings {
            warn!("{w}");
        }
        let cfg = Arc::new(loaded.config);
        self.resize_client_slots(cfg.general.max_client_conn);
        self.registry.set_peer_id(cfg.general.peer_id);
        *self.config.write() = cfg.clone();
        self.pools.apply_config(&cfg);
        info!(file = %path.display(), "configuration applied");
        Ok(())
    }

    fn resize_client_slots(&self, want: u32) {
        let have = self.client_capacity.load(Ordering::Relaxed);
        if want > have {
            self.client_slots.add_permits((want - have) as usize);
            self.client_capacity.store(want, Ordering::Relaxed);
        } else if want < have {
            // Only free permits can go; more go as clients leave and the
            // next reload tries again.
            let gone = self.client_slots.forget_permits((have - want) as usize) as u32;
            self.client_capacity.store(have - gone, Ordering::Relaxed);
        }
    }

    /// Ask the process to shut down (admin console SHUTDOWN).
    /// TAKEOVER (`pgsluice -R` started a new process): stop as
    /// SHUTDOWN WAIT_FOR_CLIENTS does, giving up the Unix socket at once.
    pub(crate) fn hand_over(&self) {
        self.handing_over.store(true, Ordering::Relaxed);
        self.request_shutdown(ShutdownMode::WaitForClients);
    }

    /// Whether a TAKEOVER asked this process to stop.
    pub fn handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Relaxed)
    }

    pub(crate) fn request_shutdown(&self, mode: ShutdownMode) {
        self.shutdown_request.send_replace(Some(mode));
    }

    /// Wait for a shutdown request.
    pub async fn shutdown_requested(&self) -> ShutdownMode {
        let mut rx = self.shutdown_request.subscribe();
        loop {
            if let Some(m) = *rx.borrow_and_update() {
                return m;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A session's registration in the pooler's registry.
pub type Registration = crate::registry::Registration<Context>;

impl crate::registry::Owner for Context {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// How the pooler stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// SHUTDOWN, SIGQUIT, a second signal: exit now.
    Immediate,
    /// SHUTDOWN WAIT_FOR_SERVERS, SIGINT: stop accepting, let running
    /// transactions finish (idle clients are told and closed), then exit.
    WaitForServers,
    /// SHUTDOWN WAIT_FOR_CLIENTS, SIGTERM: stop accepting, exit when the
    /// last client has left on its own.
    WaitForClients,
}
