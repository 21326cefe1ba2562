//! Pool maintenance, run about once a second (PgBouncer's janitor): close
//! idle servers past server_lifetime or server_idle_timeout (keeping
//! min_pool_size), drop idle servers that broke, open servers up to
//! min_pool_size, retry clients waiting on a shared limit, and free pools
//! made from the `*` entry once unused for autodb_idle_timeout.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info};

use super::{Pool, Pools};
use crate::server::ServerEnd;

impl Pools {
    /// One maintenance pass over every pool.
    pub(crate) fn maintain(&self) {
        let now = Instant::now();
        for pool in self.all() {
            pool.maintain(now);
        }
        self.free_unused_autodb(now);
    }

    /// Remove pools made from `*` that nobody used for autodb_idle_timeout.
    fn free_unused_autodb(&self, now: Instant) {
        let mut removed = Vec::new();
        self.map.lock().retain(|_, pool| {
            let Some(timeout) = pool.settings().autodb_idle_timeout else {
                return true;
            };
            let mut st = pool.state.lock();
            // Held only by this registry: no client is logged in to it.
            let unused =
                Arc::strong_count(pool) == 1 && st.total == st.idle.len() && st.waiters.is_empty();
            if !unused {
                st.unused_since = None;
                return true;
            }
            let since = *st.unused_since.get_or_insert(now);
            if timeout.is_zero() || now - since < timeout {
                return true;
            }
            drop(st);
            removed.push(pool.clone());
            false
        });
        for pool in removed {
            info!(pool = %pool.key(), "freeing an unused automatic database pool (autodb_idle_timeout)");
            pool.close_idle();
        }
    }
}

impl Pool {
    /// One maintenance pass over this pool.
    pub(super) fn maintain(self: &Arc<Self>, now: Instant) {
        self.expire_lookups(now);
        let s = self.settings();
        let now_ns = crate::runtime::clock::clock_ns();
        let mut closing = Vec::new();
        let (spare, starved) = {
            let mut st = self.state.lock();
            let mut i = 0;
            // Oldest first: idle-timeout closes the longest-unused servers.
            while i < st.idle.len() {
                let srv = &st.idle[i];
                let keep_min = st.total - closing.len() <= s.min_size;
                let reason = if srv.is_broken() {
                    Some(ServerEnd::Broken)
                } else if srv.close_needed {
                    Some(ServerEnd::Admin)
                } else if !s.lifetime.is_zero() && now - srv.created >= s.lifetime {
                    Some(ServerEnd::Lifetime)
                } else if !s.idle_timeout.is_zero()
                    && srv.idle_ns(now_ns) >= super::hot::nanos(s.idle_timeout)
                    && !keep_min
                {
                    Some(ServerEnd::IdleTimeout)
                } else {
                    None
                };
                match reason {
                    Some(r) => closing.extend(st.idle.remove(i).map(|srv| (srv, r))),
                    None => i += 1,
                }
            }
            st.total -= closing.len();
            // query_wait_timeout (or a shorter query_timeout): dropping a
            // waiter's sender wakes it; it sees its wait expired and fails
            // with 57014 (see `checkout`).
            let (limit, _) = super::server_pool::wait_limit(&s);
            if !limit.is_zero() {
                st.waiters
                    .retain(|w| !super::server_pool::wait_expired(w.since, limit, now));
            }
            let want = s.min_size.min(s.size);
            let failing = st
                .login_failure
                .as_ref()
                .is_some_and(|f| f.at.elapsed() < s.login_retry);
            let spare = if failing || self.control.blocked() {
                0
            } else {
                want.saturating_sub(st.total)
            };
            (spare, !st.waiters.is_empty() && st.total < s.size)
        };
        let n = closing.len();
        for (srv, reason) in closing {
            debug!(server = srv.id, pool = %self.key(), reason = reason.label(), "closing an idle server");
            srv.terminate();
            self.events.closed(reason, 1);
        }
        if n > 0 {
            self.release_limits(n);
        }
        if starved {
            // A wake-up lost to a race (see `acquire_limits`) is made up here.
            // Also the retry of a server that could not be reached, when
            // its backoff is up and no client is trying it already.
            self.on_room();
        }
        for _ in 0..spare {
            tokio::spawn(self.clone().open_spare());
        }
    }

    /// Open one server for min_pool_size, if still short of it.
    async fn open_spare(self: Arc<Self>) {
        {
            let mut st = self.state.lock();
            if st.total >= self.settings().min_size.min(self.settings().size)
                || self.acquire_limits().is_err()
            {
                return;
            }
            st.total += 1;
        }
        let slot = self.slot();
        if let Ok(conn) = self.open(slot).await {
            debug!(server = conn.id, pool = %self.key(), "opened a server for min_pool_size");
            self.checkin_unused(conn);
        }
    }
}
