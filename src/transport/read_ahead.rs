//! A test stream that behaves as TLS does towards its caller: it drains
//! its socket into a buffer of its own (as rustls reads and decrypts whole
//! records) and hands the caller at most one "record" per read. Bytes can
//! therefore wait in the stream while the socket is not readable, which is
//! what breaks code that trusts socket readiness. Tests run sessions, the
//! relay, parking and shard moves over it (`Stream::ReadAhead`, made with
//! `Stream::read_ahead`). A layer over a [`Socket`], as TLS will be.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

use super::socket::{Socket, SocketRead, SocketWrite};

/// Largest read from the socket at once.
const DRAIN: usize = 64 * 1024;

/// A socket read ahead of its caller.
#[derive(Debug)]
pub struct ReadAhead {
    socket: Socket,
    /// Bytes read from the socket, not yet handed out.
    pending: BytesMut,
    /// Most bytes handed out per read.
    record: usize,
}

impl ReadAhead {
    /// Wrap `socket`; reads hand out at most `record` bytes.
    pub fn new(socket: Socket, record: usize) -> ReadAhead {
        assert!(record > 0);
        ReadAhead {
            socket,
            pending: BytesMut::new(),
            record,
        }
    }

    /// The socket under it.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The socket under it, to detach or move.
    pub(crate) fn socket_mut(&mut self) -> &mut Socket {
        &mut self.socket
    }

    /// Bytes held that the socket no longer shows.
    pub(crate) fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Split into its read part (buffer and socket read half) and the
    /// socket's write half.
    pub fn split(&mut self) -> (ReadPart<'_>, SocketWrite<'_>) {
        let (socket, write) = self.socket.split();
        let read = ReadPart {
            socket,
            pending: &mut self.pending,
            record: self.record,
        };
        (read, write)
    }

    /// Ready when bytes are held, or else when the socket is readable.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        self.socket.poll_read_ready(cx)
    }

    /// Hand out one record without waiting, filling from the socket first
    /// when nothing is held.
    pub(crate) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if self.pending.is_empty() {
            self.pending.reserve(DRAIN);
            if self.socket.try_read_buf(&mut self.pending)? == 0 {
                return Ok(0);
            }
            // Read what else the socket has, as TLS reads whole records.
            while self.pending.len() < DRAIN {
                self.pending.reserve(DRAIN - self.pending.len());
                match self.socket.try_read_buf(&mut self.pending) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        let n = self.record.min(self.pending.len());
        buf.extend_from_slice(&self.pending[..n]);
        self.pending.advance(n);
        Ok(n)
    }
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (mut read, _) = self.get_mut().split();
        Pin::new(&mut read).poll_read(cx, buf)
    }
}

/// The read half of a split [`ReadAhead`].
pub struct ReadPart<'a> {
    socket: SocketRead<'a>,
    pending: &'a mut BytesMut,
    record: usize,
}

impl AsyncRead for ReadPart<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.pending.is_empty() {
            // Fill from the socket: one read, as much as it has.
            let mut chunk = vec![0u8; DRAIN];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut me.socket).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            me.pending.extend_from_slice(&chunk[..n]);
        }
        let n = me.record.min(me.pending.len()).min(buf.remaining());
        buf.put_slice(&me.pending[..n]);
        me.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The property the other tests rely on: after one short read the
    /// rest waits in the stream while the socket shows nothing; taken off
    /// the reactor and put back (parking, moving shards), it is kept.
    #[tokio::test]
    async fn bytes_wait_in_the_stream_while_the_socket_is_quiet() {
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let mut s = ReadAhead::new(Socket::Unix(a), 3);
        b.write_all(b"hello world").await.unwrap();
        let mut got = [0u8; 16];
        let n = s.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"hel");
        assert_eq!(s.buffered(), 8);
        // The socket itself has nothing left: only the stream's readiness
        // says there is more.
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(s.socket().poll_read_ready(&mut cx).is_pending());
        assert!(s.poll_read_ready(&mut cx).is_ready());
        s.socket_mut().detach_in_place().unwrap();
        assert!(matches!(s.socket(), Socket::Off(_)));
        s.socket_mut().rehome().unwrap();
        let mut rest = BytesMut::new();
        while s.try_read_buf(&mut rest).unwrap_or(0) > 0 {}
        assert_eq!(&rest[..], b"lo world");
    }
}
