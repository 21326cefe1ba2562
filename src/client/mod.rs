//! One client session: login (`login`, `auth`), then the loop that links the
//! client to a server per transaction (`session`) and relays bytes between
//! them (`relay`).

mod auth;
mod auth_method;
mod auth_source;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod handoff;
mod ldap;
mod ldap_starttls;
mod login;
mod notices;
mod pam;
mod prepared;
mod refusal;
mod relay;
mod replication;
mod scan;
#[cfg(test)]
mod scan_props;
mod session;
mod startup;
mod timeouts;
mod tls;
mod wait_notice;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::context::Context;
use crate::context::Registration;
use crate::protocol::backend::{Severity, error_response};
use crate::protocol::{ProtocolError, SqlState, sqlstate};
use crate::transport::{Peer, Stream};

/// How a client session ends: the client said goodbye, or the pooler ends
/// it with a FATAL error (SQLSTATE and message, told to the client and
/// logged), or its connection was lost. Functions that can end a session
/// return it as their error; a normal goodbye comes back as
/// `Step::End` (see `session`), not as an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionEnd {
    /// The client left: it sent Terminate (`terminate`), or closed its
    /// socket between requests.
    #[error("client {}", if *terminate { "close request" } else { "closed the connection" })]
    Goodbye {
        /// It sent Terminate (else it closed its socket).
        terminate: bool,
    },
    /// The client broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The session must end with this FATAL error.
    #[error("{message}")]
    Fatal {
        /// SQLSTATE.
        code: SqlState,
        /// Message for the client and the log.
        message: String,
    },
    /// The client's connection failed, or closed in the middle of
    /// something (nothing can be told to it).
    #[error("client connection error: {0}")]
    Io(#[from] std::io::Error),
}

impl SessionEnd {
    /// A FATAL error with a SQLSTATE.
    pub(crate) fn fatal(code: SqlState, message: impl Into<String>) -> SessionEnd {
        SessionEnd::Fatal {
            code,
            message: message.into(),
        }
    }

    /// SQLSTATE and message to send, if the client can still be told.
    fn response(&self) -> Option<(SqlState, String)> {
        match self {
            SessionEnd::Protocol(e) => Some((e.sqlstate(), e.to_string())),
            SessionEnd::Fatal { code, message } => Some((*code, message.clone())),
            SessionEnd::Goodbye { .. } | SessionEnd::Io(_) => None,
        }
    }
}

/// What a client closed by a shutdown is told (PgBouncer's text, which logs
/// and alerts match: `closing because: server shutting down`).
pub(crate) const SHUTTING_DOWN: &str = "server shutting down";

/// What a client closed by KILL / KILL_CLIENT is told.
pub(crate) const KILLED: &str = "terminating connection due to administrator command (KILL)";

/// Start a task serving one client connection until it ends. `permit` is
/// its max_client_conn slot (None when over the limit: it gets 53300 after
/// its startup packet, unless it asks for the admin console).
pub(crate) fn spawn(
    stream: Stream,
    peer: Peer,
    ctx: Arc<Context>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let registration = Registration::new(ctx.clone(), next_id(), peer.clone());
    let target = registration.entry.clone();
    let task = tokio::spawn(serve(stream, peer, ctx, permit, registration));
    target.set_task(task.abort_handle());
}

fn next_id() -> u64 {
    crate::runtime::ids::next_socket_id()
}

/// Serve one client connection until it ends (see [`spawn`]).
pub(crate) fn serve(
    stream: Stream,
    peer: Peer,
    ctx: Arc<Context>,
    permit: Option<OwnedSemaphorePermit>,
    registration: Registration,
) -> ClientTask {
    let id = registration.entry.id;
    // A debug-level span: at the default level it costs nothing per client
    // (an info span would allocate in the subscriber for every session);
    // info lines carry `client = id` themselves.
    let span = debug_span!("client", id);
    let login = login_task(stream, peer, id, ctx, permit, registration).instrument(span);
    ClientTask(Stage::Login(Box::pin(login)))
}

/// The future of a client's task: the login (boxed: large, short-lived),
/// then, in the same task, the session (small, long-lived). One task per
/// connection: a second spawn would cost a cross-thread wake-up per login.
pub(crate) struct ClientTask(Stage);

enum Stage {
    /// Logging in.
    Login(Pin<Box<dyn Future<Output = Option<session::Client>> + Send>>),
    /// Logged in.
    Session(session::SessionTask),
    /// Over.
    Done,
}

impl Future for ClientTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let stage = &mut self.0;
        loop {
            match stage {
                Stage::Login(login) => {
                    *stage = match std::task::ready!(login.as_mut().poll(cx)) {
                        Some(client) => Stage::Session(session::run(client)),
                        None => Stage::Done,
                    };
                }
                Stage::Session(session) => {
                    std::task::ready!(Pin::new(session).poll(cx));
                    *stage = Stage::Done;
                }
                Stage::Done => return Poll::Ready(()),
            }
        }
    }
}

/// Give a parked client a task again (from any thread; see
/// `session::Parked`).
fn resume(client: session::Client, runtime: &tokio::runtime::Handle) {
    let entry = client.target().clone();
    let task = runtime.spawn(ClientTask(Stage::Session(session::run(client))));
    entry.set_task(task.abort_handle());
}

/// Log a client in; None when the connection ended during login (after
/// being told why, when it could be told).
async fn login_task(
    stream: Stream,
    peer: Peer,
    id: u64,
    ctx: Arc<Context>,
    permit: Option<OwnedSemaphorePermit>,
    registration: Registration,
) -> Option<session::Client> {
    let connected_us = now_us();
    match session::login_phase(stream, registration, permit).await {
        Ok(session::Entered::Pool(client)) => Some(client),
        Ok(session::Entered::Console(stream, login, permit)) => {
            // The console session runs here, in the login's (boxed) future:
            // it is rare and short-lived, unlike pool sessions.
            crate::admin::serve(stream, (peer, id, permit), ctx, login).await;
            None
        }
        Ok(session::Entered::Replication(stream, buf, login, registration, permit)) => {
            // Rare and long-lived: it runs here, as the console does.
            replication::serve(stream, buf, login, registration).await;
            drop(permit);
            None
        }
        Ok(session::Entered::Gone) => {
            debug!(client = id, "connection ended during login");
            None
        }
        Err((mut stream, e)) => {
            if let Some((code, _)) = e.response() {
                *ctx.login_failures.lock().entry(code).or_default() += 1;
            }
            report(
                &mut stream,
                (id, &format!("@{peer}"), connected_us),
                &ctx,
                e,
            )
            .await;
            let _ = stream.shutdown().await;
            None
        }
    }
}

/// Log why a session ends and tell the client, when it can still be told.
/// The log line reads as PgBouncer's ("closing because: ... (age=Ns)"),
/// which its users grep for; `connected_us` is when the client connected
/// (microseconds since the Unix epoch).
pub(crate) async fn report(
    stream: &mut Stream,
    (id, who, connected_us): (u64, &str, u64),
    ctx: &Context,
    e: SessionEnd,
) {
    let Some((code, message)) = e.response() else {
        info!(client = id, who, "client connection closed: {e}");
        return;
    };
    *ctx.client_errors.lock().entry(code).or_default() += 1;
    if ctx.config().general.log_pooler_errors {
        let age = now_us().saturating_sub(connected_us) / 1_000_000;
        warn!(
            client = id,
            who,
            sqlstate = code.as_str(),
            "closing because: {message} (age={age}s)"
        );
    }
    let mut out = BytesMut::new();
    error_response(&mut out, Severity::Fatal, code, &message);
    let _ = stream.write_all(&out).await;
}

/// Microseconds since the Unix epoch (as `SessionEntry::connected_us`).
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Shorthand for the "too many connections" error.
pub(crate) fn too_many_clients() -> SessionEnd {
    SessionEnd::fatal(
        sqlstate::TOO_MANY_CONNECTIONS,
        "no more connections allowed (max_client_conn)",
    )
}
