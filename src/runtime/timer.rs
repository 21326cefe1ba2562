//! Timeouts and sleeps that work on every shard (`crate::runtime::shard`).
//!
//! Why: no shard runs tokio's time driver (tests' runtimes aside); one
//! small runtime of its own does (`Shards::start`). With the driver, a
//! runtime checks its timer wheel and reads the clock every time it parks,
//! timers or not: ~530 instructions per transaction at -c 1 (callgrind,
//! `benches/cost.sh`: `Wheel::next_expiration`, `Timespec::now`,
//! `process_at_time`), 7% of what pgsluice spends. The hot path arms no
//! timer (timeouts are the janitor's, see `client::timeouts`), so the
//! shards run without the driver, and the few waits that need a clock
//! (connecting to a server, forwarding a cancel, an admin PAUSE polling,
//! a reserve_pool_timeout, the shutdown grace) sleep on the timer runtime:
//! a task there that fires a oneshot, aborted when the wait ends first.

use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// On a shard without the time driver: the runtime that has it.
    static TIMERS: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// The calling thread's runtime has no time driver: sleep on `timers`.
pub fn use_timers_of(timers: Handle) {
    TIMERS.with(|t| *t.borrow_mut() = Some(timers));
}

/// A wait ran out (see [`timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Aborts the remote sleep when the wait is over.
struct Remote(tokio::task::AbortHandle);

impl Drop for Remote {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleep until `deadline`.
pub(crate) async fn sleep_until(deadline: Instant) {
    match TIMERS.with(|t| t.borrow().clone()) {
        Some(timers) => {
            let (tx, rx) = oneshot::channel::<()>();
            let task = timers.spawn(async move {
                tokio::time::sleep_until(deadline.into()).await;
                let _ = tx.send(());
            });
            let _remote = Remote(task.abort_handle());
            let _ = rx.await;
        }
        None => tokio::time::sleep_until(deadline.into()).await,
    }
}

/// Run `fut` off the shards, on the timer runtime (which has the time
/// driver): for the rare work that needs tokio's timers inside a library
/// (an LDAP bind) and must not hold a shard's thread. Without the timer
/// runtime (tests' runtimes), on the calling runtime.
pub(crate) fn spawn_off_shard<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match TIMERS.with(|t| t.borrow().clone()) {
        Some(timers) => timers.spawn(fut),
        None => tokio::spawn(fut),
    }
}

/// Sleep for `duration`.
pub async fn sleep(duration: Duration) {
    sleep_until(Instant::now() + duration).await
}

/// Run `fut` for at most `duration`.
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    timeout_at(Instant::now() + duration, fut).await
}

/// Run `fut` until `deadline` at most.
pub(crate) async fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Result<F::Output, Elapsed> {
    tokio::select! {
        biased;
        out = fut => Ok(out),
        () = sleep_until(deadline) => Err(Elapsed),
    }
}
