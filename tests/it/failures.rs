//! Failure isolation in transaction mode: a backend terminated with
//! pg_terminate_backend fails the one client using it (with the 57P01
//! PostgreSQL sends, or 08006) and nobody else, and the pool heals without
//! restarting pgsluice; idle clients never notice servers dying in the pool.
//! (tests/it/restart.rs covers a whole PostgreSQL restart under load.)

use crate::support;

use std::time::Duration;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded, poll, sqlstate, unique, wire};

/// A fresh database and a transaction pool of `pool_size` in front of it.
async fn setup(prefix: &str, pool_size: usize) -> (String, TestPooler) {
    let pg = PgCluster::shared();
    let db = unique(prefix);
    pg.create_db(&db).await;
    pg.direct_client(&db, "postgres")
        .await
        .batch_execute("CREATE TABLE t (client int, n int)")
        .await
        .unwrap();
    let pooler = PoolerBuilder::new()
        .pg_database(
            pg,
            &db,
            &format!("pool_size={pool_size} query_wait_timeout=15"),
        )
        .start()
        .await;
    (db, pooler)
}

/// Backends of `db` other than the asking one.
async fn backends(direct: &tokio_postgres::Client, db: &str) -> i64 {
    direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db],
        )
        .await
        .unwrap()
        .get(0)
}

/// Terminate `pid` and wait until it is gone.
async fn terminate(direct: &tokio_postgres::Client, pid: i32) {
    let done: bool = direct
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(done, "backend {pid} not terminated");
    let gone = poll(200, Duration::from_millis(50), || async {
        let n: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        (n == 0).then_some(())
    })
    .await;
    assert!(gone.is_some(), "backend {pid} still there");
}

/// The pid of the backend of `db` running `SELECT pg_sleep(60)`, once it
/// shows up in pg_stat_activity.
async fn sleeping_backend(direct: &tokio_postgres::Client, db: &str) -> i32 {
    poll(200, Duration::from_millis(50), || async {
        direct
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 \
                 AND query = 'SELECT pg_sleep(60)' AND state = 'active'",
                &[&db],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, i32>(0))
    })
    .await
    .expect("the sleeping statement never showed up")
}

/// A transaction through `c` that must succeed.
async fn commit_one(c: &tokio_postgres::Client, client: i32) {
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO t VALUES ({client}, 1); COMMIT"
    ))
    .await
    .unwrap_or_else(|e| panic!("client {client}: {e:?}"));
}

#[tokio::test]
async fn terminated_backend_fails_only_its_client_and_the_pool_heals() {
    bounded(async {
        let (db, pooler) = setup("term_db", 2).await;
        let direct = PgCluster::shared().direct_client(&db, "postgres").await;
        let bystander = pooler.connect(&db, "postgres", "").await;
        commit_one(&bystander, 0).await;

        // (1) Idle in a transaction: the error arrives unasked, then the
        // pooler closes the client (its transaction is lost).
        let mut victim = pooler.raw_connect().await;
        wire::login_trust(&mut victim, "postgres", &db).await;
        wire::simple_query(&mut victim, "BEGIN").await.unwrap();
        let pid = wire::simple_query(&mut victim, "SELECT pg_backend_pid()")
            .await
            .unwrap()[0]
            .clone()
            .unwrap();
        terminate(&direct, pid.parse().unwrap()).await;
        let msgs = wire::read_to_close(&mut victim).await.unwrap();
        let error = msgs
            .iter()
            .find(|m| m.tag == b'E')
            .unwrap_or_else(|| panic!("no error before the close: {msgs:?}"));
        assert!(
            ["57P01", "08006"].contains(&error.sqlstate().as_str()),
            "{:?}",
            error.fields()
        );

        // (2) In the middle of a statement: the statement fails, and its
        // client goes on on the same connection (no transaction block of
        // its own was lost).
        let busy = pooler.connect(&db, "postgres", "").await;
        let sleeper = tokio::spawn(async move {
            let r = busy.simple_query("SELECT pg_sleep(60)").await;
            (busy, r)
        });
        let pid = sleeping_backend(&direct, &db).await;
        terminate(&direct, pid).await;
        let (busy, r) = sleeper.await.unwrap();
        let err = r.unwrap_err();
        assert!(
            ["57P01", "08006"].contains(&sqlstate(&err).as_deref().unwrap_or("")),
            "{err:?}"
        );
        // A request sent after the server's FATAL but before pgsluice saw
        // the connection close went to the lost server too: it fails the
        // same way. The one after that has a new server.
        if let Err(e) = busy.simple_query("SELECT 1").await {
            assert_eq!(sqlstate(&e).as_deref(), Some("08006"), "{e:?}");
        }
        commit_one(&busy, 4).await;

        // The bystander was never touched; the victims reconnect and work;
        // both pool slots are usable again (two transactions at once).
        commit_one(&bystander, 0).await;
        let again = pooler.connect(&db, "postgres", "").await;
        commit_one(&again, 1).await;
        let mut held = Vec::new();
        for client in [2, 3] {
            let mut c = pooler.connect(&db, "postgres", "").await;
            let tx = c.transaction().await.unwrap();
            tx.batch_execute(&format!("INSERT INTO t VALUES ({client}, 1)"))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            c.simple_query("BEGIN; SELECT 1").await.unwrap();
            held.push(c);
        }
        for c in &held {
            c.simple_query("COMMIT").await.unwrap();
        }
        commit_one(&bystander, 0).await;
        let n: i64 = direct
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 7);
    })
    .await
}

/// Parse, Bind and Execute of the unnamed statement `sql`.
fn extended(sql: &str) -> Vec<u8> {
    let mut parse = vec![0u8];
    parse.extend_from_slice(sql.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    let mut out = wire::tagged(b'P', &parse);
    out.extend(wire::tagged(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
    out.extend(wire::tagged(b'E', &[0, 0, 0, 0, 0]));
    out
}

#[tokio::test]
async fn a_lost_server_fails_the_open_group_and_its_client_goes_on() {
    bounded(async {
        let (db, pooler) = setup("lost_group_db", 2).await;
        let direct = PgCluster::shared().direct_client(&db, "postgres").await;
        let mut c = pooler.raw_connect().await;
        wire::login_trust(&mut c, "postgres", &db).await;
        // A group sent with Flush, not Sync: its answers so far come, and
        // the server dies while it runs.
        let mut group = extended("SELECT pg_sleep(60)");
        group.extend(wire::tagged(b'H', &[]));
        wire::send(&mut c, &group).await.unwrap();
        let pid = sleeping_backend(&direct, &db).await;
        terminate(&direct, pid).await;
        // PostgreSQL's FATAL is relayed; pgsluice's ERROR follows, and no
        // ReadyForQuery: the client has not sent its Sync.
        let mut seen = Vec::new();
        loop {
            let m = wire::read_msg(&mut c).await.unwrap().expect("closed");
            assert_ne!(m.tag, b'Z', "ReadyForQuery before the Sync: {seen:?}");
            let ours = m.tag == b'E' && m.sqlstate() == "08006";
            seen.push(m);
            if ours {
                break;
            }
        }
        assert_eq!(seen.last().unwrap().fields()[&b'S'], "ERROR", "{seen:?}");
        // The rest of the group is skipped up to its Sync, as PostgreSQL
        // skips after an error: the INSERT never runs.
        let mut rest = extended("INSERT INTO t VALUES (99, 1)");
        rest.extend(wire::tagged(b'S', &[]));
        wire::send(&mut c, &rest).await.unwrap();
        let answer = wire::read_until_ready(&mut c).await.unwrap();
        assert_eq!(answer.len(), 1, "{answer:?}");
        assert_eq!(answer[0].body, b"I");
        // The same connection goes on, with a new server.
        let n = wire::simple_query(&mut c, "SELECT count(*) FROM t WHERE client = 99")
            .await
            .unwrap();
        assert_eq!(n, vec![Some("0".to_string())]);
        let mut batch = extended("INSERT INTO t VALUES (98, 1)");
        batch.extend(wire::tagged(b'S', &[]));
        wire::send(&mut c, &batch).await.unwrap();
        let answer = wire::read_until_ready(&mut c).await.unwrap();
        assert!(answer.iter().all(|m| m.tag != b'E'), "{answer:?}");
        let n = wire::simple_query(&mut c, "SELECT count(*) FROM t WHERE client = 98")
            .await
            .unwrap();
        assert_eq!(n, vec![Some("1".to_string())]);
    })
    .await
}

#[tokio::test]
async fn idle_clients_survive_the_death_of_every_pooled_server() {
    bounded(async {
        const CLIENTS: i32 = 10;
        const POOL: usize = 3;
        let (db, pooler) = setup("idle_kill_db", POOL).await;
        let direct = PgCluster::shared().direct_client(&db, "postgres").await;
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(pooler.connect(&db, "postgres", "").await);
        }
        // Open every server of the pool: POOL transactions at once.
        for c in clients.iter().take(POOL) {
            c.simple_query("BEGIN; SELECT 1").await.unwrap();
        }
        for c in clients.iter().take(POOL) {
            c.simple_query("COMMIT").await.unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            commit_one(c, i as i32).await;
        }
        assert_eq!(backends(&direct, &db).await, POOL as i64);

        // Every pooled server dies while all clients are idle.
        let pids: Vec<i32> = direct
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(pids.len(), POOL);
        for pid in pids {
            terminate(&direct, pid).await;
        }
        assert_eq!(backends(&direct, &db).await, 0);

        // No idle client was disconnected: each one's next query succeeds
        // on the first try, and so do transactions.
        for (i, c) in clients.iter().enumerate() {
            assert!(!c.is_closed(), "client {i} was disconnected");
            let rows = c
                .simple_query("SELECT 1")
                .await
                .unwrap_or_else(|e| panic!("client {i}: {e:?}"));
            assert_eq!(support::rows_col0(&rows), ["1"]);
            commit_one(c, i as i32).await;
        }
        let n: i64 = direct
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2 * CLIENTS as i64);
    })
    .await
}
