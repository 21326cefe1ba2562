//! Server connections opened and closed, by reason, per pool (for the
//! Prometheus endpoint). Counted where connections open and close, never
//! per transaction.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a server connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Older than server_lifetime.
    Lifetime,
    /// Idle longer than server_idle_timeout.
    IdleTimeout,
    /// Failed server_check_query.
    CheckFailed,
    /// Closed by PostgreSQL (or broken) while idle.
    Broken,
    /// An error, a client gone mid-transaction, a timeout, a failed reset.
    Error,
    /// RECONNECT, a reload that changed the connection, PAUSE, KILL.
    Admin,
    /// Closed to make room for another pool under a shared limit.
    Evicted,
    /// Its session was aborted (KILL) while it was in use.
    Aborted,
    /// Shutdown, or its pool was freed.
    Shutdown,
}

impl CloseReason {
    /// Every reason, in label order.
    pub const ALL: [CloseReason; 9] = [
        CloseReason::Lifetime,
        CloseReason::IdleTimeout,
        CloseReason::CheckFailed,
        CloseReason::Broken,
        CloseReason::Error,
        CloseReason::Admin,
        CloseReason::Evicted,
        CloseReason::Aborted,
        CloseReason::Shutdown,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Lifetime => "lifetime",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::CheckFailed => "check_failed",
            CloseReason::Broken => "broken",
            CloseReason::Error => "error",
            CloseReason::Admin => "admin",
            CloseReason::Evicted => "evicted",
            CloseReason::Aborted => "aborted",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Opened and closed server connections of one pool.
#[derive(Debug, Default)]
pub struct ServerEvents {
    opened: AtomicU64,
    closed: [AtomicU64; 9],
    moved: AtomicU64,
}

impl ServerEvents {
    pub(super) fn opened(&self) {
        self.opened.fetch_add(1, Relaxed);
    }

    pub(super) fn closed(&self, reason: CloseReason, n: usize) {
        self.closed[reason as usize].fetch_add(n as u64, Relaxed);
    }

    /// Connections opened so far.
    pub fn opened_total(&self) -> u64 {
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
    pub fn closed_total(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize].load(Relaxed)
    }
}
