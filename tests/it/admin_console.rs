//! The admin console (`pgbouncer` database): who may log in, the
//! simple-query-only session, command syntax, every SHOW's column list
//! compared with PgBouncer 1.25's, and SHOW POOLS / CLIENTS / SERVERS
//! figures under a known load against a real PostgreSQL.

use crate::support;

use std::time::Duration;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded, db_message, poll, sqlstate, unique};
use tokio_postgres::{Client, SimpleQueryMessage};

const ADMIN: &str = "console_admin";
const STATS: &str = "console_stats";

/// A pooler with an admin user and a stats user (auth_type trust), and
/// `extra` for the [databases] entry of a fresh database.
async fn console_pooler(extra: &str) -> (String, TestPooler) {
    let pg = PgCluster::shared();
    let db = unique("console");
    pg.create_db(&db).await;
    let p = PoolerBuilder::new()
        .trust(ADMIN)
        .trust(STATS)
        .trust("someone_else")
        .set("admin_users", ADMIN)
        .set("stats_users", STATS)
        .pg_database(pg, &db, extra)
        .start()
        .await;
    (db, p)
}

async fn console(p: &TestPooler, user: &str) -> Client {
    p.connect("pgbouncer", user, "").await
}

/// Column names and rows (as text, NULL as "NULL") of a SHOW.
async fn show(c: &Client, sql: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut cols = Vec::new();
    let mut rows = Vec::new();
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(d) => {
                cols = d.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(r) => rows.push(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => {}
        }
    }
    (cols, rows)
}

fn split(s: &str) -> Vec<String> {
    s.split(',').map(|c| c.trim().to_string()).collect()
}

const SOCKET_COLS: &str = "type, user, database, replication, state, addr, port, local_addr, \
    local_port, connect_time, request_time, wait, wait_us, close_needed, ptr, link, remote_pid, \
    tls, application_name, prepared_statements, id";
const STATS_PART_COLS: &str = "database, server_assignment_count, xact_count, query_count, \
    bytes_received, bytes_sent, xact_time, query_time, wait_time, client_parse_count, \
    server_parse_count, bind_count, client_login_count";

#[tokio::test]
async fn every_show_has_pgbouncers_columns_in_order() {
    bounded(async {
        let (_db, p) = console_pooler("").await;
        let c = console(&p, ADMIN).await;
        let sockets_debug = format!(
            "{SOCKET_COLS}, recv_pos, pkt_pos, pkt_remain, send_pos, send_remain, pkt_avail, send_avail"
        );
        let expected: Vec<(&str, String)> = vec![
            ("POOLS", "database, user, cl_active, cl_waiting, cl_active_cancel_req, \
                cl_waiting_cancel_req, sv_active, sv_active_cancel, sv_being_canceled, sv_idle, \
                sv_used, sv_tested, sv_login, maxwait, maxwait_us, pool_mode, load_balance_hosts, \
                server_hosts, role".into()),
            ("STATS", "database, total_server_assignment_count, total_xact_count, \
                total_query_count, total_received, total_sent, total_xact_time, total_query_time, \
                total_wait_time, total_client_parse_count, total_server_parse_count, \
                total_bind_count, total_client_login_count, avg_server_assignment_count, \
                avg_xact_count, avg_query_count, avg_recv, avg_sent, avg_xact_time, \
                avg_query_time, avg_wait_time, avg_client_parse_count, avg_server_parse_count, \
                avg_bind_count, avg_client_login_count".into()),
            ("STATS_TOTALS", STATS_PART_COLS.into()),
            ("STATS_AVERAGES", STATS_PART_COLS.into()),
            ("TOTALS", "name, value".into()),
            ("CLIENTS", SOCKET_COLS.into()),
            ("SERVERS", SOCKET_COLS.into()),
            ("SOCKETS", sockets_debug.clone()),
            ("ACTIVE_SOCKETS", sockets_debug),
            ("DATABASES", "name, host, port, database, force_user, pool_size, min_pool_size, \
                reserve_pool_size, server_lifetime, pool_mode, load_balance_hosts, \
                max_connections, current_connections, max_client_connections, \
                current_client_connections, paused, disabled".into()),
            ("USERS", "name, pool_size, reserve_pool_size, pool_mode, max_user_connections, \
                current_connections, max_user_client_connections, current_client_connections".into()),
            ("CONFIG", "key, value, default, changeable".into()),
            ("LISTS", "list, items".into()),
            ("STATE", "key, value".into()),
            ("VERSION", "version".into()),
            ("MEM", "name, size, used, free, memtotal".into()),
            ("PEERS", "peer_id, host, port, pool_size".into()),
            ("PEER_POOLS", "peer_id, cl_active_cancel_req, cl_waiting_cancel_req, \
                sv_active_cancel, sv_login".into()),
            ("FDS", "fd, task, user, database, addr, port, cancel, link, client_encoding, \
                std_strings, datestyle, timezone, password, scram_client_key, scram_server_key".into()),
            ("DNS_HOSTS", "hostname, ttl, addrs".into()),
            ("DNS_ZONES", "zonename, serial, count".into()),
        ];
        for (what, cols) in &expected {
            let (got, _) = show(&c, &format!("SHOW {what}")).await;
            assert_eq!(got, split(cols), "SHOW {what}");
        }
        // HELP answers with a notice and CommandComplete SHOW.
        let msgs = c.simple_query("SHOW HELP").await.unwrap();
        assert!(matches!(msgs.last(), Some(SimpleQueryMessage::CommandComplete(0))));

        // A few contents.
        let (_, lists) = show(&c, "SHOW LISTS").await;
        let names: Vec<&str> = lists.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(names, split("databases, users, peers, pools, peer_pools, free_clients, \
            used_clients, login_clients, free_servers, used_servers, dns_names, dns_zones, \
            dns_queries, dns_pending"));
        let (_, state) = show(&c, "SHOW STATE").await;
        assert_eq!(state[0], vec!["active", "yes"]);
        let (_, version) = show(&c, "SHOW VERSION").await;
        assert!(version[0][0].starts_with("PgBouncer 1.25.0"), "{version:?}");
        let (_, config) = show(&c, "SHOW CONFIG").await;
        let admin_users = config.iter().find(|r| r[0] == "admin_users").expect("admin_users");
        assert_eq!(admin_users[1], ADMIN);
        assert!(config.iter().all(|r| r[3] == "yes" || r[3] == "no"));
        let pool_size = config.iter().find(|r| r[0] == "default_pool_size").unwrap();
        assert_eq!((pool_size[1].as_str(), pool_size[2].as_str()), ("20", "20"));
        p.shutdown().await;
    })
    .await;
}

fn col(cols: &[String], row: &[String], name: &str) -> String {
    let i = cols
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    row[i].clone()
}

/// SHOW POOLS row of `db` as name -> value.
async fn pool_row(c: &Client, db: &str) -> Option<std::collections::HashMap<String, String>> {
    let (cols, rows) = show(c, "SHOW POOLS").await;
    let row = rows.into_iter().find(|r| r[0] == db)?;
    Some(cols.into_iter().zip(row).collect())
}

#[tokio::test]
async fn pools_clients_and_servers_under_a_known_load() {
    bounded(async {
        let (db, p) = console_pooler("pool_size=5").await;
        let admin = console(&p, ADMIN).await;
        // 30 clients: 5 hold a transaction, 10 wait for a server, 15 idle.
        let mut clients = Vec::new();
        for _ in 0..30 {
            clients.push(p.connect(&db, "postgres", "").await);
        }
        for c in &clients[..5] {
            c.simple_query("BEGIN; SELECT 1").await.unwrap();
        }
        let mut waiting = Vec::new();
        for c in clients.drain(5..15) {
            waiting.push(tokio::spawn(async move {
                c.simple_query("SELECT 1").await.unwrap();
                c
            }));
        }
        let pools = poll(100, Duration::from_millis(100), || async {
            pool_row(&admin, &db)
                .await
                .filter(|r| r["cl_waiting"] == "10")
        })
        .await
        .expect("10 clients should be waiting");
        assert_eq!(pools["cl_active"], "20");
        assert_eq!(pools["sv_active"], "5");
        assert_eq!(pools["sv_idle"], "0");
        assert_eq!(pools["sv_login"], "0");
        assert_eq!(pools["pool_mode"], "transaction");
        assert_eq!(pools["user"], "postgres");

        let (cols, rows) = show(&admin, "SHOW CLIENTS").await;
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| col(&cols, r, "database") == db)
            .collect();
        assert_eq!(mine.len(), 30);
        let count = |s: &str| mine.iter().filter(|r| col(&cols, r, "state") == s).count();
        assert_eq!(
            (count("active"), count("waiting"), count("idle")),
            (5, 10, 15)
        );
        assert!(mine.iter().all(|r| col(&cols, r, "type") == "C"
            && col(&cols, r, "user") == "postgres"
            && col(&cols, r, "addr") == "127.0.0.1"));
        let active_ptrs: Vec<String> = mine
            .iter()
            .filter(|r| col(&cols, r, "state") == "active")
            .map(|r| col(&cols, r, "ptr"))
            .collect();
        // The console itself is listed too.
        assert!(rows.iter().any(|r| col(&cols, r, "database") == "pgbouncer"
            && col(&cols, r, "user") == ADMIN));

        let (scols, srows) = show(&admin, "SHOW SERVERS").await;
        let servers: Vec<_> = srows
            .iter()
            .filter(|r| col(&scols, r, "database") == db)
            .collect();
        assert_eq!(servers.len(), 5);
        for s in &servers {
            assert_eq!(col(&scols, s, "state"), "active");
            assert_eq!(col(&scols, s, "type"), "S");
            assert!(
                active_ptrs.contains(&col(&scols, s, "link")),
                "server linked to an active client"
            );
            assert_ne!(col(&scols, s, "remote_pid"), "0");
        }
        let (dcols, drows) = show(&admin, "SHOW DATABASES").await;
        let d = drows.iter().find(|r| r[0] == db).expect("database row");
        assert_eq!(col(&dcols, d, "pool_size"), "5");
        assert_eq!(col(&dcols, d, "current_connections"), "5");
        assert_eq!(col(&dcols, d, "current_client_connections"), "30");

        // Release everyone: the servers go idle.
        for c in &clients[..5] {
            c.simple_query("COMMIT").await.unwrap();
        }
        for w in waiting {
            w.await.unwrap();
        }
        let pools = poll(100, Duration::from_millis(100), || async {
            pool_row(&admin, &db)
                .await
                .filter(|r| r["sv_active"] == "0")
        })
        .await
        .expect("servers should go idle");
        assert_eq!(pools["cl_waiting"], "0");
        assert_eq!(pools["sv_idle"], "5");
        let (scols, srows) = show(&admin, "SHOW SERVERS").await;
        let idle = srows
            .iter()
            .filter(|r| col(&scols, r, "database") == db && col(&scols, r, "state") == "idle")
            .count();
        assert_eq!(idle, 5);
        drop(clients);
        p.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn who_may_do_what() {
    bounded(async {
        let (_db, p) = console_pooler("").await;
        // Not in admin_users / stats_users: refused at login (trust auth).
        let e = p
            .try_connect("pgbouncer", "someone_else", "")
            .await
            .map(drop)
            .expect_err("refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e:?}");
        assert_eq!(db_message(&e).as_deref(), Some("not allowed"));
        // Not in auth_file at all: the usual authentication failure.
        let e = p
            .try_connect("pgbouncer", "nobody_at_all", "")
            .await
            .map(drop)
            .expect_err("refused");
        assert!(sqlstate(&e).is_some(), "{e:?}");

        let stats = console(&p, STATS).await;
        show(&stats, "SHOW POOLS").await;
        show(&stats, "SHOW CLIENTS").await;
        for cmd in [
            "PAUSE",
            "RESUME mydb",
            "RELOAD",
            "KILL_CLIENT 1",
            "SET verbose = 1",
            "SHOW FDS",
        ] {
            let e = stats
                .simple_query(cmd)
                .await
                .err()
                .unwrap_or_else(|| panic!("{cmd} allowed"));
            assert_eq!(
                db_message(&e).as_deref(),
                Some("admin access needed"),
                "{cmd}"
            );
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{cmd}");
        }
        // The session goes on.
        show(&stats, "SHOW STATE").await;

        // An admin gets past the permission check (what the command does
        // is not this test's business).
        let admin = console(&p, ADMIN).await;
        if let Err(e) = admin.simple_query("KILL_CLIENT 999999999").await {
            assert_ne!(db_message(&e).as_deref(), Some("admin access needed"));
            assert_ne!(sqlstate(&e).as_deref(), Some("42601"), "{e:?}");
        }
        show(&admin, "SHOW FDS").await;
        p.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn auth_type_any_still_needs_a_listed_user() {
    bounded(async {
        let p = PoolerBuilder::new()
            .set("auth_type", "any")
            .set("stats_users", STATS)
            .start()
            .await;
        let e = p
            .try_connect("pgbouncer", "random_user", "")
            .await
            .map(drop)
            .expect_err("refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("28000"));
        let c = console(&p, STATS).await;
        show(&c, "SHOW VERSION").await;
        p.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn syntax_case_semicolons_and_unknown_commands() {
    bounded(async {
        let (_db, p) = console_pooler("").await;
        let c = console(&p, ADMIN).await;
        for q in [
            "SHOW VERSION",
            "show version;",
            "  Show Version ;  ",
            "SELECT version",
            "select VERSION;",
        ] {
            let (cols, rows) = show(&c, q).await;
            assert_eq!(cols, vec!["version"], "{q}");
            assert_eq!(rows.len(), 1, "{q}");
        }
        for bad in [
            "FROBNICATE",
            "SHOW NOTHING_LIKE_THIS",
            "SHOW",
            "SELECT 1 + 1",
        ] {
            let e = c
                .simple_query(bad)
                .await
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(sqlstate(&e).as_deref(), Some("42601"), "{bad}: {e:?}");
        }
        // Still usable after errors; SHOW answers end with tag SHOW.
        let msgs = c.simple_query("SHOW STATE").await.unwrap();
        assert!(matches!(
            msgs.last(),
            Some(SimpleQueryMessage::CommandComplete(_))
        ));
        assert!(c.simple_query("").await.is_ok());
        p.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn extended_protocol_is_refused_and_closes() {
    bounded(async {
        let (_db, p) = console_pooler("").await;
        let c = console(&p, ADMIN).await;
        let e = c
            .query("SHOW POOLS", &[])
            .await
            .map(drop)
            .expect_err("extended protocol refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("08P01"), "{e:?}");
        assert_eq!(
            db_message(&e).as_deref(),
            Some("extended query protocol not supported by admin console")
        );
        let closed = poll(50, Duration::from_millis(100), || async {
            c.is_closed().then_some(())
        })
        .await;
        assert!(closed.is_some(), "connection should close");
        p.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn own_os_user_logs_in_as_pgbouncer_over_the_unix_socket() {
    bounded(async {
        // md5: anyone else would need a password; nobody is in admin_users.
        let p = PoolerBuilder::new().set("auth_type", "md5").start().await;
        let path = p.unix_socket_path().expect("unix socket");
        let port: u16 = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .rsplit('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(path.parent().unwrap())
            .port(port)
            .dbname("pgbouncer")
            .user("pgbouncer");
        let (c, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .expect("peer login");
        tokio::spawn(conn);
        let (_, rows) = show(&c, "SHOW CLIENTS").await;
        assert!(
            rows.iter().any(|r| r[1] == "pgbouncer" && r[5] == "unix"),
            "{rows:?}"
        );
        // Admin rights: SHOW FDS is allowed.
        show(&c, "SHOW FDS").await;
        // The same user over TCP is an ordinary user: md5 wants its password.
        let e = p
            .try_connect("pgbouncer", "pgbouncer", "wrong")
            .await
            .map(drop)
            .expect_err("refused over TCP");
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
        p.shutdown().await;
    })
    .await;
}
