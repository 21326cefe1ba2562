//! LISTEN in transaction mode gets a warning notice (it cannot work: the
//! next transaction may run on another server); in session mode it works
//! and gets none. NOTIFY through the pooler reaches listeners.

use crate::support;

use std::time::Duration;

use support::{PgCluster, PoolerBuilder, bounded, fresh_dbs, wire};

/// The NoticeResponses a query got, as (code, message).
async fn notices(p: &support::TestPooler, db: &str, sql: &str) -> Vec<(String, String)> {
    let mut s = p.raw_connect().await;
    wire::login_trust(&mut s, "postgres", db).await;
    wire::send(&mut s, &wire::query(sql)).await.unwrap();
    let msgs = wire::read_until_ready(&mut s).await.unwrap();
    assert!(msgs.iter().all(|m| m.tag != b'E'), "{msgs:?}");
    msgs.iter()
        .filter(|m| m.tag == b'N')
        .map(|m| {
            let f = m.fields();
            (f[&b'C'].clone(), f[&b'M'].clone())
        })
        .collect()
}

#[tokio::test]
async fn listen_warns_in_transaction_mode_only() {
    bounded(async {
        let [tx, sess] = fresh_dbs(["listen_tx", "listen_sess"]).await;
        let pg = PgCluster::shared();
        let p = PoolerBuilder::new()
            .pg_database(pg, &tx, "pool_mode=transaction")
            .pg_database(pg, &sess, "pool_mode=session")
            .start()
            .await;
        let got = notices(&p, &tx, "LISTEN jobs").await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "0A000");
        assert!(got[0].1.contains("transaction pooling"), "{got:?}");
        assert!(notices(&p, &tx, "SELECT 'LISTEN'").await.is_empty());
        assert!(notices(&p, &sess, "LISTEN jobs").await.is_empty());
    })
    .await
}

#[tokio::test]
async fn notify_through_the_pooler_reaches_a_listener() {
    bounded(async {
        let [db] = fresh_dbs(["notify"]).await;
        let pg = PgCluster::shared();
        let p = PoolerBuilder::new().pg_database(pg, &db, "").start().await;
        // A listener connected directly (LISTEN needs a session).
        let mut l = tokio::net::TcpStream::connect(("127.0.0.1", pg.port()))
            .await
            .unwrap();
        wire::login_trust(&mut l, "postgres", &db).await;
        wire::simple_query(&mut l, "LISTEN jobs").await.unwrap();
        let c = p.connect(&db, "postgres", "").await;
        c.batch_execute("NOTIFY jobs, 'from the pool'")
            .await
            .unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let m = wire::read_msg(&mut l).await.unwrap().expect("a message");
                if m.tag == b'A' {
                    return m;
                }
            }
        })
        .await
        .expect("no notification");
        assert!(String::from_utf8_lossy(&msg.body).contains("from the pool"));
    })
    .await
}
