//! Client login: the startup packet family, parameter checks, choosing the
//! pool, authentication (see `auth`), and the login answers
//! (AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};

use super::{ClientError, auth};
use crate::cancel::CancelTarget;
use crate::config::{Config, Database, PoolMode};
use crate::context::Context;
use crate::net::Stream;
use crate::pool::{Pool, PoolKey, PoolSettings};
use crate::protocol::backend;
use crate::protocol::frontend::{StartupPacket, read_startup};
use crate::protocol::{Startup, sqlstate};
use crate::server::params::{Params, tracked_name};
use crate::server::{BackendKey, ServerAddr, ServerCredentials, ServerTarget};

/// A logged-in client.
pub(super) struct LoggedIn {
    /// Its pool.
    pub pool: Arc<Pool>,
    /// The tracked parameters it wants on every server it uses.
    pub params: Arc<Params>,
}

/// Read more bytes from the client; EOF is an error.
pub(super) async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> Result<(), ClientError> {
    buf.reserve(1024);
    if stream.read_buf(buf).await? == 0 {
        return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// Read the startup packet family until a StartupMessage (answering
/// SSLRequest/GSSENCRequest with 'N'). None for a CancelRequest or a client
/// that connected and left without a word.
async fn read_startup_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
    ctx: &Context,
) -> Result<Option<Startup>, ClientError> {
    loop {
        match read_startup(buf)? {
            Some(StartupPacket::SslRequest | StartupPacket::GssEncRequest) => {
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
                let timeout = ctx.config().general.cancel_wait_timeout;
                ctx.cancel.cancel(key, timeout).await;
                return Ok(None);
            }
            Some(StartupPacket::Startup(s)) => return Ok(Some(s)),
            None => {
                buf.reserve(1024);
                if stream.read_buf(buf).await? == 0 {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Err(ClientError::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        "incomplete startup packet",
                    ));
                }
            }
        }
    }
}

/// Answer a client over max_client_conn: read its startup, then refuse.
pub(super) async fn refuse(stream: &mut Stream, ctx: &Context) -> Result<(), ClientError> {
    let mut buf = BytesMut::new();
    let read = read_startup_message(stream, &mut buf, ctx);
    match tokio::time::timeout(Duration::from_secs(5), read).await {
        Ok(Ok(None)) => Ok(()),
        _ => Err(super::too_many_clients()),
    }
}

/// Log a client in. None when the connection was a CancelRequest or closed
/// before sending anything.
pub(super) async fn login(
    stream: &mut Stream,
    buf: &mut BytesMut,
    ctx: &Context,
    client: &CancelTarget,
) -> Result<Option<LoggedIn>, ClientError> {
    let Some(startup) = read_startup_message(stream, buf, ctx).await? else {
        return Ok(None);
    };
    let cfg = ctx.config();
    if startup.minor > 0 || !startup.protocol_options.is_empty() {
        let mut out = BytesMut::new();
        backend::negotiate_protocol_version(&mut out, 0, &startup.protocol_options);
        stream.write_all(&out).await?;
    }
    let user = startup
        .param("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ClientError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?
        .to_string();
    let database = match startup.param("database") {
        Some(d) if !d.is_empty() => d.to_string(),
        _ => user.clone(),
    };
    let wanted = startup_params(&startup, &cfg)?;
    if cfg.general.log_connections {
        let peer = client
            .peer
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        info!(client = client.id, %peer, %user, %database, "login attempt");
    }
    let db = cfg.databases.lookup(&database).ok_or_else(|| {
        ClientError::fatal(
            sqlstate::INVALID_CATALOG_NAME,
            format!("no such database: {database}"),
        )
    })?;
    let scram_keys = auth::authenticate(stream, buf, &cfg, &user).await?;

    let pool_user = db.user.clone().unwrap_or_else(|| user.clone());
    let forced_user = db.user.is_some();
    let key_for_pool = PoolKey {
        database: database.clone(),
        user: pool_user.clone(),
    };
    let pool = ctx.pools.get_or_create(key_for_pool, || {
        pool_settings(&cfg, db, &database, &pool_user)
    });
    if pool.settings.mode == PoolMode::Statement {
        return Err(ClientError::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "pool_mode statement is not supported by pgsluice yet",
        ));
    }
    if let (Some(keys), false) = (scram_keys, forced_user) {
        pool.remember_scram_keys(keys);
    }
    let welcome = pool.ensure_welcome().await.map_err(|e| {
        let (code, message) = match &e {
            crate::pool::CheckoutError::Server(s) => s.client_error(),
            other => (sqlstate::CONNECTION_FAILURE.to_string(), other.to_string()),
        };
        ClientError::fatal(code, message)
    })?;

    let params = client_params(&welcome, &wanted, &cfg.general.track_extra_parameters);
    let mut out = BytesMut::new();
    backend::authentication_ok(&mut out);
    for (name, value) in welcome.iter() {
        let value = params.get(name).unwrap_or(value);
        backend::parameter_status(&mut out, name, value);
    }
    let key = client.key;
    backend::backend_key_data(&mut out, key.process_id, key.secret_key);
    backend::ready_for_query(&mut out, b'I');
    stream.write_all(&out).await?;
    if cfg.general.log_connections {
        debug!(client = client.id, %user, %database, "login ok");
    }
    let params = pool.intern(params);
    Ok(Some(LoggedIn { pool, params }))
}

/// Check startup parameters: tracked ones are kept, ignored ones dropped,
/// anything else refused (as PgBouncer does).
fn startup_params(startup: &Startup, cfg: &Config) -> Result<Params, ClientError> {
    let g = &cfg.general;
    let mut wanted = Params::new();
    for (name, value) in &startup.params {
        // An empty `options` (some drivers always send it) asks for nothing.
        if name == "user" || name == "database" || (name == "options" && value.trim().is_empty()) {
            continue;
        }
        if let Some(canonical) = tracked_name(name, &g.track_extra_parameters) {
            wanted.set(canonical, value);
        } else if !g
            .ignore_startup_parameters
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name))
        {
            return Err(ClientError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("unsupported startup parameter: {name}"),
            ));
        }
    }
    Ok(wanted)
}

/// The client's wanted tracked parameters: the server defaults from the
/// pool's login answers, overridden by what the client asked for.
fn client_params(welcome: &[(String, String)], wanted: &Params, extra: &[String]) -> Params {
    let mut params = Params::new();
    for (name, value) in welcome {
        if tracked_name(name, extra).is_some() {
            params.set(name, value);
        }
    }
    for (name, value) in wanted.iter() {
        params.set(name, value);
    }
    params
}

/// Resolve a pool's settings from its [databases] entry, [users] and
/// [pgbouncer] (user settings win over database settings over defaults).
fn pool_settings(cfg: &Config, db: &Database, database: &str, pool_user: &str) -> PoolSettings {
    let g = &cfg.general;
    let user_cfg = cfg.users.get(pool_user);
    let mode = user_cfg
        .and_then(|u| u.pool_mode)
        .or(db.pool_mode)
        .unwrap_or(g.pool_mode);
    let size = db
        .pool_size
        .or(user_cfg.and_then(|u| u.pool_size))
        .unwrap_or(g.default_pool_size) as usize;
    let credentials = match (&db.password, cfg.userlist.get(pool_user)) {
        (Some(pw), _) => ServerCredentials::Password(pw.clone()),
        (None, Some(crate::auth::Secret::Plain(pw))) => ServerCredentials::Password(pw.clone()),
        (None, Some(crate::auth::Secret::Md5(s))) => ServerCredentials::Md5Secret(s.clone()),
        _ => ServerCredentials::None,
    };
    let mut startup_params = Vec::new();
    for (name, v) in [
        ("client_encoding", &db.client_encoding),
        ("datestyle", &db.datestyle),
        ("timezone", &db.timezone),
        ("application_name", &db.application_name),
    ] {
        if let Some(v) = v {
            startup_params.push((name.to_string(), v.clone()));
        }
    }
    PoolSettings {
        target: ServerTarget {
            addr: Arc::new(server_addr(db)),
            database: db.dbname.clone().unwrap_or_else(|| database.to_string()),
            user: pool_user.to_string(),
            startup_params,
        },
        credentials,
        size: size.max(1),
        mode,
        connect_timeout: g.server_connect_timeout,
        wait_timeout: user_cfg
            .and_then(|u| u.query_wait_timeout)
            .or(db.query_wait_timeout)
            .unwrap_or(g.query_wait_timeout),
        reset_query: g.server_reset_query.clone(),
        reset_query_always: g.server_reset_query_always,
        connect_query: db.connect_query.clone(),
    }
}

/// The server address of a [databases] entry. Without host, the Unix
/// socket in the usual directory (/var/run/postgresql when it exists, else
/// /tmp); a host starting with '/' is a socket directory; of a host list,
/// the first host is used (load balancing comes later).
fn server_addr(db: &Database) -> ServerAddr {
    let host = db
        .host
        .as_deref()
        .and_then(|h| h.split(',').map(str::trim).find(|h| !h.is_empty()));
    match host {
        Some(h) if !h.starts_with('/') => ServerAddr::Tcp {
            host: h.to_string(),
            port: db.port,
        },
        Some(dir) => ServerAddr::Unix {
            dir: PathBuf::from(dir),
            port: db.port,
        },
        None => {
            let debian = PathBuf::from("/var/run/postgresql");
            let dir = if debian.is_dir() {
                debian
            } else {
                PathBuf::from("/tmp")
            };
            ServerAddr::Unix { dir, port: db.port }
        }
    }
}
