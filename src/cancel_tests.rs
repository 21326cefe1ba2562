//! Unit tests of the client registry (`cancel.rs`).
use super::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A linked entry and a fake postmaster that reads one CancelRequest,
/// reports it, and closes the connection only when told to (`None`:
/// never).
async fn linked_to_fake_server() -> (
    Arc<CancelRegistry>,
    Arc<CancelTarget>,
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
    let registry = Arc::new(CancelRegistry::new());
    let target = registry.register(1, crate::client::Peer::Unix);
    let addr = ServerAddr::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let server_key = BackendKey {
        process_id: 7,
        secret_key: 9,
    };
    target.link(Arc::new(addr), server_key, 0);
    (registry, target, got_rx, close_tx)
}

fn spawn_cancel(registry: &Arc<CancelRegistry>, key: BackendKey, limit: Duration) {
    let registry = registry.clone();
    tokio::spawn(async move { registry.cancel(key, limit).await });
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
    assert_eq!(target.cancels_in_flight.load(Ordering::Acquire), 0);
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
    registry.cancel(target.key, Duration::from_secs(60)).await;
    assert_eq!(target.cancels_in_flight.load(Ordering::Acquire), 0);
    assert!(target.wait_cancels(Duration::ZERO).await);
}

#[test]
fn idle_timeout_counts_whole_epochs_since_the_last_request() {
    let t = CancelTarget::default();
    t.logged_in(Duration::from_millis(1500), 10);
    // Rounded up to 2 s: idle during epoch 10, expired when epoch 12 closes.
    assert!(!t.idle_expired(10));
    assert!(!t.idle_expired(11));
    assert!(t.idle_expired(12));
    // Busy: never expired.
    t.active();
    assert!(!t.idle_expired(100));
    t.idle(100);
    assert!(!t.idle_expired(101));
    assert!(t.idle_expired(102));
    // Off.
    t.logged_in(Duration::ZERO, 0);
    assert!(!t.idle_expired(1000));
}

#[test]
fn an_idle_timeout_overtaken_by_activity_is_withdrawn_but_a_shutdown_is_not() {
    let t = CancelTarget::default();
    let epoch = AtomicU64::new(5);
    t.logged_in(Duration::from_secs(1), 3);
    t.close(CloseReason::IdleTimeout);
    // Still idle since epoch 3: the close stands.
    assert_eq!(t.closing_reason(&epoch), Some(CloseReason::IdleTimeout));
    // The client sent a request (and finished it) meanwhile.
    t.active();
    t.idle(5);
    assert_eq!(t.closing_reason(&epoch), None);
    // A shutdown replaces nothing and is never withdrawn.
    t.close(CloseReason::Shutdown);
    t.close(CloseReason::IdleTimeout);
    assert_eq!(t.closing_reason(&epoch), Some(CloseReason::Shutdown));
}

/// Every connected client has an entry: it must stay small (S6, memory
/// per idle client). 168 bytes: with the Arc's counts, a 192-byte malloc
/// chunk (184 bytes took 208).
#[test]
fn entry_stays_small() {
    assert!(std::mem::size_of::<CancelTarget>() <= 168);
}
