//! The timeouts of a linked client: query_timeout (one request runs too
//! long) and idle_transaction_timeout (the client sits in a transaction
//! without sending anything). client_idle_timeout, for clients without a
//! server, is enforced by the registry's sweep instead (`cancel.rs`), so an
//! idle client has no timer at all.
//!
//! Cost: nothing unless a timeout is set. Then one `Sleep` per link, armed
//! (`reset`) only when the link enters a new phase: a request starts or is
//! answered, a transaction goes idle. The phase is read from the relay's
//! shared state each time the relay's task is polled (a few relaxed loads);
//! every phase change happens inside such a poll, before the timer's turn,
//! so the timer never misses one and needs no waker of its own for it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::ClientError;

/// 25P03 idle_in_transaction_session_timeout: PostgreSQL's own code for a
/// session closed for idling in a transaction.
pub(super) const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
/// 57P05 idle_session_timeout: PostgreSQL's own code for a session closed
/// for idling outside a transaction.
pub(super) const IDLE_SESSION_TIMEOUT: &str = "57P05";
/// 25000 invalid_transaction_state, for a transaction block in statement
/// pooling mode: the statement itself is fine (so not 0A000
/// feature_not_supported, nor a syntax or protocol error); what is refused
/// is the transaction state it left the server in, and class 25 is where
/// clients and people look for that.
pub(super) const TRANSACTION_BLOCK_REFUSED: &str = "25000";

/// The timeouts that apply while a client is linked (zero = off).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Limits {
    /// query_timeout.
    pub query: Duration,
    /// idle_transaction_timeout.
    pub idle_transaction: Duration,
}

impl Limits {
    /// Whether any timer is needed.
    pub fn any(&self) -> bool {
        !self.query.is_zero() || !self.idle_transaction.is_zero()
    }
}

/// Which timeout ended a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// A request ran longer than query_timeout.
    Query,
    /// The client idled in a transaction longer than idle_transaction_timeout.
    IdleTransaction,
}

impl Expired {
    /// The FATAL error the client gets.
    pub fn client_error(self) -> ClientError {
        match self {
            // 57014 query_canceled, as PostgreSQL's statement_timeout.
            Expired::Query => ClientError::fatal(
                crate::protocol::sqlstate::QUERY_CANCELED,
                "query_timeout: the query ran too long; server connection closed",
            ),
            Expired::IdleTransaction => ClientError::fatal(
                IDLE_IN_TRANSACTION_TIMEOUT,
                "idle_transaction_timeout: idle in transaction too long; \
                 server connection closed, the transaction is rolled back",
            ),
        }
    }

    /// The setting's name, for the log.
    pub fn setting(self) -> &'static str {
        match self {
            Expired::Query => "query_timeout",
            Expired::IdleTransaction => "idle_transaction_timeout",
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

/// The timer of one link: which phase it is armed for, identified by the
/// phase and the number of ReadyForQuery messages seen when it started
/// (so that a new request directly after the previous one restarts it).
pub(super) struct Watch {
    limits: Limits,
    armed: Option<(Phase, u32)>,
    /// What the running `Sleep` stands for (None: nothing to time).
    timing: Option<Expired>,
}

impl Watch {
    /// A timer for `limits`, not armed yet.
    pub fn new(limits: Limits) -> Watch {
        Watch {
            limits,
            armed: None,
            timing: None,
        }
    }

    /// Ready with the timeout that expired. `phase` and `answered` describe
    /// the link now; `sleep` is this link's timer.
    pub fn poll(
        &mut self,
        phase: Phase,
        answered: u32,
        mut sleep: Pin<&mut Sleep>,
        cx: &mut Context<'_>,
    ) -> Poll<Expired> {
        if let Some(limit) = self.enter(phase, answered) {
            sleep.as_mut().reset(Instant::now() + limit);
        }
        match self.timing {
            // A stale registration may still wake the task once; harmless.
            None => Poll::Pending,
            Some(what) => sleep.poll(cx).map(|()| what),
        }
    }

    /// Note where the link is; when that starts a timed phase, the time it
    /// may last (the timer must be reset to now + that).
    fn enter(&mut self, phase: Phase, answered: u32) -> Option<Duration> {
        let key = (phase, answered);
        if self.armed == Some(key) {
            return None;
        }
        self.armed = Some(key);
        let (limit, what) = match phase {
            Phase::Request => (self.limits.query, Expired::Query),
            Phase::IdleInTransaction => (self.limits.idle_transaction, Expired::IdleTransaction),
            Phase::Quiet => (Duration::ZERO, Expired::Query),
        };
        self.timing = (!limit.is_zero()).then_some(what);
        self.timing.map(|_| limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_secs(2);
    const I: Duration = Duration::from_secs(1);

    #[test]
    fn query_timeout_restarts_per_request() {
        let mut w = Watch::new(Limits {
            query: Q,
            idle_transaction: Duration::ZERO,
        });
        assert_eq!(w.enter(Phase::Request, 0), Some(Q));
        // Polled again in the same request: the timer keeps running.
        assert_eq!(w.enter(Phase::Request, 0), None);
        assert_eq!(w.timing, Some(Expired::Query));
        // Answered, and the next request came at once: timed anew.
        assert_eq!(w.enter(Phase::Request, 1), Some(Q));
        // Idle in a transaction: not timed without idle_transaction_timeout.
        assert_eq!(w.enter(Phase::IdleInTransaction, 2), None);
        assert_eq!(w.timing, None);
        assert_eq!(w.enter(Phase::Request, 2), Some(Q));
        assert_eq!(w.enter(Phase::Quiet, 3), None);
        assert_eq!(w.timing, None);
    }

    #[test]
    fn idle_transaction_timeout_only_while_idle_in_a_transaction() {
        let mut w = Watch::new(Limits {
            query: Duration::ZERO,
            idle_transaction: I,
        });
        assert_eq!(w.enter(Phase::Request, 0), None);
        assert_eq!(w.timing, None);
        assert_eq!(w.enter(Phase::IdleInTransaction, 1), Some(I));
        assert_eq!(w.enter(Phase::IdleInTransaction, 1), None);
        assert_eq!(w.timing, Some(Expired::IdleTransaction));
        // The client sent something: the idle clock stops...
        assert_eq!(w.enter(Phase::Request, 1), None);
        assert_eq!(w.timing, None);
        // ...and starts afresh after the answer.
        assert_eq!(w.enter(Phase::IdleInTransaction, 2), Some(I));
    }

    #[test]
    fn both_timeouts_switch_with_the_phase() {
        let mut w = Watch::new(Limits {
            query: Q,
            idle_transaction: I,
        });
        assert_eq!(w.enter(Phase::Request, 0), Some(Q));
        assert_eq!(w.enter(Phase::IdleInTransaction, 1), Some(I));
        assert_eq!(w.timing, Some(Expired::IdleTransaction));
        assert_eq!(w.enter(Phase::Request, 1), Some(Q));
        assert_eq!(w.timing, Some(Expired::Query));
    }

    /// With a real (short) timer: the phase's limit expires, once armed.
    #[tokio::test]
    async fn expires_through_the_sleep() {
        let mut w = Watch::new(Limits {
            query: Duration::from_millis(20),
            idle_transaction: Duration::ZERO,
        });
        let mut sleep = std::pin::pin!(tokio::time::sleep(Duration::from_secs(3600)));
        let what = std::future::poll_fn(|cx| w.poll(Phase::Request, 0, sleep.as_mut(), cx)).await;
        assert_eq!(what, Expired::Query);
    }
}
