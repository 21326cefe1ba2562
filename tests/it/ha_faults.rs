//! Host lists under faults: a host that is down, one that refuses logins,
//! all hosts down, a standby that falls behind, and a failover under a
//! write load.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{
    PgCluster, PoolerBuilder, bounded_for, db_message, pg::free_port, sqlstate, unique, value,
};
use tokio_postgres::SimpleQueryMessage;

#[tokio::test]
async fn hosts_that_are_down_or_refuse_logins_are_skipped() {
    bounded_for(Duration::from_secs(120), async {
        let good = PgCluster::shared();
        let refusing = PgCluster::dedicated();
        let user = unique("hauser");
        for c in [good, &refusing] {
            c.sql(&format!("CREATE ROLE {user} LOGIN")).await;
        }
        refusing
            .add_hba(&format!("host all {user} 127.0.0.1/32 reject"))
            .await;
        let down = free_port();
        let pooler = PoolerBuilder::new()
            .trust(&user)
            .database(
                "mix",
                &format!(
                    "host=127.0.0.1,127.0.0.1,127.0.0.1 port={down},{},{} dbname=postgres",
                    refusing.port(),
                    good.port()
                ),
            )
            .database(
                "dead",
                &format!(
                    "host=127.0.0.1,127.0.0.1 port={},{} dbname=postgres query_wait_timeout=2",
                    free_port(),
                    free_port()
                ),
            )
            .start()
            .await;
        // Several new connections, each starting at another host: all end
        // on the one that works, and no client sees an error.
        let mut clients = Vec::new();
        for _ in 0..4 {
            let c = pooler.connect("mix", &user, "").await;
            c.simple_query("BEGIN").await.unwrap();
            assert_eq!(
                value(&c, "SELECT inet_server_port()").await,
                good.port().to_string()
            );
            clients.push(c);
        }
        // All hosts down: a clear error giving each host's reason.
        let e = pooler
            .try_connect("dead", "postgres", "")
            .await
            .expect_err("no host is up");
        let msg = db_message(&e).unwrap_or_default();
        assert_eq!(sqlstate(&e).as_deref(), Some("08006"), "{e}");
        assert!(msg.contains("no host could be reached"), "{msg}");
        // Each host by its place in the list: clients are not told where
        // the servers are (as PgBouncer; the log names them).
        assert!(
            msg.contains("host 1: ") && msg.contains("host 2: "),
            "{msg}"
        );
        assert!(!msg.contains("127.0.0.1"), "{msg}");
    })
    .await
}

/// SHOW HOSTS' lag_bytes of the host on `port` of database `db`.
async fn lag_bytes(admin: &tokio_postgres::Client, db: &str, port: u16) -> Option<String> {
    let msgs = admin.simple_query("SHOW HOSTS").await.unwrap();
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r)
            if r.get("database") == Some(db) && r.get("port") == Some(&port.to_string()) =>
        {
            r.get("lag_bytes").map(String::from)
        }
        _ => None,
    })
}

#[tokio::test]
async fn a_standby_that_falls_behind_shows_its_lag() {
    bounded_for(Duration::from_secs(120), async {
        let primary = PgCluster::dedicated();
        let standby = PgCluster::standby_of(&primary);
        let pooler = PoolerBuilder::new()
            .trust("ha_admin")
            .set("admin_users", "ha_admin")
            .set("host_check_period", "0.2")
            .database(
                "app",
                &format!(
                    "host=127.0.0.1,127.0.0.1 port={},{} dbname=postgres target_session_attrs=primary",
                    primary.port(),
                    standby.port()
                ),
            )
            .start()
            .await;
        let admin = pooler.connect("pgbouncer", "ha_admin", "").await;
        let c = pooler.connect("app", "postgres", "").await;
        c.batch_execute("CREATE TABLE t (x text)").await.unwrap();
        let caught_up = || async {
            (lag_bytes(&admin, "app", standby.port()).await.as_deref() == Some("0")).then_some(())
        };
        support::poll(200, Duration::from_millis(50), caught_up)
            .await
            .expect("the standby never showed lag 0");
        let direct = standby.direct_client("postgres", support::pg::SUPERUSER).await;
        direct.simple_query("SELECT pg_wal_replay_pause()").await.unwrap();
        c.batch_execute("INSERT INTO t SELECT repeat('x', 1000) FROM generate_series(1, 1000)")
            .await
            .unwrap();
        let behind = support::poll(200, Duration::from_millis(50), || async {
            let lag = lag_bytes(&admin, "app", standby.port()).await?;
            (lag.parse::<u64>().ok()? > 100_000).then_some(lag)
        })
        .await
        .expect("the lag never showed");
        eprintln!("standby behind by {behind} bytes");
        direct.simple_query("SELECT pg_wal_replay_resume()").await.unwrap();
        support::poll(200, Duration::from_millis(50), caught_up)
            .await
            .expect("the standby never caught up again");
    })
    .await
}

#[tokio::test]
async fn a_failover_under_load_fails_only_what_was_in_flight() {
    bounded_for(Duration::from_secs(180), async {
        let primary = PgCluster::dedicated();
        let standby = PgCluster::standby_of(&primary);
        let pooler = PoolerBuilder::new()
            .database(
                "app",
                &format!(
                    "host=127.0.0.1,127.0.0.1 port={},{} dbname=postgres target_session_attrs=read-write",
                    primary.port(),
                    standby.port()
                ),
            )
            .start()
            .await;
        let c = pooler.connect("app", "postgres", "").await;
        c.batch_execute("CREATE TABLE ledger (id int)").await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let cfg = pooler.config("app", "postgres", "");
                let stop = stop.clone();
                tokio::spawn(async move {
                    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
                    tokio::spawn(conn);
                    let mut done: Vec<(Instant, bool)> = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let r = c
                            .simple_query(&format!("INSERT INTO ledger VALUES ({})", w * 1_000_000 + i))
                            .await;
                        i += 1;
                        if let Err(e) = &r {
                            eprintln!(
                                "writer {w}: started at {:?}, failed after {:?}: {e:?}",
                                started - t0,
                                started.elapsed()
                            );
                        }
                        done.push((Instant::now(), r.is_ok()));
                        if c.is_closed() {
                            // The pooler closed this client: a failure the
                            // assertions below report (and no busy loop).
                            break;
                        }
                        // An error may come back at once: let the test's
                        // clock run.
                        tokio::task::yield_now().await;
                    }
                    done
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        primary.stop_immediate();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        standby.promote();
        let promoted = Instant::now();
        eprintln!("promoted at {:?}", promoted - t0);
        // Long enough for a loaded machine (the whole suite runs at once).
        tokio::time::sleep(Duration::from_millis(3000)).await;
        stop.store(true, Ordering::Relaxed);
        let mut failures = 0;
        let mut first_ok_after = None::<Duration>;
        for w in writers {
            let done = w.await.unwrap();
            failures += done.iter().filter(|(_, ok)| !ok).count();
            // Every writer writes again after the promotion, on the same
            // client connection.
            let after: Vec<&(Instant, bool)> = done.iter().filter(|(t, _)| *t > promoted).collect();
            assert!(after.iter().any(|(_, ok)| *ok), "a writer never wrote again");
            assert!(after.iter().all(|(_, ok)| *ok), "a write failed after the promotion");
            if let Some((t, _)) = after.iter().find(|(_, ok)| *ok) {
                let d = t.saturating_duration_since(promoted);
                first_ok_after = Some(first_ok_after.map_or(d, |f| f.min(d)));
            }
        }
        // At most the one transaction each writer had in flight at the kill.
        assert!(failures <= 4, "{failures} failed transactions");
        eprintln!(
            "failover under load: {failures} failed transactions; first write {:?} after the promotion",
            first_ok_after.unwrap()
        );
    })
    .await
}
