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
use tracing::{Instrument, debug, info, info_span, warn};

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
pub async fn serve(
    mut stream: Stream,
    peer: Peer,
    ctx: Arc<Context>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
    let span = info_span!("client", id, %peer);
    async move {
        let result = match permit {
            Some(_permit) => session::run(&mut stream, &ctx).await,
            None => login::refuse(&mut stream, &ctx).await,
        };
        match result {
            Ok(()) => debug!("session ended"),
            Err(e) => {
                if let Some((code, message)) = e.response() {
                    if ctx.config().general.log_pooler_errors {
                        warn!(sqlstate = code, "closing client: {message}");
                    }
                    let mut out = BytesMut::new();
                    error_response(&mut out, Severity::Fatal, code, &message);
                    let _ = stream.write_all(&out).await;
                } else {
                    info!("client connection closed: {e}");
                }
            }
        }
        let _ = stream.shutdown().await;
    }
    .instrument(span)
    .await
}

/// Shorthand for the "too many connections" error.
pub(crate) fn too_many_clients() -> ClientError {
    ClientError::fatal(
        sqlstate::TOO_MANY_CONNECTIONS,
        "no more connections allowed (max_client_conn)",
    )
}
