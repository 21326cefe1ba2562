//! Getting a server for a request and giving it back: bringing its tracked
//! parameters in line with the client's, the errors of a checkout, and
//! what happens to the server after its link (back to the pool, reset
//! first, or closed) with the error that ends the session when the link
//! ended badly (server lost, statement-mode transaction block, timeouts).

use std::sync::Arc;

use tracing::{debug, warn};

use super::ClientError;
use super::relay::Outcome;
use crate::pool::{CheckoutError, Pool};
use crate::protocol::sqlstate;
use crate::server::params::Params;
use crate::server::{ServerConn, ServerError};

/// The error that ends the session after a link that ended with the
/// server unusable (the server is already discarded). Logs why.
pub(super) fn link_failed(id: u64, outcome: Outcome) -> ClientError {
    match outcome {
        Outcome::ServerGone(e) => {
            debug!(client = id, "server connection lost: {e}");
            ClientError::fatal(
                sqlstate::CONNECTION_FAILURE,
                "server connection closed unexpectedly",
            )
        }
        Outcome::TransactionBlock => {
            warn!(
                client = id,
                "transaction blocks not allowed in statement pooling mode: \
                 closing the client and its server (the transaction rolls back)"
            );
            ClientError::fatal(
                crate::protocol::sqlstate::INVALID_TRANSACTION_STATE,
                "transaction blocks not allowed in statement pooling mode",
            )
        }
        Outcome::Expired { what, midstream } => {
            warn!(
                client = id,
                "{}: closing the client and its server",
                what.setting()
            );
            if midstream {
                // A server message is half-forwarded: an ErrorResponse
                // now would be garbage to the client; just close.
                let io = std::io::Error::other(what.setting());
                return ClientError::Io(io);
            }
            what.client_error()
        }
        Outcome::Released | Outcome::ClientGone { .. } => {
            ClientError::Io(std::io::ErrorKind::ConnectionAborted.into())
        }
        Outcome::ClientError { error, .. } => error.into(),
    }
}

/// Bring the server's tracked parameters in line with the client's. A
/// server last synced to this very parameter set needs no look at all.
pub(super) async fn sync_params(
    server: &mut ServerConn,
    params: &mut Arc<Params>,
) -> Result<(), ServerError> {
    if server
        .synced
        .as_ref()
        .is_some_and(|s| Arc::ptr_eq(s, params))
    {
        return Ok(());
    }
    if let Some(sql) = params.sync_query(&server.params) {
        Box::pin(server.run_quiet(&sql)).await?;
        // Unreported parameters: the server now has what was SET.
        server.params.note_synced(params);
        if params.needs_adopt(&server.params) {
            Arc::make_mut(params).adopt(&server.params);
        }
    }
    server.synced = Some(params.clone());
    Ok(())
}

pub(super) fn checkout_error(e: CheckoutError) -> ClientError {
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

pub(super) fn server_failed(pool: &Pool, server: Box<ServerConn>, e: ServerError) -> ClientError {
    pool.discard(server);
    let (code, message) = e.client_error();
    ClientError::fatal(code, message)
}

/// Give a server back after a transaction (running the reset query first
/// when server_reset_query_always or `session_end` in session mode).
pub(super) async fn release(pool: &Pool, mut server: Box<ServerConn>, session_end: bool) {
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
pub(super) async fn finish(pool: &Pool, server: Box<ServerConn>, clean: bool, session_mode: bool) {
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
