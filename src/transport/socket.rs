//! Bare sockets: TCP and Unix-domain, on a tokio reactor or taken off it
//! (a parked client's, or a server connection moving to another shard's
//! reactor). Layers that keep state of their own over a socket (TLS, the
//! test's read-ahead stream) hold a [`Socket`]; the rest of the crate uses
//! `Stream`, which is a bare socket or one of those layers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// A connected socket.
#[derive(Debug)]
pub enum Socket {
    /// TCP.
    Tcp(TcpStream),
    /// Unix-domain socket.
    Unix(UnixStream),
    /// Off the reactor, inside a layer that keeps its state meanwhile (a
    /// parked TLS client's); every operation fails until it is put back.
    Off(DetachedSocket),
    /// No socket: only for the instant it moves to another shard's
    /// reactor, or after that failed (the socket is closed).
    Moving,
}

pub(super) fn moving() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "socket lost while moving between threads",
    )
}

/// The read half of a split [`Socket`].
pub enum SocketRead<'a> {
    /// TCP.
    Tcp(tcp::ReadHalf<'a>),
    /// Unix.
    Unix(unix::ReadHalf<'a>),
    /// A socket off its reactor or lost (fails).
    None,
}

/// The write half of a split [`Socket`].
pub enum SocketWrite<'a> {
    /// TCP.
    Tcp(tcp::WriteHalf<'a>),
    /// Unix.
    Unix(unix::WriteHalf<'a>),
    /// A socket off its reactor or lost (fails).
    None,
}

/// A socket taken off its reactor. Still non-blocking.
#[derive(Debug)]
pub enum DetachedSocket {
    /// TCP.
    Tcp(std::net::TcpStream),
    /// Unix-domain socket.
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    /// Split into halves usable concurrently within one task (no lock).
    pub fn split(&mut self) -> (SocketRead<'_>, SocketWrite<'_>) {
        match self {
            Socket::Tcp(s) => {
                let (r, w) = s.split();
                (SocketRead::Tcp(r), SocketWrite::Tcp(w))
            }
            Socket::Unix(s) => {
                let (r, w) = s.split();
                (SocketRead::Unix(r), SocketWrite::Unix(w))
            }
            Socket::Off(_) | Socket::Moving => (SocketRead::None, SocketWrite::None),
        }
    }

    /// Poll until the socket is readable (data, EOF or error).
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(s) => s.poll_read_ready(cx),
            Socket::Unix(s) => s.poll_read_ready(cx),
            Socket::Off(_) | Socket::Moving => Poll::Ready(Err(moving())),
        }
    }

    /// Read what is available into `buf` without waiting.
    pub(crate) fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_read_buf(buf),
            Socket::Unix(s) => s.try_read_buf(buf),
            Socket::Off(_) | Socket::Moving => Err(moving()),
        }
    }

    /// Read what is available into `buf` without waiting, for a layer that
    /// reads whole records (TLS). A read that does not fill `buf` has
    /// drained the socket: its readiness is cleared then, as tokio's own
    /// `poll_read` does, so the next wait goes to epoll instead of a read
    /// that would find nothing (one `recvfrom` less per TLS request).
    pub(crate) fn try_read_drain(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => super::sys::try_recv_drain(s, buf),
            Socket::Unix(s) => super::sys::try_recv_drain(s, buf),
            Socket::Off(_) | Socket::Moving => Err(moving()),
        }
    }

    /// Poll until the socket is writable.
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(s) => s.poll_write_ready(cx),
            Socket::Unix(s) => s.poll_write_ready(cx),
            Socket::Off(_) | Socket::Moving => Poll::Ready(Err(moving())),
        }
    }

    /// Write what the socket takes now, without waiting.
    pub(crate) fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => super::sys::try_send(s, data),
            Socket::Unix(s) => super::sys::try_send(s, data),
            Socket::Off(_) | Socket::Moving => Err(moving()),
        }
    }

    /// Whether the peer closed or sent something (a byte found is consumed).
    pub(crate) fn has_pending_input(&self) -> bool {
        match self {
            Socket::Tcp(s) => super::sys::has_input(s),
            Socket::Unix(s) => super::sys::has_input(s),
            Socket::Off(_) | Socket::Moving => true,
        }
    }

    /// Take the socket off its reactor. An error (the reactor refused to
    /// let it go) has closed it.
    pub(crate) fn detach(self) -> io::Result<DetachedSocket> {
        match self {
            Socket::Tcp(s) => Ok(DetachedSocket::Tcp(s.into_std()?)),
            Socket::Unix(s) => Ok(DetachedSocket::Unix(s.into_std()?)),
            Socket::Off(d) => Ok(d),
            Socket::Moving => Err(moving()),
        }
    }

    /// Take the socket off its reactor, in place (inside a layer that
    /// keeps its own state): it becomes [`Socket::Off`].
    pub(crate) fn detach_in_place(&mut self) -> io::Result<()> {
        let d = std::mem::replace(self, Socket::Moving).detach()?;
        *self = Socket::Off(d);
        Ok(())
    }

    /// Put the socket on the current runtime's reactor, from another
    /// shard's or from none ([`Socket::Off`]). On failure the socket is
    /// closed and left [`Socket::Moving`].
    pub(crate) fn rehome(&mut self) -> io::Result<()> {
        let d = std::mem::replace(self, Socket::Moving).detach()?;
        *self = d.attach()?;
        Ok(())
    }

    /// The socket's file descriptor, on or off its reactor.
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            Socket::Tcp(s) => Some(s.as_raw_fd()),
            Socket::Unix(s) => Some(s.as_raw_fd()),
            Socket::Off(d) => Some(d.fd()),
            Socket::Moving => None,
        }
    }

    /// The TCP socket's local address.
    pub(crate) fn local_tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Socket::Tcp(s) => s.local_addr().ok(),
            _ => None,
        }
    }

    /// The TCP peer's address.
    pub(crate) fn tcp_peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Socket::Tcp(s) => s.peer_addr().ok(),
            _ => None,
        }
    }

    /// For a Unix-domain socket: what it tells of its peer.
    pub(crate) fn unix_peer(&self) -> Option<UnixPeer> {
        let Socket::Unix(s) = self else {
            return None;
        };
        let cred = s.peer_cred().ok();
        Some(UnixPeer {
            uid: cred.map(|c| c.uid()),
            pid: cred.and_then(|c| c.pid()),
            local_path: s
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.to_path_buf())),
        })
    }
}

/// What a Unix-domain socket tells of its peer.
#[derive(Debug, Clone)]
pub struct UnixPeer {
    /// The peer process's user id.
    pub uid: Option<u32>,
    /// The peer process's id.
    pub pid: Option<i32>,
    /// The path of the socket it connected to.
    pub local_path: Option<std::path::PathBuf>,
}

impl DetachedSocket {
    /// Put the socket on the current runtime's reactor (must be called
    /// inside one).
    pub(crate) fn attach(self) -> io::Result<Socket> {
        Ok(match self {
            DetachedSocket::Tcp(s) => Socket::Tcp(TcpStream::from_std(s)?),
            DetachedSocket::Unix(s) => Socket::Unix(UnixStream::from_std(s)?),
        })
    }

    /// The socket's file descriptor.
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            DetachedSocket::Tcp(s) => s.as_raw_fd(),
            DetachedSocket::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => super::sys::poll_recv::<TcpStream>(s, cx, buf),
            Socket::Unix(s) => super::sys::poll_recv::<UnixStream>(s, cx, buf),
            Socket::Off(_) | Socket::Moving => Poll::Ready(Err(moving())),
        }
    }
}

impl AsyncRead for SocketRead<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SocketRead::Tcp(s) => super::sys::poll_recv::<TcpStream>(half(s), cx, buf),
            SocketRead::Unix(s) => super::sys::poll_recv::<UnixStream>(half(s), cx, buf),
            SocketRead::None => Poll::Ready(Err(moving())),
        }
    }
}

macro_rules! delegate_write {
    ($t:ty, $none:pat, $get:ident) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Tcp(s) => super::sys::poll_send::<TcpStream>($get(s), cx, buf),
                    Self::Unix(s) => super::sys::poll_send::<UnixStream>($get(s), cx, buf),
                    $none => Poll::Ready(Err(moving())),
                }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_flush(cx),
                    Self::Unix(s) => Pin::new(s).poll_flush(cx),
                    $none => Poll::Ready(Err(moving())),
                }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                    Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
                    $none => Poll::Ready(Err(moving())),
                }
            }
        }
    };
}

/// The socket itself (for `delegate_write!`).
fn whole<T>(s: &mut T) -> &T {
    s
}

/// The socket a borrowed half belongs to (for `delegate_write!`).
fn half<T, H: AsRef<T>>(h: &mut H) -> &T {
    H::as_ref(h)
}

delegate_write!(Socket, Socket::Off(_) | Socket::Moving, whole);
delegate_write!(SocketWrite<'_>, SocketWrite::None, half);
