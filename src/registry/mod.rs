//! The session registry: one entry per client session, keyed by the
//! BackendKeyData the pooler gave it. Its users: cancel requests find the
//! server a client is linked to (`crate::cancel`); the admin console lists
//! and kills sessions (SHOW CLIENTS, KILL); shutdown tells every session to
//! close; an idle session parks in its entry with no task at all, its
//! socket watched by the parker (`transport::parker`), which wakes the
//! entry; the entry then gives the session a task again (see
//! `client::session`). A 1 Hz sweep ([`Registry::sweep`]) parks sessions
//! idle for a second, enforces client_idle_timeout and wakes sessions whose
//! query_timeout / idle_transaction_timeout / client_login_timeout passed,
//! so an idle client costs no timer of its own.
//!
//! What it does not own: the sessions themselves (`client`), pools.

mod entry;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use tracing::warn;

pub use entry::{ClientInfo, CloseRequest, InFlight, ParkedSession, SessionEntry, Who};

use crate::protocol::BackendKey;
use crate::transport::Peer;
use crate::transport::parker::Parker;

/// Entries by client key.
type Entries = Mutex<HashMap<(i32, i32), Arc<SessionEntry>>>;

/// All sessions.
#[derive(Default)]
pub struct Registry {
    /// Shared with the parker's thread, which finds parked sessions by key.
    map: Arc<Entries>,
    /// peer_id, put in every key given out (0: no peering).
    peer_id: std::sync::atomic::AtomicU16,
    /// Started when the first session parks (None: it could not start;
    /// sessions then stay with their tasks).
    parker: std::sync::OnceLock<Option<Parker>>,
}

/// What owns the registry (the pooler's shared state): a registration
/// keeps its owner alive and reaches the registry through it, so that a
/// session holds one pointer for both.
pub trait Owner: Send + Sync + 'static {
    /// The owner's registry.
    fn registry(&self) -> &Registry;
}

/// A session's entry in the registry, removed when this is dropped (the
/// session ended). Owns what it needs, so a session can move between tasks.
pub struct Registration<O: Owner> {
    owner: Arc<O>,
    /// The session's shared state.
    pub entry: Arc<SessionEntry>,
}

impl<O: Owner> Registration<O> {
    /// Register a new session, with a fresh random key, in `owner`'s registry.
    pub fn new(owner: Arc<O>, id: u64, peer: Peer) -> Self {
        let entry = owner.registry().register(id, peer);
        Registration { owner, entry }
    }

    /// The registry's owner.
    pub(crate) fn owner(&self) -> &Arc<O> {
        &self.owner
    }
}

impl<O: Owner> Drop for Registration<O> {
    fn drop(&mut self) {
        self.entry.forget_waker();
        let key = self.entry.key;
        self.owner
            .registry()
            .map
            .lock()
            .remove(&(key.process_id, key.secret_key));
    }
}

/// Registered sessions above which new sessions park as soon as they idle
/// (see [`Registry::crowded`]).
pub const PARK_AT_LOGIN_ABOVE: usize = 1000;

/// The parker token of a client key (client keys have a non-negative
/// process id, so the top bit is 0 and the token is never the parker's
/// own).
pub(crate) fn token(key: BackendKey) -> u64 {
    (u64::from(key.process_id as u32) << 32) | u64::from(key.secret_key as u32)
}

fn key_of(token: u64) -> (i32, i32) {
    ((token >> 32) as u32 as i32, token as u32 as i32)
}

impl Registry {
    /// A new registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Where parked sessions' sockets wait (started on first use).
    pub fn parker(&self) -> Option<&Parker> {
        self.parker
            .get_or_init(|| {
                let entries = Arc::downgrade(&self.map);
                let mut woken = Vec::new();
                Parker::start(move |tokens| {
                    let Some(map) = entries.upgrade() else {
                        return false;
                    };
                    {
                        let map = map.lock();
                        woken.extend(tokens.iter().filter_map(|t| map.get(&key_of(*t)).cloned()));
                    }
                    // Outside the map's lock: waking resumes the session,
                    // which starts a task.
                    for entry in woken.drain(..) {
                        std::task::Wake::wake(entry);
                    }
                    true
                })
                .map_err(
                    |e| warn!(error = %e, "cannot start the parker: idle clients keep their tasks"),
                )
                .ok()
            })
            .as_ref()
    }

    /// A new entry with a fresh random key (see [`Registration::new`]).
    fn register(&self, id: u64, peer: Peer) -> Arc<SessionEntry> {
        let mut map = self.map.lock();
        let peer_id = self.peer_id.load(std::sync::atomic::Ordering::Relaxed);
        let key = loop {
            let mut key = BackendKey {
                process_id: rand::random::<i32>() & 0x7fff_ffff,
                secret_key: rand::random(),
            };
            if peer_id > 0 {
                key = key.with_peer(peer_id);
            }
            if !map.contains_key(&(key.process_id, key.secret_key)) {
                break key;
            }
        };
        let entry = Arc::new(SessionEntry::new(id, peer, key));
        map.insert((key.process_id, key.secret_key), entry.clone());
        entry
    }

    /// Give out keys naming peer `peer_id` from now on (0: no peering).
    pub fn set_peer_id(&self, peer_id: u16) {
        self.peer_id
            .store(peer_id, std::sync::atomic::Ordering::Relaxed);
    }

    /// The entry of the session with client key `key`.
    pub fn find(&self, key: BackendKey) -> Option<Arc<SessionEntry>> {
        self.map
            .lock()
            .get(&(key.process_id, key.secret_key))
            .cloned()
    }

    /// Whether more than [`PARK_AT_LOGIN_ABOVE`] sessions are registered:
    /// then a session that has just logged in parks as soon as it waits
    /// idle, instead of at the next sweep. When thousands of clients
    /// connect at once (a fleet of application pools opening), each would
    /// otherwise hold a task and a reactor registration (~500 bytes) until
    /// the sweep parks it, and the heap keeps that peak. The price is one
    /// park and wake-up (~5 syscalls) for a client that sends its first
    /// query at once.
    pub(crate) fn crowded(&self) -> bool {
        self.map.lock().len() > PARK_AT_LOGIN_ABOVE
    }

    /// Ask every session idle since before the previous sweep to park, close
    /// those idle for longer than their client_idle_timeout, wake linked
    /// ones whose query_timeout / idle_transaction_timeout deadline passed
    /// (they end the link themselves), and start a new epoch. Called about
    /// once a second.
    pub fn sweep(&self, epoch: &AtomicU64) {
        let now = epoch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for entry in self.all() {
            entry.sweep(now);
        }
    }

    /// (registered sessions, parked sessions), for the admin console and tests.
    pub fn counts(&self) -> (usize, usize) {
        let map = self.map.lock();
        let parked = map.values().filter(|e| e.is_parked()).count();
        (map.len(), parked)
    }

    /// A snapshot of every registered session (for the admin console).
    pub fn all(&self) -> Vec<Arc<SessionEntry>> {
        self.map.lock().values().cloned().collect()
    }

    /// Tell every registered session to close when idle (shutdown).
    pub(crate) fn close_all(&self) {
        for entry in self.all() {
            entry.close(CloseRequest::Shutdown);
        }
    }

    /// SHUTDOWN WAIT_FOR_SERVERS begins: every session ends when it next
    /// needs a server (see `CloseRequest::Draining`).
    pub(crate) fn drain_all(&self) {
        for entry in self.all() {
            entry.close(CloseRequest::Draining);
        }
    }

    /// Wake the draining sessions that wait for a server (they end), and
    /// say whether a session still holds one.
    pub(crate) fn drain_waiting(&self) -> bool {
        let mut linked = false;
        for entry in self.all() {
            entry.drain_waiting();
            linked |= entry.linked().is_some();
        }
        linked
    }
}
