//! Cancel requests: forwarding a client's CancelRequest to the server its
//! session is linked to (found in the session registry, with the server's
//! own key), and the pooler's own cancels (query_timeout).
//!
//! A client's cancel counts itself in flight on the session's entry until
//! PostgreSQL has closed the cancel connection (as libpq's PQcancel
//! waits), so the session does not give the server to anyone else before
//! (see `registry::SessionEntry::wait_cancels`).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::config::{Endpoint, ServerTls};
use crate::protocol::BackendKey;
use crate::registry::Registry;
use crate::transport::Stream;

/// Forward a CancelRequest for the client with `key`, if it has a
/// server, and wait until the server processed it (closed the cancel
/// connection), at most `timeout` (zero = no limit). Meanwhile the
/// cancel counts as in flight on the client's entry, so the client's
/// session keeps the server from other clients until it is done.
pub(crate) async fn forward(
    registry: &Registry,
    key: BackendKey,
    tls: Option<Arc<ServerTls>>,
    timeout: Duration,
) {
    let linked = registry.find(key).and_then(|e| e.begin_cancel());
    let Some((addr, server_key, _in_flight)) = linked else {
        debug!("cancel request for an unknown or idle client ignored");
        return;
    };
    // Boxed: this runs inside a client's login future (a CancelRequest
    // is a connection of its own), which every connecting client's box is
    // sized by.
    match Box::pin(deliver_within(&addr, server_key, tls.as_deref(), timeout)).await {
        Ok(()) => debug!(%addr, "cancel request forwarded"),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            warn!(%addr, "timed out forwarding cancel request (cancel_wait_timeout)")
        }
        Err(e) => warn!(%addr, error = %e, "could not forward cancel request"),
    }
}

/// Peering: pass a CancelRequest for a key that peer `key.peer_id()` gave
/// out to that peer (`[peers]`), with one forward fewer in its TTL, as
/// PgBouncer does (so that a request cannot go round a misconfigured group
/// for ever). A peer of its own id never gets here.
pub(crate) async fn forward_to_peer(
    peers: &std::collections::BTreeMap<u16, Endpoint>,
    key: BackendKey,
    tls: Option<Arc<ServerTls>>,
    timeout: Duration,
) {
    let peer_id = key.peer_id();
    if key.ttl() == 0 {
        warn!(
            peer_id,
            "failed to forward cancel request because its TTL was exhausted"
        );
        return;
    }
    let Some(addr) = peers.get(&peer_id) else {
        warn!(peer_id, "could not find peer to forward cancel request to");
        return;
    };
    debug!(peer_id, %addr, "forwarding cancel request to peer");
    // The peer closes the connection once it has passed the request on.
    let sent = Box::pin(deliver_within(
        addr,
        key.forwarded(),
        tls.as_deref(),
        timeout,
    ))
    .await;
    if let Err(e) = sent {
        warn!(peer_id, %addr, error = %e, "could not forward cancel request to peer");
    }
}

/// Cancel what the backend with `key` at `addr` is running, for the pooler
/// itself (query_timeout: closing the connection alone would leave the
/// query running until it next talks to its client). At most `timeout`
/// (zero = no limit).
pub(crate) async fn cancel_server(
    addr: Arc<Endpoint>,
    key: BackendKey,
    tls: Option<Arc<ServerTls>>,
    timeout: Duration,
) {
    if let Err(e) = deliver_within(&addr, key, tls.as_deref(), timeout).await {
        warn!(%addr, error = %e, "could not cancel the query of a closed server connection");
    }
}

/// [`deliver`] within `timeout` (zero = no limit); a timeout is an error of
/// kind `TimedOut`.
async fn deliver_within(
    addr: &Endpoint,
    key: BackendKey,
    tls: Option<&ServerTls>,
    timeout: Duration,
) -> std::io::Result<()> {
    let send = async { deliver(crate::transport::connect_tls(addr, tls).await?, key).await };
    if timeout.is_zero() {
        return send.await;
    }
    crate::runtime::timer::timeout(timeout, send)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Send the CancelRequest and wait for the server to close the connection:
/// PostgreSQL closes it once it has signalled the backend (as libpq's
/// PQcancel waits, so that a cancel cannot hit the next query instead).
async fn deliver(mut s: Stream, key: BackendKey) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    frontend::cancel_request(key.process_id, key.secret_key, &mut buf);
    s.write_all(&buf).await?;
    s.shutdown().await?;
    let mut sink = [0u8; 64];
    while s.read(&mut sink).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Owner, Registration, SessionEntry};
    use crate::transport::Peer;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    /// A linked entry and a fake postmaster that reads one CancelRequest,
    /// reports it, and closes the connection only when told to (`None`:
    /// never).
    async fn linked_to_fake_server() -> (
        Registration<Own>,
        Arc<SessionEntry>,
        oneshot::Receiver<[u8; 16]>,
        oneshot::Sender<()>,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (got_tx, got_rx) = oneshot::channel();
        let (close_tx, close_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = [0u8; 16];
            s.read_exact(&mut req).await.unwrap();
            let _ = got_tx.send(req);
            let _ = close_rx.await;
        });
        let registration = Registration::new(Arc::new(Own(Registry::new())), 1, Peer::Unix);
        let target = registration.entry.clone();
        let addr = Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let server_key = BackendKey {
            process_id: 7,
            secret_key: 9,
        };
        target.link((Arc::new(addr), server_key, 0), 0, false);
        (registration, target, got_rx, close_tx)
    }

    /// A registry's owner for tests.
    struct Own(Registry);

    impl Owner for Own {
        fn registry(&self) -> &Registry {
            &self.0
        }
    }

    fn spawn_cancel(registration: &Registration<Own>, key: BackendKey, limit: Duration) {
        let owner = registration.owner().clone();
        tokio::spawn(async move { forward(&owner.0, key, None, limit).await });
    }

    #[tokio::test]
    async fn release_waits_until_the_server_processed_the_cancel() {
        let (registry, target, got, close) = linked_to_fake_server().await;
        spawn_cancel(&registry, target.key, Duration::from_secs(60));
        let req = got.await.unwrap();
        // The server's key went out, not the client's.
        assert_eq!(&req[8..], &[0, 0, 0, 7, 0, 0, 0, 9]);
        // The session ends its link while the cancel is in flight.
        assert!(target.unlink(), "the cancel must count as in flight");
        let mut wait = std::pin::pin!(target.wait_cancels(Duration::from_secs(60)));
        let early = tokio::time::timeout(Duration::from_millis(200), wait.as_mut()).await;
        assert!(early.is_err(), "released before the cancel was processed");
        // The server closes the cancel connection: the wait ends.
        close.send(()).unwrap();
        assert!(wait.await, "the wait must end when the cancel is done");
        assert!(!target.unlink(), "no cancel may stay counted");
    }

    #[tokio::test]
    async fn wait_is_bounded_and_a_stuck_cancel_uncounts_itself() {
        let (registry, target, got, _never) = linked_to_fake_server().await;
        spawn_cancel(&registry, target.key, Duration::from_millis(300));
        got.await.unwrap();
        assert!(target.unlink());
        // The session gives up first (its limit is shorter)...
        assert!(!target.wait_cancels(Duration::from_millis(50)).await);
        // ...and the cancel itself stops at its own limit, uncounted.
        assert!(target.wait_cancels(Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn no_cancel_in_flight_for_an_unlinked_client() {
        let (registry, target, _got, _close) = linked_to_fake_server().await;
        assert!(!target.unlink());
        // A cancel for a client without a server is ignored at once.
        forward(
            &registry.owner().0,
            target.key,
            None,
            Duration::from_secs(60),
        )
        .await;
        assert!(!target.unlink(), "no cancel may stay counted");
        assert!(target.wait_cancels(Duration::ZERO).await);
    }
}
