//! The registry of client sessions, keyed by the BackendKeyData the pooler
//! gave them. It serves cancel requests: while a client is linked to a
//! server, a CancelRequest carrying its key is forwarded on a new connection
//! to that server with the server's key (ignored when it has no server). It
//! also lets the pooler tell idle sessions to close (shutdown) without each
//! of them holding a wait future: an idle session registers its waker here.
//! A session idle for a while is parked here, with no task at all: the entry
//! itself is the waker its socket calls, and it starts a task again (see
//! `client::session` and [`CancelRegistry::sweep`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Wake, Waker};
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
    /// Registry epoch of the session's last request.
    last_active: AtomicU64,
    /// The sweeper asked the session to park when next idle.
    park: AtomicBool,
    /// The client while it is parked (no task); boxed so that the entries
    /// of clients that are not parked stay small.
    parked: Mutex<Option<Box<crate::client::Parked>>>,
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

    /// The session starts a request in registry epoch `epoch`.
    pub fn active(&self, epoch: u64) {
        self.last_active.store(epoch, Ordering::Relaxed);
        self.park.store(false, Ordering::Relaxed);
    }

    /// Whether the sweeper asked the session to park (clears the request).
    pub fn take_park_request(&self) -> bool {
        self.park.swap(false, Ordering::Relaxed)
    }

    /// Keep `client` here until its socket (or a close) wakes this entry.
    /// `ready` is called with this entry as the waker, while the client is
    /// already in place (so a wake-up cannot be missed); when it reports
    /// the client ready at once, the client is given back instead.
    pub fn park(
        self: &Arc<Self>,
        client: crate::client::Parked,
        ready: impl FnOnce(&mut crate::client::Parked, &mut Context<'_>) -> bool,
    ) -> Option<crate::client::Parked> {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut slot = self.parked.lock();
        let parked = slot.insert(Box::new(client));
        if ready(parked, &mut cx) {
            return slot.take().map(|c| *c);
        }
        None
    }

    /// Tell the session to close when it is next idle.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }
}

/// A parked session's socket (or a close) wakes its entry: the client goes
/// back to a task of its own.
impl Wake for CancelTarget {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let client = self.parked.lock().take();
        if let Some(client) = client {
            crate::client::resume(*client);
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
        // The entry may hold a waker pointing at itself (a parked client's):
        // drop it, or the entry would keep itself alive.
        self.target.waker.lock().take();
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

    /// Ask every session idle since before the previous sweep to park, and
    /// start a new epoch. Called about once a second.
    pub fn sweep(&self, epoch: &AtomicU64) {
        let now = epoch.fetch_add(1, Ordering::Relaxed);
        let targets: Vec<Arc<CancelTarget>> = self.map.lock().values().cloned().collect();
        for t in targets {
            let idle = t.last_active.load(Ordering::Relaxed) < now;
            if !idle || t.parked.lock().is_some() || t.park.swap(true, Ordering::Relaxed) {
                continue;
            }
            let waker = t.waker.lock().clone();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// (registered sessions, parked sessions), for the admin console and tests.
    pub fn counts(&self) -> (usize, usize) {
        let map = self.map.lock();
        let parked = map.values().filter(|t| t.parked.lock().is_some()).count();
        (map.len(), parked)
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
