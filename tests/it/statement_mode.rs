//! pool_mode = statement: the server goes back to the pool after every
//! statement (simple Query or extended-protocol Sync); a transaction block
//! ends the client with 08P01 (PgBouncer's code) and closes its server (which rolls back);
//! a whole transaction in one Query message works. Set globally, per
//! database and per user.

use crate::support;

use std::time::Duration;

use support::{
    PgCluster, PoolerBuilder, TestPooler, bounded, db_message, poll, sqlstate, unique,
    value as one, wire,
};

const REFUSED: &str = "transaction blocks not allowed in statement pooling mode";

/// Log in raw, send `sql` (one Query message), expect the statement-mode
/// refusal and the connection closed. Returns the messages seen before it.
async fn refused(pooler: &TestPooler, db: &str, user: &str, sql: &str) -> Vec<wire::Msg> {
    let mut s = pooler.raw_connect().await;
    wire::login_trust(&mut s, user, db).await;
    wire::send(&mut s, &wire::query(sql)).await.unwrap();
    let msgs = wire::read_to_close(&mut s)
        .await
        .expect("pooler neither answered nor closed");
    let err = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("{sql}: no error in statement mode: {msgs:?}"));
    assert_eq!(err.sqlstate(), "08P01", "{:?}", err.fields());
    assert_eq!(err.fields()[&b'S'], "FATAL");
    assert!(err.message().contains(REFUSED), "{}", err.message());
    assert!(
        msgs.iter().all(|m| m.tag != b'Z'),
        "ReadyForQuery 'T' must not reach the client: {msgs:?}"
    );
    msgs
}

/// Wait until no backend of `db` is idle in a transaction (the refused
/// client's server was closed, not kept or given to someone else).
async fn no_open_transaction(direct: &tokio_postgres::Client, db: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
         AND state LIKE 'idle in transaction%'"
    );
    let gone = poll(200, Duration::from_millis(50), || async {
        (one(direct, &sql).await == "0").then_some(())
    })
    .await;
    assert!(gone.is_some(), "a server stayed in a transaction");
}

#[tokio::test]
async fn statement_mode_releases_after_each_statement_and_refuses_transactions() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("stmt_db");
        pg.create_db(&db).await;
        let direct = pg.direct_client(&db, "postgres").await;
        direct
            .batch_execute("CREATE TABLE t (n int)")
            .await
            .unwrap();
        // One server for everyone; a client that kept it would make the
        // other wait 3 s and fail (query_wait_timeout).
        let pooler = PoolerBuilder::new()
            .set("pool_mode", "statement")
            .set("query_wait_timeout", "3")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let a = pooler.connect(&db, "postgres", "").await;
        let b = pooler.connect(&db, "postgres", "").await;
        let pid = one(&a, "SELECT pg_backend_pid()").await;
        for i in 0..5 {
            // Simple and extended protocol, interleaved on the one server.
            assert_eq!(one(&b, "SELECT pg_backend_pid()").await, pid);
            let row = a.query_one("SELECT $1::int + 1", &[&i]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i + 1);
            let row = b.query_one("SELECT pg_backend_pid()", &[]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0).to_string(), pid);
        }
        // A whole transaction in one Query message ends with 'I': allowed.
        a.simple_query("BEGIN; INSERT INTO t VALUES (1); COMMIT")
            .await
            .expect("one-message transaction");
        assert_eq!(one(&b, "SELECT count(*) FROM t WHERE n = 1").await, "1");

        // BEGIN alone: refused, client closed, server closed.
        refused(&pooler, &db, "postgres", "BEGIN").await;
        no_open_transaction(&direct, &db).await;
        // What came before the transaction block is still delivered; the
        // INSERT after BEGIN never commits.
        let msgs = refused(
            &pooler,
            &db,
            "postgres",
            "SELECT 41; BEGIN; INSERT INTO t VALUES (2)",
        )
        .await;
        assert!(msgs.iter().any(|m| m.tag == b'D'), "{msgs:?}");
        no_open_transaction(&direct, &db).await;
        assert_eq!(
            one(&direct, "SELECT count(*) FROM t WHERE n = 2").await,
            "0"
        );
        // tokio-postgres' transaction API is refused the same way.
        let mut c = pooler.connect(&db, "postgres", "").await;
        let err = c.transaction().await.err().expect("BEGIN must be refused");
        assert_eq!(sqlstate(&err).as_deref(), Some("08P01"), "{err:?}");
        assert_eq!(db_message(&err).as_deref(), Some(REFUSED));

        // The pool still serves the others.
        assert_eq!(one(&a, "SELECT 7").await, "7");
        assert_eq!(one(&b, "SELECT 8").await, "8");
        let d = pooler.connect(&db, "postgres", "").await;
        assert_eq!(one(&d, "SELECT count(*) FROM t").await, "1");
    })
    .await
}

#[tokio::test]
async fn statement_mode_per_database_and_per_user() {
    bounded(async {
        let pg = PgCluster::shared();
        let stmt_db = unique("stmt_dbmode");
        let tx_db = unique("stmt_txmode");
        let user = unique("stmt_user");
        pg.create_db(&stmt_db).await;
        pg.create_db(&tx_db).await;
        pg.create_trusted_role(&user).await;
        let pooler = PoolerBuilder::new()
            .set("pool_mode", "transaction")
            .trust(&user)
            .pg_database(pg, &stmt_db, "pool_mode=statement")
            .pg_database(pg, &tx_db, "")
            .user(&user, "pool_mode=statement")
            .start()
            .await;
        // [databases] pool_mode=statement.
        refused(&pooler, &stmt_db, "postgres", "BEGIN").await;
        // [users] pool_mode=statement overrides the database's mode.
        refused(&pooler, &tx_db, &user, "BEGIN").await;
        // Everyone else is in transaction mode: BEGIN ... COMMIT works.
        let c = pooler.connect(&tx_db, "postgres", "").await;
        c.simple_query("BEGIN").await.unwrap();
        assert_eq!(one(&c, "SELECT 1").await, "1");
        c.simple_query("COMMIT").await.unwrap();
        // Single statements work in the statement-mode pools.
        let s = pooler.connect(&stmt_db, "postgres", "").await;
        assert_eq!(one(&s, "SELECT 2").await, "2");
        let u = pooler.connect(&tx_db, &user, "").await;
        assert_eq!(one(&u, "SELECT 3").await, "3");
    })
    .await
}
