//! A real driver (tokio-postgres) through the pooler with the extended query
//! protocol: unnamed statements (`query_typed`), statements inside
//! transactions, pipelining, text and binary values, NULLs, large values.
//!
//! Named prepared statements moving between servers: tests/it/prepared.rs,
//! tests/it/sqlx_driver.rs and tests/it/driver_scripts.rs.

use crate::support;

use std::sync::Arc;

use tokio_postgres::types::Type;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded, unique};

async fn setup(pool_size: u32) -> (Arc<TestPooler>, String) {
    let pg = PgCluster::shared();
    let db = unique("drv_db");
    pg.create_db(&db).await;
    let direct = pg.direct_client(&db, "postgres").await;
    direct
        .batch_execute(
            "CREATE TABLE kv (k int PRIMARY KEY, t text, b bytea, f float8, ts timestamptz)",
        )
        .await
        .unwrap();
    let pooler = PoolerBuilder::new()
        .pg_database(pg, &db, &format!("pool_size={pool_size}"))
        .start()
        .await;
    (Arc::new(pooler), db)
}

#[tokio::test]
async fn query_typed_params_and_nulls() {
    bounded(async {
        let (pooler, db) = setup(2).await;
        let c = pooler.connect(&db, "postgres", "").await;
        let bytes: Vec<u8> = (0..=255u8).collect();
        let n = c
            .query_typed(
                "INSERT INTO kv (k, t, b, f) VALUES ($1, $2, $3, $4)",
                &[
                    (&1i32, Type::INT4),
                    (&"h\u{e9}llo 'q' \\ \u{1F600}", Type::TEXT),
                    (&bytes, Type::BYTEA),
                    (&1.5f64, Type::FLOAT8),
                ],
            )
            .await
            .unwrap();
        assert!(n.is_empty());
        let none: Option<&str> = None;
        c.query_typed(
            "INSERT INTO kv (k, t) VALUES ($1, $2)",
            &[(&2i32, Type::INT4), (&none, Type::TEXT)],
        )
        .await
        .unwrap();

        let rows = c
            .query_typed(
                "SELECT k, t, b, f, ts FROM kv WHERE k = ANY($1) ORDER BY k",
                &[(&vec![1i32, 2], Type::INT4_ARRAY)],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get::<_, &str>(1), "h\u{e9}llo 'q' \\ \u{1F600}");
        assert_eq!(rows[0].get::<_, Vec<u8>>(2), bytes);
        assert_eq!(rows[0].get::<_, f64>(3), 1.5);
        assert_eq!(rows[1].get::<_, Option<&str>>(1), None);
        assert_eq!(rows[1].get::<_, Option<Vec<u8>>>(2), None);
        assert_eq!(rows[1].get::<_, Option<f64>>(4 - 1), None);

        // An error in one statement does not disturb the next one.
        let err = c
            .query_typed("SELECT 1 / $1", &[(&0i32, Type::INT4)])
            .await
            .unwrap_err();
        assert_eq!(err.code().unwrap().code(), "22012");
        let row = c
            .query_typed("SELECT $1::int + 1", &[(&41i32, Type::INT4)])
            .await
            .unwrap();
        assert_eq!(row[0].get::<_, i32>(0), 42);
    })
    .await
}

#[tokio::test]
async fn large_value_round_trip() {
    bounded(async {
        let (pooler, db) = setup(1).await;
        let c = pooler.connect(&db, "postgres", "").await;
        let big: String = (0..1_048_576)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        c.query_typed(
            "INSERT INTO kv (k, t) VALUES ($1, $2)",
            &[(&7i32, Type::INT4), (&big.as_str(), Type::TEXT)],
        )
        .await
        .unwrap();
        let rows = c
            .query_typed(
                "SELECT t, length(t) FROM kv WHERE k = $1",
                &[(&7i32, Type::INT4)],
            )
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i32>(1), 1_048_576);
        assert!(
            rows[0].get::<_, &str>(0) == big,
            "1 MB value changed on the way"
        );
        // Binary, in both directions: 1 MB of bytea.
        let blob: Vec<u8> = (0..1_048_576u32).map(|i| (i * 7 % 251) as u8).collect();
        let rows = c
            .query_typed("SELECT $1::bytea", &[(&blob, Type::BYTEA)])
            .await
            .unwrap();
        assert!(
            rows[0].get::<_, Vec<u8>>(0) == blob,
            "1 MB bytea changed on the way"
        );
    })
    .await
}

#[tokio::test]
async fn statements_inside_a_transaction() {
    bounded(async {
        let (pooler, db) = setup(2).await;
        let mut c = pooler.connect(&db, "postgres", "").await;
        // Other clients keep the pool busy, so that a server released too
        // early would be taken by one of them.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut noise = Vec::new();
        for _ in 0..3 {
            let other = pooler.connect(&db, "postgres", "").await;
            let stop = stop.clone();
            noise.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    other
                        .query_typed("SELECT pg_sleep(0.001)", &[])
                        .await
                        .unwrap();
                }
            }));
        }
        // Named statements are fine inside one transaction: the server stays
        // linked from BEGIN to COMMIT.
        let tx = c.transaction().await.unwrap();
        let pid: i32 = tx
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let stmt = tx
            .prepare("INSERT INTO kv (k, t) VALUES ($1, $2)")
            .await
            .unwrap();
        for k in 100..110i32 {
            tx.execute(&stmt, &[&k, &format!("v{k}")]).await.unwrap();
        }
        let again: i32 = tx
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(pid, again);
        drop(stmt);
        tx.commit().await.unwrap();

        // A rolled-back transaction leaves nothing.
        let tx = c.transaction().await.unwrap();
        tx.query_typed("INSERT INTO kv (k) VALUES ($1)", &[(&200i32, Type::INT4)])
            .await
            .unwrap();
        tx.rollback().await.unwrap();

        let rows = c
            .query_typed(
                "SELECT count(*) FROM kv WHERE k >= $1",
                &[(&100i32, Type::INT4)],
            )
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 10);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in noise {
            t.await.unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn pipelined_queries() {
    bounded(async {
        let (pooler, db) = setup(2).await;
        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(pooler.connect(&db, "postgres", "").await);
        }
        // Several clients, each with 50 queries in flight at once: every
        // answer must match its own question.
        let mut tasks = Vec::new();
        for (i, c) in clients.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let futs = (0..50i32).map(|j| {
                    let c = &c;
                    async move {
                        let v = (i as i32) * 1000 + j;
                        let rows = c
                            .query_typed(
                                "SELECT $1::int * 2, $2::text",
                                &[(&v, Type::INT4), (&format!("q{v}"), Type::TEXT)],
                            )
                            .await
                            .unwrap();
                        assert_eq!(rows[0].get::<_, i32>(0), v * 2);
                        assert_eq!(rows[0].get::<_, &str>(1), format!("q{v}"));
                    }
                });
                futures_join_all(futs).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
}

/// Poll all futures together (no `futures` crate needed): every query is
/// sent before the first answer is read, so they travel as one pipeline.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    std::future::poll_fn(move |cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
