//! Cancel requests: a CancelRequest carrying the pooler's key for a client
//! reaches the server that client is linked to; other clients are unaffected.

mod support;

use std::time::Duration;

use support::{PgCluster, bounded, sqlstate, value as one};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_linked_server_only() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("cancel_db", "pool_size=2").await;
        let victim = pooler.connect(&db, "postgres", "").await;
        let bystander = pooler.connect(&db, "postgres", "").await;
        let token = victim.cancel_token();
        let sleeper = tokio::spawn(async move { victim.simple_query("SELECT pg_sleep(60)").await });
        // Wait until the sleep runs on a server, then cancel it through the pooler.
        let direct = PgCluster::shared().direct_client(&db, "postgres").await;
        let mut running = false;
        for _ in 0..200 {
            let n = one(
                &direct,
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'",
            )
            .await;
            if n == "1" {
                running = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(running, "the query never started");
        assert_eq!(one(&bystander, "SELECT 7").await, "7");
        token.cancel_query(tokio_postgres::NoTls).await.expect("send cancel");
        let err = tokio::time::timeout(Duration::from_secs(20), sleeper)
            .await
            .expect("cancel did not stop the query")
            .unwrap()
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
        // The bystander's session was not touched.
        assert_eq!(one(&bystander, "SELECT 8").await, "8");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_for_an_idle_client_is_ignored() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("cancel_idle_db", "pool_size=1").await;
        let idle = pooler.connect(&db, "postgres", "").await;
        let busy = pooler.connect(&db, "postgres", "").await;
        assert_eq!(one(&idle, "SELECT 1").await, "1");
        // busy now holds the only server in a transaction; cancelling the
        // idle client must not cancel busy's work.
        busy.simple_query("BEGIN").await.unwrap();
        idle.cancel_token()
            .cancel_query(tokio_postgres::NoTls)
            .await
            .unwrap();
        let r = busy.simple_query("SELECT pg_sleep(0.3)").await;
        assert!(r.is_ok(), "{r:?}");
        busy.simple_query("COMMIT").await.unwrap();
    })
    .await
}
