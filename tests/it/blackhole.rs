//! Peers that vanish without a word: nftables drops every packet of a
//! connection (`support::nft`), so no FIN or RST ever comes. PgBouncer's
//! TCP keys, on both legs, are what finds them dead: `tcp_keepalive` with
//! `tcp_keepidle`/`tcp_keepintvl`/`tcp_keepcnt` for a connection that
//! waits, `tcp_user_timeout` for one whose data goes unacknowledged. With
//! the kernel's defaults each case below would hang for hours (keepalive
//! after 7200 s) or about 15 minutes (retransmissions).

use std::time::{Duration, Instant};

use crate::support::{self, PgCluster, PoolerBuilder, TestPooler, nft::Blackhole, wire};

/// How long detection may take here: the settings below find a dead
/// peer in 2-4 s; the kernel's defaults would take hours.
const FOUND_WITHIN: Duration = Duration::from_secs(25);

/// Keepalive that finds a dead peer in about 3 s (idle 1 s, 2 probes 1 s
/// apart).
fn fast_keepalive(b: PoolerBuilder) -> PoolerBuilder {
    b.set("tcp_keepalive", "1")
        .set("tcp_keepidle", "1")
        .set("tcp_keepintvl", "1")
        .set("tcp_keepcnt", "2")
}

/// A cluster of its own (its port is black-holed), a pooler in front of
/// it as `b` makes it, and a client whose server is pooled.
async fn dedicated(b: PoolerBuilder) -> (PgCluster, TestPooler, tokio_postgres::Client) {
    let pg = tokio::task::spawn_blocking(PgCluster::dedicated)
        .await
        .unwrap();
    let p = b
        .database(
            "bh",
            &format!("host=127.0.0.1 port={} dbname=postgres", pg.port()),
        )
        .start()
        .await;
    let c = p.connect("bh", "postgres", "").await;
    c.simple_query("SELECT 1").await.unwrap();
    (pg, p, c)
}

#[tokio::test]
async fn keepalive_finds_a_server_that_vanished_mid_query() {
    support::bounded_for(Duration::from_secs(120), async {
        let (pg, p, c) = dedicated(fast_keepalive(PoolerBuilder::new())).await;
        let long = tokio::spawn(async move {
            let r = c.simple_query("SELECT pg_sleep(600)").await;
            (r.map(|_| ()), Instant::now())
        });
        // The query is on the wire and acknowledged; then the server's
        // host "vanishes".
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hole = Blackhole::port(pg.port());
        let since = Instant::now();
        let (r, at) = long.await.unwrap();
        let e = r.expect_err("the server vanished: the query cannot have finished");
        assert!(
            at - since < FOUND_WITHIN,
            "found after {:?}: keepalive settings ignored",
            at - since
        );
        assert!(
            support::sqlstate(&e).is_some(),
            "not a PostgreSQL error: {e:?}"
        );
        // The network back: the pool serves again, on a new server.
        drop(hole);
        let fresh = p.connect("bh", "postgres", "").await;
        fresh.simple_query("SELECT 1").await.unwrap();
    })
    .await
}

#[tokio::test]
async fn tcp_user_timeout_finds_a_server_that_stopped_acknowledging() {
    support::bounded_for(Duration::from_secs(120), async {
        let b = PoolerBuilder::new()
            .set("tcp_keepalive", "0")
            .set("tcp_user_timeout", "1500")
            .set("query_wait_timeout", "5");
        let (pg, p, c) = dedicated(b).await;
        // The pooled server's host vanishes while the server is idle; the
        // next query goes out to it and is never acknowledged.
        let hole = Blackhole::port(pg.port());
        let since = Instant::now();
        let e = c
            .simple_query("SELECT 1")
            .await
            .expect_err("the server vanished");
        assert!(
            since.elapsed() < FOUND_WITHIN,
            "found after {:?}: tcp_user_timeout ignored",
            since.elapsed()
        );
        assert!(
            support::sqlstate(&e).is_some(),
            "not a PostgreSQL error: {e:?}"
        );
        drop(hole);
        let fresh = p.connect("bh", "postgres", "").await;
        fresh.simple_query("SELECT 1").await.unwrap();
    })
    .await
}

/// A client whose host vanishes in the middle of a transaction: keepalive
/// on the client leg finds it dead, and the server it held goes back to
/// the pool for the next client (pool_size = 1).
#[tokio::test]
async fn a_client_that_vanished_mid_transaction_frees_its_server() {
    support::bounded_for(Duration::from_secs(120), async {
        let pg = PgCluster::shared();
        let [db] = support::fresh_dbs(["bh_client"]).await;
        let p = fast_keepalive(PoolerBuilder::new())
            .set("query_wait_timeout", "60")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let mut gone = p.raw_connect().await;
        let gone_port = gone.local_addr().unwrap().port();
        wire::login_trust(&mut gone, "postgres", &db).await;
        wire::simple_query(&mut gone, "BEGIN").await.expect("BEGIN");
        // It holds the only server, in a transaction; then it vanishes.
        // Not before its kernel acknowledged the answer (a delayed ACK
        // comes within 40 ms): with data unacknowledged the kernel
        // retransmits instead of probing, and keepalive is not what runs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hole = Blackhole::port(gone_port);
        let since = Instant::now();
        let next = p.connect(&db, "postgres", "").await;
        let rows = next.simple_query("SELECT 1").await.unwrap();
        assert_eq!(support::rows_col0(&rows), ["1"]);
        assert!(
            since.elapsed() < FOUND_WITHIN,
            "the server was held {:?}: client keepalive ignored",
            since.elapsed()
        );
        drop(hole);
        drop(gone);
    })
    .await
}
