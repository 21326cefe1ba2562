//! auth_query lookups through an auth pool (the pool of auth_dbname and
//! auth_user), and what they found: the lookup cache PgBouncer lacks.
//!
//! A lookup takes a server of the pool as any client would (so a flood of
//! logins never opens more connections than the pool allows), runs the
//! query (`ServerConn::lookup`) and gives the server back. With sharing on
//! (auth_query_cache) it runs in a task of its own, so that it finishes
//! even when the login that started it is gone, and logins of the same
//! user that arrive while it is in flight wait for it instead of starting
//! their own; the janitor abandons one that outlives client_login_timeout.
//! With sharing off it runs in the login's future. The last
//! secret found for a user is kept with the time it was found: for
//! auth_query_cache_ttl a login may be checked against it with no lookup
//! at all (`client::auth_source` decides when; a failed check looks up
//! again before refusing).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::Pool;
use crate::server::{Found, LookupError};

/// What a lookup gives: what it found, or why it could not tell (shared
/// by all the logins that waited for it).
pub(crate) type Lookup = Result<Found, Arc<LookupError>>;

/// A lookup's key: the query and the user name.
type Key = (Arc<str>, Box<str>);

/// The lookups of one auth pool.
#[derive(Default)]
pub(crate) struct Lookups {
    slots: Mutex<HashMap<Key, Slot>>,
    /// Lookups running with a deadline, for the janitor (`expire`): a
    /// timer per lookup would cost a round trip to the timer thread.
    running: Mutex<Vec<Running>>,
}

/// A lookup task and when it must have answered.
struct Running {
    deadline: Instant,
    key: Key,
    task: tokio::task::AbortHandle,
}

#[derive(Default)]
struct Slot {
    /// The last secret found, and when (kept only for users that exist).
    known: Option<(Found, Instant)>,
    /// The lookup in flight, if any.
    in_flight: Option<watch::Receiver<Option<Lookup>>>,
}

impl Pool {
    /// The secret the last lookup of `user` with `query` found, if the
    /// user existed then and that was no longer than `ttl` ago.
    pub(crate) fn known_secret(
        &self,
        query: &Arc<str>,
        user: &str,
        ttl: Duration,
    ) -> Option<Found> {
        let slots = self.lookups.slots.lock();
        let (found, at) = slots.get(&(query.clone(), user.into()))?.known.as_ref()?;
        (at.elapsed() <= ttl).then(|| found.clone())
    }

    /// Look `user` up with `query`. With `share`, join the lookup in
    /// flight, or start one in a task of its own that the logins arriving
    /// meanwhile join, bounded by `limit` (zero: unbounded) through the
    /// janitor. Without, the lookup runs in the login's own future (no
    /// task, nothing remembered), bounded by the login's timeout. The
    /// checkout is bounded by query_wait_timeout as any.
    pub(crate) fn lookup(
        self: &Arc<Self>,
        query: &Arc<str>,
        user: &str,
        share: bool,
        limit: Duration,
    ) -> impl std::future::Future<Output = Lookup> + Send + 'static {
        let key: Key = (query.clone(), user.into());
        let pool = self.clone();
        let rx = share.then(|| self.shared_lookup(key.clone(), limit));
        async move {
            let Some(mut rx) = rx else {
                return pool.run_lookup(&key).await;
            };
            loop {
                if let Some(found) = rx.borrow_and_update().clone() {
                    return found;
                }
                if rx.changed().await.is_err() {
                    // The janitor abandoned it (see `expire_lookups`).
                    let why = "did not answer within client_login_timeout".into();
                    return Err(Arc::new(LookupError::Shape(why)));
                }
            }
        }
    }

    /// The lookup of `key` in flight, or a new one in a task of its own.
    fn shared_lookup(
        self: &Arc<Self>,
        key: Key,
        limit: Duration,
    ) -> watch::Receiver<Option<Lookup>> {
        let mut slots = self.lookups.slots.lock();
        let slot = slots.entry(key.clone()).or_default();
        if let Some(rx) = &slot.in_flight {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        slot.in_flight = Some(rx.clone());
        let pool = self.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let found = pool.run_lookup(&task_key).await;
            pool.settle(task_key, &found);
            let _ = tx.send(Some(found));
        });
        if !limit.is_zero() {
            self.lookups.running.lock().push(Running {
                deadline: Instant::now() + limit,
                key,
                task: task.abort_handle(),
            });
        }
        rx
    }

    async fn run_lookup(&self, (query, user): &Key) -> Lookup {
        let mut server = self.checkout().await.map_err(|e| {
            let (code, message) = match e {
                super::CheckoutError::Server(s) => s.client_error(),
                other => (
                    crate::protocol::sqlstate::CONNECTION_FAILURE,
                    other.to_string(),
                ),
            };
            Arc::new(LookupError::Checkout(code, message))
        })?;
        let found = server.lookup(query, user).await;
        match found {
            Err(LookupError::Server(e)) => {
                self.discard_for(server, crate::server::ServerEnd::Error);
                Err(Arc::new(LookupError::Server(e)))
            }
            other => {
                self.checkin(server);
                other.map_err(Arc::new)
            }
        }
    }

    /// The janitor's pass: a lookup past its deadline is abandoned (its
    /// task aborted: the server it holds is closed, its slot freed; the
    /// logins waiting for it are told), finished ones are forgotten.
    pub(super) fn expire_lookups(&self, now: Instant) {
        let mut expired = Vec::new();
        self.lookups.running.lock().retain(|r| {
            if r.task.is_finished() {
                return false;
            }
            if now < r.deadline {
                return true;
            }
            r.task.abort();
            expired.push(r.key.clone());
            false
        });
        if expired.is_empty() {
            return;
        }
        let mut slots = self.lookups.slots.lock();
        for key in expired {
            tracing::warn!(user = %key.1, "auth_query did not answer within client_login_timeout: abandoned, its server closed");
            if let Some(slot) = slots.get_mut(&key) {
                slot.in_flight = None;
                if slot.known.is_none() {
                    slots.remove(&key);
                }
            }
        }
    }

    /// Note what a lookup found: keep the secret of a user that exists,
    /// forget one that does not (a dropped role), end the flight.
    fn settle(&self, key: Key, found: &Lookup) {
        let mut slots = self.lookups.slots.lock();
        let keep = match found {
            Ok(f @ Found::User(_)) => Some((f.clone(), Instant::now())),
            Ok(Found::NoUser) => None,
            // Could not tell: what was known stays.
            Err(_) => slots.get(&key).and_then(|s| s.known.clone()),
        };
        match keep {
            Some(found) => {
                let slot = slots.entry(key).or_default();
                slot.known = Some(found);
                slot.in_flight = None;
            }
            None => {
                slots.remove(&key);
            }
        }
    }
}
