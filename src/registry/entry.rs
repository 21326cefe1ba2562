//! One session's entry in the registry: who the client is, the server it is
//! linked to now (for cancel requests), the cancels still being delivered
//! to that server, why the pooler told it to close, how long it has been
//! idle (parking, client_idle_timeout), and who holds it: its task, or,
//! while parked, the entry itself.
//!
//! Cancel requests in flight: a cancel counts itself on the entry while it
//! is being delivered ([`SessionEntry::begin_cancel`]), and a session that
//! gives its server back first waits for that count to drop to zero
//! ([`SessionEntry::unlink`], [`SessionEntry::wait_cancels`]), so a late
//! cancel can never hit the next client's query on the same server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::Endpoint;
use crate::protocol::BackendKey;
use crate::transport::Peer;

/// One client session's shared state: who it is, where its cancel request
/// must go right now, and whether it was told to close.
#[derive(Default)]
pub struct SessionEntry {
    /// The session's id, as in the logs.
    pub id: u64,
    /// Where the client connected from.
    pub peer: Option<Peer>,
    /// The BackendKeyData the pooler gave the client.
    pub key: BackendKey,
    linked: Mutex<Option<(Arc<Endpoint>, BackendKey)>>,
    /// Why the session was told to close ([`CloseRequest`] as u8, 0 = not).
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
    /// When the client connected, in whole seconds since the Unix epoch
    /// (SHOW CLIENTS shows seconds, as PgBouncer; u32: good until 2106).
    connected_s: u32,
    /// The id of the server connection linked last (SHOW SERVERS, SHOW
    /// SOCKETS; low 32 bits: with `connected_s` it takes the 8 bytes the
    /// entry had for a microsecond connect time).
    linked_id: AtomicU32,
    /// Who the client is, set once logged in (for SHOW CLIENTS / SERVERS);
    /// boxed so that an entry grows by one word.
    info: std::sync::OnceLock<Arc<ClientInfo>>,
}

/// A session that waits in its entry with no task (parked; see
/// `client::session`): the registry holds it until its socket or a close
/// wakes the entry, which then hands it back.
pub trait ParkedSession: Send {
    /// Give the session a task again (called on the thread that woke it).
    fn resume(self: Box<Self>);
}

/// Who holds a session: its task (None while logging in, or over), or,
/// parked, its entry. Two variants, so the enum is as small as the boxed
/// trait object (16 bytes; a third variant would make it 24 and the entry
/// a malloc size class bigger).
enum Slot {
    /// The task running the session.
    Task(Option<tokio::task::AbortHandle>),
    /// The session, parked.
    Parked(Box<dyn ParkedSession>),
}

impl Default for Slot {
    fn default() -> Slot {
        Slot::Task(None)
    }
}

impl Slot {
    fn is_parked(&self) -> bool {
        matches!(self, Slot::Parked(_))
    }

    fn take_parked(&mut self) -> Option<Box<dyn ParkedSession>> {
        match std::mem::take(self) {
            Slot::Parked(p) => Some(p),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// A session as log lines name it (see [`SessionEntry::who`]).
pub struct Who<'a>(&'a SessionEntry);

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
    /// Its TLS as SHOW CLIENTS prints it (empty for plaintext).
    pub tls: String,
    /// What its `replication` startup parameter asked for.
    pub replication: crate::protocol::Replication,
}

/// `server_statements`: the linked server's statement count (saturating)
/// and, in the top bit, whether it is TLS (the entry has no padding left:
/// S6, memory per idle client).
const STATEMENTS: u16 = 0x7fff;
const SERVER_TLS: u16 = 0x8000;

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
pub enum CloseRequest {
    /// The pooler shuts down (57P01).
    Shutdown = 1,
    /// The client was idle, with no server, longer than client_idle_timeout.
    IdleTimeout = 2,
    /// KILL / KILL_CLIENT from the admin console (57P01).
    Killed = 3,
    /// SHUTDOWN WAIT_FOR_SERVERS began: the session ends when it next
    /// needs a server (its next request, or while it waits for one), as
    /// PgBouncer's; an idle one stays until the shutdown's end.
    Draining = 4,
    /// server_fast_close: the session's database changed (RECONNECT, or a
    /// reload that changed its connection); a session-mode session ends
    /// between transactions, closing its server.
    ConfigChanged = 5,
}

impl CloseRequest {
    fn from_u8(v: u8) -> Option<CloseRequest> {
        match v {
            1 => Some(CloseRequest::Shutdown),
            2 => Some(CloseRequest::IdleTimeout),
            3 => Some(CloseRequest::Killed),
            4 => Some(CloseRequest::Draining),
            5 => Some(CloseRequest::ConfigChanged),
            _ => None,
        }
    }
}

impl SessionEntry {
    /// A new session's entry (see `Registry::register`).
    pub(super) fn new(id: u64, peer: Peer, key: BackendKey) -> SessionEntry {
        let connected_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        SessionEntry {
            id,
            peer: Some(peer),
            key,
            connected_s,
            ..SessionEntry::default()
        }
    }

    /// When the client connected, in microseconds since the Unix epoch
    /// (whole seconds).
    pub fn connected_us(&self) -> u64 {
        u64::from(self.connected_s) * 1_000_000
    }

    /// Drop the stored waker: a parked session's is the entry itself,
    /// which would keep the entry alive (the session ended).
    pub(super) fn forget_waker(&self) {
        self.waker.lock().take();
    }

    /// Whether the session is parked in its entry.
    pub(super) fn is_parked(&self) -> bool {
        self.slot.lock().is_parked()
    }

    /// The registry's sweep closing epoch `now`: wake a linked session
    /// whose timeout deadline passed, close one idle past
    /// client_idle_timeout, or ask one idle since before `now` to park.
    pub(super) fn sweep(&self, now: u64) {
        let deadline = self.link_deadline();
        if deadline != 0 && now >= deadline {
            self.wake_session();
            return;
        }
        if self.idle_expired(now) {
            // Parked or not: the wake-up gives a parked session a task,
            // which then finds the close (see `client::session`).
            self.close(CloseRequest::IdleTimeout);
            return;
        }
        let idle = u64::from(self.last_active.load(Ordering::Relaxed)) < now;
        if !idle || self.is_parked() || self.park.swap(true, Ordering::Relaxed) {
            return;
        }
        self.wake_session();
    }

    /// A cancel request for this session begins: the server it is linked
    /// to (its endpoint and backend key), and a guard that counts the
    /// cancel in flight until dropped. None when the session has no
    /// server (the cancel is ignored).
    pub(crate) fn begin_cancel(self: &Arc<Self>) -> Option<(Arc<Endpoint>, BackendKey, InFlight)> {
        // Counted under `linked`: the session's unlink() sees it.
        let linked = self.linked.lock();
        let (addr, key) = linked.clone()?;
        self.cancels_in_flight.fetch_add(1, Ordering::AcqRel);
        Some((addr, key, InFlight(self.clone())))
    }

    /// Record who the client is, once logged in (later calls are ignored).
    pub(crate) fn set_info(&self, info: Arc<ClientInfo>) {
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

    /// Whether the server it is (or was last) linked to is TLS.
    pub fn server_tls(&self) -> bool {
        self.server_statements.load(Ordering::Relaxed) & SERVER_TLS != 0
    }

    /// The server the client is linked to now (its address and backend key).
    pub fn linked(&self) -> Option<(Arc<Endpoint>, BackendKey)> {
        self.linked.lock().clone()
    }

    /// The server the client is linked to now: address, backend key and
    /// the connection's id (SHOW SERVERS, SHOW SOCKETS).
    pub fn linked_server(&self) -> Option<(Arc<Endpoint>, BackendKey, u64)> {
        let (addr, key) = self.linked()?;
        Some((addr, key, u64::from(self.linked_id.load(Ordering::Relaxed))))
    }

    /// Whether the session is serving a request (linked, or waiting for a
    /// server) rather than idle.
    pub(crate) fn is_busy(&self) -> bool {
        self.last_active.load(Ordering::Relaxed) == BUSY
    }

    /// Registry epoch in which the session last became idle (None while busy).
    pub(crate) fn idle_since_epoch(&self) -> Option<u64> {
        let e = self.last_active.load(Ordering::Relaxed);
        (e != BUSY).then_some(u64::from(e))
    }

    /// The client was linked to a server that has `statements` prepared
    /// statements.
    /// `tls`: the server connection is TLS (SHOW SERVERS).
    pub fn link(
        &self,
        (addr, key, id): (Arc<Endpoint>, BackendKey, u64),
        statements: usize,
        tls: bool,
    ) {
        let n = u16::try_from(statements)
            .unwrap_or(u16::MAX)
            .min(STATEMENTS);
        let flag = if tls { SERVER_TLS } else { 0 };
        self.server_statements.store(n | flag, Ordering::Relaxed);
        self.linked_id.store(id as u32, Ordering::Relaxed);
        *self.linked.lock() = Some((addr, key));
    }

    /// The client now has `n` named prepared statements.
    pub(crate) fn set_client_statements(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.client_statements.store(n, Ordering::Relaxed);
    }

    /// Named prepared statements of the client, and of its linked server
    /// (as of the link; meaningless when not linked).
    pub fn statements(&self) -> (u32, u32) {
        (
            self.client_statements.load(Ordering::Relaxed),
            u32::from(self.server_statements.load(Ordering::Relaxed) & STATEMENTS),
        )
    }

    /// The client's server was released. Returns whether cancel requests
    /// for it are still being delivered: then the server must not be given
    /// to anyone else before [`wait_cancels`](Self::wait_cancels). No new
    /// cancel can start for it once this returned (both run under `linked`).
    pub(crate) fn unlink(&self) -> bool {
        let mut linked = self.linked.lock();
        *linked = None;
        self.cancels_in_flight.load(Ordering::Acquire) > 0
    }

    /// Wait until no cancel request for the server just unlinked is in
    /// flight, at most `limit` (zero = no limit, as cancel_wait_timeout).
    /// False when the limit passed first.
    pub(crate) async fn wait_cancels(&self, limit: Duration) -> bool {
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
    pub(crate) fn poll_closing(
        &self,
        cx: &mut Context<'_>,
        epoch: &AtomicU64,
    ) -> Option<CloseRequest> {
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
    pub(crate) fn closing_reason(&self, epoch: &AtomicU64) -> Option<CloseRequest> {
        let reason = CloseRequest::from_u8(self.closing.load(Ordering::Acquire))?;
        let now = epoch.load(Ordering::Relaxed).saturating_sub(1);
        if reason == CloseRequest::IdleTimeout && !self.idle_expired(now) {
            // Only an idle timeout is withdrawn; a shutdown that came
            // meanwhile stays (the exchange fails).
            let _ =
                self.closing
                    .compare_exchange(reason as u8, 0, Ordering::AcqRel, Ordering::Acquire);
            return CloseRequest::from_u8(self.closing.load(Ordering::Acquire));
        }
        Some(reason)
    }

    /// Make `cx` the waker the pooler wakes the session with.
    pub(crate) fn register_waker(&self, cx: &mut Context<'_>) {
        let mut slot = self.waker.lock();
        match &*slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
    }

    /// Publish the linked session's timeout deadline (0 = none).
    pub(crate) fn set_link_deadline(&self, epoch: u64) {
        self.link_deadline.store(epoch32(epoch), Ordering::Relaxed);
    }

    /// The published timeout deadline (0 = none).
    pub(crate) fn link_deadline(&self) -> u64 {
        u64::from(self.link_deadline.load(Ordering::Relaxed))
    }

    /// The session logged in to a pool whose client_idle_timeout is
    /// `limit`, in registry epoch `epoch`.
    pub(crate) fn logged_in(&self, limit: Duration, epoch: u64) {
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
    pub(crate) fn request_park(&self) {
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
    pub(crate) fn take_park_request(&self) -> bool {
        self.park.swap(false, Ordering::Relaxed)
    }

    /// Keep `session` here until its socket (or a close) wakes this entry.
    /// `watch` is called with this entry as the waker, while the session
    /// is already in place (so a wake-up cannot be missed); when it reports
    /// the session ready at once, the session is given back instead.
    pub fn park<P: ParkedSession + 'static>(
        self: &Arc<Self>,
        session: Box<P>,
        watch: impl FnOnce(&mut P, &mut Context<'_>) -> bool,
    ) -> Option<Box<P>> {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut session = session;
        let mut slot = self.slot.lock();
        // Watched under the lock: a wake-up from the watch takes the lock
        // to find the session, so it waits until the session is in place.
        if watch(&mut session, &mut cx) {
            return Some(session);
        }
        // The task ends as the session parks: its abort handle would keep
        // its memory alive. Replaced while the slot is locked, so a wake-up
        // cannot have given the session a new task (and handle) yet.
        let task = std::mem::replace(&mut *slot, Slot::Parked(session));
        drop(slot);
        drop(task);
        None
    }

    /// The task now running the session.
    pub(crate) fn set_task(&self, task: tokio::task::AbortHandle) {
        let mut slot = self.slot.lock();
        // A task that parked its client before this ran has ended: its
        // handle is not needed, and the parked client must stay.
        if !slot.is_parked() {
            *slot = Slot::Task(Some(task));
        }
    }

    /// KILL: an idle (or parked) session is told why and closed; a busy
    /// one is stopped now: its task is aborted, which closes the client
    /// socket and the server connection (PostgreSQL rolls back; the pool
    /// uncounts the server, see `server::SlotOwner`).
    pub fn kill(&self) {
        self.close(CloseRequest::Killed);
        if self.last_active.load(Ordering::Relaxed) == BUSY
            && let Slot::Task(Some(task)) = &*self.slot.lock()
        {
            task.abort();
        }
    }

    /// Whether the session was logged in to database `db` (client side).
    pub(crate) fn database_is(&self, db: &str) -> bool {
        self.info.get().is_some_and(|i| i.database == db)
    }

    /// Tell the session to close when it is next idle (at once if it is).
    pub fn close(&self, reason: CloseRequest) {
        match reason {
            CloseRequest::Shutdown | CloseRequest::Killed => {
                self.closing.store(reason as u8, Ordering::Release)
            }
            // Never replaces another request; wakes nobody (the session
            // sees it when it next wants a server; `drain_waiting` wakes
            // the ones waiting for one).
            CloseRequest::Draining => {
                let _ = self.closing.compare_exchange(
                    0,
                    reason as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                return;
            }
            // Never replaces a shutdown.
            CloseRequest::IdleTimeout | CloseRequest::ConfigChanged => {
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

    /// SHUTDOWN WAIT_FOR_SERVERS: a session told to drain that waits for a
    /// server (busy, not linked) is woken to find it out.
    pub(crate) fn drain_waiting(&self) {
        let draining = self.closing.load(Ordering::Acquire) == CloseRequest::Draining as u8;
        if draining && self.is_busy() && self.linked.lock().is_none() {
            self.wake_session();
        }
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
impl Wake for SessionEntry {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let session = self.slot.lock().take_parked();
        if let Some(session) = session {
            session.resume();
        }
    }
}

/// Counts one cancel request in flight on its entry; dropping it (the
/// cancel ended, failed, timed out, or its task went away) uncounts it and
/// wakes a session waiting in [`SessionEntry::wait_cancels`].
pub struct InFlight(Arc<SessionEntry>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.cancels_in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.wake_session();
        }
    }
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
