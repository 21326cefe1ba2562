//! Taking a server from a pool: an idle one (checked first if it idled
//! longer than server_check_delay), a new one while below the pool size and
//! the shared limits, or a place in the FIFO queue until one is handed over
//! (with the reserve pool opened to clients that waited
//! reserve_pool_timeout).
//!
//! Cancel safety: a checkout future may be dropped at any await (the client
//! left, shutdown). Guards make sure a slot or a server handed to a waiter
//! that is gone goes back to the pool instead of leaking.

use std::time::Duration;

use std::time::Instant;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::server_pool::{Grant, LoginFailure, Pool, Waiter};
use crate::server::{ServerConn, ServerError};

/// Why no server could be had.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// Waited query_wait_timeout without getting a server.
    #[error("query_wait_timeout: no server connection became available within {0:?}")]
    WaitTimeout(Duration),
    /// Waited query_timeout (shorter than query_wait_timeout) without
    /// getting a server: PgBouncer's janitor applies query_timeout to
    /// waiting clients too, with this word.
    #[error("query_timeout")]
    QueryTimeout(Duration),
    /// Opening a new server connection failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// A counted slot that is freed on drop unless used.
pub(super) struct SlotGuard<'a> {
    pool: &'a Pool,
    armed: bool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.state.lock().opening -= 1;
            self.pool.free_slot();
        }
    }
}

/// A place in the waiting queue; on drop, anything handed over meanwhile
/// goes back to the pool.
struct WaitGuard<'a> {
    pool: &'a Pool,
    rx: oneshot::Receiver<Grant>,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.rx.close();
        match self.rx.try_recv() {
            Ok(Grant::Server(s)) => self.pool.checkin_unused(s),
            Ok(Grant::Slot) => self.pool.free_slot(),
            Err(_) => {}
        }
    }
}

/// What `check` made of an idle server.
enum Checked {
    /// Ready to use.
    Ready(Box<ServerConn>),
    /// It idled past server_check_delay: run this query first.
    Query(Box<ServerConn>, String),
    /// Closed (it could not move to this thread).
    Gone,
}

pub(super) enum Next {
    Ready(Box<ServerConn>),
    Open,
    /// Queued: the receiver, and when the wait started.
    Wait(oneshot::Receiver<Grant>, Instant),
    /// Left the queue without a grant (the queue was cleared): start over.
    Retry,
}

impl Pool {
    /// Get a server for a client: idle (LIFO, or round robin), new (below
    /// size and limits), or after waiting in FIFO order for at most
    /// query_wait_timeout.
    ///
    /// query_wait_timeout is enforced by the janitor (`maintain`, once a
    /// second, as in PgBouncer), not by a timer per wait: a limit of N s
    /// fires after N to N + 1 s.
    pub(crate) async fn checkout(&self) -> Result<Box<ServerConn>, CheckoutError> {
        let mut first_wait = None;
        loop {
            // Err: a server refused a login lately (server_login_retry).
            let next = self.try_take(first_wait)?;
            let slot = match next {
                // Checked without a future of its own: the usual idle
                // server needs no query (callgrind: ~40 instructions per
                // transaction).
                Next::Ready(s) => match self.check(s) {
                    Checked::Ready(s) => return Ok(s),
                    Checked::Gone => continue,
                    Checked::Query(s, q) => match Box::pin(self.check_query(s, q)).await {
                        Some(s) => return Ok(s),
                        None => continue,
                    },
                },
                Next::Open => self.slot(),
                Next::Retry => continue,
                Next::Wait(rx, since) => {
                    first_wait = Some(since);
                    // Not boxed: with many clients on a small pool most
                    // checkouts wait (S5: a box per wait measured 0.92x).
                    match self.wait(rx, since).await? {
                        Next::Ready(s) => match self.checked(s).await {
                            Some(s) => return Ok(s),
                            None => continue,
                        },
                        Next::Open => {
                            let slot = self.slot();
                            let failure = self.state.lock().login_failure.clone();
                            if let Some(e) = self.recent_login_failure(&failure) {
                                // Dropping the slot hands it to the next
                                // waiter, who fails fast the same way.
                                drop(slot);
                                return Err(e);
                            }
                            slot
                        }
                        Next::Wait(..) | Next::Retry => continue,
                    }
                }
            };
            // Boxed: connecting is rare, and its state would otherwise be
            // carried by every checkout future.
            match Box::pin(self.open(slot)).await {
                Err(CheckoutError::Server(e)) if e.cannot_connect_now() || e.unreachable() => {
                    // PostgreSQL could not be reached, or is starting up or
                    // shutting down (a restart): the client is not failed
                    // for it but tries again when the pool's backoff says
                    // (`LoginFailure`), within query_wait_timeout (then it
                    // gets this error).
                    let since = *first_wait.get_or_insert_with(Instant::now);
                    if !Box::pin(self.retry_later(since)).await? {
                        return Err(CheckoutError::Server(e));
                    }
                }
                other => return other,
            }
        }
    }

    /// After a server that could not be reached or refused logins for now:
    /// wait until the pool's next retry (`LoginFailure::retry_at`, at least
    /// 1 ms) and say to try again, unless that would end past the wait's
    /// limit counted from `since` (query_wait_timeout: false, the caller
    /// fails with its error; a shorter query_timeout: that error, as
    /// PgBouncer's janitor gives it).
    #[cold]
    async fn retry_later(&self, since: Instant) -> Result<bool, CheckoutError> {
        let s = self.settings();
        let retry_at = self.state.lock().login_failure.as_ref().map(|f| f.retry_at);
        let pause = retry_at
            .map_or(super::server_pool::retry_cap(s.login_retry), |at| {
                at.saturating_duration_since(Instant::now())
            })
            .max(Duration::from_millis(1));
        let (limit, query_timeout) = super::server_pool::wait_limit(&s);
        drop(s);
        if !limit.is_zero() && since.elapsed() + pause > limit {
            if query_timeout {
                // Up to the limit itself, not a retry period earlier.
                let left = limit.saturating_sub(since.elapsed());
                crate::runtime::timer::sleep(left).await;
                return Err(CheckoutError::QueryTimeout(limit));
            }
            return Ok(false);
        }
        crate::runtime::timer::sleep(pause).await;
        Ok(true)
    }

    pub(super) fn slot(&self) -> SlotGuard<'_> {
        self.state.lock().opening += 1;
        SlotGuard {
            pool: self,
            armed: true,
        }
    }

    /// Wait in the queue (since `since`) for a grant, or until the janitor
    /// drops the wait for query_wait_timeout; after reserve_pool_timeout,
    /// try the reserve pool (the only timer, armed only with a reserve).
    /// Not boxed: without a reserve pool the wait is the receiver alone.
    pub(super) async fn wait(
        &self,
        rx: oneshot::Receiver<Grant>,
        since: Instant,
    ) -> Result<Next, CheckoutError> {
        let mut guard = WaitGuard { pool: self, rx };
        let reserve_at = {
            let s = self.settings();
            (s.reserve_size > 0).then(|| since + s.reserve_timeout)
        };
        let got = match reserve_at {
            Some(at) => match Box::pin(self.wait_reserve(&mut guard.rx, at)).await {
                Ok(next) => return Ok(next),
                Err(got) => got,
            },
            None => (&mut guard.rx).await,
        };
        match got {
            Ok(Grant::Server(s)) => Ok(Next::Ready(s)),
            Ok(Grant::Slot) => Ok(Next::Open),
            Err(_) => {
                // Dropped from the queue: by the janitor (timed out) or
                // because the queue was cleared (start over).
                let (limit, query_timeout) = super::server_pool::wait_limit(&self.settings());
                if !super::server_pool::wait_expired(since, limit, Instant::now()) {
                    Ok(Next::Retry)
                } else if query_timeout {
                    Err(CheckoutError::QueryTimeout(limit))
                } else {
                    Err(self
                        .unreachable_error()
                        .unwrap_or(CheckoutError::WaitTimeout(limit)))
                }
            }
        }
    }

    /// A wait that ended while the server could not be reached ends with
    /// the reason, as the connection that tried last got it.
    #[cold]
    fn unreachable_error(&self) -> Option<CheckoutError> {
        let st = self.state.lock();
        let f = st.login_failure.as_ref().filter(|f| f.transient)?;
        Some(CheckoutError::Server(ServerError::Rejected {
            severity: "FATAL".into(),
            code: f.code,
            message: f.message.clone(),
        }))
    }

    /// The wait with a reserve pool (boxed by the caller: its timer would
    /// size every checkout): until `at`, then the reserve pool if it can
    /// serve (Ok), else on waiting for a grant (Err: what came).
    async fn wait_reserve(
        &self,
        rx: &mut oneshot::Receiver<Grant>,
        at: Instant,
    ) -> Result<Next, Result<Grant, oneshot::error::RecvError>> {
        match crate::runtime::timer::timeout_at(at, &mut *rx).await {
            Ok(got) => Err(got),
            Err(_) => match self.try_reserve(rx) {
                Some(next) => Ok(next),
                None => Err(rx.await),
            },
        }
    }

    /// One short critical section: no await inside.
    fn try_take(&self, first_wait: Option<Instant>) -> Result<Next, CheckoutError> {
        // Rare: an Option, so that the usual path has no vector to drop.
        let mut broken: Option<Vec<Box<ServerConn>>> = None;
        let mut starved_on = None;
        let next = {
            let mut st = self.state.lock();
            loop {
                if self.control.blocked() {
                    // PAUSE / SUSPEND: wait without taking anything.
                    break Ok(enqueue(&mut st.waiters, first_wait));
                }
                let popped = if self.hot.round_robin() {
                    st.idle.pop_front()
                } else {
                    pop_lifo(&mut st.idle)
                };
                match popped {
                    Some(s) if s.is_broken() => {
                        st.total -= 1;
                        broken.get_or_insert_with(Vec::new).push(s);
                    }
                    Some(s) => break Ok(Next::Ready(s)),
                    None if st.total < self.settings().size => {
                        if let Some(e) = self.recent_login_failure(&st.login_failure) {
                            break Err(e);
                        }
                        // A server that could not be reached: wait in the
                        // queue unless it is time to try again.
                        let cap = super::server_pool::retry_cap(self.settings().login_retry);
                        if !st.may_open(Instant::now(), cap) {
                            break Ok(enqueue(&mut st.waiters, first_wait));
                        }
                        match self.acquire_limits() {
                            Ok(()) => {
                                st.total += 1;
                                break Ok(Next::Open);
                            }
                            Err(limit) => {
                                limit.starve(&self.me);
                                starved_on = Some(limit.clone());
                                break Ok(enqueue(&mut st.waiters, first_wait));
                            }
                        }
                    }
                    None => break Ok(enqueue(&mut st.waiters, first_wait)),
                }
            }
        };
        if let Some(broken) = broken {
            self.drop_broken(broken);
        }
        if let Some(limit) = starved_on {
            self.make_room(&limit);
        }
        next
    }

    /// Close idle servers found closed at checkout.
    #[cold]
    #[inline(never)]
    #[allow(clippy::vec_box)] // the idle list holds servers boxed; unboxing would copy
    fn drop_broken(&self, broken: Vec<Box<ServerConn>>) {
        let n = broken.len();
        for s in broken {
            debug!(
                server = s.id,
                "dropping a server connection closed while idle"
            );
            s.terminate();
        }
        self.events.closed(crate::server::ServerEnd::Broken, n);
        self.release_limits(n);
    }

    /// A shared limit starved this pool: make room by closing an idle
    /// server of another pool.
    #[cold]
    #[inline(never)]
    pub(super) fn make_room(&self, limit: &std::sync::Arc<super::limits::Limit>) {
        for other in limit.others(&self.me) {
            if other.close_one_idle() {
                break;
            }
        }
    }

    /// After reserve_pool_timeout: a server handed over meanwhile, an idle
    /// one, or a slot of the reserve pool. Leaves the queue when it
    /// returns something.
    fn try_reserve(&self, rx: &mut oneshot::Receiver<Grant>) -> Option<Next> {
        let mut st = self.state.lock();
        // Grants are sent under this lock: nothing can arrive after this.
        match rx.try_recv() {
            Ok(Grant::Server(s)) => return Some(Next::Ready(s)),
            Ok(Grant::Slot) => return Some(Next::Open),
            Err(_) => {}
        }
        if let Some(s) = st.idle.pop_back() {
            rx.close();
            return Some(Next::Ready(s));
        }
        if self.control.blocked() {
            return None;
        }
        let s = self.settings();
        let cap = s.size + s.reserve_size;
        if st.total >= cap
            || self.recent_login_failure(&st.login_failure).is_some()
            || !st.may_open(Instant::now(), super::server_pool::retry_cap(s.login_retry))
        {
            return None;
        }
        if self.acquire_limits().is_err() {
            return None;
        }
        st.total += 1;
        rx.close();
        // PgBouncer's warning, which its users (and its tests) look for.
        warn!(pool = %self.key(), "taking connection from reserve_pool");
        Some(Next::Open)
    }

    #[inline]
    fn recent_login_failure(&self, f: &Option<LoginFailure>) -> Option<CheckoutError> {
        self.login_failure_error(f.as_ref()?)
    }

    /// The error of a recent server login failure, while it counts.
    #[cold]
    #[inline(never)]
    fn login_failure_error(&self, f: &LoginFailure) -> Option<CheckoutError> {
        // Reported as the failure itself, marked as not retried. A server
        // that could not be reached fails no client here (they wait).
        (!f.transient && f.at.elapsed() < self.settings().login_retry).then(|| {
            CheckoutError::Server(ServerError::Rejected {
                severity: "FATAL".into(),
                code: f.code,
                message: format!(
                    "{} (server login failed {:.1}s ago; retried after server_login_retry)",
                    f.message,
                    f.at.elapsed().as_secs_f64()
                ),
            })
        })
    }

    /// Move the server to this shard's reactor (`crate::runtime::shard`),
    /// and say whether it needs server_check_query (idle longer than
    /// server_check_delay) before use.
    fn check(&self, mut server: Box<ServerConn>) -> Checked {
        match server.rehome() {
            Ok(false) => {}
            Ok(true) => self.events.moved(),
            Err(e) => {
                debug!(
                    server = server.id,
                    "cannot move a server to this thread ({e}); closing it"
                );
                self.discard(server);
                return Checked::Gone;
            }
        }
        if !self
            .hot
            .needs_check(server.idle_ns(crate::runtime::clock::clock_ns()))
        {
            return Checked::Ready(server);
        }
        match &self.settings().check_query {
            Some(q) => Checked::Query(server, q.clone()),
            None => Checked::Ready(server),
        }
    }

    /// Run server_check_query on a server that idled past
    /// server_check_delay; None: it failed and was closed.
    #[cold]
    #[inline(never)]
    async fn check_query(
        &self,
        mut server: Box<ServerConn>,
        query: String,
    ) -> Option<Box<ServerConn>> {
        match server.run_quiet(&query).await {
            Ok(b'I') => Some(server),
            other => {
                debug!(server = server.id, result = ?other.err(), "server failed its check; closing it");
                self.discard_for(server, crate::server::ServerEnd::CheckFailed);
                None
            }
        }
    }

    /// `check`, then its query when it needs one.
    async fn checked(&self, server: Box<ServerConn>) -> Option<Box<ServerConn>> {
        match self.check(server) {
            Checked::Ready(s) => Some(s),
            Checked::Gone => None,
            Checked::Query(s, q) => Box::pin(self.check_query(s, q)).await,
        }
    }

    pub(super) async fn open(&self, slot: SlotGuard<'_>) -> Result<Box<ServerConn>, CheckoutError> {
        self.open_as(slot, self.settings_full(), false).await
    }

    /// Open a server with `slot` and settings `s`. A `dedicated` one (a
    /// replication connection's, see `dedicated`) runs no connect_query,
    /// and neither its login answers nor its failure stand for the pool's.
    pub(super) async fn open_as(
        &self,
        mut slot: SlotGuard<'_>,
        s: std::sync::Arc<super::PoolSettings>,
        dedicated: bool,
    ) -> Result<Box<ServerConn>, CheckoutError> {
        let creds = self.credentials();
        let started = Instant::now();
        let result = async {
            let (mut conn, reported) = self.connect_hosts(&s, &creds).await?;
            if let Some(q) = s.connect_query.as_ref().filter(|_| !dedicated) {
                conn.run_quiet(q).await?;
            }
            Ok::<_, ServerError>((conn, reported))
        }
        .await;
        let mut st = self.state.lock();
        st.opening -= 1;
        slot.armed = false;
        match result {
            Ok((mut conn, reported)) => {
                conn.generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
                let me: std::sync::Weak<dyn crate::server::SlotOwner> = self.me.clone();
                conn.owner = Some(me);
                let recovered = !dedicated && st.login_failure.take().is_some_and(|f| f.transient);
                drop(st);
                if recovered {
                    // The server is back: every waiting client gets a slot
                    // now (up to the pool's size), not at its next retry.
                    info!(pool = %self.key(), "server login succeeded again: serving the waiting clients");
                    while self.on_room() {}
                }
                self.events.opened();
                if conn.tls.is_some() {
                    *self.server_tls.lock() = conn.tls.clone();
                }
                if !dedicated {
                    self.set_welcome(reported);
                }
                let from = conn.stream.local_tcp_addr();
                let from = from.map_or_else(|| "unix socket".into(), |a| a.to_string());
                info!(
                    server = conn.id,
                    "{} new connection to server (from {from})",
                    super::hosts::at_host(self.database(), self.user(), &conn.addr)
                );
                Ok(conn)
            }
            Err(e) => {
                if dedicated {
                    drop(st);
                    // PgBouncer's lines for a replication login refused
                    // (the pool's other logins are not failed for it: a
                    // missing REPLICATION right or hba line is the
                    // client's alone).
                    warn!(pool = %self.key(), "server login failed: {e}");
                    warn!(pool = %self.key(), "server closing because: login failed (age=0s)");
                    self.free_slot();
                    return Err(e.into());
                }
                let transient = e.unreachable() || e.cannot_connect_now();
                if transient || !s.login_retry.is_zero() {
                    let (code, message) = e.client_error();
                    let now = Instant::now();
                    // Connections that were trying together when the
                    // server went away count as one failure of the backoff.
                    let failures = match &st.login_failure {
                        Some(f) if f.transient && transient => {
                            f.failures + u32::from(started >= f.at)
                        }
                        _ => 1,
                    };
                    let cap = super::server_pool::retry_cap(s.login_retry);
                    st.login_failure = Some(LoginFailure {
                        at: now,
                        code,
                        message,
                        transient,
                        failures,
                        retry_at: now + super::server_pool::retry_backoff(failures, cap),
                    });
                }
                drop(st);
                // PgBouncer's words: "server login failed: FATAL <message>".
                match &e {
                    crate::server::ServerError::Rejected {
                        severity,
                        code,
                        message,
                    } => {
                        warn!(pool = %self.key(), sqlstate = %code, "server login failed: {severity} {message}");
                        // And the server connection's own line, as PgBouncer
                        // writes one for every connection it closes.
                        warn!(pool = %self.key(), "server closing because: {message} (age=0s)");
                    }
                    other if other.unreachable() => {
                        warn!(pool = %self.key(), "server login failed: {other}");
                        // PgBouncer's lines for a server it could not
                        // reach, or whose login outlasted server_connect_timeout.
                        let why = match other {
                            crate::server::ServerError::Timeout { .. } => "connect timeout",
                            _ => "connect failed",
                        };
                        warn!(pool = %self.key(), "server closing because: {why} (age=0s)");
                    }
                    other => warn!(pool = %self.key(), "server login failed: {other}"),
                }
                self.free_slot();
                Err(e.into())
            }
        }
    }

    /// Make sure the pool knows its servers' ParameterStatus, opening a
    /// connection if none logged in yet.
    pub(crate) async fn ensure_welcome(
        &self,
    ) -> Result<std::sync::Arc<Vec<(String, String)>>, CheckoutError> {
        if let Some(w) = self.welcome() {
            return Ok(w);
        }
        let server = Box::pin(self.checkout()).await?;
        self.checkin_unused(server);
        self.welcome()
            .ok_or(CheckoutError::Server(ServerError::Closed))
    }
}

/// The most recently used idle server already registered with this
/// shard's reactor (no move; see `crate::runtime::shard`), else the most
/// recently used one (which then moves here).
///
/// Every idle server is looked through, not only the last few: with 20
/// clients over two shards a lookback of 4 found none of its own often
/// enough that servers moved 0.11 times per transaction (epoll_ctl 0.23 per
/// transaction, `benches/syscalls.sh`); looking through all of them, 0.001.
/// The list is at most the pool's size, and the scan is long only when a
/// move follows, which costs two system calls.
pub(super) fn pop_lifo(
    idle: &mut std::collections::VecDeque<Box<ServerConn>>,
) -> Option<Box<ServerConn>> {
    let here = crate::runtime::shard::current();
    if idle.back().is_some_and(|s| s.home != here)
        && let Some(i) = idle.iter().rev().position(|s| s.home == here)
    {
        return idle.remove(idle.len() - 1 - i);
    }
    idle.pop_back()
}

/// Queue a waiter; `first_wait` is when this checkout first started
/// waiting (the janitor's query_wait_timeout counts from then).
pub(super) fn enqueue(
    waiters: &mut std::collections::VecDeque<Waiter>,
    first_wait: Option<Instant>,
) -> Next {
    let (tx, rx) = oneshot::channel();
    let since = first_wait.unwrap_or_else(Instant::now);
    waiters.push_back(Waiter {
        tx,
        since,
        queued_ns: crate::runtime::clock::clock_ns(),
        shard: crate::runtime::shard::current(),
    });
    Next::Wait(rx, since)
}
