//! query_timeout, idle_transaction_timeout, transaction_timeout and
//! client_idle_timeout, each
//! against the real PostgreSQL with a short (1 to 3 s) setting: the client
//! gets a FATAL error with the right SQLSTATE and is disconnected, the
//! server is closed when it was in use (the query stops, the transaction
//! rolls back), and the pool goes on serving others. Clients that keep
//! working are never touched.

use crate::support;

use std::time::Duration;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded, poll, unique, value as one, wire};

/// A fresh database with table t(n int), and a direct client to it.
async fn database(prefix: &str) -> (String, tokio_postgres::Client) {
    let pg = PgCluster::shared();
    let db = unique(prefix);
    pg.create_db(&db).await;
    let direct = pg.direct_client(&db, "postgres").await;
    direct
        .batch_execute("CREATE TABLE t (n int)")
        .await
        .unwrap();
    (db, direct)
}

async fn raw_client(pooler: &TestPooler, db: &str) -> tokio::net::TcpStream {
    let mut s = pooler.raw_connect().await;
    wire::login_trust(&mut s, "postgres", db).await;
    s
}

/// Read until the pooler closes the connection (at most 20 s per message:
/// a timeout that is ignored fails here) and return its FATAL error.
async fn fatal_then_closed(s: &mut tokio::net::TcpStream) -> wire::Msg {
    let msgs = wire::read_to_close(s)
        .await
        .expect("the pooler neither told the client nor closed it");
    let err = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("closed without an error: {msgs:?}"))
        .clone();
    assert_eq!(err.fields()[&b'S'], "FATAL", "{:?}", err.fields());
    err
}

/// Poll `sql` on the direct connection until it returns `want`.
async fn eventually(direct: &tokio_postgres::Client, sql: &str, want: &str) {
    let hit = poll(300, Duration::from_millis(50), || async {
        (one(direct, sql).await == want).then_some(())
    })
    .await;
    assert!(hit.is_some(), "{sql} never returned {want}");
}

#[tokio::test]
async fn query_timeout_closes_server_and_client() {
    bounded(async {
        let (db, direct) = database("qt_db").await;
        let pooler = PoolerBuilder::new()
            .set("query_timeout", "1")
            .pg_database(PgCluster::shared(), &db, "pool_size=1")
            .start()
            .await;
        // Queries shorter than the timeout are fine, also in a transaction
        // that lasts longer than it altogether.
        let ok = pooler.connect(&db, "postgres", "").await;
        ok.simple_query("BEGIN").await.unwrap();
        for _ in 0..3 {
            ok.simple_query("SELECT pg_sleep(0.4)").await.unwrap();
        }
        ok.simple_query("COMMIT").await.unwrap();

        let mut s = raw_client(&pooler, &db).await;
        wire::send(&mut s, &wire::query("SELECT pg_sleep(60)"))
            .await
            .unwrap();
        let err = fatal_then_closed(&mut s).await;
        assert_eq!(err.sqlstate(), "57014", "{:?}", err.fields());
        assert_eq!(err.message(), "query timeout");
        // The backend is gone long before its sleep would have ended.
        eventually(
            &direct,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND query = 'SELECT pg_sleep(60)'",
            "0",
        )
        .await;
        // The one slot is free again: the next client gets a server.
        let next = pooler.connect(&db, "postgres", "").await;
        assert_eq!(one(&next, "SELECT 5").await, "5");
        assert_eq!(one(&ok, "SELECT 6").await, "6");
    })
    .await
}

#[tokio::test]
async fn idle_transaction_timeout_rolls_back_and_disconnects() {
    bounded(async {
        let (db, direct) = database("itt_db").await;
        // Set per user (the [users] entry wins over [pgbouncer]'s 0).
        let pooler = PoolerBuilder::new()
            .set("idle_transaction_timeout", "0")
            .user("postgres", "idle_transaction_timeout=1")
            .pg_database(PgCluster::shared(), &db, "pool_size=1")
            .start()
            .await;
        // A transaction whose client keeps talking is not touched, however
        // long it lasts.
        let busy = pooler.connect(&db, "postgres", "").await;
        busy.simple_query("BEGIN").await.unwrap();
        for i in 0..6 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            busy.simple_query(&format!("INSERT INTO t VALUES ({i})"))
                .await
                .unwrap();
        }
        busy.simple_query("DELETE FROM t; COMMIT").await.unwrap();

        let mut s = raw_client(&pooler, &db).await;
        wire::simple_query(&mut s, "BEGIN").await.unwrap();
        wire::simple_query(&mut s, "INSERT INTO t VALUES (42)")
            .await
            .unwrap();
        // Now idle in the transaction.
        let err = fatal_then_closed(&mut s).await;
        // PgBouncer's code and text (see `timeouts::Expired`).
        assert_eq!(err.sqlstate(), "08P01", "{:?}", err.fields());
        assert_eq!(err.message(), "idle transaction timeout");
        // The server was closed: PostgreSQL rolled the insert back.
        eventually(
            &direct,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
                 AND state LIKE 'idle in transaction%'"
            ),
            "0",
        )
        .await;
        assert_eq!(one(&direct, "SELECT count(*) FROM t").await, "0");
        // The pool serves others.
        let next = pooler.connect(&db, "postgres", "").await;
        assert_eq!(one(&next, "SELECT count(*) FROM t").await, "0");
        assert_eq!(one(&busy, "SELECT 1").await, "1");
    })
    .await
}

#[tokio::test]
async fn client_idle_timeout_closes_idle_and_parked_clients_only() {
    bounded(async {
        let (db, _direct) = database("cit_db").await;
        let pooler = PoolerBuilder::new()
            .set("client_idle_timeout", "3")
            .pg_database(PgCluster::shared(), &db, "pool_size=3")
            .start()
            .await;
        let ctx = pooler.pooler().context().clone();
        // Idle after a query, and idle since login.
        let mut after_query = raw_client(&pooler, &db).await;
        wire::simple_query(&mut after_query, "SELECT 1")
            .await
            .unwrap();
        let mut never = raw_client(&pooler, &db).await;
        // Active clients: one in a transaction, one running a long query.
        let in_tx = pooler.connect(&db, "postgres", "").await;
        in_tx.simple_query("BEGIN").await.unwrap();
        let long = pooler.connect(&db, "postgres", "").await;
        let long_query =
            tokio::spawn(
                async move { long.simple_query("SELECT pg_sleep(5)").await.map(|_| long) },
            );

        // The idle ones are parked (no task) before the timeout.
        let parked = poll(100, Duration::from_millis(50), || {
            let ctx = ctx.clone();
            async move { (ctx.registry.counts().1 >= 2).then_some(()) }
        })
        .await;
        assert!(
            parked.is_some(),
            "idle clients never parked: {:?}",
            ctx.registry.counts()
        );
        for s in [&mut after_query, &mut never] {
            let err = fatal_then_closed(s).await;
            assert_eq!(err.sqlstate(), "57P05", "{:?}", err.fields());
            assert!(
                err.message().contains("client_idle_timeout"),
                "{}",
                err.message()
            );
        }
        // The active ones kept their sessions past the timeout.
        let long = long_query.await.unwrap().expect("long query survives");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(one(&in_tx, "SELECT 2").await, "2");
        in_tx.simple_query("COMMIT").await.unwrap();
        assert_eq!(one(&long, "SELECT 3").await, "3");
        // A client that keeps sending every second is never idle long enough.
        let chatty = pooler.connect(&db, "postgres", "").await;
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            assert_eq!(one(&chatty, &format!("SELECT {i}")).await, i.to_string());
        }
    })
    .await
}

/// transaction_timeout (global, and a user's winning over it): a
/// transaction open longer, busy or idle, closes its client (FATAL 08P01
/// `transaction timeout`, PgBouncer's) and its server (the transaction
/// rolls back); many short transactions over a longer time are fine.
#[tokio::test]
async fn transaction_timeout_ends_long_transactions_only() {
    bounded(async {
        let (db, direct) = database("xt_db").await;
        let pg = PgCluster::shared();
        let user = unique("xt_user");
        pg.create_trusted_role(&user).await;
        direct
            .batch_execute(&format!("GRANT ALL ON t TO {user}"))
            .await
            .unwrap();
        let pooler = PoolerBuilder::new()
            .set("transaction_timeout", "60")
            .trust(&user)
            .user(&user, "transaction_timeout=1")
            .pg_database(pg, &db, "pool_size=2")
            .start()
            .await;
        // Autocommit statements for longer than the limit altogether: fine.
        let ok = pooler.connect(&db, &user, "").await;
        for i in 0..8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ok.simple_query(&format!("SELECT {i}")).await.unwrap();
        }
        // A transaction kept busy (never idle for long) past the limit.
        let mut s = pooler.raw_connect().await;
        wire::login_trust(&mut s, &user, &db).await;
        wire::simple_query(&mut s, "BEGIN").await.unwrap();
        wire::simple_query(&mut s, "INSERT INTO t VALUES (7)")
            .await
            .unwrap();
        let mut answered = 0;
        let err = loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            wire::send(&mut s, &wire::query("SELECT 1")).await.unwrap();
            // The answer, or the FATAL error (the request may be sent just
            // before or after the limit closed the connection).
            let mut fatal = None;
            loop {
                match wire::read_msg(&mut s).await {
                    Ok(Some(m)) if m.tag == b'Z' => break,
                    Ok(Some(m)) if m.tag == b'E' => {
                        fatal = Some(m);
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => panic!("closed without an error"),
                }
            }
            if let Some(e) = fatal {
                assert_eq!(e.fields()[&b'S'], "FATAL", "{:?}", e.fields());
                assert!(wire::read_to_close(&mut s).await.is_ok());
                break e;
            }
            answered += 1;
            assert!(answered < 40, "the transaction was never ended");
        };
        assert!(answered >= 2, "ended too early: {answered}");
        assert_eq!(err.sqlstate(), "08P01", "{:?}", err.fields());
        assert_eq!(err.message(), "transaction timeout");
        // Rolled back: the server was closed.
        eventually(&direct, "SELECT count(*) FROM t WHERE n = 7", "0").await;
        // The global limit (60 s) applies to other users: not ended.
        let other = pooler.connect(&db, "postgres", "").await;
        other.simple_query("BEGIN").await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        other.simple_query("COMMIT").await.unwrap();
        assert_eq!(one(&ok, "SELECT 9").await, "9");
    })
    .await
}

/// query_timeout counts for a client waiting for a server too (PgBouncer's
/// janitor applies it there, with the word `query_timeout`), when it is
/// shorter than query_wait_timeout; the client holding the server is not
/// touched.
#[tokio::test]
async fn query_timeout_ends_a_wait_for_a_server() {
    bounded(async {
        let (db, _direct) = database("to_waitq").await;
        let pooler = PoolerBuilder::new()
            .pg_database(PgCluster::shared(), &db, "pool_size=1 query_wait_timeout=0")
            .set("query_timeout", "1")
            .start()
            .await;
        let mut holder = raw_client(&pooler, &db).await;
        wire::simple_query(&mut holder, "BEGIN").await.unwrap();
        let mut waiter = raw_client(&pooler, &db).await;
        wire::send(&mut waiter, &wire::query("SELECT 1"))
            .await
            .unwrap();
        let err = fatal_then_closed(&mut waiter).await;
        assert_eq!(err.sqlstate(), "57014", "{err:?}");
        assert_eq!(err.message(), "query_timeout");
        // The holder's transaction goes on.
        assert_eq!(
            wire::simple_query(&mut holder, "SELECT 2").await.unwrap(),
            vec![Some("2".to_string())]
        );
        wire::simple_query(&mut holder, "COMMIT").await.unwrap();
    })
    .await
}
