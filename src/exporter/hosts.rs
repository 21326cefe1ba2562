//! The hosts' figures on the metrics page (what SHOW HOSTS shows): per
//! host pgsluice has connected to, up or not, primary or not, fenced or
//! not, and a standby's lag; labelled by `host` (`host:port`, or the socket
//! path).

use super::text::{Exposition, Kind};
use crate::context::Context;

/// Append the host families.
pub(super) fn hosts(e: &mut Exposition, ctx: &Context) {
    let mut hosts: Vec<(String, crate::topology::HostState)> = ctx
        .pools
        .topology()
        .all()
        .iter()
        .map(|h| (h.endpoint().to_string(), h.state()))
        .collect();
    hosts.sort_by(|a, b| a.0.cmp(&b.0));
    type Value = fn(&crate::topology::HostState) -> Option<f64>;
    let families: [(&str, &str, Value); 5] = [
        (
            "host_up",
            "1 when the last connection or health check reached the host, else 0.",
            |s| {
                Some(if s.failure.is_none() && s.last_ok.is_some() {
                    1.0
                } else {
                    0.0
                })
            },
        ),
        (
            "host_primary",
            "1 when the host last said it is a primary, 0 a standby (absent: not known yet).",
            |s| s.role.map(|(standby, _)| if standby { 0.0 } else { 1.0 }),
        ),
        (
            "host_fenced",
            "1 when the host is fenced (split brain, or the old primary of a SWITCHOVER).",
            |s| Some(if s.fenced.is_some() { 1.0 } else { 0.0 }),
        ),
        (
            "host_lag_bytes",
            "How far a standby's replay is behind the primary, in bytes (health check).",
            |s| s.check.and_then(|c| c.lag_bytes).map(|b| b as f64),
        ),
        (
            "host_lag_seconds",
            "Seconds since a standby that is behind last replayed a transaction (health check).",
            |s| s.check.and_then(|c| c.lag_seconds),
        ),
    ];
    for (suffix, help, value) in families {
        let n = format!("pgsluice_{suffix}");
        e.family(&n, Kind::Gauge, help);
        for (host, state) in &hosts {
            if let Some(v) = value(state) {
                e.sample(&n, &[("host", host)], v);
            }
        }
    }
}

/// Append the read/write splitting families (what SHOW ROUTING shows).
pub(super) fn routing(e: &mut Exposition, ctx: &Context) {
    let rotations = ctx.pools.topology().rotations();
    let n = "pgsluice_routed_transactions_total";
    e.family(
        n,
        Kind::Counter,
        "Transactions of databases with read_write_split, by where they went and why.",
    );
    for (database, rotation) in &rotations {
        for (routed, count) in rotation.counts() {
            let labels = [
                ("database", database.as_str()),
                ("target", routed.target()),
                ("reason", routed.reason()),
            ];
            e.sample(n, &labels, count as f64);
        }
    }
    let n = "pgsluice_read_rotation_standbys";
    e.family(
        n,
        Kind::Gauge,
        "Standbys taking reads at the last health check (not lagging beyond max_standby_lag).",
    );
    for (database, rotation) in &rotations {
        if rotation.eligible() >= 0 {
            e.sample(n, &[("database", database)], rotation.eligible() as f64);
        }
    }
    let n = "pgsluice_parsed_statements_total";
    e.family(
        n,
        Kind::Counter,
        "Statements parsed to classify them (cache misses of read/write splitting).",
    );
    let parsed = crate::routing::cache::ClassCache::get().parsed();
    e.sample(n, &[], parsed as f64);
}
