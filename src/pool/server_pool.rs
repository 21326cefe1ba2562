//! One pool: idle servers, the count of open ones, clients waiting in FIFO
//! order, and the cached login answers (ParameterStatus) of its servers.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::PoolKey;
use super::PoolSettings;
use crate::auth::ScramKeys;
use crate::server::params::Params;
use crate::server::{ServerConn, ServerCredentials};

/// The ParameterStatus list a pool's servers reported at login.
pub type Welcome = Arc<Vec<(String, String)>>;

/// What a waiting client is handed.
pub(super) enum Grant {
    /// An idle server, ready to use.
    Server(Box<ServerConn>),
    /// A slot already counted in `total`: open a new connection with it.
    Slot,
}

pub(super) struct State {
    /// Idle servers; the most recently used is last (LIFO reuse).
    #[allow(clippy::vec_box)]
    // popped and pushed per transaction: pointer moves (measured with callgrind)
    pub idle: Vec<Box<ServerConn>>,
    /// Servers that exist or are being opened (idle + in use + connecting).
    pub total: usize,
    /// Clients waiting for a server, first come first served.
    pub waiters: VecDeque<oneshot::Sender<Grant>>,
}

/// A pool of server connections for one (database, user).
pub struct Pool {
    /// Its identity.
    pub key: PoolKey,
    /// Its settings.
    pub settings: PoolSettings,
    pub(super) state: Mutex<State>,
    /// ParameterStatus of the latest server login, replayed to clients at
    /// their login.
    welcome: Mutex<Option<Welcome>>,
    /// SCRAM keys proven by a client, used when no password is configured.
    scram_keys: Mutex<Option<ScramKeys>>,
    /// Parameter sets of this pool's clients, shared so that thousands of
    /// clients asking for the same settings hold one copy.
    interned: Mutex<Vec<Arc<Params>>>,
}

/// Most distinct parameter sets kept for sharing per pool.
const MAX_INTERNED: usize = 64;

impl Pool {
    /// A new empty pool.
    pub fn new(key: PoolKey, settings: PoolSettings) -> Pool {
        Pool {
            key,
            settings,
            state: Mutex::new(State {
                idle: Vec::new(),
                total: 0,
                waiters: VecDeque::new(),
            }),
            welcome: Mutex::new(None),
            scram_keys: Mutex::new(None),
            interned: Mutex::new(Vec::new()),
        }
    }

    /// Return a server after use. It must be idle with nothing outstanding.
    /// It goes to the longest-waiting client, else to the idle list.
    pub fn checkin(&self, server: Box<ServerConn>) {
        debug_assert!(server.buf.is_empty());
        let mut server = server;
        let mut st = self.state.lock();
        while let Some(tx) = st.waiters.pop_front() {
            match tx.send(Grant::Server(server)) {
                Ok(()) => return,
                Err(Grant::Server(back)) => server = back,
                Err(Grant::Slot) => unreachable!("sent a server"),
            }
        }
        st.idle.push(server);
    }

    /// Close a server that cannot be reused, freeing its slot.
    #[allow(clippy::boxed_local)] // callers hold servers boxed; unboxing would copy
    pub fn discard(&self, server: Box<ServerConn>) {
        server.terminate();
        self.free_slot();
    }

    /// Give up one slot: hand it to the longest-waiting client (who will
    /// open a connection with it), or decrement the count.
    pub(super) fn free_slot(&self) {
        let mut st = self.state.lock();
        while let Some(tx) = st.waiters.pop_front() {
            if tx.send(Grant::Slot).is_ok() {
                return;
            }
        }
        st.total -= 1;
    }

    /// The ParameterStatus list for client logins, if a server logged in.
    pub fn welcome(&self) -> Option<Welcome> {
        self.welcome.lock().clone()
    }

    pub(super) fn set_welcome(&self, params: Vec<(String, String)>) {
        *self.welcome.lock() = Some(Arc::new(params));
    }

    /// Remember SCRAM keys a client proved, for server logins that have no
    /// other secret.
    pub fn remember_scram_keys(&self, keys: ScramKeys) {
        *self.scram_keys.lock() = Some(keys);
    }

    pub(super) fn credentials(&self) -> ServerCredentials {
        if let ServerCredentials::None = self.settings.credentials
            && let Some(keys) = self.scram_keys.lock().clone()
        {
            return ServerCredentials::ScramKeys(keys);
        }
        self.settings.credentials.clone()
    }

    /// A shared copy of `params`: an equal set already in use by another
    /// client of this pool, or this one, remembered for the next.
    pub fn intern(&self, params: Params) -> Arc<Params> {
        let mut interned = self.interned.lock();
        if let Some(p) = interned.iter().find(|p| ***p == params) {
            return p.clone();
        }
        let p = Arc::new(params);
        if interned.len() >= MAX_INTERNED {
            // Forget sets nobody uses any more, else the oldest.
            interned.retain(|p| Arc::strong_count(p) > 1);
            if interned.len() >= MAX_INTERNED {
                interned.remove(0);
            }
        }
        interned.push(p.clone());
        p
    }

    /// Counts for the admin console: (idle, total, waiting).
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.state.lock();
        (st.idle.len(), st.total, st.waiters.len())
    }
}

impl Pool {
    /// Close every idle server (at shutdown).
    pub fn close_idle(&self) {
        let idle = {
            let mut st = self.state.lock();
            let idle = std::mem::take(&mut st.idle);
            st.total -= idle.len();
            idle
        };
        for s in idle {
            s.terminate();
        }
    }
}
