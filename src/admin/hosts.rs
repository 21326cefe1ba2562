//! SHOW HOSTS (a pgsluice command): every host of every database that has
//! a host list or wants a role (target_session_attrs), with what the
//! topology knows of it: role, state, lag, last check, last error, and the
//! server connections pgsluice has to it for that database.

use bytes::BytesMut;

use super::rows::{BIGINT, Cell, INT, TEXT, Table, instant_us, timestamp};
use super::sockets::server_places;
use crate::config::{Endpoint, SessionAttrs};
use crate::context::Context;

/// PostgreSQL's `numeric` (lag_seconds).
const NUMERIC: u32 = 1700;

const COLUMNS: [(&str, u32); 10] = [
    ("database", TEXT),
    ("host", TEXT),
    ("port", INT),
    ("role", TEXT),
    ("state", TEXT),
    ("lag_bytes", BIGINT),
    ("lag_seconds", NUMERIC),
    ("last_check", TEXT),
    ("last_error", TEXT),
    ("server_connections", INT),
];

/// Answer SHOW HOSTS.
pub(crate) fn show_hosts(ctx: &Context, out: &mut BytesMut) {
    let cfg = ctx.config();
    let places = server_places(ctx);
    let mut t = Table::new(out, &COLUMNS);
    let mut names: Vec<&String> = cfg.databases.entries.keys().collect();
    names.sort();
    for name in names {
        let db = &cfg.databases.entries[name];
        let endpoints = db.endpoints();
        let attrs = db
            .target_session_attrs
            .unwrap_or(cfg.general.target_session_attrs);
        let splits = db.split.on.unwrap_or(cfg.general.split.on);
        if endpoints.len() < 2 && attrs == SessionAttrs::Any && !splits {
            continue;
        }
        for e in &endpoints {
            let st = ctx.pools.topology().host(e).state();
            let (host, port) = match e {
                Endpoint::Tcp { host, port } => (host.clone(), *port),
                Endpoint::Unix { dir, port } => (dir.display().to_string(), *port),
            };
            let shown_host = match e {
                Endpoint::Tcp { .. } => host.clone(),
                Endpoint::Unix { .. } => "unix".to_string(),
            };
            let role = match (st.fenced.is_some(), st.role) {
                (true, _) => "fenced",
                (false, None) => "unknown",
                (false, Some((true, _))) => "standby",
                (false, Some((false, _))) => "primary",
            };
            let lagging = ctx
                .pools
                .topology()
                .rotations()
                .iter()
                .any(|(d, r)| d == name && r.lagging(e));
            let state = match (&st.failure, st.last_ok) {
                (Some(_), _) => "down",
                // Out of the read rotation (read_write_split).
                (None, Some(_)) if lagging => "lagging",
                (None, Some(_)) => "up",
                (None, None) => "unknown",
            };
            let check = st.check;
            let servers = places
                .iter()
                .filter(|(d, _, a, p)| d == name && *a == shown_host && *p == i64::from(port))
                .count();
            t.row(vec![
                name.as_str().into(),
                host.into(),
                i64::from(port).into(),
                role.into(),
                state.into(),
                check
                    .and_then(|c| c.lag_bytes)
                    .map_or(Cell::Null, |b| Cell::Int(b as i64)),
                check
                    .and_then(|c| c.lag_seconds)
                    .map_or(Cell::Null, |s| Cell::Text(format!("{s:.3}"))),
                check.map_or(Cell::Null, |c| timestamp(instant_us(c.at)).into()),
                st.failure
                    .map(|(_, why)| why)
                    .or(st.fenced)
                    .map_or(Cell::Null, Cell::from),
                (servers as i64).into(),
            ]);
        }
    }
    t.finish();
}

const ROUTING_COLUMNS: [(&str, u32); 4] = [
    ("database", TEXT),
    ("target", TEXT),
    ("reason", TEXT),
    ("transactions", BIGINT),
];

/// Answer SHOW ROUTING (a pgsluice command): for each database that
/// splits reads from writes, the transactions sent to the primary and to
/// standbys, by reason, then the standbys in the read rotation
/// (`eligible_standbys`, -1 before the first check) and the statements
/// parsed so far (`parsed_statements`, all databases: the cache misses).
pub(crate) fn show_routing(ctx: &Context, out: &mut BytesMut) {
    let mut t = Table::new(out, &ROUTING_COLUMNS);
    for (database, rotation) in ctx.pools.topology().rotations() {
        for (routed, n) in rotation.counts() {
            t.row(vec![
                database.as_str().into(),
                routed.target().into(),
                routed.reason().into(),
                (n as i64).into(),
            ]);
        }
        t.row(vec![
            database.as_str().into(),
            Cell::Null,
            "eligible_standbys".into(),
            rotation.eligible().into(),
        ]);
    }
    t.row(vec![
        Cell::Null,
        Cell::Null,
        "parsed_statements".into(),
        (crate::routing::cache::ClassCache::get().parsed() as i64).into(),
    ]);
    t.finish();
}
