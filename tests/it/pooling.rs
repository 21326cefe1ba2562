//! Pooling: many clients over few servers without lost, duplicated or
//! misrouted work; one backend per transaction; session mode; a client killed
//! inside a transaction leaves nothing behind.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use support::{
    PgCluster, PoolerBuilder, bounded, bounded_for, poll, rows_col0 as col0, unique, value as one,
    wire,
};

/// Number of backends PostgreSQL has for (db, user), seen directly.
async fn backends(direct: &tokio_postgres::Client, db: &str, user: &str) -> i64 {
    direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
            &[&db, &user],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn two_hundred_clients_through_five_servers() {
    const CLIENTS: i32 = 200;
    const XACTS: i32 = 5;
    bounded_for(Duration::from_secs(300), async {
        let pg = PgCluster::shared();
        let db = unique("many_db");
        let user = unique("many_user");
        pg.create_db(&db).await;
        pg.create_trusted_role(&user).await;
        let direct = pg.direct_client(&db, "postgres").await;
        direct
            .batch_execute(
                "CREATE TABLE work (client int, seq int, pid int, inside_pid int);\
                 GRANT ALL ON work TO PUBLIC",
            )
            .await
            .unwrap();
        let pooler = Arc::new(
            PoolerBuilder::new()
                .set("max_client_conn", "300")
                .set("default_pool_size", "20")
                .trust(&user)
                .pg_database(pg, &db, "pool_size=5")
                .start()
                .await,
        );

        // Watch PostgreSQL's side while the clients run.
        let done = Arc::new(AtomicBool::new(false));
        let max_seen = Arc::new(AtomicI64::new(0));
        let watcher = {
            let (done, max_seen) = (done.clone(), max_seen.clone());
            let (db, user) = (db.clone(), user.clone());
            let watch = pg.direct_client("postgres", "postgres").await;
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let n = backends(&watch, &db, &user).await;
                    max_seen.fetch_max(n, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };

        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let pooler = pooler.clone();
            let (db, user) = (db.clone(), user.clone());
            tasks.push(tokio::spawn(async move {
                let c = pooler.connect(&db, &user, "").await;
                for seq in 0..XACTS {
                    c.simple_query("BEGIN").await.unwrap();
                    let pid = one(&c, "SELECT pg_backend_pid()").await;
                    let back = one(
                        &c,
                        &format!(
                            "INSERT INTO work VALUES ({client}, {seq}, pg_backend_pid(), {pid}) \
                             RETURNING client || '/' || seq"
                        ),
                    )
                    .await;
                    // An answer meant for another client would show here.
                    assert_eq!(back, format!("{client}/{seq}"));
                    assert_eq!(one(&c, "SELECT pg_backend_pid()").await, pid);
                    c.simple_query("COMMIT").await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
        done.store(true, Ordering::Relaxed);
        watcher.await.unwrap();

        let rows = direct
            .query(
                "SELECT client, seq, count(*), bool_and(pid = inside_pid) \
                 FROM work GROUP BY client, seq ORDER BY client, seq",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), (CLIENTS * XACTS) as usize, "lost transactions");
        let mut expected = (0..CLIENTS).flat_map(|c| (0..XACTS).map(move |s| (c, s)));
        for r in &rows {
            let key = (r.get::<_, i32>(0), r.get::<_, i32>(1));
            assert_eq!(Some(key), expected.next(), "unexpected row");
            assert_eq!(r.get::<_, i64>(2), 1, "duplicated row {key:?}");
            assert!(
                r.get::<_, bool>(3),
                "transaction {key:?} ran on two backends"
            );
        }
        let max = max_seen.load(Ordering::Relaxed);
        assert!(
            max <= 5,
            "PostgreSQL saw {max} server connections for a pool of 5"
        );
        assert!(max >= 1, "the watcher never saw a server connection");
        let pids = direct
            .query_one("SELECT count(DISTINCT pid) FROM work", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert!(pids <= 5, "{pids} distinct backends served the pool of 5");
    })
    .await
}

#[tokio::test]
async fn backend_is_stable_inside_a_transaction() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("stable_db");
        pg.create_db(&db).await;
        let pooler = Arc::new(
            PoolerBuilder::new()
                .pg_database(pg, &db, "pool_size=2")
                .start()
                .await,
        );
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let pooler = pooler.clone();
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let c = pooler.connect(&db, "postgres", "").await;
                for _ in 0..10 {
                    // One simple-query message with several statements, then
                    // more messages, all inside one transaction.
                    let first = col0(
                        &c.simple_query("BEGIN; SELECT pg_backend_pid(); SELECT 1")
                            .await
                            .unwrap(),
                    )[0]
                    .clone();
                    for _ in 0..3 {
                        assert_eq!(one(&c, "SELECT pg_backend_pid()").await, first);
                    }
                    // Still the same transaction: its xid is unchanged.
                    let xid = one(&c, "SELECT txid_current()").await;
                    tokio::task::yield_now().await;
                    assert_eq!(one(&c, "SELECT txid_current()").await, xid);
                    assert_eq!(one(&c, "SELECT pg_backend_pid()").await, first);
                    c.simple_query("COMMIT").await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn session_mode_keeps_one_backend() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("session_db");
        pg.create_db(&db).await;
        let pooler = Arc::new(
            PoolerBuilder::new()
                .set("pool_mode", "session")
                .pg_database(pg, &db, "pool_size=3")
                .start()
                .await,
        );
        let mut tasks = Vec::new();
        // All three stay connected until each has run its transactions, so
        // they are concurrent (a client that left may hand its backend on).
        let all_done = std::sync::Arc::new(tokio::sync::Barrier::new(3));
        for i in 0..3 {
            let pooler = pooler.clone();
            let db = db.clone();
            let all_done = all_done.clone();
            tasks.push(tokio::spawn(async move {
                let c = pooler.connect(&db, "postgres", "").await;
                let pid = one(&c, "SELECT pg_backend_pid()").await;
                // Session state survives transactions only in session mode.
                c.batch_execute(&format!("CREATE TEMP TABLE mine AS SELECT {i} AS v"))
                    .await
                    .unwrap();
                for _ in 0..10 {
                    c.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
                    assert_eq!(one(&c, "SELECT pg_backend_pid()").await, pid);
                    tokio::task::yield_now().await;
                }
                assert_eq!(one(&c, "SELECT v FROM mine").await, i.to_string());
                all_done.wait().await;
                pid
            }));
        }
        let mut pids = Vec::new();
        for t in tasks {
            pids.push(t.await.unwrap());
        }
        pids.sort();
        pids.dedup();
        assert_eq!(pids.len(), 3, "concurrent session clients shared a backend");
    })
    .await
}

#[tokio::test]
async fn killed_client_leaves_no_transaction_or_lock() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("kill_db");
        pg.create_db(&db).await;
        let direct = pg.direct_client(&db, "postgres").await;
        direct
            .batch_execute(
                "CREATE TABLE locked (id int PRIMARY KEY); INSERT INTO locked VALUES (1)",
            )
            .await
            .unwrap();
        let pooler = PoolerBuilder::new()
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;

        let mut victim = pooler.raw_connect().await;
        wire::login_trust(&mut victim, "postgres", &db).await;
        wire::simple_query(&mut victim, "BEGIN").await.unwrap();
        wire::simple_query(&mut victim, "SELECT id FROM locked WHERE id = 1 FOR UPDATE")
            .await
            .unwrap();
        // The lock is really held by a backend in a transaction.
        let held = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND state = 'idle in transaction'",
                &[&db],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(held, 1);
        drop(victim); // the client dies without Terminate

        let clean = poll(200, Duration::from_millis(50), || async {
            let row = direct
                .query_one(
                    "SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%'), \
                     (SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                      WHERE c.relname = 'locked' AND l.pid <> pg_backend_pid()) \
                     FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&db],
                )
                .await
                .unwrap();
            (row.get::<_, i64>(0) == 0 && row.get::<_, i64>(1) == 0).then_some(())
        })
        .await;
        assert!(
            clean.is_some(),
            "an open transaction or a lock survived the killed client"
        );

        // Through the same pool (size 1), another client gets the row lock
        // at once, in a transaction of its own.
        let c = pooler.connect(&db, "postgres", "").await;
        c.batch_execute("BEGIN").await.unwrap();
        let mine = one(&c, "SELECT txid_current_if_assigned() IS NULL").await;
        assert_eq!(mine, "t", "the new transaction inherited an old one");
        c.batch_execute("SELECT id FROM locked WHERE id = 1 FOR UPDATE NOWAIT")
            .await
            .expect("row lock still held");
        c.batch_execute("COMMIT").await.unwrap();
    })
    .await
}
