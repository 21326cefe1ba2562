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

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use parking_lot::Mutex;
use tracing::error;

use crate::cancel::CancelTarget;
use crate::server::BackendKey;

/// The registry's map, looked up by the key an event carries.
pub(crate) type Entries = Mutex<HashMap<(i32, i32), Arc<CancelTarget>>>;

// Keys are packed into tokens.
const _: () = assert!(usize::BITS == 64);

/// Token of the waker that stops the thread (never a client key's: those
/// have a non-negative process id, so their top bit is 0).
const STOP: Token = Token(usize::MAX);

/// The parker: its epoll set and the thread that waits on it. Dropping it
/// stops the thread.
pub struct Parker {
    registry: mio::Registry,
    waker: mio::Waker,
    stop: Arc<AtomicBool>,
}

impl Parker {
    /// Start the thread; readiness of a watched socket wakes the entry of
    /// the key it was watched with (found in `entries`, if still there).
    pub fn start(entries: Weak<Entries>) -> io::Result<Parker> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), STOP)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("pgsluice-park".into())
            .spawn(move || run(poll, entries, &stopped))?;
        Ok(Parker {
            registry,
            waker,
            stop,
        })
    }

    /// Watch `fd` (a parked client's socket) for readability, hang-up or
    /// error. A socket that is readable already is reported at once.
    pub fn watch(&self, fd: RawFd, key: BackendKey) -> io::Result<()> {
        let token = token(key);
        if token == STOP {
            return Err(io::Error::other("key collides with the stop token"));
        }
        self.registry
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
    }

    /// Stop watching `fd` (its client is getting a task again).
    pub fn unwatch(&self, fd: RawFd) -> io::Result<()> {
        self.registry.deregister(&mut SourceFd(&fd))
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

fn token(key: BackendKey) -> Token {
    let bits = (u64::from(key.process_id as u32) << 32) | u64::from(key.secret_key as u32);
    Token(bits as usize)
}

fn key(token: Token) -> (i32, i32) {
    let bits = token.0 as u64;
    ((bits >> 32) as u32 as i32, bits as u32 as i32)
}

fn run(mut poll: Poll, entries: Weak<Entries>, stop: &AtomicBool) {
    let mut events = Events::with_capacity(256);
    let mut woken = Vec::new();
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
        let Some(entries) = entries.upgrade() else {
            return;
        };
        {
            let map = entries.lock();
            woken.extend(
                events
                    .iter()
                    .filter(|e| e.token() != STOP)
                    .filter_map(|e| map.get(&key(e.token())).cloned()),
            );
        }
        drop(entries);
        // Outside the map's lock: waking resumes the client, which
        // starts a task.
        for t in woken.drain(..) {
            std::task::Wake::wake(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_stop() {
        for (p, s) in [(0, 0), (0x7fff_ffff, -1), (1, i32::MIN), (12345, 678)] {
            let k = BackendKey {
                process_id: p,
                secret_key: s,
            };
            assert_ne!(token(k), STOP);
            assert_eq!(key(token(k)), (p, s));
        }
    }
}
