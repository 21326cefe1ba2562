//! A database's read rotation (read/write splitting): which of its
//! standbys take reads, as the health checker last judged their lag; the
//! primary's WAL position at the last check (for read-your-writes by WAL
//! position); the last write of each user (read-your-writes with
//! `read_your_writes_scope = user`); and what routing did, by reason.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Endpoint;

/// Why a transaction went where it went (the counters' order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Primary: it writes, may write, or opens a read-write transaction.
    Write,
    /// Primary: a session setting (SET, RESET, DISCARD), not a write.
    Setting,
    /// Primary: a `/* pgsluice:primary */` hint.
    HintPrimary,
    /// Primary: no standby was eligible (lag, down, none), standby_fallback
    /// = primary.
    NoStandby,
    /// Primary: the client (or its user) wrote a moment ago
    /// (read_your_writes).
    ReadYourWrites,
    /// Primary: the parser rejected it, or it did not fit in what was read.
    Unparseable,
    /// Primary: the client holds session state (temporary table, LISTEN,
    /// session advisory lock, PREPARE, cursor WITH HOLD).
    Session,
    /// Primary: a standby refused it as a write (SQLSTATE 25006) before
    /// anything of its answer reached the client; it was sent again to
    /// the primary.
    Retried,
    /// Standby: provably read-only.
    Read,
    /// Standby: a `/* pgsluice:standby */` hint.
    HintStandby,
}

impl Routed {
    /// Every reason, in counter order.
    pub const ALL: [Routed; 10] = [
        Routed::Write,
        Routed::Setting,
        Routed::HintPrimary,
        Routed::NoStandby,
        Routed::ReadYourWrites,
        Routed::Unparseable,
        Routed::Session,
        Routed::Retried,
        Routed::Read,
        Routed::HintStandby,
    ];

    /// Where it went: "primary" or "standby".
    pub fn target(self) -> &'static str {
        match self {
            Routed::Read | Routed::HintStandby => "standby",
            _ => "primary",
        }
    }

    /// The reason's name, as SHOW ROUTING and /metrics print it.
    pub fn reason(self) -> &'static str {
        match self {
            Routed::Write => "write",
            Routed::Setting => "setting",
            Routed::HintPrimary | Routed::HintStandby => "hint",
            Routed::NoStandby => "lag",
            Routed::ReadYourWrites => "read_your_writes",
            Routed::Unparseable => "unparseable",
            Routed::Session => "session_state",
            Routed::Read => "read",
            Routed::Retried => "retried",
        }
    }
}

/// One database's read rotation.
pub struct Rotation {
    /// Standbys out of the rotation for lag (until under half the limit).
    lagging: Mutex<HashSet<Endpoint>>,
    /// Standbys in the rotation at the last check; -1 before the first.
    eligible: AtomicI64,
    /// The primary's WAL position at the last check, and when that check
    /// started (the position is at or past every commit acknowledged
    /// before then).
    primary: Mutex<Option<(Instant, u64)>>,
    /// The lowest WAL position replayed by a standby in the rotation at
    /// the last check.
    slowest_replay: AtomicU64,
    /// The last write of each user (read_your_writes_scope = user).
    writes: Mutex<HashMap<String, (Instant, Option<u64>)>>,
    /// Transactions routed, by [`Routed`] (in `Routed::ALL` order).
    routed: [AtomicU64; 10],
}

/// What a check found of one standby of the database.
#[derive(Debug, Clone)]
pub struct StandbyCheck {
    /// Where it listens.
    pub endpoint: Endpoint,
    /// Reached, not fenced, and in recovery.
    pub usable: bool,
    /// Bytes behind the primary, if known.
    pub lag_bytes: Option<u64>,
    /// Seconds behind, if known.
    pub lag_seconds: Option<f64>,
    /// Its replayed WAL position.
    pub lsn: u64,
}

/// What changed in a rotation at a check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotationChange {
    /// Standbys that left the rotation for lag.
    pub left: Vec<Endpoint>,
    /// Standbys that came back.
    pub back: Vec<Endpoint>,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("eligible", &self.eligible())
            .field("lagging", &self.lagging_hosts())
            .finish_non_exhaustive()
    }
}

impl Default for Rotation {
    fn default() -> Rotation {
        Rotation {
            lagging: Mutex::new(HashSet::new()),
            eligible: AtomicI64::new(-1),
            primary: Mutex::new(None),
            slowest_replay: AtomicU64::new(0),
            writes: Mutex::new(HashMap::new()),
            routed: Default::default(),
        }
    }
}

impl Rotation {
    /// Whether `endpoint` is out of the rotation for lag.
    pub fn lagging(&self, endpoint: &Endpoint) -> bool {
        let set = self.lagging.lock();
        !set.is_empty() && set.contains(endpoint)
    }

    /// Whether a standby may take reads: one was eligible at the last
    /// check, or no check ran yet.
    pub fn has_standby(&self) -> bool {
        self.eligible.load(Relaxed) != 0
    }

    /// Apply one check of the database's standbys with the limits
    /// (`max_lag`, `max_lag_bytes`; zero: none), and the primary's WAL
    /// position (`None`: no primary answered). A standby leaves the
    /// rotation above a limit and comes back under half of it.
    pub fn checked(
        &self,
        standbys: &[StandbyCheck],
        (max_lag, max_lag_bytes): (Duration, u64),
        primary: Option<(Instant, u64)>,
    ) -> RotationChange {
        let mut change = RotationChange::default();
        let mut set = self.lagging.lock();
        let mut eligible = 0;
        let mut slowest = u64::MAX;
        for s in standbys {
            let over = |factor: f64| {
                let bytes = max_lag_bytes > 0
                    && s.lag_bytes
                        .is_some_and(|b| b as f64 > max_lag_bytes as f64 * factor);
                let time = !max_lag.is_zero()
                    && s.lag_seconds
                        .is_some_and(|t| t > max_lag.as_secs_f64() * factor);
                bytes || time
            };
            let was = set.contains(&s.endpoint);
            let now = if was { over(0.5) } else { over(1.0) };
            if now && !was {
                set.insert(s.endpoint.clone());
                change.left.push(s.endpoint.clone());
            } else if !now && was {
                set.remove(&s.endpoint);
                change.back.push(s.endpoint.clone());
            }
            if s.usable && !now {
                eligible += 1;
                slowest = slowest.min(s.lsn);
            }
        }
        self.eligible.store(eligible, Relaxed);
        self.slowest_replay
            .store(if eligible > 0 { slowest } else { 0 }, Relaxed);
        if primary.is_some() {
            *self.primary.lock() = primary;
        }
        change
    }

    /// The primary's WAL position from a check that started after `t`
    /// (so at or past every commit acknowledged by then), if one ran.
    pub fn primary_lsn_after(&self, t: Instant) -> Option<u64> {
        self.primary
            .lock()
            .and_then(|(at, lsn)| (at > t).then_some(lsn))
    }

    /// Whether every standby in the rotation had replayed `lsn` at the
    /// last check.
    pub fn all_replayed(&self, lsn: u64) -> bool {
        self.eligible.load(Relaxed) > 0 && self.slowest_replay.load(Relaxed) >= lsn
    }

    /// `user` committed a write now, at or before WAL position `lsn` when
    /// known (read_your_writes = wal).
    pub fn user_wrote(&self, user: &str, lsn: Option<u64>) {
        let mut w = self.writes.lock();
        match w.get_mut(user) {
            Some(t) => *t = (Instant::now(), lsn),
            None => {
                w.insert(user.to_string(), (Instant::now(), lsn));
            }
        }
    }

    /// When `user` last wrote, if it did, and that write's WAL position
    /// when known.
    pub fn user_wrote_at(&self, user: &str) -> Option<(Instant, Option<u64>)> {
        self.writes.lock().get(user).copied()
    }

    /// Count a transaction routed.
    pub fn count(&self, r: Routed) {
        self.routed[r as usize].fetch_add(1, Relaxed);
    }

    /// Transactions routed so far, by reason.
    pub fn counts(&self) -> [(Routed, u64); 10] {
        Routed::ALL.map(|r| (r, self.routed[r as usize].load(Relaxed)))
    }

    /// Standbys out of the rotation for lag.
    pub fn lagging_hosts(&self) -> Vec<Endpoint> {
        self.lagging.lock().iter().cloned().collect()
    }

    /// Standbys in the rotation at the last check (-1: none ran yet).
    pub fn eligible(&self) -> i64 {
        self.eligible.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(port: u16, lag_bytes: u64, lag_seconds: f64) -> StandbyCheck {
        StandbyCheck {
            endpoint: Endpoint::Tcp {
                host: "h".into(),
                port,
            },
            usable: true,
            lag_bytes: Some(lag_bytes),
            lag_seconds: Some(lag_seconds),
            lsn: 1000 - lag_bytes,
        }
    }

    #[test]
    fn lagging_standbys_leave_and_come_back_under_half_the_limit() {
        let r = Rotation::default();
        assert!(r.has_standby(), "no check yet: standbys are tried");
        let limits = (Duration::from_secs(10), 0);
        let c = r.checked(&[standby(1, 0, 0.0), standby(2, 0, 12.0)], limits, None);
        assert_eq!(c.left, [standby(2, 0, 0.0).endpoint]);
        assert!(r.lagging(&standby(2, 0, 0.0).endpoint));
        assert_eq!(r.eligible(), 1);
        // 8 s: under the limit, not under half of it: still out.
        let c = r.checked(&[standby(1, 0, 0.0), standby(2, 0, 8.0)], limits, None);
        assert_eq!(c, RotationChange::default());
        let c = r.checked(&[standby(1, 0, 0.0), standby(2, 0, 4.0)], limits, None);
        assert_eq!(c.back, [standby(2, 0, 0.0).endpoint]);
        assert_eq!(r.eligible(), 2);
        // Bytes.
        let c = r.checked(&[standby(1, 600, 0.0)], (Duration::ZERO, 500), None);
        assert_eq!(c.left.len(), 1);
        assert!(!r.has_standby());
        // No limit: nobody lags.
        let r = Rotation::default();
        let c = r.checked(&[standby(1, 999, 1e6)], (Duration::ZERO, 0), None);
        assert!(c.left.is_empty() && r.has_standby());
    }

    #[test]
    fn wal_positions_for_read_your_writes() {
        let r = Rotation::default();
        let before = Instant::now();
        assert_eq!(r.primary_lsn_after(before), None);
        std::thread::sleep(Duration::from_millis(1));
        let check_start = Instant::now();
        r.checked(
            &[standby(1, 10, 0.0), standby(2, 50, 0.0)],
            (Duration::ZERO, 0),
            Some((check_start, 1000)),
        );
        assert_eq!(r.primary_lsn_after(before), Some(1000));
        assert_eq!(r.primary_lsn_after(check_start), None);
        assert!(r.all_replayed(950) && !r.all_replayed(960));
        r.user_wrote("u", Some(7));
        assert!(r.user_wrote_at("u").is_some_and(|(_, l)| l == Some(7)));
        assert!(r.user_wrote_at("v").is_none());
        r.count(Routed::Read);
        r.count(Routed::Read);
        assert_eq!(r.counts()[8], (Routed::Read, 2));
    }
}
