//! Protocol-level named prepared statements in transaction mode (issue 6,
//! part 1): statements follow clients across server connections, answers
//! come in PostgreSQL's order (also around errors in pipelines), the
//! per-server LRU, DISCARD ALL, and pgbench / tokio-postgres under load.

use crate::support;

use std::time::Duration;

use tokio::net::TcpStream;

use support::wire::{Msg, login_trust, read_msg, send, tagged};
use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, unique};

// ---- raw protocol ----------------------------------------------------

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&0i16.to_be_bytes());
    tagged(b'P', &b)
}

/// Bind of `stmt` to the unnamed portal with text parameters.
fn bind(stmt: &str, params: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(&mut b, stmt);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        b.extend_from_slice(&(p.len() as i32).to_be_bytes());
        b.extend_from_slice(p.as_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    tagged(b'B', &b)
}

fn describe_stmt(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    cstr(&mut b, name);
    tagged(b'D', &b)
}

fn close_stmt(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    cstr(&mut b, name);
    tagged(b'C', &b)
}

fn execute() -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, "");
    b.extend_from_slice(&0i32.to_be_bytes());
    tagged(b'E', &b)
}

fn sync() -> Vec<u8> {
    tagged(b'S', &[])
}

/// Bind + Execute + Sync of `stmt`.
fn run(stmt: &str, params: &[&str]) -> Vec<u8> {
    [bind(stmt, params), execute(), sync()].concat()
}

/// What the client saw: tag, plus SQLSTATE for errors and the first
/// column for data rows.
fn summary(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m.tag {
            b'E' => format!("E {} {}", m.sqlstate(), m.message()),
            b'D' => {
                let len = i32::from_be_bytes(m.body[2..6].try_into().unwrap());
                format!(
                    "D {}",
                    String::from_utf8_lossy(&m.body[6..6 + len as usize])
                )
            }
            b'Z' => format!("Z {}", m.body[0] as char),
            t => (t as char).to_string(),
        })
        .collect()
}

/// Send `bytes`, read until `syncs` ReadyForQuery came.
async fn exchange(s: &mut TcpStream, bytes: &[u8], syncs: usize) -> Vec<String> {
    send(s, bytes).await.unwrap();
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < syncs {
        let m = read_msg(s).await.unwrap().expect("connection closed");
        seen += usize::from(m.tag == b'Z');
        out.push(m);
    }
    summary(&out)
}

async fn direct(pg: &PgCluster, db: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", pg.port())).await.unwrap();
    login_trust(&mut s, "postgres", db).await;
    s
}

async fn pooled(p: &TestPooler, db: &str) -> TcpStream {
    let mut s = p.raw_connect().await;
    login_trust(&mut s, "postgres", db).await;
    s
}

/// A transaction-mode pooler on a fresh database, pool of `size`.
async fn setup(prefix: &str, size: u32, settings: &[(&str, &str)]) -> (String, TestPooler) {
    let pg = PgCluster::shared();
    let db = unique(prefix);
    pg.create_db(&db).await;
    let mut b = PoolerBuilder::new();
    for (k, v) in settings {
        b = b.set(k, v);
    }
    let p = b
        .pg_database(pg, &db, &format!("pool_size={size}"))
        .start()
        .await;
    (db, p)
}

/// The same exchanges straight to PostgreSQL and through the pooler give
/// the same answers (the pooler's statements live under other names on
/// servers that change between transactions).
/// Every other step, another client holds the server the client used
/// last (servers are reused most recent first), so the client's
/// statements must follow it to the pool's other server.
async fn same_as_postgres(db: &str, p: &TestPooler, steps: &[(Vec<u8>, usize)]) {
    let mut d = direct(PgCluster::shared(), db).await;
    let mut c = pooled(p, db).await;
    let mut other = pooled(p, db).await;
    let query = support::wire::query;
    for (i, (bytes, syncs)) in steps.iter().enumerate() {
        let want = exchange(&mut d, bytes, *syncs).await;
        if i % 2 == 1 {
            assert_eq!(exchange(&mut other, &query("BEGIN"), 1).await, ["C", "Z T"]);
        }
        let got = exchange(&mut c, bytes, *syncs).await;
        if i % 2 == 1 {
            assert_eq!(
                exchange(&mut other, &query("COMMIT"), 1).await,
                ["C", "Z I"]
            );
        }
        assert_eq!(got, want, "step {i}");
    }
}

#[tokio::test]
async fn error_in_the_middle_of_a_pipeline() {
    bounded_for(Duration::from_secs(60), async {
        let (db, p) = setup("prep_pipeline", 2, &[]).await;
        let steps = vec![
            // Parse ok, Bind to a statement that does not exist, Parse
            // (skipped), Sync; then the skipped one is really missing and
            // the first one works.
            (
                [
                    parse("a", "SELECT 1"),
                    bind("nope", &[]),
                    parse("b", "SELECT 2"),
                    sync(),
                ]
                .concat(),
                1,
            ),
            (run("b", &[]), 1),
            (run("a", &[]), 1),
            // A failing statement mid-pipeline with more Syncs behind it.
            (
                [
                    parse("c", "SELECT 1/$1::int"),
                    sync(),
                    run("c", &["0"]),
                    run("c", &["1"]),
                    describe_stmt("c"),
                    sync(),
                ]
                .concat(),
                4,
            ),
        ];
        same_as_postgres(&db, &p, &steps).await;
    })
    .await
}

#[tokio::test]
async fn close_of_unknown_and_name_reuse() {
    bounded_for(Duration::from_secs(60), async {
        let (db, p) = setup("prep_reuse", 2, &[]).await;
        let steps = vec![
            ([close_stmt("unknown"), sync()].concat(), 1),
            ([parse("s", "SELECT 1"), sync()].concat(), 1),
            // Reuse without Close: 42P05, the rest up to Sync skipped.
            ([parse("s", "SELECT 2"), run("s", &[])].concat(), 1),
            ([run("s", &[])].concat(), 1),
            // Close, then the name is free again.
            (
                [close_stmt("s"), parse("s", "SELECT 3"), sync()].concat(),
                1,
            ),
            (run("s", &[]), 1),
            ([close_stmt("s"), close_stmt("s"), sync()].concat(), 1),
            (run("s", &[]), 1),
        ];
        same_as_postgres(&db, &p, &steps).await;
    })
    .await
}

/// The prepared_statements column of `show` (SHOW CLIENTS / SERVERS) for
/// the rows of database `db`, sorted.
async fn statements(admin: &tokio_postgres::Client, db: &str, show: &str) -> Vec<String> {
    let mut counts = Vec::new();
    for m in admin.simple_query(show).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m
            && r.get("database") == Some(db)
        {
            counts.push(r.get("prepared_statements").unwrap().to_string());
        }
    }
    counts.sort();
    counts
}

#[tokio::test]
async fn lru_eviction_with_two_statements_per_server() {
    bounded_for(Duration::from_secs(60), async {
        let (db, p) = setup(
            "prep_lru",
            1,
            &[
                ("max_prepared_statements", "2"),
                ("admin_users", "postgres"),
            ],
        )
        .await;
        let mut c = pooled(&p, &db).await;
        let mut prep = Vec::new();
        for i in 1..=3 {
            prep.extend(parse(&format!("s{i}"), &format!("SELECT {i} * $1::int")));
        }
        prep.extend(sync());
        assert_eq!(exchange(&mut c, &prep, 1).await, ["1", "1", "1", "Z I"]);
        for round in 0..5 {
            for i in [1, 2, 3, 2, 1, 3] {
                let got = exchange(&mut c, &run(&format!("s{i}"), &["7"]), 1).await;
                assert_eq!(
                    got,
                    ["2", &format!("D {}", 7 * i), "C", "Z I"],
                    "round {round} s{i}"
                );
            }
        }
        // Never more than two on the server.
        let mut c2 = pooled(&p, &db).await;
        let got = exchange(
            &mut c2,
            &support::wire::query("SELECT count(*) FROM pg_prepared_statements"),
            1,
        )
        .await;
        assert_eq!(got, ["T", "D 2", "C", "Z I"]);

        // SHOW CLIENTS / SERVERS count them: the client has three, its
        // server (idle now) two.
        let admin = p.connect("pgbouncer", "postgres", "").await;
        assert_eq!(statements(&admin, &db, "SHOW CLIENTS").await, ["0", "3"]);
        assert_eq!(statements(&admin, &db, "SHOW SERVERS").await, ["2"]);
    })
    .await
}

#[tokio::test]
async fn discard_all_then_parse_the_same_name() {
    bounded_for(Duration::from_secs(60), async {
        let (db, p) = setup("prep_discard", 2, &[]).await;
        let steps = vec![
            ([parse("s", "SELECT 1"), sync()].concat(), 1),
            (support::wire::query("DISCARD ALL"), 1),
            ([parse("s", "SELECT 2"), sync()].concat(), 1),
            (run("s", &[]), 1),
            (support::wire::query("deallocate all;"), 1),
            (run("s", &[]), 1),
            ([parse("s", "SELECT 3"), sync()].concat(), 1),
            (run("s", &[]), 1),
        ];
        same_as_postgres(&db, &p, &steps).await;
    })
    .await
}

// ---- real clients ----------------------------------------------------

async fn run_tool(mut cmd: tokio::process::Command) -> std::process::Output {
    cmd.kill_on_drop(true)
        .env("PGCONNECT_TIMEOUT", "20")
        .env("PGSSLMODE", "disable");
    tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("tool hung")
        .expect("run tool")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Transactions processed and failed, from pgbench's summary.
fn pgbench_counts(stdout: &str) -> (u64, u64) {
    let processed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (processed, failed)
}

#[tokio::test]
async fn pgbench_prepared_40_clients_on_a_pool_of_4() {
    let pgbench = support::tool("pgbench").expect("pgbench (installed by scripts/test.sh)");
    bounded_for(Duration::from_secs(300), async {
        let pg = PgCluster::shared();
        let db = unique("prep_bench");
        pg.create_db(&db).await;
        let mut init = tokio::process::Command::new(&pgbench);
        init.args(["-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p"])
            .arg(pg.port().to_string())
            .args(["-U", "postgres", &db]);
        let out = run_tool(init).await;
        assert!(out.status.success(), "pgbench -i: {}", text(&out));
        let p = PoolerBuilder::new()
            .set("max_client_conn", "100")
            .pg_database(pg, &db, "pool_size=4")
            .start()
            .await;
        let port = p.addr().port().to_string();
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("pipeline.sql");
        std::fs::write(
            &script,
            "\\set aid random(1, 100000)\n\\startpipeline\n\
             SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n\
             SELECT :aid::int + 1;\n\
             SELECT count(*) FROM pgbench_branches;\n\
             \\endpipeline\n",
        )
        .unwrap();
        let runs: [(&str, Vec<String>); 2] = [
            ("-S prepared", vec!["-S".into()]),
            (
                "pipeline prepared",
                vec!["-f".into(), script.display().to_string()],
            ),
        ];
        for (what, args) in runs {
            let mut cmd = tokio::process::Command::new(&pgbench);
            cmd.args(["-M", "prepared", "-c", "40", "-j", "2", "-T", "3", "-n"])
                .args(&args)
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &db]);
            let out = run_tool(cmd).await;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "pgbench {what}: {}", text(&out));
            let (processed, failed) = pgbench_counts(&stdout);
            assert!(processed > 40, "pgbench {what}: {}", text(&out));
            assert_eq!(failed, 0, "pgbench {what}: {}", text(&out));
            assert!(
                !String::from_utf8_lossy(&out.stderr).contains("error"),
                "pgbench {what}: {}",
                text(&out)
            );
        }
        // The pool's statistics: Parses answered by the pooler are not
        // server Parses.
        let rows = pgsluice::admin::stats_rows(p.pooler().context());
        let r = rows.into_iter().find(|r| r.database == db).unwrap();
        assert!(
            r["total_server_parse_count"] < r["total_client_parse_count"],
            "{r:?}"
        );
    })
    .await
}

#[tokio::test]
async fn tokio_postgres_prepared_statements_move_between_servers() {
    bounded_for(Duration::from_secs(120), async {
        let (db, p) = setup("prep_tokio", 3, &[("max_client_conn", "100")]).await;
        let mut tasks = Vec::new();
        for c in 0..24i32 {
            let cfg = p.config(&db, "postgres", "");
            tasks.push(tokio::spawn(async move {
                let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                let add = client.prepare("SELECT $1::int + $2::int").await.unwrap();
                let echo = client.prepare("SELECT $1::text || '!'").await.unwrap();
                for i in 0..60i32 {
                    let row = client.query_one(&add, &[&c, &i]).await.unwrap();
                    assert_eq!(row.get::<_, i32>(0), c + i);
                    let s = format!("c{c}-{i}");
                    let rows = client.query(&echo, &[&s]).await.unwrap();
                    assert_eq!(rows[0].get::<_, String>(0), format!("{s}!"));
                    // Pipelined: both in flight at once.
                    let (pa, pb): ([&(dyn tokio_postgres::types::ToSql + Sync); 2], [_; 1]) =
                        ([&i, &i], [&s as &(dyn tokio_postgres::types::ToSql + Sync)]);
                    let (a, b) =
                        tokio::join!(client.query_one(&add, &pa), client.query_one(&echo, &pb));
                    assert_eq!(a.unwrap().get::<_, i32>(0), 2 * i);
                    assert_eq!(b.unwrap().get::<_, String>(0), format!("{s}!"));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
}

/// The pooler's statements on the server the query runs on.
const ON_SERVER: &str = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'PGSLUICE%'";

/// max_prepared_statements changed with SET applies to sessions already
/// connected (a server keeps at most that many of the pooler's statements,
/// evicting the oldest), and with it at 0 named statements are relayed
/// untracked and not counted in SHOW STATS' parse and bind counts, as in
/// PgBouncer.
#[tokio::test]
async fn max_prepared_statements_set_at_run_time_and_untracked_counts() {
    bounded_for(Duration::from_secs(60), async {
        let pg = PgCluster::shared();
        let db = unique("prep_set");
        pg.create_db(&db).await;
        let p = PoolerBuilder::new()
            .set("max_prepared_statements", "0")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let c = p.connect(&db, "postgres", "").await;
        for i in 0..3 {
            let s = c.prepare(&format!("SELECT {i}::int")).await.unwrap();
            assert_eq!(c.query_one(&s, &[]).await.unwrap().get::<_, i32>(0), i);
        }
        let stats = || {
            let rows = pgsluice::admin::stats_rows(p.pooler().context());
            let r = rows.into_iter().find(|r| r.database == db).unwrap();
            (r["total_client_parse_count"], r["total_bind_count"])
        };
        assert_eq!(stats(), (0, 0), "untracked statements are not counted");

        let set = |v: &str| p.pooler().context().set("max_prepared_statements", v);
        set("1").unwrap();
        let c = p.connect(&db, "postgres", "").await;
        for i in 10..13 {
            let s = c.prepare(&format!("SELECT {i}::int")).await.unwrap();
            assert_eq!(c.query_one(&s, &[]).await.unwrap().get::<_, i32>(0), i);
        }
        assert_eq!(
            support::value(&c, ON_SERVER).await,
            "1",
            "evicted down to max_prepared_statements"
        );
        assert!(
            stats().0 >= 3,
            "tracked statements are counted: {:?}",
            stats()
        );
        // Raised while the session is connected: its next statements stay.
        set("5").unwrap();
        for i in 20..24 {
            let s = c.prepare(&format!("SELECT {i}::int")).await.unwrap();
            assert_eq!(c.query_one(&s, &[]).await.unwrap().get::<_, i32>(0), i);
        }
        assert_eq!(support::value(&c, ON_SERVER).await, "5");
    })
    .await;
}
