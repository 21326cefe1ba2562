//! The ledger: clients insert rows with unique ids through pgsluice and
//! note every commit that was acknowledged, while the test runs the
//! operations a DBA runs on a live pooler, one after the other: PAUSE and
//! RESUME, RELOAD with a changed pool size, SUSPEND and RESUME, KILL of the
//! database (then RESUME), every backend terminated with
//! pg_terminate_backend, and a PostgreSQL fast restart.
//!
//! At the end: every acknowledged row is in the table, none is there
//! twice, no client hung (every operation is bounded), PAUSE/RESUME,
//! RELOAD and SUSPEND failed no transaction and no login at all, and
//! terminating backends or restarting PostgreSQL failed at most the
//! transactions in flight and no login. The failures per operation, and
//! the errors that reached the driver without a SQLSTATE, are printed
//! (`cargo test ledger -- --nocapture`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_postgres::Client;

use crate::support::{self, PgCluster, PoolerBuilder, TestPooler};

const ADMIN: &str = "ledger_admin";
const WORKERS: usize = 8;
/// Any single client operation longer than this is a hang.
const OP_LIMIT: Duration = Duration::from_secs(60);

/// The operations, in the order they run; failures are charged to the
/// one running (or last run) when they happen.
const OPS: [&str; 7] = [
    "warm-up",
    "PAUSE/RESUME",
    "RELOAD",
    "SUSPEND/RESUME",
    "KILL/RESUME",
    "pg_terminate_backend",
    "fast restart",
];
/// Operations that must fail no transaction and no login.
const LOSSLESS: [&str; 3] = ["PAUSE/RESUME", "RELOAD", "SUSPEND/RESUME"];

#[derive(Default)]
struct Ledger {
    acked: Vec<i64>,
    /// Per operation: failed transactions and failed logins.
    failed_txns: BTreeMap<&'static str, usize>,
    failed_logins: BTreeMap<&'static str, usize>,
    /// Errors that carried no SQLSTATE.
    unclear: Vec<String>,
}

struct Shared {
    ledger: Mutex<Ledger>,
    op: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn failed(&self, login: bool, e: &tokio_postgres::Error) {
        let op = OPS[self.op.load(Ordering::SeqCst)];
        let mut l = self.ledger.lock();
        let map = if login {
            &mut l.failed_logins
        } else {
            &mut l.failed_txns
        };
        *map.entry(op).or_default() += 1;
        if support::sqlstate(e).is_none() {
            l.unclear.push(format!("{op}: {e:?}"));
        }
    }
}

async fn worker(p: Arc<TestPooler>, db: String, id: i64, s: Arc<Shared>) {
    let mut client: Option<Client> = None;
    let mut seq = 0i64;
    while !s.stop.load(Ordering::SeqCst) {
        let c = match client.take() {
            Some(c) => c,
            None => {
                let r = tokio::time::timeout(OP_LIMIT, p.try_connect(&db, "postgres", ""))
                    .await
                    .unwrap_or_else(|_| panic!("worker {id}: login hung"));
                match r {
                    Ok(c) => c,
                    Err(e) => {
                        s.failed(true, &e);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
        };
        seq += 1;
        let row = id * 1_000_000_000 + seq;
        let sql = format!("BEGIN; INSERT INTO ledger VALUES ({row}, {id}); COMMIT");
        let r = tokio::time::timeout(OP_LIMIT, c.batch_execute(&sql))
            .await
            .unwrap_or_else(|_| panic!("worker {id}: transaction hung"));
        match r {
            Ok(()) => {
                s.ledger.lock().acked.push(row);
                client = Some(c);
            }
            // Its outcome is unknown (it may have committed): not
            // counted as acknowledged, and not retried under the same id.
            Err(e) => s.failed(false, &e),
        }
    }
}

/// Run a console command, which must succeed.
async fn console(admin: &Client, cmd: &str) {
    tokio::time::timeout(OP_LIMIT, admin.simple_query(cmd))
        .await
        .unwrap_or_else(|_| panic!("{cmd} hung"))
        .unwrap_or_else(|e| panic!("{cmd}: {e:?}"));
}

#[tokio::test]
async fn no_acknowledged_commit_is_lost_across_operations() {
    support::bounded_for(Duration::from_secs(300), async {
        let pg = Arc::new(
            tokio::task::spawn_blocking(PgCluster::dedicated)
                .await
                .unwrap(),
        );
        let db = "ledger".to_string();
        pg.sql("CREATE DATABASE ledger").await;
        let direct = pg.direct_client(&db, "postgres").await;
        // No primary key: a row written twice would show.
        direct
            .batch_execute("CREATE TABLE ledger (id bigint NOT NULL, client int NOT NULL)")
            .await
            .unwrap();
        let p = Arc::new(
            PoolerBuilder::new()
                .trust(ADMIN)
                .set("admin_users", ADMIN)
                .set("query_wait_timeout", "60")
                .database(
                    &db,
                    &format!("host=127.0.0.1 port={} dbname=ledger pool_size=4", pg.port()),
                )
                .start()
                .await,
        );
        let admin = p.connect("pgbouncer", ADMIN, "").await;
        let s = Arc::new(Shared {
            ledger: Mutex::new(Ledger::default()),
            op: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let tasks: Vec<_> = (0..WORKERS as i64)
            .map(|id| tokio::spawn(worker(p.clone(), db.clone(), id + 1, s.clone())))
            .collect();
        let settle = || tokio::time::sleep(Duration::from_millis(1500));
        let next = |name: &str| {
            let i = OPS.iter().position(|o| *o == name).unwrap();
            s.op.store(i, Ordering::SeqCst);
        };
        settle().await;

        next("PAUSE/RESUME");
        for _ in 0..3 {
            console(&admin, &format!("PAUSE {db}")).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            console(&admin, &format!("RESUME {db}")).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        console(&admin, "PAUSE").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        console(&admin, "RESUME").await;
        settle().await;

        next("RELOAD");
        let ini = std::fs::read_to_string(p.ini_path()).unwrap();
        for size in ["pool_size=6", "pool_size=3", "pool_size=4"] {
            std::fs::write(p.ini_path(), ini.replace("pool_size=4", size)).unwrap();
            console(&admin, "RELOAD").await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        settle().await;

        next("SUSPEND/RESUME");
        console(&admin, "SUSPEND").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        console(&admin, "RESUME").await;
        settle().await;

        next("KILL/RESUME");
        console(&admin, &format!("KILL {db}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        console(&admin, &format!("RESUME {db}")).await;
        settle().await;

        next("pg_terminate_backend");
        direct
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = 'ledger' AND pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
        settle().await;

        next("fast restart");
        drop(direct);
        let pg2 = pg.clone();
        tokio::task::spawn_blocking(move || pg2.restart())
            .await
            .unwrap();
        settle().await;
        settle().await;

        s.stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.expect("a worker panicked (a hang)");
        }

        let direct = pg.direct_client(&db, "postgres").await;
        let rows = direct
            .query("SELECT id FROM ledger", &[])
            .await
            .unwrap();
        let l = s.ledger.lock();
        let mut seen = HashSet::with_capacity(rows.len());
        let mut twice = Vec::new();
        for r in &rows {
            let id: i64 = r.get(0);
            if !seen.insert(id) {
                twice.push(id);
            }
        }
        let lost: Vec<_> = l.acked.iter().filter(|id| !seen.contains(id)).collect();
        eprintln!(
            "ledger: {} acknowledged, {} rows; failed transactions per operation {:?}; failed logins {:?}",
            l.acked.len(),
            rows.len(),
            l.failed_txns,
            l.failed_logins
        );
        assert!(l.acked.len() > 500, "too little load: {}", l.acked.len());
        assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
        assert!(twice.is_empty(), "rows written twice: {twice:?}");
        // Known gap (issue 25): a session ended by KILL, or whose server
        // PostgreSQL terminated, sometimes shows tokio-postgres a closed
        // connection rather than the error (`Closed`: the FATAL came while
        // the driver had nothing pending, or was lost when the socket was
        // closed with the client's next query unread). Printed, bounded by
        // the sessions, never in the lossless operations (asserted below).
        eprintln!("ledger: errors without a SQLSTATE: {:?}", l.unclear);
        assert!(
            l.unclear.len() <= 3 * WORKERS,
            "errors without a SQLSTATE: {:?}",
            l.unclear
        );
        for op in LOSSLESS {
            assert_eq!(
                (l.failed_txns.get(op), l.failed_logins.get(op)),
                (None, None),
                "{op} failed clients"
            );
        }
        // The operations that end sessions on purpose cost at most one
        // transaction per session each (the one in flight).
        for op in ["pg_terminate_backend", "fast restart"] {
            let n = l.failed_txns.get(op).copied().unwrap_or(0);
            assert!(n <= WORKERS, "{op}: {n} failed transactions");
            assert_eq!(l.failed_logins.get(op), None, "{op} failed logins");
        }
    })
    .await
}
