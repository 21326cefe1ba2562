//! SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS: PgBouncer's columns,
//! filled from [`StatsRow`]s (times in microseconds, averages per second
//! over the last stats_period).

use bytes::BytesMut;

use super::rows::{BIGINT, Cell, Table, columns};
use crate::context::Context;

/// The counters of one database in PgBouncer's column order (see
/// `crate::stats::DatabaseStats::totals`): totals since start, and
/// averages per second over the last stats_period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsRow {
    /// Database name.
    pub database: String,
    /// Totals since start.
    pub total: [u64; 12],
    /// Per second over the last stats_period.
    pub avg: [u64; 12],
}

/// SHOW STATS names of the totals (`total_` + ...).
const TOTAL_NAMES: [&str; 12] = [
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "total_client_login_count",
];

/// SHOW STATS names of the averages.
const AVG_NAMES: [&str; 12] = [
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
    "avg_client_login_count",
];

/// One row per database: every database in the config and every database
/// a pool was made for, with the figures of `crate::stats` (zeros for a
/// database nothing ran on yet).
pub fn stats_rows(ctx: &Context) -> Vec<StatsRow> {
    let measured = crate::stats::stats_rows(ctx);
    let mut names = super::pools::database_names(ctx);
    for m in &measured {
        if !names.contains(&m.database) {
            names.push(m.database.clone());
        }
    }
    names
        .into_iter()
        .map(
            |database| match measured.iter().find(|m| m.database == database) {
                Some(m) => StatsRow {
                    database,
                    total: m.totals(),
                    avg: m.averages(),
                },
                None => StatsRow {
                    database,
                    ..StatsRow::default()
                },
            },
        )
        .collect()
}

fn cells(database: &str, parts: &[&[u64; 12]]) -> Vec<Cell> {
    let mut row = vec![Cell::from(database)];
    for c in parts {
        row.extend(c.iter().map(|v| Cell::from(*v)));
    }
    row
}

/// SHOW STATS.
pub fn show_stats(ctx: &Context, out: &mut BytesMut) {
    let mut names = vec!["database"];
    names.extend(TOTAL_NAMES);
    names.extend(AVG_NAMES);
    let mut t = Table::new(out, &columns(&names, 1, BIGINT));
    for r in stats_rows(ctx) {
        t.row(cells(&r.database, &[&r.total, &r.avg]));
    }
    t.finish();
}

/// SHOW STATS_TOTALS (`averages` false) or SHOW STATS_AVERAGES.
pub fn show_stats_part(ctx: &Context, averages: bool, out: &mut BytesMut) {
    let mut names = vec!["database"];
    names.extend(crate::stats::STATS_COLUMNS);
    let mut t = Table::new(out, &columns(&names, 1, BIGINT));
    for r in stats_rows(ctx) {
        let part = if averages { &r.avg } else { &r.total };
        t.row(cells(&r.database, &[part]));
    }
    t.finish();
}

/// SHOW TOTALS: SHOW STATS over all databases, as (name, value) rows
/// (averages over all of them, not sums of per-database averages).
pub fn show_totals(ctx: &Context, out: &mut BytesMut) {
    let all = crate::stats::stats_totals(ctx);
    let (total, avg) = (all.totals(), all.averages());
    let mut t = Table::new(out, &[("name", super::rows::TEXT), ("value", BIGINT)]);
    for (names, c) in [(&TOTAL_NAMES, &total), (&AVG_NAMES, &avg)] {
        for (n, v) in names.iter().zip(c) {
            t.row(vec![Cell::from(*n), Cell::from(*v)]);
        }
    }
    t.finish();
}
