//! Statistics (SHOW STATS figures, read with `pgsluice::stats`): totals
//! equal to a known load run through a real pooler and PostgreSQL, waits
//! counted when clients queue for a pool of one, and averages plus the
//! log_stats line after load with stats_period=1.

use crate::support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::net::TcpStream;

use pgsluice::stats::StatsRow;
use support::{PoolerBuilder, TestPooler, bounded, poll, transaction_pooler, wire};

/// A raw client that counts the bytes it sends and receives after login
/// (everything the relay forwards for it in transaction mode).
struct Counted {
    s: TcpStream,
    sent: u64,
    received: u64,
}

impl Counted {
    async fn login(pooler: &TestPooler, db: &str) -> Counted {
        let mut s = pooler.raw_connect().await;
        wire::login_trust(&mut s, "postgres", db).await;
        Counted {
            s,
            sent: 0,
            received: 0,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        wire::send(&mut self.s, bytes).await.unwrap();
        self.sent += bytes.len() as u64;
    }

    /// Read up to ReadyForQuery; returns its status and whether an
    /// ErrorResponse came.
    async fn ready(&mut self) -> (u8, bool) {
        let msgs = wire::read_until_ready(&mut self.s).await.unwrap();
        self.received += msgs.iter().map(|m| 5 + m.body.len() as u64).sum::<u64>();
        let status = msgs.last().unwrap().body[0];
        (status, msgs.iter().any(|m| m.tag == b'E'))
    }

    /// A simple Query, answered; the transaction status after it.
    async fn query(&mut self, sql: &str) -> u8 {
        self.send(&wire::query(sql)).await;
        self.ready().await.0
    }

    /// Parse/Bind/Execute/Sync of an unnamed statement, answered.
    async fn extended(&mut self, sql: &str) -> u8 {
        let mut buf = BytesMut::new();
        frontend::parse("", sql, [], &mut buf).unwrap();
        let serializer = |_: i32, _: &mut BytesMut| Ok(postgres_protocol::IsNull::No);
        frontend::bind("", "", [0i16; 0], [0i32; 0], serializer, [0i16], &mut buf)
            .map_err(|_| ())
            .unwrap();
        frontend::execute("", 0, &mut buf).unwrap();
        frontend::sync(&mut buf);
        self.send(&buf).await;
        self.ready().await.0
    }
}

/// SHOW STATS rows as the pooler computes them.
fn stats_rows(ctx: &pgsluice::context::Context) -> Vec<StatsRow> {
    let pools = ctx.pools.all();
    pgsluice::stats::report::rows(pools.iter().map(|p| (p.database(), &p.stats)))
}

fn row(pooler: &TestPooler, db: &str) -> Option<StatsRow> {
    let rows = stats_rows(pooler.pooler().context());
    rows.into_iter().find(|r| r.database == db)
}

/// Whether every link of `db`'s pools has ended and given its server
/// back. A link adds its figures to the pool's counters when it ends, one
/// counter after the other, just after its last answer was forwarded (so
/// after the client has it), and gives its server back after that: once
/// no server is linked (read under the pool's lock, which the give-back
/// takes too), the figures of every ended link are all in.
fn links_settled(pooler: &TestPooler, db: &str) -> bool {
    let pools = pooler.pooler().context().pools.all();
    pools
        .iter()
        .filter(|p| p.database() == db)
        .all(|p| p.figures().active == 0)
}

/// Poll until the database's row has `xacts` transactions and no link of
/// its pools is still running (transaction mode: see [`links_settled`]).
async fn row_with(pooler: &TestPooler, db: &str, xacts: u64) -> StatsRow {
    poll(100, Duration::from_millis(50), || async {
        let settled = links_settled(pooler, db);
        row(pooler, db).filter(|r| settled && r["total_xact_count"] >= xacts)
    })
    .await
    .unwrap_or_else(|| panic!("no {xacts} transactions: {:?}", row(pooler, db)))
}

#[tokio::test]
async fn totals_are_exactly_the_load_that_ran() {
    bounded(async {
        let (db, pooler) = transaction_pooler("stats_exact", "pool_size=1").await;
        let mut a = Counted::login(&pooler, &db).await;
        // 5 single statements: 5 transactions, 5 queries, 5 links.
        for _ in 0..5 {
            assert_eq!(a.query("SELECT 1").await, b'I');
        }
        // 2 transaction blocks of 4 statements: 2 transactions, 8 queries.
        for _ in 0..2 {
            assert_eq!(a.query("BEGIN").await, b'T');
            assert_eq!(a.query("SELECT 1").await, b'T');
            assert_eq!(a.query("SELECT 2").await, b'T');
            assert_eq!(a.query("COMMIT").await, b'I');
        }
        // A failed transaction: 1 transaction, 3 queries.
        assert_eq!(a.query("BEGIN").await, b'T');
        a.send(&wire::query("SELECT 1/0")).await;
        assert_eq!(a.ready().await, (b'E', true));
        assert_eq!(a.query("ROLLBACK").await, b'I');
        // A whole transaction in one Query message: 1 and 1.
        assert_eq!(a.query("BEGIN; SELECT 1; COMMIT").await, b'I');
        // Extended protocol: 3 single statements (3 and 3), then a
        // transaction of 3 (1 and 3); 6 Parse, 6 Bind of the unnamed
        // statement, which PgBouncer does not count (its parse and bind
        // counts are those of tracked named statements).
        for _ in 0..3 {
            assert_eq!(a.extended("SELECT 1").await, b'I');
        }
        assert_eq!(a.extended("BEGIN").await, b'T');
        assert_eq!(a.extended("SELECT 1").await, b'T');
        assert_eq!(a.extended("COMMIT").await, b'I');
        let r = row_with(&pooler, &db, 13).await;
        assert_eq!(
            (r["total_xact_count"], r["total_query_count"]),
            (13, 23),
            "{r:?}"
        );
        assert_eq!(r["total_server_assignment_count"], 13, "{r:?}");
        assert_eq!(
            (r["total_client_parse_count"], r["total_bind_count"]),
            (0, 0)
        );
        assert_eq!(r["total_server_parse_count"], 0);
        assert_eq!((r["total_received"], r["total_sent"]), (a.sent, a.received));
        assert!(r["total_query_time"] > 0 && r["total_xact_time"] >= r["total_query_time"]);
        assert_eq!(r["total_wait_time"], 0, "nobody waited: {r:?}");
        assert_eq!(r["total_client_login_count"], 1);

        // A pool of one: B queues while A holds the server in a
        // transaction, for at least 300 ms (counted from when the pool
        // shows B queued).
        let mut b = Counted::login(&pooler, &db).await;
        assert_eq!(a.query("BEGIN").await, b'T');
        b.send(&wire::query("SELECT 1")).await;
        let queued = poll(600, Duration::from_millis(10), || async {
            (pooler.waiting(&db, "postgres") == 1).then_some(())
        })
        .await;
        assert!(queued.is_some(), "B never queued for the server");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(a.query("COMMIT").await, b'I');
        assert_eq!(b.ready().await, (b'I', false));
        let r = row_with(&pooler, &db, 15).await;
        assert_eq!((r["total_xact_count"], r["total_query_count"]), (15, 26));
        assert_eq!(r["total_server_assignment_count"], 15);
        assert_eq!(r["total_client_login_count"], 2);
        assert!(r["total_wait_time"] >= 250_000, "{r:?}");
        assert!(r["total_xact_time"] >= 300_000, "{r:?}");
        assert_eq!(r["total_received"], a.sent + b.sent);
        assert_eq!(r["total_sent"], a.received + b.received);
        // Nothing counted twice, nothing later: the figures stay.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = row(&pooler, &db).unwrap();
        assert_eq!(again.total, r.total);
        // SHOW TOTALS includes this database.
        let pools = pooler.pooler().context().pools.all();
        let all = pgsluice::stats::report::all(pools.iter().map(|p| (p.database(), &p.stats)));
        assert!(all["total_xact_count"] >= 15);
        drop((a, b));
        pooler.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn session_mode_counts_each_transaction_before_the_client_leaves() {
    bounded(async {
        let pg = support::PgCluster::shared();
        let db = support::unique("stats_session");
        pg.create_db(&db).await;
        let pooler = PoolerBuilder::new()
            .set("pool_mode", "session")
            .pg_database(pg, &db, "")
            .start()
            .await;
        let mut a = Counted::login(&pooler, &db).await;
        assert_eq!(a.query("SELECT 1").await, b'I');
        assert_eq!(a.query("BEGIN").await, b'T');
        assert_eq!(a.query("COMMIT").await, b'I');
        // Still linked: the figures are there anyway (taken at each
        // transaction's end, one counter after the other: wait for the
        // three this test checks).
        let r = poll(100, Duration::from_millis(50), || async {
            row(&pooler, &db).filter(|r| {
                r["total_xact_count"] >= 2
                    && r["total_query_count"] >= 3
                    && r["total_server_assignment_count"] >= 1
            })
        })
        .await
        .unwrap_or_else(|| panic!("figures missing: {:?}", row(&pooler, &db)));
        assert_eq!((r["total_xact_count"], r["total_query_count"]), (2, 3));
        assert_eq!(r["total_server_assignment_count"], 1);
        drop(a);
        pooler.shutdown().await;
    })
    .await;
}

/// pgbench's TPC-B script over the extended protocol, a real client:
/// each transaction is 7 statements, each Parse/Bind/Describe/Execute/Sync.
#[tokio::test]
async fn pgbench_transactions_and_statements_are_counted() {
    let Some(pgbench) = support::tool("pgbench") else {
        return;
    };
    bounded(async {
        let pg = support::PgCluster::shared();
        let db = support::unique("stats_bench");
        pg.create_db(&db).await;
        let run = |args: Vec<String>| {
            let mut cmd = tokio::process::Command::new(&pgbench);
            cmd.args(args)
                .kill_on_drop(true)
                .env("PGSSLMODE", "disable");
            async move { cmd.output().await.unwrap() }
        };
        let args = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let port = pg.port();
        let out = run(args(&format!(
            "-i -s 1 -q -h 127.0.0.1 -p {port} -U postgres {db}"
        )))
        .await;
        assert!(out.status.success(), "pgbench -i: {out:?}");
        let pooler = PoolerBuilder::new()
            .pg_database(pg, &db, "pool_size=2")
            .start()
            .await;
        let port = pooler.addr().port();
        let out = run(args(&format!(
            "-n -M extended -c 4 -j 2 -t 100 -h 127.0.0.1 -p {port} -U postgres {db}"
        )))
        .await;
        assert!(out.status.success(), "pgbench: {out:?}");
        let r = row_with(&pooler, &db, 400).await;
        // pgbench's own set-up (its scale query) is a statement or two
        // beside the 400 transactions of 7 statements.
        let setup = r["total_xact_count"] - 400;
        assert!(setup <= 3, "{r:?}");
        assert_eq!(r["total_query_count"], 7 * 400 + setup, "{r:?}");
        // Unnamed statements: not counted as parses or binds (PgBouncer
        // counts tracked named statements only).
        assert_eq!(
            (r["total_client_parse_count"], r["total_bind_count"]),
            (0, 0)
        );
        assert!(r["total_client_login_count"] >= 4, "{r:?}");
        assert!(r["total_server_assignment_count"] >= 400, "{r:?}");
        assert!(r["total_xact_time"] > r["total_query_time"], "{r:?}");
        pooler.shutdown().await;
    })
    .await;
}

/// The log_stats lines, captured from the whole test process. The
/// subscriber is global (the pooler logs from its own shard threads), and
/// every other test of the binary runs poolers in this process too: only
/// lines holding "stats: " are kept, the rest would pile up here.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("off,pgsluice=info")
            .with_writer(move || Capture(w.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    /// One formatted event per call.
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if b.windows(7).any(|w| w == b"stats: ") {
            self.0.lock().unwrap().extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn averages_and_the_log_line_follow_the_load() {
    let log = captured();
    bounded(async {
        let pg = support::PgCluster::shared();
        let db = support::unique("stats_avg");
        pg.create_db(&db).await;
        let pooler = PoolerBuilder::new()
            .set("stats_period", "1")
            .set("log_stats", "1")
            .pg_database(pg, &db, "pool_size=2")
            .start()
            .await;
        // The pooler runs the stats_period task itself.
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (stop, c) = (stop.clone(), pooler.connect(&db, "postgres", "").await);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    c.simple_query("SELECT 1").await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let r = poll(100, Duration::from_millis(100), || async {
            row(&pooler, &db).filter(|r| {
                r["avg_xact_count"] > 0
                    && r["avg_query_count"] > 0
                    && r["avg_server_assignment_count"] > 0
                    && r["avg_recv"] > 0
                    && r["avg_sent"] > 0
                    && r["avg_query_time"] > 0
                    && r["avg_xact_time"] > 0
            })
        })
        .await;
        assert!(r.is_some(), "averages stayed zero: {:?}", row(&pooler, &db));
        let line = poll(50, Duration::from_millis(100), || async {
            let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
            text.lines()
                .find(|l| {
                    l.contains("stats: ")
                        && l.contains(&format!("database={db}"))
                        && !l.contains("stats: 0 xacts/s")
                })
                .map(str::to_string)
        })
        .await;
        let line = line.expect("no log_stats line with traffic");
        assert!(
            line.contains(" queries/s, ") && line.contains(" us, wait "),
            "{line}"
        );
        stop.store(true, Ordering::Relaxed);
        load.await.unwrap();
        pooler.shutdown().await;
    })
    .await;
}
