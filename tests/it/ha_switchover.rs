//! The health checker, SHOW HOSTS, split brain, SWITCHOVER and UNFENCE,
//! against a real primary and a pg_basebackup standby.

use crate::support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, sqlstate, value};
use tokio_postgres::{Client, SimpleQueryMessage};

const ADMIN: &str = "ha_admin";

/// A pooler with database `app` on `hosts` (host:port pairs) wanting the
/// primary, checked every half second.
async fn pooler(hosts: &[&PgCluster], extra_entries: &[(&str, String)]) -> TestPooler {
    let ports: Vec<String> = hosts.iter().map(|c| c.port().to_string()).collect();
    let list = vec!["127.0.0.1"; hosts.len()].join(",");
    let mut b = PoolerBuilder::new()
        .trust(ADMIN)
        .trust("weak")
        .set("admin_users", ADMIN)
        .set("host_check_period", "0.5")
        .set("metrics_listen_addr", "127.0.0.1:0")
        .database(
            "app",
            &format!(
                "host={list} port={} dbname=postgres target_session_attrs=read-write",
                ports.join(",")
            ),
        );
    for (name, entry) in extra_entries {
        b = b.database(name, entry);
    }
    b.start().await
}

/// The metrics page of `p` (which listens for it on 127.0.0.1).
async fn scrape(p: &TestPooler) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = p
        .pooler()
        .metrics_addr()
        .expect("metrics_listen_addr is set");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).await.unwrap();
    page
}

/// SHOW HOSTS rows of `db`: port -> (role, state, lag_bytes, last_error).
async fn hosts(admin: &Client, db: &str) -> Vec<(String, String, String, String, String)> {
    let msgs = admin.simple_query("SHOW HOSTS").await.unwrap();
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) if r.get("database") == Some(db) => Some((
                r.get("port").unwrap().to_string(),
                r.get("role").unwrap().to_string(),
                r.get("state").unwrap().to_string(),
                r.get("lag_bytes").unwrap_or("NULL").to_string(),
                r.get("last_error").unwrap_or("").to_string(),
            )),
            _ => None,
        })
        .collect()
}

/// Poll SHOW HOSTS until `ok` holds for `db`'s rows (10 s at most).
async fn hosts_until(
    admin: &Client,
    db: &str,
    ok: impl Fn(&[(String, String, String, String, String)]) -> bool,
) -> Vec<(String, String, String, String, String)> {
    let mut last = Vec::new();
    for _ in 0..200 {
        last = hosts(admin, db).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("SHOW HOSTS never got there: {last:?}");
}

fn row<'a>(
    rows: &'a [(String, String, String, String, String)],
    c: &PgCluster,
) -> &'a (String, String, String, String, String) {
    rows.iter()
        .find(|r| r.0 == c.port().to_string())
        .unwrap_or_else(|| panic!("no row for port {}: {rows:?}", c.port()))
}

#[tokio::test]
async fn health_checks_show_roles_and_lag_and_notice_a_promotion() {
    bounded_for(Duration::from_secs(120), async {
        let primary = PgCluster::dedicated();
        let standby = PgCluster::standby_of(&primary);
        let p = pooler(&[&primary, &standby], &[]).await;
        let admin = p.connect("pgbouncer", ADMIN, "").await;
        // A pool gives the checker its login.
        let c = p.connect("app", "postgres", "").await;
        c.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        let rows = hosts_until(&admin, "app", |rows| {
            rows.len() == 2
                && rows.iter().all(|r| r.2 == "up")
                && rows.iter().any(|r| r.1 == "standby" && r.3 == "0")
        })
        .await;
        assert_eq!(row(&rows, &primary).1, "primary", "{rows:?}");
        assert_eq!(row(&rows, &primary).3, "NULL", "{rows:?}");
        assert_eq!(row(&rows, &standby).1, "standby", "{rows:?}");
        // The same on /metrics.
        let page = scrape(&p).await;
        for (port, primary_value) in [(primary.port(), 1), (standby.port(), 0)] {
            let line =
                format!("pgsluice_host_primary{{host=\"127.0.0.1:{port}\"}} {primary_value}");
            assert!(page.contains(&line), "{line} not in:\n{page}");
        }
        assert!(
            page.contains(&format!(
                "pgsluice_host_lag_bytes{{host=\"127.0.0.1:{}\"}} 0",
                standby.port()
            )),
            "{page}"
        );

        // No traffic: the checker alone notices the promotion.
        drop(c);
        primary.stop_immediate();
        standby.promote();
        let promoted = Instant::now();
        let rows = hosts_until(&admin, "app", |rows| {
            rows.iter()
                .any(|r| r.0 == standby.port().to_string() && r.1 == "primary")
        })
        .await;
        eprintln!(
            "the checker saw the promotion after {:?}",
            promoted.elapsed()
        );
        let old = row(&rows, &primary);
        assert_eq!(old.2, "down", "{rows:?}");
        assert!(!old.4.is_empty(), "the reason is shown: {rows:?}");
        let c = p.connect("app", "postgres", "").await;
        assert_eq!(value(&c, "SELECT count(*) FROM t").await, "1");
    })
    .await
}

#[tokio::test]
async fn split_brain_fences_the_host_that_became_primary_last() {
    bounded_for(Duration::from_secs(120), async {
        let primary = PgCluster::dedicated();
        let standby = PgCluster::standby_of(&primary);
        let p = pooler(&[&primary, &standby], &[]).await;
        let admin = p.connect("pgbouncer", ADMIN, "").await;
        let c = p.connect("app", "postgres", "").await;
        c.batch_execute("CREATE TABLE t (x int)").await.unwrap();
        hosts_until(&admin, "app", |rows| rows.iter().any(|r| r.1 == "standby")).await;
        // Promoted while the primary still runs: two primaries.
        standby.promote();
        let rows = hosts_until(&admin, "app", |rows| rows.iter().any(|r| r.1 == "fenced")).await;
        let fenced = row(&rows, &standby);
        assert_eq!(fenced.1, "fenced", "{rows:?}");
        assert!(fenced.4.contains("split brain"), "{rows:?}");
        assert_eq!(row(&rows, &primary).1, "primary", "{rows:?}");
        // Writes stay on the primary of before.
        for _ in 0..5 {
            let c = p.connect("app", "postgres", "").await;
            c.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
            assert_eq!(
                value(&c, "SELECT inet_server_port()").await,
                primary.port().to_string()
            );
        }
        // UNFENCE takes it back; it is still a second primary, so the
        // checker fences it again. A host that is not fenced is refused.
        let target = format!("127.0.0.1:{}", standby.port());
        admin
            .simple_query(&format!("UNFENCE app {target}"))
            .await
            .unwrap();
        hosts_until(&admin, "app", |rows| rows.iter().any(|r| r.1 == "fenced")).await;
        let e = admin
            .simple_query(&format!("UNFENCE app 127.0.0.1:{}", primary.port()))
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
        // RELOAD unfences too.
        admin.simple_query("RELOAD").await.unwrap();
        let st = hosts(&admin, "app").await;
        assert_ne!(row(&st, &standby).1, "fenced", "{st:?}");
    })
    .await
}

/// Writers inserting ids into `ledger` through the pooler until `stop`;
/// each returns (ids acknowledged, errors).
fn writers(
    p: &TestPooler,
    n: u32,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Vec<u32>, Vec<String>)>> {
    (0..n)
        .map(|w| {
            let cfg = p.config("app", "postgres", "");
            let stop = stop.clone();
            tokio::spawn(async move {
                let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                let (mut acked, mut errors) = (Vec::new(), Vec::new());
                let mut i = 0;
                // Stops on a closed connection (its error is recorded) and
                // yields each time, so an error that comes back at once
                // cannot spin.
                while !stop.load(Ordering::Relaxed) && !c.is_closed() {
                    tokio::task::yield_now().await;
                    let id = w * 1_000_000 + i;
                    i += 1;
                    match c
                        .simple_query(&format!("INSERT INTO ledger VALUES ({id})"))
                        .await
                    {
                        Ok(_) => acked.push(id),
                        Err(e) => errors.push(format!(
                            "{e}: {}",
                            support::db_message(&e).unwrap_or_default()
                        )),
                    }
                }
                (acked, errors)
            })
        })
        .collect()
}

#[tokio::test]
async fn switchover_under_load_fails_nothing_and_loses_nothing() {
    bounded_for(Duration::from_secs(180), async {
        let primary = PgCluster::dedicated();
        primary.sql("CREATE ROLE weak LOGIN").await;
        let standby = PgCluster::standby_of(&primary);
        let weak = format!(
            "host=127.0.0.1,127.0.0.1 port={},{} dbname=postgres user=weak",
            primary.port(),
            standby.port()
        );
        let single = format!("host=127.0.0.1 port={} dbname=postgres", primary.port());
        let p = pooler(
            &[&primary, &standby],
            &[("weak_app", weak), ("single", single)],
        )
        .await;
        let admin = p.connect("pgbouncer", ADMIN, "").await;
        let to_standby = format!("127.0.0.1:{}", standby.port());
        let refused = |cmd: String| {
            let admin = &admin;
            async move {
                let e = admin.simple_query(&cmd).await.unwrap_err();
                assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{cmd}: {e}");
                support::db_message(&e).unwrap_or_default()
            }
        };
        // Refusals change nothing.
        let m = refused(format!("SWITCHOVER app TO {to_standby}")).await;
        assert!(m.contains("no pool"), "{m}");
        let c = p.connect("app", "postgres", "").await;
        c.batch_execute("CREATE TABLE ledger (id int PRIMARY KEY)")
            .await
            .unwrap();
        let m = refused(format!("SWITCHOVER app TO 127.0.0.1:{}", primary.port())).await;
        assert!(m.contains("not a standby"), "{m}");
        let m = refused("SWITCHOVER app TO elsewhere".into()).await;
        assert!(m.contains("not a host"), "{m}");
        let m = refused(format!("SWITCHOVER single TO {to_standby}")).await;
        assert!(m.contains("one host"), "{m}");
        let w = p.connect("weak_app", "weak", "").await;
        assert_eq!(value(&w, "SELECT 1").await, "1");
        let m = refused(format!("SWITCHOVER weak_app TO {to_standby}")).await;
        assert!(m.contains("may not run pg_promote"), "{m}");
        assert_eq!(value(&c, "SELECT pg_is_in_recovery()::text").await, "false");
        drop(c);

        // pgbench's read-write transactions (prepared statements) too.
        let pgbench = support::tool("pgbench").expect("pgbench (postgresql-client)");
        let init = tokio::process::Command::new(&pgbench)
            .args(["-i", "-q", "-s", "1", "-h"])
            .arg(primary.socket_dir())
            .args([
                "-p",
                &primary.port().to_string(),
                "-U",
                "postgres",
                "postgres",
            ])
            .output()
            .await
            .unwrap();
        assert!(init.status.success(), "{init:?}");
        let bench = tokio::process::Command::new(&pgbench)
            .args([
                "-n",
                "-M",
                "prepared",
                "-c",
                "2",
                "-j",
                "1",
                "-T",
                "3",
                "-h",
                "127.0.0.1",
            ])
            .args(["-p", &p.addr().port().to_string(), "-U", "postgres", "app"])
            .output();
        let bench = tokio::spawn(bench);
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = writers(&p, 4, stop.clone());
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let msgs = admin
            .simple_query(&format!("SWITCHOVER app TO {to_standby}"))
            .await
            .unwrap();
        let held = msgs
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r.get("held_ms").unwrap().to_string()),
                _ => None,
            })
            .expect("a row with the hold time");
        eprintln!("SWITCHOVER held the database's traffic for {held} ms");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::Relaxed);
        let mut acked = BTreeSet::new();
        let mut errors = Vec::new();
        for t in tasks {
            let (a, e) = t.await.unwrap();
            acked.extend(a);
            errors.extend(e);
        }
        assert!(errors.is_empty(), "failed transactions: {errors:?}");
        let bench = bench.await.unwrap().unwrap();
        let report = String::from_utf8_lossy(&bench.stdout);
        assert!(bench.status.success(), "pgbench failed: {bench:?}");
        assert!(
            report.contains("number of failed transactions: 0"),
            "{report}"
        );
        assert!(acked.len() > 20, "the writers wrote: {}", acked.len());

        // Every acknowledged row is on the new primary, which takes writes.
        let direct = standby
            .direct_client("postgres", support::pg::SUPERUSER)
            .await;
        let rows = direct.simple_query("SELECT id FROM ledger").await.unwrap();
        let there: BTreeSet<u32> = support::rows_col0(&rows)
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        let lost: Vec<&u32> = acked.difference(&there).collect();
        assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
        let c = p.connect("app", "postgres", "").await;
        assert_eq!(
            value(&c, "SELECT inet_server_port()").await,
            standby.port().to_string()
        );
        let st = hosts(&admin, "app").await;
        assert_eq!(row(&st, &primary).1, "fenced", "{st:?}");
    })
    .await
}
