//! The registry of client sessions, keyed by the BackendKeyData the pooler
//! gave them. It serves cancel requests: while a client is linked to a
//! server, a CancelRequest carrying its key is forwarded on a new connection
//! to that server with the server's key (ignored when it has no server). It
//! also lets the pooler tell idle sessions to close (shutdown) without each
//! of them holding a wait future: an idle session registers its waker here.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tracing::{debug, warn};

use crate::server::{BackendKey, ServerAddr};

/// One client session's shared state: who it is, where its cancel request
/// must go right now, and whether it was told to close.
#[derive(Default)]
pub struct CancelTarget {
    /// The session's id, as in the logs.
    pub id: u64,
    /// Where the client connected from.
    pub peer: Option<crate::client::Peer>,
    /// The BackendKeyData the pooler gave the client.
    pub key: BackendKey,
    linked: Mutex<Option<(Arc<ServerAddr>, BackendKey)>>,
    closing: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl CancelTarget {
    /// The client was linked to a server.
    pub fn link(&self, addr: Arc<ServerAddr>, key: BackendKey) {
        *self.linked.lock() = Some((addr, key));
    }

    /// The client's server was released.
    pub fn unlink(&self) {
        *self.linked.lock() = None;
    }

    /// Whether the session was told to close; if not, `cx` is woken when it is.
    pub fn poll_closing(&self, cx: &mut Context<'_>) -> bool {
        if self.closing.load(Ordering::Acquire) {
            return true;
        }
        {
            let mut slot = self.waker.lock();
            match &*slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // Checked again: close() may have run before the waker was stored.
        self.closing.load(Ordering::Acquire)
    }

    /// Tell the session to close when it is next idle.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }
}

/// All registered client keys.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<(i32, i32), Arc<CancelTarget>>>,
}

/// A client's entry in the registry, removed when this is dropped (the
/// session ended). Owns what it needs, so a session can move between tasks.
pub struct Registration {
    ctx: Arc<crate::context::Context>,
    /// The session's shared state.
    pub target: Arc<CancelTarget>,
}

impl Registration {
    /// Register a new session of `ctx`.
    pub fn new(ctx: Arc<crate::context::Context>, id: u64, peer: crate::client::Peer) -> Self {
        let target = ctx.cancel.register(id, peer);
        Registration { ctx, target }
    }

    /// The pooler's shared state.
    pub fn context(&self) -> &Arc<crate::context::Context> {
        &self.ctx
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let key = self.target.key;
        self.ctx
            .cancel
            .map
            .lock()
            .remove(&(key.process_id, key.secret_key));
    }
}

impl CancelRegistry {
    /// A new registry.
    pub fn new() -> CancelRegistry {
        CancelRegistry::default()
    }

    /// Give a client a fresh random key (see [`Registration::new`]).
    fn register(&self, id: u64, peer: crate::client::Peer) -> Arc<CancelTarget> {
        let mut map = self.map.lock();
        let key = loop {
            let key = BackendKey {
                process_id: rand::random::<i32>() & 0x7fff_ffff,
                secret_key: rand::random(),
            };
            if !map.contains_key(&(key.process_id, key.secret_key)) {
                break key;
            }
        };
        let target = Arc::new(CancelTarget {
            id,
            peer: Some(peer),
            key,
            ..CancelTarget::default()
        });
        map.insert((key.process_id, key.secret_key), target.clone());
        target
    }

    /// Tell every registered session to close when idle (shutdown).
    pub fn close_all(&self) {
        let targets: Vec<Arc<CancelTarget>> = self.map.lock().values().cloned().collect();
        for t in targets {
            t.close();
        }
    }

    /// Forward a CancelRequest for the client with `key`, if it has a server.
    pub async fn cancel(&self, key: BackendKey, timeout: Duration) {
        let linked = {
            let map = self.map.lock();
            map.get(&(key.process_id, key.secret_key))
                .and_then(|t| t.linked.lock().clone())
        };
        let Some((addr, server_key)) = linked else {
            debug!("cancel request for an unknown or idle client ignored");
            return;
        };
        let send = send_cancel(&addr, server_key);
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(())) => debug!(%addr, "cancel request forwarded"),
            Ok(Err(e)) => warn!(%addr, error = %e, "could not forward cancel request"),
            Err(_) => warn!(%addr, "timed out forwarding cancel request"),
        }
    }
}

async fn send_cancel(addr: &ServerAddr, key: BackendKey) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    frontend::cancel_request(key.process_id, key.secret_key, &mut buf);
    match addr {
        ServerAddr::Tcp { host, port } => {
            let mut s = TcpStream::connect((host.as_str(), *port)).await?;
            s.write_all(&buf).await?;
            s.shutdown().await
        }
        ServerAddr::Unix { dir, port } => {
            let mut s = UnixStream::connect(ServerAddr::socket_path(dir, *port)).await?;
            s.write_all(&buf).await?;
            s.shutdown().await
        }
    }
}
