//! The admin console: the virtual database `pgbouncer`. A client that logs
//! in to it (see `client::login`) never reaches PostgreSQL: its session is
//! [`serve`], a simple-query loop answering SHOW commands (`show`, `pools`,
//! `sockets`, `stats_show`) and control commands (`control`).
//!
//! Who may log in: users in admin_users (everything) and stats_users (every
//! SHOW but FDS), after the usual authentication; over the Unix socket, the
//! OS user running pgsluice as user `pgbouncer` without a password.
//! The console reads pools and the client registry; it changes nothing
//! itself (control commands are the pool's business).

mod control;
mod hosts;
mod parse;
mod pools;
mod rows;
mod show;
mod sockets;
pub(crate) mod stats_show;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};

pub use parse::{Command, Control, parse};
pub use pools::ADMIN_DB;
pub use show::version;
pub use stats_show::stats_rows;

use crate::config::Config;
use crate::context::Context;
use crate::context::Registration;
use crate::protocol::backend::{self, Severity};
use crate::protocol::frontend::{FrontendMessage, read_message};
use crate::protocol::{SqlState, sqlstate};
use crate::registry::ClientInfo;
use crate::transport::Peer;
use crate::transport::Stream;

/// 42601 syntax_error: a command the console does not know.
pub const SYNTAX_ERROR: SqlState = sqlstate::SYNTAX_ERROR;
/// 42501 insufficient_privilege: a stats user tried a control command.
pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState::new("42501");

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// admin_users (and the pooler's own OS user): everything.
    Admin,
    /// stats_users: every SHOW except FDS.
    Stats,
}

/// A client that logged in to the console.
#[derive(Debug)]
pub struct AdminLogin {
    /// Its user name.
    pub user: String,
    /// What it may do.
    pub role: Role,
    /// application_name from its startup packet.
    pub application_name: String,
    /// Its count under the console's database and its user, for the
    /// session's life.
    pub count: Option<crate::pool::LoginCount>,
}

/// A command that failed (the session goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    /// SQLSTATE.
    pub code: SqlState,
    /// Message for the client.
    pub message: String,
}

impl AdminError {
    /// An error with a SQLSTATE.
    pub fn new(code: SqlState, message: impl Into<String>) -> AdminError {
        AdminError {
            code,
            message: message.into(),
        }
    }

    /// A stats user tried something only admin_users may do.
    pub(crate) fn admin_needed() -> AdminError {
        AdminError::new(INSUFFICIENT_PRIVILEGE, "admin access needed")
    }
}

/// The console role of `user`, if it may use the console at all.
pub(crate) fn role_of(cfg: &Config, user: &str) -> Option<Role> {
    let g = &cfg.general;
    if g.admin_users.iter().any(|u| u == user) {
        Some(Role::Admin)
    } else if g.stats_users.iter().any(|u| u == user) {
        Some(Role::Stats)
    } else {
        None
    }
}

/// The uid pgsluice runs as (the owner of `/proc/self`); None where there
/// is no procfs.
pub(crate) fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Whether a Unix-socket peer runs as the same OS user as pgsluice.
pub(crate) fn peer_is_own_user(stream: &Stream) -> bool {
    let peer = stream.unix_peer().and_then(|p| p.uid);
    peer.is_some() && peer == own_uid()
}

/// Run a console session for a client that logged in, with the
/// max_client_conn slot of its login (kept while it lasts), or none: as in
/// PgBouncer, the console is let in over the limit.
pub async fn serve(
    mut stream: Stream,
    (peer, id, slot): (Peer, u64, Option<tokio::sync::OwnedSemaphorePermit>),
    ctx: Arc<Context>,
    login: AdminLogin,
) {
    let registration = Registration::new(ctx.clone(), id, peer);
    registration.entry.set_info(std::sync::Arc::new(ClientInfo {
        user: login.user.clone(),
        database: ADMIN_DB.to_string(),
        pool_user: ADMIN_DB.to_string(),
        application_name: login.application_name.clone(),
        tls: match &stream {
            Stream::Tls(s) => s.info(),
            _ => String::new(),
        },
        replication: crate::protocol::Replication::None,
    }));
    info!(client = id, user = %login.user, role = ?login.role, "admin console login");
    let mut out = BytesMut::new();
    welcome(&mut out, &registration, &login);
    if stream.write_all(&out).await.is_err() {
        return;
    }
    let result = session(&mut stream, &ctx, &registration, login.role).await;
    if let Err((code, message)) = result {
        fatal(&mut stream, code, &message).await;
    }
    let _ = stream.shutdown().await;
    debug!(client = id, "admin console session ended");
    drop(slot);
}

/// The login answers: AuthenticationOk, ParameterStatus, BackendKeyData,
/// ReadyForQuery.
fn welcome(out: &mut BytesMut, registration: &Registration, login: &AdminLogin) {
    backend::authentication_ok(out);
    let params = [
        ("server_version", "1.25.0/bouncer"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "GMT"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("application_name", login.application_name.as_str()),
    ];
    for (name, value) in params {
        backend::parameter_status(out, name, value);
    }
    let key = registration.entry.key;
    backend::backend_key_data(out, key.process_id, key.secret_key);
    backend::ready_for_query(out, b'I');
}

async fn fatal(stream: &mut Stream, code: SqlState, message: &str) {
    let mut out = BytesMut::new();
    backend::error_response(&mut out, Severity::Fatal, code, message);
    let _ = stream.write_all(&out).await;
}

/// Why a session ends with an error: SQLSTATE and message.
type End = (SqlState, String);

/// Read and answer queries until the client leaves, breaks the protocol
/// or the pooler shuts down.
async fn session(
    stream: &mut Stream,
    ctx: &Arc<Context>,
    registration: &Registration,
    role: Role,
) -> Result<(), End> {
    let max = ctx.config().general.max_packet_size;
    let mut buf = BytesMut::new();
    loop {
        let msg = read_message(&mut buf, max).map_err(|e| (e.sqlstate(), e.to_string()))?;
        let Some(msg) = msg else {
            buf.reserve(1024);
            let target = &registration.entry;
            let closing = std::future::poll_fn(|cx| match target.poll_closing(cx, &ctx.epoch) {
                Some(reason) => std::task::Poll::Ready(reason),
                None => std::task::Poll::Pending,
            });
            tokio::select! {
                n = stream.read_buf(&mut buf) => match n {
                    Ok(0) | Err(_) => return Ok(()),
                    Ok(_) => continue,
                },
                _ = closing => {
                    return Err((sqlstate::ADMIN_SHUTDOWN, "pgsluice is shutting down".into()));
                }
            }
        };
        match msg {
            FrontendMessage::Query(q) => {
                // Counted before it runs, as PgBouncer counts a console
                // command (SHOW TOTALS includes itself).
                ctx.admin_stats.add(&crate::stats::Totals {
                    xact_count: 1,
                    query_count: 1,
                    bytes_received: q.len() as u64 + 6,
                    ..Default::default()
                });
                let mut out = BytesMut::new();
                answer(ctx, role, &q, &mut out).await;
                backend::ready_for_query(&mut out, b'I');
                ctx.admin_stats.add(&crate::stats::Totals {
                    bytes_sent: out.len() as u64,
                    ..Default::default()
                });
                if stream.write_all(&out).await.is_err() {
                    return Ok(());
                }
            }
            FrontendMessage::Terminate => return Ok(()),
            FrontendMessage::Parse { .. }
            | FrontendMessage::Bind { .. }
            | FrontendMessage::Describe { .. }
            | FrontendMessage::Execute { .. }
            | FrontendMessage::Close { .. }
            | FrontendMessage::Sync
            | FrontendMessage::Flush => {
                return Err((
                    sqlstate::PROTOCOL_VIOLATION,
                    "extended query protocol not supported by admin console".into(),
                ));
            }
            other => {
                return Err((
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("unexpected message in the admin console: {other:?}"),
                ));
            }
        }
    }
}

/// Answer one query string into `out` (without the ReadyForQuery).
async fn answer(ctx: &Arc<Context>, role: Role, query: &str, out: &mut BytesMut) {
    let result = match parse(query) {
        Ok(Command::Empty) => {
            backend::empty_query_response(out);
            Ok(())
        }
        Ok(Command::Show(what)) => show::show(ctx, role, &what, out),
        Ok(Command::Control(Control::Set { key, .. }))
            if show::FAKE_PARAMS.iter().any(|(n, _)| *n == key) =>
        {
            // As PgBouncer: drivers SET these on connect; nothing to do.
            backend::error_response(
                out,
                Severity::Notice,
                crate::protocol::sqlstate::SUCCESSFUL_COMPLETION,
                "SET ignored",
            );
            backend::command_complete(out, "SET");
            Ok(())
        }
        Ok(Command::Control(_)) if role != Role::Admin => Err(AdminError::admin_needed()),
        Ok(Command::Control(cmd)) => control::run(ctx, &cmd, out).await,
        Err(e) => Err(AdminError::new(SYNTAX_ERROR, e.0)),
    };
    if let Err(e) = result {
        backend::error_response(out, Severity::Error, e.code, &e.message);
    }
}
