//! Cancel requests: a CancelRequest carrying the pooler's key for a client
//! reaches the server that client is linked to; other clients are unaffected.

use crate::support;

use std::time::Duration;

use support::{PgCluster, bounded, sqlstate, value as one};

#[tokio::test]
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
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND query = 'SELECT pg_sleep(60)' AND state = 'active'",
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
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("send cancel");
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

#[tokio::test]
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

/// A TCP proxy in front of PostgreSQL that passes connections through but
/// holds each CancelRequest for `delay` first (a slow network path for
/// cancels only). Returns its port and the number of cancels it passed on.
async fn slow_cancel_proxy(
    pg_port: u16,
    delay: Duration,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let forwarded = std::sync::Arc::new(AtomicUsize::new(0));
    let count = forwarded.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 8];
                client.read_exact(&mut head).await?;
                let len = u32::from_be_bytes(head[..4].try_into().unwrap());
                let code = u32::from_be_bytes(head[4..].try_into().unwrap());
                let mut pg = tokio::net::TcpStream::connect(("127.0.0.1", pg_port)).await?;
                if len == 16 && code == 80_877_102 {
                    let mut rest = [0u8; 8];
                    client.read_exact(&mut rest).await?;
                    tokio::time::sleep(delay).await;
                    pg.write_all(&head).await?;
                    pg.write_all(&rest).await?;
                    count.fetch_add(1, Ordering::SeqCst);
                    // PostgreSQL closes the connection once it has
                    // signalled the backend; pass that on.
                    let mut sink = Vec::new();
                    pg.read_to_end(&mut sink).await?;
                    return Ok::<(), std::io::Error>(());
                }
                pg.write_all(&head).await?;
                tokio::io::copy_bidirectional(&mut client, &mut pg).await?;
                Ok(())
            });
        }
    });
    (port, forwarded)
}

/// A cancel still travelling to PostgreSQL when its query ends must not
/// hit the next client's query on the same server: the session keeps the
/// server until the cancel was processed (cancel_wait_timeout at most).
#[tokio::test]
async fn late_cancel_does_not_hit_the_next_client() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = support::unique("cancel_late_db");
        pg.create_db(&db).await;
        let (proxy_port, forwarded) =
            slow_cancel_proxy(pg.port(), Duration::from_millis(2500)).await;
        let pooler = support::PoolerBuilder::new()
            .set("cancel_wait_timeout", "20")
            // The proxy reads the cancel in plaintext.
            .set("server_tls_sslmode", "disable")
            .database(
                &db,
                &format!("host=127.0.0.1 port={proxy_port} dbname={db} pool_size=1"),
            )
            .start()
            .await;
        let a = pooler.connect(&db, "postgres", "").await;
        let b = pooler.connect(&db, "postgres", "").await;
        let token = a.cancel_token();
        let a_sql = "SELECT pg_sleep(1)";
        let a_query = tokio::spawn(async move { a.simple_query(a_sql).await.map(|_| ()) });
        let direct = pg.direct_client(&db, "postgres").await;
        let running = support::poll(200, Duration::from_millis(20), || async {
            let sql = format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND query = '{a_sql}' AND state = 'active'"
            );
            (one(&direct, &sql).await == "1").then_some(())
        })
        .await;
        assert!(running.is_some(), "a's query never started");
        // b waits for the only server; a's cancel leaves now and reaches
        // PostgreSQL 2.5 s later, after a's query ended.
        let b_query =
            tokio::spawn(
                async move { b.simple_query("SELECT 'b', pg_sleep(3)").await.map(|_| ()) },
            );
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("send cancel");
        let _ = a_query.await.unwrap();
        let b_result = b_query.await.unwrap();
        assert!(
            b_result.is_ok(),
            "a's late cancel hit b's query: {b_result:?}"
        );
        assert!(
            forwarded.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "the cancel never reached PostgreSQL"
        );
    })
    .await
}
