//! Statistics behind SHOW STATS (and later the Prometheus endpoint):
//! PgBouncer's counters, kept per pool and summed per database when read.
//!
//! Writers: the relay accumulates what one link did in a [`LinkStats`]
//! (plain relaxed loads and stores, no lock, no allocation, two clock reads
//! per query) and adds it to its pool's [`PoolStats`] once, when the link
//! ends (in session mode also at each transaction end, so that long
//! sessions show up). A pool's counters are sharded over cache-line-sized
//! slots picked per thread, so that links ending on different cores do not
//! fight over one cache line.
//!
//! Readers: [`report`] (SHOW STATS rows per database, and the
//! stats_period [`report::tick`], which takes a snapshot of each pool, the
//! base of the averages). Every counter is defined once, in [`COUNTERS`]
//! (`counters.rs`): column names, averages, metric, log line. Averages follow PgBouncer:
//! counts and bytes per second, and times per transaction / query /
//! assignment, over the window from the snapshot before the last one until
//! now (so over the last period right after a tick). Times are in
//! microseconds. What this module does not own: when a link starts or ends
//! (the relay), the admin console's formatting.

mod counters;
pub(crate) mod histogram;
mod link;
pub mod report;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use parking_lot::Mutex;

pub(crate) use counters::{COUNTERS, Unit, log_line};
pub(crate) use link::LinkStats;
pub use report::StatsRow;

/// Number of counters.
pub const FIELDS: usize = 12;

/// PgBouncer's statistics as totals since start (times in microseconds).
/// Field order is [`COUNTERS`]' (PgBouncer's column order in SHOW
/// STATS_TOTALS): [`to_array`](Self::to_array) is the one place that
/// maps fields to that order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Times a server was assigned to a client (one per link).
    pub server_assignment_count: u64,
    /// Transactions (a statement outside a transaction block is one).
    pub xact_count: u64,
    /// Queries: periods from a request to the ReadyForQuery that leaves
    /// nothing outstanding (one per Query or Sync unless pipelined).
    pub query_count: u64,
    /// Bytes received from clients (forwarded to servers).
    pub bytes_received: u64,
    /// Bytes sent to clients (forwarded from servers).
    pub bytes_sent: u64,
    /// Time in transactions, µs.
    pub xact_time: u64,
    /// Time in queries, µs.
    pub query_time: u64,
    /// Time clients waited for a server, µs.
    pub wait_time: u64,
    /// Parse messages sent by clients.
    pub client_parse_count: u64,
    /// Parse messages sent to servers (equal to the clients' until
    /// prepared statements are tracked).
    pub server_parse_count: u64,
    /// Bind messages sent by clients.
    pub bind_count: u64,
    /// Successful client logins.
    pub client_login_count: u64,
}

impl Totals {
    /// The values in PgBouncer's column order.
    pub fn to_array(&self) -> [u64; FIELDS] {
        [
            self.server_assignment_count,
            self.xact_count,
            self.query_count,
            self.bytes_received,
            self.bytes_sent,
            self.xact_time,
            self.query_time,
            self.wait_time,
            self.client_parse_count,
            self.server_parse_count,
            self.bind_count,
            self.client_login_count,
        ]
    }

    pub(crate) fn from_array(a: [u64; FIELDS]) -> Totals {
        let [
            server_assignment_count,
            xact_count,
            query_count,
            bytes_received,
            bytes_sent,
            xact_time,
            query_time,
            wait_time,
            client_parse_count,
            server_parse_count,
            bind_count,
            client_login_count,
        ] = a;
        Totals {
            server_assignment_count,
            xact_count,
            query_count,
            bytes_received,
            bytes_sent,
            xact_time,
            query_time,
            wait_time,
            client_parse_count,
            server_parse_count,
            bind_count,
            client_login_count,
        }
    }

    pub(crate) fn plus(&self, other: &Totals) -> Totals {
        let (a, b) = (self.to_array(), other.to_array());
        Totals::from_array(std::array::from_fn(|i| a[i].wrapping_add(b[i])))
    }
}

/// Shards per pool: links ending on different threads mostly add to
/// different cache lines.
const SHARDS: usize = 8;

/// One shard: a pool's counters, alone on its cache line(s) (128 bytes on
/// x86-64 and aarch64, whose prefetchers pull lines in pairs).
type Shard = crossbeam_utils::CachePadded<[AtomicU64; FIELDS]>;

/// The shard of the current thread (assigned round robin on first use).
#[inline]
fn my_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    MINE.with(|m| {
        let mut shard = m.get();
        if shard == usize::MAX {
            shard = NEXT.fetch_add(1, Relaxed) % SHARDS;
            m.set(shard);
        }
        shard
    })
}

/// A snapshot of a pool's totals, the base of averages.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    totals: Totals,
}

/// The two latest snapshots (PgBouncer's newer_stats and older_stats).
struct Periods {
    newer: Snapshot,
    older: Snapshot,
}

/// The counters of one pool.
pub struct PoolStats {
    shards: [Shard; SHARDS],
    /// Latency histograms, sharded the same way (boxed: ~3 kB).
    histograms: Box<[histogram::Histograms; SHARDS]>,
    periods: Mutex<Periods>,
}

impl Default for PoolStats {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolStats {
    /// Zero counters; averages start from now.
    pub fn new() -> PoolStats {
        let first = Snapshot {
            at: Instant::now(),
            totals: Totals::default(),
        };
        PoolStats {
            shards: Default::default(),
            histograms: Default::default(),
            periods: Mutex::new(Periods {
                newer: first,
                older: first,
            }),
        }
    }

    /// Add what a link (or anything else) counted: one relaxed
    /// `fetch_add` per non-zero figure, on this thread's shard.
    #[inline(never)]
    pub fn add(&self, t: &Totals) {
        #[inline(always)]
        fn add(slot: &AtomicU64, v: u64) {
            if v != 0 {
                slot.fetch_add(v, Relaxed);
            }
        }
        let shard = my_shard() % SHARDS;
        self.observe(shard, t);
        let s = &*self.shards[shard];
        add(&s[0], t.server_assignment_count);
        add(&s[1], t.xact_count);
        add(&s[2], t.query_count);
        add(&s[3], t.bytes_received);
        add(&s[4], t.bytes_sent);
        add(&s[5], t.xact_time);
        add(&s[6], t.query_time);
        // Usually all zero: one test for the lot.
        if t.wait_time | t.client_parse_count | t.bind_count | t.client_login_count != 0 {
            add(&s[7], t.wait_time);
            add(&s[8], t.client_parse_count);
            add(&s[9], t.server_parse_count);
            add(&s[10], t.bind_count);
            add(&s[11], t.client_login_count);
        }
    }

    /// Histogram observations of what a link published: its transactions
    /// and queries (several of one link are observed at their mean time),
    /// and its wait for a server.
    #[inline]
    fn observe(&self, shard: usize, t: &Totals) {
        use histogram::Which;
        let h = &self.histograms[shard];
        let pairs = [
            (Which::Transaction, t.xact_time, t.xact_count),
            (Which::Query, t.query_time, t.query_count),
            (Which::Wait, t.wait_time, t.server_assignment_count),
        ];
        for (which, total, n) in pairs {
            if let Some(mean) = total.checked_div(n) {
                h.observe(which, mean, n);
            }
        }
    }

    /// One histogram's bucket counts (cumulative, last = `+Inf`).
    pub fn histogram(&self, which: histogram::Which) -> Vec<u64> {
        let mut counts = [0u64; histogram::buckets()];
        for h in self.histograms.iter() {
            h.sum_into(which, &mut counts);
        }
        histogram::cumulative(counts).to_vec()
    }

    /// Count a successful client login (client_login_count).
    pub fn count_login(&self) {
        self.add(&Totals {
            client_login_count: 1,
            ..Totals::default()
        });
    }

    /// Count a server assignment that no link followed (the client left,
    /// or the parameter sync failed), with the client's wait.
    pub fn count_assignment(&self, wait_us: u64) {
        self.add(&Totals {
            server_assignment_count: 1,
            wait_time: wait_us,
            ..Totals::default()
        });
    }

    /// The totals since the pool was made.
    pub fn totals(&self) -> Totals {
        let mut sum = [0u64; FIELDS];
        for shard in &self.shards {
            for (s, v) in sum.iter_mut().zip(shard.iter()) {
                *s = s.wrapping_add(v.load(Relaxed));
            }
        }
        Totals::from_array(sum)
    }

    /// Take a snapshot at `now`: the newer one becomes the older.
    fn rotate(&self, now: Instant) {
        let totals = self.totals();
        let mut p = self.periods.lock();
        p.older = p.newer;
        p.newer = Snapshot { at: now, totals };
    }

    /// The current totals and the older snapshot (the averages' base).
    fn read(&self) -> (Totals, Snapshot) {
        let totals = self.totals();
        (totals, self.periods.lock().older)
    }
}

/// The index in [`COUNTERS`] of the counter whose column is `column`.
pub fn index_of(column: &str) -> Option<usize> {
    COUNTERS.iter().position(|c| c.column == column)
}
