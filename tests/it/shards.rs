//! Several shards (one runtime per thread, as the binary runs): clients
//! accepted on different threads share one pool, servers move to the
//! thread of the client that takes them, transactions keep their server,
//! and parked clients wake up on any shard.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::{bounded, poll, value as one};

async fn sharded_pooler(prefix: &str, pool: &str) -> (String, support::TestPooler) {
    support::transaction_pooler_sharded(prefix, pool, 3).await
}

/// Times servers of every pool moved between shards.
fn moved(pooler: &support::TestPooler) -> u64 {
    let ctx = pooler.pooler().context();
    ctx.pools.all().iter().map(|p| p.events.moved_total()).sum()
}

/// One client's work: simple and extended queries and a transaction that
/// must keep its server from BEGIN to COMMIT.
async fn work(c: &tokio_postgres::Client, who: i32, round: i32) {
    let n = who * 1000 + round;
    assert_eq!(one(c, &format!("SELECT {n}")).await, n.to_string());
    let row = c.query_one("SELECT $1::int4 + 1", &[&n]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), n + 1);
    c.simple_query("BEGIN").await.unwrap();
    let pid = one(c, "SELECT pg_backend_pid()").await;
    tokio::task::yield_now().await;
    assert_eq!(one(c, "SELECT pg_backend_pid()").await, pid);
    c.simple_query("COMMIT").await.unwrap();
}

#[tokio::test]
async fn clients_on_every_shard_share_one_small_pool() {
    bounded(async {
        let (db, pooler) = sharded_pooler("shards_db", "pool_size=2").await;
        let mut clients = Vec::new();
        for i in 0..12 {
            clients.push(Arc::new(pooler.connect(&db, "postgres", "").await));
            if i % 3 == 0 {
                let cfg = pooler.unix_config(&db, "postgres");
                let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                clients.push(Arc::new(c));
            }
        }
        // Rounds until a server has been taken by a client of another
        // shard (the kernel spreads the 16 connections over the shards).
        let mut round = 0;
        while round < 5 || moved(&pooler) == 0 {
            assert!(round < 40, "no server ever moved between shards");
            let mut tasks = Vec::new();
            for (who, c) in clients.iter().enumerate() {
                let c = c.clone();
                tasks.push(tokio::spawn(
                    async move { work(&c, who as i32, round).await },
                ));
            }
            for t in tasks {
                t.await.unwrap();
            }
            round += 1;
        }
        // The pool never went past its size, and all servers are idle again
        // once the clients' last messages (tokio-postgres closes its
        // statements in the background) are answered.
        let ctx = pooler.pooler().context().clone();
        let pools = ctx.pools.all();
        let pool = pools.iter().find(|p| p.database() == db).unwrap().clone();
        let settled = poll(200, Duration::from_millis(25), || {
            let f = pool.figures();
            async move { (f.active == 0 && f.waiting == 0).then_some(f) }
        })
        .await;
        let f = settled.unwrap_or_else(|| panic!("servers still busy: {:?}", pool.figures()));
        let total = f.active + f.idle + f.used + f.login;
        assert!(total <= 2, "pool grew past pool_size: {f:?}");
        assert_eq!(support::backends(&db, None).await, total as i64);
    })
    .await
}

#[tokio::test]
async fn parked_clients_wake_up_on_any_shard() {
    bounded(async {
        let (db, pooler) = sharded_pooler("shards_park_db", "pool_size=1").await;
        let mut clients = Vec::new();
        for i in 0..6 {
            let c = pooler.connect(&db, "postgres", "").await;
            assert_eq!(one(&c, &format!("SELECT {i}")).await, i.to_string());
            clients.push(c);
        }
        let ctx = pooler.pooler().context().clone();
        for cycle in 0..2 {
            let parked = poll(200, Duration::from_millis(50), || {
                let ctx = ctx.clone();
                async move { (ctx.registry.counts() == (6, 6)).then_some(()) }
            })
            .await;
            assert!(
                parked.is_some(),
                "clients never parked: {:?}",
                ctx.registry.counts()
            );
            for (i, c) in clients.iter().enumerate() {
                let v = cycle * 100 + i;
                assert_eq!(one(c, &format!("SELECT {v}")).await, v.to_string());
            }
        }
    })
    .await
}
