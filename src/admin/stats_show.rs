//! SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS: PgBouncer's columns,
//! named and ordered by the counter table (`stats::COUNTERS`; times in
//! microseconds, averages per second over the last stats_period).

use bytes::BytesMut;

use super::rows::{BIGINT, Cell, Table, columns};
use crate::context::Context;
use crate::stats::{COUNTERS, StatsRow};

/// One row per database: every database in the config and every database
/// a pool was made for, with its figures (zeros for a database nothing ran
/// on yet).
pub fn stats_rows(ctx: &Context) -> Vec<StatsRow> {
    let pools = ctx.pools.all();
    let measured = crate::stats::report::rows(all_stats(ctx, &pools));
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
                    ..m.clone()
                },
                None => StatsRow {
                    database,
                    ..StatsRow::default()
                },
            },
        )
        .collect()
}

/// Every pool's statistics by database name, the admin console's
/// (`pgbouncer`) included: what SHOW STATS, SHOW TOTALS and the
/// stats_period tick read.
pub(crate) fn all_stats<'a>(
    ctx: &'a Context,
    pools: &'a [std::sync::Arc<crate::pool::Pool>],
) -> impl Iterator<Item = (&'a str, &'a crate::stats::PoolStats)> + Clone {
    pools
        .iter()
        .map(|p| (p.database(), &p.stats))
        .chain(std::iter::once((super::ADMIN_DB, &ctx.admin_stats)))
}

fn cells(database: &str, parts: &[&[u64]]) -> Vec<Cell> {
    let mut row = vec![Cell::from(database)];
    for c in parts {
        row.extend(c.iter().map(|v| Cell::from(*v)));
    }
    row
}

/// SHOW STATS.
pub(crate) fn show_stats(ctx: &Context, out: &mut BytesMut) {
    let mut names = vec!["database"];
    names.extend(COUNTERS.iter().map(|c| c.total));
    names.extend(COUNTERS.iter().map(|c| c.avg));
    let mut t = Table::new(out, &columns(&names, 1, BIGINT));
    for r in stats_rows(ctx) {
        t.row(cells(&r.database, &[&r.total, &r.avg]));
    }
    t.finish();
}

/// SHOW STATS_TOTALS (`averages` false) or SHOW STATS_AVERAGES.
pub(crate) fn show_stats_part(ctx: &Context, averages: bool, out: &mut BytesMut) {
    let mut names = vec!["database"];
    names.extend(COUNTERS.iter().map(|c| c.column));
    let mut t = Table::new(out, &columns(&names, 1, BIGINT));
    for r in stats_rows(ctx) {
        let part = if averages { &r.avg } else { &r.total };
        t.row(cells(&r.database, &[part]));
    }
    t.finish();
}

/// SHOW TOTALS: SHOW STATS over all databases, as (name, value) rows
/// (averages over all of them, not sums of per-database averages).
pub(crate) fn show_totals(ctx: &Context, out: &mut BytesMut) {
    let pools = ctx.pools.all();
    let all = crate::stats::report::all(all_stats(ctx, &pools));
    let mut t = Table::new(out, &[("name", super::rows::TEXT), ("value", BIGINT)]);
    for (c, v) in COUNTERS.iter().zip(&all.total) {
        t.row(vec![Cell::from(c.total), Cell::from(*v)]);
    }
    for (c, v) in COUNTERS.iter().zip(&all.avg) {
        t.row(vec![Cell::from(c.avg), Cell::from(*v)]);
    }
    t.finish();
}
