//! The session loop: after login, wait for the first message of a
//! transaction, take a server from the pool, bring its tracked
//! parameters in line with the client's, relay until the transaction ends,
//! and give the server back (the request itself: `session/request.rs`).
//!
//! Memory: an idle client costs its socket and its `Client`, held by a small
//! [`SessionTask`] (or, once parked, by its registry entry with no task).
//! The relay state lives in a boxed future allocated per transaction; the
//! read buffer is kept between transactions and given back when the session
//! parks (idle about a second), so ten thousand idle clients cost little.

use std::sync::Arc;

use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;

use tokio::io::AsyncReadExt;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::SessionEnd;
use super::handoff::note_poll;
use super::login::{LoggedIn, Login, login};
use super::prepared::ClientPrepared;
use crate::config::Config;
use crate::context::Registration;
use crate::protocol::sqlstate;
use crate::registry::CloseRequest;
use crate::routing::Route;
use crate::server::params::Params;
use crate::transport::{Detached, Stream};

/// A read buffer up to this size (64 KiB) is kept between transactions
/// (after ordinary requests it is 4-16 KiB: `BytesMut` grows by doubling).
const KEEP_BUF: usize = 16 * super::relay::READ_CHUNK;

/// What a logged-in client holds, running ([`Client`]) or parked
/// ([`Parked`]).
///
/// It holds one of the max_client_conn slots (`Context::client_slots`),
/// given back when it is dropped: a forgotten semaphore permit, not an
/// `OwnedSemaphorePermit`, which would keep a second pointer to the
/// context (16 bytes per idle client; see the size test).
struct Held {
    registration: Registration,
    cfg: Arc<Config>,
    /// Where its transactions go; the client is counted in the route's
    /// home pool while this is held.
    route: Route,
    /// Tracked parameters the client wants; shared copy-on-write with other
    /// clients of the pool that want the same.
    params: Arc<Params>,
    /// Its named prepared statements, once it sent an extended-protocol
    /// message with max_prepared_statements on (`prepared`).
    prepared: Option<Box<ClientPrepared>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.context().client_slots.add_permits(1);
    }
}

impl Held {
    /// A logged-in client's state, taking over its max_client_conn slot.
    fn new(
        registration: Registration,
        permit: OwnedSemaphorePermit,
        cfg: Arc<Config>,
        (route, params): (Route, Arc<Params>),
    ) -> Held {
        debug_assert_eq!(permit.num_permits(), 1);
        permit.forget();
        Held {
            registration,
            cfg,
            route,
            params,
            prepared: None,
        }
    }

    /// The session's registry entry.
    fn target(&self) -> &Arc<crate::registry::SessionEntry> {
        &self.registration.entry
    }

    /// The client's pooler.
    fn context(&self) -> &Arc<crate::context::Context> {
        self.registration.owner()
    }
}

/// A logged-in client: everything its session needs, owned, so that the
/// session runs in a small task of its own after login.
pub(crate) struct Client {
    stream: Stream,
    /// Bytes read but not yet forwarded (usually empty and unallocated).
    buf: BytesMut,
    held: Held,
    /// This task's waker is the registry entry's (see `waker_registered`).
    waker_set: bool,
}

/// A client parked in its registry entry (idle for a while): no task, no
/// read buffer, its socket off the runtime's reactor and watched by the
/// parker (see `transport::parker`).
pub(crate) struct Parked {
    socket: Detached,
    held: Held,
}

/// A parked client's socket (or a close) woke its entry: the client goes
/// back to a task of its own, on the next shard in turn.
impl crate::registry::ParkedSession for Parked {
    fn resume(self: Box<Self>) {
        let ctx = self.held.context().clone();
        if let Some(parker) = ctx.registry.parker() {
            // A resumed client was watched: this cannot fail.
            let _ = parker.unwatch(self.socket.fd());
        }
        let runtime = ctx.resume_runtime();
        let _entered = runtime.enter();
        if let Some(client) = self.attach() {
            super::resume(client, runtime);
        }
    }
}

impl Parked {
    /// The client again, its socket back on the current runtime's reactor
    /// (call inside the runtime). None when that failed (the socket is
    /// closed, the session over).
    pub(super) fn attach(self) -> Option<Client> {
        let Parked { socket, held } = self;
        match socket.attach() {
            Ok(stream) => Some(Client {
                stream,
                buf: BytesMut::new(),
                held,
                waker_set: false,
            }),
            Err(e) => {
                let target = &held.target();
                warn!(client = target.id, who = %target.who(), error = %e, "lost a parked client's socket while waking it");
                None
            }
        }
    }
}

/// How one request (a transaction, or the whole session in session mode)
/// ended, or why a run of requests stopped.
enum Step {
    /// Back to idle.
    Idle,
    /// Idle long enough to park (see [`Client::park`]).
    Park,
    /// The session is over, this is how.
    End(SessionEnd),
}

/// What woke an idle client.
enum Wake {
    /// A request (its first bytes are in the buffer, or the client closed).
    Request,
    /// Nothing yet, and the registry asked the session to park.
    Park,
    /// The session must end (shutdown, KILL, client_idle_timeout, an error).
    Close(SessionEnd),
}
/// What a login led to.
pub(super) enum Entered {
    /// A pool session, to run in a task of its own ([`run`]).
    Pool(Client),
    /// An admin console session (it runs in the login's task), with its
    /// max_client_conn slot when one was free (the console is let in over
    /// the limit, as in PgBouncer).
    Console(
        Stream,
        crate::admin::AdminLogin,
        Option<OwnedSemaphorePermit>,
    ),
    /// A replication connection with its own server (it runs in the
    /// login's task: see `replication`), its read buffer, its registry
    /// entry and its max_client_conn slot.
    Replication(
        Stream,
        BytesMut,
        super::replication::ReplicationLogin,
        Registration,
        OwnedSemaphorePermit,
    ),
    /// Nothing: a CancelRequest, or a client that left.
    Gone,
}

/// Log the client in (in the accepting task); the session itself then runs
/// in a task of its own ([`run`]), so the login's large state is not kept
/// for the life of the session.
pub(super) async fn login_phase(
    mut stream: Stream,
    registration: Registration,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<Entered, (Stream, SessionEnd)> {
    let ctx = registration.owner().clone();
    let cfg = ctx.config();
    let mut buf = BytesMut::new();
    let entry = registration.entry.clone();
    let limit = cfg.general.client_login_timeout;
    let over_limit = permit.is_none();
    let result = Box::pin(login_within(
        limit,
        &mut stream,
        &mut buf,
        (&ctx, over_limit),
        &entry,
    ))
    .await;
    if buf.is_empty() {
        // The login's read buffer is not kept while the client idles.
        buf = BytesMut::new();
    }
    match result {
        Ok(Login::Pool(LoggedIn { route, params })) => {
            // Over max_client_conn, login() refused every database but
            // the console's.
            let Some(permit) = permit else {
                return Err((stream, super::too_many_clients()));
            };
            let held = Held::new(registration, permit, cfg, (route, params));
            Ok(Entered::Pool(Client::logged_in(stream, buf, held)))
        }
        Ok(Login::Console(login)) => Ok(Entered::Console(stream, login, permit)),
        Ok(Login::Replication(login)) => match permit {
            Some(permit) => Ok(Entered::Replication(
                stream,
                buf,
                login,
                registration,
                permit,
            )),
            None => Err((stream, super::too_many_clients())),
        },
        Ok(Login::Gone) => Ok(Entered::Gone),
        Err(e) => Err((stream, e)),
    }
}

/// [`login`] within client_login_timeout (`limit`, zero = none), counted in
/// whole seconds (rounded up) and enforced like query_timeout (see
/// `timeouts`): the deadline, in epochs of the registry's 1 Hz sweep, is
/// published on the entry and the sweep wakes the login when it passed. No
/// tokio timer per login: an armed timer makes every worker park scan the
/// timer wheel (callgrind, pgbench -C).
async fn login_within(
    limit: std::time::Duration,
    stream: &mut Stream,
    buf: &mut BytesMut,
    (ctx, over_limit): (&crate::context::Context, bool),
    entry: &crate::registry::SessionEntry,
) -> Result<Login, SessionEnd> {
    let limit = u64::try_from(limit.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX);
    let login = login(stream, buf, ctx, entry, over_limit);
    if limit == 0 {
        return login.await;
    }
    let deadline = ctx.epoch.load(Ordering::Relaxed).saturating_add(limit);
    entry.set_link_deadline(deadline);
    let mut login = std::pin::pin!(login);
    let result = std::future::poll_fn(|cx| {
        // Over once the sweep closed the deadline's epoch.
        if ctx.epoch.load(Ordering::Relaxed).saturating_sub(1) >= deadline {
            return Poll::Ready(Err(SessionEnd::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "client_login_timeout",
            )));
        }
        entry.register_waker(cx);
        login.as_mut().poll(cx)
    })
    .await;
    entry.set_link_deadline(0);
    result
}

impl Client {
    /// A client just logged in: counted as a login, its idle timeout and
    /// parking set up on its registry entry.
    fn logged_in(stream: Stream, buf: BytesMut, held: Held) -> Client {
        let ctx = held.context();
        let pool = held.route.home();
        pool.stats.count_login();
        let entry = held.target();
        let epoch = ctx.epoch.load(Ordering::Relaxed);
        entry.logged_in(pool.settings().client_idle_timeout, epoch);
        if ctx.registry.crowded() {
            // Many clients: park as soon as this one idles (see
            // `Registry::crowded`).
            entry.request_park();
        }
        // The entry was registered before this look: a shutdown whose
        // close_all() missed it had already set the flag. So one check
        // here covers the session (no per-request check needed).
        if ctx.shutting_down() {
            entry.close(CloseRequest::Shutdown);
        }
        Client {
            stream,
            buf,
            waker_set: false,
            held,
        }
    }
}

/// A logged-in client's session, as the future of its task: hand-written
/// so that a session that waits idle before its first request is nothing
/// but its [`Client`] (an `async fn` would keep the client twice plus every
/// await point's state). Its first request moves the client into a boxed
/// future ([`serve`]) that serves request after request, waiting idle in
/// between, and gives the client back when the session ends or parks: one
/// allocation per run of requests, not per transaction (callgrind: a box
/// per transaction cost ~250 instructions of malloc, free and copy).
pub(super) struct SessionTask {
    state: State,
}

type Busy = Pin<Box<dyn Future<Output = (Client, Step)> + Send>>;

enum State {
    /// Waiting for the client's first message (or for shutdown).
    Idle(Client),
    /// Serving requests.
    Busy(Busy),
    /// Telling the client why it ends, closing the socket.
    Closing(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Over.
    Done,
}

/// Run a logged-in client's session until it ends.
pub(super) fn run(client: Client) -> SessionTask {
    SessionTask {
        state: State::Idle(client),
    }
}

impl SessionTask {
    /// Take the client out of the Idle state.
    fn take_idle(&mut self) -> Client {
        let State::Idle(client) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("the session is idle")
        };
        client
    }
}

impl Future for SessionTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        note_poll();
        loop {
            let step = match &mut self.state {
                State::Idle(client) => match std::task::ready!(client.poll_wake(cx)) {
                    Wake::Request => {
                        let client = self.take_idle();
                        self.state = State::Busy(Box::pin(serve(client)));
                        continue;
                    }
                    Wake::Park => (self.take_idle(), Step::Park),
                    Wake::Close(e) => (self.take_idle(), Step::End(e)),
                },
                State::Busy(fut) => std::task::ready!(fut.as_mut().poll(cx)),
                State::Closing(fut) => {
                    std::task::ready!(fut.as_mut().poll(cx));
                    self.state = State::Done;
                    continue;
                }
                State::Done => return Poll::Ready(()),
            };
            self.state = match step {
                (client, Step::Idle) => State::Idle(client),
                // Idle for a while: park without a task.
                (client, Step::Park) => match client.park() {
                    None => return Poll::Ready(()),
                    Some(client) => State::Idle(client),
                },
                (client, Step::End(end)) => State::Closing(Box::pin(client.close(end))),
            };
        }
    }
}

/// Serve requests, waiting idle in between, until the session ends or
/// should park; the client back with why.
///
/// An async block, not an `async fn`: the latter keeps its argument twice
/// (the argument and the local it is moved into; 144 bytes more, over
/// glibc's tcache limit: see the size test).
#[allow(clippy::manual_async_fn)]
fn serve(mut client: Client) -> impl Future<Output = (Client, Step)> + Send {
    async move {
        loop {
            client.target().active();
            match client.request().await {
                Ok(Step::Idle) => {}
                Ok(step) => return (client, step),
                Err(end) => return (client, Step::End(end)),
            }
            let epoch = client.held.context().epoch.load(Ordering::Relaxed);
            client.target().idle(epoch);
            // The read buffer is kept for the next transaction (no malloc/free
            // per transaction) and given back when the session parks; one that
            // a large message made grow is not kept.
            if client.buf.is_empty() && client.buf.capacity() > KEEP_BUF {
                client.buf = BytesMut::new();
            }
            match std::future::poll_fn(|cx| client.poll_wake(cx)).await {
                Wake::Request => {}
                Wake::Park => return (client, Step::Park),
                Wake::Close(e) => return (client, Step::End(e)),
            }
        }
    }
}

impl Client {
    /// Wait idle for the next request: ready at once when bytes are left
    /// over from the last one.
    fn poll_wake(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Wake> {
        if !self.buf.is_empty() {
            // Bytes left over from the last request: no idle wait
            // registered this task's waker with the entry, and the sweep
            // must be able to wake the request (timeouts, cancels in
            // flight).
            self.waker_registered(cx);
            return Poll::Ready(Wake::Request);
        }
        match self.poll_idle(cx) {
            Poll::Pending if self.target().take_park_request() => Poll::Ready(Wake::Park),
            Poll::Pending => Poll::Pending,
            // Read (data or EOF) by `poll_idle`.
            Poll::Ready(Ok(())) => Poll::Ready(Wake::Request),
            Poll::Ready(Err(e)) => Poll::Ready(Wake::Close(e)),
        }
    }

    /// Make this task's waker the one the registry entry wakes the session
    /// with (for close requests, timeouts and cancels in flight). Once per
    /// client: the session's task does not change while it holds the
    /// client (a parked client comes back as a new `Client`), and nothing
    /// else stores a waker in the entry meanwhile (callgrind: registering
    /// at every idle wait cost ~70 instructions per transaction).
    fn waker_registered(&mut self, cx: &mut std::task::Context<'_>) {
        if !self.waker_set {
            self.target().register_waker(cx);
            self.waker_set = true;
        }
    }

    /// Ready when the client sent something, read into the buffer (or
    /// closed: nothing read); an error when the session must end first
    /// (shutdown, a socket error). Holds no state: the waker is kept by
    /// the socket's registration and the session's registry entry.
    fn poll_idle(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), SessionEnd>> {
        let closing = if self.waker_set {
            self.target().closing_reason(&self.held.context().epoch)
        } else {
            self.waker_set = true;
            self.target().poll_closing(cx, &self.held.context().epoch)
        };
        let target = self.target();
        match closing {
            // ConfigChanged: only a session-mode link, holding its server,
            // ends for it (see `relay`); an idle session has no server.
            None | Some(CloseRequest::Draining | CloseRequest::ConfigChanged) => {
                if self.buf.capacity() < super::relay::READ_CHUNK / 4 {
                    // No buffer kept (just logged in or woken from
                    // parking): wait without one, then take one to read.
                    std::task::ready!(self.stream.poll_read_ready(cx))?;
                    self.buf.reserve(super::relay::READ_CHUNK);
                }
                // A read, not only readiness: readiness can be stale (a
                // read that did not drain the socket, as the login's last),
                // and a read that finds nothing waits idle again rather
                // than busy in the request (not parked, no
                // client_idle_timeout). A read future, not try_read: it
                // drops the readiness after a short read, which spares the
                // relay an empty recv.
                let read = std::pin::pin!(self.stream.read_buf(&mut self.buf)).poll(cx);
                let read = read.map_ok(drop).map_err(Into::into);
                if closing.is_some() && matches!(read, Poll::Ready(Ok(()))) && !self.buf.is_empty()
                {
                    // Draining (SHUTDOWN WAIT_FOR_SERVERS): a request
                    // needs a server; PgBouncer's words.
                    return Poll::Ready(Err(SessionEnd::fatal(
                        sqlstate::ADMIN_SHUTDOWN,
                        super::SHUTTING_DOWN,
                    )));
                }
                read
            }
            Some(CloseRequest::Shutdown) => Poll::Ready(Err(SessionEnd::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                super::SHUTTING_DOWN,
            ))),
            Some(CloseRequest::Killed) => Poll::Ready(Err(SessionEnd::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                super::KILLED,
            ))),
            Some(CloseRequest::IdleTimeout) => {
                info!(
                    client = target.id,
                    who = %target.who(),
                    "client_idle_timeout: closing idle client"
                );
                Poll::Ready(Err(SessionEnd::fatal(
                    crate::protocol::sqlstate::IDLE_SESSION_TIMEOUT,
                    "client_idle_timeout: client idle too long",
                )))
            }
        }
    }

    /// Move into the registry entry, the socket off the reactor and
    /// watched by the parker, until the socket or a close wakes it (see
    /// `SessionEntry::park`); None when parked (or when the socket was
    /// lost), the client back when it turned out to be ready already.
    fn park(self) -> Option<Client> {
        let ctx = self.held.context().clone();
        let Some(parker) = ctx.registry.parker() else {
            return Some(self);
        };
        let entry = self.target().clone();
        let parked = Box::new(self.detach()?);
        let parked = entry.park(parked, |parked: &mut Parked, cx| {
            if entry.poll_closing(cx, &ctx.epoch).is_some() {
                return true;
            }
            // Bytes held by the stream itself (TLS) would never wake the
            // parker: the client is ready now.
            if parked.socket.has_buffered() {
                return true;
            }
            let token = crate::registry::token(entry.key);
            match parker.watch(parked.socket.fd(), token) {
                Ok(()) => false,
                Err(e) => {
                    warn!(client = entry.id, error = %e, "cannot park client; it keeps its task");
                    true
                }
            }
        })?;
        (*parked).attach()
    }

    /// The client without its read buffer, its socket off the reactor.
    /// None when the socket could not be taken off (it is closed then).
    fn detach(self) -> Option<Parked> {
        let Client {
            stream, buf, held, ..
        } = self;
        debug_assert!(buf.is_empty());
        match stream.detach() {
            Ok(socket) => Some(Parked { socket, held }),
            Err(e) => {
                let target = &held.target();
                warn!(client = target.id, who = %target.who(), error = %e, "lost an idle client's socket while parking it");
                None
            }
        }
    }

    /// The session's registry entry.
    pub(super) fn target(&self) -> &Arc<crate::registry::SessionEntry> {
        self.held.target()
    }

    /// End the session: tell the client why (if it can still be told) and
    /// log it, then close.
    async fn close(mut self, end: SessionEnd) {
        if let SessionEnd::Goodbye { terminate } = end {
            if self.held.cfg.general.log_disconnections {
                log_goodbye(self.target(), terminate);
            }
        } else {
            let entry = self.target();
            let (id, connected_us) = (entry.id, entry.connected_us());
            let who = entry.who().to_string();
            let ctx = self.held.context();
            super::report(&mut self.stream, (id, &who, connected_us), ctx, end).await;
        }
        // Dropping the socket closes it: what was written is sent before
        // the FIN, as PgBouncer's close does (a shutdown() first is one
        // more syscall per connection for nothing).
    }
}

/// The log line of a client that left (log_disconnections).
fn log_goodbye(entry: &crate::registry::SessionEntry, terminate: bool) {
    // Literal messages: a `{}` argument would be formatted per line.
    if terminate {
        info!(client = entry.id, who = %entry.who(), "client close request");
    } else {
        info!(client = entry.id, who = %entry.who(), "client closed the connection");
    }
}

mod request;

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
