//! query_wait_notify: a client that waits longer than that for a server is
//! told, while it waits, that it is queued (a NOTICE with PgBouncer's text,
//! once per wait).
//!
//! No timer per wait: like the link timeouts (`timeouts`), the wait
//! publishes its deadline in the registry sweep's epochs on the session's
//! entry when the checkout first has to wait, and the 1 Hz sweep wakes the
//! session once that epoch is closed; the checkout, polled again, is still
//! waiting and the notice goes out. A checkout that gets a server at once
//! never looks at any of this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;

use crate::protocol::backend::{Severity, error_response};
use crate::protocol::sqlstate;
use crate::registry::SessionEntry;

/// PgBouncer's text (janitor.c), which monitoring and tests match.
pub(crate) const QUEUED: &str =
    "No server connection available in postgres backend, client being queued";

/// What a poll of a waiting checkout gave.
pub(super) enum Waited<T> {
    /// The checkout ended.
    Done(T),
    /// The client is to be told it is queued; the checkout goes on.
    Notify,
}

/// The notice state of one checkout.
pub(super) struct WaitNotice {
    /// query_wait_notify in sweep epochs (whole seconds); 0: off.
    limit: u64,
    /// The epoch after which the notice is due (0: not waiting yet).
    deadline: u64,
    /// Sent (or off): nothing more to do for this checkout.
    done: bool,
}

impl WaitNotice {
    /// For a checkout under query_wait_notify `limit`.
    pub(super) fn new(limit: Duration) -> WaitNotice {
        let limit = u64::try_from(limit.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX / 4);
        WaitNotice {
            limit,
            deadline: 0,
            done: limit == 0,
        }
    }

    /// One poll of the checkout gave `polled`: its end, or (while it waits)
    /// whether the notice is due. `epoch` is the sweep's epoch counter (the
    /// open epoch).
    #[inline]
    pub(super) fn poll<T>(
        &mut self,
        polled: Poll<T>,
        entry: &SessionEntry,
        epoch: &AtomicU64,
    ) -> Poll<Waited<T>> {
        match polled {
            Poll::Ready(r) => Poll::Ready(Waited::Done(r)),
            Poll::Pending if self.done => Poll::Pending,
            Poll::Pending => self.waiting(entry, epoch.load(Ordering::Relaxed)),
        }
    }

    /// The checkout waits in open epoch `now`.
    #[inline(never)]
    fn waiting<T>(&mut self, entry: &SessionEntry, now: u64) -> Poll<Waited<T>> {
        if self.deadline == 0 {
            // A wait that starts in epoch e has lasted more than `limit`
            // seconds once the sweep closed epoch e + limit.
            self.deadline = now + self.limit;
            entry.set_link_deadline(self.deadline);
            return Poll::Pending;
        }
        if now.saturating_sub(1) < self.deadline {
            return Poll::Pending;
        }
        self.done = true;
        entry.set_link_deadline(0);
        Poll::Ready(Waited::Notify)
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

    fn entry() -> SessionEntry {
        SessionEntry::default()
    }

    #[test]
    fn the_notice_is_due_once_after_the_limit() {
        let e = entry();
        let epoch = AtomicU64::new(10);
        let mut n = WaitNotice::new(Duration::from_secs(2));
        // The first wait publishes the deadline: epoch 12 closed.
        assert!(n.poll(Poll::<()>::Pending, &e, &epoch).is_pending());
        assert_eq!(e.link_deadline(), 12);
        epoch.store(12, Ordering::Relaxed);
        assert!(n.poll(Poll::<()>::Pending, &e, &epoch).is_pending());
        epoch.store(13, Ordering::Relaxed);
        assert!(matches!(
            n.poll(Poll::<()>::Pending, &e, &epoch),
            Poll::Ready(Waited::Notify)
        ));
        assert_eq!(e.link_deadline(), 0);
        // Once per wait.
        epoch.store(20, Ordering::Relaxed);
        assert!(n.poll(Poll::<()>::Pending, &e, &epoch).is_pending());
        assert!(matches!(
            n.poll(Poll::Ready(7), &e, &epoch),
            Poll::Ready(Waited::Done(7))
        ));
    }

    #[test]
    fn a_wait_that_ends_early_leaves_no_deadline_and_off_does_nothing() {
        let e = entry();
        let epoch = AtomicU64::new(10);
        let mut n = WaitNotice::new(Duration::from_secs(5));
        assert!(n.poll(Poll::<()>::Pending, &e, &epoch).is_pending());
        assert_eq!(e.link_deadline(), 15);
        n.finish(&e);
        assert_eq!(e.link_deadline(), 0);
        let mut off = WaitNotice::new(Duration::ZERO);
        epoch.store(100, Ordering::Relaxed);
        assert!(off.poll(Poll::<()>::Pending, &e, &epoch).is_pending());
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
