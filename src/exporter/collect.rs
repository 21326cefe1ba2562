//! The metrics page, computed when scraped: pool figures (the SHOW POOLS
//! figures, one pool lock each, as the console takes them) and each pool's
//! SHOW STATS totals (relaxed loads of its shards). Nothing is recorded on
//! the relay for this: scraping only reads.

use std::sync::Arc;

use super::text::{Exposition, Kind, seconds};
use crate::context::Context;
use crate::pool::Pool;
use crate::pool::info::PoolFigures;
use crate::server::ServerEnd;
use crate::stats::histogram::{BOUNDS_US, HISTOGRAMS};
use crate::stats::{COUNTERS, FIELDS, Unit};

/// Metric name prefix.
pub(crate) const PREFIX: &str = "pgsluice_";

/// What one pool shows.
struct PoolRow {
    database: String,
    user: String,
    figures: PoolFigures,
    /// SHOW STATS totals, in `COUNTERS` order.
    totals: [u64; FIELDS],
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

fn sorted_pools(ctx: &Context) -> Vec<Arc<Pool>> {
    let mut pools = ctx.pools.all();
    pools.sort_by(|a, b| (&a.database(), &a.user()).cmp(&(&b.database(), &b.user())));
    pools
}

fn rows(pools: &[Arc<Pool>]) -> Vec<PoolRow> {
    pools
        .iter()
        .map(|p| {
            let s = p.settings();
            PoolRow {
                database: p.database().to_string(),
                user: p.user().to_string(),
                figures: p.figures(),
                totals: p.stats.totals().to_array(),
                size: s.size,
                min_size: s.min_size,
                reserve_size: s.reserve_size,
            }
        })
        .collect()
}

/// The whole page.
pub(crate) fn render(ctx: &Context) -> String {
    let pools = sorted_pools(ctx);
    let rows = rows(&pools);
    let mut e = Exposition::new();
    pool_states(&mut e, &rows);
    pool_limits(&mut e, &rows);
    counters(&mut e, &rows);
    histograms(&mut e, &pools, &rows);
    server_events(&mut e, &pools, &rows);
    process(&mut e, ctx);
    super::hosts::hosts(&mut e, ctx);
    super::hosts::routing(&mut e, ctx);
    e.finish()
}

fn name(suffix: &str) -> String {
    format!("{PREFIX}{suffix}")
}

/// Clients and servers by state, and the longest wait (SHOW POOLS).
fn pool_states(e: &mut Exposition, rows: &[PoolRow]) {
    let n = name("clients");
    e.family(
        &n,
        Kind::Gauge,
        "Logged-in clients by state: active (linked to a server), waiting (for a server), idle.",
    );
    for r in rows {
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
    for r in rows {
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
    for r in rows {
        e.sample(&n, &r.labels(), r.figures.max_wait.as_secs_f64());
    }
}

/// The sizes in force.
fn pool_limits(e: &mut Exposition, rows: &[PoolRow]) {
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
        for r in rows {
            e.sample(&n, &r.labels(), get(r));
        }
    }
}

/// SHOW STATS' totals, one counter family each (the counter table).
fn counters(e: &mut Exposition, rows: &[PoolRow]) {
    for (i, c) in COUNTERS.iter().enumerate() {
        let n = name(c.metric);
        e.family(&n, Kind::Counter, c.help);
        for r in rows {
            let v = r.totals[i];
            match c.unit {
                Unit::Count => e.sample(&n, &r.labels(), v),
                Unit::Micros => e.sample(&n, &r.labels(), seconds(v)),
            }
        }
    }
}

/// The latency histograms.
fn histograms(e: &mut Exposition, pools: &[Arc<Pool>], rows: &[PoolRow]) {
    let les: Vec<String> = BOUNDS_US
        .iter()
        .map(|us| seconds(*us).to_string())
        .chain(std::iter::once("+Inf".to_string()))
        .collect();
    for h in HISTOGRAMS {
        let n = name(h.metric);
        e.family(&n, Kind::Histogram, h.help);
        let (bucket, sum, count) = (
            format!("{n}_bucket"),
            format!("{n}_sum"),
            format!("{n}_count"),
        );
        for (p, r) in pools.iter().zip(rows) {
            let [db, user] = r.labels();
            for (le, v) in les.iter().zip(p.stats.histogram(h.which)) {
                e.sample(&bucket, &[db, user, ("le", le)], v);
            }
            let (s, c) = h.sum_count;
            e.sample(&sum, &r.labels(), seconds(r.totals[s]));
            e.sample(&count, &r.labels(), r.totals[c]);
        }
    }
}

/// Server connections opened, moved and closed (by reason).
fn server_events(e: &mut Exposition, pools: &[Arc<Pool>], rows: &[PoolRow]) {
    let n = name("server_connections_opened_total");
    e.family(&n, Kind::Counter, "Server connections opened.");
    for (p, r) in pools.iter().zip(rows) {
        e.sample(&n, &r.labels(), p.events.opened_total());
    }
    let n = name("server_connections_moved_total");
    e.family(
        &n,
        Kind::Counter,
        "Times a server connection moved to another worker thread's event loop (taken by a client served there).",
    );
    for (p, r) in pools.iter().zip(rows) {
        e.sample(&n, &r.labels(), p.events.moved_total());
    }
    let n = name("server_connections_closed_total");
    e.family(
        &n,
        Kind::Counter,
        "Server connections closed, by reason (lifetime, idle_timeout, check_failed, broken, error, admin, evicted, aborted, shutdown, replication).",
    );
    for (p, r) in pools.iter().zip(rows) {
        let [db, user] = r.labels();
        for reason in ServerEnd::ALL {
            let v = p.events.closed_total(reason);
            e.sample(&n, &[db, user, ("reason", reason.label())], v);
        }
    }
}

/// Process-wide figures: refused logins, errors sent to clients, client
/// connections.
fn process(e: &mut Exposition, ctx: &Context) {
    let n = name("login_failures_total");
    e.family(&n, Kind::Counter, "Client logins refused, by SQLSTATE.");
    for (code, v) in ctx.login_failures.lock().iter() {
        e.sample(&n, &[("sqlstate", code.as_str())], v);
    }
    let n = name("client_errors_total");
    e.family(
        &n,
        Kind::Counter,
        "Errors sent to clients by the pooler, by SQLSTATE class.",
    );
    let mut classes = std::collections::BTreeMap::<String, u64>::new();
    for (code, v) in ctx.client_errors.lock().iter() {
        *classes.entry(code.class().to_string()).or_default() += v;
    }
    for (class, v) in &classes {
        e.sample(&n, &[("class", class)], v);
    }
    let n = name("tls_handshakes_total");
    e.family(
        &n,
        Kind::Counter,
        "TLS handshakes, towards clients and towards servers, done and failed.",
    );
    let h = &crate::transport::HANDSHAKES;
    for (leg, result, c) in [
        ("client", "ok", &h.client_ok),
        ("client", "failed", &h.client_failed),
        ("server", "ok", &h.server_ok),
        ("server", "failed", &h.server_failed),
    ] {
        let v = c.load(std::sync::atomic::Ordering::Relaxed);
        e.sample(&n, &[("leg", leg), ("result", result)], v);
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
}
