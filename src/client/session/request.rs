//! One request of a session (a transaction in transaction mode, the
//! whole session in session mode): read its first message, take a server,
//! bring its parameters in line, relay, give the server back. The rare
//! paths are out-of-line functions, so the request's poll (the hot path)
//! stays small.

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use super::{Client, Step};
use crate::client::SessionEnd;
use crate::client::handoff::{
    checkout_error, finish, in_sync, link_failed, poll_mark, release, release_wait, server_failed,
    sync_params, waited,
};
use crate::client::relay::{Outcome, Owed, Rules, relay};
use crate::client::timeouts::{self, Clock, Limits};
use crate::client::wait_notice::{WaitNotice, Waited};
use crate::config::PoolMode;
use crate::pool::Pool;
use crate::protocol::backend::{Severity, error_response, ready_for_query};
use crate::protocol::frontend::is_frontend_tag;
use crate::protocol::{Header, ProtocolError, sqlstate};
use crate::routing::split::SplitRoute;
use crate::runtime::clock::clock_ns;
use std::future::poll_fn;
use std::sync::Arc;

/// Start linking once this many bytes of a large first message are buffered.
const EAGER_LINK_BYTES: usize = 8192;

impl Client {
    /// Serve one request: read the first message, link a server, relay,
    /// give the server back.
    pub(super) async fn request(&mut self) -> Result<Step, SessionEnd> {
        let cfg = self.held.cfg.clone();
        if !self.read_request(cfg.general.max_packet_size).await? {
            return Ok(Step::End(SessionEnd::Goodbye { terminate: true }));
        }
        if crate::client::notices::starts_with_listen(&self.buf)
            && self.held.route.home().settings().mode != PoolMode::Session
        {
            crate::client::notices::send_listen_notice(&mut self.stream).await?;
        }
        let mut pool = match self.held.route.split() {
            None => self.held.route.pick().clone(),
            Some(parts) => split_choice(parts, &self.buf),
        };
        // The request's clock starts here; a checkout that had to wait (it
        // yielded) counts that as wait_time and starts it again.
        let (asked, mark) = (clock_ns(), poll_mark());
        // A wait longer than query_wait_notify is told to the client while
        // it goes on (see `wait_notice`).
        let mut server = {
            let mut notice = WaitNotice::new(cfg.general.query_wait_notify);
            let mut checkout = std::pin::pin!(pool.checkout());
            let (entry, epoch) = (
                &*self.held.registration.entry,
                &self.held.registration.owner().epoch,
            );
            let stream = &mut self.stream;
            // A shutdown (WAIT_FOR_SERVERS) or KILL ends a wait, as
            // PgBouncer closes its waiting clients then.
            let closed = || closed_while_waiting(entry, epoch);
            let got =
                poll_fn(|cx| notice.poll(checkout.as_mut(), cx, (entry, epoch), stream, closed))
                    .await;
            notice.finish(entry);
            match got {
                Waited::Done(got) => got.map_err(checkout_error)?,
                Waited::Closed(end) => return Err(end),
                Waited::Io(e) => return Err(e.into()),
            }
        };
        if let Some((_, _, state)) = self.held.route.split() {
            if state.need_lsn().is_some() {
                (pool, server) = Box::pin(self.settle_split(pool, server)).await?;
            } else {
                state.settled(false);
            }
        }
        let yielded = poll_mark() != mark;
        let (started, wait_us) = waited(asked, mark);
        if yielded && let Ok(0) = self.stream.try_read_buf(&mut self.buf) {
            // The client left while waiting for a server (one that got
            // an idle server at once did not wait: the relay reads on).
            pool.stats.count_assignment(wait_us);
            pool.checkin_unused(server);
            return Ok(Step::End(SessionEnd::Goodbye { terminate: false }));
        }
        if !in_sync(&server, &self.held.params)
            && let Err(e) = Box::pin(sync_params(&mut server, &mut self.held.params)).await
        {
            pool.stats.count_assignment(wait_us);
            return Err(server_failed(&pool, server, e));
        }
        let (mut rules, session_mode) =
            rules(&cfg, &pool, &self.held.registration, (started, wait_us));
        // Read/write splitting: a standby's link is bounded to its unit.
        rules.bound = self.held.route.bound();
        let target = &self.held.registration.entry;
        target.link(
            (server.addr.clone(), server.key, server.id),
            server.statements.len(),
            server.tls.is_some(),
        );
        if rules.bound > 0 {
            // Kept until the standby answered: a 25006 sends it again.
            if let Some((_, _, state)) = self.held.route.split() {
                state.keep_unit(&self.buf[..rules.bound as usize]);
            }
        }
        let outcome = relay(
            &mut self.stream,
            &mut self.buf,
            &mut server,
            &mut self.held.params,
            &mut self.held.prepared,
            &rules,
        )
        .await;
        if let Some(p) = &self.held.prepared {
            target.set_client_statements(p.names.len());
        }
        // Boxed: cancels in flight at the end of a link are rare, and the
        // wait (with its timer) would otherwise sit in the hot path's code.
        if target.unlink() && !Box::pin(target.wait_cancels(cfg.general.cancel_wait_timeout)).await
        {
            // A cancel may still reach this server: nobody else may get it.
            return cancel_still_in_flight(&pool, server, target.id, outcome);
        }
        match outcome {
            Outcome::Released => {
                if let Some((_, _, state)) = self.held.route.split() {
                    if state.wants_commit_lsn() {
                        return Box::pin(self.release_write(pool, server)).await;
                    }
                    state.ended(None);
                }
                if let Some(reset) = release(&pool, server, false) {
                    reset.await;
                }
                Ok(Step::Idle)
            }
            Outcome::ReadOnlyRefused => {
                release_wait(&pool, server, false).await;
                self.retry_on_primary();
                Ok(Step::Idle)
            }
            Outcome::ClientGone { clean } => {
                finish(&pool, server, clean, session_mode).await;
                Ok(Step::End(SessionEnd::Goodbye { terminate: false }))
            }
            Outcome::ClientError { error, clean } => {
                finish(&pool, server, clean, session_mode).await;
                Err(error.into())
            }
            Outcome::ServerGone {
                error,
                owed: Some(owed),
            } => Box::pin(self.server_lost(pool, server, error, owed)).await,
            other => Err(link_broken(
                &pool,
                server,
                target.id,
                other,
                cfg.general.cancel_wait_timeout,
            )),
        }
    }

    /// Read/write splitting, once the chosen pool gave a server: with
    /// read_your_writes = wal, a standby's server must have replayed the
    /// client's last write (known from the host's last check, else asked
    /// with one query on that server), else it goes back and the
    /// transaction takes a server of the primary's pool instead. Counts the
    /// transaction where it went.
    #[cold]
    async fn settle_split(
        &mut self,
        pool: Arc<Pool>,
        mut server: Box<crate::server::ServerConn>,
    ) -> Result<(Arc<Pool>, Box<crate::server::ServerConn>), SessionEnd> {
        let need = self.held.route.split().and_then(|(_, _, s)| s.need_lsn());
        let topology = self.held.context().pools.topology();
        // Some(server) when it may serve the transaction.
        let kept = match need {
            None => Some(server),
            Some(lsn) if SplitRoute::replayed(topology, &server.addr, lsn) => Some(server),
            // The last check is older than the write: ask the standby.
            Some(lsn) => match server.wal_replay_lsn().await {
                Ok(seen) => {
                    topology.host(&server.addr).saw_replayed(seen);
                    if seen >= lsn {
                        Some(server)
                    } else {
                        pool.checkin_unused(server);
                        None
                    }
                }
                Err(e) => {
                    debug!(server = server.id, error = %e, "replay position not read: server closed");
                    pool.discard(server);
                    None
                }
            },
        };
        let stale = kept.is_none();
        let (pool, server) = match kept {
            Some(server) => (pool, server),
            None => {
                let primary = self.held.route.pick().clone();
                let server = primary.checkout().await.map_err(checkout_error)?;
                (primary, server)
            }
        };
        if let Some((_, _, state)) = self.held.route.split() {
            state.settled(stale);
        }
        Ok((pool, server))
    }

    /// A write ended with read_your_writes = wal: ask its server (the
    /// primary's, still held) for the WAL position after it, then give the
    /// server back. One more round trip per write; a failure leaves the
    /// position to the next health check.
    #[cold]
    async fn release_write(
        &mut self,
        pool: Arc<Pool>,
        mut server: Box<crate::server::ServerConn>,
    ) -> Result<Step, SessionEnd> {
        let lsn = match server.wal_insert_lsn().await {
            Ok(lsn) => {
                release_wait(&pool, server, false).await;
                Some(lsn)
            }
            Err(e) => {
                debug!(server = server.id, error = %e, "WAL position not read: server closed");
                pool.discard(server);
                None
            }
        };
        if let Some((_, _, state)) = self.held.route.split() {
            state.ended(lsn);
        }
        Ok(Step::Idle)
    }

    /// The server was lost in a transaction the client can be told about
    /// and go on from (see `Owed`): each request still unanswered fails
    /// with 08006 and the session waits for the client's next one. A
    /// driver's connection stays usable (the pool of a failover's clients
    /// stays whole); PgBouncer closes the client instead.
    #[cold]
    async fn server_lost(
        &mut self,
        pool: Arc<Pool>,
        server: Box<crate::server::ServerConn>,
        error: std::io::Error,
        owed: Owed,
    ) -> Result<Step, SessionEnd> {
        warn!(
            client = self.held.registration.entry.id,
            server = server.id,
            "server connection lost during a transaction ({error}): \
             the client's request fails with 08006, its connection stays"
        );
        pool.discard(server);
        if let Some((_, _, state)) = self.held.route.split() {
            state.ended(None);
        }
        let mut out = bytes::BytesMut::new();
        for _ in 0..owed.answers {
            lost_error(&mut out);
            ready_for_query(&mut out, b'I');
        }
        if owed.open_group {
            lost_error(&mut out);
        }
        self.stream.write_all(&out).await?;
        if owed.open_group {
            let max_len = self.held.cfg.general.max_packet_size;
            if !self.skip_to_sync(max_len).await? {
                return Ok(Step::End(SessionEnd::Goodbye { terminate: true }));
            }
            out.clear();
            ready_for_query(&mut out, b'I');
            self.stream.write_all(&out).await?;
        }
        Ok(Step::Idle)
    }

    /// Skip the client's messages up to and including its next Sync (what
    /// PostgreSQL does after an error in an extended-protocol group).
    /// False when the client said goodbye first (Terminate or EOF).
    async fn skip_to_sync(&mut self, max_len: u32) -> Result<bool, SessionEnd> {
        // Bytes of a message larger than what was buffered, still to drop.
        let mut rest = 0usize;
        loop {
            let n = rest.min(self.buf.len());
            self.buf.advance(n);
            rest -= n;
            while rest == 0
                && let Some(h) = Header::parse(&self.buf)
            {
                if !is_frontend_tag(h.tag) {
                    return Err(ProtocolError::UnknownTag(h.tag).into());
                }
                h.check(max_len)?;
                if h.tag == b'X' {
                    return Ok(false);
                }
                let total = h.total();
                if self.buf.len() < total {
                    rest = total - self.buf.len();
                    self.buf.clear();
                    break;
                }
                self.buf.advance(total);
                if h.tag == b'S' {
                    return Ok(true);
                }
            }
            self.buf.reserve(crate::client::relay::READ_CHUNK);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
        }
    }

    /// A standby refused the unit it was sent as a write (25006) and
    /// nothing reached the client: the unit goes back in front of what the
    /// client sent since, for the next request to send it to the primary.
    #[cold]
    #[inline(never)]
    fn retry_on_primary(&mut self) {
        let Some((_, _, state)) = self.held.route.split() else {
            return;
        };
        let unit = state.retry();
        let mut again = bytes::BytesMut::with_capacity(unit.len() + self.buf.len());
        again.extend_from_slice(unit);
        again.extend_from_slice(&self.buf);
        self.buf = again;
    }

    /// Read until the first message of a transaction (or a large enough
    /// part of it) is buffered, checking each header as it arrives. False
    /// when the client said goodbye (Terminate or EOF).
    async fn read_request(&mut self, max_len: u32) -> Result<bool, SessionEnd> {
        loop {
            if let Some(h) = Header::parse(&self.buf) {
                if !is_frontend_tag(h.tag) {
                    return Err(ProtocolError::UnknownTag(h.tag).into());
                }
                h.check(max_len)?;
                if h.tag == b'X' {
                    return Ok(false);
                }
                if self.buf.len() >= h.total() || self.buf.len() >= EAGER_LINK_BYTES {
                    return Ok(true);
                }
            }
            // One allocation of the size the relay reads with: no growth
            // (and copy) when the relay starts.
            self.buf.reserve(crate::client::relay::READ_CHUNK);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
        }
    }
}

/// How `pool`'s link is run for this session (`started`, `wait_us`: when
/// its request started and how long it waited for the server), and
/// whether the pool is in session mode. The pool's per-transaction
/// settings are copied out: no settings guard is kept across the relay.
fn rules<'a>(
    cfg: &'a crate::config::Config,
    pool: &'a crate::pool::Pool,
    registration: &'a crate::context::Registration,
    (started, wait_us): (u64, u64),
) -> (Rules<'a>, bool) {
    let link = pool.link_settings();
    let mode = link.mode;
    let session_mode = mode == PoolMode::Session;
    let rules = Rules {
        extra_tracked: &cfg.general.track_extra_parameters,
        release_when_idle: !session_mode,
        statement_mode: mode == PoolMode::Statement,
        max_len: cfg.general.max_packet_size,
        limits: Limits::from_secs(
            link.query_timeout_s,
            link.idle_transaction_timeout_s,
            link.transaction_timeout_s,
        ),
        clock: Clock {
            target: &registration.entry,
            epoch: &registration.owner().epoch,
        },
        stats: &pool.stats,
        started,
        wait_us,
        max_prepared: if session_mode { 0 } else { link.max_prepared },
        // Whether it is on is decided where the close request is made
        // (RECONNECT, reload): it may be SET while this link runs.
        fast_close: session_mode,
        bound: 0,
    };
    (rules, session_mode)
}

/// Read/write splitting: where the transaction starting with `buf` goes
/// (the primary's pool or the standby pool) and why. Out of line: only
/// sessions that split pay for it (not cold: a splitting session takes
/// it every transaction).
#[inline(never)]
fn split_choice(
    (primary, standby, state): (&Arc<Pool>, &Arc<Pool>, &mut SplitRoute),
    buf: &[u8],
) -> Arc<Pool> {
    let pool = if state.choose(buf).goes_to_standby() {
        standby
    } else {
        primary
    };
    pool.clone()
}

/// The error that ends a session told to close while it waits for a
/// server (the sweep and close requests wake it through its entry).
#[cold]
fn closed_while_waiting(
    entry: &crate::registry::SessionEntry,
    epoch: &std::sync::atomic::AtomicU64,
) -> Option<SessionEnd> {
    match entry.closing_reason(epoch)? {
        crate::registry::CloseRequest::Shutdown | crate::registry::CloseRequest::Draining => Some(
            SessionEnd::fatal(sqlstate::ADMIN_SHUTDOWN, crate::client::SHUTTING_DOWN),
        ),
        crate::registry::CloseRequest::Killed => Some(SessionEnd::fatal(
            sqlstate::ADMIN_SHUTDOWN,
            crate::client::KILLED,
        )),
        crate::registry::CloseRequest::IdleTimeout
        | crate::registry::CloseRequest::ConfigChanged => None,
    }
}

/// The error each request still unanswered gets when its server was lost.
fn lost_error(out: &mut bytes::BytesMut) {
    error_response(
        out,
        Severity::Error,
        sqlstate::CONNECTION_FAILURE,
        "server connection closed unexpectedly",
    );
}

/// A cancel request for the server is still in flight after
/// cancel_wait_timeout: close the server (nobody else may get it).
#[cold]
#[inline(never)]
fn cancel_still_in_flight(
    pool: &crate::pool::Pool,
    server: Box<crate::server::ServerConn>,
    client: u64,
    outcome: Outcome,
) -> Result<Step, SessionEnd> {
    warn!(
        client,
        server = server.id,
        "cancel request still in flight after cancel_wait_timeout: closing the server"
    );
    pool.discard(server);
    match outcome {
        Outcome::Released => Ok(Step::Idle),
        Outcome::ClientGone { .. } => Ok(Step::End(SessionEnd::Goodbye { terminate: false })),
        other => Err(link_failed(client, other)),
    }
}

/// A link that left its server unusable (lost, timed out, in a statement
/// mode transaction block): close the server (after query_timeout,
/// cancel its query too: closing the connection does not stop it) and
/// give the error that ends the session.
#[cold]
#[inline(never)]
fn link_broken(
    pool: &crate::pool::Pool,
    server: Box<crate::server::ServerConn>,
    client: u64,
    outcome: Outcome,
    cancel_wait: std::time::Duration,
) -> SessionEnd {
    if let Outcome::Expired {
        what: timeouts::Expired::Query,
        ..
    } = outcome
    {
        let (addr, key) = (server.addr.clone(), server.key);
        let tls = pool.settings().target.tls.clone();
        tokio::spawn(crate::cancel::cancel_server(addr, key, tls, cancel_wait));
    }
    let id = server.id;
    pool.discard(server);
    debug!(server = id, "server connection discarded");
    link_failed(client, outcome)
}
