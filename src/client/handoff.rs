//! Getting a server for a request and giving it back: bringing its tracked
//! parameters in line with the client's, the errors of a checkout, and
//! what happens to the server after its link (back to the pool, reset
//! first, or closed) with the error that ends the session when the link
//! ended badly (server lost, statement-mode transaction block, timeouts).

use std::cell::Cell;
use std::sync::Arc;

use tracing::{debug, warn};

use super::SessionEnd;
use super::relay::Outcome;
use crate::pool::{CheckoutError, Pool};
use crate::protocol::sqlstate;
use crate::runtime::clock::clock_ns;
use crate::server::params::Params;
use crate::server::{ServerConn, ServerError};

/// The error that ends the session after a link that ended with the
/// server unusable (the server is already discarded). Logs why.
#[cold]
#[inline(never)]
pub(super) fn link_failed(id: u64, outcome: Outcome) -> SessionEnd {
    match outcome {
        Outcome::ServerGone { error, .. } => {
            debug!(client = id, "server connection lost: {error}");
            SessionEnd::fatal(
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
            // PgBouncer's code: a class 08 error tells drivers the
            // connection is gone (psycopg raises OperationalError), which
            // is what happened; retry logic written for PgBouncer keys on it.
            SessionEnd::fatal(
                sqlstate::PROTOCOL_VIOLATION,
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
                return SessionEnd::Io(io);
            }
            what.client_error()
        }
        Outcome::Released | Outcome::ClientGone { .. } | Outcome::ReadOnlyRefused => {
            SessionEnd::Io(std::io::ErrorKind::ConnectionAborted.into())
        }
        Outcome::ClientError { error, .. } => error.into(),
    }
}

/// Whether the server was last synced to this very parameter set (then
/// [`sync_params`] has nothing to do: the usual case, checked inline).
#[inline]
pub(super) fn in_sync(server: &ServerConn, params: &Arc<Params>) -> bool {
    server
        .synced
        .as_ref()
        .is_some_and(|s| Arc::ptr_eq(s, params))
}

/// Bring the server's tracked parameters in line with the client's (a
/// server [`in_sync`] needs no look at all; callers box this future, so
/// that its code stays out of the request's hot path).
pub(super) async fn sync_params(
    server: &mut ServerConn,
    params: &mut Arc<Params>,
) -> Result<(), ServerError> {
    if in_sync(server, params) {
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

thread_local! {
    /// Session polls on this thread (wrapping).
    static POLLS: Cell<u64> = const { Cell::new(0) };
}

/// Count a poll of a session task (at the start of each).
#[inline]
pub(super) fn note_poll() {
    POLLS.with(|p| p.set(p.get().wrapping_add(1)));
}

/// This thread and its session poll count: unchanged after an await
/// means the await completed without yielding (nothing else can poll a
/// session on this thread meanwhile, and a task resumed on another
/// thread sees another thread).
#[inline]
pub(super) fn poll_mark() -> (usize, u64) {
    POLLS.with(|p| (std::ptr::from_ref(p).addr(), p.get()))
}

/// After a checkout asked for at `asked` (`runtime::clock::clock_ns`) with poll
/// mark `mark`: when the request's time starts and the client's wait in
/// µs. A checkout that did not yield (an idle server) waited for nothing
/// and costs no clock read; one that yielded (queued for a server, or for
/// a new connection's login or a server check, as PgBouncer counts it)
/// waited until now.
pub(super) fn waited(asked: u64, mark: (usize, u64)) -> (u64, u64) {
    if poll_mark() == mark {
        return (asked, 0);
    }
    let now = clock_ns();
    (now, now.saturating_sub(asked) / 1000)
}

#[cold]
#[inline(never)]
pub(super) fn checkout_error(e: CheckoutError) -> SessionEnd {
    match e {
        CheckoutError::Server(s) => {
            let (code, message) = s.client_error();
            SessionEnd::fatal(code, message)
        }
        CheckoutError::WaitTimeout(_) | CheckoutError::QueryTimeout(_) => {
            SessionEnd::fatal(sqlstate::QUERY_CANCELED, e.to_string())
        }
    }
}

#[cold]
#[inline(never)]
pub(super) fn server_failed(pool: &Pool, server: Box<ServerConn>, e: ServerError) -> SessionEnd {
    pool.discard(server);
    let (code, message) = e.client_error();
    SessionEnd::fatal(code, message)
}

/// Give a server back after a transaction (running the reset query first
/// when server_reset_query_always or `session_end` in session mode).
///
/// Not an `async fn`: the usual case (no reset query) gives the server
/// back at once, with no future to build, poll and drop per transaction
/// (callgrind: ~50 instructions); the reset runs in a boxed future.
pub(super) fn release<'a>(
    pool: &'a Pool,
    server: Box<ServerConn>,
    session_end: bool,
) -> Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>> {
    let reset = if session_end || pool.reset_always() {
        let s = pool.settings();
        (!s.reset_query.is_empty()).then(|| s.reset_query.clone())
    } else {
        None
    };
    match reset {
        None => {
            pool.checkin(server);
            None
        }
        Some(reset) => Some(Box::pin(reset_then_checkin(pool, server, reset))),
    }
}

/// Run the reset query, then give the server back (or close it).
async fn reset_then_checkin(pool: &Pool, mut server: Box<ServerConn>, reset: String) {
    match server.run_quiet(&reset).await {
        Ok(b'I') => pool.checkin(server),
        _ => pool.discard(server),
    }
}

/// `release`, waiting for the reset query when there is one.
pub(super) async fn release_wait(pool: &Pool, server: Box<ServerConn>, session_end: bool) {
    if let Some(reset) = release(pool, server, session_end) {
        reset.await;
    }
}

/// The client is gone: reuse its server only if it is clean.
pub(super) async fn finish(pool: &Pool, server: Box<ServerConn>, clean: bool, session_mode: bool) {
    if clean {
        release_wait(pool, server, session_mode).await;
    } else {
        debug!(
            server = server.id,
            "closing a server left in use by its client"
        );
        pool.discard(server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_that_did_not_yield_waited_for_nothing() {
        let asked = clock_ns();
        let mark = poll_mark();
        assert_eq!(waited(asked, mark), (asked, 0));
        // The session was polled again (it had yielded): the wait ends now.
        note_poll();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (started, wait_us) = waited(asked, mark);
        assert!(started > asked && wait_us >= 2000, "{wait_us}");
        // Resumed on another thread: another counter, another mark.
        let other = std::thread::spawn(poll_mark).join().unwrap();
        assert_ne!(other.0, mark.0);
    }
}
