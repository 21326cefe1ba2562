//! One server connection to PostgreSQL: connecting and logging in
//! (`connect`), what it says of its role (`role`: standby or primary),
//! the tracked session parameters (`params`), and the small
//! request/response exchanges the pooler makes itself (parameter sync,
//! reset query).

mod connect;
mod end;
mod error;
mod lookup;
pub(crate) mod params;
mod role;
pub(crate) mod statements;

use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) use connect::{ServerCredentials, ServerTarget, connect};
pub(crate) use end::ServerEnd;
pub(crate) use error::{ServerError, Tried, TriedHosts};
pub(crate) use lookup::{Found, LookupError};
pub(crate) use params::Params;
pub(crate) use role::reported_role;

use crate::config::Endpoint;
pub(crate) use crate::protocol::BackendKey;
use crate::transport::Stream;

/// A logged-in connection to PostgreSQL.
#[derive(Debug)]
pub struct ServerConn {
    /// The socket.
    pub stream: Stream,
    /// Read buffer; empty whenever the server is idle in its pool.
    pub buf: BytesMut,
    /// Current values of the tracked parameters on this connection.
    pub params: Params,
    /// The client parameter set `params` is known to match (set after a
    /// sync, cleared whenever the server reports a change), so that a
    /// checkout by a client with that same set needs no comparison.
    pub synced: Option<Arc<Params>>,
    /// The pooler-named prepared statements it has (`client::prepared`).
    pub statements: statements::ServerStatements,
    /// The auth_query text prepared on it as `lookup::STATEMENT` (see
    /// `lookup`), if any.
    pub lookup_prepared: Option<Arc<str>>,
    /// Cancel key of the backend.
    pub key: BackendKey,
    /// Where it is connected.
    pub addr: Arc<Endpoint>,
    /// Its TLS as SHOW SERVERS prints it (None: plaintext).
    pub tls: Option<Arc<str>>,
    /// When it was opened.
    pub created: Instant,
    /// `created` on the cheap monotonic clock (`runtime::clock::clock_ns`).
    pub created_ns: u64,
    /// When it was last given back to its pool (or opened), on the cheap
    /// monotonic clock: read and compared on every checkout and checkin,
    /// where `Instant` arithmetic cost ~200 instructions (callgrind).
    pub last_used_ns: u64,
    /// Close it instead of reusing it when it is released.
    pub close_needed: bool,
    /// The pool it is counted in, told if the connection is dropped
    /// without being given back (a session aborted mid-transaction), so
    /// that its slot is not lost. None once the pool has uncounted it.
    pub owner: Option<Weak<dyn SlotOwner>>,
    /// Its pool's generation when it was opened; a RECONNECT (or a reload
    /// that changed the connection settings) starts a new generation, and
    /// servers of older ones are closed when released.
    pub generation: u64,
    /// The shard whose reactor its socket is registered with (see
    /// `crate::runtime::shard`).
    pub home: u16,
    /// Unique id, for logs and the admin console.
    pub id: u64,
}

/// Whoever counts a server connection (its pool).
pub trait SlotOwner: Send + Sync {
    /// A counted connection of `generation` was dropped without being
    /// given back: uncount it.
    fn lost(&self, generation: u64);
}

impl Drop for ServerConn {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take().and_then(|w| w.upgrade()) {
            owner.lost(self.generation);
        }
    }
}

impl ServerConn {
    /// A new connection over `stream` to `addr`, not logged in yet and
    /// counted nowhere. Boxed: a server moves between the pool and sessions
    /// on every transaction; a pointer moves cheaper than the whole struct.
    pub fn new(stream: Stream, addr: Arc<Endpoint>) -> Box<ServerConn> {
        let now = crate::runtime::clock::clock_ns();
        let tls = match &stream {
            Stream::Tls(s) => Some(Arc::from(s.info())),
            _ => None,
        };
        Box::new(ServerConn {
            tls,
            stream,
            buf: BytesMut::with_capacity(4096),
            params: Params::new(),
            synced: None,
            statements: Default::default(),
            lookup_prepared: None,
            key: BackendKey::default(),
            addr,
            created: Instant::now(),
            created_ns: now,
            last_used_ns: now,
            close_needed: false,
            generation: 0,
            owner: None,
            home: crate::runtime::shard::current(),
            id: crate::runtime::ids::next_socket_id(),
        })
    }

    /// When it was last given back to its pool, as an `Instant`.
    pub(crate) fn last_used(&self) -> Instant {
        let ago = crate::runtime::clock::clock_ns().saturating_sub(self.last_used_ns);
        Instant::now() - std::time::Duration::from_nanos(ago)
    }

    /// Register the socket with the calling shard's reactor if it is
    /// registered with another's, so that its readiness wakes this thread
    /// (see `crate::runtime::shard`); true if it moved. An error leaves the
    /// connection unusable.
    #[inline]
    pub(crate) fn rehome(&mut self) -> std::io::Result<bool> {
        let here = crate::runtime::shard::current();
        if self.home == here {
            return Ok(false);
        }
        self.stream.rehome()?;
        self.home = here;
        Ok(true)
    }

    /// Nanoseconds since it was last given back to its pool.
    #[inline]
    pub(crate) fn idle_ns(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.last_used_ns)
    }

    /// Run `sql` (simple protocol) and read up to ReadyForQuery, tracking
    /// ParameterStatus. Results are discarded; the first error is returned.
    /// The server must be idle (nothing outstanding) when this is called.
    pub(crate) async fn run_quiet(&mut self, sql: &str) -> Result<u8, ServerError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(ServerError::Io)?;
        self.stream.write_all(&out).await.map_err(ServerError::Io)?;
        let mut failure = None;
        loop {
            let msg = self.read_message().await?;
            match msg {
                backend::Message::ReadyForQuery(r) => {
                    return match failure {
                        Some(e) => Err(e),
                        None => Ok(r.status()),
                    };
                }
                backend::Message::ParameterStatus(p) => {
                    let name = p.name().map_err(ServerError::Io)?;
                    let value = p.value().map_err(ServerError::Io)?;
                    self.params.set(name, value);
                    self.synced = None;
                }
                backend::Message::CommandComplete(c) => {
                    let mut tag = c.tag().map_err(ServerError::Io)?.as_bytes().to_vec();
                    tag.push(0);
                    if statements::drops_all_statements(&tag) {
                        self.statements.clear();
                    }
                }
                backend::Message::ErrorResponse(body) if failure.is_none() => {
                    failure = Some(ServerError::from_error_fields(body.fields()));
                }
                _ => {}
            }
        }
    }

    /// Read one whole message sent by the server (outside the relay).
    pub(crate) async fn read_message(&mut self) -> Result<backend::Message, ServerError> {
        loop {
            if let Some(msg) = backend::Message::parse(&mut self.buf).map_err(ServerError::Io)? {
                return Ok(msg);
            }
            self.buf.reserve(4096);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(ServerError::Io)?;
            if n == 0 {
                return Err(ServerError::Closed);
            }
        }
    }

    /// Send Terminate without waiting, then drop the connection. The
    /// caller has uncounted it from its pool (or does so next).
    pub fn terminate(mut self) {
        self.owner = None;
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream_try_write(&out);
    }

    fn stream_try_write(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = self.stream.try_write(data)?;
            data.advance(n);
        }
        Ok(())
    }

    /// Whether the connection is unusable before reuse: the server closed
    /// it, or sent something while idle (e.g. a FATAL at shutdown).
    pub(crate) fn is_broken(&self) -> bool {
        !self.buf.is_empty() || self.stream.has_pending_input()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A server connection over a stream that holds bytes of its own (as
    /// TLS does): bytes it holds make an idle server broken, even when its
    /// socket shows nothing; moving it to another shard's reactor keeps
    /// them.
    #[tokio::test]
    async fn buffered_bytes_count_and_survive_a_move_between_shards() {
        let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
        let addr = Arc::new(Endpoint::Unix {
            dir: "/nonexistent".into(),
            port: 1,
        });
        let mut server = ServerConn::new(Stream::read_ahead(ours, 2), addr);
        assert!(!server.is_broken());
        peer.write_all(b"NOTICE!").await.unwrap();
        // One record read: the socket is drained, the stream holds 5 bytes.
        let mut first = [0u8; 2];
        tokio::io::AsyncReadExt::read_exact(&mut server.stream, &mut first)
            .await
            .unwrap();
        let Stream::ReadAhead(s) = &server.stream else {
            unreachable!()
        };
        assert_eq!(s.buffered(), 5);
        let shards = crate::runtime::Shards::start(2).unwrap();
        let mut server = shards.handles()[1]
            .spawn(async move {
                assert!(server.rehome().unwrap(), "it moved to shard 1");
                server
            })
            .await
            .unwrap();
        let mut rest = [0u8; 5];
        tokio::io::AsyncReadExt::read_exact(&mut server.stream, &mut rest)
            .await
            .unwrap();
        assert_eq!(&rest, b"TICE!");
        peer.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut server.stream, &mut one)
            .await
            .unwrap();
        // Now a byte held while the socket is drained: broken.
        peer.write_all(b"yz").await.unwrap();
        tokio::io::AsyncReadExt::read_exact(&mut server.stream, &mut one)
            .await
            .unwrap();
        assert!(server.is_broken());
    }
}
