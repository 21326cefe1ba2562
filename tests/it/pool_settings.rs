//! Per-pool behaviour settings: pool_mode per database and per user,
//! server_reset_query(_always), server_connect_timeout and
//! client_login_timeout. Each test fails when its setting is ignored.

use crate::support;

use std::time::Duration;

use support::{PgCluster, PoolerBuilder, bounded, sqlstate, unique, value as one};
use tokio::io::AsyncReadExt;

/// Whether `db` as `user` pools by session: on a pool of one, a second
/// client must wait while the first is connected (session mode) instead of
/// getting the same server between the first one's statements.
async fn keeps_session(p: &support::TestPooler, db: &str, user: &str) -> bool {
    let c = p.connect(db, user, "").await;
    c.batch_execute("SET statement_timeout = '4321ms'")
        .await
        .unwrap();
    let other = p.connect(db, user, "").await;
    let probe = tokio::spawn(async move { one(&other, "SHOW statement_timeout").await });
    // In session mode the only server stays with `c`: `other` is queued. In
    // transaction mode `other` gets the same server, with c's setting.
    if !p.served_or_queued(db, user, &probe).await {
        return true;
    }
    let v = probe.await.unwrap();
    assert_eq!(v, "4321ms", "transaction mode hands over the server as is");
    false
}

#[tokio::test]
async fn pool_mode_global_per_database_and_per_user() {
    bounded(async {
        let pg = PgCluster::shared();
        let (sess_db, tx_db) = (unique("mode_sess"), unique("mode_tx"));
        let user = unique("mode_user");
        pg.create_db(&sess_db).await;
        pg.create_db(&tx_db).await;
        pg.create_trusted_role(&user).await;
        let p = PoolerBuilder::new()
            .set("pool_mode", "transaction")
            .set("server_reset_query", "")
            .trust(&user)
            .user(&user, "pool_mode=session")
            .pg_database(pg, &sess_db, "pool_size=1 pool_mode=session")
            .pg_database(pg, &tx_db, "pool_size=1")
            .start()
            .await;
        // Global transaction mode.
        assert!(!keeps_session(&p, &tx_db, "postgres").await);
        // The database's pool_mode wins over the global one.
        assert!(keeps_session(&p, &sess_db, "postgres").await);
        // The user's pool_mode wins over the database's and the global one.
        assert!(keeps_session(&p, &tx_db, &user).await);
    })
    .await
}

#[tokio::test]
async fn server_reset_query_runs_in_session_mode_and_always_when_asked() {
    bounded(async {
        let pg = PgCluster::shared();
        let (sess, tx, always) = (unique("reset_s"), unique("reset_t"), unique("reset_a"));
        for d in [&sess, &tx, &always] {
            pg.create_db(d).await;
        }
        let leaked = |p: support::TestPooler, db: String| async move {
            let a = p.connect(&db, "postgres", "").await;
            let pid = one(&a, "SELECT pg_backend_pid()").await;
            a.batch_execute("SET statement_timeout = '1234ms'")
                .await
                .unwrap();
            drop(a);
            // Same server (pool of one), next client.
            let b = p.connect(&db, "postgres", "").await;
            let v = one(&b, "SHOW statement_timeout").await;
            assert_eq!(one(&b, "SELECT pg_backend_pid()").await, pid);
            v != "0"
        };
        let session = PoolerBuilder::new()
            .set("pool_mode", "session")
            .pg_database(pg, &sess, "pool_size=1")
            .start()
            .await;
        assert!(
            !leaked(session, sess).await,
            "DISCARD ALL not run at session end"
        );
        let plain_tx = PoolerBuilder::new()
            .pg_database(pg, &tx, "pool_size=1")
            .start()
            .await;
        assert!(
            leaked(plain_tx, tx).await,
            "transaction mode should not reset"
        );
        let tx_always = PoolerBuilder::new()
            .set("server_reset_query_always", "1")
            .pg_database(pg, &always, "pool_size=1")
            .start()
            .await;
        assert!(
            !leaked(tx_always, always).await,
            "server_reset_query_always ignored"
        );
    })
    .await
}

#[tokio::test]
async fn server_connect_timeout_bounds_a_silent_server() {
    bounded(async {
        // A "server" that accepts connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        // query_wait_timeout below server_login_retry: no second attempt.
        let p = PoolerBuilder::new()
            .set("server_connect_timeout", "1")
            .set("query_wait_timeout", "2")
            .database("silent", &format!("host=127.0.0.1 port={port} dbname=x"))
            .start()
            .await;
        let started = std::time::Instant::now();
        let err = p.try_connect("silent", "postgres", "").await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server_connect_timeout ignored"
        );
        assert!(format!("{err:?}").contains("timed out"), "{err:?}");
        hold.abort();
    })
    .await
}

#[tokio::test]
async fn client_login_timeout_closes_silent_clients() {
    bounded(async {
        let db = unique("login_timeout");
        PgCluster::shared().create_db(&db).await;
        let p = PoolerBuilder::new()
            .set("client_login_timeout", "1")
            .pg_database(PgCluster::shared(), &db, "")
            .start()
            .await;
        // Connect and say nothing: closed after about a second.
        let mut s = p.raw_connect().await;
        let mut buf = Vec::new();
        let started = std::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "client_login_timeout ignored");
        // Told why (08P01), after more than the limit (the janitor's
        // granularity: between 1 and about 2 seconds).
        let said = String::from_utf8_lossy(&buf);
        assert!(
            said.contains("client_login_timeout") && said.contains("08P01"),
            "{said:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        // With the default (60 s), a silent client stays for now.
        let p2 = PoolerBuilder::new()
            .pg_database(PgCluster::shared(), &db, "")
            .start()
            .await;
        let mut s = p2.raw_connect().await;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3), s.read(&mut byte)).await;
        assert!(read.is_err(), "closed before client_login_timeout");
    })
    .await
}

/// query_wait_notify: a client queued longer than that is told so while
/// it still waits (PgBouncer's NOTICE, once per wait), and again in a later
/// wait; a client that gets a server at once is not told.
#[tokio::test]
async fn query_wait_notify_tells_a_queued_client_once_per_wait() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("wait_notify");
        pg.create_db(&db).await;
        let p = PoolerBuilder::new()
            .set("query_wait_notify", "1")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let mut c = p.raw_connect().await;
        support::wire::login_trust(&mut c, "postgres", &db).await;
        // Served at once: no notice.
        let answer = {
            support::wire::send(&mut c, &support::wire::query("SELECT 1"))
                .await
                .unwrap();
            support::wire::read_until_ready(&mut c).await.unwrap()
        };
        assert!(answer.iter().all(|m| m.tag != b'N'), "{answer:?}");
        for round in 0..2 {
            let holder = p.connect(&db, "postgres", "").await;
            holder.simple_query("BEGIN").await.unwrap();
            support::wire::send(&mut c, &support::wire::query("SELECT 1"))
                .await
                .unwrap();
            // The notice comes while the only server is still held.
            let notice = support::wire::read_msg(&mut c)
                .await
                .unwrap()
                .expect("closed");
            assert_eq!(notice.tag, b'N', "round {round}: {notice:?}");
            assert_eq!(
                notice.message(),
                "No server connection available in postgres backend, client being queued"
            );
            assert_eq!(notice.fields()[&b'S'], "NOTICE");
            assert_eq!(notice.sqlstate(), "00000");
            // Once per wait: nothing more while it goes on.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            holder.simple_query("COMMIT").await.unwrap();
            let rest = support::wire::read_until_ready(&mut c).await.unwrap();
            assert!(
                rest.iter().all(|m| m.tag != b'N' && m.tag != b'E'),
                "{rest:?}"
            );
            assert!(rest.iter().any(|m| m.tag == b'D'), "{rest:?}");
        }
    })
    .await
}
