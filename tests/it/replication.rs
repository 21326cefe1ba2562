//! Replication connections through the pooler (`replication=true` and
//! `replication=database`), with PostgreSQL's own tools: pg_basebackup,
//! psql's replication commands, pg_recvlogical. Each gets a server of its
//! own in a transaction-mode pool, counted in the pool's size, closed when
//! it leaves; a refused replication login fails that client alone.

use crate::support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::pg::{SUPERUSER, tool};
use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, poll, unique, value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_postgres::SimpleQueryMessage;

const ADMIN: &str = "rep_admin";

/// A transaction-mode pooler in front of `pg` with database `rep`
/// (pool_size `size`), the superuser and a plain role trusted.
async fn pooler(pg: &PgCluster, size: u32, plain: &str) -> TestPooler {
    PoolerBuilder::new()
        .trust(SUPERUSER)
        .trust(plain)
        .trust(ADMIN)
        .set("admin_users", ADMIN)
        .set("pool_mode", "transaction")
        .pg_database(pg, "rep", &format!("dbname=postgres pool_size={size}"))
        // pg_basebackup and pg_receivewal always ask for this database.
        .pg_database(pg, "replication", "dbname=postgres")
        .start()
        .await
}

/// The pooler's address as a libpq conninfo for `user` of database `rep`.
fn conninfo(p: &TestPooler, user: &str) -> String {
    format!(
        "host=127.0.0.1 port={} dbname=rep user={user}",
        p.addr().port()
    )
}

/// psql through the pooler as `user` with `conninfo` extras; (success,
/// stdout, stderr).
async fn psql_as(p: &TestPooler, user: &str, extra: &str, sql: &str) -> (bool, String, String) {
    let conninfo = format!("{} {extra}", conninfo(p, user));
    let out = Command::new(tool("psql").expect("psql is installed by .ci/run"))
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &conninfo,
            "-c",
            sql,
        ])
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// psql as the superuser that must succeed: its output.
async fn psql_ok(p: &TestPooler, extra: &str, sql: &str) -> String {
    let (ok, out, err) = psql_as(p, SUPERUSER, extra, sql).await;
    assert!(ok, "{sql} ({extra}) failed: {err}");
    out
}

/// psql as `user` that must fail: its error output.
async fn psql_err(p: &TestPooler, user: &str, extra: &str, sql: &str) -> String {
    let (ok, out, err) = psql_as(p, user, extra, sql).await;
    assert!(!ok, "{sql} ({extra}) succeeded: {out}");
    err
}

/// pg_recvlogical streaming `slot` through the pooler to `out`.
fn recvlogical(p: &TestPooler, slot: &str, out: Stdio) -> tokio::process::Child {
    Command::new(tool("pg_recvlogical").expect("pg_recvlogical is installed by .ci/run"))
        .args(["-d", &conninfo(p, SUPERUSER), "--slot", slot])
        .args(["--start", "-f", "-", "--no-loop"])
        .stdout(out)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Wait until PostgreSQL has `n` walsenders (panics after 10 s).
async fn walsenders_reach(pg: &PgCluster, n: i64, what: &str) {
    let reached = poll(200, Duration::from_millis(50), || async {
        (walsenders(pg).await == n).then_some(())
    })
    .await;
    assert!(reached.is_some(), "{what}");
}

/// Walsender backends (replication connections) PostgreSQL has now.
async fn walsenders(pg: &PgCluster) -> i64 {
    let c = pg.direct_client("postgres", SUPERUSER).await;
    value(
        &c,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'",
    )
    .await
    .parse()
    .unwrap()
}

/// The `replication` column of SHOW CLIENTS, for clients of `rep`.
async fn console_replication(p: &TestPooler) -> Vec<String> {
    let c = p.connect("pgbouncer", ADMIN, "").await;
    let mut out = Vec::new();
    let mut col = None;
    for m in c.simple_query("SHOW CLIENTS").await.unwrap() {
        match m {
            SimpleQueryMessage::RowDescription(d) => {
                col = d.iter().position(|c| c.name() == "replication");
            }
            SimpleQueryMessage::Row(r) if r.get("database") == Some("rep") => {
                out.push(r.get(col.unwrap()).unwrap().to_string());
            }
            _ => {}
        }
    }
    out
}

/// pg_basebackup and the physical replication commands work through a
/// transaction-mode pool; SQL on a physical connection gets PostgreSQL's
/// own refusal; the walsender is gone once the client left.
#[tokio::test]
async fn physical_replication_runs_through_the_pooler() {
    bounded_for(Duration::from_secs(120), async {
        let pg = PgCluster::dedicated();
        let p = pooler(&pg, 2, "rep_nobody").await;
        let out = psql_ok(&p, "replication=true", "IDENTIFY_SYSTEM").await;
        assert_eq!(out.split('|').count(), 4, "{out}");
        // Startup parameters reach the walsender: application_name, and
        // `options` as given (any setting, not only tracked ones).
        let extra = "replication=yes application_name=abc options='-c\\ work_mem=7MB'";
        assert_eq!(psql_ok(&p, extra, "SHOW work_mem").await, "7MB");
        let err = psql_err(&p, SUPERUSER, "replication=true", "SELECT 1").await;
        assert!(
            err.contains("cannot execute SQL commands in WAL sender for physical replication"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let target: PathBuf = dir.path().join("backup");
        let basebackup = tool("pg_basebackup").expect("pg_basebackup is installed by .ci/run");
        let out = Command::new(basebackup)
            .args(["-d", &conninfo(&p, SUPERUSER), "-D"])
            .arg(&target)
            .args(["-X", "stream", "--checkpoint=fast", "--no-sync"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "pg_basebackup through the pooler failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(target.join("PG_VERSION").is_file());
        assert!(target.join("global/pg_control").is_file());
        walsenders_reach(&pg, 0, "walsenders left behind").await;
        // An ordinary client of the same pool is unaffected.
        let c = p.connect("rep", SUPERUSER, "").await;
        assert_eq!(value(&c, "SELECT 1").await, "1");
    })
    .await;
}

/// Logical replication: SQL and replication commands on one
/// `replication=database` connection, pg_recvlogical streaming changes
/// made by an ordinary client of the same pool, SHOW CLIENTS saying which
/// client replicates, and the server closed (not pooled) after it.
#[tokio::test]
async fn logical_replication_streams_changes_through_the_pooler() {
    bounded_for(Duration::from_secs(120), async {
        let pg = PgCluster::dedicated_conf("wal_level = logical");
        let p = pooler(&pg, 3, "rep_nobody").await;
        let extra = "replication=database options='-c\\ enable_seqscan=off'";
        assert_eq!(psql_ok(&p, extra, "SHOW enable_seqscan").await, "off");
        let out = psql_ok(&p, "replication=database", "SELECT 40 + 2").await;
        assert_eq!(out, "42");

        let table = unique("rep_t");
        let slot = unique("rep_slot");
        let c = p.connect("rep", SUPERUSER, "").await;
        c.batch_execute(&format!("CREATE TABLE {table} (a int)"))
            .await
            .unwrap();
        c.batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'test_decoding')"
        ))
        .await
        .unwrap();
        let mut recv = recvlogical(&p, &slot, Stdio::piped());
        // Streaming: one walsender, its client listed as logical.
        walsenders_reach(&pg, 1, "pg_recvlogical did not start streaming").await;
        let kinds = console_replication(&p).await;
        assert!(kinds.contains(&"logical".to_string()), "{kinds:?}");
        assert!(kinds.contains(&"none".to_string()), "{kinds:?}");

        c.batch_execute(&format!("INSERT INTO {table} VALUES (7)"))
            .await
            .unwrap();
        let mut lines = BufReader::new(recv.stdout.take().unwrap()).lines();
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(lines.next_line().await.unwrap().expect("stream ended"));
        }
        assert!(got[0].starts_with("BEGIN "), "{got:?}");
        assert!(got[1].contains("INSERT: a[integer]:7"), "{got:?}");
        assert!(got[2].starts_with("COMMIT "), "{got:?}");

        recv.kill().await.unwrap();
        walsenders_reach(&pg, 0, "the walsender stayed after its client left").await;
        c.batch_execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
            .await
            .unwrap();
    })
    .await;
}

/// A replication connection counts in the pool's size: in a full pool an
/// idle server is closed to make room; with none idle it waits for a
/// slot; a role without the REPLICATION right is refused alone ("login
/// failed", the server's SQLSTATE) while the pool's others go on.
#[tokio::test]
async fn replication_connections_take_pool_slots_and_fail_alone() {
    bounded_for(Duration::from_secs(120), async {
        let pg = PgCluster::dedicated_conf("wal_level = logical");
        let plain = unique("rep_plain");
        pg.sql(&format!("CREATE ROLE {plain} LOGIN")).await;
        let p = pooler(&pg, 1, &plain).await;
        // The pool's one server, idle after this.
        let c = p.connect("rep", SUPERUSER, "").await;
        let normal_pid = value(&c, "SELECT pg_backend_pid()").await;
        psql_ok(&p, "replication=database", "IDENTIFY_SYSTEM").await;
        let direct = pg.direct_client("postgres", SUPERUSER).await;
        let alive = value(
            &direct,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {normal_pid}"),
        )
        .await;
        assert_eq!(alive, "0", "the idle server was not evicted");

        // The slot is held: a second replication client waits for it.
        let slot = unique("rep_hold");
        direct
            .batch_execute(&format!(
                "SELECT pg_create_logical_replication_slot('{slot}', 'test_decoding')"
            ))
            .await
            .unwrap();
        let mut holder = recvlogical(&p, &slot, Stdio::null());
        walsenders_reach(&pg, 1, "pg_recvlogical did not start streaming").await;
        let second = Command::new(tool("psql").unwrap())
            .arg("-Xc")
            .arg("IDENTIFY_SYSTEM")
            .arg(format!("{} replication=database", conninfo(&p, SUPERUSER)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let waits = poll(200, Duration::from_millis(50), || async {
            (p.waiting("rep", SUPERUSER) == 1).then_some(())
        })
        .await;
        assert!(
            waits.is_some(),
            "the second client did not wait for the slot"
        );
        holder.kill().await.unwrap();
        let out = second.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // No REPLICATION right: refused alone.
        let err = psql_err(&p, &plain, "replication=database", "IDENTIFY_SYSTEM").await;
        assert!(err.contains("login failed"), "{err}");
        let c = p.connect("rep", &plain, "").await;
        assert_eq!(value(&c, "SELECT 1").await, "1");
        direct
            .batch_execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
            .await
            .unwrap();
        // A value that is neither a boolean nor `database`: PostgreSQL's
        // error, before any server is asked.
        let err = psql_err(&p, SUPERUSER, "replication=maybe", "SELECT 1").await;
        assert!(
            err.contains("invalid value for parameter \"replication\": \"maybe\""),
            "{err}"
        );
    })
    .await;
}
