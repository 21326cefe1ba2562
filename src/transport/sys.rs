//! Socket reads and writes on the relay's path as direct system calls
//! (rustix's raw Linux backend), with tokio's reactor only for readiness.
//!
//! tokio's own `poll_read`/`poll_write` go through mio and std to glibc's
//! `recv`/`send`, which are thread cancellation points: each call enables
//! and disables asynchronous cancellation around the system call and sets
//! errno. Four of the six system calls of a simple transaction are these
//! reads and writes. Measured with callgrind (`PGO=0 benches/cost.sh`, see
//! docs/ARCHITECTURE.md "Choices and why"), going straight to the kernel
//! saves about 26 instructions per call (5,753 -> 5,649 per transaction).
//!
//! The readiness protocol is tokio's: the task's cooperative budget is
//! consumed, the call runs inside `try_io` (at once when the reactor has
//! seen the socket ready; a WouldBlock clears the readiness and waits for
//! it), and the readiness is cleared as well after a short read or write,
//! as tokio does: the socket is drained (or full), so the next call waits
//! for epoll instead of failing with EAGAIN.

use std::io;
use std::os::fd::AsFd;
use std::task::{Context, Poll, ready};

use rustix::net::{RecvFlags, SendFlags};
use tokio::io::{Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A socket registered with a tokio reactor.
pub(super) trait Evented: AsFd {
    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>>;
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

macro_rules! evented {
    ($t:ty) => {
        impl Evented for $t {
            #[inline(always)]
            fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
                if interest == Interest::READABLE {
                    self.poll_read_ready(cx)
                } else {
                    self.poll_write_ready(cx)
                }
            }
            #[inline(always)]
            fn try_io<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                <$t>::try_io(self, interest, f)
            }
        }
    };
}

evented!(TcpStream);
evented!(UnixStream);

/// Run `call` (a read or a write of at most `len` bytes) once the socket
/// is ready for `interest`. The call is tried first when the reactor saw
/// the socket ready (no wait registered then); the task's cooperative
/// budget is consumed either way, as tokio's own I/O does.
#[inline(always)]
fn poll_io(
    s: &impl Evented,
    cx: &mut Context<'_>,
    interest: Interest,
    len: usize,
    mut call: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    let coop = ready!(tokio::task::coop::poll_proceed(cx));
    loop {
        match try_call(s, interest, len, &mut call) {
            Ok(n) => {
                coop.made_progress();
                return Poll::Ready(Ok(n));
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                ready!(s.poll_ready(cx, interest))?;
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// One read or write of at most `len` bytes, if the reactor has seen the
/// socket ready for `interest`. A short one (fewer than `len` bytes) has
/// drained or filled the socket: its readiness is cleared, as tokio's own
/// I/O does, so the next call waits for epoll instead of failing with
/// EAGAIN.
#[inline(always)]
fn try_call(
    s: &impl Evented,
    interest: Interest,
    len: usize,
    call: &mut impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    let mut done = 0;
    match s.try_io(interest, || {
        done = call()?;
        if done > 0 && done < len {
            // Not an error: tells tokio to clear the readiness.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(done)
    }) {
        // Only the short call's WouldBlock comes after a success.
        Err(_) if done > 0 => Ok(done),
        r => r,
    }
}

/// Whether the peer closed, failed or sent something (a byte found is
/// consumed). Without a system call when the reactor has not seen the
/// socket readable since it was last drained, which is the usual case for
/// an idle server connection.
pub(super) fn has_input<S: Evented>(s: &S) -> bool {
    let mut probe = [0u8; 1];
    let mut found = false;
    let _ = s.try_io(Interest::READABLE, || {
        match rustix::net::recv(s, &mut probe[..], RecvFlags::empty()) {
            // Nothing there: tells tokio to clear the readiness.
            Err(rustix::io::Errno::AGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(rustix::io::Errno::INTR) => {}
            // Data, end of stream, or an error.
            _ => found = true,
        }
        Ok(())
    });
    found
}

/// Read what is there into `buf` without waiting (TLS reads whole records
/// into its own buffer). A read that does not fill `buf` has drained the
/// socket, so its readiness is cleared (see [`try_call`]).
pub(super) fn try_recv_drain<S: Evented>(s: &S, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len();
    try_call(s, Interest::READABLE, len, &mut || {
        Ok(rustix::net::recv(s, &mut *buf, RecvFlags::empty())?.0)
    })
}

/// Write what the socket takes now, without waiting.
pub(super) fn try_send<S: Evented>(s: &S, data: &[u8]) -> io::Result<usize> {
    s.try_io(Interest::WRITABLE, || {
        Ok(rustix::net::send(s, data, SendFlags::NOSIGNAL)?)
    })
}

/// `poll_write` of a socket: one `send` (MSG_NOSIGNAL, as std sends).
pub(super) fn poll_send<S: Evented>(
    s: &S,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    poll_io(s, cx, Interest::WRITABLE, data.len(), || {
        Ok(rustix::net::send(s, data, SendFlags::NOSIGNAL)?)
    })
}

/// `poll_read` of a socket: one `recv` into the unfilled part of `buf`.
///
/// The only unsafe code in the crate: giving the kernel the buffer's
/// uninitialized bytes to write into, and telling the buffer how many it
/// wrote. Zeroing them first (the safe way) would cost more than the call
/// saves; tokio's own `poll_read` does the same internally.
#[allow(unsafe_code)]
pub(super) fn poll_recv<S: Evented>(
    s: &S,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    // SAFETY: `recv` only writes initialized bytes into the slice, and
    // nothing here de-initializes any.
    let unfilled = unsafe { buf.unfilled_mut() };
    let len = unfilled.len();
    let n = ready!(poll_io(s, cx, Interest::READABLE, len, || {
        let (got, _) = rustix::net::recv(s, &mut *unfilled, RecvFlags::empty())?;
        Ok(got.0.len())
    }))?;
    // SAFETY: the kernel initialized the first `n` unfilled bytes.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Poll::Ready(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    /// A read returns what the peer wrote, waits when there is nothing,
    /// and reads 0 at the peer's end of stream.
    #[tokio::test(flavor = "current_thread")]
    async fn recv_reads_waits_and_sees_the_end() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut space = [0u8; 64];
        let mut buf = ReadBuf::new(&mut space);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(poll_recv(&a, &mut cx, &mut buf).is_pending());
        b.write_all(b"hello").await.unwrap();
        poll_fn(|cx| poll_recv(&a, cx, &mut buf)).await.unwrap();
        assert_eq!(buf.filled(), b"hello");
        // Short read: drained, so the next poll waits instead of reading.
        assert!(poll_recv(&a, &mut cx, &mut buf).is_pending());
        drop(b);
        poll_fn(|cx| poll_recv(&a, cx, &mut buf)).await.unwrap();
        assert_eq!(buf.filled(), b"hello", "end of stream adds nothing");
    }

    /// A write larger than the socket takes is partial, waits while the
    /// socket is full, and goes on once the peer reads.
    #[tokio::test(flavor = "current_thread")]
    async fn send_waits_while_full() {
        let (a, b) = UnixStream::pair().unwrap();
        let data = vec![7u8; 1 << 22];
        let mut sent = 0;
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        while let Poll::Ready(n) = poll_send(&a, &mut cx, &data[sent..]) {
            sent += n.unwrap();
            assert!(sent < data.len(), "a 4 MiB write filled no socket buffer");
        }
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut space = vec![0u8; 1 << 16];
            while got < 1 << 22 {
                let mut buf = ReadBuf::new(&mut space);
                poll_fn(|cx| poll_recv(&b, cx, &mut buf)).await.unwrap();
                assert!(buf.filled().iter().all(|&x| x == 7));
                got += buf.filled().len();
            }
            got
        });
        while sent < data.len() {
            sent += poll_fn(|cx| poll_send(&a, cx, &data[sent..]))
                .await
                .unwrap();
        }
        assert_eq!(reader.await.unwrap(), 1 << 22);
    }

    /// The idle-server probe: nothing while the peer is quiet, something
    /// once it writes or closes; the TLS helpers read and write.
    #[tokio::test(flavor = "current_thread")]
    async fn probe_and_nonwaiting_calls() {
        let (a, b) = UnixStream::pair().unwrap();
        assert!(!has_input(&a));
        assert_eq!(try_send(&b, b"xy").unwrap(), 2);
        a.readable().await.unwrap();
        let mut space = [0u8; 8];
        assert_eq!(try_recv_drain(&a, &mut space).unwrap(), 2);
        assert_eq!(&space[..2], b"xy");
        let e = try_recv_drain(&a, &mut space).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(!has_input(&a));
        drop(b);
        a.readable().await.unwrap();
        assert!(has_input(&a), "the peer's close counts");
    }
}
