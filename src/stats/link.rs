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

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{Totals, micros};

/// No query (or transaction) open.
const NONE: u64 = u64::MAX;

/// The counters of one link.
pub(crate) struct LinkStats {
    /// Time zero of this link's clock (when its first request was seen
    /// with a server assigned).
    base: Instant,
    /// Start of the open query, ns since `base`, or NONE.
    query_start: AtomicU64,
    /// Start of the open transaction, ns since `base`, or NONE.
    xact_start: AtomicU64,
    /// Assignments not yet taken (1 until the first `take`).
    assignments: AtomicU64,
    /// The client's wait for the server, µs, until the first `take`.
    wait_us: AtomicU64,
    queries: AtomicU64,
    query_ns: AtomicU64,
    xacts: AtomicU64,
    xact_ns: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    parses: AtomicU64,
    binds: AtomicU64,
}

/// `x += n` for a field only this task writes: a load and a store, no
/// locked instruction.
#[inline]
fn bump(x: &AtomicU64, n: u64) {
    x.store(x.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Take a field's value, leaving zero.
fn drain(x: &AtomicU64) -> u64 {
    let v = x.load(Relaxed);
    x.store(0, Relaxed);
    v
}

impl LinkStats {
    /// A link whose first request (query and transaction) started at
    /// `start`, after the client waited `wait` for the server.
    pub fn new(start: Instant, wait: Duration) -> LinkStats {
        LinkStats {
            base: start,
            query_start: AtomicU64::new(0),
            xact_start: AtomicU64::new(0),
            assignments: AtomicU64::new(1),
            wait_us: AtomicU64::new(micros(wait)),
            queries: AtomicU64::new(0),
            query_ns: AtomicU64::new(0),
            xacts: AtomicU64::new(0),
            xact_ns: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            parses: AtomicU64::new(0),
            binds: AtomicU64::new(0),
        }
    }

    /// Now, in ns since `base` (one clock read).
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(NONE - 1)
    }

    /// The client direction forwards `bytes` holding `parses` Parse and
    /// `binds` Bind messages: opens a query (and a transaction) if none is.
    #[inline]
    pub fn client_sent(&self, bytes: usize, parses: u32, binds: u32) {
        bump(&self.received, bytes as u64);
        if parses | binds != 0 {
            bump(&self.parses, u64::from(parses));
            bump(&self.binds, u64::from(binds));
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
    pub fn server_sent(&self, bytes: usize) {
        bump(&self.sent, bytes as u64);
    }

    /// ReadyForQuery came and left nothing outstanding: the open query
    /// ends; so does the transaction when `idle` (status 'I'). With
    /// `more` (messages already sent await a later Sync) the next query
    /// starts at once. True when a transaction ended.
    pub fn answered(&self, idle: bool, more: bool) -> bool {
        let start = self.query_start.load(Relaxed);
        if start == NONE {
            // An answer nobody timed (after a COPY's end, say).
            return false;
        }
        let now = self.now();
        bump(&self.queries, 1);
        bump(&self.query_ns, now.saturating_sub(start));
        self.query_start.store(NONE, Relaxed);
        let mut ended = false;
        if idle {
            let x = self.xact_start.load(Relaxed);
            if x != NONE {
                bump(&self.xacts, 1);
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

    /// Everything counted since the last take (times rounded to µs),
    /// leaving zeros; open queries and transactions stay open.
    pub fn take(&self) -> Totals {
        let parses = drain(&self.parses);
        Totals {
            server_assignment_count: drain(&self.assignments),
            xact_count: drain(&self.xacts),
            query_count: drain(&self.queries),
            bytes_received: drain(&self.received),
            bytes_sent: drain(&self.sent),
            xact_time: ns_to_us(drain(&self.xact_ns)),
            query_time: ns_to_us(drain(&self.query_ns)),
            wait_time: drain(&self.wait_us),
            client_parse_count: parses,
            // Until prepared statements are tracked, every client Parse
            // goes to the server as it is.
            server_parse_count: parses,
            bind_count: drain(&self.binds),
            client_login_count: 0,
        }
    }
}

/// Nanoseconds to microseconds, rounded.
fn ns_to_us(ns: u64) -> u64 {
    ns.saturating_add(500) / 1000
}
