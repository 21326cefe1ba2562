//! Taking a server from a pool: an idle one, a new one while below the pool
//! size, or a place in the FIFO queue until one is handed over.
//!
//! Cancel safety: a checkout future may be dropped at any await (the client
//! left, shutdown). Guards make sure a slot or a server handed to a waiter
//! that is gone goes back to the pool instead of leaking.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::debug;

use super::server_pool::{Grant, Pool};
use crate::server::{self, ServerConn, ServerError};

/// Why no server could be had.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// Waited query_wait_timeout without getting a server.
    #[error("query_wait_timeout: no server connection became available within {0:?}")]
    WaitTimeout(Duration),
    /// Opening a new server connection failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// A counted slot that is freed on drop unless used.
struct SlotGuard<'a> {
    pool: &'a Pool,
    armed: bool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.free_slot();
        }
    }
}

/// A place in the waiting queue; on drop, anything handed over meanwhile
/// goes back to the pool.
struct WaitGuard<'a> {
    pool: &'a Pool,
    rx: oneshot::Receiver<Grant>,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.rx.close();
        match self.rx.try_recv() {
            Ok(Grant::Server(s)) => self.pool.checkin(s),
            Ok(Grant::Slot) => self.pool.free_slot(),
            Err(_) => {}
        }
    }
}

enum Next {
    Ready(Box<ServerConn>),
    Open,
    Wait(oneshot::Receiver<Grant>),
}

impl Pool {
    /// Get a server for a client: idle (LIFO), new (below size), or after
    /// waiting in FIFO order for at most query_wait_timeout.
    pub async fn checkout(&self) -> Result<Box<ServerConn>, CheckoutError> {
        let wait = self.settings.wait_timeout;
        let deadline = (!wait.is_zero()).then(|| Instant::now() + wait);
        loop {
            let next = self.try_take();
            let slot = match next {
                Next::Ready(s) => return Ok(s),
                Next::Open => SlotGuard {
                    pool: self,
                    armed: true,
                },
                Next::Wait(rx) => {
                    let mut guard = WaitGuard { pool: self, rx };
                    let got = match deadline {
                        Some(d) => tokio::time::timeout_at(d, &mut guard.rx).await,
                        None => Ok((&mut guard.rx).await),
                    };
                    match got {
                        Ok(Ok(Grant::Server(s))) => return Ok(s),
                        Ok(Ok(Grant::Slot)) => SlotGuard {
                            pool: self,
                            armed: true,
                        },
                        // The sender is only dropped with the pool itself.
                        Ok(Err(_)) => continue,
                        // Dropping the guard returns anything sent meanwhile.
                        Err(_) => return Err(CheckoutError::WaitTimeout(wait)),
                    }
                }
            };
            // Boxed: connecting is rare, and its state would otherwise be
            // carried by every checkout future.
            return Box::pin(self.open(slot)).await;
        }
    }

    /// One short critical section: no await inside.
    fn try_take(&self) -> Next {
        let mut broken = Vec::new();
        let next = {
            let mut st = self.state.lock();
            loop {
                match st.idle.pop() {
                    Some(s) if s.is_broken() => {
                        st.total -= 1;
                        broken.push(s);
                    }
                    Some(s) => break Next::Ready(s),
                    None if st.total < self.settings.size => {
                        st.total += 1;
                        break Next::Open;
                    }
                    None => {
                        let (tx, rx) = oneshot::channel();
                        st.waiters.push_back(tx);
                        break Next::Wait(rx);
                    }
                }
            }
        };
        for s in broken {
            debug!(
                server = s.id,
                "dropping a server connection closed while idle"
            );
        }
        next
    }

    async fn open(&self, mut slot: SlotGuard<'_>) -> Result<Box<ServerConn>, CheckoutError> {
        let creds = self.credentials();
        let s = &self.settings;
        let (mut conn, reported) = server::connect(&s.target, &creds, s.connect_timeout).await?;
        if let Some(q) = &s.connect_query {
            conn.run_quiet(q).await?;
        }
        self.set_welcome(reported);
        debug!(server = conn.id, addr = %conn.addr, "new server connection");
        slot.armed = false;
        Ok(conn)
    }

    /// Make sure the pool knows its servers' ParameterStatus, opening a
    /// connection if none logged in yet.
    pub async fn ensure_welcome(
        &self,
    ) -> Result<std::sync::Arc<Vec<(String, String)>>, CheckoutError> {
        if let Some(w) = self.welcome() {
            return Ok(w);
        }
        let server = Box::pin(self.checkout()).await?;
        self.checkin(server);
        self.welcome()
            .ok_or(CheckoutError::Server(ServerError::Closed))
    }
}
