//! Replication connections (`replication=true` or `database` in the
//! startup packet): pg_basebackup, pg_receivewal, pg_recvlogical, a
//! standby's or a subscriber's walreceiver through the pooler.
//!
//! As in PgBouncer, such a client gets a server of its own for its whole
//! life, whatever the pool mode: it is opened during the login (see
//! `pool::dedicated`) with the client's `replication` value, tracked
//! parameters and `options` in the startup packet, the client's login is
//! answered with what that server reported, and from then on bytes are
//! passed through both ways unread (the replication protocol's CopyBoth
//! stream has no transaction boundary to pool on). When either side
//! leaves, the other is closed and the server is never reused.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

use super::SessionEnd;
use crate::context::{Context, Registration};
use crate::pool::CheckoutError;
use crate::protocol::{Replication, Startup, backend};
use crate::registry::{ClientInfo, CloseRequest, SessionEntry};
use crate::routing::Route;
use crate::server::params::Params;
use crate::server::{ServerConn, ServerEnd, ServerError};
use crate::transport::Stream;

/// Bytes read at a time each way (WAL streams in 8 KiB pages and larger
/// CopyData messages: a bigger buffer means fewer reads and writes).
const CHUNK: usize = 64 * 1024;

/// A replication client logged in, with its server.
pub(super) struct ReplicationLogin {
    /// Its pool (it is counted there while this is held).
    pub route: Route,
    /// Its own server, logged in.
    pub server: Box<ServerConn>,
}

/// Who is logging in, for [`open`].
pub(super) struct Asked<'a> {
    pub startup: &'a Startup,
    pub replication: Replication,
    /// Its tracked parameters (application_name and the like).
    pub wanted: &'a Params,
    /// User and database it logged in as, and its TLS as SHOW CLIENTS
    /// prints it.
    pub who: (&'a str, &'a str, &'a str),
}

/// Open the client's own server and answer its login with what that
/// server reported (AuthenticationOk, its ParameterStatus, the pooler's
/// BackendKeyData for this client, ReadyForQuery). A server that refuses
/// the login fails this client alone, with the server's SQLSTATE and
/// PgBouncer's words ("login failed"; the server's message is logged).
pub(super) async fn open(
    stream: &mut Stream,
    client: &SessionEntry,
    route: &Route,
    asked: Asked<'_>,
) -> Result<Box<ServerConn>, SessionEnd> {
    let mut extra = vec![(
        "replication".to_string(),
        asked.replication.startup_value().to_string(),
    )];
    extra.extend(
        asked
            .wanted
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string())),
    );
    if let Some(options) = asked.startup.param("options") {
        extra.push(("options".to_string(), options.to_string()));
    }
    let pool = route.home();
    let server = pool.open_dedicated(extra).await.map_err(|e| match e {
        CheckoutError::Server(ServerError::Rejected { code, .. }) => {
            SessionEnd::fatal(code, "login failed")
        }
        other => super::handoff::checkout_error(other),
    })?;
    let mut out = BytesMut::with_capacity(512);
    backend::authentication_ok(&mut out);
    for (name, value) in server.params.iter() {
        backend::parameter_status(&mut out, name, value);
    }
    backend::backend_key_data(&mut out, client.key.process_id, client.key.secret_key);
    backend::ready_for_query(&mut out, b'I');
    let (user, database, tls) = asked.who;
    client.set_info(Arc::new(ClientInfo {
        user: user.to_string(),
        database: database.to_string(),
        pool_user: pool.user().to_string(),
        application_name: asked.wanted.get("application_name").unwrap_or("").into(),
        tls: tls.to_string(),
        replication: asked.replication,
    }));
    stream.write_all(&out).await?;
    Ok(server)
}

/// Pass bytes both ways until one side leaves (or SHUTDOWN or KILL ends
/// the session), then close the server. `pending` is what the client sent
/// after its startup packet that the login read already.
pub(super) async fn serve(
    mut stream: Stream,
    pending: BytesMut,
    login: ReplicationLogin,
    registration: Registration,
) {
    let ctx: Arc<Context> = registration.owner().clone();
    let entry = registration.entry.clone();
    let ReplicationLogin { route, mut server } = login;
    // Busy for its whole life: never idle, parked or timed out as idle;
    // KILL aborts it (closing both sockets).
    entry.active();
    let link = (server.addr.clone(), server.key, server.id);
    entry.link(link, 0, server.tls.is_some());
    let end = relay(&mut stream, &mut server, &pending, (&entry, &ctx)).await;
    entry.unlink();
    match end {
        Ok(None) => {
            if ctx.config().general.log_disconnections {
                info!(client = entry.id, who = %entry.who(), "client closed the connection");
            }
        }
        Ok(Some(reason)) => {
            info!(client = entry.id, who = %entry.who(), "replication connection closed: {reason:?}");
        }
        Err(e) => {
            debug!(client = entry.id, who = %entry.who(), "replication connection ended: {e}");
        }
    }
    debug!(
        server = server.id,
        "server closing because: replication client disconnected"
    );
    route.home().discard_for(server, ServerEnd::Replication);
    drop(route);
    drop(registration);
}

/// The pass-through; Some(reason) when SHUTDOWN or KILL ended it.
async fn relay(
    stream: &mut Stream,
    server: &mut ServerConn,
    pending: &[u8],
    (entry, ctx): (&SessionEntry, &Context),
) -> std::io::Result<Option<CloseRequest>> {
    if !pending.is_empty() {
        server.stream.write_all(pending).await?;
    }
    let mut copy = pin!(tokio::io::copy_bidirectional_with_sizes(
        stream,
        &mut server.stream,
        CHUNK,
        CHUNK,
    ));
    poll_fn(|cx| {
        if let Poll::Ready(r) = copy.as_mut().poll(cx) {
            return Poll::Ready(r.map(|_| None));
        }
        // Registered first: a close that lands between the look and the
        // registration still wakes this task.
        entry.register_waker(cx);
        match entry.closing_reason(&ctx.epoch) {
            Some(reason @ (CloseRequest::Shutdown | CloseRequest::Killed)) => {
                Poll::Ready(Ok(Some(reason)))
            }
            // A drain (SHUTDOWN WAIT_FOR_SERVERS) waits for the client to
            // leave, as for a session-mode client holding its server.
            _ => Poll::Pending,
        }
    })
    .await
}
