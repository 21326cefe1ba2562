//! What one link (a client linked to a server) did, counted by the relay.
//!
//! Both directions of a link run in one task, so the fields are only ever
//! written by one side at a time: relaxed loads and stores (plain moves),
//! atomics only so that the shared borrow is `Send`, as in the relay's
//! `Link`. The figures reach the pool with [`LinkStats::take`].
//!
//! Queries and transactions follow PgBouncer: a query starts with the first
//! client message sent while none is open and ends at the ReadyForQuery
//! that leaves nothing outstanding (pipelined requests make one query); a
//! transaction starts with its first query and ends with a query whose
//! last ReadyForQuery says 'I' (a statement outside a transaction block is
//! a transaction). Each is counted, with its time, when it ends. A query
//! costs two clock reads (start, end); the first query of a link starts at
//! the time the session read before checkout, so it costs one here.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::Totals;
use crate::runtime::clock::{clock_ns, ns_to_us};

/// No query (or transaction) open; the assignment already taken.
const NONE: u64 = u64::MAX;

/// The counters of one link. Small on purpose (it lives in the
/// per-transaction future): counts of one link fit in 32 bits (in session
/// mode they are taken at each transaction's end).
pub(crate) struct LinkStats {
    /// Start of the open query on the stats clock, or NONE.
    query_start: AtomicU64,
    /// Start of the open transaction on the stats clock, or NONE.
    xact_start: AtomicU64,
    /// The client's wait for the server, µs; NONE once taken (with the
    /// assignment).
    wait_us: AtomicU64,
    query_ns: AtomicU64,
    xact_ns: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    queries: AtomicU32,
    xacts: AtomicU32,
    parses: AtomicU32,
    binds: AtomicU32,
}

/// `x += n` for a field only this task writes: a load and a store, no
/// locked instruction.
#[inline]
fn bump(x: &AtomicU64, n: u64) {
    x.store(x.load(Relaxed).wrapping_add(n), Relaxed);
}

#[inline]
fn bump32(x: &AtomicU32, n: u32) {
    x.store(x.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Take a field's value, leaving zero.
fn drain(x: &AtomicU64) -> u64 {
    let v = x.load(Relaxed);
    x.store(0, Relaxed);
    v
}

fn drain32(x: &AtomicU32) -> u64 {
    let v = x.load(Relaxed);
    x.store(0, Relaxed);
    u64::from(v)
}

impl LinkStats {
    /// A link whose first request (query and transaction) started at
    /// `start` ([`clock_ns`]), after the client waited `wait_us` for the
    /// server.
    pub(crate) fn new(start: u64, wait_us: u64) -> LinkStats {
        LinkStats {
            query_start: AtomicU64::new(start),
            xact_start: AtomicU64::new(start),
            wait_us: AtomicU64::new(wait_us.min(NONE - 1)),
            query_ns: AtomicU64::new(0),
            xact_ns: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            queries: AtomicU32::new(0),
            xacts: AtomicU32::new(0),
            parses: AtomicU32::new(0),
            binds: AtomicU32::new(0),
        }
    }

    fn now(&self) -> u64 {
        clock_ns()
    }

    /// The client direction forwards `bytes` holding `parses` Parse and
    /// `binds` Bind messages: opens a query (and a transaction) if none is.
    #[inline]
    pub(crate) fn client_sent(&self, bytes: usize, parses: u32, binds: u32) {
        bump(&self.received, bytes as u64);
        if parses | binds != 0 {
            bump32(&self.parses, parses);
            bump32(&self.binds, binds);
        }
        if self.query_start.load(Relaxed) == NONE {
            self.open(self.now());
        }
    }

    fn open(&self, now: u64) {
        self.query_start.store(now, Relaxed);
        if self.xact_start.load(Relaxed) == NONE {
            self.xact_start.store(now, Relaxed);
        }
    }

    /// The server direction forwards `bytes` to the client.
    #[inline]
    pub(crate) fn server_sent(&self, bytes: usize) {
        bump(&self.sent, bytes as u64);
    }

    /// ReadyForQuery came and left nothing outstanding: the open query
    /// ends; so does the transaction when `idle` (status 'I'). With
    /// `more` (messages already sent await a later Sync) the next query
    /// starts at once. True when a transaction ended.
    #[inline]
    pub(crate) fn answered(&self, idle: bool, more: bool) -> bool {
        let start = self.query_start.load(Relaxed);
        if start == NONE {
            // An answer nobody timed (after a COPY's end, say).
            return false;
        }
        let now = self.now();
        bump32(&self.queries, 1);
        bump(&self.query_ns, now.saturating_sub(start));
        self.query_start.store(NONE, Relaxed);
        let mut ended = false;
        if idle {
            let x = self.xact_start.load(Relaxed);
            if x != NONE {
                bump32(&self.xacts, 1);
                bump(&self.xact_ns, now.saturating_sub(x));
                self.xact_start.store(NONE, Relaxed);
                ended = true;
            }
        }
        if more {
            self.open(now);
        }
        ended
    }

    /// Everything counted (times rounded to µs), at the link's end: read
    /// only, no need to leave zeros behind.
    pub(crate) fn finish(&self) -> Totals {
        let parses = u64::from(self.parses.load(Relaxed));
        let wait = self.wait_us.load(Relaxed);
        let assigned = wait != NONE;
        Totals {
            server_assignment_count: u64::from(assigned),
            xact_count: u64::from(self.xacts.load(Relaxed)),
            query_count: u64::from(self.queries.load(Relaxed)),
            bytes_received: self.received.load(Relaxed),
            bytes_sent: self.sent.load(Relaxed),
            xact_time: ns_to_us(self.xact_ns.load(Relaxed)),
            query_time: ns_to_us(self.query_ns.load(Relaxed)),
            wait_time: if assigned { wait } else { 0 },
            client_parse_count: parses,
            server_parse_count: parses,
            bind_count: u64::from(self.binds.load(Relaxed)),
            client_login_count: 0,
        }
    }

    /// Everything counted since the last take (times rounded to µs),
    /// leaving zeros; open queries and transactions stay open.
    pub(crate) fn take(&self) -> Totals {
        let parses = drain32(&self.parses);
        let wait = self.wait_us.load(Relaxed);
        self.wait_us.store(NONE, Relaxed);
        let assigned = wait != NONE;
        Totals {
            server_assignment_count: u64::from(assigned),
            xact_count: drain32(&self.xacts),
            query_count: drain32(&self.queries),
            bytes_received: drain(&self.received),
            bytes_sent: drain(&self.sent),
            xact_time: ns_to_us(drain(&self.xact_ns)),
            query_time: ns_to_us(drain(&self.query_ns)),
            wait_time: if assigned { wait } else { 0 },
            client_parse_count: parses,
            // Until prepared statements are tracked, every client Parse
            // goes to the server as it is.
            server_parse_count: parses,
            bind_count: drain32(&self.binds),
            client_login_count: 0,
        }
    }
}
