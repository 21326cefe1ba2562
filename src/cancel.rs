//! The registry of client sessions, keyed by the BackendKeyData the pooler
//! gave them. It serves cancel requests: while a client is linked to a
//! server, a CancelRequest carrying its key is forwarded on a new connection
//! to that server with the server's key (ignored when it has no server). It
//! also lets the pooler tell idle sessions to close (shutdown) without each
//! of them holding a wait future: an idle session registers its waker here.
//! A session idle for a while is parked here, with no task at all and its
//! socket watched by the parker (`crate::parker`), which wakes the entry;
//! the entry then starts a task again (see `client::session` and
//! [`CancelRegistry::sweep`]). The same sweep enforces
//! client_idle_timeout, so an idle client costs no timer of its own.
//!
//! Cancel requests in flight: a cancel counts itself on the entry while it
//! is being delivered, and a session that gives its server back first waits
//! for that count to drop to zero ([`CancelTarget::unlink`],
//! [`CancelTarget::wait_cancels`]), so a late cancel can never hit the next
//! client's query on the same server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tracing::warn;

mod forward;
pub use forward::cancel_server;

use crate::server::{BackendKey, ServerAddr};

/// One client session's shared state: who it is, where its cancel request
/// must go right now, and whether it was told to close.
#[derive(Default)]
pub struct CancelTarget {
    /// The session's id, as in the logs.
    pub id: u64,
    /// Where the client connected from.
    pub peer: Option<crate::client::Peer>,
    /// The BackendKeyData the pooler gave the client.
    pub key: BackendKey,
    linked: Mutex<Option<(Arc<ServerAddr>, BackendKey)>>,
    /// Why the session was told to close ([`CloseReason`] as u8, 0 = not).
    closing: AtomicU8,
    waker: Mutex<Option<Waker>>,
    /// Registry epoch in which the session last became idle; [`BUSY`] while
    /// it serves a request (busy sessions neither park nor time out).
    last_active: AtomicU32,
    /// client_idle_timeout of the session's pool in whole seconds (rounded
    /// up), 0 = off. Set once logged in.
    idle_limit: AtomicU32,
    /// Cancel requests for the linked server still being delivered.
    cancels_in_flight: AtomicU32,
    /// While linked with query_timeout or idle_transaction_timeout set:
    /// the epoch whose end makes the link's current phase too long (0 =
    /// none); the sweep wakes the session then (see `client::timeouts`).
    link_deadline: AtomicU32,
    /// The sweeper asked the session to park when next idle.
    park: AtomicBool,
    /// Named prepared statements of the client (SHOW CLIENTS), updated
    /// after each link.
    client_statements: AtomicU32,
    /// Prepared statements the linked server had when linked (SHOW
    /// SERVERS; saturating: 16 bits fit in the entry's padding, and a
    /// server has at most max_prepared_statements).
    server_statements: AtomicU16,
    /// The task running the session (for KILL), or the client itself
    /// while it is parked (no task); one lock for both keeps the entry
    /// small.
    slot: Mutex<Slot>,
    /// When the client connected, in microseconds since the Unix epoch.
    pub connected_us: u64,
    /// Who the client is, set once logged in (for SHOW CLIENTS / SERVERS);
    /// boxed so that an entry grows by one word.
    info: std::sync::OnceLock<Arc<ClientInfo>>,
}

/// Who holds a session: its task, or (parked) its entry.
#[derive(Default)]
enum Slot {
    /// Not known yet (logging in) or over.
    #[default]
    Empty,
    /// The task running the session.
    Task(tokio::task::AbortHandle),
    /// The client, parked; boxed so that other entries stay small.
    Parked(Box<crate::client::Parked>),
}

impl Slot {
    fn is_parked(&self) -> bool {
        matches!(self, Slot::Parked(_))
    }

    fn take_parked(&mut self) -> Option<Box<crate::client::Parked>> {
        match std::mem::take(self) {
            Slot::Parked(p) => Some(p),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// A session as log lines name it (see [`CancelTarget::who`]).
pub struct Who<'a>(&'a CancelTarget);

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(i) = self.0.info() {
            write!(f, "{}/{}", i.database, i.user)?;
        }
        match &self.0.peer {
            Some(peer) => write!(f, "@{peer}"),
            None => f.write_str("@"),
        }
    }
}

/// A logged-in client's identity, as the admin console shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The user the client logged in as.
    pub user: String,
    /// The database it asked for (`pgbouncer` for the admin console).
    pub database: String,
    /// The user its pool logs in to PostgreSQL as (the forced user or
    /// the client's own).
    pub pool_user: String,
    /// application_name from the startup packet (empty when not set).
    pub application_name: String,
}

/// `last_active` of a session serving a request. Epochs are seconds since
/// the pooler started, so 32 bits last 136 years (an entry is kept small:
/// S6, memory per idle client); stored values saturate below this.
const BUSY: u32 = u32::MAX;

/// An epoch as stored in an entry.
fn epoch32(epoch: u64) -> u32 {
    u32::try_from(epoch).unwrap_or(BUSY - 1).min(BUSY - 1)
}

/// Why the pooler tells an idle session to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    /// The pooler shuts down (57P01).
    Shutdown = 1,
    /// The client was idle, with no server, longer than client_idle_timeout.
    IdleTimeout = 2,
    /// KILL / KILL_CLIENT from the admin console (57P01).
    Killed = 3,
}

impl CloseReason {
    fn from_u8(v: u8) -> Option<CloseReason> {
        match v {
            1 => Some(CloseReason::Shutdown),
            2 => Some(CloseReason::IdleTimeout),
            3 => Some(CloseReason::Killed),
            _ => None,
        }
    }
}

impl CancelTarget {
    /// Record who the client is, once logged in (later calls are ignored).
    pub fn set_info(&self, info: Arc<ClientInfo>) {
        let _ = self.info.set(info);
    }

    /// For log lines: `database/user@address` (`@address` while logging
    /// in), formatted where it is written (no string built).
    pub fn who(&self) -> Who<'_> {
        Who(self)
    }

    /// Who the client is; None while it is logging in.
    pub fn info(&self) -> Option<&ClientInfo> {
        self.info.get().map(|b| &**b)
    }

    /// The server the client is linked to now (its address and backend key).
    pub fn linked(&self) -> Option<(Arc<ServerAddr>, BackendKey)> {
        self.linked.lock().clone()
    }

    /// Whether the session is serving a request (linked, or waiting for a
    /// server) rather than idle.
    pub fn is_busy(&self) -> bool {
        self.last_active.load(Ordering::Relaxed) == BUSY
    }

    /// Registry epoch in which the session last became idle (None while busy).
    pub fn idle_since_epoch(&self) -> Option<u64> {
        let e = self.last_active.load(Ordering::Relaxed);
        (e != BUSY).then_some(u64::from(e))
    }

    /// The client was linked to a server that has `statements` prepared
    /// statements.
    pub fn link(&self, addr: Arc<ServerAddr>, key: BackendKey, statements: usize) {
        let n = u16::try_from(statements).unwrap_or(u16::MAX);
        self.server_statements.store(n, Ordering::Relaxed);
        *self.linked.lock() = Some((addr, key));
    }

    /// The client now has `n` named prepared statements.
    pub fn set_client_statements(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.client_statements.store(n, Ordering::Relaxed);
    }

    /// Named prepared statements of the client, and of its linked server
    /// (as of the link; meaningless when not linked).
    pub fn statements(&self) -> (u32, u32) {
        (
            self.client_statements.load(Ordering::Relaxed),
            u32::from(self.server_statements.load(Ordering::Relaxed)),
        )
    }

    /// The client's server was released. Returns whether cancel requests
    /// for it are still being delivered: then the server must not be given
    /// to anyone else before [`wait_cancels`](Self::wait_cancels). No new
    /// cancel can start for it once this returned (both run under `linked`).
    pub fn unlink(&self) -> bool {
        let mut linked = self.linked.lock();
        *linked = None;
        self.cancels_in_flight.load(Ordering::Acquire) > 0
    }

    /// Wait until no cancel request for the server just unlinked is in
    /// flight, at most `limit` (zero = no limit, as cancel_wait_timeout).
    /// False when the limit passed first.
    pub async fn wait_cancels(&self, limit: Duration) -> bool {
        let done = std::future::poll_fn(|cx| {
            if self.cancels_in_flight.load(Ordering::Acquire) == 0 {
                return std::task::Poll::Ready(());
            }
            self.register_waker(cx);
            // Checked again: the last cancel may have ended before the
            // waker was stored.
            if self.cancels_in_flight.load(Ordering::Acquire) == 0 {
                return std::task::Poll::Ready(());
            }
            std::task::Poll::Pending
        });
        if limit.is_zero() {
            done.await;
            return true;
        }
        crate::runtime::timer::timeout(limit, done).await.is_ok()
    }

    /// Why the session was told to close, if it was; if not, `cx` is woken
    /// when it is. `epoch` is the registry's epoch counter: a close for
    /// client_idle_timeout that the client's own activity overtook (it
    /// sent a request between the sweep's look and now) is withdrawn.
    pub fn poll_closing(&self, cx: &mut Context<'_>, epoch: &AtomicU64) -> Option<CloseReason> {
        if let Some(reason) = self.closing_reason(epoch) {
            return Some(reason);
        }
        self.register_waker(cx);
        // Checked again: close() may have run before the waker was stored.
        self.closing_reason(epoch)
    }

    /// Why the session was told to close, if it was (as
    /// [`poll_closing`](Self::poll_closing), for a session whose task's
    /// waker is registered already: nothing else replaces it while the
    /// task holds the session).
    #[inline]
    pub fn closing_reason(&self, epoch: &AtomicU64) -> Option<CloseReason> {
        let reason = CloseReason::from_u8(self.closing.load(Ordering::Acquire))?;
        let now = epoch.load(Ordering::Relaxed).saturating_sub(1);
        if reason == CloseReason::IdleTimeout && !self.idle_expired(now) {
            // Only an idle timeout is withdrawn; a shutdown that came
            // meanwhile stays (the exchange fails).
            let _ =
                self.closing
                    .compare_exchange(reason as u8, 0, Ordering::AcqRel, Ordering::Acquire);
            return CloseReason::from_u8(self.closing.load(Ordering::Acquire));
        }
        Some(reason)
    }

    /// Make `cx` the waker the pooler wakes the session with.
    pub fn register_waker(&self, cx: &mut Context<'_>) {
        let mut slot = self.waker.lock();
        match &*slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
    }

    /// Publish the linked session's timeout deadline (0 = none).
    pub fn set_link_deadline(&self, epoch: u64) {
        self.link_deadline.store(epoch32(epoch), Ordering::Relaxed);
    }

    /// The published timeout deadline (0 = none).
    pub fn link_deadline(&self) -> u64 {
        u64::from(self.link_deadline.load(Ordering::Relaxed))
    }

    /// The session logged in to a pool whose client_idle_timeout is
    /// `limit`, in registry epoch `epoch`.
    pub fn logged_in(&self, limit: Duration, epoch: u64) {
        let secs = limit.as_nanos().div_ceil(1_000_000_000);
        self.idle_limit
            .store(u32::try_from(secs).unwrap_or(u32::MAX), Ordering::Relaxed);
        self.last_active.store(epoch32(epoch), Ordering::Relaxed);
        // A sweep during the login saw an entry with no activity yet and
        // asked it to park: that request is not about the session.
        self.park.store(false, Ordering::Relaxed);
    }

    /// Ask the session to park the next time it waits idle (at once, if
    /// it is idle now, without waiting for the sweep).
    pub fn request_park(&self) {
        self.park.store(true, Ordering::Relaxed);
    }

    /// The session starts a request.
    pub fn active(&self) {
        self.last_active.store(BUSY, Ordering::Relaxed);
        self.park.store(false, Ordering::Relaxed);
    }

    /// The session is idle again (its request ended) in registry epoch `epoch`.
    pub fn idle(&self, epoch: u64) {
        self.last_active.store(epoch32(epoch), Ordering::Relaxed);
    }

    /// Whether the session has been idle, with no server, for at least its
    /// client_idle_timeout as of the sweep that closes epoch `now`: it went
    /// idle during epoch `e` and every epoch lasts a second, so it has been
    /// idle for more than `now - e` seconds.
    fn idle_expired(&self, now: u64) -> bool {
        let limit = u64::from(self.idle_limit.load(Ordering::Relaxed));
        let last = self.last_active.load(Ordering::Relaxed);
        limit > 0 && last != BUSY && now.saturating_sub(u64::from(last)) >= limit
    }

    /// Whether the sweeper asked the session to park (clears the request).
    pub fn take_park_request(&self) -> bool {
        self.park.swap(false, Ordering::Relaxed)
    }

    /// Keep `client` here until its socket (or a close) wakes this entry.
    /// `ready` is called with this entry as the waker, while the client is
    /// already in place (so a wake-up cannot be missed); when it reports
    /// the client ready at once, the client is given back instead.
    pub fn park(
        self: &Arc<Self>,
        client: crate::client::Parked,
        ready: impl FnOnce(&mut crate::client::Parked, &mut Context<'_>) -> bool,
    ) -> Option<crate::client::Parked> {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut slot = self.slot.lock();
        // The task ends if the client parks: its abort handle would keep
        // its memory alive. Replaced while the slot is locked, so a wake-up
        // cannot have given the client a new task (and a new handle) yet.
        let task = std::mem::replace(&mut *slot, Slot::Parked(Box::new(client)));
        let Slot::Parked(parked) = &mut *slot else {
            unreachable!()
        };
        if ready(parked, &mut cx) {
            let client = slot.take_parked().map(|c| *c);
            *slot = task;
            return client;
        }
        drop(slot);
        drop(task);
        None
    }

    /// The task now running the session.
    pub fn set_task(&self, task: tokio::task::AbortHandle) {
        let mut slot = self.slot.lock();
        // A task that parked its client before this ran has ended: its
        // handle is not needed, and the parked client must stay.
        if !slot.is_parked() {
            *slot = Slot::Task(task);
        }
    }

    /// KILL: an idle (or parked) session is told why and closed; a busy
    /// one is stopped now: its task is aborted, which closes the client
    /// socket and the server connection (PostgreSQL rolls back; the pool
    /// uncounts the server, see `server::SlotOwner`).
    pub fn kill(&self) {
        self.close(CloseReason::Killed);
        if self.last_active.load(Ordering::Relaxed) == BUSY
            && let Slot::Task(task) = &*self.slot.lock()
        {
            task.abort();
        }
    }

    /// Whether the session was logged in to database `db` (client side).
    pub fn database_is(&self, db: &str) -> bool {
        self.info.get().is_some_and(|i| i.database == db)
    }

    /// Tell the session to close when it is next idle (at once if it is).
    pub fn close(&self, reason: CloseReason) {
        match reason {
            CloseReason::Shutdown | CloseReason::Killed => {
                self.closing.store(reason as u8, Ordering::Release)
            }
            // Never replaces a shutdown.
            CloseReason::IdleTimeout => {
                let _ = self.closing.compare_exchange(
                    0,
                    reason as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
        self.wake_session();
    }

    /// Wake the session's task (or, when parked, the entry itself, which
    /// gives the client a task again). The waker stays for later wake-ups.
    fn wake_session(&self) {
        let waker = self.waker.lock().clone();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A parked session's socket (or a close) wakes its entry: the client goes
/// back to a task of its own.
impl Wake for CancelTarget {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let client = self.slot.lock().take_parked();
        if let Some(client) = client {
            crate::client::resume(*client);
        }
    }
}

/// All registered client keys.
#[derive(Default)]
pub struct CancelRegistry {
    /// Shared with the parker's thread, which finds parked clients by key.
    map: Arc<crate::parker::Entries>,
    /// Started when the first client parks (None: it could not start;
    /// clients then stay with their tasks).
    parker: std::sync::OnceLock<Option<crate::parker::Parker>>,
}

/// A client's entry in the registry, removed when this is dropped (the
/// session ended). Owns what it needs, so a session can move between tasks.
pub struct Registration {
    ctx: Arc<crate::context::Context>,
    /// The session's shared state.
    pub target: Arc<CancelTarget>,
}

impl Registration {
    /// Register a new session of `ctx`.
    pub fn new(ctx: Arc<crate::context::Context>, id: u64, peer: crate::client::Peer) -> Self {
        let target = ctx.cancel.register(id, peer);
        Registration { ctx, target }
    }

    /// The pooler's shared state.
    pub fn context(&self) -> &Arc<crate::context::Context> {
        &self.ctx
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The entry may hold a waker pointing at itself (a parked client's):
        // drop it, or the entry would keep itself alive.
        self.target.waker.lock().take();
        let key = self.target.key;
        self.ctx
            .cancel
            .map
            .lock()
            .remove(&(key.process_id, key.secret_key));
    }
}

/// Registered sessions above which new sessions park as soon as they idle
/// (see [`CancelRegistry::crowded`]).
pub const PARK_AT_LOGIN_ABOVE: usize = 1000;

impl CancelRegistry {
    /// A new registry.
    pub fn new() -> CancelRegistry {
        CancelRegistry::default()
    }

    /// Where parked clients' sockets wait (see `crate::parker`).
    pub fn parker(&self) -> Option<&crate::parker::Parker> {
        self.parker
            .get_or_init(|| {
                crate::parker::Parker::start(Arc::downgrade(&self.map))
                    .map_err(|e| warn!(error = %e, "cannot start the parker: idle clients keep their tasks"))
                    .ok()
            })
            .as_ref()
    }

    /// Give a client a fresh random key (see [`Registration::new`]).
    fn register(&self, id: u64, peer: crate::client::Peer) -> Arc<CancelTarget> {
        let mut map = self.map.lock();
        let key = loop {
            let key = BackendKey {
                process_id: rand::random::<i32>() & 0x7fff_ffff,
                secret_key: rand::random(),
            };
            if !map.contains_key(&(key.process_id, key.secret_key)) {
                break key;
            }
        };
        let connected_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let target = Arc::new(CancelTarget {
            id,
            peer: Some(peer),
            key,
            connected_us,
            ..CancelTarget::default()
        });
        map.insert((key.process_id, key.secret_key), target.clone());
        target
    }

    /// Whether more than [`PARK_AT_LOGIN_ABOVE`] sessions are registered:
    /// then a session that has just logged in parks as soon as it waits
    /// idle, instead of at the next sweep. When thousands of clients
    /// connect at once (a fleet of application pools opening), each would
    /// otherwise hold a task and a reactor registration (~500 bytes) until
    /// the sweep parks it, and the heap keeps that peak. The price is one
    /// park and wake-up (~5 syscalls) for a client that sends its first
    /// query at once.
    pub fn crowded(&self) -> bool {
        self.map.lock().len() > PARK_AT_LOGIN_ABOVE
    }

    /// Ask every session idle since before the previous sweep to park, close
    /// those idle for longer than their client_idle_timeout, wake linked
    /// ones whose query_timeout / idle_transaction_timeout deadline passed
    /// (they end the link themselves), and start a new epoch. Called about
    /// once a second.
    pub fn sweep(&self, epoch: &AtomicU64) {
        let now = epoch.fetch_add(1, Ordering::Relaxed);
        let targets: Vec<Arc<CancelTarget>> = self.map.lock().values().cloned().collect();
        for t in targets {
            let deadline = t.link_deadline();
            if deadline != 0 && now >= deadline {
                t.wake_session();
                continue;
            }
            if t.idle_expired(now) {
                // Parked or not: the wake-up gives a parked client a task,
                // which then finds the close (see `client::session`).
                t.close(CloseReason::IdleTimeout);
                continue;
            }
            let idle = u64::from(t.last_active.load(Ordering::Relaxed)) < now;
            if !idle || t.slot.lock().is_parked() || t.park.swap(true, Ordering::Relaxed) {
                continue;
            }
            t.wake_session();
        }
    }

    /// (registered sessions, parked sessions), for the admin console and tests.
    pub fn counts(&self) -> (usize, usize) {
        let map = self.map.lock();
        let parked = map.values().filter(|t| t.slot.lock().is_parked()).count();
        (map.len(), parked)
    }

    /// A snapshot of every registered session (for the admin console).
    pub fn all(&self) -> Vec<Arc<CancelTarget>> {
        self.map.lock().values().cloned().collect()
    }

    /// Tell every registered session to close when idle (shutdown).
    pub fn close_all(&self) {
        let targets: Vec<Arc<CancelTarget>> = self.map.lock().values().cloned().collect();
        for t in targets {
            t.close(CloseReason::Shutdown);
        }
    }
}

#[cfg(test)]
#[path = "cancel_tests.rs"]
mod tests;
