//! sqlx through the pooler in transaction mode, over plaintext and TLS. sqlx prepares every query
//! as a named statement (`sqlx_s_<n>`) and caches it per connection, so
//! with 24 sqlx connections on a pool of 4 server connections every cached
//! statement must follow its client to whichever server it gets next.

use crate::support;

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use support::{PgCluster, bounded_for, transaction_pooler};

const CLIENTS: usize = 24;
const ROUNDS: i64 = 60;

#[tokio::test]
async fn sqlx_prepares_everything_on_a_small_pool() {
    run(false).await
}

/// The same over TLS (pgsluice requires it; sqlx checks its certificate
/// with `verify-full` against the test CA).
#[tokio::test]
async fn sqlx_over_tls() {
    run(true).await
}

async fn run(tls: bool) {
    bounded_for(Duration::from_secs(180), async {
        let (db, p) = if tls {
            let pg = PgCluster::shared();
            let db = support::unique("sqlx_tls");
            pg.create_db(&db).await;
            let b = support::PoolerBuilder::new().pg_database(pg, &db, "pool_size=4");
            (db, support::tls::require_client_tls(b).start().await)
        } else {
            transaction_pooler("sqlx", "pool_size=4").await
        };
        PgCluster::shared()
            .direct_client(&db, "postgres")
            .await
            .batch_execute("CREATE TABLE items (client int, n int8, label text)")
            .await
            .unwrap();
        let opts = PgConnectOptions::new()
            .port(p.addr().port())
            .username("postgres")
            .database(&db);
        let opts = if tls {
            opts.host("localhost")
                .ssl_mode(PgSslMode::VerifyFull)
                .ssl_root_cert(&support::tls::shared().0.ca_file)
        } else {
            opts.host("127.0.0.1")
        };
        let pool = PgPoolOptions::new()
            .min_connections(CLIENTS as u32)
            .max_connections(CLIENTS as u32)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts)
            .await
            .expect("sqlx pool through the pooler");

        let mut tasks = Vec::new();
        for client in 0..CLIENTS as i32 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                // Each task holds one sqlx connection throughout, so its
                // statement cache is exercised across many transactions.
                let mut conn = pool.acquire().await.unwrap();
                for round in 0..ROUNDS {
                    let v: i64 = sqlx::query_scalar("SELECT $1::int8 * 2")
                        .bind(round)
                        .fetch_one(&mut *conn)
                        .await
                        .unwrap();
                    assert_eq!(v, round * 2);
                    let label = format!("c{client} r{round} \u{e9}");
                    sqlx::query("INSERT INTO items VALUES ($1, $2, $3)")
                        .bind(client)
                        .bind(round)
                        .bind(&label)
                        .execute(&mut *conn)
                        .await
                        .unwrap();
                    let row = sqlx::query(
                        "SELECT count(*), max(label) FROM items WHERE client = $1 AND n = $2",
                    )
                    .bind(client)
                    .bind(round)
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                    assert_eq!(row.get::<i64, _>(0), 1);
                    assert_eq!(row.get::<String, _>(1), label);
                }
                // A transaction of prepared statements, rolled back.
                let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
                sqlx::query("DELETE FROM items WHERE client = $1")
                    .bind(client)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let left: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE client = $1")
                    .bind(client)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                assert_eq!(left, 0);
                tx.rollback().await.unwrap();
                // An error does not poison the cached statements.
                let err = sqlx::query("SELECT 1 / $1::int")
                    .bind(0)
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap_err();
                let code = err.as_database_error().and_then(|e| e.code());
                assert_eq!(code.as_deref(), Some("22012"));
                let mine: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE client = $1")
                    .bind(client)
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                assert_eq!(mine, ROUNDS);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(total, CLIENTS as i64 * ROUNDS);
        pool.close().await;
    })
    .await
}
