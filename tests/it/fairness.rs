//! Fairness under 20x oversubscription: 100 clients share a transaction
//! pool of 5 for 10 s, each running short transactions that hold their
//! server for a little while (a sleep inside the transaction). Waiting
//! clients are served in turn, so every client gets its share: no client
//! starves and none falls far behind the mean. This is a distribution
//! assertion, not a speed one.

use crate::support;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use tokio_postgres::types::Type;

use support::{PgCluster, PoolerBuilder, bounded_for, unique};

const CLIENTS: usize = 100;
const POOL_SIZE: usize = 5;
const RUN: Duration = Duration::from_secs(10);
/// Time a transaction holds its server beyond its statements.
const HOLD: Duration = Duration::from_millis(2);
/// Upper bound for one transaction (waiting included): a hang fails.
const OP_LIMIT: Duration = Duration::from_secs(30);

/// Transactions committed by one client until the shared deadline.
async fn client_loop(
    mut c: tokio_postgres::Client,
    id: i32,
    start: Arc<Barrier>,
    deadline: Arc<OnceLock<Instant>>,
) -> u64 {
    start.wait().await;
    let deadline = *deadline.get_or_init(|| Instant::now() + RUN);
    let mut done = 0;
    while Instant::now() < deadline {
        let tx = async {
            let tx = c.transaction().await?;
            tx.execute_typed(
                "UPDATE fair SET n = n + 1 WHERE id = $1",
                &[(&id, Type::INT4)],
            )
            .await?;
            tokio::time::sleep(HOLD).await;
            tx.commit().await
        };
        match tokio::time::timeout(OP_LIMIT, tx).await {
            Ok(Ok(())) => done += 1,
            Ok(Err(e)) => panic!("client {id}: {e:?}"),
            Err(_) => panic!("client {id}: transaction hung"),
        }
    }
    done
}

#[tokio::test]
async fn oversubscribed_pool_serves_every_client_its_share() {
    bounded_for(Duration::from_secs(90), async {
        let pg = PgCluster::shared();
        let db = unique("fair_db");
        pg.create_db(&db).await;
        let direct = pg.direct_client(&db, "postgres").await;
        direct
            .batch_execute(&format!(
                "CREATE TABLE fair (id int PRIMARY KEY, n bigint NOT NULL);
                 INSERT INTO fair SELECT g, 0 FROM generate_series(0, {}) g;",
                CLIENTS - 1
            ))
            .await
            .unwrap();
        let pooler = PoolerBuilder::new()
            .set("max_client_conn", &(CLIENTS + 10).to_string())
            .set("log_connections", "0")
            .set("log_disconnections", "0")
            .pg_database(pg, &db, &format!("pool_size={POOL_SIZE}"))
            .start()
            .await;
        let start = Arc::new(Barrier::new(CLIENTS));
        let deadline = Arc::new(OnceLock::new());
        let mut tasks = Vec::new();
        for id in 0..CLIENTS {
            let c = pooler.connect(&db, "postgres", "").await;
            let (start, deadline) = (start.clone(), deadline.clone());
            tasks.push(tokio::spawn(client_loop(c, id as i32, start, deadline)));
        }
        let mut counts = Vec::new();
        for t in tasks {
            counts.push(t.await.expect("client failed"));
        }
        let total: u64 = counts.iter().sum();
        let mean = total as f64 / CLIENTS as f64;
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        eprintln!(
            "fairness: {total} transactions; per client min {min}, mean {mean:.1}, max {max}"
        );
        assert!(min >= 1, "a client starved: {counts:?}");
        assert!(
            min as f64 >= mean / 5.0,
            "min {min} < mean {mean:.1} / 5: {counts:?}"
        );
        // What the clients counted is what the database holds.
        let rows = direct
            .query("SELECT id, n FROM fair ORDER BY id", &[])
            .await
            .unwrap();
        for row in rows {
            let (id, n): (i32, i64) = (row.get(0), row.get(1));
            assert_eq!(n as u64, counts[id as usize], "client {id}");
        }
    })
    .await
}
