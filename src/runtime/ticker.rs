//! The janitor's clock: a plain thread that ticks once a second.
//!
//! Periodic work (parking idle sessions, pool maintenance, stats_period)
//! waits on these ticks instead of tokio timers. A tokio timer that is
//! always armed makes the runtime scan its timer wheel every time a worker
//! parks, that is twice per transaction of a lone client: measured with
//! `benches/cost.sh` (callgrind), three 1 s interval loops cost 483 of
//! 10,155 instructions per transaction. A thread asleep in `nanosleep` costs
//! nothing between ticks.

use std::time::Duration;

use tokio::sync::watch;

/// The tick period (PgBouncer's janitor runs as often).
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// Start a ticker. Every receiver sees `changed()` once per tick (ticks
/// missed while busy are merged, like `MissedTickBehavior::Delay`). The
/// thread ends at the first tick after the last receiver is dropped.
pub(crate) fn start() -> std::io::Result<watch::Receiver<u64>> {
    let (tx, rx) = watch::channel(0u64);
    std::thread::Builder::new()
        .name("pgsluice-tick".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                if tx.receiver_count() == 0 {
                    return;
                }
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_about_once_a_second() {
        let mut rx = start().unwrap();
        let t0 = std::time::Instant::now();
        rx.changed().await.unwrap();
        rx.changed().await.unwrap();
        let took = t0.elapsed();
        assert!(took >= TICK, "two ticks in {took:?}");
    }
}
