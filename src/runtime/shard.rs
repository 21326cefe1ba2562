//! Shards: one single-threaded tokio runtime per core instead of one
//! work-stealing runtime for all of them.
//!
//! Why: a session is one task that does all of its work itself, so
//! stealing buys nothing and costs on every transaction: tokio's
//! multi-threaded scheduler keeps poll-time averages and coop budgets and
//! wakes a sibling worker whenever a task is queued (measured before this
//! module, `SCENARIOS=S1,S4 benches/compare.sh`: pooler user time 8.4-9.5
//! µs per transaction at -c 1 against 5.6-6.5 µs on one current-thread
//! runtime; with -C, 3.5 context switches per connection against
//! PgBouncer's 1.9).
//!
//! Every shard accepts on the same listening sockets (each has its own
//! registration of them; the kernel wakes the shards and one wins each
//! connection), and a client's session stays on the shard that accepted
//! it. Pools are shared: a server connection is registered with the
//! reactor of the shard that last used it (its `home`), and a client on
//! another shard moves it to its own before the first read or write
//! (`ServerConn::rehome`: two epoll_ctl calls), so that every wake-up of
//! a session comes from its own thread's reactor. A server released on
//! one shard goes preferably to a client waiting on that same shard.

use std::cell::Cell;
use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static CURRENT: Cell<u16> = const { Cell::new(0) };
}

/// The shard the calling thread runs (0 outside the shard threads: the
/// main thread's runtime, or a test's).
#[inline]
pub fn current() -> u16 {
    CURRENT.with(Cell::get)
}

/// How many shards to run: `PGSLUICE_THREADS` if set to a positive
/// number, else one per core.
pub fn wanted() -> usize {
    std::env::var("PGSLUICE_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(u16::MAX as usize)
}

/// The calling runtime (shard 0) and the threads running the others.
/// Dropping it stops those threads (their tasks are dropped).
pub struct Shards {
    handles: Vec<Handle>,
    /// The runtime with the time driver (see `crate::runtime::timer`).
    timers: Handle,
    threads: Vec<Stoppable>,
}

/// A runtime thread and the sender that stops it.
type Stoppable = (oneshot::Sender<()>, JoinHandle<()>);

/// A thread running a current-thread runtime until told to stop.
fn runtime_thread(
    name: String,
    build: impl FnOnce() -> io::Result<tokio::runtime::Runtime> + Send + 'static,
) -> io::Result<(Handle, Stoppable)> {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let runtime = match build() {
            Ok(r) => r,
            Err(e) => {
                let _ = handle_tx.send(Err(e));
                return;
            }
        };
        let _ = handle_tx.send(Ok(runtime.handle().clone()));
        runtime.block_on(async move {
            let _ = stop_rx.await;
        });
    })?;
    let handle = handle_rx
        .recv()
        .map_err(|_| io::Error::other("a runtime thread died while starting"))??;
    Ok((handle, (stop_tx, thread)))
}

impl Shards {
    /// Shard 0 is the current runtime (call inside it); `total - 1` more
    /// each get a thread running a current-thread runtime without the time
    /// driver, and one more thread runs a runtime with the time driver,
    /// where their sleeps go (`crate::runtime::timer`), and with I/O for
    /// the rare work that is kept off the shards (an LDAP bind, see
    /// `timer::spawn_off_shard`).
    pub fn start(total: usize) -> io::Result<Shards> {
        let mut threads = Vec::new();
        let (timers, thread) = runtime_thread("pgsluice-timer".into(), || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .enable_io()
                .build()
        })?;
        threads.push(thread);
        let mut handles = vec![Handle::current()];
        for id in 1..total.max(1) {
            let timers = timers.clone();
            let (handle, thread) = runtime_thread(format!("pgsluice-shard-{id}"), move || {
                CURRENT.with(|c| c.set(id as u16));
                super::timer::use_timers_of(timers);
                tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
            })?;
            handles.push(handle);
            threads.push(thread);
        }
        Ok(Shards {
            handles,
            timers,
            threads,
        })
    }

    /// The runtimes, shard 0 first.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// The runtime the shards' sleeps run on. A shard 0 built without the
    /// time driver (as the binary's) passes it to
    /// `crate::runtime::timer::use_timers_of` on its own thread.
    pub fn timers(&self) -> &Handle {
        &self.timers
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        // Shards first, the timer runtime (first started) last.
        for (stop, thread) in self.threads.drain(..).rev() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_shard_knows_its_id() {
        let shards = Shards::start(3).unwrap();
        assert_eq!(shards.handles().len(), 3);
        assert_eq!(current(), 0);
        for (i, h) in shards.handles().iter().enumerate().skip(1) {
            let id = h.spawn(async { current() }).await.unwrap();
            assert_eq!(id as usize, i);
        }
    }

    /// On a shard without a time driver, sleeps and timeouts run on the
    /// timer runtime.
    #[tokio::test]
    async fn timeouts_work_on_a_shard_without_a_timer() {
        use super::super::timer::{Elapsed, sleep, timeout};
        use std::time::{Duration, Instant};
        let shards = Shards::start(2).unwrap();
        let other = shards.handles()[1].clone();
        let (fired, finished) = other
            .spawn(async {
                let started = Instant::now();
                let fired = timeout(Duration::from_millis(50), std::future::pending::<()>()).await;
                let finished =
                    timeout(Duration::from_secs(5), sleep(Duration::from_millis(10))).await;
                assert!(started.elapsed() >= Duration::from_millis(60));
                (fired, finished)
            })
            .await
            .unwrap();
        assert_eq!(fired, Err(Elapsed));
        assert_eq!(finished, Ok(()));
    }
}
