//! Host lists and roles: `host=a,b` with load_balance_hosts (PgBouncer's
//! meaning, and a host that cannot be reached is skipped at once),
//! `port=` lists, target_session_attrs against a real primary and a hot
//! standby made by pg_basebackup, and following a failover (the primary
//! killed, the standby promoted) without the client seeing an error.

use crate::support;

use std::time::{Duration, Instant};

use support::{PgCluster, PoolerBuilder, bounded, bounded_for, value};

/// Where the server of this session's transaction is: its address, or
/// "unix" over a Unix socket.
const WHERE: &str = "SELECT coalesce(host(inet_server_addr()), 'unix')";

/// Open `n` transactions at once through `db`, each holding its server,
/// and say where each server is.
async fn held_servers(pooler: &support::TestPooler, db: &str, n: usize) -> Vec<String> {
    let mut clients = Vec::new();
    let mut places = Vec::new();
    for _ in 0..n {
        let c = pooler.connect(db, "postgres", "").await;
        c.simple_query("BEGIN").await.unwrap();
        places.push(value(&c, WHERE).await);
        clients.push(c);
    }
    for c in &clients {
        c.simple_query("COMMIT").await.unwrap();
    }
    places
}

#[tokio::test]
async fn round_robin_spreads_new_connections_over_the_hosts() {
    bounded(async {
        let pg = PgCluster::shared();
        let hosts = format!("127.0.0.1,{}", pg.socket_dir().display());
        let pooler = PoolerBuilder::new()
            .trust("ha_admin")
            .set("admin_users", "ha_admin")
            .database(
                "rr",
                &format!("host={hosts} port={} dbname=postgres", pg.port()),
            )
            .start()
            .await;
        let places = held_servers(&pooler, "rr", 4).await;
        assert_eq!(places, ["127.0.0.1", "unix", "127.0.0.1", "unix"]);
        // SHOW POOLS says where the pool's servers are.
        let admin = pooler.connect("pgbouncer", "ha_admin", "").await;
        let rows = admin.simple_query("SHOW POOLS").await.unwrap();
        let hosts = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) if r.get("database") == Some("rr") => {
                    r.get("server_hosts").map(String::from)
                }
                _ => None,
            })
            .expect("a pool row with server_hosts");
        let port = pg.port();
        assert_eq!(hosts, format!("127.0.0.1:{port}=2,unix:{port}=2"));
    })
    .await
}

#[tokio::test]
async fn disable_keeps_to_one_host_and_skips_one_that_cannot_be_reached() {
    bounded(async {
        let pg = PgCluster::shared();
        // The first host does not resolve: the first connection goes on to
        // the next host at once (PgBouncer fails it and waits
        // server_login_retry), and the following ones stay there.
        let hosts = format!(
            "no-such-host.invalid,127.0.0.1,{}",
            pg.socket_dir().display()
        );
        let pooler = PoolerBuilder::new()
            .set("server_login_retry", "30")
            .database(
                "one",
                &format!(
                    "host={hosts} port={} dbname=postgres load_balance_hosts=disable",
                    pg.port()
                ),
            )
            .start()
            .await;
        let places = held_servers(&pooler, "one", 3).await;
        assert_eq!(places, ["127.0.0.1", "127.0.0.1", "127.0.0.1"]);
    })
    .await
}

#[tokio::test]
async fn a_port_list_gives_each_host_its_port() {
    bounded(async {
        let pg = PgCluster::shared();
        let other = PgCluster::dedicated();
        let pooler = PoolerBuilder::new()
            .database(
                "two",
                &format!(
                    "host=127.0.0.1,127.0.0.1 port={},{} dbname=postgres",
                    pg.port(),
                    other.port()
                ),
            )
            .start()
            .await;
        let mut ports = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let c = pooler.connect("two", "postgres", "").await;
            c.simple_query("BEGIN").await.unwrap();
            ports.push(value(&c, "SELECT inet_server_port()").await);
            clients.push(c);
        }
        assert_eq!(ports, [pg.port().to_string(), other.port().to_string()]);
    })
    .await
}

/// A primary and a hot standby of it.
fn primary_and_standby() -> (PgCluster, PgCluster) {
    let primary = PgCluster::dedicated();
    let standby = PgCluster::standby_of(&primary);
    (primary, standby)
}

#[tokio::test]
async fn target_session_attrs_choose_the_host_by_its_role() {
    bounded(async {
        let (primary, standby) = primary_and_standby();
        let second = PgCluster::standby_of(&primary);
        primary.wait_for_standbys(2).await;
        let (p, s) = (primary.port(), standby.port());
        let entry = |ports: String, attrs: &str| {
            format!(
                "host=127.0.0.1,127.0.0.1 port={ports} dbname=postgres target_session_attrs={attrs}"
            )
        };
        let pooler = PoolerBuilder::new()
            // The standby is listed first for the read-write entries, the
            // primary first for the read-only ones.
            .database("rw", &entry(format!("{s},{p}"), "read-write"))
            .database("prim", &entry(format!("{s},{p}"), "primary"))
            .database("ro", &entry(format!("{p},{s}"), "read-only"))
            .database(
                "stby",
                &format!(
                    "{} primary_wait_timeout=3",
                    entry(format!("{p},{s}"), "standby")
                ),
            )
            .database("pref", &entry(format!("{p},{s}"), "prefer-standby"))
            .database("any", &entry(format!("{s},{p}"), "any"))
            .database(
                "two",
                &format!(
                    "host=127.0.0.1,127.0.0.1,127.0.0.1 port={p},{s},{} dbname=postgres target_session_attrs=standby",
                    second.port()
                ),
            )
            .start()
            .await;
        // Two standbys: new connections take each in turn, never the primary.
        let clients = futures_util::future::join_all((0..4).map(|_| pooler.connect("two", "postgres", ""))).await;
        let mut ports = std::collections::BTreeSet::new();
        for c in &clients {
            c.simple_query("BEGIN").await.unwrap();
            ports.insert(value(c, "SELECT inet_server_port()").await);
        }
        assert_eq!(
            ports,
            [s.to_string(), second.port().to_string()].into_iter().collect(),
            "database two"
        );
        drop(clients);
        let recovery = "SELECT pg_is_in_recovery()::text";
        for (db, in_recovery) in [
            ("rw", "false"),
            ("prim", "false"),
            ("ro", "true"),
            ("stby", "true"),
            ("pref", "true"),
            // Round-robin over both: standby, primary, standby (sorted).
            ("any", "false,true,true"),
        ] {
            // Several new connections, so round-robin would show a wrong host.
            let clients =
                futures_util::future::join_all((0..3).map(|_| pooler.connect(db, "postgres", "")))
                    .await;
            for c in &clients {
                c.simple_query("BEGIN").await.unwrap();
            }
            let mut seen = Vec::new();
            for c in &clients {
                seen.push(value(c, recovery).await);
                c.simple_query("COMMIT").await.unwrap();
            }
            seen.sort();
            let want: Vec<&str> = match in_recovery.split(',').collect::<Vec<_>>() {
                one if one.len() == 1 => vec![one[0]; 3],
                each => each,
            };
            assert_eq!(seen, want, "database {db}");
        }
        // prefer-standby takes the primary when the standby is down; a
        // standby-only entry waits primary_wait_timeout, then fails with
        // the reason of each host.
        standby.stop();
        let c = pooler.connect("pref", "postgres", "").await;
        assert_eq!(value(&c, recovery).await, "false");
        let c = pooler.connect("stby", "postgres", "").await;
        let started = Instant::now();
        let err = c.simple_query("SELECT 1").await.unwrap_err();
        let msg = support::db_message(&err).unwrap_or_default();
        assert_eq!(support::sqlstate(&err).as_deref(), Some("08006"), "{err}");
        assert!(msg.contains("no server is standby"), "{msg}");
        assert!(started.elapsed() >= Duration::from_secs(2), "{msg}");
    })
    .await
}

#[tokio::test]
async fn a_failover_is_followed_without_errors() {
    bounded_for(Duration::from_secs(180), async {
        let (primary, standby) = primary_and_standby();
        let pooler = PoolerBuilder::new()
            .database(
                "app",
                &format!(
                    "host=127.0.0.1,127.0.0.1 port={},{} dbname=postgres \
                     target_session_attrs=read-write primary_wait_timeout=60",
                    primary.port(),
                    standby.port()
                ),
            )
            .start()
            .await;
        let c = pooler.connect("app", "postgres", "").await;
        c.batch_execute("CREATE TABLE ledger (id int PRIMARY KEY); INSERT INTO ledger VALUES (1)")
            .await
            .unwrap();
        // Wait until the standby has the row, so no acknowledged write is
        // lost by the promotion below.
        let direct = standby
            .direct_client("postgres", support::pg::SUPERUSER)
            .await;
        support::poll(200, Duration::from_millis(50), || async {
            let n = direct
                .simple_query("SELECT count(*) FROM ledger")
                .await
                .ok()
                .map(|m| support::rows_col0(&m));
            (n == Some(vec!["1".to_string()])).then_some(())
        })
        .await
        .expect("the standby never replayed the row");
        drop(direct);

        primary.stop_immediate();
        // The client's next write waits for a primary instead of failing.
        let write = tokio::spawn(async move {
            let r = c.simple_query("INSERT INTO ledger VALUES (2)").await;
            (r.map(|_| ()), Instant::now(), c)
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!write.is_finished(), "the write did not wait for a primary");
        standby.promote();
        let promoted = Instant::now();
        let (result, done, c) = write.await.unwrap();
        result.expect("the write after the failover failed");
        eprintln!(
            "first write through pgsluice {:?} after the promotion",
            done.saturating_duration_since(promoted)
        );
        assert_eq!(value(&c, "SELECT count(*) FROM ledger").await, "2");
        assert_eq!(value(&c, "SELECT pg_is_in_recovery()::text").await, "false");
    })
    .await
}
