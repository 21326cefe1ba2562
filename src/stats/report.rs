//! Reading the statistics per database: SHOW STATS rows (a database's
//! pools summed), SHOW TOTALS (all of them), and the stats_period tick,
//! which snapshots every pool (the base of the averages). The pools are
//! given as (database, statistics) pairs: this module does not know pools.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{FIELDS, PoolStats, Totals};

/// One database's figures: totals since start and averages over the last
/// stats_period (up to now), both in [`super::COUNTERS`] order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsRow {
    /// Database name (empty for SHOW TOTALS' sum of all).
    pub database: String,
    /// Totals since start (times in microseconds).
    pub total: [u64; FIELDS],
    /// Averages: per second, or per transaction / query / assignment.
    pub avg: [u64; FIELDS],
}

impl StatsRow {
    /// The figure under SHOW STATS column `column` (`total_xact_count`,
    /// `avg_recv`, ...; names from the counter table).
    pub fn get(&self, column: &str) -> Option<u64> {
        self.field(column).copied()
    }

    fn field(&self, column: &str) -> Option<&u64> {
        let mut counters = super::COUNTERS.iter().enumerate();
        counters.find_map(|(i, c)| {
            (c.total == column)
                .then_some(&self.total[i])
                .or_else(|| (c.avg == column).then_some(&self.avg[i]))
        })
    }
}

/// `row["total_xact_count"]`: [`StatsRow::get`], panicking on a name that
/// is not a SHOW STATS column.
impl std::ops::Index<&str> for StatsRow {
    type Output = u64;

    fn index(&self, column: &str) -> &u64 {
        self.field(column)
            .unwrap_or_else(|| panic!("no SHOW STATS column {column}"))
    }
}

/// What is summed for one database: current totals, older-snapshot
/// totals, and the start of the averaging window (the earliest older
/// snapshot among its pools).
#[derive(Clone, Copy)]
struct Sum {
    current: Totals,
    older: Totals,
    since: Instant,
}

impl Sum {
    fn new(since: Instant) -> Sum {
        Sum {
            current: Totals::default(),
            older: Totals::default(),
            since,
        }
    }

    fn add(&mut self, current: &Totals, older: &Totals, since: Instant) {
        self.current = self.current.plus(current);
        self.older = self.older.plus(older);
        self.since = self.since.min(since);
    }

    fn row(&self, database: String, now: Instant) -> StatsRow {
        let window = now.saturating_duration_since(self.since);
        StatsRow {
            database,
            total: self.current.to_array(),
            avg: self.current.averages(&self.older, window),
        }
    }
}

fn by_database<'a>(
    pools: impl IntoIterator<Item = (&'a str, &'a PoolStats)>,
    now: Instant,
) -> BTreeMap<&'a str, Sum> {
    let mut dbs: BTreeMap<&str, Sum> = BTreeMap::new();
    for (database, stats) in pools {
        let (current, older) = stats.read();
        dbs.entry(database)
            .or_insert_with(|| Sum::new(now))
            .add(&current, &older.totals, older.at);
    }
    dbs
}

/// SHOW STATS: one row per database of `pools` (sorted by name).
pub fn rows<'a>(pools: impl IntoIterator<Item = (&'a str, &'a PoolStats)>) -> Vec<StatsRow> {
    rows_at(pools, Instant::now())
}

fn rows_at<'a>(
    pools: impl IntoIterator<Item = (&'a str, &'a PoolStats)>,
    now: Instant,
) -> Vec<StatsRow> {
    by_database(pools, now)
        .into_iter()
        .map(|(db, sum)| sum.row(db.to_string(), now))
        .collect()
}

/// SHOW TOTALS: all databases together (`database` is empty; averages over
/// all of them, not sums of per-database averages).
pub fn all<'a>(pools: impl IntoIterator<Item = (&'a str, &'a PoolStats)>) -> StatsRow {
    let now = Instant::now();
    let mut all = Sum::new(now);
    for sum in by_database(pools, now).into_values() {
        all.add(&sum.current, &sum.older, sum.since);
    }
    all.row(String::new(), now)
}

/// End of a stats_period at `now`: snapshot every pool (averages are taken
/// from the previous snapshot on). Returns the rows as of `now` (averages
/// over the period just ended), for the log_stats lines.
pub fn tick<'a>(
    pools: impl IntoIterator<Item = (&'a str, &'a PoolStats)> + Clone,
    now: Instant,
) -> Vec<StatsRow> {
    for (_, stats) in pools.clone() {
        stats.rotate(now);
    }
    rows_at(pools, now)
}
