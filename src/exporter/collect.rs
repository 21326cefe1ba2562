//! The metrics page, computed when scraped: pool figures (the SHOW POOLS
//! figures, one pool lock each, as the console takes them) and each pool's
//! SHOW STATS totals (relaxed loads of its shards). Nothing is recorded on
//! the relay for this: scraping only reads.

use super::text::{Exposition, Kind, seconds};
use crate::context::Context;
use crate::pool::CloseReason;
use crate::pool::info::PoolFigures;
use crate::stats::Totals;
use crate::stats::histogram::{BOUNDS_US, Which};

/// Metric name prefix.
pub const PREFIX: &str = "pgsluice_";

/// What one pool shows.
struct PoolRow {
    database: String,
    user: String,
    figures: PoolFigures,
    totals: Totals,
    size: usize,
    min_size: usize,
    reserve_size: usize,
}

impl PoolRow {
    fn labels(&self) -> [(&str, &str); 2] {
        [("database", &self.database), ("user", &self.user)]
    }

    /// Clients linked to a server, waiting for one, and idle (logged in,
    /// no server). SHOW POOLS' cl_active is active + idle.
    fn clients(&self) -> [(&'static str, usize); 3] {
        let f = &self.figures;
        let not_waiting = f.clients.saturating_sub(f.waiting);
        let active = f.active.min(not_waiting);
        [
            ("active", active),
            ("waiting", f.waiting),
            ("idle", not_waiting - active),
        ]
    }

    /// Servers by SHOW POOLS state (sv_tested is always 0 in pgsluice: a
    /// server check runs while the server is counted as active).
    fn servers(&self) -> [(&'static str, usize); 5] {
        let f = &self.figures;
        [
            ("active", f.active),
            ("idle", f.idle),
            ("used", f.used),
            ("tested", 0),
            ("login", f.login),
        ]
    }
}

/// One counter family: name (after the prefix), help, and its value in
/// a pool's totals (times are in microseconds, shown in seconds).
type CounterDef = (&'static str, &'static str, fn(&Totals) -> f64);

const COUNTERS: &[CounterDef] = &[
    (
        "server_assignments_total",
        "Times a server was assigned to a client (SHOW STATS total_server_assignment_count).",
        |t| t.server_assignment_count as f64,
    ),
    (
        "transactions_total",
        "Transactions pooled (total_xact_count).",
        |t| t.xact_count as f64,
    ),
    (
        "queries_total",
        "Queries pooled (total_query_count).",
        |t| t.query_count as f64,
    ),
    (
        "received_bytes_total",
        "Bytes received from clients (total_received).",
        |t| t.bytes_received as f64,
    ),
    (
        "sent_bytes_total",
        "Bytes sent to clients (total_sent).",
        |t| t.bytes_sent as f64,
    ),
    (
        "transaction_seconds_total",
        "Time spent in transactions with a server assigned (total_xact_time).",
        |t| seconds(t.xact_time),
    ),
    (
        "query_seconds_total",
        "Time spent in queries with a server assigned (total_query_time).",
        |t| seconds(t.query_time),
    ),
    (
        "client_wait_seconds_total",
        "Time clients waited for a server (total_wait_time).",
        |t| seconds(t.wait_time),
    ),
    (
        "client_parses_total",
        "Parse messages sent by clients (total_client_parse_count).",
        |t| t.client_parse_count as f64,
    ),
    (
        "server_parses_total",
        "Parse messages sent to servers (total_server_parse_count).",
        |t| t.server_parse_count as f64,
    ),
    (
        "binds_total",
        "Bind messages sent by clients (total_bind_count).",
        |t| t.bind_count as f64,
    ),
    (
        "client_logins_total",
        "Successful client logins (total_client_login_count).",
        |t| t.client_login_count as f64,
    ),
];

fn sorted_pools(ctx: &Context) -> Vec<std::sync::Arc<crate::pool::Pool>> {
    let mut pools = ctx.pools.all();
    pools.sort_by(|a, b| (&a.key.database, &a.key.user).cmp(&(&b.key.database, &b.key.user)));
    pools
}

fn rows(pools: &[std::sync::Arc<crate::pool::Pool>]) -> Vec<PoolRow> {
    pools
        .iter()
        .map(|p| {
            let s = p.settings();
            PoolRow {
                database: p.key.database.clone(),
                user: p.key.user.clone(),
                figures: p.figures(),
                totals: p.stats.totals(),
                size: s.size,
                min_size: s.min_size,
                reserve_size: s.reserve_size,
            }
        })
        .collect()
}

/// The whole page.
pub fn render(ctx: &Context) -> String {
    let pools = sorted_pools(ctx);
    let rows = rows(&pools);
    let mut e = Exposition::new();
    let name = |n: &str| format!("{PREFIX}{n}");

    let n = name("clients");
    e.family(
        &n,
        Kind::Gauge,
        "Logged-in clients by state: active (linked to a server), waiting (for a server), idle.",
    );
    for r in &rows {
        let [db, user] = r.labels();
        for (state, v) in r.clients() {
            e.sample(&n, &[db, user, ("state", state)], v);
        }
    }
    let n = name("servers");
    e.family(
        &n,
        Kind::Gauge,
        "Server connections by SHOW POOLS state (active, idle, used, tested, login).",
    );
    for r in &rows {
        let [db, user] = r.labels();
        for (state, v) in r.servers() {
            e.sample(&n, &[db, user, ("state", state)], v);
        }
    }
    let n = name("client_max_wait_seconds");
    e.family(
        &n,
        Kind::Gauge,
        "How long the longest-waiting client of the pool has waited (SHOW POOLS maxwait).",
    );
    for r in &rows {
        e.sample(&n, &r.labels(), r.figures.max_wait.as_secs_f64());
    }
    type Limit = fn(&PoolRow) -> usize;
    let limits: [(&str, &str, Limit); 3] = [
        (
            "pool_size",
            "Server connections the pool may open (pool_size).",
            |r| r.size,
        ),
        (
            "pool_min_size",
            "Server connections kept open (min_pool_size).",
            |r| r.min_size,
        ),
        (
            "pool_reserve_size",
            "Extra connections after reserve_pool_timeout (reserve_pool_size).",
            |r| r.reserve_size,
        ),
    ];
    for (suffix, help, get) in limits {
        let n = name(suffix);
        e.family(&n, Kind::Gauge, help);
        for r in &rows {
            e.sample(&n, &r.labels(), get(r));
        }
    }
    for (suffix, help, get) in COUNTERS {
        let n = name(suffix);
        e.family(&n, Kind::Counter, help);
        for r in &rows {
            e.sample(&n, &r.labels(), get(&r.totals));
        }
    }
    type Hist = (&'static str, &'static str, Which, fn(&Totals) -> (u64, u64));
    let histograms: [Hist; 3] = [
        (
            "transaction_duration_seconds",
            "Transaction time with a server assigned (a link's several transactions are observed at their mean).",
            Which::Transaction,
            |t| (t.xact_time, t.xact_count),
        ),
        (
            "query_duration_seconds",
            "Query time (a transaction's several queries are observed at their mean).",
            Which::Query,
            |t| (t.query_time, t.query_count),
        ),
        (
            "client_wait_seconds",
            "Time a client waited for a server, per assignment.",
            Which::Wait,
            |t| (t.wait_time, t.server_assignment_count),
        ),
    ];
    let les: Vec<String> = BOUNDS_US
        .iter()
        .map(|us| seconds(*us).to_string())
        .chain(std::iter::once("+Inf".to_string()))
        .collect();
    for (suffix, help, which, sum_count) in histograms {
        let n = name(suffix);
        e.family(&n, Kind::Histogram, help);
        let (bucket, sum, count) = (
            format!("{n}_bucket"),
            format!("{n}_sum"),
            format!("{n}_count"),
        );
        for (p, r) in pools.iter().zip(&rows) {
            let [db, user] = r.labels();
            for (le, v) in les.iter().zip(p.stats.histogram(which)) {
                e.sample(&bucket, &[db, user, ("le", le)], v);
            }
            let (s, c) = sum_count(&r.totals);
            e.sample(&sum, &r.labels(), seconds(s));
            e.sample(&count, &r.labels(), c);
        }
    }
    let n = name("server_connections_opened_total");
    e.family(&n, Kind::Counter, "Server connections opened.");
    for (p, r) in pools.iter().zip(&rows) {
        e.sample(&n, &r.labels(), p.events.opened_total());
    }
    let n = name("server_connections_moved_total");
    e.family(
        &n,
        Kind::Counter,
        "Times a server connection moved to another worker thread's event loop (taken by a client served there).",
    );
    for (p, r) in pools.iter().zip(&rows) {
        e.sample(&n, &r.labels(), p.events.moved_total());
    }
    let n = name("server_connections_closed_total");
    e.family(
        &n,
        Kind::Counter,
        "Server connections closed, by reason (lifetime, idle_timeout, check_failed, broken, error, admin, evicted, aborted, shutdown).",
    );
    for (p, r) in pools.iter().zip(&rows) {
        let [db, user] = r.labels();
        for reason in CloseReason::ALL {
            let v = p.events.closed_total(reason);
            e.sample(&n, &[db, user, ("reason", reason.label())], v);
        }
    }
    let n = name("login_failures_total");
    e.family(&n, Kind::Counter, "Client logins refused, by SQLSTATE.");
    for (code, v) in ctx.login_failures.lock().iter() {
        e.sample(&n, &[("sqlstate", code)], v);
    }
    let n = name("client_errors_total");
    e.family(
        &n,
        Kind::Counter,
        "Errors sent to clients by the pooler, by SQLSTATE class.",
    );
    let mut classes = std::collections::BTreeMap::<String, u64>::new();
    for (code, v) in ctx.client_errors.lock().iter() {
        *classes.entry(code.chars().take(2).collect()).or_default() += v;
    }
    for (class, v) in &classes {
        e.sample(&n, &[("class", class)], v);
    }
    let n = name("max_client_connections");
    e.family(
        &n,
        Kind::Gauge,
        "Client connections allowed (max_client_conn).",
    );
    e.sample(&n, &[], ctx.client_capacity());
    let n = name("client_connections");
    e.family(
        &n,
        Kind::Gauge,
        "Client connections open (every pool, logging in, and the admin console).",
    );
    let used =
        (ctx.client_capacity() as usize).saturating_sub(ctx.client_slots.available_permits());
    e.sample(&n, &[], used);
    e.finish()
}
