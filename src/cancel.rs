//! Cancel requests. Each client gets a random BackendKeyData from the
//! pooler; while it is linked to a server, a CancelRequest carrying that key
//! is forwarded on a new connection to that server with the server's key.
//! When the client has no server, the request is ignored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tracing::{debug, warn};

use crate::server::{BackendKey, ServerAddr};

/// Where a client's cancel request must go right now.
#[derive(Default)]
pub struct CancelTarget {
    linked: Mutex<Option<(Arc<ServerAddr>, BackendKey)>>,
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
}

/// All registered client keys.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<(i32, i32), Arc<CancelTarget>>>,
}

/// Unregisters a client's key when its session ends.
pub struct Registration<'a> {
    registry: &'a CancelRegistry,
    /// The key given to the client.
    pub key: BackendKey,
    /// Its cancel target.
    pub target: Arc<CancelTarget>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry
            .map
            .lock()
            .remove(&(self.key.process_id, self.key.secret_key));
    }
}

impl CancelRegistry {
    /// A new registry.
    pub fn new() -> CancelRegistry {
        CancelRegistry::default()
    }

    /// Give a client a fresh random key.
    pub fn register(&self) -> Registration<'_> {
        let target = Arc::new(CancelTarget::default());
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
        map.insert((key.process_id, key.secret_key), target.clone());
        Registration {
            registry: self,
            key,
            target,
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
