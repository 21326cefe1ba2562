//! SHOW dispatch and the SHOWs about the pooler itself: CONFIG, LISTS,
//! STATE, VERSION, MEM, HELP, and the ones answered with columns only
//! (PEERS, PEER_POOLS, FDS, DNS_HOSTS, DNS_ZONES).

use bytes::BytesMut;

use super::rows::{BIGINT, Cell, INT, TEXT, Table};
use super::{AdminError, Role, hosts, pools, sockets, stats_show};
use crate::context::Context;
use crate::protocol::backend::{self, Severity};

/// The version string SHOW VERSION prints (tools match `PgBouncer x.y.z`),
/// also the first line of `pgsluice --version`.
pub fn version() -> String {
    format!(
        "PgBouncer 1.25.0 (compatible; pgsluice {})",
        env!("CARGO_PKG_VERSION")
    )
}

/// Parameters PgBouncer fakes for clients that SHOW or SET them.
pub(crate) const FAKE_PARAMS: [(&str, &str); 6] = [
    ("client_encoding", "UTF-8"),
    ("default_transaction_isolation", "read committed"),
    ("standard_conforming_strings", "on"),
    ("datestyle", "ISO"),
    ("timezone", "GMT"),
    ("extra_float_digits", "2"),
];

/// Answer `SHOW what` into `out`.
pub(crate) fn show(
    ctx: &Context,
    role: Role,
    what: &str,
    out: &mut BytesMut,
) -> Result<(), AdminError> {
    match what {
        "help" => help(out),
        "config" => config(ctx, out),
        "databases" => pools::show_databases(ctx, out),
        "pools" => pools::show_pools(ctx, out),
        "users" => pools::show_users(ctx, out),
        "clients" => sockets::show_clients(ctx, out),
        "servers" => sockets::show_servers(ctx, out),
        "hosts" => hosts::show_hosts(ctx, out),
        "routing" => hosts::show_routing(ctx, out),
        "sockets" => sockets::show_sockets(ctx, false, out),
        "active_sockets" => sockets::show_sockets(ctx, true, out),
        "version" => {
            let mut t = Table::new(out, &[("version", TEXT)]);
            t.row(vec![version().into()]);
            t.finish();
        }
        "lists" => lists(ctx, out),
        "state" => state(ctx, out),
        "mem" => mem(ctx, out),
        "stats" => stats_show::show_stats(ctx, out),
        "stats_totals" => stats_show::show_stats_part(ctx, false, out),
        "stats_averages" => stats_show::show_stats_part(ctx, true, out),
        "totals" => stats_show::show_totals(ctx, out),
        "peers" => empty(
            out,
            &[
                ("peer_id", INT),
                ("host", TEXT),
                ("port", INT),
                ("pool_size", INT),
            ],
        ),
        "peer_pools" => empty(
            out,
            &[
                ("peer_id", INT),
                ("cl_active_cancel_req", INT),
                ("cl_waiting_cancel_req", INT),
                ("sv_active_cancel", INT),
                ("sv_login", INT),
            ],
        ),
        "fds" => {
            if role != Role::Admin {
                return Err(AdminError::admin_needed());
            }
            // pgsluice does not hand sockets over for online restarts.
            empty(out, &FDS_COLUMNS);
        }
        "dns_hosts" => empty(out, &[("hostname", TEXT), ("ttl", BIGINT), ("addrs", TEXT)]),
        "dns_zones" => empty(
            out,
            &[("zonename", TEXT), ("serial", BIGINT), ("count", INT)],
        ),
        other => match FAKE_PARAMS.iter().find(|(n, _)| *n == other) {
            Some((name, value)) => {
                let mut t = Table::new(out, &[(name, TEXT)]);
                t.row(vec![(*value).into()]);
                t.finish();
            }
            None => {
                return Err(AdminError::new(
                    super::SYNTAX_ERROR,
                    format!("unknown SHOW subcommand '{other}', use SHOW HELP;"),
                ));
            }
        },
    }
    Ok(())
}

const FDS_COLUMNS: [(&str, u32); 15] = [
    ("fd", INT),
    ("task", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("addr", TEXT),
    ("port", INT),
    ("cancel", BIGINT),
    ("link", INT),
    ("client_encoding", TEXT),
    ("std_strings", TEXT),
    ("datestyle", TEXT),
    ("timezone", TEXT),
    ("password", TEXT),
    ("scram_client_key", 17),
    ("scram_server_key", 17),
];

fn empty(out: &mut BytesMut, cols: &[(&str, u32)]) {
    Table::new(out, cols).finish();
}

fn help(out: &mut BytesMut) {
    let text = "Console usage\n\
        \tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n\
        \tSHOW HOSTS\n\
        \tSHOW ROUTING\n\
        \tSHOW PEERS|PEER_POOLS\n\
        \tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n\
        \tSHOW DNS_HOSTS|DNS_ZONES\n\
        \tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n\
        \tSET key = arg\n\
        \tRELOAD\n\
        \tPAUSE [<db>]\n\
        \tRESUME [<db>]\n\
        \tDISABLE <db>\n\
        \tENABLE <db>\n\
        \tRECONNECT [<db>]\n\
        \tKILL [<db>]\n\
        \tKILL_CLIENT <client_id>\n\
        \tSUSPEND\n\
        \tSHUTDOWN\n\
        \tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n\
        \tWAIT_CLOSE [<db>]\n\
        \tSWITCHOVER <db> TO <host>\n\
        \tUNFENCE <db> <host>";
    backend::error_response(
        out,
        Severity::Notice,
        crate::protocol::sqlstate::SUCCESSFUL_COMPLETION,
        text,
    );
    backend::command_complete(out, "SHOW");
}

fn config(ctx: &Context, out: &mut BytesMut) {
    let cfg = ctx.config();
    let mut t = Table::new(
        out,
        &[
            ("key", TEXT),
            ("value", TEXT),
            ("default", TEXT),
            ("changeable", TEXT),
        ],
    );
    for s in &cfg.general.settings {
        t.row(vec![
            s.key.into(),
            s.value.as_str().into(),
            s.default.into(),
            (if s.changeable { "yes" } else { "no" }).into(),
        ]);
    }
    t.finish();
}

fn lists(ctx: &Context, out: &mut BytesMut) {
    let cfg = ctx.config();
    let registered = ctx.registry.all();
    let logging_in = registered.iter().filter(|t| t.info().is_none()).count();
    let mut users: std::collections::BTreeSet<&String> = cfg.users.keys().collect();
    users.extend(cfg.userlist.keys());
    let pools = ctx.pools.all();
    let servers: usize = pools.iter().map(|p| p.server_count()).sum();
    let items: [(&str, usize); 14] = [
        ("databases", pools::database_names(ctx).len()),
        ("users", users.len()),
        ("peers", 0),
        ("pools", pools.len() + 1),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", registered.len() - logging_in),
        ("login_clients", logging_in),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    let mut t = Table::new(out, &[("list", TEXT), ("items", INT)]);
    for (name, n) in items {
        t.row(vec![name.into(), n.into()]);
    }
    t.finish();
}

/// SHOW STATE: whether a global PAUSE or SUSPEND is in force.
fn state(ctx: &Context, out: &mut BytesMut) {
    let (paused, suspended) = ctx.pools.global_state();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut t = Table::new(out, &[("key", TEXT), ("value", TEXT)]);
    for (k, v) in [
        ("active", yes(!paused && !suspended)),
        ("paused", yes(paused)),
        ("suspended", yes(suspended)),
    ] {
        t.row(vec![k.into(), v.into()]);
    }
    t.finish();
}

/// SHOW MEM: the objects pgsluice keeps per client, pool and server.
fn mem(ctx: &Context, out: &mut BytesMut) {
    let clients = ctx.registry.all().len();
    let pools = ctx.pools.all();
    let servers: usize = pools.iter().map(|p| p.server_count()).sum();
    let items = [
        (
            "client_cache",
            size_of::<crate::registry::SessionEntry>(),
            clients,
        ),
        ("pool_cache", size_of::<crate::pool::Pool>(), pools.len()),
        (
            "server_cache",
            size_of::<crate::server::ServerConn>(),
            servers,
        ),
    ];
    let cols = [
        ("name", TEXT),
        ("size", INT),
        ("used", INT),
        ("free", INT),
        ("memtotal", INT),
    ];
    let mut t = Table::new(out, &cols);
    for (name, size, used) in items {
        t.row(vec![
            name.into(),
            size.into(),
            used.into(),
            Cell::Int(0),
            (size * used).into(),
        ]);
    }
    t.finish();
}
