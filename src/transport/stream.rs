//! Sockets: one `Stream` type for TCP and Unix-domain connections (TLS will
//! be a third variant), split into borrowed halves for the full-duplex relay.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// A connected socket, to a client or to PostgreSQL.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix-domain socket.
    Unix(UnixStream),
    /// No socket: only for the instant a server connection moves to
    /// another shard's reactor (`Stream::rehome`), or after that failed
    /// (the socket is closed; every operation fails).
    Moving,
}

fn moving() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "socket lost while moving between threads",
    )
}

/// The read half of a split [`Stream`].
pub enum ReadHalf<'a> {
    /// TCP.
    Tcp(tcp::ReadHalf<'a>),
    /// Unix.
    Unix(unix::ReadHalf<'a>),
    /// A `Stream::Moving` (fails).
    Moving,
}

/// The write half of a split [`Stream`].
pub enum WriteHalf<'a> {
    /// TCP.
    Tcp(tcp::WriteHalf<'a>),
    /// Unix.
    Unix(unix::WriteHalf<'a>),
    /// A `Stream::Moving` (fails).
    Moving,
}

impl Stream {
    /// Split into halves that can be used concurrently within one task
    /// (no lock, unlike `tokio::io::split`).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
            Stream::Moving => (ReadHalf::Moving, WriteHalf::Moving),
        }
    }

    /// Wait until the socket is readable (data, EOF or error), without
    /// reading and without a buffer: idle clients hold no read buffer.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
            Stream::Moving => Err(moving()),
        }
    }

    /// Poll for readability without a future: the waker is kept in the
    /// socket's own registration, so an idle client holds no wait state.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::Moving => Poll::Ready(Err(moving())),
        }
    }

    /// Read what is available without waiting.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
            Stream::Moving => Err(moving()),
        }
    }

    /// Read what is available into `buf` without waiting.
    pub fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read_buf(buf),
            Stream::Unix(s) => s.try_read_buf(buf),
            Stream::Moving => Err(moving()),
        }
    }

    /// Whether the peer closed or sent something while we did not expect
    /// it (used to drop dead idle server connections before reuse).
    pub fn has_pending_input(&self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.try_read(&mut probe), Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// A socket taken off the runtime's reactor (a parked client's; see
/// `transport::parker`). Still non-blocking.
#[derive(Debug)]
pub enum Detached {
    /// TCP.
    Tcp(std::net::TcpStream),
    /// Unix-domain socket.
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    /// Take the socket off the reactor. An error (the reactor refused to
    /// let it go) has closed the socket.
    pub fn detach(self) -> io::Result<Detached> {
        Ok(match self {
            Stream::Tcp(s) => Detached::Tcp(s.into_std()?),
            Stream::Unix(s) => Detached::Unix(s.into_std()?),
            Stream::Moving => return Err(moving()),
        })
    }

    /// Move the socket to the current runtime's reactor (from the one it
    /// was registered with; see `crate::runtime::shard`). On failure the socket is
    /// closed and the stream is left `Moving`.
    pub fn rehome(&mut self) -> io::Result<()> {
        let detached = std::mem::replace(self, Stream::Moving).detach()?;
        *self = detached.attach()?;
        Ok(())
    }
}

impl Detached {
    /// Put the socket back on the reactor of the current runtime (must be
    /// called inside one).
    pub fn attach(self) -> io::Result<Stream> {
        Ok(match self {
            Detached::Tcp(s) => Stream::Tcp(TcpStream::from_std(s)?),
            Detached::Unix(s) => Stream::Unix(UnixStream::from_std(s)?),
        })
    }

    /// The socket's file descriptor.
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Detached::Tcp(s) => s.as_raw_fd(),
            Detached::Unix(s) => s.as_raw_fd(),
        }
    }
}

macro_rules! delegate_read {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
                    Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
                    Self::Moving => Poll::Ready(Err(moving())),
                }
            }
        }
    };
}

macro_rules! delegate_write {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
                    Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
                    Self::Moving => Poll::Ready(Err(moving())),
                }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_flush(cx),
                    Self::Unix(s) => Pin::new(s).poll_flush(cx),
                    Self::Moving => Poll::Ready(Err(moving())),
                }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                    Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
                    Self::Moving => Poll::Ready(Err(moving())),
                }
            }
        }
    };
}

delegate_read!(Stream);
delegate_write!(Stream);
delegate_read!(ReadHalf<'_>);
delegate_write!(WriteHalf<'_>);
