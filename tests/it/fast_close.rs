//! server_fast_close in session mode: after RECONNECT, a session holding
//! a server is closed at its next transaction boundary (at once when it
//! is between transactions), its server with it, instead of at its end.

use crate::support;

use std::time::Duration;

use support::{PgCluster, PoolerBuilder, bounded, unique, wire};

#[tokio::test]
async fn reconnect_closes_session_mode_servers_between_transactions() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("fastclose");
        pg.create_db(&db).await;
        let p = PoolerBuilder::new()
            .set("pool_mode", "session")
            .set("admin_users", "postgres")
            .pg_database(pg, &db, "pool_size=4")
            .start()
            .await;
        let admin = p.connect("pgbouncer", "postgres", "").await;
        let login = |p: &support::TestPooler| {
            let addr = p.addr();
            let db = db.clone();
            async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                wire::login_trust(&mut s, "postgres", &db).await;
                s
            }
        };
        let mut idle = login(&p).await;
        wire::simple_query(&mut idle, "SELECT 1").await.unwrap();
        let mut busy = login(&p).await;
        wire::simple_query(&mut busy, "BEGIN").await.unwrap();

        // Off (the default): RECONNECT leaves session-mode clients alone.
        admin
            .simple_query(&format!("RECONNECT {db}"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            wire::simple_query(&mut idle, "SELECT 2").await.unwrap(),
            vec![Some("2".to_string())]
        );

        admin
            .simple_query("SET server_fast_close = 1")
            .await
            .unwrap();
        admin
            .simple_query(&format!("RECONNECT {db}"))
            .await
            .unwrap();
        // Between transactions: closed at once, with PgBouncer's words.
        let msgs = wire::read_to_close(&mut idle).await.unwrap();
        let err = msgs.iter().find(|m| m.tag == b'E').expect("a FATAL error");
        assert_eq!(err.sqlstate(), "57P01", "{msgs:?}");
        assert_eq!(err.message(), "database configuration changed");
        // In a transaction: it finishes it first.
        assert_eq!(
            wire::simple_query(&mut busy, "SELECT 3").await.unwrap(),
            vec![Some("3".to_string())]
        );
        wire::send(&mut busy, &wire::query("COMMIT")).await.unwrap();
        let msgs = wire::read_to_close(&mut busy).await.unwrap();
        assert!(
            msgs.iter().any(|m| m.tag == b'C'),
            "COMMIT answered: {msgs:?}"
        );
        let err = msgs.iter().find(|m| m.tag == b'E').expect("a FATAL error");
        assert_eq!(err.message(), "database configuration changed");
        // New sessions are served.
        let mut again = login(&p).await;
        assert_eq!(
            wire::simple_query(&mut again, "SELECT 4").await.unwrap(),
            vec![Some("4".to_string())]
        );
    })
    .await
}
