//! Pooler::shutdown (the SIGTERM path): stop accepting, let a running
//! transaction finish, close idle clients with 57P01, then return.

use crate::support;

use std::time::Duration;

use support::{PgCluster, PoolerBuilder, bounded, poll, unique, wire};

/// True once the pooler no longer gives new clients a session.
async fn refuses_new_clients(addr: std::net::SocketAddr, db: &str) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return true;
    };
    if wire::send(&mut s, &wire::startup("postgres", db))
        .await
        .is_err()
    {
        return true;
    }
    match wire::read_until_ready(&mut s).await {
        Ok(msgs) => msgs.iter().any(|m| m.tag == b'E'),
        Err(_) => true,
    }
}

#[tokio::test]
async fn shutdown_finishes_transactions_and_closes_idle_clients() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("shut_db");
        pg.create_db(&db).await;
        let direct = pg.direct_client(&db, "postgres").await;
        direct.batch_execute("CREATE TABLE done (x int)").await.unwrap();
        let pooler = PoolerBuilder::new()
            .pg_database(pg, &db, "pool_size=2")
            .start()
            .await;
        let addr = pooler.addr();

        // An idle client, and one inside a transaction.
        let mut idle = pooler.raw_connect().await;
        wire::login_trust(&mut idle, "postgres", &db).await;
        let mut busy = pooler.raw_connect().await;
        wire::login_trust(&mut busy, "postgres", &db).await;
        wire::simple_query(&mut busy, "BEGIN").await.unwrap();
        wire::simple_query(&mut busy, "INSERT INTO done VALUES (1)").await.unwrap();

        let shutdown = tokio::spawn(pooler.shutdown());
        let stopped = poll(200, Duration::from_millis(50), || async {
            refuses_new_clients(addr, &db).await.then_some(())
        })
        .await;
        assert!(stopped.is_some(), "still accepting clients after shutdown began");
        assert!(!shutdown.is_finished(), "shutdown returned with a transaction open");

        // The running transaction may go on and commit.
        wire::simple_query(&mut busy, "INSERT INTO done VALUES (2)").await.unwrap();
        wire::simple_query(&mut busy, "COMMIT").await.expect("COMMIT during shutdown");
        let n: i64 = direct
            .query_one("SELECT count(*) FROM done", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2, "the transaction's work was lost");

        // The idle client is told and disconnected.
        let msgs = wire::read_to_close(&mut idle).await.expect("idle client not closed");
        let e = msgs.iter().find(|m| m.tag == b'E').expect("ErrorResponse for the idle client");
        assert_eq!(e.sqlstate(), "57P01", "{:?}", e.fields());
        // The client that finished its transaction is closed as well.
        wire::read_to_close(&mut busy).await.expect("finished client not closed");

        tokio::time::timeout(Duration::from_secs(60), shutdown)
            .await
            .expect("shutdown did not return")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener still open");
        // Nothing is left on PostgreSQL's side either.
        let left = poll(100, Duration::from_millis(50), || async {
            let n: i64 = direct
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&db],
                )
                .await
                .unwrap()
                .get(0);
            (n == 0).then_some(())
        })
        .await;
        assert!(left.is_some(), "server connections survived the shutdown");
    })
    .await
}

#[tokio::test]
async fn shutdown_with_no_clients_returns() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("shut_db");
        pg.create_db(&db).await;
        let pooler = PoolerBuilder::new().pg_database(pg, &db, "").start().await;
        let c = pooler.connect(&db, "postgres", "").await;
        c.simple_query("SELECT 1").await.unwrap();
        drop(c);
        let addr = pooler.addr();
        tokio::time::timeout(Duration::from_secs(60), pooler.shutdown())
            .await
            .expect("shutdown did not return");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    })
    .await
}

/// SHUTDOWN WAIT_FOR_SERVERS as PgBouncer does it: a client waiting for a
/// server is closed (`server shutting down`), a running transaction goes
/// on and commits, TCP is closed, the Unix socket stays for the admin
/// console only (other logins: `pooler is shutting down`; RESUME is
/// refused), and goes away once the last client left.
#[tokio::test]
async fn a_waiting_shutdown_keeps_the_console_on_the_unix_socket() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("shut_wait");
        pg.create_db(&db).await;
        let mut pooler = PoolerBuilder::new()
            .trust("shut_admin")
            .set("admin_users", "shut_admin")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let (addr, sock) = (pooler.addr(), pooler.unix_socket_path().unwrap());
        let unix_db = pooler.unix_config(&db, "postgres");
        let unix_admin = pooler.unix_config("pgbouncer", "shut_admin");
        // One client holds the only server in a transaction; another waits.
        let holder = pooler.connect(&db, "postgres", "").await;
        holder.simple_query("BEGIN").await.unwrap();
        holder.simple_query("SELECT 1").await.unwrap();
        let queued = pooler.connect(&db, "postgres", "").await;
        let waiting = tokio::spawn(async move { queued.simple_query("SELECT 2").await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "the second client was not queued");

        let shutdown = pooler.begin_shutdown(pgsluice::context::ShutdownMode::WaitForServers);
        let e = waiting
            .await
            .unwrap()
            .expect_err("the waiting client was served");
        assert_eq!(support::sqlstate(&e).as_deref(), Some("57P01"), "{e:?}");
        assert_eq!(
            support::db_message(&e).as_deref(),
            Some("server shutting down")
        );
        assert!(refuses_new_clients(addr, &db).await, "TCP still serves");
        // The console over the Unix socket: reachable, RESUME refused.
        let (admin, conn) = unix_admin.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        admin.simple_query("SHOW VERSION").await.unwrap();
        let e = admin.simple_query("RESUME").await.unwrap_err();
        assert_eq!(support::sqlstate(&e).as_deref(), Some("08P01"), "{e:?}");
        assert_eq!(
            support::db_message(&e).as_deref(),
            Some("pooler is shutting down")
        );
        // Any other database over it: refused.
        let e = unix_db
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("logged in");
        assert_eq!(support::sqlstate(&e).as_deref(), Some("57P01"), "{e:?}");
        assert_eq!(
            support::db_message(&e).as_deref(),
            Some("pooler is shutting down")
        );
        // The running transaction finishes.
        holder.simple_query("SELECT 3").await.unwrap();
        holder.simple_query("COMMIT").await.unwrap();
        drop((admin, holder));
        tokio::time::timeout(Duration::from_secs(60), shutdown)
            .await
            .expect("shutdown did not return")
            .unwrap();
        assert!(!sock.exists(), "the Unix socket outlived the shutdown");
    })
    .await
}
