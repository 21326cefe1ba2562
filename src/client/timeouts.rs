//! The timeouts of a linked client: query_timeout (one request runs too
//! long) and idle_transaction_timeout (the client sits in a transaction
//! without sending anything). client_idle_timeout, for clients without a
//! server, is enforced by the registry's sweep alone (`cancel.rs`).
//!
//! Like PgBouncer's janitor, and unlike a timer per link, these cost (next
//! to) nothing per transaction: there is no `Sleep`, no timer-wheel entry,
//! no allocation. The relay's timer branch (present only when a timeout is
//! set) notes where the link is each time the task is polled (a few relaxed
//! loads; every phase change happens inside such a poll). When a timed
//! phase starts (a request is sent, a transaction goes idle) it publishes
//! the phase's deadline, in epochs of the registry's 1 Hz sweep, on the
//! session's registry entry; the sweep wakes the session once the deadline
//! passed and the branch, seeing it, ends the link. Granularity is the
//! sweep's: a limit of N s (rounded up to whole seconds) fires after more
//! than N and at most about N + 1 seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
#[cfg(test)]
use std::time::Duration;

use super::SessionEnd;
use crate::registry::SessionEntry;

/// The timeouts that apply while a client is linked, in sweep epochs
/// (whole seconds, rounded up; zero = off): small, since they are part of
/// every request's future.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Limits {
    /// query_timeout.
    query: u32,
    /// idle_transaction_timeout.
    idle_transaction: u32,
    /// transaction_timeout.
    transaction: u32,
}

impl Limits {
    /// query_timeout, idle_transaction_timeout and transaction_timeout
    /// (tests: the pool keeps them in seconds, see `from_secs`).
    #[cfg(test)]
    pub(crate) fn new(
        query: Duration,
        idle_transaction: Duration,
        transaction: Duration,
    ) -> Limits {
        let e = |d: Duration| u32::try_from(epochs(d)).unwrap_or(u32::MAX / 4);
        Limits {
            query: e(query),
            idle_transaction: e(idle_transaction),
            transaction: e(transaction),
        }
    }

    /// The same, already in whole seconds (rounded up), as the pool keeps
    /// them (`LinkSettings`): nothing to convert per transaction.
    pub(crate) fn from_secs(query: u32, idle_transaction: u32, transaction: u32) -> Limits {
        Limits {
            query,
            idle_transaction,
            transaction,
        }
    }

    /// Whether any timer is needed.
    pub(crate) fn any(&self) -> bool {
        self.query != 0 || self.idle_transaction != 0 || self.transaction != 0
    }
}

/// Which timeout ended a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// A request ran longer than query_timeout.
    Query,
    /// The client idled in a transaction longer than idle_transaction_timeout.
    IdleTransaction,
    /// A transaction stayed open longer than transaction_timeout.
    Transaction,
    /// server_fast_close in session mode: RECONNECT (or a reload that
    /// changed the database) marked the server, and the session is
    /// between transactions.
    ConfigChanged,
}

impl Expired {
    /// The FATAL error the client gets.
    pub(crate) fn client_error(self) -> SessionEnd {
        match self {
            // PgBouncer's texts, which logs and alerts match. 57014
            // query_canceled, as PostgreSQL's statement_timeout (a driver
            // reports it as an operational error, as PgBouncer's 08P01).
            Expired::Query => {
                SessionEnd::fatal(crate::protocol::sqlstate::QUERY_CANCELED, "query timeout")
            }
            // PgBouncer's code, not PostgreSQL's 25P03 / 25P04: the
            // connection is closed, and drivers report a class 08 error as
            // a lost connection (psycopg's OperationalError; 25P03 is an
            // InternalError there), which retry logic written for
            // PgBouncer keys on.
            Expired::IdleTransaction => SessionEnd::fatal(
                crate::protocol::sqlstate::PROTOCOL_VIOLATION,
                "idle transaction timeout",
            ),
            Expired::Transaction => SessionEnd::fatal(
                crate::protocol::sqlstate::PROTOCOL_VIOLATION,
                "transaction timeout",
            ),
            // PgBouncer's words; 57P01, the code PostgreSQL gives a
            // session an administrator ended.
            Expired::ConfigChanged => SessionEnd::fatal(
                crate::protocol::sqlstate::ADMIN_SHUTDOWN,
                "database configuration changed",
            ),
        }
    }

    /// The setting's name, for the log.
    pub(crate) fn setting(self) -> &'static str {
        match self {
            Expired::Query => "query_timeout",
            Expired::IdleTransaction => "idle_transaction_timeout",
            Expired::Transaction => "transaction_timeout",
            Expired::ConfigChanged => "server_fast_close",
        }
    }
}

/// Where a link is, as far as timeouts care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// A request is outstanding (sent, or being sent, and not answered).
    Request,
    /// Nothing outstanding, the server is in a transaction ('T' or 'E').
    IdleInTransaction,
    /// Nothing outstanding, no transaction.
    Quiet,
}

/// What the timer of a link needs: the session's registry entry (where
/// the deadline is published and the waker is kept) and the registry's
/// epoch counter.
#[derive(Clone, Copy)]
pub(super) struct Clock<'a> {
    /// The session's registry entry.
    pub target: &'a SessionEntry,
    /// The sweep's epoch counter (`Context::epoch`).
    pub epoch: &'a AtomicU64,
}

/// Whole seconds (rounded up) = sweep epochs.
#[cfg(test)]
fn epochs(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX / 4)
}

/// The timer of one link: which phase it was last told of, identified by
/// the phase and the number of ReadyForQuery messages seen when it started
/// (so that a new request directly after the previous one restarts it),
/// and the deadline of that phase, if timed.
pub(super) struct Watch {
    query: u64,
    idle_transaction: u64,
    transaction: u64,
    armed: Option<(Phase, u32)>,
    deadline: Option<(u64, Expired)>,
    /// The open transaction (transaction_timeout): the ReadyForQuery count
    /// when it began, and its deadline.
    xact: Option<(u32, u64)>,
}

impl Watch {
    /// A timer for `limits`, not armed yet.
    pub(crate) fn new(limits: Limits) -> Watch {
        Watch {
            query: u64::from(limits.query),
            idle_transaction: u64::from(limits.idle_transaction),
            transaction: u64::from(limits.transaction),
            armed: None,
            deadline: None,
            xact: None,
        }
    }

    /// Ready with the timeout that expired. `phase`, `answered` and `idle`
    /// (the last ReadyForQuery said 'I') describe the link now.
    pub(crate) fn poll(
        &mut self,
        (phase, answered, idle): (Phase, u32, bool),
        clock: Clock<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Expired> {
        // The sweep wakes the session through its entry's waker, which the
        // session registered before the request (see `client::session`).
        let _ = cx;
        let epoch = clock.epoch.load(Ordering::Relaxed);
        if let Some(deadline) = self.enter(phase, answered, idle, epoch) {
            clock.target.set_link_deadline(deadline);
        }
        match self.expired(epoch) {
            Some(what) => Poll::Ready(what),
            None => Poll::Pending,
        }
    }

    /// Note where the link is in (open) epoch `epoch`. When that is a new
    /// phase, the deadline to publish (0: none).
    fn enter(&mut self, phase: Phase, answered: u32, idle: bool, epoch: u64) -> Option<u64> {
        let key = (phase, answered);
        if self.armed == Some(key) {
            return None;
        }
        self.armed = Some(key);
        // A transaction is open from the first request after a
        // ReadyForQuery 'I' (or the link's start) to the next 'I'.
        self.xact = match (phase, self.xact) {
            (Phase::Quiet, _) => None,
            _ if self.transaction == 0 => None,
            (_, Some((since, _))) if !idle || since == answered => self.xact,
            _ => Some((answered, epoch + self.transaction)),
        };
        let (limit, what) = match phase {
            Phase::Request => (self.query, Expired::Query),
            Phase::IdleInTransaction => (self.idle_transaction, Expired::IdleTransaction),
            Phase::Quiet => (0, Expired::Query),
        };
        // A phase that starts in epoch e and must not last `limit` seconds
        // is over when the sweep closes epoch e + limit: by then it lasted
        // more than `limit` seconds.
        self.deadline = (limit > 0).then(|| (epoch + limit, what));
        let phase = self.deadline.map(|(d, _)| d);
        let xact = self.xact.map(|(_, d)| d);
        Some(match (phase, xact) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(0),
        })
    }

    /// The expired timeout, if the sweep closed the deadline's epoch
    /// (`epoch` is the open one).
    fn expired(&self, epoch: u64) -> Option<Expired> {
        let closed = epoch.saturating_sub(1);
        if let Some((deadline, what)) = self.deadline
            && closed >= deadline
        {
            return Some(what);
        }
        let (_, deadline) = self.xact?;
        (closed >= deadline).then_some(Expired::Transaction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(query: u64, idle_transaction: u64) -> Watch {
        Watch::new(Limits::new(
            Duration::from_secs(query),
            Duration::from_secs(idle_transaction),
            Duration::ZERO,
        ))
    }

    #[test]
    fn transaction_timeout_runs_from_the_first_request_to_the_next_idle() {
        let mut w = Watch::new(Limits::new(
            Duration::ZERO,
            Duration::ZERO,
            Duration::from_secs(3),
        ));
        // BEGIN sent in epoch 10: the transaction must be over by 13.
        assert_eq!(w.enter(Phase::Request, 0, true, 10), Some(13));
        // Answered 'T', idle in it, another request: the clock runs on.
        assert_eq!(w.enter(Phase::IdleInTransaction, 1, false, 11), Some(13));
        assert_eq!(w.enter(Phase::Request, 1, false, 12), Some(13));
        assert_eq!(w.expired(13), None);
        assert_eq!(w.expired(14), Some(Expired::Transaction));
        // Over ('I'), then a new transaction: timed anew.
        assert_eq!(w.enter(Phase::Quiet, 2, true, 13), Some(0));
        assert_eq!(w.expired(30), None);
        assert_eq!(w.enter(Phase::Request, 2, true, 30), Some(33));
        // Pipelined autocommit requests: each 'I' starts the next one.
        assert_eq!(w.enter(Phase::Request, 3, true, 32), Some(35));
        assert_eq!(w.expired(35), None);
    }

    #[test]
    fn the_nearest_deadline_is_published() {
        let mut w = Watch::new(Limits::new(
            Duration::from_secs(5),
            Duration::ZERO,
            Duration::from_secs(2),
        ));
        assert_eq!(w.enter(Phase::Request, 0, true, 10), Some(12));
        assert_eq!(w.expired(13), Some(Expired::Transaction));
        let mut w = Watch::new(Limits::new(
            Duration::from_secs(1),
            Duration::ZERO,
            Duration::from_secs(9),
        ));
        assert_eq!(w.enter(Phase::Request, 0, true, 10), Some(11));
        assert_eq!(w.expired(12), Some(Expired::Query));
    }

    #[test]
    fn query_timeout_restarts_per_request() {
        let mut w = watch(2, 0);
        assert_eq!(w.enter(Phase::Request, 0, true, 10), Some(12));
        // Polled again in the same request: the deadline stays.
        assert_eq!(w.enter(Phase::Request, 0, true, 11), None);
        assert_eq!(w.expired(12), None);
        assert_eq!(w.expired(13), Some(Expired::Query));
        // Answered, and the next request came at once: timed anew.
        assert_eq!(w.enter(Phase::Request, 1, true, 13), Some(15));
        assert_eq!(w.expired(15), None);
        // Idle in a transaction: not timed without idle_transaction_timeout.
        assert_eq!(w.enter(Phase::IdleInTransaction, 2, true, 20), Some(0));
        assert_eq!(w.expired(100), None);
        assert_eq!(w.enter(Phase::Request, 2, true, 100), Some(102));
        assert_eq!(w.enter(Phase::Quiet, 3, true, 101), Some(0));
        assert_eq!(w.expired(200), None);
    }

    #[test]
    fn idle_transaction_timeout_only_while_idle_in_a_transaction() {
        let mut w = watch(0, 1);
        assert_eq!(w.enter(Phase::Request, 0, true, 5), Some(0));
        assert_eq!(w.expired(50), None);
        assert_eq!(w.enter(Phase::IdleInTransaction, 1, true, 50), Some(51));
        assert_eq!(w.expired(51), None);
        // The client sent something in time: the idle clock stops...
        assert_eq!(w.enter(Phase::Request, 1, true, 51), Some(0));
        assert_eq!(w.expired(60), None);
        // ...and starts afresh after the answer.
        assert_eq!(w.enter(Phase::IdleInTransaction, 2, true, 60), Some(61));
        assert_eq!(w.expired(62), Some(Expired::IdleTransaction));
    }

    #[test]
    fn limits_are_whole_seconds_rounded_up() {
        let w = Watch::new(Limits::new(
            Duration::from_millis(1500),
            Duration::from_millis(1),
            Duration::ZERO,
        ));
        assert_eq!((w.query, w.idle_transaction), (2, 1));
    }

    /// Through the registry entry: the published deadline is what the
    /// sweep looks at, and the sweep's wake-up reaches this task.
    #[tokio::test]
    async fn published_deadline_and_expiry() {
        let target = SessionEntry::default();
        let epoch = AtomicU64::new(7);
        let clock = Clock {
            target: &target,
            epoch: &epoch,
        };
        let mut w = watch(1, 0);
        let first =
            std::future::poll_fn(|cx| Poll::Ready(w.poll((Phase::Request, 0, true), clock, cx)));
        assert_eq!(first.await, Poll::Pending);
        assert_eq!(target.link_deadline(), 8);
        epoch.store(9, Ordering::Relaxed); // the sweep closed epoch 8
        let second =
            std::future::poll_fn(|cx| Poll::Ready(w.poll((Phase::Request, 0, true), clock, cx)));
        assert_eq!(second.await, Poll::Ready(Expired::Query));
    }
}
