//! Forwarding CancelRequests to PostgreSQL: for a client's cancel (while
//! its entry counts it in flight) and for the pooler's own (query_timeout).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tracing::{debug, warn};

use super::{CancelRegistry, CancelTarget};
use crate::server::{BackendKey, ServerAddr};

/// Counts one cancel request in flight on its entry; dropping it (the
/// cancel ended, failed, timed out, or its task went away) uncounts it and
/// wakes a session waiting in [`CancelTarget::wait_cancels`].
struct InFlight(Arc<CancelTarget>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.cancels_in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.wake_session();
        }
    }
}

impl CancelRegistry {
    /// Forward a CancelRequest for the client with `key`, if it has a
    /// server, and wait until the server processed it (closed the cancel
    /// connection), at most `timeout` (zero = no limit). Meanwhile the
    /// cancel counts as in flight on the client's entry, so the client's
    /// session keeps the server from other clients until it is done.
    pub async fn cancel(&self, key: BackendKey, timeout: Duration) {
        let linked = {
            let map = self.map.lock();
            map.get(&(key.process_id, key.secret_key)).and_then(|t| {
                // Counted under `linked`: the session's unlink() sees it.
                let linked = t.linked.lock();
                let (addr, key) = linked.clone()?;
                t.cancels_in_flight.fetch_add(1, Ordering::AcqRel);
                Some((addr, key, InFlight(t.clone())))
            })
        };
        let Some((addr, server_key, _in_flight)) = linked else {
            debug!("cancel request for an unknown or idle client ignored");
            return;
        };
        let send = send_cancel(&addr, server_key);
        let result = if timeout.is_zero() {
            Ok(send.await)
        } else {
            crate::runtime::timer::timeout(timeout, send).await
        };
        match result {
            Ok(Ok(())) => debug!(%addr, "cancel request forwarded"),
            Ok(Err(e)) => warn!(%addr, error = %e, "could not forward cancel request"),
            Err(_) => warn!(%addr, "timed out forwarding cancel request (cancel_wait_timeout)"),
        }
    }
}

/// Cancel what the backend with `key` at `addr` is running, for the pooler
/// itself (query_timeout: closing the connection alone would leave the
/// query running until it next talks to its client). At most `timeout`
/// (zero = no limit).
pub async fn cancel_server(addr: Arc<ServerAddr>, key: BackendKey, timeout: Duration) {
    let send = send_cancel(&addr, key);
    let result = if timeout.is_zero() {
        send.await
    } else {
        crate::runtime::timer::timeout(timeout, send)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    };
    if let Err(e) = result {
        warn!(%addr, error = %e, "could not cancel the query of a closed server connection");
    }
}

async fn send_cancel(addr: &ServerAddr, key: BackendKey) -> std::io::Result<()> {
    match addr {
        ServerAddr::Tcp { host, port } => {
            deliver(TcpStream::connect((host.as_str(), *port)).await?, key).await
        }
        ServerAddr::Unix { dir, port } => {
            deliver(
                UnixStream::connect(ServerAddr::socket_path(dir, *port)).await?,
                key,
            )
            .await
        }
    }
}

/// Send the CancelRequest and wait for the server to close the connection:
/// PostgreSQL closes it once it has signalled the backend (as libpq's
/// PQcancel waits, so that a cancel cannot hit the next query instead).
async fn deliver<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    key: BackendKey,
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    frontend::cancel_request(key.process_id, key.secret_key, &mut buf);
    s.write_all(&buf).await?;
    s.shutdown().await?;
    let mut sink = [0u8; 64];
    while s.read(&mut sink).await? > 0 {}
    Ok(())
}
