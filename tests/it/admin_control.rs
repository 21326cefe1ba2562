//! The admin console's control commands, end to end: PAUSE/RESUME under
//! pgbench load with 0 failed transactions, RELOAD (and a refused invalid
//! file), SET, DISABLE/ENABLE, RECONNECT/WAIT_CLOSE, KILL and KILL_CLIENT
//! (a client stopped mid-transaction, its server closed, nothing leaked),
//! SHOW STATE/DATABASES reflecting it, and SHUTDOWN WAIT_FOR_CLIENTS.

use crate::support;

use std::time::Duration;

use support::{
    PgCluster, PoolerBuilder, TestPooler, backends_settle, bounded, bounded_for, fresh_dbs,
    rows_col0, sqlstate, tool, value as one,
};
use tokio_postgres::{Client, SimpleQueryMessage};

const ADMIN: &str = "ctl_admin";

async fn pooler(db: &str, extra: &str) -> TestPooler {
    PoolerBuilder::new()
        .trust(ADMIN)
        .set("admin_users", ADMIN)
        .pg_database(PgCluster::shared(), db, extra)
        .start()
        .await
}

async fn admin(p: &TestPooler) -> Client {
    p.connect("pgbouncer", ADMIN, "").await
}

/// Run a console command; Ok(its command tag) or the error's SQLSTATE.
async fn run(c: &Client, cmd: &str) -> Result<String, String> {
    match c.simple_query(cmd).await {
        Ok(msgs) => Ok(msgs
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::CommandComplete(_) => Some(cmd.to_string()),
                _ => None,
            })
            .unwrap_or_default()),
        Err(e) => Err(sqlstate(&e).unwrap_or_else(|| format!("{e:?}"))),
    }
}

/// `column` of the row whose first column is `key` in a SHOW.
async fn show_value(c: &Client, show: &str, key: &str, column: usize) -> String {
    let msgs = c.simple_query(show).await.unwrap();
    msgs.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) if r.get(0) == Some(key) => {
                Some(r.get(column).unwrap_or("NULL").to_string())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{show}: no row {key}"))
}

#[tokio::test]
async fn pause_resume_under_pgbench_fails_nothing() {
    bounded_for(Duration::from_secs(180), async {
        let (db, pgbench) = support::pgbench_db("ctl_bench").await;
        let p = pooler(&db, "pool_size=4").await;
        let port = p.addr().port().to_string();
        let bench = tokio::process::Command::new(&pgbench)
            .args(["-n", "-c", "8", "-j", "2", "-T", "6", "-h", "127.0.0.1"])
            .args(["-p", &port, "-U", "postgres", &db])
            .output();
        let bench = tokio::spawn(bench);
        let c = admin(&p).await;
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(800)).await;
            assert_eq!(
                run(&c, &format!("PAUSE {db}")).await.as_deref(),
                Ok(&*format!("PAUSE {db}"))
            );
            assert_eq!(show_value(&c, "SHOW DATABASES", &db, 15).await, "1");
            tokio::time::sleep(Duration::from_millis(500)).await;
            run(&c, &format!("RESUME {db}")).await.unwrap();
        }
        run(&c, "PAUSE").await.unwrap();
        assert_eq!(show_value(&c, "SHOW STATE", "paused", 1).await, "yes");
        run(&c, "RESUME").await.unwrap();
        assert_eq!(show_value(&c, "SHOW STATE", "paused", 1).await, "no");
        assert_eq!(run(&c, "RESUME").await, Err("55000".into()));
        let out = bench.await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("number of failed transactions: 0"), "{text}");
    })
    .await
}

#[tokio::test]
async fn reload_set_disable_reconnect_through_the_console() {
    bounded(async {
        let [db] = fresh_dbs(["ctl_misc"]).await;
        let p = pooler(&db, "pool_size=2").await;
        let c = admin(&p).await;
        // RELOAD of a valid file; of an invalid one: an error, nothing changes.
        run(&c, "RELOAD").await.unwrap();
        let ini = std::fs::read_to_string(p.ini_path()).unwrap();
        std::fs::write(p.ini_path(), ini.replace("pool_size=2", "pool_size=x")).unwrap();
        assert_eq!(run(&c, "RELOAD").await, Err("F0000".into()));
        std::fs::write(p.ini_path(), &ini).unwrap();
        // SET: changeable keys only.
        run(&c, "SET default_pool_size = 7").await.unwrap();
        assert_eq!(
            show_value(&c, "SHOW CONFIG", "default_pool_size", 1).await,
            "7"
        );
        assert_eq!(run(&c, "SET listen_port = 1").await, Err("55P02".into()));
        // DISABLE / ENABLE.
        run(&c, &format!("DISABLE {db}")).await.unwrap();
        assert_eq!(show_value(&c, "SHOW DATABASES", &db, 16).await, "1");
        let e = p.try_connect(&db, "postgres", "").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("57P03"));
        run(&c, &format!("ENABLE {db}")).await.unwrap();
        let client = p.connect(&db, "postgres", "").await;
        let before = one(&client, "SELECT pg_backend_pid()").await;
        // RECONNECT + WAIT_CLOSE: the next transaction gets a new server.
        run(&c, &format!("RECONNECT {db}")).await.unwrap();
        run(&c, &format!("WAIT_CLOSE {db}")).await.unwrap();
        assert_ne!(one(&client, "SELECT pg_backend_pid()").await, before);
        // PgBouncer answers console mistakes with 08P01.
        assert_eq!(run(&c, "DISABLE no_such_db").await, Err("08P01".into()));
    })
    .await
}

#[tokio::test]
async fn kill_and_kill_client_stop_clients_at_once() {
    bounded(async {
        let [db] = fresh_dbs(["ctl_kill"]).await;
        let p = pooler(&db, "pool_size=2").await;
        let c = admin(&p).await;
        // KILL_CLIENT of a client in the middle of a transaction.
        let victim = p.connect(&db, "postgres", "").await;
        victim.simple_query("BEGIN").await.unwrap();
        one(&victim, "SELECT 1").await;
        let bystander = p.connect(&db, "postgres", "").await;
        let msgs = c.simple_query("SHOW CLIENTS").await.unwrap();
        let ids: Vec<String> = msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) if r.get(4) == Some("active") => {
                    r.get(20).map(String::from)
                }
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 1, "one client linked to a server: {ids:?}");
        run(&c, &format!("KILL_CLIENT {}", ids[0])).await.unwrap();
        assert!(victim.simple_query("SELECT 2").await.is_err());
        // Its server was closed (rolled back) and its slot freed: both
        // servers can be used at once again.
        let other = p.connect(&db, "postgres", "").await;
        other.simple_query("BEGIN").await.unwrap();
        one(&other, "SELECT 3").await;
        let got = tokio::time::timeout(Duration::from_secs(5), one(&bystander, "SELECT 4")).await;
        assert_eq!(got.expect("the killed client's slot leaked"), "4");
        other.simple_query("COMMIT").await.unwrap();
        assert_eq!(run(&c, "KILL_CLIENT 999999").await, Err("08P01".into()));
        assert_eq!(run(&c, "KILL_CLIENT nobody").await, Err("08P01".into()));

        // KILL db: every client of db goes, the database is paused. The
        // clients are gone when KILL answers, as with PgBouncer.
        run(&c, &format!("KILL {db}")).await.unwrap();
        let msgs = c.simple_query("SHOW CLIENTS").await.unwrap();
        let left = msgs
            .iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(2) == Some(db.as_str())))
            .count();
        assert_eq!(left, 0, "clients of {db} still listed after KILL");
        assert!(other.simple_query("SELECT 5").await.is_err());
        assert!(bystander.simple_query("SELECT 6").await.is_err());
        assert!(backends_settle(&db, None, 0).await);
        assert_eq!(show_value(&c, "SHOW DATABASES", &db, 15).await, "1");
        let late = p.connect(&db, "postgres", "").await;
        let q =
            tokio::spawn(async move { rows_col0(&late.simple_query("SELECT 7").await.unwrap()) });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!q.is_finished(), "served while killed/paused");
        run(&c, &format!("RESUME {db}")).await.unwrap();
        assert_eq!(q.await.unwrap(), vec!["7"]);
        // The console itself survives KILL.
        run(&c, "SHOW VERSION").await.unwrap();
    })
    .await
}

#[tokio::test]
async fn shutdown_wait_for_clients_from_the_console() {
    bounded(async {
        let [db] = fresh_dbs(["ctl_shutdown"]).await;
        let p = pooler(&db, "").await;
        let c = admin(&p).await;
        let ctx = p.pooler().context().clone();
        let requested = tokio::spawn(async move { ctx.shutdown_requested().await });
        run(&c, "SHUTDOWN WAIT_FOR_CLIENTS").await.unwrap();
        let mode = tokio::time::timeout(Duration::from_secs(5), requested)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mode, pgsluice::context::ShutdownMode::WaitForClients);
    })
    .await
}

/// psql (as DBAs use it) against the console: every SHOW and every control
/// command succeeds and SHOWs print their header.
#[tokio::test]
async fn psql_runs_every_console_command() {
    bounded(async {
        let [db] = fresh_dbs(["ctl_psql"]).await;
        let p = pooler(&db, "").await;
        let psql = tool("psql").expect("psql (installed by scripts/test.sh)");
        let port = p.addr().port().to_string();
        let shows = [
            "POOLS",
            "STATS",
            "STATS_TOTALS",
            "STATS_AVERAGES",
            "TOTALS",
            "CLIENTS",
            "SERVERS",
            "DATABASES",
            "USERS",
            "CONFIG",
            "LISTS",
            "STATE",
            "VERSION",
            "MEM",
            "HELP",
            "SOCKETS",
            "ACTIVE_SOCKETS",
            "FDS",
            "DNS_HOSTS",
            "DNS_ZONES",
            "PEERS",
            "PEER_POOLS",
        ];
        let mut commands: Vec<String> = shows.iter().map(|s| format!("SHOW {s}")).collect();
        for c in [
            "PAUSE {db}",
            "RESUME {db}",
            "SUSPEND",
            "RESUME",
            "DISABLE {db}",
            "ENABLE {db}",
            "RECONNECT {db}",
            "WAIT_CLOSE {db}",
            "RELOAD",
            "SET query_wait_timeout = 60",
            "KILL {db}",
            "RESUME {db}",
            "pause;",
            "resume;",
        ] {
            commands.push(c.replace("{db}", &db));
        }
        for cmd in &commands {
            let out = tokio::process::Command::new(&psql)
                .args([
                    "-X",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                ])
                .args(["-U", ADMIN, "-d", "pgbouncer", "-c", cmd])
                .env("PGCONNECT_TIMEOUT", "20")
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{cmd}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if cmd.starts_with("SHOW") && *cmd != "SHOW HELP" {
                assert!(text.contains('|') || text.contains("row"), "{cmd}: {text}");
            }
        }
    })
    .await
}

/// SHOW STATS / STATS_TOTALS / TOTALS through the console equal the
/// transactions a test ran.
#[tokio::test]
async fn show_stats_counts_the_transactions_that_ran() {
    bounded(async {
        let [db] = fresh_dbs(["ctl_stats"]).await;
        let p = pooler(&db, "pool_size=2").await;
        let client = p.connect(&db, "postgres", "").await;
        for i in 0..25 {
            one(&client, &format!("SELECT {i}")).await;
        }
        for _ in 0..5 {
            client
                .batch_execute("BEGIN; SELECT 1; SELECT 2; COMMIT")
                .await
                .unwrap();
        }
        let c = admin(&p).await;
        // total_xact_count (column 2) and total_query_count (column 3).
        assert_eq!(show_value(&c, "SHOW STATS", &db, 2).await, "30");
        assert_eq!(show_value(&c, "SHOW STATS_TOTALS", &db, 2).await, "30");
        let logins = show_value(&c, "SHOW STATS_TOTALS", &db, 12).await;
        assert_eq!(logins, "1");
        // SHOW TOTALS counts the console's commands too, this one
        // included (as PgBouncer: 3 before it).
        let xacts = show_value(&c, "SHOW TOTALS", "total_xact_count", 1).await;
        assert_eq!(xacts, "34");
        // They are database pgbouncer's in SHOW STATS (this is the 5th).
        assert_eq!(show_value(&c, "SHOW STATS", "pgbouncer", 2).await, "5");
    })
    .await
}

/// One id counter for clients and servers, as PgBouncer's: a client's new
/// server has a later id than the client, and no client shares an id with
/// a server (SHOW SOCKETS lists both kinds by these ids).
#[tokio::test]
async fn clients_and_servers_share_one_id_counter() {
    bounded(async {
        let [db] = fresh_dbs(["ctl_ids"]).await;
        let p = pooler(&db, "pool_mode=session").await;
        let c = p.connect(&db, "postgres", "").await;
        let pid: u64 = one(&c, "SELECT pg_backend_pid()").await.parse().unwrap();
        let a = admin(&p).await;
        let ids = |msgs: Vec<SimpleQueryMessage>, db: &str| -> Vec<u64> {
            msgs.iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) if r.get("database") == Some(db) => {
                        r.get("id").and_then(|v| v.parse().ok())
                    }
                    _ => None,
                })
                .collect()
        };
        let clients = ids(a.simple_query("SHOW CLIENTS").await.unwrap(), &db);
        let servers = ids(a.simple_query("SHOW SERVERS").await.unwrap(), &db);
        assert_eq!(
            (clients.len(), servers.len()),
            (1, 1),
            "{clients:?} {servers:?}"
        );
        assert!(servers[0] > clients[0], "{clients:?} {servers:?}");
        // The connection's own id, not its backend's pid.
        assert_ne!(servers[0], pid, "{servers:?}");
        let admins = ids(a.simple_query("SHOW CLIENTS").await.unwrap(), "pgbouncer");
        assert!(
            admins.iter().all(|id| *id != servers[0]),
            "{admins:?} {servers:?}"
        );
    })
    .await
}
