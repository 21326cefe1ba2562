//! Client login: the startup packet family, parameter checks, choosing the
//! pool, authentication (see `auth`), and the login answers
//! (AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::auth_source::Target;
use super::startup::{client_params, startup_params};
use super::{SessionEnd, auth};
use crate::admin::{self, AdminLogin};
use crate::context::Context;
use crate::pool::{LoginAnswer, Pool};
use crate::protocol::backend;
use crate::protocol::frontend::{StartupPacket, read_startup};
use crate::protocol::{Replication, Startup, sqlstate};
use crate::registry::SessionEntry;
use crate::routing::{self, Route};
use crate::server::BackendKey;
use crate::server::params::Params;
use crate::transport::Stream;

/// How a login ended well.
pub(super) enum Login {
    /// Logged in to a pool.
    Pool(LoggedIn),
    /// Logged in to the admin console, whose session runs instead.
    Console(AdminLogin),
    /// A replication connection, logged in to its own server (see
    /// `replication`).
    Replication(super::replication::ReplicationLogin),
    /// No session: a CancelRequest, or a client that left before a word.
    Gone,
}

/// A client logged in to a pool.
pub(super) struct LoggedIn {
    /// Where its transactions go (it is counted in the route's home pool
    /// while this is held).
    pub route: Route,
    /// The tracked parameters it wants on every server it uses.
    pub params: Arc<Params>,
}

/// Read more bytes from the client; EOF is an error.
pub(super) async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> Result<(), SessionEnd> {
    buf.reserve(1024);
    if stream.read_buf(buf).await? == 0 {
        return Err(SessionEnd::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// Read the startup packet family until a StartupMessage (TLS as
/// `client::tls` says; GSSENCRequest answered 'N'). None for a CancelRequest or a client
/// that connected and left without a word.
async fn read_startup_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
    ctx: &Context,
) -> Result<Option<Startup>, SessionEnd> {
    loop {
        if super::tls::is_direct(stream, buf) {
            super::tls::direct(stream, buf, ctx).await?;
            continue;
        }
        match read_startup(buf)? {
            Some(StartupPacket::SslRequest) => {
                super::tls::answer_ssl_request(stream, buf, ctx).await?;
            }
            Some(StartupPacket::GssEncRequest) => {
                stream.write_all(b"N").await?;
            }
            Some(StartupPacket::Cancel {
                process_id,
                secret_key,
            }) => {
                let key = BackendKey {
                    process_id,
                    secret_key,
                };
                let cfg = ctx.config();
                let (timeout, tls) = (cfg.general.cancel_wait_timeout, cfg.tls.server.clone());
                let own = cfg.general.peer_id;
                if own > 0 && key.peer_id() != own {
                    // Peering: a key another process of the group gave out.
                    crate::cancel::forward_to_peer(&cfg.peers, key, tls, timeout).await;
                    return Ok(None);
                }
                // Keys given out with peering carry a full TTL.
                let key = if own > 0 { key.as_given() } else { key };
                crate::cancel::forward(&ctx.registry, key, tls, timeout).await;
                return Ok(None);
            }
            Some(StartupPacket::Startup(s)) => return Ok(Some(s)),
            None => {
                buf.reserve(1024);
                if stream.read_buf(buf).await? == 0 {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Err(SessionEnd::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        "incomplete startup packet",
                    ));
                }
            }
        }
    }
}

/// Log a client in (`over_limit`: it has no max_client_conn slot).
pub(super) async fn login(
    stream: &mut Stream,
    buf: &mut BytesMut,
    ctx: &Context,
    client: &SessionEntry,
    over_limit: bool,
) -> Result<Login, SessionEnd> {
    let Some(startup) = read_startup_message(stream, buf, ctx).await? else {
        return Ok(Login::Gone);
    };
    super::tls::check_required(stream, ctx)?;
    let cfg = ctx.config();
    let (user, database) = who(&startup)?;
    // Shutting down: the console stays reachable (on the Unix socket, kept
    // open until the last client left), nothing else (PgBouncer's words).
    if ctx.stopping() && database != crate::admin::ADMIN_DB {
        return Err(super::SessionEnd::fatal(
            crate::protocol::sqlstate::ADMIN_SHUTDOWN,
            "pooler is shutting down",
        ));
    }
    // Over max_client_conn only the admin console is let in (as in
    // PgBouncer: a DBA can still look and act when clients fill it).
    if over_limit && database != crate::admin::ADMIN_DB {
        return Err(super::too_many_clients());
    }
    if startup.minor > 0 || !startup.protocol_options.is_empty() {
        let mut out = BytesMut::new();
        backend::negotiate_protocol_version(&mut out, 0, &startup.protocol_options);
        stream.write_all(&out).await?;
    }
    let tls = match stream {
        Stream::Tls(s) => s.info(),
        _ => String::new(),
    };
    let replication = super::startup::replication(&startup)?;
    let wanted = startup_params(&startup, &cfg, stream, replication)?;
    if cfg.general.log_connections {
        let peer: &dyn std::fmt::Display = match &client.peer {
            Some(p) => p,
            None => &"",
        };
        let tls = if tls.is_empty() { "no" } else { &tls };
        let replication = replication.name();
        info!(client = client.id, %peer, %user, %database, %tls, %replication, "login attempt");
    }
    if database == crate::admin::ADMIN_DB {
        let login = admin_login(stream, buf, (ctx, &cfg), user, &startup).await?;
        return Ok(Login::Console(login));
    }
    // As PgBouncer: an unknown database is told only to a client that
    // proved its password (the exchange runs with no secret otherwise).
    let db = cfg.databases.lookup(database);
    let target = match db {
        Some(db) => Target::Database(db, database),
        None => Target::Unknown,
    };
    let physical = replication == Replication::Physical;
    let who = (user, database, physical);
    let failed = |e: &SessionEnd| login_failed(client, user, database, e);
    let proven = auth::authenticate(stream, buf, (ctx, &cfg), who, target)
        .await
        .inspect_err(failed)?;
    let db = db
        .ok_or_else(|| {
            SessionEnd::fatal(
                sqlstate::INVALID_CATALOG_NAME,
                format!("no such database: {database}"),
            )
        })
        .inspect_err(failed)?;
    let route = route(ctx, &cfg, db, (database, user), proven).inspect_err(failed)?;
    if replication != Replication::None {
        let asked = super::replication::Asked {
            startup: &startup,
            replication,
            wanted: &wanted,
            who: (user, database, &tls),
        };
        let server = super::replication::open(stream, client, &route, asked).await?;
        let login = super::replication::ReplicationLogin { route, server };
        return Ok(Login::Replication(login));
    }
    let pool = route.home();
    let welcome = pool
        .ensure_welcome()
        .await
        .map_err(super::handoff::checkout_error)?;
    let extra = &cfg.general.track_extra_parameters;
    let answer = pool.login_answer(&welcome, wanted, extra, |welcome, wanted| {
        login_answer(pool, welcome, client_params(welcome, wanted, extra))
    });
    let mut out = BytesMut::with_capacity(answer.messages.len() + 32);
    out.extend_from_slice(&answer.messages);
    let key = client.key;
    backend::backend_key_data(&mut out, key.process_id, key.secret_key);
    backend::ready_for_query(&mut out, b'I');
    // Shared with the pool's other clients of the same identity. Set
    // before the client is told it is in: what it does next (a DBA's
    // SHOW CLIENTS right after its login) must find it listed.
    let pool_user = pool.user();
    let name = &answer.application_name;
    client.set_info(pool.intern_info(user, database, pool_user, name, &tls));
    stream.write_all(&out).await?;
    if cfg.general.log_connections {
        debug!(client = client.id, %user, %database, "login ok");
    }
    let params = answer.params.clone();
    Ok(Login::Pool(LoggedIn { route, params }))
}

/// A login refused after the startup packet named its user and database:
/// one line naming them (the session's closing line, written later, knows
/// only the address), as PgBouncer names them.
#[cold]
#[inline(never)]
fn login_failed(client: &SessionEntry, user: &str, database: &str, e: &SessionEnd) {
    if let Some((code, message)) = e.response() {
        let peer: &dyn std::fmt::Display = match &client.peer {
            Some(p) => p,
            None => &"",
        };
        warn!(
            client = client.id,
            %peer,
            %user,
            %database,
            sqlstate = code.as_str(),
            "login failed: {message}"
        );
    }
}

/// The user and database a startup packet names (the database defaults to
/// the user's name).
fn who(startup: &Startup) -> Result<(&str, &str), SessionEnd> {
    let user = startup
        .param("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            SessionEnd::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
    let database = match startup.param("database") {
        Some(d) if !d.is_empty() => d,
        _ => user,
    };
    Ok((user, database))
}

/// The route of an authenticated client of `database` (entry `db`): its
/// pool (the forced user's, or its own), counting it as a client there;
/// refused when the database is disabled or a client limit is reached.
/// What the client proved (SCRAM keys, a secret auth_query found) serves
/// the pool's server logins when no other secret is known.
fn route(
    ctx: &Context,
    cfg: &crate::config::Config,
    db: &crate::config::Database,
    (database, user): (&str, &str),
    proven: auth::Proven,
) -> Result<Route, SessionEnd> {
    if ctx.pools.db_control(database).disabled() {
        return Err(SessionEnd::fatal(
            sqlstate::CANNOT_CONNECT_NOW,
            format!("database \"{database}\" is disabled"),
        ));
    }
    let pool_user = db.user.as_deref().unwrap_or(user);
    let too_many = |e: crate::pool::ClientLimit| {
        SessionEnd::fatal(sqlstate::TOO_MANY_CONNECTIONS, e.to_string())
    };
    // Counted from here until the session ends: in its pool's database,
    // then under the user it logged in as (PgBouncer's order of checks).
    let route = Route::login(
        &ctx.pools,
        cfg,
        (db, database, pool_user),
        routing::chooser(),
    )
    .map_err(too_many)?;
    let max_user = cfg
        .users
        .get(user)
        .and_then(|u| u.max_user_client_connections)
        .unwrap_or(cfg.general.max_user_client_connections);
    let login = ctx
        .pools
        .count_login(user, max_user as usize)
        .map_err(too_many)?;
    let route = route.with_login(login);
    if db.user.is_none() {
        // The client's own pool: what it proved serves server logins when
        // no password is configured (SCRAM keys, or auth_query's secret).
        if let Some(keys) = proven.scram_keys {
            route.home().remember_scram_keys(keys);
        } else if let Some(secret) = proven.looked_up {
            route.home().remember_secret(secret);
        }
    }
    Ok(route)
}

/// What a login with tracked parameters `params` answers (AuthenticationOk
/// and a ParameterStatus for each parameter the server reported, with the
/// client's value where it set one) and keeps.
fn login_answer(pool: &Pool, welcome: &[(String, String)], params: Params) -> LoginAnswer {
    let size: usize = welcome
        .iter()
        .map(|(n, v)| n.len() + params.get(n).unwrap_or(v).len() + 7)
        .sum::<usize>()
        + 9;
    let mut out = BytesMut::with_capacity(size);
    backend::authentication_ok(&mut out);
    for (name, value) in welcome {
        let value = params.get(name).unwrap_or(value);
        backend::parameter_status(&mut out, name, value);
    }
    LoginAnswer {
        messages: out.freeze(),
        application_name: params.get("application_name").unwrap_or("").to_string(),
        params: pool.intern(params),
    }
}

/// Log a client in to the admin console: the pooler's own OS user as
/// `pgbouncer` over the Unix socket without a password; anyone else
/// authenticates as usual and must be in admin_users or stats_users (also
/// with auth_type any or trust).
async fn admin_login(
    stream: &mut Stream,
    buf: &mut BytesMut,
    (ctx, cfg): (&Context, &crate::config::Config),
    user: &str,
    startup: &Startup,
) -> Result<AdminLogin, SessionEnd> {
    let application_name = startup.param("application_name").unwrap_or("").to_string();
    if user == crate::admin::ADMIN_DB && admin::peer_is_own_user(stream) {
        // An admin: counted, never refused.
        let count = ctx.pools.count_console(user, (0, 0), true).ok();
        return Ok(AdminLogin {
            user: user.to_string(),
            role: admin::Role::Admin,
            application_name,
            count,
        });
    }
    auth::authenticate(
        stream,
        buf,
        (ctx, cfg),
        (user, crate::admin::ADMIN_DB, false),
        Target::Console,
    )
    .await?;
    let role = admin::role_of(cfg, user)
        .ok_or_else(|| SessionEnd::fatal(sqlstate::INVALID_AUTHORIZATION, "not allowed"))?;
    let g = &cfg.general;
    let max_user = cfg
        .users
        .get(user)
        .and_then(|u| u.max_user_client_connections)
        .unwrap_or(g.max_user_client_connections);
    let count = ctx
        .pools
        .count_console(
            user,
            (g.max_db_client_connections as usize, max_user as usize),
            role == admin::Role::Admin,
        )
        .map_err(|e| SessionEnd::fatal(sqlstate::TOO_MANY_CONNECTIONS, e.to_string()))?;
    Ok(AdminLogin {
        user: user.to_string(),
        role,
        application_name,
        count: Some(count),
    })
}
