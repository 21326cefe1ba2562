//! Run-time control through the library API the admin console and signals
//! use: PAUSE/RESUME under load, DISABLE/ENABLE, RECONNECT + WAIT_CLOSE,
//! RELOAD (sizes, new/removed databases, passwords, invalid files) and the
//! zero-downtime switchover between two PostgreSQL clusters.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{
    PgCluster, PoolerBuilder, TestPooler, backends_settle, bounded, bounded_for, fresh_dbs,
    sqlstate, unique, value as one,
};

/// Rewrite the pooler's ini with `edit` (plain text replacement).
fn edit_ini(p: &TestPooler, from: &str, to: &str) {
    let path = p.ini_path();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in\n{text}");
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// Clients running one-row transactions in a loop until `stop`; returns
/// (committed, failed) counters.
fn load(
    p: &Arc<TestPooler>,
    db: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, u64, Vec<String>)>> {
    (0..clients)
        .map(|i| {
            let (p, db, stop) = (p.clone(), db.to_string(), stop.clone());
            tokio::spawn(async move {
                let c = p.connect(&db, "postgres", "").await;
                let (mut ok, mut failed, mut ports) = (0, 0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let r = c
                        .simple_query(&format!(
                            "BEGIN; INSERT INTO t VALUES ({i}); \
                             SELECT inet_server_port()::text; COMMIT"
                        ))
                        .await;
                    match r {
                        Ok(m) => {
                            ok += 1;
                            ports.extend(support::rows_col0(&m));
                        }
                        Err(e) => {
                            failed += 1;
                            eprintln!("client {i}: {e:?}");
                        }
                    }
                }
                (ok, failed, ports)
            })
        })
        .collect()
}

#[tokio::test]
async fn pause_and_resume_under_load_lose_nothing() {
    bounded(async {
        let [db] = fresh_dbs(["pause"]).await;
        let direct = PgCluster::shared().direct_client(&db, "postgres").await;
        direct
            .batch_execute("CREATE TABLE t (n int)")
            .await
            .unwrap();
        let p = Arc::new(
            PoolerBuilder::new()
                .pg_database(PgCluster::shared(), &db, "pool_size=3")
                .start()
                .await,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = load(&p, &db, 10, &stop);
        committed_beyond(&direct, 0).await;
        let ctx = p.pooler().context().clone();
        let cfg = ctx.config();
        // PAUSE returns once every server is released and closed.
        tokio::time::timeout(Duration::from_secs(20), ctx.pools.pause(&cfg, Some(&db)))
            .await
            .expect("PAUSE did not return")
            .unwrap();
        assert_eq!(ctx.pools.all()[0].counts().total, 0);
        // Only the test's own direct connection is left.
        assert!(
            backends_settle(&db, None, 1).await,
            "servers left after PAUSE"
        );
        let done = direct_count(&direct).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            direct_count(&direct).await,
            done,
            "work went on while paused"
        );
        ctx.pools.resume(&cfg, Some(&db)).unwrap();
        // A second RESUME has nothing to undo.
        assert!(ctx.pools.resume(&cfg, Some(&db)).is_err());
        committed_beyond(&direct, done).await;
        stop.store(true, Ordering::Relaxed);
        let (mut ok, mut failed) = (0, 0);
        for t in tasks {
            let (o, f, _) = t.await.unwrap();
            ok += o;
            failed += f;
        }
        assert_eq!(failed, 0);
        assert!(
            direct_count(&direct).await > done,
            "nothing ran after RESUME"
        );
        assert_eq!(direct_count(&direct).await, ok as i64);
    })
    .await
}

async fn direct_count(direct: &tokio_postgres::Client) -> i64 {
    one(direct, "SELECT count(*) FROM t").await.parse().unwrap()
}

/// Wait until more than `n` rows are in `t` (the load is running).
async fn committed_beyond(direct: &tokio_postgres::Client, n: i64) {
    let more = support::poll(600, Duration::from_millis(50), || async {
        (direct_count(direct).await > n).then_some(())
    })
    .await;
    assert!(more.is_some(), "no transaction committed beyond {n}");
}

#[tokio::test]
async fn disable_refuses_new_clients_only() {
    bounded(async {
        let [db] = fresh_dbs(["disable"]).await;
        let p = PoolerBuilder::new()
            .pg_database(PgCluster::shared(), &db, "")
            .start()
            .await;
        let ctx = p.pooler().context().clone();
        let connected = p.connect(&db, "postgres", "").await;
        ctx.pools.set_disabled(&ctx.config(), &db, true).unwrap();
        let e = p.try_connect(&db, "postgres", "").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("57P03"), "{e:?}");
        assert_eq!(one(&connected, "SELECT 1").await, "1");
        ctx.pools.set_disabled(&ctx.config(), &db, false).unwrap();
        let c = p.connect(&db, "postgres", "").await;
        assert_eq!(one(&c, "SELECT 2").await, "2");
        assert!(ctx.pools.set_disabled(&ctx.config(), "nope", true).is_err());
    })
    .await
}

#[tokio::test]
async fn reconnect_replaces_servers_and_wait_close_waits_for_them() {
    bounded(async {
        let [db] = fresh_dbs(["reconnect"]).await;
        let p = PoolerBuilder::new()
            .pg_database(PgCluster::shared(), &db, "pool_size=2")
            .start()
            .await;
        let ctx = p.pooler().context().clone();
        let idle = p.connect(&db, "postgres", "").await;
        let old_idle = one(&idle, "SELECT pg_backend_pid()").await;
        let busy = p.connect(&db, "postgres", "").await;
        busy.simple_query("BEGIN").await.unwrap();
        let old_busy = one(&busy, "SELECT pg_backend_pid()").await;
        ctx.pools.reconnect(&ctx.config(), Some(&db)).unwrap();
        // The idle server is closed at once; the busy one stays in use.
        assert!(backends_settle(&db, None, 1).await);
        let cfg = ctx.config();
        let waiting = {
            let (ctx, db) = (ctx.clone(), db.clone());
            tokio::spawn(async move { ctx.pools.wait_close(&cfg, Some(&db)).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiting.is_finished(),
            "WAIT_CLOSE returned with an old server in use"
        );
        assert_eq!(one(&busy, "SELECT pg_backend_pid()").await, old_busy);
        busy.simple_query("COMMIT").await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("WAIT_CLOSE did not return")
            .unwrap()
            .unwrap();
        let now = one(&idle, "SELECT pg_backend_pid()").await;
        assert!(
            now != old_idle && now != old_busy,
            "an old server was reused"
        );
    })
    .await
}

/// The secret the test support puts in auth_file for `postgres`.
const PG_PW: &str = "trusted-by-test-support";

#[tokio::test]
async fn reload_applies_sizes_databases_and_passwords() {
    bounded(async {
        let pg = PgCluster::shared();
        let [db, added] = fresh_dbs(["reload", "reload_new"]).await;
        let user = unique("reload_user");
        pg.create_role(&user, "first", support::Encryption::Scram)
            .await;
        let p = PoolerBuilder::new()
            .set("auth_type", "scram-sha-256")
            .auth_user(&user, "first")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let ctx = p.pooler().context().clone();
        let a = p.connect(&db, "postgres", PG_PW).await;
        a.simple_query("BEGIN").await.unwrap();
        one(&a, "SELECT 1").await;
        // A second client waits for the only server...
        let b = p.connect(&db, "postgres", PG_PW).await;
        let waiting = tokio::spawn(async move { one(&b, "SELECT 2").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished());
        // ...until the pool grows with a reload.
        edit_ini(&p, "pool_size=1", "pool_size=3");
        let port = pg.port();
        let text = std::fs::read_to_string(p.ini_path()).unwrap().replace(
            "[databases]\n",
            &format!("[databases]\n{added} = host=127.0.0.1 port={port} dbname={added}\n"),
        );
        std::fs::write(p.ini_path(), text).unwrap();
        let userlist = p.ini_path().with_file_name("userlist.txt");
        let list = std::fs::read_to_string(&userlist).unwrap();
        std::fs::write(&userlist, list.replace("\"first\"", "\"second\"")).unwrap();
        ctx.reload().unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(got.expect("pool_size change not applied").unwrap(), "2");
        // A new database is served at once; the new password applies.
        let c = p.connect(&added, "postgres", PG_PW).await;
        assert_eq!(one(&c, "SELECT current_database()").await, added);
        pg.sql(&format!("ALTER ROLE {user} PASSWORD 'second'"))
            .await;
        let e = p.try_connect(&db, &user, "first").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
        let u = p.connect(&db, &user, "second").await;
        assert_eq!(one(&u, "SELECT current_user").await, user);
        // An invalid file leaves everything as it was.
        edit_ini(&p, "pool_size=3", "pool_size=lots");
        let err = ctx.reload().unwrap_err();
        assert!(err.contains("pool_size"), "{err}");
        assert_eq!(one(&c, "SELECT 3").await, "3");
        edit_ini(&p, "pool_size=lots", "pool_size=3");
        // So does a misspelled key (PgBouncer keeps its settings too).
        edit_ini(&p, "pool_mode = transaction", "pool_mod = transaction");
        let err = ctx.reload().unwrap_err();
        assert!(
            err.contains("pool_mod: unknown setting; did you mean \"pool_mode\"?"),
            "{err}"
        );
        assert_eq!(one(&c, "SELECT 4").await, "4");
        edit_ini(&p, "pool_mod = transaction", "pool_mode = transaction");
        // A removed database refuses new clients; its clients go on.
        let text = std::fs::read_to_string(p.ini_path()).unwrap();
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{added} =")))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(p.ini_path(), text).unwrap();
        ctx.reload().unwrap();
        let e = p.try_connect(&added, "postgres", PG_PW).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{e:?}");
        assert_eq!(one(&c, "SELECT 4").await, "4");
        a.simple_query("COMMIT").await.unwrap();
    })
    .await
}

#[tokio::test]
async fn switchover_to_another_cluster_loses_no_transaction() {
    bounded_for(Duration::from_secs(240), async {
        let (old, new) = (PgCluster::dedicated(), PgCluster::dedicated());
        let db = unique("switch");
        for pg in [&old, &new] {
            pg.create_db(&db).await;
            let direct = pg.direct_client(&db, "postgres").await;
            direct
                .batch_execute("CREATE TABLE t (n int)")
                .await
                .unwrap();
        }
        let p = Arc::new(
            PoolerBuilder::new()
                .pg_database(&old, &db, "pool_size=4")
                .start()
                .await,
        );
        let ctx = p.pooler().context().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = load(&p, &db, 12, &stop);
        committed_beyond(&old.direct_client(&db, "postgres").await, 0).await;
        // The DBA's switchover: PAUSE, point at the new cluster, RELOAD, RESUME.
        ctx.pools.pause(&ctx.config(), Some(&db)).await.unwrap();
        edit_ini(
            &p,
            &format!("port={}", old.port()),
            &format!("port={}", new.port()),
        );
        ctx.reload().unwrap();
        ctx.pools.resume(&ctx.config(), Some(&db)).unwrap();
        committed_beyond(&new.direct_client(&db, "postgres").await, 0).await;
        stop.store(true, Ordering::Relaxed);
        let (mut ok, mut failed, mut ports) = (0u64, 0u64, Vec::new());
        for t in tasks {
            let (o, f, p) = t.await.unwrap();
            ok += o;
            failed += f;
            ports.push(p);
        }
        assert_eq!(failed, 0, "transactions failed during the switchover");
        let (n_old, old_port) = (rows_in(&old, &db).await, old.port());
        let (n_new, new_port) = (rows_in(&new, &db).await, new.port());
        assert_eq!((n_old + n_new) as u64, ok, "committed work went missing");
        assert!(n_old > 0 && n_new > 0, "old {n_old}, new {n_new}");
        // Afterwards every client's traffic goes to the new cluster.
        for seen in &ports {
            let last = seen.last().expect("every client ran");
            assert_eq!(last, &new_port.to_string(), "a client still on {old_port}");
        }
    })
    .await
}

async fn rows_in(pg: &PgCluster, db: &str) -> i64 {
    let c = pg.direct_client(db, "postgres").await;
    one(&c, "SELECT count(*) FROM t").await.parse().unwrap()
}

#[tokio::test]
async fn set_changes_a_setting_for_good() {
    bounded(async {
        let [db] = fresh_dbs(["set"]).await;
        let p = PoolerBuilder::new()
            .set("default_pool_size", "1")
            .pg_database(PgCluster::shared(), &db, "")
            .start()
            .await;
        let ctx = p.pooler().context().clone();
        let a = p.connect(&db, "postgres", "").await;
        a.simple_query("BEGIN").await.unwrap();
        let b = p.connect(&db, "postgres", "").await;
        let waiting = tokio::spawn(async move { one(&b, "SELECT 9").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished());
        ctx.set("DEFAULT_POOL_SIZE", "2").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(got.expect("SET not applied").unwrap(), "9");
        assert_eq!(ctx.config().general.default_pool_size, 2);
        // Kept over a reload.
        ctx.reload().unwrap();
        assert_eq!(ctx.config().general.default_pool_size, 2);
        // Refused: unknown, not changeable at run time, bad value.
        assert!(
            ctx.set("no_such_thing", "1")
                .unwrap_err()
                .contains("unknown")
        );
        assert!(ctx.set("listen_port", "1").is_err());
        assert!(ctx.set("default_pool_size", "many").is_err());
        assert_eq!(ctx.config().general.default_pool_size, 2);
        a.simple_query("COMMIT").await.unwrap();
    })
    .await
}
