//! One client session: login (`login`, `auth`), then the loop that links the
//! client to a server per transaction (`session`) and relays bytes between
//! them (`relay`).

mod auth;
mod login;
mod relay;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::context::Context;
use crate::net::Stream;
use crate::protocol::backend::{Severity, error_response};
use crate::protocol::{ProtocolError, sqlstate};

/// Where a client connected from.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A TCP peer address.
    Tcp(SocketAddr),
    /// A Unix-socket peer.
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// Why a session ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The session must end with this FATAL error.
    #[error("{message}")]
    Fatal {
        /// SQLSTATE.
        code: String,
        /// Message for the client and the log.
        message: String,
    },
    /// Socket error or EOF.
    #[error("client connection error: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// A FATAL error with a SQLSTATE.
    pub fn fatal(code: impl Into<String>, message: impl Into<String>) -> ClientError {
        ClientError::Fatal {
            code: code.into(),
            message: message.into(),
        }
    }

    /// SQLSTATE and message to send, if the client can still be told.
    fn response(&self) -> Option<(&str, String)> {
        match self {
            ClientError::Protocol(e) => Some((e.sqlstate(), e.to_string())),
            ClientError::Fatal { code, message } => Some((code, message.clone())),
            ClientError::Io(_) => None,
        }
    }
}

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Serve one client connection until it ends. `permit` is its
/// max_client_conn slot (None when over the limit: it gets 53300).
/// (A plain fn returning the instrumented future: no extra async layer to
/// carry the arguments twice.)
pub fn serve(
    stream: Stream,
    peer: Peer,
    ctx: Arc<Context>,
    permit: Option<OwnedSemaphorePermit>,
) -> impl std::future::Future<Output = ()> + Send {
    let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
    // A debug-level span: at the default level it costs nothing per client
    // (an info span would allocate in the subscriber for every session);
    // info lines carry `client = id` themselves.
    let span = debug_span!("client", id);
    serve_in_span(stream, peer, id, ctx, permit).instrument(span)
}

async fn serve_in_span(
    mut stream: Stream,
    peer: Peer,
    id: u64,
    ctx: Arc<Context>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let result = match permit {
        Some(_permit) => session::run(&mut stream, peer, id, &ctx).await,
        None => Box::pin(login::refuse(&mut stream, &ctx)).await,
    };
    match result {
        Ok(()) => debug!(client = id, "session ended"),
        // Boxed: a cold path that every idle session would otherwise carry.
        Err(e) => Box::pin(report(&mut stream, id, &ctx, e)).await,
    }
    let _ = stream.shutdown().await;
}

/// Log why a session ends and tell the client, when it can still be told.
async fn report(stream: &mut Stream, id: u64, ctx: &Context, e: ClientError) {
    let Some((code, message)) = e.response() else {
        info!(client = id, "client connection closed: {e}");
        return;
    };
    if ctx.config().general.log_pooler_errors {
        warn!(client = id, sqlstate = code, "closing client: {message}");
    }
    let mut out = BytesMut::new();
    error_response(&mut out, Severity::Fatal, code, &message);
    let _ = stream.write_all(&out).await;
}

/// Shorthand for the "too many connections" error.
pub(crate) fn too_many_clients() -> ClientError {
    ClientError::fatal(
        sqlstate::TOO_MANY_CONNECTIONS,
        "no more connections allowed (max_client_conn)",
    )
}

#[cfg(test)]
mod size_probe {
    /// Every idle client holds its session future: keep it small (the
    /// per-transaction state is boxed, see `session`).
    #[test]
    fn idle_session_future_stays_small() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let cfg = crate::config::load_str(
            "[pgbouncer]\nauth_type=any\n",
            std::path::Path::new("x.ini"),
        )
        .unwrap()
        .config;
        let ctx = std::sync::Arc::new(crate::context::Context::new(cfg, rx));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let f = super::serve(
                crate::net::Stream::Tcp(s),
                super::Peer::Unix,
                ctx.clone(),
                None,
            );
            let size = std::mem::size_of_val(&f);
            eprintln!("serve future: {size} bytes");
            assert!(size <= 600, "client future grew to {size} bytes");
        });
    }
}
