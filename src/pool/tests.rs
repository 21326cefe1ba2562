//! Unit tests of pool accounting that need no PostgreSQL: a server
//! connection is faked over a local socket.

use std::sync::Arc;

use super::{Pool, PoolSettings, Pools, Role};
use crate::config::Endpoint;
use crate::server::{ServerConn, ServerCredentials, ServerTarget};
use crate::transport::Stream;

/// The one endpoint of these tests' pools.
static ENDPOINT: std::sync::LazyLock<Endpoint> = std::sync::LazyLock::new(|| Endpoint::Tcp {
    host: "127.0.0.1".into(),
    port: 1,
});

/// A pool identity at the tests' endpoint.
fn at<'a>(database: &'a str, user: &'a str) -> (&'a str, &'a str, &'static Endpoint, Role) {
    (database, user, &ENDPOINT, Role::Any)
}

fn settings(size: usize) -> PoolSettings {
    let target = ServerTarget {
        addr: Arc::new(Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        }),
        database: "d".into(),
        user: "u".into(),
        startup_params: vec![],
        tls: None,
        tcp: Default::default(),
    };
    let mut s = PoolSettings::with_defaults(target, ServerCredentials::None);
    s.size = size;
    s
}

/// A counted server of `pool` over a loopback socket.
async fn fake_server(pool: &Arc<Pool>) -> Box<ServerConn> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = tokio::net::TcpStream::connect(l.local_addr().unwrap())
        .await
        .unwrap();
    pool.state.lock().total += 1;
    let owner: std::sync::Weak<dyn crate::server::SlotOwner> = Arc::downgrade(pool) as _;
    let mut server = ServerConn::new(Stream::from(stream), pool.settings().target.addr.clone());
    server.owner = Some(owner);
    server
}

fn pool(size: usize) -> Arc<Pool> {
    let pools = Pools::new();
    pools.get_or_create(at("d", "u"), 0, || settings(size))
}

#[tokio::test]
async fn a_server_dropped_in_use_frees_its_slot() {
    let pool = pool(1);
    let s = fake_server(&pool).await;
    assert_eq!(pool.counts().total, 1);
    // A session aborted mid-transaction drops its server.
    drop(s);
    assert_eq!(pool.counts().total, 0);
}

#[tokio::test]
async fn discarded_and_idle_closed_servers_are_counted_once() {
    let pool = pool(2);
    let a = fake_server(&pool).await;
    let b = fake_server(&pool).await;
    pool.discard(a);
    assert_eq!(pool.counts().total, 1);
    pool.checkin(b);
    assert_eq!((pool.counts().total, pool.counts().idle), (1, 1));
    pool.close_idle();
    assert_eq!(pool.counts().total, 0);
}

#[tokio::test]
async fn a_paused_pool_closes_released_servers_and_hands_out_nothing() {
    let pools = Pools::new();
    let pool = pools.get_or_create(at("d", "u"), 0, || settings(1));
    let s = fake_server(&pool).await;
    let cfg = crate::config::load_str(
        "[pgbouncer]\nauth_type=any\n[databases]\nd=host=127.0.0.1\n",
        std::path::Path::new("t.ini"),
    )
    .unwrap()
    .config;
    let pause = pools.pause(&cfg, Some("d"));
    tokio::pin!(pause);
    // Not done while the server is in use.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), &mut pause)
            .await
            .is_err()
    );
    pool.checkin(s);
    tokio::time::timeout(std::time::Duration::from_secs(2), &mut pause)
        .await
        .expect("PAUSE returns once the server is released")
        .unwrap();
    assert_eq!(pool.counts().total, 0);
    assert!(pools.resume(&cfg, Some("d")).is_ok());
    assert!(pools.resume(&cfg, Some("d")).is_err());
}

#[test]
fn pools_are_found_by_borrowed_names_and_by_key() {
    let pools = Pools::new();
    let a = pools.get_or_create(at("db", "alice"), 0, || settings(1));
    let again = pools.get_or_create(at("db", "alice"), 0, || panic!("created twice"));
    assert!(Arc::ptr_eq(&a, &again));
    // The owned key hashes and compares as the borrowed pair.
    let key = super::PoolKey {
        database: "db".into(),
        user: "alice".into(),
        endpoint: ENDPOINT.clone(),
        role: Role::Any,
    };
    assert!(Arc::ptr_eq(&pools.get(&key).unwrap(), &a));
    // Names are not concatenated: ("dba", "lice") is another pool.
    let b = pools.get_or_create(at("dba", "lice"), 0, || settings(1));
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(pools.all().len(), 2);
}

#[test]
fn per_transaction_settings_follow_every_store() {
    use crate::config::PoolMode;
    use std::time::Duration;
    let pools = Pools::new();
    let pool = pools.get_or_create(at("d", "u"), 0, || settings(1));
    let s = pool.settings_full();
    // Defaults: no reset after each transaction (server_reset_query_always
    // is off), transaction mode.
    assert!(!pool.reset_always());
    assert_eq!(pool.link_settings().mode, s.mode);
    let mut next = (*s).clone();
    next.mode = PoolMode::Statement;
    next.query_timeout = Duration::from_millis(1500);
    next.idle_transaction_timeout = Duration::from_secs(7);
    next.reset_query_always = true;
    next.reset_query = "DISCARD ALL".into();
    next.round_robin = true;
    next.lifetime = Duration::from_secs(3);
    next.check_query = None;
    next.check_delay = Duration::ZERO;
    pool.set_settings(next.clone());
    next.transaction_timeout = Duration::from_secs(9);
    pool.set_settings(next.clone());
    let link = pool.link_settings();
    assert_eq!(link.mode, PoolMode::Statement);
    // Whole seconds, rounded up.
    assert_eq!(link.query_timeout_s, 2);
    assert_eq!(link.idle_transaction_timeout_s, 7);
    assert_eq!(link.transaction_timeout_s, 9);
    assert!(pool.reset_always());
    assert!(pool.hot.round_robin());
    assert_eq!(pool.hot.lifetime_ns(), 3_000_000_000);
    // No check query: never checked, whatever the delay.
    assert!(!pool.hot.needs_check(u64::MAX - 1));
    next.check_query = Some("SELECT 1".into());
    next.check_delay = Duration::from_secs(30);
    // Always reset only with a query to run.
    next.reset_query = String::new();
    pool.set_settings(next);
    assert!(!pool.reset_always());
    assert!(!pool.hot.needs_check(29_000_000_000));
    assert!(pool.hot.needs_check(30_000_000_000));
}

#[tokio::test]
async fn a_checkout_prefers_a_recent_idle_server_on_its_own_shard() {
    let pool = pool(8);
    let mut idle = std::collections::VecDeque::new();
    // Oldest first; this thread is shard 0.
    for (id, home) in [(1, 0), (2, 0), (3, 7), (4, 7)] {
        let mut s = fake_server(&pool).await;
        s.id = id;
        s.home = home;
        idle.push_back(s);
    }
    // The most recent one on shard 0, past two of another shard.
    assert_eq!(super::checkout::pop_lifo(&mut idle).unwrap().id, 2);
    assert_eq!(super::checkout::pop_lifo(&mut idle).unwrap().id, 1);
    // None here: the most recent.
    assert_eq!(super::checkout::pop_lifo(&mut idle).unwrap().id, 4);
    // However far back it is.
    let mut idle = std::collections::VecDeque::new();
    for (id, home) in [(1, 0), (2, 7), (3, 7), (4, 7), (5, 7), (6, 7), (7, 7)] {
        let mut s = fake_server(&pool).await;
        s.id = id;
        s.home = home;
        idle.push_back(s);
    }
    assert_eq!(super::checkout::pop_lifo(&mut idle).unwrap().id, 1);
    // None here: the most recent.
    assert_eq!(super::checkout::pop_lifo(&mut idle).unwrap().id, 7);
    for s in idle {
        pool.discard(s);
    }
}

/// A reload that changes a database's host keeps its pool (clients,
/// statistics, waiters stay) and points it at the new host, under the new
/// key; its servers are replaced as they are released, as before pools
/// were keyed by endpoint.
#[test]
fn a_reload_moves_a_pool_to_its_new_host() {
    let load = |host: &str| {
        let ini = format!("[databases]\nd = host={host} port=5432\n[pgbouncer]\nauth_type=any\n");
        crate::config::load_str(&ini, std::path::Path::new("x.ini"))
            .unwrap()
            .config
    };
    let (before, after) = (load("10.0.0.1"), load("10.0.0.2"));
    let pools = Pools::new();
    let db = before.databases.lookup("d").unwrap();
    let old = db.endpoints()[0].clone();
    let pool = pools.get_or_create(("d", "u", &old, Role::Any), 0, || {
        PoolSettings::resolve(&before, db, ("d", "u"), &old)
    });
    let generation = pool.generation.load(std::sync::atomic::Ordering::Relaxed);
    pools.apply_config(&after);
    let new = after.databases.lookup("d").unwrap().endpoints()[0].clone();
    assert_eq!(pool.key().endpoint, new);
    assert_eq!(*pool.settings().target.addr, new);
    assert!(pool.generation.load(std::sync::atomic::Ordering::Relaxed) > generation);
    let key = |endpoint: &Endpoint| super::PoolKey {
        database: "d".into(),
        user: "u".into(),
        endpoint: endpoint.clone(),
        role: Role::Any,
    };
    assert!(Arc::ptr_eq(&pools.get(&key(&new)).unwrap(), &pool));
    assert!(pools.get(&key(&old)).is_none());
    assert_eq!(pools.all().len(), 1);
}

/// A pool noted as starved under a shared limit whose client left (or was
/// served another way) does not make the other pools close the servers
/// they give back: they stay idle for the next client.
#[tokio::test]
async fn servers_are_not_closed_for_a_pool_that_no_longer_waits() {
    let pools = Pools::new();
    let limited = |user: &'static str| {
        pools.get_or_create(at("d", user), 0, || {
            let mut s = settings(1);
            s.max_db_connections = 1;
            s.check_query = None;
            s
        })
    };
    let (a, b) = (limited("a"), limited("b"));
    let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
    let addr = a.settings().target.addr.clone();
    a.adopt(ServerConn::new(Stream::from(ours), addr));
    let server = a.checkout().await.unwrap();
    // b's client queues behind the full limit, then leaves.
    {
        let wait = std::pin::pin!(b.checkout());
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(wait.poll(&mut cx).is_pending());
        assert!(b.has_waiters());
    }
    assert!(!b.has_waiters());
    a.checkin(server);
    assert_eq!(a.counts().idle, 1, "kept idle: nobody waits for room");
    assert_eq!(a.events.closed_total(crate::server::ServerEnd::Evicted), 0);
}
