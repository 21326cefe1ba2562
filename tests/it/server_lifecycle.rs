//! Server connection lifecycle: server_lifetime, server_idle_timeout,
//! server_login_retry, server_check_query / server_check_delay and
//! server_round_robin. Each test fails when its setting is ignored.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use support::{
    PgCluster, PoolerBuilder, backends, backends_settle, bounded, db_message, fresh_dbs, unique,
    value as one,
};

/// The backend pids a client sees over `n` transactions, `every` apart.
async fn pids(c: &tokio_postgres::Client, n: usize, every: Duration) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(one(c, "SELECT pg_backend_pid()").await);
        tokio::time::sleep(every).await;
    }
    out
}

#[tokio::test]
async fn server_lifetime_replaces_old_servers_even_when_busy() {
    bounded(async {
        let pg = PgCluster::shared();
        let [short, long] = fresh_dbs(["lifetime_short", "lifetime_long"]).await;
        let p = PoolerBuilder::new()
            .set("server_lifetime", "1")
            .set("server_idle_timeout", "1")
            .pg_database(pg, &short, "pool_size=1")
            .pg_database(pg, &long, "pool_size=1 server_lifetime=3600")
            .start()
            .await;
        let c = p.connect(&short, "postgres", "").await;
        // Used every 100 ms (never idle for a second), the server is still
        // replaced once it is older than server_lifetime.
        let seen: HashSet<String> = pids(&c, 30, Duration::from_millis(100))
            .await
            .into_iter()
            .collect();
        assert!(seen.len() >= 2, "server_lifetime ignored: {seen:?}");
        // The per-database override keeps its server; and the idle timeout
        // (1 s) does not apply to a server used every 100 ms.
        let c = p.connect(&long, "postgres", "").await;
        let seen: HashSet<String> = pids(&c, 30, Duration::from_millis(100))
            .await
            .into_iter()
            .collect();
        assert_eq!(seen.len(), 1, "per-database server_lifetime ignored");
        // Unused, a server past its lifetime is closed by itself.
        assert!(backends_settle(&short, None, 0).await);
    })
    .await
}

#[tokio::test]
async fn server_idle_timeout_closes_idle_servers() {
    bounded(async {
        let pg = PgCluster::shared();
        let [db, keep] = fresh_dbs(["idle_timeout", "idle_keep"]).await;
        let p = PoolerBuilder::new()
            .set("server_idle_timeout", "1")
            .pg_database(pg, &db, "pool_size=2")
            .start()
            .await;
        let c = p.connect(&db, "postgres", "").await;
        let first = one(&c, "SELECT pg_backend_pid()").await;
        assert_eq!(backends(&db, None).await, 1);
        let closed = backends_settle(&db, None, 0).await;
        assert!(closed, "idle server not closed");
        // The client is not affected: its next transaction gets a new server.
        let second = one(&c, "SELECT pg_backend_pid()").await;
        assert_ne!(first, second);
        // With the default (600 s) nothing is closed.
        let p2 = PoolerBuilder::new()
            .pg_database(pg, &keep, "pool_size=2")
            .start()
            .await;
        let c2 = p2.connect(&keep, "postgres", "").await;
        one(&c2, "SELECT 1").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(backends(&keep, None).await, 1);
    })
    .await
}

#[tokio::test]
async fn failed_server_login_fails_fast_until_server_login_retry() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("login_retry");
        let role = unique("late_role");
        pg.create_db(&db).await;
        let p = PoolerBuilder::new()
            .set("server_login_retry", "3")
            .trust(&role)
            .pg_database(pg, &db, "")
            .start()
            .await;
        // The role does not exist yet: PostgreSQL refuses the login.
        let first = p.try_connect(&db, &role, "").await.unwrap_err();
        let msg = db_message(&first).unwrap_or_default();
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(!msg.contains("server_login_retry"), "{msg}");
        // Now it exists, but within server_login_retry nobody retries: the
        // next client fails at once with the reason.
        pg.create_trusted_role(&role).await;
        let second = p.try_connect(&db, &role, "").await.unwrap_err();
        let msg = db_message(&second).unwrap_or_default();
        assert!(
            msg.contains("does not exist") && msg.contains("server_login_retry"),
            "{msg}"
        );
        // After it, the login is tried again and works.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let c = p.connect(&db, &role, "").await;
        assert_eq!(one(&c, "SELECT current_user").await, role);
    })
    .await
}

#[tokio::test]
async fn server_check_query_runs_after_server_check_delay() {
    bounded(async {
        let pg = PgCluster::shared();
        let (db, lazy) = (unique("check_always"), unique("check_lazy"));
        for d in [&db, &lazy] {
            pg.create_db(d).await;
            let direct = pg.direct_client(d, "postgres").await;
            direct
                .batch_execute(
                    "CREATE SEQUENCE checks; CREATE TABLE healthy (ok int);\
                     INSERT INTO healthy VALUES (1);\
                     CREATE FUNCTION check_server() RETURNS int LANGUAGE sql AS \
                     $$ SELECT nextval('checks')::int / (SELECT count(*)::int FROM healthy) $$",
                )
                .await
                .unwrap();
        }
        let p = PoolerBuilder::new()
            .set("server_check_delay", "0")
            .set("server_check_query", "SELECT check_server()")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let c = p.connect(&db, "postgres", "").await;
        for _ in 0..5 {
            one(&c, "SELECT 1").await;
        }
        // server_check_delay = 0: every reuse of the idle server was checked.
        let direct = pg.direct_client(&db, "postgres").await;
        let checks = one(&direct, "SELECT last_value FROM checks").await;
        assert!(checks.parse::<i64>().unwrap() >= 4, "checks: {checks}");
        // A server failing its check is closed, never handed out: the client
        // gets a fresh server each time and sees no error.
        direct.batch_execute("DELETE FROM healthy").await.unwrap();
        let seen: HashSet<String> = pids(&c, 4, Duration::ZERO).await.into_iter().collect();
        assert_eq!(seen.len(), 4, "a server that failed its check was reused");
        // With the default delay (30 s), quick reuse is not checked.
        let p2 = PoolerBuilder::new()
            .set("server_check_query", "SELECT check_server()")
            .pg_database(pg, &lazy, "pool_size=1")
            .start()
            .await;
        let c2 = p2.connect(&lazy, "postgres", "").await;
        for _ in 0..5 {
            one(&c2, "SELECT 1").await;
        }
        let direct = pg.direct_client(&lazy, "postgres").await;
        assert_eq!(
            one(&direct, "SELECT is_called::text FROM checks").await,
            "false"
        );
    })
    .await
}

#[tokio::test]
async fn server_round_robin_rotates_idle_servers() {
    bounded(async {
        let pg = PgCluster::shared();
        let [rr, lifo] = fresh_dbs(["rr", "lifo"]).await;
        for (db, round_robin, want) in [(&rr, "1", 3), (&lifo, "0", 1)] {
            let p = PoolerBuilder::new()
                .set("server_round_robin", round_robin)
                .pg_database(pg, db, "pool_size=3 min_pool_size=3")
                .start()
                .await;
            let c = p.connect(db, "postgres", "").await;
            let warm = backends_settle(db, None, 3).await;
            assert!(warm);
            let seen: HashSet<String> = pids(&c, 9, Duration::ZERO).await.into_iter().collect();
            assert_eq!(
                seen.len(),
                want,
                "server_round_robin={round_robin}: {seen:?}"
            );
        }
    })
    .await
}

/// A server that refuses logins for now (57P03; here a standby without
/// hot standby, as PostgreSQL starting up or shutting down does) keeps its
/// clients waiting while the pool tries again (backoff up to
/// server_login_retry), and the refusal fails no later client;
/// once it takes logins (promoted) they are served. query_wait_timeout
/// still bounds the wait.
#[tokio::test]
async fn cannot_connect_now_is_waited_out_not_failed() {
    support::bounded_for(Duration::from_secs(120), async {
        let primary = PgCluster::dedicated();
        let cold = PgCluster::standby_with(&primary, "hot_standby = off");
        let target = format!("host=127.0.0.1 port={} dbname=postgres", cold.port());
        let p = PoolerBuilder::new()
            .set("server_login_retry", "0.5")
            .set("query_wait_timeout", "60")
            .database("cold", &target)
            .start()
            .await;
        let short = PoolerBuilder::new()
            .set("server_login_retry", "0.5")
            .set("query_wait_timeout", "2")
            .database("cold", &target)
            .start()
            .await;
        // Bounded by query_wait_timeout: the refusal's own code and text.
        let e = short.try_connect("cold", "postgres", "").await.unwrap_err();
        assert_eq!(support::sqlstate(&e).as_deref(), Some("57P03"), "{e:?}");
        let clients: Vec<_> = (0..2)
            .map(|i| {
                let cfg = p.config("cold", "postgres", "");
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(700 * i)).await;
                    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(conn);
                    let rows = c.simple_query("SELECT pg_is_in_recovery()").await?;
                    Ok::<_, tokio_postgres::Error>(support::rows_col0(&rows))
                })
            })
            .collect();
        // Both wait (the second came after a refusal: not failed fast).
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            clients.iter().all(|c| !c.is_finished()),
            "a client was failed"
        );
        cold.promote();
        for c in clients {
            assert_eq!(c.await.unwrap().expect("served"), ["f"]);
        }
    })
    .await
}

/// server_lifetime = 0 means, as in PgBouncer, that a server connection
/// serves once and is closed: every transaction of a client gets a new
/// backend, and none is left idle.
#[tokio::test]
async fn server_lifetime_zero_uses_each_server_once() {
    bounded(async {
        let pg = PgCluster::shared();
        let [db] = fresh_dbs(["lifetime_once"]).await;
        let p = PoolerBuilder::new()
            .pg_database(pg, &db, "pool_size=2 server_lifetime=0")
            .start()
            .await;
        let c = p.connect(&db, "postgres", "").await;
        let seen: HashSet<String> = pids(&c, 4, Duration::ZERO).await.into_iter().collect();
        assert_eq!(seen.len(), 4, "a server was reused: {seen:?}");
        assert!(
            backends_settle(&db, None, 0).await,
            "servers were kept after use"
        );
    })
    .await
}
