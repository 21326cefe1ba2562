//! query_wait_notify: a client that waits longer than that for a server is
//! told, while it waits, that it is queued (a NOTICE with PgBouncer's text,
//! once per wait).
//!
//! No timer per wait: like the link timeouts (`timeouts`), the wait
//! publishes its deadline in the registry sweep's epochs on the session's
//! entry when the checkout first has to wait, and the 1 Hz sweep wakes the
//! session once that epoch is closed; the checkout, polled again, is still
//! waiting and the notice goes out. The whole wait is one poll function
//! around the checkout (the notice is written from it): the request's
//! future keeps one await for it, and a checkout that gets a server at
//! once costs two flag tests more.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWrite;

use crate::protocol::backend::{Severity, error_response};
use crate::protocol::sqlstate;
use crate::registry::SessionEntry;
use crate::transport::Stream;

/// PgBouncer's text (janitor.c), which monitoring and tests match.
pub(crate) const QUEUED: &str =
    "No server connection available in postgres backend, client being queued";

/// How a wait ended.
pub(super) enum Waited<T, C> {
    /// The checkout ended.
    Done(T),
    /// It was ended while waiting (see `closed` of [`WaitNotice::poll`]).
    Closed(C),
    /// Writing the notice failed.
    Io(std::io::Error),
}

/// The notice state of one checkout, and its result while the notice is
/// still being written.
pub(super) struct WaitNotice<T> {
    /// query_wait_notify; zero: off.
    limit: Duration,
    /// The epoch after which the notice is due (0: not waiting yet).
    deadline: u64,
    /// Sent (or off): nothing more to do for this checkout.
    done: bool,
    /// The notice being written, and how much of it went out.
    out: Option<(BytesMut, usize)>,
    /// The checkout's end, held until the notice is out.
    held: Option<T>,
}

impl<T> WaitNotice<T> {
    /// For a checkout under query_wait_notify `limit`.
    #[inline]
    pub(super) fn new(limit: Duration) -> WaitNotice<T> {
        WaitNotice {
            limit,
            deadline: 0,
            done: limit.is_zero(),
            out: None,
            held: None,
        }
    }

    /// Poll the wait: `checkout` for its end, `closed` for an end forced
    /// while waiting (shutdown, KILL), and the notice when due, written to
    /// `stream`. `epoch` is the sweep's epoch counter (the open epoch).
    #[inline]
    pub(super) fn poll<F: Future<Output = T>, C>(
        &mut self,
        mut checkout: Pin<&mut F>,
        cx: &mut Context<'_>,
        (entry, epoch): (&SessionEntry, &AtomicU64),
        stream: &mut Stream,
        closed: impl Fn() -> Option<C>,
    ) -> Poll<Waited<T, C>> {
        if self.out.is_none() && self.held.is_none() {
            // The usual case: nothing being written.
            match checkout.as_mut().poll(cx) {
                Poll::Ready(r) => return Poll::Ready(Waited::Done(r)),
                Poll::Pending if self.done => {
                    return match closed() {
                        Some(end) => Poll::Ready(Waited::Closed(end)),
                        None => Poll::Pending,
                    };
                }
                Poll::Pending => {}
            }
        }
        self.slow(checkout, cx, (entry, epoch), stream, closed)
    }

    /// The checkout waits with the notice not sent yet, or the notice is
    /// being written.
    #[inline(never)]
    fn slow<F: Future<Output = T>, C>(
        &mut self,
        mut checkout: Pin<&mut F>,
        cx: &mut Context<'_>,
        (entry, epoch): (&SessionEntry, &AtomicU64),
        stream: &mut Stream,
        closed: impl Fn() -> Option<C>,
    ) -> Poll<Waited<T, C>> {
        loop {
            if let Some((buf, sent)) = &mut self.out {
                match Pin::new(&mut *stream).poll_write(cx, &buf[*sent..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Waited::Io(std::io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        *sent += n;
                        if *sent < buf.len() {
                            continue;
                        }
                        self.out = None;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Waited::Io(e)),
                    // The checkout is polled on meanwhile (its result is
                    // held until the notice is out).
                    Poll::Pending if self.held.is_some() => return Poll::Pending,
                    Poll::Pending => {}
                }
            }
            if self.held.is_some() {
                if self.out.is_none() {
                    return Poll::Ready(Waited::Done(self.held.take().expect("held")));
                }
                return Poll::Pending;
            }
            if let Poll::Ready(r) = checkout.as_mut().poll(cx) {
                if self.out.is_some() {
                    self.held = Some(r);
                    continue;
                }
                return Poll::Ready(Waited::Done(r));
            }
            if let Some(end) = closed() {
                return Poll::Ready(Waited::Closed(end));
            }
            if self.out.is_none() && self.due(entry, epoch.load(Ordering::Relaxed)) {
                self.out = Some((queued_notice(), 0));
                continue;
            }
            return Poll::Pending;
        }
    }

    /// The checkout waits in open epoch `now`: whether the notice is due
    /// (once); arms the deadline on the first wait.
    fn due(&mut self, entry: &SessionEntry, now: u64) -> bool {
        if self.done {
            return false;
        }
        if self.deadline == 0 {
            // A wait that starts in epoch e has lasted more than `limit`
            // seconds once the sweep closed epoch e + limit.
            let secs = self.limit.as_nanos().div_ceil(1_000_000_000);
            self.deadline = now + u64::try_from(secs).unwrap_or(u64::MAX / 4);
            entry.set_link_deadline(self.deadline);
            return false;
        }
        if now.saturating_sub(1) < self.deadline {
            return false;
        }
        self.done = true;
        entry.set_link_deadline(0);
        true
    }

    /// The checkout ended: no wake-up is left published (the sweep would
    /// otherwise wake the session every second, and never park it).
    #[inline]
    pub(super) fn finish(&self, entry: &SessionEntry) {
        if self.deadline != 0 && !self.done {
            entry.set_link_deadline(0);
        }
    }
}

/// The NoticeResponse (severity NOTICE, SQLSTATE 00000, as PgBouncer's).
pub(super) fn queued_notice() -> BytesMut {
    let mut out = BytesMut::new();
    error_response(
        &mut out,
        Severity::Notice,
        sqlstate::SUCCESSFUL_COMPLETION,
        QUEUED,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_is_due_once_after_the_limit() {
        let e = SessionEntry::default();
        let mut n = WaitNotice::<()>::new(Duration::from_secs(2));
        // The first wait publishes the deadline: epoch 12 closed.
        assert!(!n.due(&e, 10));
        assert_eq!(e.link_deadline(), 12);
        assert!(!n.due(&e, 12));
        assert!(n.due(&e, 13));
        assert_eq!(e.link_deadline(), 0);
        // Once per wait.
        assert!(!n.due(&e, 20));
    }

    #[test]
    fn a_wait_that_ends_early_leaves_no_deadline_and_off_does_nothing() {
        let e = SessionEntry::default();
        let mut n = WaitNotice::<()>::new(Duration::from_secs(5));
        assert!(!n.due(&e, 10));
        assert_eq!(e.link_deadline(), 15);
        n.finish(&e);
        assert_eq!(e.link_deadline(), 0);
        let mut off = WaitNotice::<()>::new(Duration::ZERO);
        assert!(!off.due(&e, 100));
        assert_eq!(e.link_deadline(), 0);
    }

    #[test]
    fn the_notice_has_pgbouncer_s_text() {
        let msg = queued_notice();
        assert_eq!(msg[0], b'N');
        let body = String::from_utf8_lossy(&msg[5..]);
        assert!(body.contains("SNOTICE") && body.contains("C00000") && body.contains(QUEUED));
    }
}
