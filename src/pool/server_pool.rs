//! One pool: idle servers, the count of open ones, clients waiting in FIFO
//! order, and the cached login answers (ParameterStatus) of its servers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use tracing::debug;

use super::PoolKey;
use super::PoolSettings;
use super::clients::ClientCount;
use super::control::{DbControl, OldServers};
use super::events::ServerEvents;
use super::intern::Interner;
use super::limits::Limit;
use crate::auth::ScramKeys;
use crate::server::ServerEnd;
use crate::server::params::Params;
use crate::server::{ServerConn, ServerCredentials};

/// The ParameterStatus list a pool's servers reported at login.
pub type Welcome = Arc<Vec<(String, String)>>;

/// What a waiting client is handed.
pub(super) enum Grant {
    /// An idle server, ready to use.
    Server(Box<ServerConn>),
    /// A slot already counted in `total` and in the limits: open a new
    /// connection with it.
    Slot,
}

/// A client waiting for a server.
pub(super) struct Waiter {
    pub tx: oneshot::Sender<Grant>,
    /// When its checkout first started waiting (kept when it queues again
    /// after a RECONNECT or PAUSE cleared the queue): SHOW POOLS maxwait,
    /// and the janitor drops it once query_wait_timeout has passed since.
    pub since: Instant,
    /// When it joined the queue this time (`runtime::clock::clock_ns`).
    pub queued_ns: u64,
    /// The shard its client runs on (`crate::runtime::shard`).
    pub shard: u16,
}

/// How much later than the longest waiter a waiter on the releasing shard
/// may have queued and still be given the server first (so that the
/// server stays on that shard's reactor; see `crate::runtime::shard`). Bounds what
/// a client on another shard can lose to it.
const SAME_SHARD_PREFERENCE_NS: u64 = 1_000_000;

/// The waiter a server released on shard `here` goes to: the longest
/// waiting, unless a waiter of shard `here` queued at most
/// [`SAME_SHARD_PREFERENCE_NS`] after it.
fn next_waiter(waiters: &mut VecDeque<Waiter>, here: u16) -> Option<Waiter> {
    let front = waiters.front()?;
    if front.shard != here {
        let limit = front.queued_ns.saturating_add(SAME_SHARD_PREFERENCE_NS);
        if let Some(i) = waiters
            .iter()
            .take_while(|w| w.queued_ns <= limit)
            .position(|w| w.shard == here)
        {
            return waiters.remove(i);
        }
    }
    waiters.pop_front()
}

/// How long a client may wait for a server: query_wait_timeout, or
/// query_timeout when that is set and shorter (true: it is query_timeout),
/// as PgBouncer's janitor applies both to waiting clients. Zero: no limit.
pub(super) fn wait_limit(s: &super::PoolSettings) -> (std::time::Duration, bool) {
    let (wait, query) = (s.wait_timeout, s.query_timeout);
    if !query.is_zero() && (wait.is_zero() || query < wait) {
        (query, true)
    } else {
        (wait, false)
    }
}

/// Whether a wait that started at `since` has lasted query_wait_timeout
/// (`limit`, zero = no limit) at `now`.
pub(super) fn wait_expired(since: Instant, limit: std::time::Duration, now: Instant) -> bool {
    !limit.is_zero() && now.saturating_duration_since(since) >= limit
}

/// The last failed server login, for server_login_retry.
#[derive(Clone)]
pub(super) struct LoginFailure {
    pub at: Instant,
    pub code: crate::protocol::SqlState,
    pub message: String,
    /// The server could not be reached, or answered that it is starting up
    /// or shutting down (57P03: a restart). Unlike PgBouncer, clients are
    /// not failed for it, new ones included: they wait (up to
    /// query_wait_timeout) while one connection at a time tries again,
    /// `retry_at` on, with a backoff from 10 ms up to server_login_retry;
    /// the first login that succeeds wakes them all. Otherwise (a server
    /// that refused the login), as PgBouncer: clients fail fast with the
    /// error for server_login_retry.
    pub transient: bool,
    /// Consecutive transient failures (the backoff's exponent).
    pub failures: u32,
    /// A transient failure: when the next connection may try.
    pub retry_at: Instant,
}

/// The first wait after a server that could not be reached.
const FIRST_RETRY: Duration = Duration::from_millis(10);

/// The wait before trying again after `failures` consecutive transient
/// login failures: 10 ms, doubling, at most `cap` (server_login_retry).
pub(super) fn retry_backoff(failures: u32, cap: Duration) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    doubled.min(cap)
}

/// server_login_retry as the cap of the transient backoff (250 ms when it
/// is 0: PgBouncer's 0 means no wait after a refused login, not a tight
/// loop against a server that is down).
pub(super) fn retry_cap(login_retry: Duration) -> Duration {
    if login_retry.is_zero() {
        Duration::from_millis(250)
    } else {
        login_retry
    }
}

impl State {
    /// Whether a new server connection may be tried now. Always, unless
    /// the last login failed transiently and its retry time has not come;
    /// when it has, this connection is the retry, and the next one waits
    /// for the following step of the backoff.
    pub(super) fn may_open(&mut self, now: Instant, cap: Duration) -> bool {
        match self.login_failure.as_mut() {
            Some(f) if f.transient => {
                if now < f.retry_at {
                    return false;
                }
                f.retry_at = now + retry_backoff(f.failures + 1, cap);
                true
            }
            _ => true,
        }
    }
}

pub(super) struct State {
    /// Idle servers; the most recently returned is last.
    #[allow(clippy::vec_box)]
    // popped and pushed per transaction: pointer moves (measured with callgrind)
    pub idle: VecDeque<Box<ServerConn>>,
    /// Servers that exist or are being opened (idle + in use + connecting),
    /// each counted in the pool's limits too.
    pub total: usize,
    /// Servers being opened (part of `total`).
    pub opening: usize,
    /// Clients waiting for a server, first come first served.
    pub waiters: VecDeque<Waiter>,
    /// The last server login failure, cleared by a successful one.
    pub login_failure: Option<LoginFailure>,
    /// Since when no client used the pool (autodb_idle_timeout).
    pub unused_since: Option<Instant>,
}

/// A pool of server connections for one (database, user).
pub struct Pool {
    /// Its identity (the endpoint part changes when a reload points the
    /// pool's host slot elsewhere; see `Pools::apply_config`).
    key: ArcSwap<PoolKey>,
    /// Its key's database and user, which never change.
    names: (String, String),
    /// Its endpoint's place in its database's host list, as routing chose
    /// it (a reload keeps the slot and follows the host there).
    pub(super) slot: usize,
    /// Its settings.
    settings: ArcSwap<PoolSettings>,
    /// The settings every transaction reads, as plain atomics.
    pub(super) hot: super::hot::Hot,
    /// This pool, for limits to refer to it (dangling for a pool made with
    /// [`Pool::new`], which has limits of its own that never fill).
    pub(super) me: Weak<Pool>,
    /// max_db_connections of its database.
    pub(super) db_limit: Arc<Limit>,
    /// max_user_connections of its user.
    pub(super) user_limit: Arc<Limit>,
    /// Run-time state of its database (PAUSE, SUSPEND, DISABLE).
    pub(super) control: Arc<DbControl>,
    /// What is known of the hosts of its host list (shared by all pools).
    pub(super) topology: Arc<crate::topology::Topology>,
    /// The host list's cursor: the next host (round-robin) or the one in
    /// use until a connection to it fails (load_balance_hosts=disable).
    pub(super) host_cursor: std::sync::atomic::AtomicUsize,
    /// Held by the connection probing a host of the list not known to be
    /// good (`hosts.rs`).
    pub(super) host_probe: tokio::sync::Mutex<()>,
    /// Current server generation (see `ServerConn::generation`).
    pub(super) generation: AtomicU64,
    /// Servers of older generations still open (for WAIT_CLOSE).
    pub(super) old_servers: OldServers,
    /// Server connections opened and closed, by reason.
    pub events: ServerEvents,
    /// The TLS of its latest server login (SHOW SERVERS shows it for its
    /// servers in use; all of a pool's servers share one configuration).
    pub(super) server_tls: parking_lot::Mutex<Option<Arc<str>>>,
    /// Clients logged in to this pool.
    pub(super) clients: ClientCount,
    /// Clients of its database (all its pools).
    pub(super) db_clients: Arc<ClientCount>,
    pub(super) state: Mutex<State>,
    /// ParameterStatus of the latest server login, replayed to clients at
    /// their login.
    welcome: Mutex<Option<Welcome>>,
    /// A secret learned at a client's login (SCRAM keys it proved, or an
    /// md5 secret from auth_query), used when no password is configured.
    learned: Mutex<Option<ServerCredentials>>,
    /// auth_query lookups run through this pool (when it is an auth pool).
    pub(super) lookups: super::lookups::Lookups,
    /// Parameter sets of this pool's clients, shared so that thousands of
    /// clients asking for the same settings hold one copy.
    interned: Interner<Params>,
    /// Identities of this pool's clients, shared likewise.
    infos: Interner<crate::registry::ClientInfo>,
    /// The last login answers (see `answers`).
    answers: super::answers::Answers,
    /// Statistics (SHOW STATS), written by the relay.
    pub stats: crate::stats::PoolStats,
}

/// What the pools of one database (or one user) share: the server
/// connection limit and the client count.
pub(super) type Shared = (Arc<Limit>, Arc<ClientCount>);

impl Pool {
    /// A new empty pool with no shared limits.
    pub fn new(key: PoolKey, settings: PoolSettings) -> Pool {
        Self::build(
            key,
            settings,
            Weak::new(),
            (Default::default(), Default::default()),
            Default::default(),
        )
    }

    /// A new empty pool counted under shared limits.
    pub(super) fn with_limits(
        (key, slot): (PoolKey, usize),
        settings: PoolSettings,
        db: (Shared, Arc<DbControl>),
        (user, topology): (Shared, Arc<crate::topology::Topology>),
    ) -> Arc<Pool> {
        let pool = Arc::new_cyclic(|me| {
            let mut pool = Self::build(key, settings, me.clone(), db.clone(), user.clone());
            pool.slot = slot;
            pool.topology = topology;
            pool
        });
        db.0.0.join(&pool.me);
        user.0.join(&pool.me);
        pool
    }

    fn build(
        key: PoolKey,
        settings: PoolSettings,
        me: Weak<Pool>,
        (db, control): (Shared, Arc<DbControl>),
        user: Shared,
    ) -> Pool {
        let hot = super::hot::Hot::default();
        hot.set(&settings);
        Pool {
            names: (key.database.clone(), key.user.clone()),
            key: ArcSwap::from_pointee(key),
            slot: 0,
            settings: ArcSwap::from_pointee(settings),
            hot,
            me,
            db_limit: db.0,
            user_limit: user.0,
            control,
            topology: Default::default(),
            host_cursor: Default::default(),
            host_probe: Default::default(),
            generation: AtomicU64::new(0),
            old_servers: OldServers::new(0),
            events: ServerEvents::default(),
            server_tls: Default::default(),
            clients: ClientCount::default(),
            db_clients: db.1,
            state: Mutex::new(State {
                idle: VecDeque::new(),
                total: 0,
                opening: 0,
                waiters: VecDeque::new(),
                login_failure: None,
                unused_since: None,
            }),
            welcome: Mutex::new(None),
            learned: Mutex::new(None),
            lookups: Default::default(),
            interned: Interner::default(),
            infos: Interner::default(),
            answers: Default::default(),
            stats: crate::stats::PoolStats::new(),
        }
    }

    /// Its identity: database, user, endpoint and role (for the admin
    /// console, metrics and logs; not read per transaction).
    pub fn key(&self) -> Guard<Arc<PoolKey>> {
        self.key.load()
    }

    /// The database name clients use (its key's, which never changes).
    pub fn database(&self) -> &str {
        &self.names.0
    }

    /// The user it logs in to PostgreSQL as (never changes).
    pub fn user(&self) -> &str {
        &self.names.1
    }

    /// Point the pool at another endpoint (a reload changed its host).
    pub(super) fn set_key(&self, key: PoolKey) {
        self.key.store(Arc::new(key));
    }

    /// The pool's current settings (cheap: no shared write; for short
    /// synchronous use).
    pub fn settings(&self) -> Guard<Arc<PoolSettings>> {
        self.settings.load()
    }

    /// The pool's current settings, to keep across awaits.
    pub(crate) fn settings_full(&self) -> Arc<PoolSettings> {
        self.settings.load_full()
    }

    /// Replace the settings (RELOAD). Sizes, limits and timeouts apply from
    /// the next decision taken; servers are not touched here.
    pub(super) fn set_settings(&self, settings: PoolSettings) {
        self.hot.set(&settings);
        self.settings.store(Arc::new(settings));
    }

    /// pool_mode, query_timeout and idle_transaction_timeout (read per
    /// transaction: no settings load).
    pub(crate) fn link_settings(&self) -> super::hot::LinkSettings {
        self.hot.link()
    }

    /// Whether server_reset_query runs after every transaction
    /// (server_reset_query_always with a query to run).
    pub(crate) fn reset_always(&self) -> bool {
        self.hot.reset_always()
    }

    /// Return a server after use. It must be idle with nothing outstanding.
    /// It goes to the longest-waiting client, else to the idle list; it is
    /// closed instead when it must not be reused (past server_lifetime,
    /// marked for closing) or when another pool waits for room under a
    /// shared limit.
    #[inline]
    pub(crate) fn checkin(&self, server: Box<ServerConn>) {
        self.checkin_as(server, true)
    }

    /// Return a server that served no client (the login that learned the
    /// pool's parameters): `server_lifetime = 0` does not close it.
    pub(crate) fn checkin_unused(&self, server: Box<ServerConn>) {
        self.checkin_as(server, false)
    }

    /// `checkin`; `used`: it served a client. server_lifetime = 0 means,
    /// as in PgBouncer, that a server is used once, then closed.
    #[inline(always)]
    fn checkin_as(&self, server: Box<ServerConn>, used: bool) {
        debug_assert!(server.buf.is_empty());
        let mut server = server;
        let now = crate::runtime::clock::clock_ns();
        let lifetime = self.hot.lifetime_ns();
        if (used || lifetime != 0) && now.saturating_sub(server.created_ns) >= lifetime {
            debug!(server = server.id, "closing a server past server_lifetime");
            return self.discard_for(server, ServerEnd::Lifetime);
        }
        if server.close_needed || server.generation < self.generation.load(Ordering::Relaxed) {
            debug!(server = server.id, "closing a server marked for closing");
            return self.discard_for(server, ServerEnd::Admin);
        }
        server.last_used_ns = now;
        let evict = self.db_limit.has_starved() || self.user_limit.has_starved();
        if self.control.blocked() {
            if self.control.paused() {
                return self.discard_for(server, ServerEnd::Admin);
            }
            // Suspended: kept, handed to no one.
            self.state.lock().idle.push_back(server);
            return;
        }
        {
            let mut st = self.state.lock();
            while !st.waiters.is_empty()
                && let Some(w) = next_waiter(&mut st.waiters, crate::runtime::shard::current())
            {
                match w.tx.send(Grant::Server(server)) {
                    Ok(()) => return,
                    Err(Grant::Server(back)) => server = back,
                    Err(Grant::Slot) => unreachable!("sent a server"),
                }
            }
            if !evict {
                st.idle.push_back(server);
                return;
            }
        }
        debug!(
            server = server.id,
            "closing an idle server: another pool needs room"
        );
        self.discard_for(server, ServerEnd::Evicted);
    }

    /// Count `server` as one of this pool's (in its limits too) and make
    /// it idle: tests fake server connections over local sockets.
    #[cfg(test)]
    pub(crate) fn adopt(self: &Arc<Self>, mut server: Box<ServerConn>) {
        assert!(self.acquire_limits().is_ok(), "room under the limits");
        self.state.lock().total += 1;
        let me: Weak<dyn crate::server::SlotOwner> = Arc::downgrade(self) as _;
        server.owner = Some(me);
        server.generation = self.generation.load(Ordering::Relaxed);
        self.checkin_unused(server);
    }

    /// Close a server that cannot be reused, freeing its slot.
    #[allow(clippy::boxed_local)] // callers hold servers boxed; unboxing would copy
    pub fn discard(&self, server: Box<ServerConn>) {
        self.discard_for(server, ServerEnd::Error);
    }

    /// [`discard`](Self::discard), counted under `reason`.
    #[allow(clippy::boxed_local)] // as above
    pub fn discard_for(&self, server: Box<ServerConn>, reason: ServerEnd) {
        let generation = server.generation;
        server.terminate();
        self.events.closed(reason, 1);
        self.forget(generation);
    }

    /// Give up one slot: hand it to the longest-waiting client (who will
    /// open a connection with it) while the pool is within its size, or
    /// uncount it (here and in the limits).
    pub(super) fn free_slot(&self) {
        {
            let mut st = self.state.lock();
            if st.total <= self.settings().size
                && !self.control.blocked()
                && !st.waiters.is_empty()
                && st.may_open(Instant::now(), retry_cap(self.settings().login_retry))
            {
                while let Some(w) = st.waiters.pop_front() {
                    if w.tx.send(Grant::Slot).is_ok() {
                        return;
                    }
                }
            }
            st.total -= 1;
        }
        self.release_limits(1);
    }

    /// Uncount `n` closed connections from the shared limits, waking pools
    /// that wait for room. No lock may be held by the caller.
    pub(super) fn release_limits(&self, n: usize) {
        for _ in 0..n {
            for limit in [&self.db_limit, &self.user_limit] {
                if let Some(pool) = limit.release() {
                    pool.on_room();
                }
            }
        }
    }

    /// Count a new connection in both limits; on failure, the limit that is
    /// full (nothing stays counted).
    pub(super) fn acquire_limits(&self) -> Result<(), &Arc<Limit>> {
        if !self.db_limit.try_acquire() {
            return Err(&self.db_limit);
        }
        if !self.user_limit.try_acquire() {
            // Uncounted without waking anyone: callers may hold a pool lock.
            // A pool that found the database full during this short window
            // is retried by the maintenance pass (`Pool::maintain`).
            self.db_limit.undo();
            return Err(&self.user_limit);
        }
        Ok(())
    }

    /// Room was made under a limit this pool waits on: open a connection
    /// for the longest-waiting client if the pool is still short of one.
    /// True if a client was given a slot.
    pub(super) fn on_room(&self) -> bool {
        let mut st = self.state.lock();
        if st.waiters.is_empty()
            || st.total >= self.settings().size
            || self.control.blocked()
            || !st.may_open(Instant::now(), retry_cap(self.settings().login_retry))
        {
            return false;
        }
        match self.acquire_limits() {
            Ok(()) => {
                while let Some(w) = st.waiters.pop_front() {
                    if w.tx.send(Grant::Slot).is_ok() {
                        st.total += 1;
                        return true;
                    }
                }
                drop(st);
                self.release_limits(1);
            }
            Err(limit) => limit.starve(&self.me),
        }
        false
    }

    /// Close the idle server unused the longest, if any (to make room for
    /// another pool under a shared limit). True if one was closed.
    pub(super) fn close_one_idle(&self) -> bool {
        let server = {
            let mut st = self.state.lock();
            let Some(s) = st.idle.pop_front() else {
                return false;
            };
            st.total -= 1;
            s
        };
        debug!(
            server = server.id,
            "closing an idle server: another pool needs room"
        );
        server.terminate();
        self.events.closed(ServerEnd::Evicted, 1);
        self.release_limits(1);
        true
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
        self.remember_credentials(ServerCredentials::ScramKeys(keys));
    }

    /// Remember the md5 or plain secret auth_query found for this pool's
    /// user (a SCRAM verifier cannot log in: its client's keys do).
    pub(crate) fn remember_secret(&self, secret: crate::auth::Secret) {
        match secret {
            crate::auth::Secret::Md5(s) => {
                self.remember_credentials(ServerCredentials::Md5Secret(s))
            }
            crate::auth::Secret::Plain(p) => {
                self.remember_credentials(ServerCredentials::Password(p))
            }
            crate::auth::Secret::Scram(_) => {}
        }
    }

    /// Remember a secret learned at a client's login (SCRAM keys it proved,
    /// or an md5 secret auth_query found), for server logins that have no
    /// other secret; the latest one learned counts.
    pub(crate) fn remember_credentials(&self, credentials: ServerCredentials) {
        *self.learned.lock() = Some(credentials);
    }

    pub(super) fn credentials(&self) -> ServerCredentials {
        let s = self.settings();
        if let ServerCredentials::None | ServerCredentials::ScramVerifier = s.credentials
            && let Some(learned) = self.learned.lock().clone()
        {
            return learned;
        }
        s.credentials.clone()
    }

    /// A shared copy of `params`: an equal set already in use by another
    /// client of this pool, or this one, remembered for the next.
    pub fn intern(&self, params: Params) -> Arc<Params> {
        self.interned.intern(params)
    }

    /// The login answer for a client that asked for `wanted` (see
    /// `answers`); `build` makes it when no equal request was answered
    /// lately.
    pub fn login_answer(
        &self,
        welcome: &Welcome,
        wanted: Params,
        extra: &[String],
        build: impl FnOnce(&Welcome, &Params) -> super::LoginAnswer,
    ) -> Arc<super::LoginAnswer> {
        self.answers.get_or_build(welcome, wanted, extra, build)
    }

    /// A shared copy of a client's identity (for the admin console),
    /// built only when no client of this pool had the same.
    pub fn intern_info(
        &self,
        user: &str,
        database: &str,
        pool_user: &str,
        application_name: &str,
        tls: &str,
    ) -> Arc<crate::registry::ClientInfo> {
        self.infos.intern_with(
            |i| {
                i.user == user
                    && i.database == database
                    && i.pool_user == pool_user
                    && i.application_name == application_name
                    && i.tls == tls
            },
            || crate::registry::ClientInfo {
                user: user.to_string(),
                database: database.to_string(),
                pool_user: pool_user.to_string(),
                application_name: application_name.to_string(),
                tls: tls.to_string(),
                replication: crate::protocol::Replication::None,
            },
        )
    }

    /// Whether a client waits in the queue (one whose checkout is still
    /// there to take what it is given).
    pub(super) fn has_waiters(&self) -> bool {
        self.state.lock().waiters.iter().any(|w| !w.tx.is_closed())
    }

    /// Counts for the admin console and tests.
    pub fn counts(&self) -> PoolCounts {
        let st = self.state.lock();
        PoolCounts {
            idle: st.idle.len(),
            total: st.total,
            opening: st.opening,
            waiting: st.waiters.len(),
            max_wait: st.waiters.front().map(|w| w.since.elapsed()),
        }
    }
}

/// A snapshot of a pool's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounts {
    /// Idle servers.
    pub idle: usize,
    /// Servers open or being opened.
    pub total: usize,
    /// Servers being opened.
    pub opening: usize,
    /// Clients waiting for a server.
    pub waiting: usize,
    /// How long the longest-waiting client has waited.
    pub max_wait: Option<std::time::Duration>,
}

impl Pool {
    /// Close every idle server (at shutdown).
    pub fn close_idle(&self) {
        self.close_idle_for(ServerEnd::Shutdown);
    }

    /// Close every idle server, counted under `reason`.
    pub fn close_idle_for(&self, reason: ServerEnd) {
        let idle = {
            let mut st = self.state.lock();
            let idle = std::mem::take(&mut st.idle);
            st.total -= idle.len();
            idle
        };
        let n = idle.len();
        for s in idle {
            s.terminate();
        }
        self.events.closed(reason, n);
        self.release_limits(n);
    }
}

/// A server dropped without being given back (its session was aborted):
/// its slot is freed like a discarded one's.
impl crate::server::SlotOwner for Pool {
    fn lost(&self, generation: u64) {
        self.events.closed(ServerEnd::Aborted, 1);
        self.forget(generation);
    }
}

impl Pool {
    /// Uncount a closed server (its generation for WAIT_CLOSE).
    fn forget(&self, generation: u64) {
        self.forget_generation(generation);
        self.free_slot();
    }

    /// A server of `generation` is gone: one fewer of an older generation
    /// to wait for (WAIT_CLOSE), if it was one.
    pub(super) fn forget_generation(&self, generation: u64) {
        if generation < self.generation.load(Ordering::Relaxed) {
            let _ = self
                .old_servers
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    fn state_with(failure: Option<LoginFailure>) -> State {
        State {
            idle: VecDeque::new(),
            total: 0,
            opening: 0,
            waiters: VecDeque::new(),
            login_failure: failure,
            unused_since: None,
        }
    }

    fn failure(transient: bool, failures: u32, retry_at: Instant) -> LoginFailure {
        LoginFailure {
            at: Instant::now(),
            code: crate::protocol::sqlstate::CANNOT_CONNECT_NOW,
            message: "the database system is starting up".into(),
            transient,
            failures,
            retry_at,
        }
    }

    #[test]
    fn backoff_doubles_from_10ms_up_to_the_cap() {
        let cap = Duration::from_secs(15);
        let steps: Vec<u128> = (1..=13)
            .map(|n| retry_backoff(n, cap).as_millis())
            .collect();
        assert_eq!(
            steps,
            [
                10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 15000, 15000
            ]
        );
        assert_eq!(retry_backoff(0, cap), Duration::from_millis(10));
        assert_eq!(retry_backoff(u32::MAX, cap), cap);
        assert_eq!(retry_cap(Duration::ZERO), Duration::from_millis(250));
        assert_eq!(retry_backoff(9, retry_cap(Duration::ZERO)).as_millis(), 250);
    }

    #[test]
    fn one_retry_per_step_of_the_backoff() {
        let cap = Duration::from_secs(15);
        let now = Instant::now();
        // No failure, or a refused login (fail-fast is checked elsewhere):
        // connections may open.
        assert!(state_with(None).may_open(now, cap));
        assert!(state_with(Some(failure(false, 1, now + cap))).may_open(now, cap));
        // A transient failure: not before its retry time.
        let mut st = state_with(Some(failure(true, 3, now + Duration::from_millis(40))));
        assert!(!st.may_open(now, cap));
        // At it, one connection is the retry, and the next must wait for
        // the next step (80 ms after the 4th failure's backoff).
        let at = now + Duration::from_millis(40);
        assert!(st.may_open(at, cap));
        assert!(!st.may_open(at, cap));
        let f = st.login_failure.as_ref().unwrap();
        assert_eq!(f.retry_at, at + Duration::from_millis(80));
        assert!(st.may_open(at + Duration::from_millis(80), cap));
    }
}
