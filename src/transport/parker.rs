//! Where parked clients' sockets wait: an epoll set of pgsluice's own,
//! watched by one thread, so that a client idle for a while holds no
//! registration with the runtime's reactor.
//!
//! Why: tokio keeps a `ScheduledIo` for every socket it watches, padded to
//! a cache line pair and allocated as 256 bytes (massif with 2,000 idle
//! clients: 512,000 of 1,862,012 heap bytes). A socket in this set costs
//! no user-space memory at all (the kernel keeps the epoll entry), so a
//! parked client is its registry entry and a small box. Parking and waking
//! cost four epoll_ctl calls, paid only by sessions idle for a second.
//!
//! mio is used directly (it is what tokio's reactor is built on): no
//! well-kept crate offers "call me back when one of these sockets becomes
//! readable" without a runtime registration per socket.
//!
//! The parker knows sockets and tokens only: whoever watches a socket
//! chooses its token, and the callback given to [`Parker::start`] is told
//! the tokens of the sockets that became ready (the session registry finds
//! its entries by them).

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tracing::error;

// Tokens are 64 bits (the registry packs a client key into one).
const _: () = assert!(usize::BITS == 64);

/// Token of the waker that stops the thread; [`Parker::watch`] refuses it.
const STOP: Token = Token(usize::MAX);

/// The parker: its epoll set and the thread that waits on it. Dropping it
/// stops the thread.
pub struct Parker {
    registry: mio::Registry,
    waker: mio::Waker,
    stop: Arc<AtomicBool>,
}

impl Parker {
    /// Start the thread. `ready` is called on it with the tokens of the
    /// watched sockets that became readable (or hung up); when it returns
    /// false (its owner is gone) the thread ends.
    pub fn start(ready: impl FnMut(&[u64]) -> bool + Send + 'static) -> io::Result<Parker> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), STOP)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("pgsluice-park".into())
            .spawn(move || run(poll, ready, &stopped))?;
        Ok(Parker {
            registry,
            waker,
            stop,
        })
    }

    /// Watch `fd` (a parked client's socket) for readability, hang-up or
    /// error, reported with `token`. A socket that is readable already is
    /// reported at once.
    pub fn watch(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let token = Token(token as usize);
        if token == STOP {
            return Err(io::Error::other("token collides with the stop token"));
        }
        self.registry
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
    }

    /// Stop watching `fd` (its client is getting a task again).
    pub(crate) fn unwatch(&self, fd: RawFd) -> io::Result<()> {
        self.registry.deregister(&mut SourceFd(&fd))
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

fn run(mut poll: Poll, mut ready: impl FnMut(&[u64]) -> bool, stop: &AtomicBool) {
    let mut events = Events::with_capacity(256);
    let mut tokens = Vec::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != io::ErrorKind::Interrupted {
                // Cannot happen with a valid epoll fd; parked clients wait
                // until it works again rather than being dropped.
                error!(error = %e, "waiting for parked clients failed");
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        tokens.clear();
        tokens.extend(
            events
                .iter()
                .filter(|e| e.token() != STOP)
                .map(|e| e.token().0 as u64),
        );
        if !ready(&tokens) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_readable_socket_is_reported_with_its_token() {
        let (tx, rx) = std::sync::mpsc::channel();
        let parker = Parker::start(move |tokens| tx.send(tokens.to_vec()).is_ok()).unwrap();
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        parker.watch(b.as_raw_fd(), 42).unwrap();
        a.write_all(b"x").unwrap();
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, vec![42]);
        parker.unwatch(b.as_raw_fd()).unwrap();
        assert!(parker.watch(b.as_raw_fd(), u64::MAX).is_err());
    }
}
