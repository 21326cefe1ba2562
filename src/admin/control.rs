//! Control commands (PAUSE, RESUME, RELOAD, KILL, ...), admin_users only.
//! The console has checked the permission before calling [`run`]; the work
//! itself is done by the pools (`pool::control`), the context (reload, SET,
//! shutdown) and the client registry (KILL).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::AdminError;
use super::parse::Control;
use crate::context::Context;
use crate::pool::ControlError;
use crate::protocol::backend;
use crate::protocol::sqlstate;

/// Run a control command, writing its answer (CommandComplete with
/// `cmd.tag()`) into `out`.
pub(crate) async fn run(
    ctx: &Arc<Context>,
    cmd: &Control,
    out: &mut BytesMut,
) -> Result<(), AdminError> {
    let cfg = ctx.config();
    let pools = &ctx.pools;
    match cmd {
        Control::Pause(db) => pools.pause(&cfg, db.as_deref()).await.map_err(control)?,
        Control::Resume(_) if ctx.stopping() => {
            // PgBouncer's answer: nothing is resumed during a shutdown.
            return Err(AdminError::new(
                sqlstate::PROTOCOL_VIOLATION,
                "pooler is shutting down",
            ));
        }
        Control::Resume(db) => pools.resume(&cfg, db.as_deref()).map_err(control)?,
        Control::Suspend => pools.suspend(&cfg).await.map_err(control)?,
        Control::Disable(db) => pools.set_disabled(&cfg, db, true).map_err(control)?,
        Control::Enable(db) => pools.set_disabled(&cfg, db, false).map_err(control)?,
        Control::Reconnect(db) => {
            pools.reconnect(&cfg, db.as_deref()).map_err(control)?;
            if cfg.general.server_fast_close {
                fast_close(ctx, db.as_deref());
            }
        }
        Control::WaitClose(db) => pools
            .wait_close(&cfg, db.as_deref())
            .await
            .map_err(control)?,
        Control::Kill(db) => {
            pools.pause_now(&cfg, db.as_deref()).map_err(control)?;
            let mut killed = Vec::new();
            for client in ctx.registry.all() {
                let in_db = db.as_deref().is_none_or(|d| client.database_is(d));
                if in_db && !client.database_is("pgbouncer") {
                    client.kill();
                    killed.push(Arc::downgrade(&client));
                }
            }
            gone(&killed).await;
        }
        Control::KillClient(id) => {
            // PgBouncer's words and code (08P01) for both mistakes.
            let id: u64 = id.parse().map_err(|_| {
                AdminError::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    "invalid client pointer supplied",
                )
            })?;
            let client = ctx.registry.all().into_iter().find(|c| c.id == id);
            match client {
                Some(c) => {
                    c.kill();
                    gone(&[Arc::downgrade(&c)]).await;
                }
                None => {
                    return Err(AdminError::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("client not found: {id}"),
                    ));
                }
            }
        }
        Control::Reload => ctx.reload().map_err(|e| {
            // In the log too, as a SIGHUP's failed reload is.
            tracing::error!("RELOAD failed, keeping the running configuration: {e}");
            // PgBouncer's words first (tools match them), then the reason.
            AdminError::new(
                sqlstate::CONFIG_FILE_ERROR,
                format!("RELOAD failed, see logs for additional details: {e}"),
            )
        })?,
        Control::Set { key, value } => ctx
            .set(key, value)
            .map_err(|e| AdminError::new(sqlstate::CANT_CHANGE_RUNTIME_PARAM, e))?,
        Control::Shutdown(mode) => ctx.request_shutdown(*mode),
        Control::Takeover => {
            tracing::info!(
                "TAKEOVER: a new process takes the listening sockets over; exiting once the last client has left"
            );
            ctx.hand_over();
        }
        Control::Switchover { database, to } => {
            // Boxed: a rare command's state would size every console login.
            let done = Box::pin(pools.switchover(&cfg, database, to))
                .await
                .map_err(|e| AdminError::new(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, e))?;
            use super::rows::{BIGINT, TEXT, Table};
            let mut t = Table::new(
                out,
                &[
                    ("database", TEXT),
                    ("old_primary", TEXT),
                    ("new_primary", TEXT),
                    ("held_ms", BIGINT),
                ],
            );
            t.row(vec![
                database.as_str().into(),
                done.old.to_string().into(),
                done.new.to_string().into(),
                (done.held.as_millis() as i64).into(),
            ]);
            t.finish_as(cmd.tag());
            return Ok(());
        }
        Control::Unfence { database, host } => pools
            .unfence(&cfg, database, host)
            .map_err(|e| AdminError::new(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, e))?,
    }
    backend::command_complete(out, cmd.tag());
    Ok(())
}

fn control(e: ControlError) -> AdminError {
    let code = match e {
        ControlError::NotPaused => sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
        // PgBouncer answers console mistakes with 08P01.
        ControlError::NoSuchDatabase(_) => sqlstate::PROTOCOL_VIOLATION,
        ControlError::DatabaseRequired => sqlstate::SYNTAX_ERROR,
    };
    AdminError::new(code, e.to_string())
}

/// Longest KILL waits for the sessions it closed to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Wait until the sessions of `killed` have ended (their entries dropped:
/// told why, sockets closed), as PgBouncer's KILL has closed them when it
/// answers; at most [`KILL_WAIT`] (a session busy on a stuck socket write
/// ends when its abort lands).
async fn gone(killed: &[std::sync::Weak<crate::registry::SessionEntry>]) {
    let deadline = std::time::Instant::now() + KILL_WAIT;
    while killed.iter().any(|k| k.strong_count() > 0) && std::time::Instant::now() < deadline {
        crate::runtime::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// server_fast_close after RECONNECT: the session-mode sessions of `db`
/// (every database: None) are told to end at their next transaction
/// boundary, their servers with them (transaction and statement mode
/// release servers there anyway).
fn fast_close(ctx: &Context, db: Option<&str>) {
    let session_pools: Vec<(String, String)> = ctx
        .pools
        .all()
        .iter()
        .filter(|p| p.settings().mode == crate::config::PoolMode::Session)
        .map(|p| (p.database().to_string(), p.user().to_string()))
        .collect();
    for client in ctx.registry.all() {
        let Some(info) = client.info() else { continue };
        let in_db = db.is_none_or(|d| info.database == d);
        let session = session_pools
            .iter()
            .any(|(d, u)| *d == info.database && *u == info.pool_user);
        if in_db && session && client.linked().is_some() {
            client.close(crate::registry::CloseRequest::ConfigChanged);
        }
    }
}
