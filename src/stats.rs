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
//! Readers: [`stats_rows`] (SHOW STATS and friends) and [`tick`], which
//! every `stats_period` takes a snapshot of each pool (the base of the
//! averages) and writes the `log_stats` line. Averages follow PgBouncer:
//! counts and bytes per second, and times per transaction / query /
//! assignment, over the window from the snapshot before the last one until
//! now (so over the last period right after a tick). Times are in
//! microseconds. What this module does not own: when a link starts or ends
//! (the relay), the admin console's formatting.

mod link;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::info;

use crate::context::Context;

pub(crate) use link::{LinkStats, clock_ns};

/// Number of counters.
const FIELDS: usize = 12;

/// PgBouncer's statistics, as totals since start (times in microseconds)
/// or, from [`Totals::averages`], as averages. Field order is PgBouncer's
/// column order in SHOW STATS_TOTALS.
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

    fn from_array(a: [u64; FIELDS]) -> Totals {
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

    fn plus(&self, other: &Totals) -> Totals {
        let (a, b) = (self.to_array(), other.to_array());
        Totals::from_array(std::array::from_fn(|i| a[i].wrapping_add(b[i])))
    }

    /// PgBouncer's averages from `older` (taken `window` ago) to `self`:
    /// counts and bytes per second; xact_time per transaction, query_time
    /// per query, wait_time per assignment.
    pub fn averages(&self, older: &Totals, window: Duration) -> Totals {
        let (cur, old) = (self.to_array(), older.to_array());
        let d: [u64; FIELDS] = std::array::from_fn(|i| cur[i].saturating_sub(old[i]));
        let d = Totals::from_array(d);
        let us = window.as_micros();
        if us == 0 {
            return Totals::default();
        }
        let rate = |n: u64| u64::try_from(u128::from(n) * 1_000_000 / us).unwrap_or(u64::MAX);
        let per = |t: u64, n: u64| t.checked_div(n).unwrap_or(0);
        Totals {
            server_assignment_count: rate(d.server_assignment_count),
            xact_count: rate(d.xact_count),
            query_count: rate(d.query_count),
            bytes_received: rate(d.bytes_received),
            bytes_sent: rate(d.bytes_sent),
            xact_time: per(d.xact_time, d.xact_count),
            query_time: per(d.query_time, d.query_count),
            wait_time: per(d.wait_time, d.server_assignment_count),
            client_parse_count: rate(d.client_parse_count),
            server_parse_count: rate(d.server_parse_count),
            bind_count: rate(d.bind_count),
            client_login_count: rate(d.client_login_count),
        }
    }
}

/// Shards per pool: links ending on different threads mostly add to
/// different cache lines.
const SHARDS: usize = 8;

/// One shard: a pool's counters, alone on its (pair of) cache line(s).
#[repr(align(128))]
#[derive(Default)]
struct Shard([AtomicU64; FIELDS]);

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
            periods: Mutex::new(Periods {
                newer: first,
                older: first,
            }),
        }
    }

    /// Add what a link (or anything else) counted: one relaxed
    /// `fetch_add` per non-zero figure, on this thread's shard.
    pub fn add(&self, t: &Totals) {
        #[inline(always)]
        fn add(slot: &AtomicU64, v: u64) {
            if v != 0 {
                slot.fetch_add(v, Relaxed);
            }
        }
        let s = &self.shards[my_shard() % SHARDS].0;
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
            for (s, v) in sum.iter_mut().zip(&shard.0) {
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

/// One row of SHOW STATS: a database's totals and averages, named like
/// PgBouncer's columns (times in microseconds).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabaseStats {
    pub database: String,
    pub total_server_assignment_count: u64,
    pub total_xact_count: u64,
    pub total_query_count: u64,
    pub total_received: u64,
    pub total_sent: u64,
    pub total_xact_time: u64,
    pub total_query_time: u64,
    pub total_wait_time: u64,
    pub total_client_parse_count: u64,
    pub total_server_parse_count: u64,
    pub total_bind_count: u64,
    pub total_client_login_count: u64,
    pub avg_server_assignment_count: u64,
    pub avg_xact_count: u64,
    pub avg_query_count: u64,
    pub avg_recv: u64,
    pub avg_sent: u64,
    pub avg_xact_time: u64,
    pub avg_query_time: u64,
    pub avg_wait_time: u64,
    pub avg_client_parse_count: u64,
    pub avg_server_parse_count: u64,
    pub avg_bind_count: u64,
    pub avg_client_login_count: u64,
}

/// SHOW STATS_TOTALS / STATS_AVERAGES columns after `database`, in the
/// order of [`DatabaseStats::totals`] and [`DatabaseStats::averages`].
pub const STATS_COLUMNS: [&str; FIELDS] = [
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
    "client_login_count",
];

impl DatabaseStats {
    /// A row from totals and averages.
    pub fn new(database: String, t: &Totals, a: &Totals) -> DatabaseStats {
        DatabaseStats {
            database,
            total_server_assignment_count: t.server_assignment_count,
            total_xact_count: t.xact_count,
            total_query_count: t.query_count,
            total_received: t.bytes_received,
            total_sent: t.bytes_sent,
            total_xact_time: t.xact_time,
            total_query_time: t.query_time,
            total_wait_time: t.wait_time,
            total_client_parse_count: t.client_parse_count,
            total_server_parse_count: t.server_parse_count,
            total_bind_count: t.bind_count,
            total_client_login_count: t.client_login_count,
            avg_server_assignment_count: a.server_assignment_count,
            avg_xact_count: a.xact_count,
            avg_query_count: a.query_count,
            avg_recv: a.bytes_received,
            avg_sent: a.bytes_sent,
            avg_xact_time: a.xact_time,
            avg_query_time: a.query_time,
            avg_wait_time: a.wait_time,
            avg_client_parse_count: a.client_parse_count,
            avg_server_parse_count: a.server_parse_count,
            avg_bind_count: a.bind_count,
            avg_client_login_count: a.client_login_count,
        }
    }

    /// The total_* values in SHOW STATS order.
    pub fn totals(&self) -> [u64; FIELDS] {
        [
            self.total_server_assignment_count,
            self.total_xact_count,
            self.total_query_count,
            self.total_received,
            self.total_sent,
            self.total_xact_time,
            self.total_query_time,
            self.total_wait_time,
            self.total_client_parse_count,
            self.total_server_parse_count,
            self.total_bind_count,
            self.total_client_login_count,
        ]
    }

    /// The avg_* values in SHOW STATS order.
    pub fn averages(&self) -> [u64; FIELDS] {
        [
            self.avg_server_assignment_count,
            self.avg_xact_count,
            self.avg_query_count,
            self.avg_recv,
            self.avg_sent,
            self.avg_xact_time,
            self.avg_query_time,
            self.avg_wait_time,
            self.avg_client_parse_count,
            self.avg_server_parse_count,
            self.avg_bind_count,
            self.avg_client_login_count,
        ]
    }
}

/// Per database: current totals, older-snapshot totals, and the start of
/// the averaging window (the earliest older snapshot among its pools).
fn by_database(ctx: &Context) -> BTreeMap<String, (Totals, Totals, Instant)> {
    let mut dbs: BTreeMap<String, (Totals, Totals, Instant)> = BTreeMap::new();
    for pool in ctx.pools.all() {
        let (cur, older) = pool.stats.read();
        let e = dbs.entry(pool.key.database.clone()).or_insert((
            Totals::default(),
            Totals::default(),
            older.at,
        ));
        e.0 = e.0.plus(&cur);
        e.1 = e.1.plus(&older.totals);
        e.2 = e.2.min(older.at);
    }
    dbs
}

fn rows_at(ctx: &Context, now: Instant) -> Vec<DatabaseStats> {
    by_database(ctx)
        .into_iter()
        .map(|(db, (cur, old, since))| {
            let avg = cur.averages(&old, now.saturating_duration_since(since));
            DatabaseStats::new(db, &cur, &avg)
        })
        .collect()
}

/// SHOW STATS: one row per database (sorted by name), totals since start
/// and averages over the last stats_period (up to now).
pub fn stats_rows(ctx: &Context) -> Vec<DatabaseStats> {
    rows_at(ctx, Instant::now())
}

/// SHOW TOTALS: all databases together (`database` is empty).
pub fn stats_totals(ctx: &Context) -> DatabaseStats {
    let now = Instant::now();
    let (mut cur, mut old, mut since) = (Totals::default(), Totals::default(), now);
    for (c, o, s) in by_database(ctx).into_values() {
        cur = cur.plus(&c);
        old = old.plus(&o);
        since = since.min(s);
    }
    let avg = cur.averages(&old, now.saturating_duration_since(since));
    DatabaseStats::new(String::new(), &cur, &avg)
}

/// The log_stats line of a database, PgBouncer's wording.
pub fn log_line(row: &DatabaseStats) -> String {
    format!(
        "stats: {} xacts/s, {} queries/s, {} client parses/s, {} server parses/s, \
         {} binds/s, in {} B/s, out {} B/s, xact {} us, query {} us, wait {} us",
        row.avg_xact_count,
        row.avg_query_count,
        row.avg_client_parse_count,
        row.avg_server_parse_count,
        row.avg_bind_count,
        row.avg_recv,
        row.avg_sent,
        row.avg_xact_time,
        row.avg_query_time,
        row.avg_wait_time,
    )
}

/// End of a stats_period: snapshot every pool (averages are taken from the
/// previous snapshot on) and, with log_stats, log one line per database.
/// Returns the rows as of `now` (averages over the period just ended).
pub fn tick(ctx: &Context, now: Instant) -> Vec<DatabaseStats> {
    for pool in ctx.pools.all() {
        pool.stats.rotate(now);
    }
    let rows = rows_at(ctx, now);
    if ctx.config().general.log_stats {
        for row in &rows {
            info!(database = %row.database, "{}", log_line(row));
        }
    }
    rows
}

/// Call [`tick`] every stats_period (read again each time, so RELOAD
/// applies) until shutdown. Spawned once per pooler.
pub async fn run_stats_period(ctx: Arc<Context>) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let period = ctx
            .config()
            .general
            .stats_period
            .max(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.wait_for(|down| *down) => return,
        }
        tick(&ctx, Instant::now());
    }
}
