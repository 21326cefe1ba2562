//! Read/write splitting of one session's transactions (transaction and
//! statement mode; `read_write_split`). At the start of each transaction
//! the first unit of work the client sent (a Query, or the
//! extended-protocol messages up to and including a Sync) is classified
//! (`classify.rs`, through the process's cache, `cache.rs`): a provably
//! read-only unit goes to the database's standby pool, anything else to its
//! primary pool. A unit sent to a standby is relayed alone: what the client
//! pipelined after it waits for the next transaction (and its own choice).
//!
//! Per client it keeps what makes later transactions go to the primary:
//! session state (pinned for the session), `SET
//! default_transaction_read_only` (tracked: while on, every transaction
//! can only read), the time of its last write (read_your_writes), and the
//! class of each named prepared statement it parsed (a Bind is classified
//! by its statement, so Parse is classified once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::cache::ClassCache;
use super::classify::{Class, Hint, hint};
use super::shape::Memo;
use crate::config::{Endpoint, ReadYourWrites, RywScope, Split};
use crate::topology::{Rotation, Routed, Topology};

/// Named statements whose class a client keeps at most (more: forgotten,
/// their Binds go to the primary until parsed again).
const MAX_STATEMENTS: usize = 4096;

/// The longest unit sent to a standby (its link is bounded to it, and a
/// bound is short: `client::relay`); a longer one goes to the primary.
const MAX_UNIT: usize = u16::MAX as usize - 1;

/// A session's splitting state.
pub(crate) struct SplitRoute {
    split: Split,
    rotation: Arc<Rotation>,
    /// The user the pools log in as (read_your_writes_scope = user).
    user: String,
    /// SET default_transaction_read_only = on is in force.
    read_only: bool,
    /// The client made session state: the primary for the rest of the
    /// session.
    pinned: bool,
    /// When its last write (a transaction sent to the primary as one)
    /// ended, and the primary's WAL position after it when that was asked
    /// (read_your_writes = wal).
    wrote: Option<(Instant, Option<u64>)>,
    /// read_your_writes = wal, a write whose position was not asked: its
    /// time and the position a later health check found.
    wal_for: Option<(Instant, u64)>,
    /// Named prepared statements parsed, by name (foldhash: looked up at
    /// every Bind).
    statements: HashMap<Box<[u8]>, Class, foldhash::fast::RandomState>,
    /// The last statement text classified, its constants and its class:
    /// a client that sends the same text again, or with other constants
    /// (an unnamed Parse of the same query, a repeated simple query),
    /// skips even the cache's hashing.
    memo: Memo,
    /// Where the current transaction goes (from `choose` to `ended`).
    current: Option<Choice>,
    /// The unit sent to a standby, kept until it is answered (a 25006
    /// sends it to the primary), and whether the next one is such a retry.
    unit: (Vec<u8>, bool),
}

/// Where one transaction goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Choice {
    /// Why (and so where: `Routed::target`).
    pub routed: Routed,
    /// To a standby: the length of the unit to relay alone.
    pub unit: usize,
    /// To a standby: the WAL position its server must have replayed
    /// (read_your_writes = wal), checked once the server is known.
    pub need_lsn: Option<u64>,
    /// It writes, or may: its end starts read-your-writes over.
    pub write: bool,
}

impl Choice {
    fn primary(routed: Routed) -> Choice {
        Choice {
            routed,
            unit: 0,
            need_lsn: None,
            write: matches!(
                routed,
                Routed::Write
                    | Routed::HintPrimary
                    | Routed::Session
                    | Routed::Unparseable
                    | Routed::Retried
            ),
        }
    }

    /// Whether it goes to the standby pool.
    pub(crate) fn goes_to_standby(self) -> bool {
        matches!(self.routed, Routed::Read | Routed::HintStandby)
    }
}

impl SplitRoute {
    /// A session's state, with its database's settings and rotation.
    pub(crate) fn new(split: Split, rotation: Arc<Rotation>, user: &str) -> SplitRoute {
        SplitRoute {
            split,
            rotation,
            user: user.to_string(),
            read_only: false,
            pinned: false,
            wrote: None,
            wal_for: None,
            statements: HashMap::default(),
            memo: Memo::default(),
            current: None,
            unit: (Vec::new(), false),
        }
    }

    /// Where the transaction starting with `buf` (what the client sent so
    /// far, at least one whole message) goes; kept as the current one.
    pub(crate) fn choose(&mut self, buf: &[u8]) -> Choice {
        let c = self.decide(buf);
        self.current = Some(c);
        c
    }

    /// The WAL position the current transaction's standby server must
    /// have replayed, if any.
    pub(crate) fn need_lsn(&self) -> Option<u64> {
        self.current.and_then(|c| c.need_lsn)
    }

    /// The current transaction has its server: to the primary after all
    /// when the standby's was `stale` (read_your_writes = wal). Counts it
    /// where it went.
    pub(crate) fn settled(&mut self, stale: bool) {
        if stale {
            self.current = Some(Self::not_replayed());
        }
        if let Some(c) = self.current {
            self.rotation.count(c.routed);
        }
    }

    /// The bound of the current transaction's link (`Rules::bound`): the
    /// unit's length when it goes to a standby, else 0.
    pub(crate) fn bound(&self) -> u32 {
        match self.current {
            Some(c) if c.goes_to_standby() => u32::try_from(c.unit).unwrap_or(0),
            _ => 0,
        }
    }

    fn decide(&mut self, buf: &[u8]) -> Choice {
        if std::mem::take(&mut self.unit.1) {
            return Choice::primary(Routed::Retried);
        }
        if self.pinned {
            return Choice::primary(Routed::Session);
        }
        let (unit, class, hinted) = match self.unit(buf) {
            Ok(u) => u,
            Err(prepares_reads) => {
                return Choice {
                    write: !prepares_reads,
                    ..Choice::primary(Routed::Unparseable)
                };
            }
        };
        match class {
            Class::Session => {
                self.pinned = true;
                return Choice::primary(Routed::Session);
            }
            Class::SetReadOnly(on) => {
                self.read_only = on;
                return Choice::primary(Routed::Write);
            }
            Class::Unparsed => return Choice::primary(Routed::Unparseable),
            Class::Setting => return Choice::primary(Routed::Setting),
            _ => {}
        }
        let routed = match hinted {
            Some(Hint::Primary) => return Choice::primary(Routed::HintPrimary),
            Some(Hint::Standby) => Routed::HintStandby,
            // With default_transaction_read_only on, every transaction
            // can only read (a write fails on either server, with 25006).
            None if class == Class::Write && !self.read_only => {
                return Choice::primary(Routed::Write);
            }
            None => Routed::Read,
        };
        // read_your_writes = off (the default) skips the call.
        let wrote = match self.split.ryw {
            ReadYourWrites::Off => None,
            _ => self.fresh_write(),
        };
        let need_lsn = match wrote {
            None => None,
            Some(wrote) => match self.split.ryw {
                ReadYourWrites::Off => None,
                ReadYourWrites::Window => return Choice::primary(Routed::ReadYourWrites),
                ReadYourWrites::Wal => match self.wal_position(wrote) {
                    None => return Choice::primary(Routed::ReadYourWrites),
                    Some(lsn) if self.rotation.all_replayed(lsn) => None,
                    Some(lsn) => Some(lsn),
                },
            },
        };
        if !self.rotation.has_standby() && self.split.fallback == crate::config::Fallback::Primary {
            return Choice::primary(Routed::NoStandby);
        }
        Choice {
            routed,
            unit,
            need_lsn,
            write: false,
        }
    }

    /// The last write of the client (or its user) that may not be on the
    /// standbys yet: within read_your_writes_window (window), or any
    /// (wal: the WAL position decides).
    fn fresh_write(&self) -> Option<(Instant, Option<u64>)> {
        if self.split.ryw == ReadYourWrites::Off {
            return None;
        }
        let mine = self.wrote;
        let wrote = match self.split.scope {
            RywScope::Client => mine,
            RywScope::User => mine.max(self.rotation.user_wrote_at(&self.user)),
        }?;
        match self.split.ryw {
            ReadYourWrites::Window => (wrote.0.elapsed() < self.split.window).then_some(wrote),
            _ => Some(wrote),
        }
    }

    /// The primary's WAL position past a write: learned when it committed,
    /// else from the first health check that started after it.
    fn wal_position(&mut self, (at, lsn): (Instant, Option<u64>)) -> Option<u64> {
        if lsn.is_some() {
            return lsn;
        }
        match self.wal_for {
            Some((t, lsn)) if t == at => Some(lsn),
            _ => {
                let lsn = self.rotation.primary_lsn_after(at)?;
                self.wal_for = Some((at, lsn));
                Some(lsn)
            }
        }
    }

    /// Whether the current transaction wants the primary's WAL position
    /// when it ends: a write, with read_your_writes = wal.
    pub(crate) fn wants_commit_lsn(&self) -> bool {
        self.split.ryw == ReadYourWrites::Wal && self.current.is_some_and(|c| c.write)
    }

    /// The current transaction ended, its server given back clean: a
    /// write is remembered (read_your_writes), with the primary's WAL
    /// position after it when asked (`lsn`, read_your_writes = wal).
    pub(crate) fn ended(&mut self, lsn: Option<u64>) {
        let Some(c) = self.current.take() else {
            return;
        };
        if c.write && self.split.ryw != ReadYourWrites::Off {
            self.wrote = Some((Instant::now(), lsn));
            if self.split.scope == RywScope::User {
                self.rotation.user_wrote(&self.user, lsn);
            }
        }
    }

    /// Whether the standby at `addr` is known to have replayed `lsn`.
    pub(crate) fn replayed(topology: &Topology, addr: &Endpoint, lsn: u64) -> bool {
        topology.host(addr).replayed() >= lsn
    }

    /// Keep a copy of the unit about to go to a standby.
    pub(crate) fn keep_unit(&mut self, unit: &[u8]) {
        self.unit.0.clear();
        self.unit.0.extend_from_slice(unit);
    }

    /// The standby refused the kept unit with 25006: the next transaction
    /// (that unit, sent again) goes to the primary. Returns the unit.
    pub(crate) fn retry(&mut self) -> &[u8] {
        self.unit.1 = true;
        &self.unit.0
    }

    /// A standby's server was not far enough (read_your_writes = wal):
    /// the transaction goes to the primary after all.
    pub(crate) fn not_replayed() -> Choice {
        Choice::primary(Routed::ReadYourWrites)
    }

    /// The first unit of work in `buf`: its length, its class (the worst
    /// of its statements') and the hint of its first statement. Err when
    /// it is not all there or is too long: true when what is there only
    /// prepares read-only statements (no write seen).
    fn unit(&mut self, buf: &[u8]) -> Result<(usize, Class, Option<Hint>), bool> {
        let mut pos = 0;
        let mut class = Class::Read;
        let mut first_hint = None;
        let mut unnamed: Option<Class> = None;
        let mut binds = false;
        loop {
            let Some(head) = buf.get(pos..pos + 5) else {
                // Not all there. Only read-only statements prepared so far
                // (asyncpg prepares with Describe and Flush, and sends the
                // Sync with the first execution): no write seen.
                return Err(pos > 0 && !binds && class == Class::Read);
            };
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let end = pos.checked_add(1 + len).ok_or(false)?;
            let body = buf.get(pos + 5..end).ok_or(false)?;
            let first = pos == 0;
            pos = end;
            if pos > MAX_UNIT {
                return Err(false);
            }
            match head[0] {
                b'Q' => {
                    // The query string fills the body, NUL last.
                    let Some((&0, sql)) = body.split_last() else {
                        return Err(false);
                    };
                    first_hint = hint(sql);
                    let c = self.class_of(sql);
                    return Ok((pos, worst(class, c), first_hint));
                }
                b'P' => {
                    let (name, rest) = cstr(body).ok_or(false)?;
                    // The same text as the last statement's (the usual
                    // case): no search for its end.
                    let (sql, c) = match self.memo.get_cstr(rest) {
                        Some((n, c)) => (&rest[..n], c),
                        None => {
                            let sql = &rest[..memchr::memchr(0, rest).ok_or(false)?];
                            (sql, self.class_of(sql))
                        }
                    };
                    if first {
                        first_hint = hint(sql);
                    }
                    if name.is_empty() {
                        unnamed = Some(c);
                    } else {
                        if self.statements.len() >= MAX_STATEMENTS {
                            self.statements.clear();
                        }
                        self.statements.insert(name.into(), c);
                    }
                    class = worst(class, c);
                }
                b'B' => {
                    binds = true;
                    let stmt = cstr(body).and_then(|(_, rest)| cstr(rest)).ok_or(false)?.0;
                    let c = if stmt.is_empty() {
                        unnamed
                    } else {
                        self.statements.get(stmt).copied()
                    };
                    class = worst(class, c.unwrap_or(Class::Write));
                }
                b'D' | b'E' | b'H' | b'C' => {}
                b'S' => return Ok((pos, class, first_hint)),
                _ => return Ok((pos, Class::Write, None)),
            }
        }
    }
}

impl SplitRoute {
    /// The class of one statement text: the last one's again, or the
    /// process's cache's.
    fn class_of(&mut self, sql: &[u8]) -> Class {
        if let Some(class) = self.memo.get(sql) {
            return class;
        }
        let writing = &self.split.writing_functions;
        let class = ClassCache::get().class(sql, writing, &mut self.memo.spans);
        self.memo.set(sql, class);
        class
    }
}

/// A NUL-terminated string at the start of `b`, and what follows it (a
/// plain loop: the names it finds are mostly empty or short).
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = b.iter().position(|&c| c == 0)?;
    Some((&b[..n], &b[n + 1..]))
}

/// The class of a unit with statements of classes `a` and `b`.
#[inline(always)]
fn worst(a: Class, b: Class) -> Class {
    // Reads joining a unit (the common case) change nothing.
    if let Class::Read = b { a } else { ranked(a, b) }
}

fn ranked(a: Class, b: Class) -> Class {
    fn rank(c: Class) -> u8 {
        match c {
            Class::Read => 0,
            Class::ReadOnlyBegin => 1,
            Class::Setting => 2,
            Class::Write => 3,
            Class::Unparsed => 4,
            Class::SetReadOnly(_) => 5,
            Class::Session => 6,
        }
    }
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
