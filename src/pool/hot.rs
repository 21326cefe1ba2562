//! The few pool settings read on every transaction (checkout, check,
//! session, release, checkin), copied out of the pool's `ArcSwap` settings
//! whenever those are stored. Reading them is a relaxed load each; an
//! `ArcSwap` load is ~50 instructions (its debt list), and a transaction
//! took five (callgrind, `COST_CLIENTS=50 benches/cost.sh`).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::PoolSettings;
use crate::config::PoolMode;

/// Per-transaction settings of one pool (see the module header).
#[derive(Debug, Default)]
pub(super) struct Hot {
    round_robin: AtomicBool,
    /// server_lifetime in nanoseconds (0: a server is used once).
    lifetime_ns: AtomicU64,
    /// server_check_delay in nanoseconds; u64::MAX without a check query.
    check_delay_ns: AtomicU64,
    /// server_reset_query_always with a reset query to run.
    reset_always: AtomicBool,
    mode: AtomicU8,
    /// The link timeouts in whole seconds, rounded up (the link's clock
    /// is the 1 Hz sweep): converted once here, not per transaction.
    query_timeout_s: AtomicU32,
    idle_transaction_timeout_s: AtomicU32,
    transaction_timeout_s: AtomicU32,
    max_prepared: AtomicU32,
}

/// What a link of the pool runs under: pool_mode and its timeouts in
/// whole seconds, rounded up (0 = off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkSettings {
    pub mode: PoolMode,
    pub query_timeout_s: u32,
    pub idle_transaction_timeout_s: u32,
    pub transaction_timeout_s: u32,
    /// max_prepared_statements.
    pub max_prepared: u32,
}

/// `d` in whole seconds, rounded up (saturating).
fn secs_ceil(d: Duration) -> u32 {
    u32::try_from(d.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u32::MAX / 4)
}

impl Hot {
    /// Copy the hot fields of `s` (when the settings are stored).
    pub(super) fn set(&self, s: &PoolSettings) {
        self.round_robin.store(s.round_robin, Relaxed);
        self.lifetime_ns.store(nanos(s.lifetime), Relaxed);
        let check = s
            .check_query
            .as_ref()
            .map_or(u64::MAX, |_| nanos(s.check_delay));
        self.check_delay_ns.store(check, Relaxed);
        let reset = s.reset_query_always && !s.reset_query.is_empty();
        self.reset_always.store(reset, Relaxed);
        let mode = match s.mode {
            PoolMode::Session => 0,
            PoolMode::Transaction => 1,
            PoolMode::Statement => 2,
        };
        self.mode.store(mode, Relaxed);
        self.query_timeout_s
            .store(secs_ceil(s.query_timeout), Relaxed);
        let idle = secs_ceil(s.idle_transaction_timeout);
        self.idle_transaction_timeout_s.store(idle, Relaxed);
        let xact = secs_ceil(s.transaction_timeout);
        self.transaction_timeout_s.store(xact, Relaxed);
        self.max_prepared.store(s.max_prepared, Relaxed);
    }

    /// server_round_robin.
    pub(super) fn round_robin(&self) -> bool {
        self.round_robin.load(Relaxed)
    }

    /// server_lifetime in nanoseconds (0: a server is used once).
    pub(super) fn lifetime_ns(&self) -> u64 {
        self.lifetime_ns.load(Relaxed)
    }

    /// Whether a server idle for `idle_ns` must be checked first (there is
    /// a check query and server_check_delay passed).
    pub(super) fn needs_check(&self, idle_ns: u64) -> bool {
        let delay = self.check_delay_ns.load(Relaxed);
        delay != u64::MAX && idle_ns >= delay
    }

    /// Whether the reset query runs after every transaction.
    pub(super) fn reset_always(&self) -> bool {
        self.reset_always.load(Relaxed)
    }

    /// pool_mode and the link timeouts.
    pub(super) fn link(&self) -> LinkSettings {
        let mode = match self.mode.load(Relaxed) {
            0 => PoolMode::Session,
            2 => PoolMode::Statement,
            _ => PoolMode::Transaction,
        };
        LinkSettings {
            mode,
            query_timeout_s: self.query_timeout_s.load(Relaxed),
            idle_transaction_timeout_s: self.idle_transaction_timeout_s.load(Relaxed),
            transaction_timeout_s: self.transaction_timeout_s.load(Relaxed),
            max_prepared: self.max_prepared.load(Relaxed),
        }
    }
}

/// A setting's duration in nanoseconds (saturating).
#[inline]
pub(super) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
