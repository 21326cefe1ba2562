//! SHOW CLIENTS, SERVERS, SOCKETS and ACTIVE_SOCKETS. Clients come from the
//! client registry (`crate::cancel`); idle servers from the pools; servers
//! in use from the registry entries of the clients they are linked to.
//!
//! `ptr` / `link` are opaque identifiers that pair the two lists: a client
//! is `c<id>`, a server `s<backend pid>`. A server's `id` is its backend
//! pid (a server in use is known only by its cancel key). Servers being
//! opened have no row (SHOW POOLS counts them as sv_login).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;

use super::rows::{Cell, INT, TEXT, Table, instant_us, now_us, timestamp};
use crate::config::Endpoint;
use crate::context::Context;
use crate::registry::SessionEntry;
use crate::transport::Peer;

const COLUMNS: [(&str, u32); 21] = [
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("replication", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT),
    ("local_addr", TEXT),
    ("local_port", INT),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT),
    ("wait_us", INT),
    ("close_needed", INT),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT),
    ("tls", TEXT),
    ("application_name", TEXT),
    ("prepared_statements", INT),
    ("id", BIGINT_ID),
];

/// `id` is a 64-bit counter.
const BIGINT_ID: u32 = super::rows::BIGINT;

/// Extra columns of SHOW SOCKETS / ACTIVE_SOCKETS (buffer positions: the
/// relay keeps no per-socket buffer counters, so they read 0).
const DEBUG_COLUMNS: [&str; 7] = [
    "recv_pos",
    "pkt_pos",
    "pkt_remain",
    "send_pos",
    "send_remain",
    "pkt_avail",
    "send_avail",
];

/// One socket's row, before its state is named for a given SHOW.
struct Socket {
    server: bool,
    user: String,
    database: String,
    /// `none`, `physical` or `logical` (the client's replication value).
    replication: &'static str,
    /// Plain state (active, idle, waiting, used).
    state: &'static str,
    addr: String,
    port: i64,
    local: Option<std::net::SocketAddr>,
    connect_us: Option<u64>,
    request_us: Option<u64>,
    close_needed: bool,
    ptr: String,
    link: String,
    remote_pid: i64,
    application_name: String,
    tls: String,
    /// Named prepared statements (the client's, or the server's).
    statements: u64,
    id: u64,
}

fn client_ptr(id: u64) -> String {
    format!("c{id}")
}

fn server_ptr(pid: i32) -> String {
    format!("s{pid}")
}

fn server_addr(addr: &Endpoint) -> (String, i64) {
    match addr {
        Endpoint::Tcp { host, port } => (host.clone(), i64::from(*port)),
        Endpoint::Unix { port, .. } => ("unix".to_string(), i64::from(*port)),
    }
}

/// (database, user, host, port) of every server connection, in use or
/// idle (SHOW HOSTS and SHOW POOLS count them per host).
pub(super) fn server_places(ctx: &Context) -> Vec<(String, String, String, i64)> {
    servers(ctx)
        .into_iter()
        .map(|s| (s.database, s.user, s.addr, s.port))
        .collect()
}

/// Logged-in clients, by id.
fn clients(ctx: &Context) -> Vec<Arc<SessionEntry>> {
    let mut all: Vec<_> = ctx
        .registry
        .all()
        .into_iter()
        .filter(|t| t.info().is_some())
        .collect();
    all.sort_by_key(|t| t.id);
    all
}

fn client_socket(ctx: &Context, t: &SessionEntry, now: u64) -> Socket {
    let info = t.info().cloned().unwrap_or_default();
    let linked = t.linked();
    let state = match (&linked, t.is_busy()) {
        (Some(_), _) => "active",
        (None, true) => "waiting",
        (None, false) => "idle",
    };
    let (addr, port) = match &t.peer {
        Some(Peer::Tcp(a)) => (a.ip().to_string(), i64::from(a.port())),
        _ => (
            "unix".to_string(),
            i64::from(ctx.config().general.listen_port),
        ),
    };
    // The registry epoch advances once a second: the request ended about
    // (now - that epoch) seconds ago.
    let epoch = ctx.epoch.load(Ordering::Relaxed);
    let request_us = match t.idle_since_epoch() {
        Some(e) if e > 0 => now.saturating_sub(epoch.saturating_sub(e) * 1_000_000),
        Some(_) => t.connected_us(),
        None => now,
    };
    Socket {
        server: false,
        user: info.user,
        database: info.database,
        replication: info.replication.name(),
        state,
        addr,
        port,
        local: None,
        connect_us: Some(t.connected_us()),
        request_us: Some(request_us.max(t.connected_us())),
        close_needed: false,
        ptr: client_ptr(t.id),
        link: linked.map_or_else(String::new, |(_, k)| server_ptr(k.process_id)),
        remote_pid: 0,
        application_name: info.application_name,
        tls: info.tls,
        statements: u64::from(t.statements().0),
        id: t.id,
    }
}

/// The TLS of the latest server login of the pool of `database` and `user`.
fn server_tls(ctx: &Context, database: &str, user: &str) -> String {
    ctx.pools
        .all()
        .iter()
        .filter(|p| p.database() == database && p.user() == user)
        .find_map(|p| p.server_tls())
        .map_or_else(String::new, |t| t.to_string())
}

/// Servers: those in use (found through their clients), then idle ones.
fn servers(ctx: &Context) -> Vec<Socket> {
    let mut rows = Vec::new();
    for t in clients(ctx) {
        let (Some((addr, key, id)), Some(info)) = (t.linked_server(), t.info()) else {
            continue;
        };
        let (addr, port) = server_addr(&addr);
        rows.push(Socket {
            server: true,
            user: info.pool_user.clone(),
            database: info.database.clone(),
            replication: info.replication.name(),
            state: "active",
            addr,
            port,
            local: None,
            connect_us: None,
            request_us: None,
            close_needed: false,
            ptr: server_ptr(key.process_id),
            link: client_ptr(t.id),
            remote_pid: i64::from(key.process_id),
            application_name: info.application_name.clone(),
            tls: if t.server_tls() {
                server_tls(ctx, &info.database, &info.pool_user)
            } else {
                String::new()
            },
            statements: u64::from(t.statements().1),
            id,
        });
    }
    let mut pools = ctx.pools.all();
    pools.sort_by(|a, b| (&a.database(), &a.user()).cmp(&(&b.database(), &b.user())));
    for pool in pools {
        for s in pool.idle_servers() {
            let (addr, port) = server_addr(&s.addr);
            rows.push(Socket {
                server: true,
                user: pool.user().to_string(),
                database: pool.database().to_string(),
                replication: "none",
                state: if s.used { "used" } else { "idle" },
                addr,
                port,
                local: s.local,
                connect_us: Some(instant_us(s.created)),
                request_us: Some(instant_us(s.last_used)),
                close_needed: s.close_needed,
                ptr: server_ptr(s.key.process_id),
                link: String::new(),
                remote_pid: i64::from(s.key.process_id),
                application_name: String::new(),
                tls: s.tls.as_deref().unwrap_or("").to_string(),
                statements: s.statements as u64,
                id: s.id,
            });
        }
    }
    rows
}

fn cells(s: Socket, state: &str, debug: bool) -> Vec<Cell> {
    let mut row = vec![
        Cell::from(if s.server { "S" } else { "C" }),
        s.user.into(),
        s.database.into(),
        s.replication.into(),
        state.into(),
        s.addr.into(),
        s.port.into(),
        s.local.map(|a| a.ip().to_string()).into(),
        s.local.map_or(0, |a| i64::from(a.port())).into(),
        s.connect_us.map(timestamp).into(),
        s.request_us.map(timestamp).into(),
        Cell::Int(0),
        Cell::Int(0),
        i64::from(s.close_needed).into(),
        s.ptr.into(),
        s.link.into(),
        s.remote_pid.into(),
        s.tls.into(),
        s.application_name.into(),
        s.statements.into(),
        s.id.into(),
    ];
    if debug {
        row.extend(DEBUG_COLUMNS.iter().map(|_| Cell::Int(0)));
    }
    row
}

fn header<'a>(out: &'a mut BytesMut, debug: bool) -> Table<'a> {
    let mut cols = COLUMNS.to_vec();
    if debug {
        cols.extend(DEBUG_COLUMNS.iter().map(|n| (*n, INT)));
    }
    Table::new(out, &cols)
}

/// SHOW CLIENTS.
pub(crate) fn show_clients(ctx: &Context, out: &mut BytesMut) {
    let now = now_us();
    let mut t = header(out, false);
    for c in clients(ctx) {
        let s = client_socket(ctx, &c, now);
        let state = s.state;
        t.row(cells(s, state, false));
    }
    t.finish();
}

/// SHOW SERVERS.
pub(crate) fn show_servers(ctx: &Context, out: &mut BytesMut) {
    let mut t = header(out, false);
    for s in servers(ctx) {
        let state = s.state;
        t.row(cells(s, state, false));
    }
    t.finish();
}

/// SHOW SOCKETS (`active_only` false) or SHOW ACTIVE_SOCKETS: clients and
/// servers with PgBouncer's list names as states. ACTIVE_SOCKETS lists
/// sockets with buffered data; pgsluice holds none between reads, so it
/// answers with the columns and no rows.
pub(crate) fn show_sockets(ctx: &Context, active_only: bool, out: &mut BytesMut) {
    let now = now_us();
    let mut t = header(out, true);
    if !active_only {
        for c in clients(ctx) {
            let s = client_socket(ctx, &c, now);
            let state = if s.state == "waiting" {
                "cl_waiting"
            } else {
                "cl_active"
            };
            t.row(cells(s, state, true));
        }
        for s in servers(ctx) {
            let state = match s.state {
                "active" => "sv_active",
                "used" => "sv_used",
                _ => "sv_idle",
            };
            t.row(cells(s, state, true));
        }
    }
    t.finish();
}
