//! PostgreSQL restarted (fast) under load: clients may see errors during the
//! restart but never hang, and the same pooler serves transactions again.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, poll};

/// Upper bound for one client operation: a hang fails the test.
const OP_LIMIT: Duration = Duration::from_secs(45);
const WORKERS: usize = 8;

/// Shared between the test and its workers.
struct Load {
    stop: AtomicBool,
    restarted: AtomicBool,
    /// Per worker: transactions committed after the restart.
    after: Vec<AtomicU64>,
}

/// One worker: (re)connect, run transactions until told to stop.
async fn worker(p: Arc<TestPooler>, id: usize, load: Arc<Load>) {
    let (stop, restarted) = (&load.stop, &load.restarted);
    let id_sql = id as i32;
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        let c = match tokio::time::timeout(OP_LIMIT, p.try_connect("rs", "postgres", "")).await {
            Ok(Ok(c)) => c,
            Ok(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(_) => panic!("worker {id}: login hung"),
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            seq += 1;
            // Counted only when the transaction started after the restart.
            let phase_after = restarted.load(Ordering::Relaxed);
            let sql = format!("BEGIN; INSERT INTO load VALUES ({id_sql}, {seq}); COMMIT");
            match tokio::time::timeout(OP_LIMIT, c.batch_execute(&sql)).await {
                Ok(Ok(())) => {
                    if phase_after {
                        load.after[id].fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Err(_)) => break, // reconnect
                Err(_) => panic!("worker {id}: transaction hung"),
            }
        }
    }
}

#[tokio::test]
async fn postgres_restart_under_load() {
    bounded_for(Duration::from_secs(240), async {
        let pg = Arc::new(
            tokio::task::spawn_blocking(PgCluster::dedicated)
                .await
                .unwrap(),
        );
        pg.sql("CREATE DATABASE rs").await;
        pg.direct_client("rs", "postgres")
            .await
            .batch_execute("CREATE TABLE load (client int, seq int)")
            .await
            .unwrap();
        let p = Arc::new(
            PoolerBuilder::new()
                .set("server_connect_timeout", "3")
                .database(
                    "rs",
                    &format!("host=127.0.0.1 port={} dbname=rs pool_size=4", pg.port()),
                )
                .start()
                .await,
        );
        let load = Arc::new(Load {
            stop: AtomicBool::new(false),
            restarted: AtomicBool::new(false),
            after: (0..WORKERS).map(|_| AtomicU64::new(0)).collect(),
        });
        let mut tasks = Vec::new();
        for id in 0..WORKERS {
            tasks.push(tokio::spawn(worker(p.clone(), id, load.clone())));
        }
        // Wait until the load is really running.
        let direct = pg.direct_client("rs", "postgres").await;
        let started = poll(400, Duration::from_millis(50), || async {
            let n: i64 = direct
                .query_one("SELECT count(*) FROM load", &[])
                .await
                .ok()?
                .get(0);
            (n >= 50).then_some(())
        })
        .await;
        assert!(started.is_some(), "no load before the restart");

        let pg2 = pg.clone();
        tokio::task::spawn_blocking(move || pg2.restart())
            .await
            .unwrap();
        load.restarted.store(true, Ordering::Relaxed);

        // A new client through the same pooler runs transactions again.
        let fresh = poll(120, Duration::from_millis(500), || async {
            let c = p.try_connect("rs", "postgres", "").await.ok()?;
            c.batch_execute("BEGIN; INSERT INTO load VALUES (-1, 0); COMMIT")
                .await
                .ok()?;
            Some(c)
        })
        .await
        .expect("no transaction through the pooler after the restart");
        fresh
            .batch_execute("BEGIN; SELECT 1; COMMIT")
            .await
            .unwrap();

        // Every worker commits again (reconnecting where its session died).
        let recovered = poll(240, Duration::from_millis(250), || async {
            load.after
                .iter()
                .all(|n| n.load(Ordering::Relaxed) > 0)
                .then_some(())
        })
        .await;
        load.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("worker panicked (a hang or a bug)");
        }
        assert!(
            recovered.is_some(),
            "some workers never committed after the restart"
        );
    })
    .await
}

/// Failures seen by the clients of `postgres_restart_fails_no_login`.
#[derive(Default)]
struct Seen {
    failed_logins: Vec<String>,
    failed_txns: Vec<String>,
    logins: u64,
    txns_after: u64,
}

/// A PostgreSQL fast restart with server_login_retry at its default (15 s):
/// no login fails, and the only transactions that fail are those in flight
/// when PostgreSQL terminated them (at most one per session that was
/// running one, plus a server that died just as it was taken); clients
/// that arrive while PostgreSQL is down wait and are served once it is
/// back, long before server_login_retry (PgBouncer refuses them with
/// "server login has been failing" for 15 s).
#[tokio::test]
async fn postgres_restart_fails_no_login() {
    bounded_for(Duration::from_secs(240), async {
        let pg = Arc::new(
            tokio::task::spawn_blocking(PgCluster::dedicated)
                .await
                .unwrap(),
        );
        pg.sql("CREATE DATABASE rl").await;
        let p = Arc::new(
            PoolerBuilder::new()
                .database(
                    "rl",
                    &format!("host=127.0.0.1 port={} dbname=rl pool_size=4", pg.port()),
                )
                .start()
                .await,
        );
        let seen = Arc::new(parking_lot::Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let restarted = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for id in 0..WORKERS {
            let (p, seen, stop, restarted) =
                (p.clone(), seen.clone(), stop.clone(), restarted.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = None;
                while !stop.load(Ordering::Relaxed) {
                    let c = match client.take() {
                        Some(c) => c,
                        None => match tokio::time::timeout(
                            OP_LIMIT,
                            p.try_connect("rl", "postgres", ""),
                        )
                        .await
                        .unwrap_or_else(|_| panic!("worker {id}: login hung"))
                        {
                            Ok(c) => {
                                seen.lock().logins += 1;
                                c
                            }
                            Err(e) => {
                                seen.lock().failed_logins.push(format!("worker {id}: {e}"));
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                    };
                    let after = restarted.load(Ordering::Relaxed);
                    match tokio::time::timeout(OP_LIMIT, c.simple_query("SELECT 1"))
                        .await
                        .unwrap_or_else(|_| panic!("worker {id}: transaction hung"))
                    {
                        Ok(_) => {
                            if after {
                                seen.lock().txns_after += 1;
                            }
                            client = Some(c);
                        }
                        // Log in again after a failure.
                        Err(e) => seen.lock().failed_txns.push(format!("worker {id}: {e}")),
                    }
                }
            }));
        }
        // A new client every 50 ms: log in, one query, leave.
        {
            let (p, seen, stop) = (p.clone(), seen.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut arrivals = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (p, seen) = (p.clone(), seen.clone());
                    arrivals.push(tokio::spawn(async move {
                        let c = tokio::time::timeout(OP_LIMIT, p.try_connect("rl", "postgres", ""))
                            .await
                            .expect("arriving login hung");
                        let c = match c {
                            Ok(c) => c,
                            Err(e) => {
                                seen.lock().failed_logins.push(format!("arrival: {e}"));
                                return;
                            }
                        };
                        seen.lock().logins += 1;
                        let r = tokio::time::timeout(OP_LIMIT, c.simple_query("SELECT 1"))
                            .await
                            .expect("arriving query hung");
                        if let Err(e) = r {
                            seen.lock().failed_txns.push(format!("arrival: {e}"));
                        }
                    }));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                for a in arrivals {
                    a.await.expect("an arriving client panicked");
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(seen.lock().logins > 0, "no load before the restart");
        let pg2 = pg.clone();
        tokio::task::spawn_blocking(move || pg2.restart())
            .await
            .unwrap();
        restarted.store(true, Ordering::Relaxed);
        // Well within server_login_retry (15 s): every session is served
        // again and arrivals go on.
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("a client panicked (a hang)");
        }
        let seen = seen.lock();
        assert!(
            seen.failed_logins.is_empty(),
            "logins failed across the restart: {:?}",
            seen.failed_logins
        );
        // In flight when PostgreSQL went down: each worker's one
        // transaction, an arrival's, and a server taken as it died.
        let in_flight_bound = WORKERS + 4;
        assert!(
            seen.failed_txns.len() <= in_flight_bound,
            "{} transactions failed (at most {in_flight_bound} can have been in flight): {:?}",
            seen.failed_txns.len(),
            seen.failed_txns
        );
        assert!(
            seen.txns_after >= 100,
            "only {} transactions after the restart",
            seen.txns_after
        );
    })
    .await
}
