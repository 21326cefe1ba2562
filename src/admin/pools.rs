//! SHOW POOLS, DATABASES and USERS: the config plus the pools' figures.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::BytesMut;

use super::rows::{Cell, INT, TEXT, Table};
use crate::config::Config;
use crate::context::Context;
use crate::pool::Pool;

/// The virtual database of the console.
pub const ADMIN_DB: &str = crate::config::ADMIN_DB;

/// Every database: named [databases] entries, databases pools were made
/// for (from `*`), and the console's own, sorted.
pub(crate) fn database_names(ctx: &Context) -> Vec<String> {
    let cfg = ctx.config();
    let mut names: BTreeSet<String> = cfg.databases.entries.keys().cloned().collect();
    names.extend(ctx.pools.database_names());
    names.insert(ADMIN_DB.to_string());
    names.into_iter().collect()
}

/// Pools sorted by (database, user).
fn sorted_pools(ctx: &Context) -> Vec<Arc<Pool>> {
    let mut pools = ctx.pools.all();
    pools.sort_by(|a, b| (&a.database(), &a.user()).cmp(&(&b.database(), &b.user())));
    pools
}

/// load_balance_hosts of a database whose host is a list (else NULL).
fn load_balance(cfg: &Config, database: &str) -> Cell {
    match cfg.databases.lookup(database) {
        Some(db) if db.host.as_deref().is_some_and(|h| h.contains(',')) => {
            Cell::from(db.load_balance_hosts.as_deref().unwrap_or("round-robin"))
        }
        _ => Cell::Null,
    }
}

/// Console sessions now (they form the `pgbouncer` pool).
pub(crate) fn admin_clients(ctx: &Context) -> usize {
    ctx.registry
        .all()
        .iter()
        .filter(|t| t.info().is_some_and(|i| i.database == ADMIN_DB))
        .count()
}

const POOL_COLUMNS: [&str; 19] = [
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "load_balance_hosts",
    // pgsluice: where the pool's servers are, `host:port=count,...`.
    "server_hosts",
    // pgsluice: the role the pool serves: `any`, or with read/write
    // splitting `primary` / `standby` (two rows for one database and user).
    "role",
];

/// SHOW POOLS.
pub(crate) fn show_pools(ctx: &Context, out: &mut BytesMut) {
    let cfg = ctx.config();
    let cols: Vec<(&str, u32)> = POOL_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, if (2..=14).contains(&i) { INT } else { TEXT }))
        .collect();
    let mut t = Table::new(out, &cols);
    let admins = admin_clients(ctx);
    let admin_row = || {
        let mut r = vec![Cell::from(ADMIN_DB), Cell::from(ADMIN_DB), admins.into()];
        r.extend((0..12).map(|_| Cell::Int(0)));
        r.extend([
            Cell::from("statement"),
            Cell::Null,
            Cell::Null,
            Cell::from("any"),
        ]);
        r
    };
    let mut hosts: std::collections::BTreeMap<
        (String, String),
        std::collections::BTreeMap<String, usize>,
    > = Default::default();
    for (db, user, addr, port) in super::sockets::server_places(ctx) {
        *hosts
            .entry((db, user))
            .or_default()
            .entry(format!("{addr}:{port}"))
            .or_default() += 1;
    }
    let mut admin_done = false;
    for pool in sorted_pools(ctx) {
        if !admin_done && pool.database() > ADMIN_DB {
            t.row(admin_row());
            admin_done = true;
        }
        let f = pool.figures();
        t.row(vec![
            pool.database().into(),
            pool.user().into(),
            f.clients.saturating_sub(f.waiting).into(),
            f.waiting.into(),
            Cell::Int(0),
            Cell::Int(0),
            f.active.into(),
            Cell::Int(0),
            Cell::Int(0),
            f.idle.into(),
            f.used.into(),
            Cell::Int(0),
            f.login.into(),
            f.max_wait.as_secs().into(),
            f.max_wait.subsec_micros().into(),
            pool.settings().mode.name().into(),
            load_balance(&cfg, pool.database()),
            hosts
                .get(&(pool.database().to_string(), pool.user().to_string()))
                .map_or(Cell::Null, |h| {
                    let list: Vec<String> = h.iter().map(|(a, n)| format!("{a}={n}")).collect();
                    Cell::from(list.join(","))
                }),
            match pool.key().role {
                crate::pool::Role::Any => "any",
                crate::pool::Role::Primary => "primary",
                crate::pool::Role::Standby => "standby",
            }
            .into(),
        ]);
    }
    if !admin_done {
        t.row(admin_row());
    }
    t.finish();
}

const DATABASE_COLUMNS: [(&str, u32); 17] = [
    ("name", TEXT),
    ("host", TEXT),
    ("port", INT),
    ("database", TEXT),
    ("force_user", TEXT),
    ("pool_size", INT),
    ("min_pool_size", INT),
    ("reserve_pool_size", INT),
    ("server_lifetime", INT),
    ("pool_mode", TEXT),
    ("load_balance_hosts", TEXT),
    ("max_connections", INT),
    ("current_connections", INT),
    ("max_client_connections", INT),
    ("current_client_connections", INT),
    ("paused", INT),
    ("disabled", INT),
];

/// SHOW DATABASES.
pub(crate) fn show_databases(ctx: &Context, out: &mut BytesMut) {
    let cfg = ctx.config();
    let g = &cfg.general;
    let mut t = Table::new(out, &DATABASE_COLUMNS);
    for name in database_names(ctx) {
        if name == ADMIN_DB {
            t.row(vec![
                name.as_str().into(),
                Cell::Null,
                g.listen_port.into(),
                name.as_str().into(),
                name.as_str().into(),
                Cell::Int(2),
                Cell::Int(0),
                Cell::Int(0),
                Cell::Int(0),
                "statement".into(),
                Cell::Null,
                Cell::Int(0),
                Cell::Int(0),
                i64::from(g.max_db_client_connections).into(),
                ctx.pools.db_clients(ADMIN_DB).into(),
                Cell::Int(0),
                Cell::Int(0),
            ]);
            continue;
        }
        let Some(db) = cfg.databases.lookup(&name) else {
            continue;
        };
        let (_, open) = ctx.pools.db_limit(&name).unwrap_or((0, 0));
        let control = ctx.pools.db_control(&name);
        let lifetime = db.server_lifetime.unwrap_or(g.server_lifetime);
        t.row(vec![
            name.as_str().into(),
            db.host.clone().into(),
            db.port.into(),
            db.dbname.clone().unwrap_or_else(|| name.clone()).into(),
            db.user.clone().into(),
            db.pool_size.unwrap_or(g.default_pool_size).into(),
            db.min_pool_size.unwrap_or(g.min_pool_size).into(),
            db.reserve_pool_size.unwrap_or(g.reserve_pool_size).into(),
            lifetime.as_secs().into(),
            db.pool_mode.map(|m| m.name()).into(),
            load_balance(&cfg, &name),
            db.max_db_connections.unwrap_or(g.max_db_connections).into(),
            open.into(),
            db.max_db_client_connections
                .unwrap_or(g.max_db_client_connections)
                .into(),
            ctx.pools.db_clients(&name).into(),
            i64::from(control.paused() || control.suspended()).into(),
            i64::from(control.disabled()).into(),
        ]);
    }
    t.finish();
}

const USER_COLUMNS: [(&str, u32); 8] = [
    ("name", TEXT),
    ("pool_size", TEXT),
    ("reserve_pool_size", TEXT),
    ("pool_mode", TEXT),
    ("max_user_connections", INT),
    ("current_connections", INT),
    ("max_user_client_connections", INT),
    ("current_client_connections", INT),
];

/// SHOW USERS: users of auth_file, [users] and pools.
pub(crate) fn show_users(ctx: &Context, out: &mut BytesMut) {
    let cfg = ctx.config();
    let g = &cfg.general;
    let mut names: BTreeSet<String> = cfg.users.keys().cloned().collect();
    names.extend(cfg.userlist.keys().cloned());
    names.extend(ctx.pools.user_names());
    names.extend(ctx.pools.login_user_names());
    let mut t = Table::new(out, &USER_COLUMNS);
    for name in names {
        let u = cfg.users.get(&name);
        let text = |v: Option<u32>| v.map_or_else(String::new, |n| n.to_string());
        let (_, open) = ctx.pools.user_limit(&name).unwrap_or((0, 0));
        t.row(vec![
            name.as_str().into(),
            text(u.and_then(|u| u.pool_size)).into(),
            text(u.and_then(|u| u.reserve_pool_size)).into(),
            u.and_then(|u| u.pool_mode).map(|m| m.name()).into(),
            u.and_then(|u| u.max_user_connections)
                .unwrap_or(g.max_user_connections)
                .into(),
            open.into(),
            u.and_then(|u| u.max_user_client_connections)
                .unwrap_or(g.max_user_client_connections)
                .into(),
            ctx.pools.login_clients(&name).into(),
        ]);
    }
    t.finish();
}
