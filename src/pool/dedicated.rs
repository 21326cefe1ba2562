//! Servers of their own for replication connections, as PgBouncer opens
//! them: always a new connection, logged in with the client's
//! `replication` value, its tracked parameters and its `options` in the
//! startup packet (a physical walsender runs no SET), counted in the
//! pool's size and limits while it lives and closed when its client
//! leaves (never reused, never given to anyone else).
//!
//! When the pool is full, an idle server is closed to make room
//! ("evicted", PgBouncer's word); with none idle the client waits in the
//! pool's queue with the others, under query_wait_timeout.

use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use super::checkout::{CheckoutError, Next};
use super::server_pool::Pool;
use crate::server::{ServerConn, ServerEnd};

impl Pool {
    /// A new server for a replication client, with `extra` startup
    /// parameters after the database's own.
    pub(crate) async fn open_dedicated(
        &self,
        extra: Vec<(String, String)>,
    ) -> Result<Box<ServerConn>, CheckoutError> {
        let mut first_wait = None;
        let slot = loop {
            let next = match self.take_slot(first_wait) {
                Next::Wait(rx, since) => {
                    first_wait = Some(since);
                    self.wait(rx, since).await?
                }
                other => other,
            };
            match next {
                Next::Ready(server) => {
                    self.evict_keeping_slot(server);
                    break self.slot();
                }
                Next::Open => break self.slot(),
                Next::Wait(..) | Next::Retry => continue,
            }
        };
        let mut settings = (*self.settings_full()).clone();
        settings.target.startup_params.extend(extra);
        Box::pin(self.open_as(slot, Arc::new(settings), true)).await
    }

    /// A slot for a new server: below the pool size (and the shared
    /// limits) a new one; when full, the idle server unused the longest
    /// (`Ready`: to be closed, its slot reused); else a place in the queue.
    fn take_slot(&self, first_wait: Option<Instant>) -> Next {
        let mut st = self.state.lock();
        if self.control.blocked() {
            return super::checkout::enqueue(&mut st.waiters, first_wait);
        }
        if st.total < self.settings().size {
            match self.acquire_limits() {
                Ok(()) => {
                    st.total += 1;
                    return Next::Open;
                }
                Err(limit) => {
                    let limit = limit.clone();
                    limit.starve(&self.me);
                    let next = super::checkout::enqueue(&mut st.waiters, first_wait);
                    drop(st);
                    self.make_room(&limit);
                    return next;
                }
            }
        }
        match st.idle.pop_front() {
            Some(server) => Next::Ready(server),
            None => super::checkout::enqueue(&mut st.waiters, first_wait),
        }
    }

    /// Close an idle server whose slot a replication connection takes over
    /// (it stays counted, here and in the limits).
    fn evict_keeping_slot(&self, server: Box<ServerConn>) {
        let age = server.created.elapsed().as_secs();
        info!(
            server = server.id,
            "{} closing because: evicted (age={age}s)",
            super::hosts::at_host(self.database(), self.user(), &server.addr)
        );
        let generation = server.generation;
        server.terminate();
        self.events.closed(ServerEnd::Evicted, 1);
        self.forget_generation(generation);
    }
}
