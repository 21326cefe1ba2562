//! Soak: 1,000 concurrent clients on a transaction-mode pool of 10 run
//! random short transactions for 30 s: single statements, multi-statement
//! BEGIN..COMMIT, rollbacks, extended-protocol queries and interactive
//! transactions spanning several round trips. Each client owns one counter
//! row and counts its own commits; every statement that reads the row
//! checks it against that count while the load runs, and at the end every
//! row and every client's event log must match exactly: nothing lost,
//! duplicated or done on another client's behalf, and no error at all.
//! Three clients in four have an application_name of their own (so servers
//! are re-synced all the time), and every update also checks that the
//! server it ran on had the client's own name.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Barrier, Semaphore};
use tokio_postgres::types::Type;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, unique};

const CLIENTS: usize = 1000;
const POOL_SIZE: usize = 10;
const SOAK: Duration = Duration::from_secs(30);
/// Logins in flight at once: well under the listen backlog (128).
const CONNECTING: usize = 32;
/// Upper bound for one operation: a hang is an error, not a stuck test.
const OP_LIMIT: Duration = Duration::from_secs(30);

/// A tiny deterministic generator (xorshift64*), one per client.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// What one client did, as it saw it.
#[derive(Default)]
struct Tally {
    /// Committed increments of its counter row.
    commits: i64,
    /// Committed rows in `events` (a subset of the commits).
    events: i64,
    /// Transactions that ended (commits, rollbacks, reads).
    transactions: u64,
}

/// The application_name client `id` logs in with ("" for the default).
fn app_name(id: i32) -> String {
    if id % 4 == 0 {
        String::new()
    } else {
        format!("soak_{id}")
    }
}

/// The only row of a simple query: (counter, application_name).
fn counter_row(msgs: &[tokio_postgres::SimpleQueryMessage]) -> (i64, String) {
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1, "one row expected");
    let n = rows[0].get(0).unwrap().parse().unwrap();
    (n, rows[0].get(1).unwrap().to_string())
}

/// One random transaction for client `id`; updates `t` only for what
/// committed. An `Err` is an error the pooler let through.
async fn one_transaction(
    c: &mut tokio_postgres::Client,
    id: i32,
    rng: &mut Rng,
    t: &mut Tally,
) -> Result<(), String> {
    let want = t.commits + 1;
    let name = app_name(id);
    let check = |what: &str, (got, app): (i64, String), expected: i64| {
        if got == expected && app == name {
            Ok(())
        } else {
            Err(format!(
                "client {id}: {what}: counter is {got}, expected {expected}; \
                 application_name {app:?}, expected {name:?}"
            ))
        }
    };
    let update = format!(
        "UPDATE counters SET n = n + 1 WHERE id = {id} \
         RETURNING n, current_setting('application_name')"
    );
    let e = |e: tokio_postgres::Error| format!("client {id}: {e:?}");
    match rng.below(6) {
        0 => {
            let msgs = c.simple_query(&update).await.map_err(e)?;
            check("single statement", counter_row(&msgs), want)?;
            t.commits += 1;
        }
        1 => {
            let seq = t.events + 1;
            let sql = format!("BEGIN; {update}; INSERT INTO events VALUES ({id}, {seq}); COMMIT");
            let msgs = c.simple_query(&sql).await.map_err(e)?;
            check("BEGIN..COMMIT", counter_row(&msgs), want)?;
            t.commits += 1;
            t.events += 1;
        }
        2 => {
            let sql = format!(
                "BEGIN; UPDATE counters SET n = n + 1000 WHERE id = {id}; \
                 INSERT INTO events VALUES ({id}, -1); ROLLBACK"
            );
            c.simple_query(&sql).await.map_err(e)?;
        }
        3 => {
            // Extended protocol, unnamed statement (Parse/Bind/Execute/Sync).
            let row = c
                .query_typed_one(
                    "UPDATE counters SET n = n + $2 WHERE id = $1 \
                     RETURNING n, current_setting('application_name')",
                    &[(&id, Type::INT4), (&1i64, Type::INT8)],
                )
                .await
                .map_err(e)?;
            check("extended protocol", (row.get(0), row.get(1)), want)?;
            t.commits += 1;
        }
        4 => {
            // Several round trips inside one transaction: the server must
            // stay linked to this client until COMMIT / ROLLBACK.
            let commit = rng.below(3) != 0;
            let tx = c.transaction().await.map_err(e)?;
            let row = tx.query_typed_one(&update, &[]).await.map_err(e)?;
            check("interactive transaction", (row.get(0), row.get(1)), want)?;
            let seq = t.events + 1;
            tx.execute_typed(
                "INSERT INTO events VALUES ($1, $2)",
                &[(&id, Type::INT4), (&(seq as i32), Type::INT4)],
            )
            .await
            .map_err(e)?;
            if commit {
                tx.commit().await.map_err(e)?;
                t.commits += 1;
                t.events += 1;
            } else {
                tx.rollback().await.map_err(e)?;
            }
        }
        _ => {
            let row = c
                .query_typed_one("SELECT n FROM counters WHERE id = $1", &[(&id, Type::INT4)])
                .await
                .map_err(e)?;
            if row.get::<_, i64>(0) != t.commits {
                return Err(format!(
                    "client {id}: read {}, expected {}",
                    row.get::<_, i64>(0),
                    t.commits
                ));
            }
        }
    }
    t.transactions += 1;
    Ok(())
}

/// Run transactions until `deadline`; the first error ends the client.
async fn client_loop(
    mut c: tokio_postgres::Client,
    id: i32,
    start: Arc<Barrier>,
    deadline: Arc<std::sync::OnceLock<Instant>>,
) -> (Tally, Option<String>) {
    let mut rng = Rng::new(id as u64 + 1);
    let mut t = Tally::default();
    start.wait().await;
    let deadline = *deadline.get_or_init(|| Instant::now() + SOAK);
    while Instant::now() < deadline {
        let op = one_transaction(&mut c, id, &mut rng, &mut t);
        match tokio::time::timeout(OP_LIMIT, op).await {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => return (t, Some(msg)),
            Err(_) => return (t, Some(format!("client {id}: transaction hung"))),
        }
    }
    (t, None)
}

async fn setup() -> (String, TestPooler) {
    let pg = PgCluster::shared();
    let db = unique("soak_db");
    pg.create_db(&db).await;
    let direct = pg.direct_client(&db, "postgres").await;
    direct
        .batch_execute(&format!(
            "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
             CREATE TABLE events (client int, seq int, PRIMARY KEY (client, seq));
             INSERT INTO counters SELECT g, 0 FROM generate_series(0, {}) g;",
            CLIENTS - 1
        ))
        .await
        .unwrap();
    let pooler = PoolerBuilder::new()
        .set("max_client_conn", &(CLIENTS + 100).to_string())
        .set("log_connections", "0")
        .set("log_disconnections", "0")
        .pg_database(pg, &db, &format!("pool_size={POOL_SIZE}"))
        .start()
        .await;
    (db, pooler)
}

#[tokio::test]
async fn soak_1000_clients_on_a_pool_of_10() {
    // Each client is two sockets in this process (its own and the pooler's).
    let nofile = support::raise_nofile_limit();
    assert!(
        nofile >= (2 * CLIENTS + 200) as u64,
        "RLIMIT_NOFILE {nofile} too low"
    );
    bounded_for(Duration::from_secs(180), async {
        let (db, pooler) = setup().await;
        let pooler = Arc::new(pooler);
        let connecting = Arc::new(Semaphore::new(CONNECTING));
        let start = Arc::new(Barrier::new(CLIENTS + 1));
        let deadline = Arc::new(std::sync::OnceLock::new());
        let began = Instant::now();
        let mut tasks = Vec::with_capacity(CLIENTS);
        for id in 0..CLIENTS {
            let (pooler, db, connecting) = (pooler.clone(), db.clone(), connecting.clone());
            let (start, deadline) = (start.clone(), deadline.clone());
            tasks.push(tokio::spawn(async move {
                let permit = connecting.acquire_owned().await.unwrap();
                let mut cfg = pooler.config(&db, "postgres", "");
                cfg.application_name(app_name(id as i32));
                let c = cfg.connect(tokio_postgres::NoTls).await.map(|(c, conn)| {
                    tokio::spawn(conn);
                    c
                });
                drop(permit);
                match c {
                    Ok(c) => client_loop(c, id as i32, start, deadline).await,
                    Err(e) => {
                        start.wait().await;
                        (Tally::default(), Some(format!("client {id}: login: {e:?}")))
                    }
                }
            }));
        }
        start.wait().await;
        let connected_in = began.elapsed();
        let mut tallies = Vec::with_capacity(CLIENTS);
        let mut errors = Vec::new();
        for task in tasks {
            let (t, err) = task.await.expect("client task panicked");
            tallies.push(t);
            errors.extend(err);
        }
        let total: u64 = tallies.iter().map(|t| t.transactions).sum();
        eprintln!(
            "soak: {CLIENTS} clients connected in {connected_in:?}; \
             {total} transactions in {SOAK:?}; {} errors",
            errors.len()
        );
        assert!(
            errors.is_empty(),
            "{} errors, first: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        assert!(
            tallies.iter().all(|t| t.transactions > 0),
            "a client never ran"
        );

        // Every row holds exactly what its client counted.
        let direct = PgCluster::shared().direct_client(&db, "postgres").await;
        let rows = direct
            .query("SELECT id, n FROM counters ORDER BY id", &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), CLIENTS);
        for row in &rows {
            let (id, n): (i32, i64) = (row.get(0), row.get(1));
            assert_eq!(n, tallies[id as usize].commits, "counter of client {id}");
        }
        let events = direct
            .query(
                "SELECT client, count(*), min(seq), max(seq) FROM events GROUP BY client",
                &[],
            )
            .await
            .unwrap();
        let mut seen = vec![0i64; CLIENTS];
        for row in &events {
            let (id, count, min, max): (i32, i64, i32, i32) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            assert_eq!((min, max as i64), (1, count), "events of client {id}");
            seen[id as usize] = count;
        }
        for (id, t) in tallies.iter().enumerate() {
            assert_eq!(seen[id], t.events, "events of client {id}");
        }
    })
    .await
}
