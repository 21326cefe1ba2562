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

use crate::cancel::Registration;
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
    let Some(permit) = permit else {
        if let Err(e) = login::refuse(&mut stream, &ctx).await {
            report(&mut stream, id, &ctx, e).await;
        }
        let _ = stream.shutdown().await;
        return;
    };
    let registration = Registration::new(ctx.clone(), id, peer);
    match session::login_phase(stream, registration, permit).await {
        // The session goes on in a small task of its own; this one ends.
        Ok(Some(client)) => drop(tokio::spawn(session::run(client))),
        Ok(None) => debug!(client = id, "connection ended during login"),
        Err((mut stream, e)) => {
            report(&mut stream, id, &ctx, e).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Log why a session ends and tell the client, when it can still be told.
pub(crate) async fn report(stream: &mut Stream, id: u64, ctx: &Context, e: ClientError) {
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
