//! Server connections opened and closed, by reason, per pool (for the
//! Prometheus endpoint). Counted where connections open and close, never
//! per transaction.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::server::ServerEnd;

/// Opened and closed server connections of one pool.
#[derive(Debug, Default)]
pub struct ServerEvents {
    opened: AtomicU64,
    closed: [AtomicU64; ServerEnd::ALL.len()],
    moved: AtomicU64,
}

impl ServerEvents {
    pub(super) fn opened(&self) {
        self.opened.fetch_add(1, Relaxed);
    }

    pub(super) fn closed(&self, reason: ServerEnd, n: usize) {
        self.closed[reason as usize].fetch_add(n as u64, Relaxed);
    }

    /// Connections opened so far.
    pub(crate) fn opened_total(&self) -> u64 {
        self.opened.load(Relaxed)
    }

    pub(super) fn moved(&self) {
        self.moved.fetch_add(1, Relaxed);
    }

    /// Times a connection moved to another shard's reactor (`crate::runtime::shard`).
    pub fn moved_total(&self) -> u64 {
        self.moved.load(Relaxed)
    }

    /// Connections closed so far for `reason`.
    pub(crate) fn closed_total(&self, reason: ServerEnd) -> u64 {
        self.closed[reason as usize].load(Relaxed)
    }
}
