//! The Prometheus endpoint (`metrics_listen_addr`): after a pgbench load,
//! with one client in a transaction, one waiting and one idle, the scraped
//! figures equal SHOW STATS and SHOW POOLS read from the admin console.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, fresh_dbs, poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{Client, SimpleQueryMessage};

const ADMIN: &str = "metrics_admin";

/// `GET path`: status line, headers and body.
async fn get(p: &TestPooler, path: &str) -> (String, String) {
    let addr = p.pooler().metrics_addr().expect("metrics endpoint");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.to_string(), body.to_string())
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap();
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{page}"))
        .rsplit_once(' ')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

/// A console SHOW's row for `first` as column -> value.
async fn show_row(c: &Client, sql: &str, key: &[&str]) -> HashMap<String, String> {
    let msgs = c.simple_query(sql).await.unwrap();
    let mut cols = Vec::new();
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(d) => {
                cols = d.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(r)
                if key.iter().enumerate().all(|(i, k)| r.get(i) == Some(k)) =>
            {
                return cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), r.get(i).unwrap_or("").to_string()))
                    .collect();
            }
            _ => {}
        }
    }
    panic!("{sql}: no row {key:?}");
}

fn int(row: &HashMap<String, String>, col: &str) -> u64 {
    row[col].parse().unwrap()
}

#[tokio::test]
async fn scraped_figures_equal_show_stats_and_show_pools() {
    bounded_for(Duration::from_secs(180), async {
        let pg = PgCluster::shared();
        let (db, pgbench) = support::pgbench_db("metrics").await;
        let p = PoolerBuilder::new()
            .trust(ADMIN)
            .set("admin_users", ADMIN)
            .set("metrics_listen_addr", "127.0.0.1:0")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let port = p.addr().port().to_string();
        let bench = tokio::process::Command::new(&pgbench)
            .args(["-n", "-c", "3", "-j", "1", "-t", "30", "-h", "127.0.0.1"])
            .args(["-p", &port, "-U", "postgres", &db])
            .output()
            .await
            .unwrap();
        assert!(bench.status.success(), "{bench:?}");
        let admin = p.connect("pgbouncer", ADMIN, "").await;
        // Links are counted just after their last answer: wait until the
        // figures stop moving.
        let mut last = u64::MAX;
        for _ in 0..100 {
            let row = show_row(&admin, "SHOW STATS", &[&db]).await;
            let n = int(&row, "total_xact_count");
            if n >= 90 && n == last {
                break;
            }
            last = n;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // One client in a transaction (holding the only server), one
        // waiting for it, one idle.
        let busy = p.connect(&db, "postgres", "").await;
        busy.simple_query("BEGIN").await.unwrap();
        let waiting = p.connect(&db, "postgres", "").await;
        let wait = tokio::spawn(async move { waiting.simple_query("SELECT 1").await.map(|_| ()) });
        let _idle = p.connect(&db, "postgres", "").await;
        let queued = poll(100, Duration::from_millis(50), || async {
            let row = show_row(&admin, "SHOW POOLS", &[&db, "postgres"]).await;
            (row["cl_waiting"] == "1").then_some(())
        })
        .await;
        assert!(queued.is_some(), "the third client never waited");

        let stats = show_row(&admin, "SHOW STATS", &[&db]).await;
        let pools = show_row(&admin, "SHOW POOLS", &[&db, "postgres"]).await;
        let (head, page) = get(&p, "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");

        let l = [("database", db.as_str()), ("user", "postgres")];
        let m = |name: &str| sample(&page, name, &l);
        let counts = [
            (
                "pgsluice_server_assignments_total",
                "total_server_assignment_count",
            ),
            ("pgsluice_transactions_total", "total_xact_count"),
            ("pgsluice_queries_total", "total_query_count"),
            ("pgsluice_received_bytes_total", "total_received"),
            ("pgsluice_sent_bytes_total", "total_sent"),
            ("pgsluice_client_parses_total", "total_client_parse_count"),
            ("pgsluice_server_parses_total", "total_server_parse_count"),
            ("pgsluice_binds_total", "total_bind_count"),
            ("pgsluice_client_logins_total", "total_client_login_count"),
        ];
        for (metric, col) in counts {
            assert_eq!(m(metric) as u64, int(&stats, col), "{metric} vs {col}");
        }
        assert!(int(&stats, "total_xact_count") >= 90);
        let times = [
            ("pgsluice_transaction_seconds_total", "total_xact_time"),
            ("pgsluice_query_seconds_total", "total_query_time"),
            ("pgsluice_client_wait_seconds_total", "total_wait_time"),
        ];
        for (metric, col) in times {
            assert_eq!(
                (m(metric) * 1e6).round() as u64,
                int(&stats, col),
                "{metric} vs {col}"
            );
        }
        assert!(int(&stats, "total_query_time") > 0);

        let state = |name: &str, s: &str| sample(&page, name, &[l[0], l[1], ("state", s)]) as u64;
        assert_eq!(
            state("pgsluice_clients", "waiting"),
            int(&pools, "cl_waiting")
        );
        assert_eq!(
            state("pgsluice_clients", "active") + state("pgsluice_clients", "idle"),
            int(&pools, "cl_active")
        );
        assert_eq!(
            (
                state("pgsluice_clients", "active"),
                state("pgsluice_clients", "idle")
            ),
            (1, 1)
        );
        for (s, col) in [
            ("active", "sv_active"),
            ("idle", "sv_idle"),
            ("used", "sv_used"),
            ("tested", "sv_tested"),
            ("login", "sv_login"),
        ] {
            assert_eq!(state("pgsluice_servers", s), int(&pools, col), "{s}");
        }
        assert_eq!(m("pgsluice_pool_size"), 1.0);
        assert!(m("pgsluice_client_max_wait_seconds") >= 0.0);
        assert!(page.contains("# TYPE pgsluice_queries_total counter"));
        assert!(page.contains("# TYPE pgsluice_clients gauge"));

        busy.simple_query("COMMIT").await.unwrap();
        wait.await.unwrap().unwrap();
        let (head, _) = get(&p, "/nope").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        p.shutdown().await;
    })
    .await
}

/// Server connections opened and closed by reason, login failures and
/// client errors by SQLSTATE class.
#[tokio::test]
async fn server_events_and_errors_are_counted() {
    bounded_for(Duration::from_secs(120), async {
        let [db] = fresh_dbs(["metrics_events"]).await;
        let p = PoolerBuilder::new()
            .set("metrics_listen_addr", "127.0.0.1:0")
            .set("auth_type", "md5")
            .set("server_lifetime", "1")
            .auth_user("pw_user", "right")
            .pg_database(PgCluster::shared(), &db, "user=postgres pool_size=2")
            .start()
            .await;
        // A wrong password: a login failure, an error of class 28.
        assert!(p.try_connect(&db, "pw_user", "wrong").await.is_err());
        let c = p.connect(&db, "pw_user", "right").await;
        assert_eq!(support::value(&c, "SELECT 1").await, "1");
        // Past server_lifetime the server is closed at release or by the janitor.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(support::value(&c, "SELECT 2").await, "2");
        let labels = [("database", db.as_str()), ("user", "postgres")];
        let page = poll(50, Duration::from_millis(100), || async {
            let (_, page) = get(&p, "/metrics").await;
            let lifetime = [labels[0], labels[1], ("reason", "lifetime")];
            (sample(&page, "pgsluice_server_connections_closed_total", &lifetime) >= 1.0)
                .then_some(page)
        })
        .await
        .expect("no server closed for lifetime");
        assert!(sample(&page, "pgsluice_server_connections_opened_total", &labels) >= 1.0);
        let failures = [("sqlstate", "28P01")];
        assert_eq!(
            sample(&page, "pgsluice_login_failures_total", &failures),
            1.0
        );
        assert!(sample(&page, "pgsluice_client_errors_total", &[("class", "28")]) >= 1.0);
        // TLS handshakes are counted by leg and result (process-wide: other
        // tests' handshakes count too, so only the family is checked here;
        // tls.rs checks that a failed handshake counts).
        for leg in ["client", "server"] {
            for result in ["ok", "failed"] {
                let l = [("leg", leg), ("result", result)];
                assert!(sample(&page, "pgsluice_tls_handshakes_total", &l) >= 0.0);
            }
        }
    })
    .await
}

/// Histograms: every transaction, query and assignment observed once; the
/// `+Inf` bucket equals `_count`, buckets never decrease.
#[tokio::test]
async fn latency_histograms_count_every_transaction() {
    bounded_for(Duration::from_secs(120), async {
        let [db] = fresh_dbs(["metrics_hist"]).await;
        let p = PoolerBuilder::new()
            .set("metrics_listen_addr", "127.0.0.1:0")
            .pg_database(PgCluster::shared(), &db, "pool_size=1")
            .start()
            .await;
        let c = p.connect(&db, "postgres", "").await;
        for i in 0..20 {
            support::value(&c, &format!("SELECT {i}")).await;
        }
        c.batch_execute("SELECT pg_sleep(0.3)").await.unwrap();
        let labels = [("database", db.as_str()), ("user", "postgres")];
        let page = poll(50, Duration::from_millis(100), || async {
            let (_, page) = get(&p, "/metrics").await;
            let n = sample(
                &page,
                "pgsluice_transaction_duration_seconds_count",
                &labels,
            );
            (n == 21.0).then_some(page)
        })
        .await
        .expect("21 transactions observed");
        for h in ["transaction_duration_seconds", "query_duration_seconds"] {
            let name = format!("pgsluice_{h}_bucket");
            let inf = [labels[0], labels[1], ("le", "+Inf")];
            assert_eq!(sample(&page, &name, &inf), 21.0, "{h}");
            // The 0.3 s query is above 0.25 s whatever the machine does
            // (the others are usually below, but a loaded machine may
            // delay one: no timing is asserted).
            let le = [labels[0], labels[1], ("le", "0.25")];
            assert!(sample(&page, &name, &le) <= 20.0, "{h}");
        }
        let waits = sample(&page, "pgsluice_client_wait_seconds_count", &labels);
        let inf = [labels[0], labels[1], ("le", "+Inf")];
        assert_eq!(
            sample(&page, "pgsluice_client_wait_seconds_bucket", &inf),
            waits
        );
        assert!(waits >= 21.0);
    })
    .await
}

/// The health probes on the metrics listener: /healthz answers while the
/// process runs; /readyz is ready when every database has a host that
/// answers, and not ready (503, with the reason) under a global PAUSE or
/// when a database's only host is down.
#[tokio::test]
async fn health_and_readiness_probes() {
    bounded_for(Duration::from_secs(120), async {
        let [db] = fresh_dbs(["metrics_health"]).await;
        let dead_port = support::pg::free_port();
        let p = PoolerBuilder::new()
            .trust(ADMIN)
            .set("admin_users", ADMIN)
            .set("metrics_listen_addr", "127.0.0.1:0")
            .pg_database(PgCluster::shared(), &db, "pool_size=1")
            .start()
            .await;
        let (head, body) = get(&p, "/healthz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, "ok\n");
        let (head, body) = get(&p, "/readyz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
        assert!(body.starts_with("ready\n"), "{body}");
        assert!(body.contains(&format!("{db}: reachable (")), "{body}");

        // A global PAUSE: not ready until RESUME.
        let admin = p.connect("pgbouncer", ADMIN, "").await;
        admin.simple_query("PAUSE").await.unwrap();
        let (head, body) = get(&p, "/readyz").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}\n{body}");
        assert!(body.contains("paused"), "{body}");
        assert!(get(&p, "/healthz").await.0.starts_with("HTTP/1.1 200"));
        admin.simple_query("RESUME").await.unwrap();
        assert!(get(&p, "/readyz").await.0.starts_with("HTTP/1.1 200"));

        // A database whose only host is down: not ready, and it says which.
        let dead = PoolerBuilder::new()
            .set("metrics_listen_addr", "127.0.0.1:0")
            .pg_database(PgCluster::shared(), &db, "pool_size=1")
            .database(
                "gone",
                &format!("host=127.0.0.1 port={dead_port} dbname=postgres"),
            )
            .start()
            .await;
        let (head, body) = get(&dead, "/readyz").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}\n{body}");
        assert!(
            body.contains(&format!("gone: unreachable: 127.0.0.1:{dead_port}")),
            "{body}"
        );
        assert!(body.contains(&format!("{db}: reachable")), "{body}");
        // Any other path: 404.
        let (head, _) = get(&dead, "/nowhere").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    })
    .await
}
