//! Pool sizes and connection limits: default/per-database/per-user
//! pool_size, min_pool_size, reserve_pool_size, max_db_connections,
//! max_user_connections, forced users and `*` pools. Each test fails when
//! its setting is ignored: it counts backends on PostgreSQL's side.

use crate::support;

use std::time::Duration;

use support::{
    PgCluster, PoolerBuilder, TestPooler, backends, backends_settle, bounded, fresh_dbs, poll,
    unique, value as one,
};
use tokio_postgres::Client;

/// A client holding a server: connected, inside a transaction.
async fn holder(p: &TestPooler, db: &str, user: &str) -> Client {
    let c = p.connect(db, user, "").await;
    c.simple_query("BEGIN").await.unwrap();
    one(&c, "SELECT pg_backend_pid()").await;
    c
}

/// Whether `sql` on `c` is still waiting after `wait` (then it is left to
/// finish in the background).
async fn still_waiting(c: Client, sql: &'static str, wait: Duration) -> bool {
    let run = tokio::spawn(async move { c.simple_query(sql).await.map(|_| c) });
    tokio::time::sleep(wait).await;
    let waiting = !run.is_finished();
    run.abort();
    waiting
}

/// How many clients can hold a server at once: opens holders (each stays
/// in a transaction) until one is queued for a server (up to `max`).
async fn capacity(p: &TestPooler, db: &str, user: &str, max: usize) -> usize {
    let mut held = Vec::new();
    for _ in 0..max {
        let c = p.connect(db, user, "").await;
        let run = tokio::spawn(async move { c.simple_query("BEGIN").await.map(|_| c) });
        if !p.served_or_queued(db, user, &run).await {
            break;
        }
        held.push(run.await.unwrap().unwrap());
    }
    let n = held.len();
    for c in held {
        c.simple_query("ROLLBACK").await.unwrap();
    }
    n
}

#[tokio::test]
async fn pool_size_precedence() {
    bounded(async {
        let pg = PgCluster::shared();
        let (a, b) = (unique("size_a"), unique("size_b"));
        let sized_user = unique("size_u");
        pg.create_db(&a).await;
        pg.create_db(&b).await;
        pg.create_trusted_role(&sized_user).await;
        let p = PoolerBuilder::new()
            .set("default_pool_size", "3")
            .set("query_wait_timeout", "0")
            .trust(&sized_user)
            .user(&sized_user, "pool_size=4")
            .pg_database(pg, &a, "pool_size=2")
            .pg_database(pg, &b, "")
            .start()
            .await;
        // The user's pool_size wins over the database's and the default
        // (PgBouncer's pool_pool_size).
        assert_eq!(capacity(&p, &a, "postgres", 6).await, 2);
        assert_eq!(capacity(&p, &a, &sized_user, 6).await, 4);
        // Without a user's, the database's applies, else default_pool_size.
        assert_eq!(capacity(&p, &b, &sized_user, 6).await, 4);
        assert_eq!(capacity(&p, &b, "postgres", 6).await, 3);
    })
    .await
}

#[tokio::test]
async fn min_pool_size_opens_ahead_and_outlives_idle_timeout() {
    bounded(async {
        let pg = PgCluster::shared();
        let [forced, plain] = fresh_dbs(["min_forced", "min_plain"]).await;
        let p = PoolerBuilder::new()
            .set("server_idle_timeout", "1")
            .pg_database(pg, &forced, "user=postgres min_pool_size=3 pool_size=5")
            .pg_database(pg, &plain, "min_pool_size=2")
            .start()
            .await;
        // A forced-user database's pool exists from the start and fills up
        // to min_pool_size before any client comes.
        assert!(
            backends_settle(&forced, None, 3).await,
            "forced pool not warmed"
        );
        // Other pools fill once a client created them.
        let c = p.connect(&plain, "postgres", "").await;
        assert_eq!(one(&c, "SELECT 1").await, "1");
        assert!(
            backends_settle(&plain, None, 2).await,
            "pool not warmed to 2"
        );
        // server_idle_timeout (1 s) does not close them below the minimum.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(backends(&forced, None).await, 3);
        assert_eq!(backends(&plain, None).await, 2);
        // Extra servers above the minimum are closed by the idle timeout.
        let held: Vec<Client> = futures_all(5, || holder(&p, &forced, "postgres")).await;
        assert_eq!(backends(&forced, None).await, 5);
        for c in held {
            c.simple_query("COMMIT").await.unwrap();
        }
        assert!(
            backends_settle(&forced, None, 3).await,
            "idle extras not closed"
        );
    })
    .await
}

async fn futures_all<T, F, Fut>(n: usize, mut f: F) -> Vec<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(f().await);
    }
    out
}

#[tokio::test]
async fn reserve_pool_serves_clients_that_waited() {
    bounded(async {
        let pg = PgCluster::shared();
        let [with, without] = fresh_dbs(["reserve_on", "reserve_off"]).await;
        let p = PoolerBuilder::new()
            .set("reserve_pool_timeout", "0.5")
            .set("query_wait_timeout", "0")
            .pg_database(pg, &with, "pool_size=1 reserve_pool_size=1")
            .pg_database(pg, &without, "pool_size=1")
            .start()
            .await;
        // Without a reserve, a second client waits while the first holds
        // the only server.
        let _h = holder(&p, &without, "postgres").await;
        let c = p.connect(&without, "postgres", "").await;
        assert!(still_waiting(c, "SELECT 1", Duration::from_secs(3)).await);
        // With one, it gets a reserve server after reserve_pool_timeout.
        let _h2 = holder(&p, &with, "postgres").await;
        let c = p.connect(&with, "postgres", "").await;
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            c.simple_query("BEGIN").await?;
            c.simple_query("SELECT 1").await
        })
        .await;
        assert!(got.is_ok(), "the reserve pool was not used");
        assert_eq!(backends(&with, None).await, 2);
        // The reserve is a reserve: with both in use, a third client waits.
        let c3 = p.connect(&with, "postgres", "").await;
        assert!(still_waiting(c3, "SELECT 1", Duration::from_secs(2)).await);
    })
    .await
}

#[tokio::test]
async fn max_db_connections_caps_every_pool_of_a_database() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("maxdb");
        let (u1, u2) = (unique("maxdb_u"), unique("maxdb_u"));
        pg.create_db(&db).await;
        pg.create_trusted_role(&u1).await;
        pg.create_trusted_role(&u2).await;
        let p = PoolerBuilder::new()
            .set("query_wait_timeout", "0")
            .trust(&u1)
            .trust(&u2)
            .pg_database(pg, &db, "pool_size=5 max_db_connections=2")
            .start()
            .await;
        let a = holder(&p, &db, &u1).await;
        let b = holder(&p, &db, &u2).await;
        // Both pools are below pool_size, but the database is full.
        let c = p.connect(&db, &u1, "").await;
        let waiting = tokio::spawn(async move { c.simple_query("SELECT 1").await.map(|_| c) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "max_db_connections ignored");
        assert_eq!(backends(&db, None).await, 2);
        // When u2's server is released it stays idle in u2's pool, but u1's
        // waiting client needs room: the idle server is closed for it.
        b.simple_query("COMMIT").await.unwrap();
        let c = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the waiting client was not served")
            .unwrap()
            .unwrap();
        assert!(backends_settle(&db, Some(&u1), 2).await);
        assert_eq!(backends(&db, None).await, 2);
        // And an idle server of another pool makes room for a new request.
        a.simple_query("COMMIT").await.unwrap();
        drop(c);
        let d = p.connect(&db, &u2, "").await;
        let got = tokio::time::timeout(Duration::from_secs(10), one(&d, "SELECT 5")).await;
        assert_eq!(got.expect("idle servers of another pool blocked u2"), "5");
        assert!(backends(&db, None).await <= 2);
        let (max, _open) = p.pooler().context().pools.db_limit(&db).unwrap();
        assert_eq!(max, 2);
    })
    .await
}

#[tokio::test]
async fn max_user_connections_caps_every_pool_of_a_user() {
    bounded(async {
        let pg = PgCluster::shared();
        let (d1, d2) = (unique("maxuser_a"), unique("maxuser_b"));
        let user = unique("maxuser_u");
        pg.create_db(&d1).await;
        pg.create_db(&d2).await;
        pg.create_trusted_role(&user).await;
        let p = PoolerBuilder::new()
            .set("query_wait_timeout", "0")
            .set("max_user_connections", "5")
            .trust(&user)
            .user(&user, "max_user_connections=2")
            .pg_database(pg, &d1, "pool_size=5")
            .pg_database(pg, &d2, "pool_size=5")
            .start()
            .await;
        let a = holder(&p, &d1, &user).await;
        let _b = holder(&p, &d2, &user).await;
        let c = p.connect(&d1, &user, "").await;
        let waiting = tokio::spawn(async move { c.simple_query("SELECT 1").await.map(|_| c) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "max_user_connections ignored");
        // Another user is not limited by it.
        assert_eq!(capacity(&p, &d1, "postgres", 3).await, 3);
        a.simple_query("COMMIT").await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the waiting client was not served")
            .unwrap()
            .unwrap();
    })
    .await
}

#[tokio::test]
async fn forced_user_shares_one_pool() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("forced");
        let (u1, u2) = (unique("forced_u"), unique("forced_u"));
        pg.create_db(&db).await;
        let p = PoolerBuilder::new()
            .trust(&u1)
            .trust(&u2)
            .pg_database(pg, &db, "user=postgres pool_size=1")
            .start()
            .await;
        let c1 = p.connect(&db, &u1, "").await;
        let c2 = p.connect(&db, &u2, "").await;
        assert_eq!(one(&c1, "SELECT current_user").await, "postgres");
        let pid1 = one(&c1, "SELECT pg_backend_pid()").await;
        let pid2 = one(&c2, "SELECT pg_backend_pid()").await;
        assert_eq!(pid1, pid2, "one pool, one server");
        let pools = p.pooler().context().pools.all();
        assert_eq!(pools.iter().filter(|x| x.database() == db).count(), 1);
    })
    .await
}

#[tokio::test]
async fn autodb_pools_are_freed_when_unused() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("autodb");
        pg.create_db(&db).await;
        let p = PoolerBuilder::new()
            .set("autodb_idle_timeout", "1")
            .database("*", &format!("host=127.0.0.1 port={}", pg.port()))
            .start()
            .await;
        let pools = || {
            p.pooler()
                .context()
                .pools
                .all()
                .into_iter()
                .filter(|x| x.database() == db)
                .count()
        };
        let c = p.connect(&db, "postgres", "").await;
        assert_eq!(one(&c, "SELECT current_database()").await, db);
        // In use (a client is logged in): kept past the timeout.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(pools(), 1);
        drop(c);
        let gone = poll(60, Duration::from_millis(100), || async {
            (pools() == 0).then_some(())
        })
        .await;
        assert!(gone.is_some(), "unused autodb pool not freed");
        assert!(
            backends_settle(&db, None, 0).await,
            "its servers were not closed"
        );
        // A new client gets a new pool.
        let c = p.connect(&db, "postgres", "").await;
        assert_eq!(one(&c, "SELECT 3").await, "3");
    })
    .await
}

#[tokio::test]
async fn client_connection_limits_per_database_and_user() {
    bounded(async {
        let pg = PgCluster::shared();
        let (db, other) = (unique("maxcl_db"), unique("maxcl_other"));
        let user = unique("maxcl_u");
        pg.create_db(&db).await;
        pg.create_db(&other).await;
        pg.create_trusted_role(&user).await;
        let p = PoolerBuilder::new()
            .trust(&user)
            .user(&user, "max_user_client_connections=3")
            .pg_database(pg, &db, "max_db_client_connections=2")
            .pg_database(pg, &other, "")
            .start()
            .await;
        let refused = |e: tokio_postgres::Error, what: &str| {
            assert_eq!(support::sqlstate(&e).as_deref(), Some("53300"), "{e:?}");
            let msg = support::db_message(&e).unwrap_or_default();
            assert!(msg.contains(what), "{msg}");
        };
        // max_db_client_connections counts every user of the database.
        let a = p.connect(&db, "postgres", "").await;
        let b = p.connect(&db, &user, "").await;
        let e = p.try_connect(&db, "postgres", "").await.unwrap_err();
        refused(e, "max_db_client_connections");
        assert_eq!(p.pooler().context().pools.db_clients(&db), 2);
        // Another database is not limited by it.
        let c = p.connect(&other, "postgres", "").await;
        // The user's limit counts its clients in every database.
        let u2 = p.connect(&other, &user, "").await;
        let u3 = p.connect(&other, &user, "").await;
        let e = p.try_connect(&other, &user, "").await.unwrap_err();
        refused(e, "max_user_client_connections");
        // A client that leaves makes room.
        drop(a);
        drop(u3);
        let back = poll(50, Duration::from_millis(100), || async {
            p.try_connect(&db, "postgres", "").await.ok()
        })
        .await
        .expect("room after a client left");
        assert_eq!(one(&back, "SELECT 1").await, "1");
        let u4 = p.connect(&other, &user, "").await;
        for c in [&b, &c, &u2, &u4] {
            assert_eq!(one(c, "SELECT 2").await, "2");
        }
    })
    .await
}

/// As PgBouncer counts them: a user's clients by the name they logged in
/// with (not a database's forced user), the console included; the console
/// counts as a database of its own; admin users on the console are counted
/// but never refused.
#[tokio::test]
async fn client_limits_count_login_users_and_the_console() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("maxcl_forced");
        pg.create_db(&db).await;
        let (stats, admin) = (unique("maxcl_stats"), unique("maxcl_admin"));
        let p = PoolerBuilder::new()
            .trust(&stats)
            .trust(&admin)
            .set("stats_users", &stats)
            .set("admin_users", &admin)
            .set("max_user_client_connections", "2")
            .set("max_db_client_connections", "3")
            .pg_database(pg, &db, "user=postgres max_db_client_connections=10")
            .start()
            .await;
        let refused = |e: tokio_postgres::Error, what: &str| {
            assert_eq!(support::sqlstate(&e).as_deref(), Some("53300"), "{e:?}");
            let msg = support::db_message(&e).unwrap_or_default();
            assert!(msg.contains(what), "{msg}");
        };
        // The forced user's pool serves both, but each login user has
        // its own count.
        let s1 = p.connect(&db, &stats, "").await;
        let a1 = p.connect(&db, &admin, "").await;
        let a2 = p.connect(&db, &admin, "").await;
        refused(
            p.try_connect(&db, &admin, "").await.unwrap_err(),
            "max_user_client_connections",
        );
        // The console counts under the same user, and as its own database.
        let sc = p.connect("pgbouncer", &stats, "").await;
        refused(
            p.try_connect("pgbouncer", &stats, "").await.unwrap_err(),
            "max_user_client_connections",
        );
        // An admin user is counted on the console but never refused.
        let consoles: Vec<_> =
            futures_util::future::join_all((0..3).map(|_| p.connect("pgbouncer", &admin, "")))
                .await;
        let users = sc.simple_query("SHOW USERS").await.unwrap();
        let count_of = |name: &str| {
            users
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) if r.get("name") == Some(name) => {
                        r.get("current_client_connections").map(String::from)
                    }
                    _ => None,
                })
                .unwrap_or_default()
        };
        assert_eq!(count_of(&stats), "2");
        assert_eq!(count_of(&admin), "5");
        let dbs = sc.simple_query("SHOW DATABASES").await.unwrap();
        let console = dbs
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r)
                    if r.get("name") == Some("pgbouncer") =>
                {
                    Some((
                        r.get("max_client_connections").unwrap().to_string(),
                        r.get("current_client_connections").unwrap().to_string(),
                    ))
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(console, ("3".to_string(), "4".to_string()));
        // The console's database limit refuses a stats user once full.
        drop(s1);
        refused(
            p.try_connect("pgbouncer", &stats, "").await.unwrap_err(),
            "max_db_client_connections",
        );
        drop((a1, a2, consoles));
    })
    .await
}
