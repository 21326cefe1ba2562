//! The session loop: after login, wait (holding no buffer) for the first
//! message of a transaction, take a server from the pool, bring its tracked
//! parameters in line with the client's, relay until the transaction ends,
//! and give the server back.
//!
//! Memory: an idle client costs its task, its socket and the small future of
//! [`idle_wait`]. Everything a transaction needs (buffer, relay state) lives in
//! a boxed future allocated per transaction, so ten thousand idle clients cost
//! little.

use std::sync::Arc;

use bytes::BytesMut;
use std::task::Poll;

use tokio::io::AsyncReadExt;
use tracing::{debug, info};

use super::ClientError;
use super::login::{LoggedIn, login};
use super::relay::{Outcome, relay};
use crate::cancel::CancelTarget;
use crate::config::{Config, PoolMode};
use crate::context::Context;
use crate::net::Stream;
use crate::pool::{CheckoutError, Pool};
use crate::protocol::frontend::is_frontend_tag;
use crate::protocol::{Header, ProtocolError, sqlstate};
use crate::server::params::Params;
use crate::server::{ServerConn, ServerError};

/// Start linking once this many bytes of a large first message are buffered.
const EAGER_LINK_BYTES: usize = 8192;

/// What a logged-in client carries between transactions.
struct Session<'a> {
    stream: &'a mut Stream,
    cfg: Arc<Config>,
    pool: Arc<Pool>,
    /// Tracked parameters the client wants; shared copy-on-write with other
    /// clients of the pool that want the same.
    params: Arc<Params>,
    cancel: &'a CancelTarget,
    /// Bytes read but not yet forwarded (usually empty and unallocated).
    buf: BytesMut,
}

/// How one request (a transaction, or the whole session in session mode) ended.
enum Step {
    /// Back to idle.
    Idle,
    /// The session is over.
    End,
}

/// Run a whole client session.
pub(super) async fn run(
    stream: &mut Stream,
    peer: super::Peer,
    id: u64,
    ctx: &Context,
) -> Result<(), ClientError> {
    let registration = ctx.cancel.register(id, peer);
    let mut buf = BytesMut::new();
    let cfg = ctx.config();
    // Boxed, timeout included: the idle session future must not carry the
    // login's state.
    let login_timeout = cfg.general.client_login_timeout;
    let logged_in = Box::pin(async {
        let login = login(stream, &mut buf, ctx, &registration.target);
        if login_timeout.is_zero() {
            return login.await;
        }
        tokio::time::timeout(login_timeout, login)
            .await
            .map_err(|_| ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, "client_login_timeout"))?
    })
    .await?;
    let Some(LoggedIn { pool, params }) = logged_in else {
        return Ok(());
    };
    let mut session = Session {
        stream,
        cfg,
        pool,
        params,
        cancel: &registration.target,
        buf,
    };
    loop {
        if session.buf.is_empty() {
            session.buf = BytesMut::new();
            // Shutdown may have begun while this client was logging in,
            // after close_all() went over the registry.
            if ctx.shutting_down() || idle_wait(session.stream, session.cancel).await? {
                return Err(ClientError::fatal(
                    sqlstate::ADMIN_SHUTDOWN,
                    "pgsluice is shutting down",
                ));
            }
        }
        // Boxed: allocated per transaction (see the module comment).
        match Box::pin(session.request()).await? {
            Step::Idle => {}
            Step::End => return Ok(()),
        }
    }
}

/// Wait until the client sends something; true if the session was told to
/// close first (shutdown). A `poll_fn` over the socket's readiness and the
/// session's close flag: nothing but two references is held while idle.
async fn idle_wait(stream: &Stream, target: &CancelTarget) -> Result<bool, ClientError> {
    std::future::poll_fn(|cx| {
        if target.poll_closing(cx) {
            return Poll::Ready(Ok(true));
        }
        stream
            .poll_read_ready(cx)
            .map(|r| r.map(|()| false).map_err(Into::into))
    })
    .await
}

impl Session<'_> {
    /// Serve one request: read the first message, link a server, relay,
    /// give the server back.
    async fn request(&mut self) -> Result<Step, ClientError> {
        let cfg = self.cfg.clone();
        let g = &cfg.general;
        if !self.read_request(g.max_packet_size).await? {
            if g.log_disconnections {
                info!(client = self.cancel.id, "client close request");
            }
            return Ok(Step::End);
        }
        let pool = self.pool.clone();
        let mut server = pool.checkout().await.map_err(checkout_error)?;
        if let Ok(0) = self.stream.try_read_buf(&mut self.buf) {
            // The client left while waiting for a server.
            pool.checkin(server);
            return Ok(Step::End);
        }
        if let Err(e) = sync_params(&mut server, &mut self.params).await {
            return Err(server_failed(&pool, server, e));
        }
        let session_mode = pool.settings.mode == PoolMode::Session;
        self.cancel.link(server.addr.clone(), server.key);
        let outcome = relay(
            self.stream,
            &mut self.buf,
            &mut server,
            &mut self.params,
            &g.track_extra_parameters,
            !session_mode,
            g.max_packet_size,
        )
        .await;
        self.cancel.unlink();
        match outcome {
            Outcome::Released => {
                release(&pool, server, false).await;
                Ok(Step::Idle)
            }
            Outcome::ClientGone { clean } => {
                finish(&pool, server, clean, session_mode).await;
                if g.log_disconnections {
                    info!(client = self.cancel.id, "client closed the connection");
                }
                Ok(Step::End)
            }
            Outcome::ClientError { error, clean } => {
                finish(&pool, server, clean, session_mode).await;
                Err(error.into())
            }
            Outcome::ServerGone(e) => {
                debug!(server = server.id, "server connection lost: {e}");
                pool.discard(server);
                Err(ClientError::fatal(
                    sqlstate::CONNECTION_FAILURE,
                    "server connection closed unexpectedly",
                ))
            }
        }
    }

    /// Read until the first message of a transaction (or a large enough
    /// part of it) is buffered, checking each header as it arrives. False
    /// when the client said goodbye (Terminate or EOF).
    async fn read_request(&mut self, max_len: u32) -> Result<bool, ClientError> {
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
            self.buf.reserve(1024);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
        }
    }
}

/// Bring the server's tracked parameters in line with the client's. A
/// server last synced to this very parameter set needs no look at all.
async fn sync_params(server: &mut ServerConn, params: &mut Arc<Params>) -> Result<(), ServerError> {
    if server
        .synced
        .as_ref()
        .is_some_and(|s| Arc::ptr_eq(s, params))
    {
        return Ok(());
    }
    if let Some(sql) = params.sync_query(&server.params) {
        Box::pin(server.run_quiet(&sql)).await?;
        if params.needs_adopt(&server.params) {
            Arc::make_mut(params).adopt(&server.params);
        }
    }
    server.synced = Some(params.clone());
    Ok(())
}

fn checkout_error(e: CheckoutError) -> ClientError {
    match e {
        CheckoutError::Server(s) => {
            let (code, message) = s.client_error();
            ClientError::fatal(code, message)
        }
        CheckoutError::WaitTimeout(_) => {
            ClientError::fatal(sqlstate::QUERY_CANCELED, e.to_string())
        }
    }
}

fn server_failed(pool: &Pool, server: ServerConn, e: ServerError) -> ClientError {
    pool.discard(server);
    let (code, message) = e.client_error();
    ClientError::fatal(code, message)
}

/// Give a server back after a transaction (running the reset query first
/// when server_reset_query_always or `session_end` in session mode).
async fn release(pool: &Pool, mut server: ServerConn, session_end: bool) {
    let s = &pool.settings;
    if (session_end || s.reset_query_always) && !s.reset_query.is_empty() {
        match Box::pin(server.run_quiet(&s.reset_query)).await {
            Ok(b'I') => {}
            _ => return pool.discard(server),
        }
    }
    pool.checkin(server);
}

/// The client is gone: reuse its server only if it is clean.
async fn finish(pool: &Pool, server: ServerConn, clean: bool, session_mode: bool) {
    if clean {
        release(pool, server, session_mode).await;
    } else {
        debug!(
            server = server.id,
            "closing a server left in use by its client"
        );
        pool.discard(server);
    }
}
