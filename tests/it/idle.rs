//! Idle clients: after a second or so without a request a session is parked
//! (no task, only its registry entry); a parked client's next query, its
//! disconnection and a shutdown all still work.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{bounded, poll, value as one, wire};

async fn wait_counts(
    pooler: &support::TestPooler,
    want: impl Fn(usize, usize) -> bool,
) -> (usize, usize) {
    let ctx = pooler.pooler().context().clone();
    poll(200, Duration::from_millis(50), || {
        let ctx = ctx.clone();
        let want = &want;
        async move {
            let (registered, parked) = ctx.registry.counts();
            want(registered, parked).then_some((registered, parked))
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "registry never reached the wanted state: {:?}",
            ctx.registry.counts()
        )
    })
}

#[tokio::test]
async fn parked_clients_wake_up_for_their_next_query() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("idle_db", "pool_size=2").await;
        let mut clients = Vec::new();
        for i in 0..20 {
            let c = pooler.connect(&db, "postgres", "").await;
            assert_eq!(one(&c, &format!("SELECT {i}")).await, i.to_string());
            clients.push(c);
        }
        // All twenty park once idle.
        wait_counts(&pooler, |reg, parked| reg == 20 && parked == 20).await;
        // Each wakes up for its next query and answers it correctly.
        for (i, c) in clients.iter().enumerate() {
            assert_eq!(
                one(c, &format!("SELECT {i} + 100")).await,
                (i + 100).to_string()
            );
        }
        // A transaction spanning a park-length pause keeps its server.
        let c = &clients[0];
        c.simple_query("BEGIN").await.unwrap();
        let pid = one(c, "SELECT pg_backend_pid()").await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(one(c, "SELECT pg_backend_pid()").await, pid);
        c.simple_query("COMMIT").await.unwrap();
        // Parked clients that disconnect leave the registry.
        wait_counts(&pooler, |_, parked| parked >= 19).await;
        clients.truncate(5);
        wait_counts(&pooler, |reg, _| reg == 5).await;
    })
    .await
}

#[tokio::test]
async fn shutdown_reaches_parked_clients() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("idle_shutdown_db", "pool_size=1").await;
        let c = pooler.connect(&db, "postgres", "").await;
        assert_eq!(one(&c, "SELECT 1").await, "1");
        wait_counts(&pooler, |reg, parked| reg == 1 && parked == 1).await;
        pooler.shutdown().await;
        // The parked client was told and closed: its next query fails.
        assert!(c.simple_query("SELECT 1").await.is_err());
    })
    .await
}

#[tokio::test]
async fn unix_socket_clients_park_and_wake_again_and_again() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("idle_unix_db", "pool_size=1").await;
        let cfg = pooler.unix_config(&db, "postgres");
        let (unix, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let tcp = pooler.connect(&db, "postgres", "").await;
        // Each round: both park (their sockets leave the runtime), then
        // each wakes for its next query (its socket goes back).
        for round in 0..3 {
            wait_counts(&pooler, |reg, parked| reg == 2 && parked == 2).await;
            assert_eq!(
                one(&unix, &format!("SELECT {round}")).await,
                round.to_string()
            );
            assert_eq!(
                one(&tcp, &format!("SELECT {round} + 1")).await,
                (round + 1).to_string()
            );
        }
        // A parked client that hangs up leaves the registry (its socket
        // reports the hang-up to the parker); the other still works.
        wait_counts(&pooler, |_, parked| parked == 2).await;
        drop(unix);
        wait_counts(&pooler, |reg, _| reg == 1).await;
        assert_eq!(one(&tcp, "SELECT 42").await, "42");
    })
    .await
}

/// With more than a thousand clients registered, a client that has just
/// logged in parks as soon as it waits idle, without waiting for the
/// sweep (which parks only sessions idle since before its previous tick,
/// a second or more after login); it still answers its next query. Every
/// one of the crowd parks too: a session whose socket readiness was left
/// set by the login's last read must not wait busy for its first query.
#[tokio::test]
async fn a_crowded_pooler_parks_new_clients_at_once() {
    const CROWD: usize = pgsluice::registry::PARK_AT_LOGIN_ABOVE + 50;
    let nofile = support::raise_nofile_limit();
    assert!(
        nofile >= 2 * CROWD as u64 + 200,
        "RLIMIT_NOFILE {nofile} too low"
    );
    support::bounded_for(Duration::from_secs(120), async {
        let pg = support::PgCluster::shared();
        let db = support::unique("crowd_db");
        pg.create_db(&db).await;
        let pooler = support::PoolerBuilder::new()
            .set("max_client_conn", &(CROWD + 100).to_string())
            .set("log_connections", "0")
            .set("log_disconnections", "0")
            .pg_database(pg, &db, "pool_size=2")
            .start()
            .await;
        let addr = pooler.addr();
        let mut crowd = Vec::new();
        while crowd.len() < CROWD {
            let batch = (0..(CROWD - crowd.len()).min(50)).map(|_| {
                let db = db.clone();
                async move {
                    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    support::wire::login_trust(&mut s, "postgres", &db).await;
                    s
                }
            });
            crowd.extend(futures_util::future::join_all(batch).await);
        }
        let ctx = pooler.pooler().context().clone();
        wait_counts(&pooler, |reg, parked| reg == CROWD && parked == CROWD).await;
        for i in 0..3 {
            // Parked at login, not by the sweep. The sweep parks a session
            // only at the second tick after it went idle (a session idle in
            // epoch E parks at the sweep that ends epoch E + 1), so a client
            // seen parked while the epoch is still at most one past the one
            // read before it connected was parked at once. One that two
            // ticks overtook (a slow moment) shows nothing either way:
            // another client tries again.
            let mut at_once = None;
            for _ in 0..5 {
                let before = ctx.epoch.load(Ordering::Relaxed);
                let c = pooler.connect(&db, "postgres", "").await;
                wait_counts(&pooler, |reg, parked| {
                    reg == CROWD + 1 && parked == CROWD + 1
                })
                .await;
                if ctx.epoch.load(Ordering::Relaxed) <= before + 1 {
                    at_once = Some(c);
                    break;
                }
                drop(c);
                wait_counts(&pooler, |reg, _| reg == CROWD).await;
            }
            let c = at_once.unwrap_or_else(|| panic!("client {i} was not parked at login"));
            assert_eq!(one(&c, &format!("SELECT {i}")).await, i.to_string());
            drop(c);
            wait_counts(&pooler, |reg, _| reg == CROWD).await;
        }
        drop(crowd);
    })
    .await
}

/// A session idle between transactions, still in its task (not parked), is
/// woken by a close without sending anything: the task's waker, stored in
/// the registry entry once per client, still reaches it after many
/// transactions.
#[tokio::test]
async fn an_idle_session_is_woken_by_a_close_after_many_transactions() {
    bounded(async {
        // No client_login_timeout: the login stores no waker in the entry,
        // so the session's own registration is what a close wakes.
        let pg = support::PgCluster::shared();
        let db = support::unique("idle_wake_db");
        pg.create_db(&db).await;
        let pooler = support::PoolerBuilder::new()
            .set("pool_mode", "transaction")
            .set("client_login_timeout", "0")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let mut s = pooler.raw_connect().await;
        wire::login_trust(&mut s, "postgres", &db).await;
        for _ in 0..20 {
            wire::simple_query(&mut s, "SELECT 1").await.unwrap();
        }
        let ctx = pooler.pooler().context().clone();
        // Parking takes a second of idleness: this session is in its task.
        assert_eq!(ctx.registry.counts().1, 0, "parked already");
        for t in ctx.registry.all() {
            t.kill();
        }
        let msgs = tokio::time::timeout(Duration::from_secs(3), wire::read_to_close(&mut s))
            .await
            .expect("the idle session was not woken by the close")
            .unwrap();
        let err = msgs
            .iter()
            .find(|m| m.tag == b'E')
            .unwrap_or_else(|| panic!("closed without an error: {msgs:?}"));
        assert_eq!(err.sqlstate(), "57P01", "{:?}", err.fields());
        assert!(err.message().contains("KILL"), "{}", err.message());
    })
    .await
}
