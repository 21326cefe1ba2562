//! The session loop: after login, wait (holding no buffer) for the first
//! message of a transaction, take a server from the pool, bring its tracked
//! parameters in line with the client's, relay until the transaction ends,
//! and give the server back.

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tracing::{debug, info};

use super::ClientError;
use super::login::{LoggedIn, login};
use super::relay::{Outcome, relay};
use crate::config::PoolMode;
use crate::context::Context;
use crate::net::Stream;
use crate::pool::{CheckoutError, Pool};
use crate::protocol::frontend::is_frontend_tag;
use crate::protocol::{Header, ProtocolError, sqlstate};
use crate::server::{ServerConn, ServerError};

/// Start linking once this many bytes of a large first message are buffered.
const EAGER_LINK_BYTES: usize = 8192;

enum Request {
    /// A message is buffered: link to a server.
    Ready,
    /// The client said goodbye (Terminate or EOF).
    Terminate,
    /// The pooler is shutting down.
    Shutdown,
}

/// Run a whole client session.
pub(super) async fn run(stream: &mut Stream, ctx: &Context) -> Result<(), ClientError> {
    let registration = ctx.cancel.register();
    let mut buf = BytesMut::new();
    let cfg = ctx.config();
    let login = login(stream, &mut buf, ctx, registration.key);
    let logged_in = match cfg.general.client_login_timeout {
        t if t.is_zero() => login.await?,
        t => tokio::time::timeout(t, login).await.map_err(|_| {
            ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, "client_login_timeout")
        })??,
    };
    let Some(LoggedIn { pool, mut params }) = logged_in else {
        return Ok(());
    };
    let g = &cfg.general;
    let session_mode = pool.settings.mode == PoolMode::Session;
    let mut shutdown = ctx.shutdown.clone();
    loop {
        if buf.is_empty() {
            // Idle: give the buffer back; ten thousand idle clients cost little.
            buf = BytesMut::new();
        }
        match wait_for_request(stream, &mut buf, &mut shutdown, g.max_packet_size).await? {
            Request::Ready => {}
            Request::Terminate => {
                if g.log_disconnections {
                    info!("client close request");
                }
                return Ok(());
            }
            Request::Shutdown => {
                return Err(ClientError::fatal(
                    sqlstate::ADMIN_SHUTDOWN,
                    "pgsluice is shutting down",
                ));
            }
        }
        let mut server = pool.checkout().await.map_err(checkout_error)?;
        if let Ok(0) = stream.try_read_buf(&mut buf) {
            // The client left while waiting for a server.
            pool.checkin(server);
            return Ok(());
        }
        if let Some(sql) = params.sync_query(&server.params)
            && let Err(e) = server.run_quiet(&sql).await
        {
            return Err(server_failed(&pool, server, e));
        }
        registration.target.link(server.addr.clone(), server.key);
        let outcome = relay(
            stream,
            &mut buf,
            &mut server,
            &mut params,
            &g.track_extra_parameters,
            !session_mode,
            g.max_packet_size,
        )
        .await;
        registration.target.unlink();
        match outcome {
            Outcome::Released => release(&pool, server, false).await,
            Outcome::ClientGone { clean } => {
                finish(&pool, server, clean, session_mode).await;
                if g.log_disconnections {
                    info!("client closed the connection");
                }
                return Ok(());
            }
            Outcome::ClientError { error, clean } => {
                finish(&pool, server, clean, session_mode).await;
                return Err(error.into());
            }
            Outcome::ServerGone(e) => {
                debug!(server = server.id, "server connection lost: {e}");
                pool.discard(server);
                return Err(ClientError::fatal(
                    sqlstate::CONNECTION_FAILURE,
                    "server connection closed unexpectedly",
                ));
            }
        }
    }
}

/// Wait until the client sent the first message of a transaction (or a
/// large enough part of it), checking each header as it arrives.
async fn wait_for_request(
    stream: &mut Stream,
    buf: &mut BytesMut,
    shutdown: &mut watch::Receiver<bool>,
    max_len: u32,
) -> Result<Request, ClientError> {
    loop {
        if let Some(h) = Header::parse(buf) {
            if !is_frontend_tag(h.tag) {
                return Err(ProtocolError::UnknownTag(h.tag).into());
            }
            h.check(max_len)?;
            if h.tag == b'X' {
                return Ok(Request::Terminate);
            }
            if buf.len() >= h.total() || buf.len() >= EAGER_LINK_BYTES {
                return Ok(Request::Ready);
            }
        }
        if buf.is_empty() && *shutdown.borrow() {
            return Ok(Request::Shutdown);
        }
        if buf.is_empty() {
            // No buffer is held while waiting.
            tokio::select! {
                r = stream.readable() => r?,
                _ = shutdown.changed() => continue,
            }
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Ok(Request::Terminate);
        }
    }
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
        match server.run_quiet(&s.reset_query).await {
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
