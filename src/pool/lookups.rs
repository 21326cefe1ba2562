//! auth_query lookups through an auth pool (the pool of auth_dbname and
//! auth_user), and what they found: the lookup cache PgBouncer lacks.
//!
//! A lookup takes a server of the pool as any client would (so a flood of
//! logins never opens more connections than the pool allows), runs the
//! query (`ServerConn::lookup`) and gives the server back. It runs in a
//! task of its own, so that it finishes even when the login that started it
//! is gone, and with sharing on, logins of the same user that arrive while
//! it is in flight wait for it instead of starting their own. The last
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

    /// Look `user` up with `query`: join the lookup in flight when `share`
    /// and there is one, else start one. `limit` bounds the query (zero:
    /// unbounded); the checkout is bounded by query_wait_timeout as any.
    pub(crate) fn lookup(
        self: &Arc<Self>,
        query: &Arc<str>,
        user: &str,
        share: bool,
        limit: Duration,
    ) -> impl std::future::Future<Output = Lookup> + Send + 'static {
        let key: Key = (query.clone(), user.into());
        let mut rx = {
            let mut slots = self.lookups.slots.lock();
            let slot = slots.entry(key.clone()).or_default();
            match &slot.in_flight {
                Some(rx) if share => rx.clone(),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    if share {
                        slot.in_flight = Some(rx.clone());
                    }
                    let pool = self.clone();
                    tokio::spawn(async move {
                        let found = pool.run_lookup(&key, limit).await;
                        pool.settle(key, &found, share);
                        let _ = tx.send(Some(found));
                    });
                    rx
                }
            }
        };
        async move {
            loop {
                if let Some(found) = rx.borrow_and_update().clone() {
                    return found;
                }
                if rx.changed().await.is_err() {
                    let gone = LookupError::Shape("lookup was abandoned".into());
                    return Err(Arc::new(gone));
                }
            }
        }
    }

    async fn run_lookup(&self, (query, user): &Key, limit: Duration) -> Lookup {
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
        let run = server.lookup(query, user);
        let found = if limit.is_zero() {
            run.await
        } else {
            match crate::runtime::timer::timeout(limit, run).await {
                Ok(found) => found,
                Err(_) => {
                    let why = format!("timed out after {} ms", limit.as_millis());
                    // Closed: it is still running the query.
                    self.discard_for(server, crate::server::ServerEnd::Error);
                    return Err(Arc::new(LookupError::Shape(why)));
                }
            }
        };
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

    /// Note what a lookup found: keep the secret of a user that exists,
    /// forget one that does not (a dropped role), end the flight.
    fn settle(&self, key: Key, found: &Lookup, shared: bool) {
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
                if shared {
                    slot.in_flight = None;
                }
            }
            None => {
                if let Some(slot) = slots.get_mut(&key) {
                    slot.known = None;
                    if shared {
                        slot.in_flight = None;
                    }
                    if slot.in_flight.is_none() {
                        slots.remove(&key);
                    }
                }
            }
        }
    }
}
