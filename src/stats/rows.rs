//! Reading the statistics: SHOW STATS rows per database (pools summed),
//! SHOW TOTALS, and the stats_period tick with its log_stats line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::info;

use super::{FIELDS, Totals};
use crate::context::Context;

/// One row of SHOW STATS: a database's totals and averages, each field
/// named as PgBouncer's column (times in microseconds; averages per second
/// over the last stats_period, times per transaction / query /
/// assignment).
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

/// Call [`tick`] every stats_period, counted in ticks of `ticker` (1 s;
/// the period is read again each time, so RELOAD applies) until shutdown.
/// Spawned once per pooler.
pub async fn run_stats_period(ctx: Arc<Context>, mut ticker: watch::Receiver<u64>) {
    let mut shutdown = ctx.shutdown.clone();
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            changed = ticker.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|down| *down) => return,
        }
        ticks += 1;
        let period = ctx.config().general.stats_period;
        let every = period.as_secs_f64().ceil().max(1.0) as u64;
        if ticks >= every {
            ticks = 0;
            tick(&ctx, Instant::now());
        }
    }
}
