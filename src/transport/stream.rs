//! One `Stream` type for every connection the pooler holds, to a client or
//! to PostgreSQL: a bare socket (TCP or Unix-domain), or a layer over one
//! that keeps bytes of its own (TLS, [`super::tls`]; tests have
//! [`super::read_ahead`]), split into borrowed halves for the full-duplex
//! relay.
//!
//! Readiness: callers never trust the socket alone. A stream that keeps
//! bytes of its own (TLS keeps decrypted bytes) can hold a whole request
//! while its socket is not readable, and a readable socket may yield no
//! byte for the caller (a TLS record that carries none). So
//! [`Stream::poll_read_ready`] is ready when bytes are buffered or the
//! socket is readable, a read after it may find nothing (the caller waits
//! again), and a stream with buffered bytes is never handed to the parker
//! ([`Detached::has_buffered`]). Streams move between reactors (parking,
//! shards) with their buffered bytes: [`Stream::detach`],
//! [`Detached::attach`], [`Stream::rehome`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::socket::{DetachedSocket, Socket, SocketRead, SocketWrite, UnixPeer};
use super::tls::{TlsHalf, TlsStream};

/// A connected stream, to a client or to PostgreSQL.
#[derive(Debug)]
pub enum Stream {
    /// A bare socket.
    Plain(Socket),
    /// A socket read ahead into a buffer of its own, as TLS does (tests
    /// only: it proves that the session, the relay, parking and moving
    /// between shards never trust bare socket readiness).
    #[cfg(test)]
    ReadAhead(Box<super::read_ahead::ReadAhead>),
    /// TLS over a socket.
    Tls(Box<TlsStream>),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Plain(Socket::Tcp(s))
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream::Plain(Socket::Unix(s))
    }
}

/// The read half of a split [`Stream`].
pub enum ReadHalf<'a> {
    /// A bare socket's.
    Plain(SocketRead<'a>),
    /// A read-ahead stream's buffer and its socket's read half.
    #[cfg(test)]
    ReadAhead(Box<super::read_ahead::ReadPart<'a>>),
    /// A TLS stream's.
    Tls(TlsHalf<'a>),
}

/// The write half of a split [`Stream`].
pub enum WriteHalf<'a> {
    /// A bare socket's (a read-ahead stream writes straight to it).
    Plain(SocketWrite<'a>),
    /// A TLS stream's.
    Tls(TlsHalf<'a>),
}

impl Stream {
    /// A stream over `socket` that reads ahead and hands out at most
    /// `record` bytes per read (tests).
    #[cfg(test)]
    pub fn read_ahead(socket: impl Into<Stream>, record: usize) -> Stream {
        let Stream::Plain(socket) = socket.into() else {
            panic!("a read-ahead stream wraps a bare socket")
        };
        Stream::ReadAhead(Box::new(super::read_ahead::ReadAhead::new(socket, record)))
    }

    /// Split into halves that can be used concurrently within one task
    /// (no lock, unlike `tokio::io::split`).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            #[cfg(test)]
            Stream::ReadAhead(s) => {
                let (r, w) = s.split();
                (ReadHalf::ReadAhead(Box::new(r)), WriteHalf::Plain(w))
            }
            Stream::Tls(s) => {
                let (r, w) = s.split();
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }

    /// The socket under the stream.
    fn socket(&self) -> &Socket {
        match self {
            Stream::Plain(s) => s,
            #[cfg(test)]
            Stream::ReadAhead(s) => s.socket(),
            Stream::Tls(s) => s.socket(),
        }
    }

    /// Poll until a read may make progress: bytes are buffered, or the
    /// socket is readable (data, EOF or error). The waker is kept in the
    /// socket's own registration, so an idle client holds no wait state.
    /// A read after this may still find nothing (stale readiness, or a
    /// record with no bytes for the caller): the caller waits again.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(s) => s.poll_read_ready(cx),
            #[cfg(test)]
            Stream::ReadAhead(s) => s.poll_read_ready(cx),
            Stream::Tls(s) => s.poll_read_ready(cx),
        }
    }

    /// Read what is available into `buf` without waiting (buffered bytes
    /// first); `WouldBlock` when there is nothing.
    pub fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_read_buf(buf),
            #[cfg(test)]
            Stream::ReadAhead(s) => s.try_read_buf(buf),
            Stream::Tls(s) => s.try_read_buf(buf),
        }
    }

    /// Write what the socket takes now, without waiting (a Terminate on
    /// the way out); how much was written.
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tls(s) => s.try_write(data),
            _ => self.socket().try_write(data),
        }
    }

    /// Whether the peer closed or sent something while we did not expect
    /// it, buffered bytes included (used to drop dead idle server
    /// connections before reuse; a byte it finds is consumed).
    pub fn has_pending_input(&self) -> bool {
        match self {
            Stream::Plain(s) => s.has_pending_input(),
            #[cfg(test)]
            Stream::ReadAhead(s) => s.buffered() > 0 || s.socket().has_pending_input(),
            Stream::Tls(s) => s.has_pending_input(),
        }
    }

    /// Set PgBouncer's TCP options (`TcpOptions`) on a TCP socket; other
    /// sockets take none.
    pub fn set_tcp_options(&self, opts: &super::TcpOptions) -> io::Result<()> {
        match self.socket() {
            Socket::Tcp(s) => opts.apply(s),
            _ => Ok(()),
        }
    }

    /// The TCP socket's local address (SHOW SOCKETS); None for others.
    pub fn local_tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.socket().local_tcp_addr()
    }

    /// The TCP peer's address; None for others.
    pub fn tcp_peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.socket().tcp_peer_addr()
    }

    /// For a Unix-domain socket: the peer's credentials and the socket's
    /// path; None for others.
    pub fn unix_peer(&self) -> Option<UnixPeer> {
        self.socket().unix_peer()
    }

    /// Take the stream off the reactor. An error (the reactor refused to
    /// let it go) has closed the socket.
    pub fn detach(self) -> io::Result<Detached> {
        match self {
            Stream::Plain(s) => Ok(Detached::Plain(s.detach()?)),
            #[cfg(test)]
            Stream::ReadAhead(mut s) => {
                s.socket_mut().detach_in_place()?;
                Ok(Detached::ReadAhead(s))
            }
            Stream::Tls(mut s) => {
                s.socket_mut().detach_in_place()?;
                Ok(Detached::Tls(s))
            }
        }
    }

    /// Move the stream to the current runtime's reactor (from the one it
    /// was registered with; see `runtime::shard`), buffered bytes kept. On
    /// failure the socket is closed and every later operation fails.
    pub fn rehome(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.rehome(),
            #[cfg(test)]
            Stream::ReadAhead(s) => s.socket_mut().rehome(),
            Stream::Tls(s) => s.socket_mut().rehome(),
        }
    }
}

/// A stream taken off the runtime's reactor (a parked client's; see
/// `transport::parker`), with whatever bytes it had buffered. Still
/// non-blocking.
#[derive(Debug)]
pub enum Detached {
    /// A bare socket.
    Plain(DetachedSocket),
    /// A read-ahead stream, its socket off the reactor in place.
    #[cfg(test)]
    ReadAhead(Box<super::read_ahead::ReadAhead>),
    /// A TLS stream, its socket off the reactor in place.
    Tls(Box<TlsStream>),
}

impl Detached {
    /// Put the stream back on the reactor of the current runtime (must be
    /// called inside one).
    pub fn attach(self) -> io::Result<Stream> {
        match self {
            Detached::Plain(s) => Ok(Stream::Plain(s.attach()?)),
            #[cfg(test)]
            Detached::ReadAhead(mut s) => {
                s.socket_mut().rehome()?;
                Ok(Stream::ReadAhead(s))
            }
            Detached::Tls(mut s) => {
                s.socket_mut().rehome()?;
                Ok(Stream::Tls(s))
            }
        }
    }

    /// The socket's file descriptor (what the parker watches).
    pub fn fd(&self) -> std::os::fd::RawFd {
        match self {
            Detached::Plain(s) => s.fd(),
            #[cfg(test)]
            Detached::ReadAhead(s) => s.socket().fd().unwrap_or(-1),
            Detached::Tls(s) => s.socket().fd().unwrap_or(-1),
        }
    }

    /// Whether the stream holds bytes its socket no longer shows: then
    /// the socket's readiness cannot wake it, and it must not be parked.
    pub fn has_buffered(&self) -> bool {
        match self {
            Detached::Plain(_) => false,
            #[cfg(test)]
            Detached::ReadAhead(s) => s.buffered() > 0,
            Detached::Tls(s) => s.buffered(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(test)]
            Stream::ReadAhead(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Stream::Tls(s) => s.poll_read(cx, buf),
        }
    }
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(test)]
            ReadHalf::ReadAhead(s) => Pin::new(&mut **s).poll_read(cx, buf),
            ReadHalf::Tls(s) => s.poll_read(cx, buf),
        }
    }
}

impl Stream {
    /// The socket writes go to (a read-ahead stream writes straight to
    /// it); None for TLS, which encrypts first.
    fn writer(self: Pin<&mut Self>) -> Result<Pin<&mut Socket>, &TlsStream> {
        match self.get_mut() {
            Stream::Plain(s) => Ok(Pin::new(s)),
            #[cfg(test)]
            Stream::ReadAhead(s) => Ok(Pin::new(s.socket_mut())),
            Stream::Tls(s) => Err(s),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.writer() {
            Ok(s) => s.poll_write(cx, buf),
            Err(tls) => tls.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.writer() {
            Ok(s) => s.poll_flush(cx),
            Err(tls) => tls.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.writer() {
            Ok(s) => s.poll_shutdown(cx),
            Err(tls) => tls.poll_shutdown(cx),
        }
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Tls(s) => s.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Tls(s) => s.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_shutdown(cx),
            WriteHalf::Tls(s) => s.poll_flush(cx),
        }
    }
}
