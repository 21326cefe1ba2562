//! Read/write splitting against real streaming replication (a primary and
//! hot standbys made by pg_basebackup): reads on standbys, writes on the
//! primary, every rule that keeps a transaction on the primary, lag
//! gating, read-your-writes by window and by WAL position, a standby
//! killed under reads, and bad input.

use crate::support;

use std::time::Duration;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, value};
use tokio_postgres::SimpleQueryMessage;

const IN_RECOVERY: &str = "SELECT pg_is_in_recovery()";

/// A pooler in front of `primary` and `standbys` (database `app`,
/// splitting, health checks every 0.2 s) with `extra` connection-string
/// keys.
async fn split_pooler(primary: &PgCluster, standbys: &[&PgCluster], extra: &str) -> TestPooler {
    split_builder(primary, standbys, extra).start().await
}

/// The settings of [`split_pooler`], to add to.
fn split_builder(primary: &PgCluster, standbys: &[&PgCluster], extra: &str) -> PoolerBuilder {
    let mut hosts = vec!["127.0.0.1".to_string()];
    let mut ports = vec![primary.port().to_string()];
    for s in standbys {
        hosts.push("127.0.0.1".into());
        ports.push(s.port().to_string());
    }
    PoolerBuilder::new()
        .trust("split_admin")
        .set("admin_users", "split_admin")
        .set("host_check_period", "0.2")
        .database(
            "app",
            &format!(
                "host={} port={} dbname=postgres read_write_split=1 {extra}",
                hosts.join(","),
                ports.join(",")
            ),
        )
}

/// A primary and a hot standby streaming from it.
pub(crate) async fn replicated() -> (PgCluster, PgCluster) {
    let primary = PgCluster::dedicated();
    let standby = PgCluster::standby_of(&primary);
    primary.wait_for_standbys(1).await;
    (primary, standby)
}

/// SHOW ROUTING's count for `app`, `target` and `reason`.
async fn routed(pooler: &TestPooler, target: &str, reason: &str) -> i64 {
    let admin = pooler.connect("pgbouncer", "split_admin", "").await;
    let rows = admin.simple_query("SHOW ROUTING").await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r)
                if r.get("database") == Some("app")
                    && r.get("target").unwrap_or("") == target
                    && r.get("reason") == Some(reason) =>
            {
                r.get("transactions").and_then(|v| v.parse().ok())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no SHOW ROUTING row for {target}/{reason}"))
}

/// SHOW HOSTS' state of `app`'s host on `port`.
async fn host_state(pooler: &TestPooler, port: u16) -> String {
    let admin = pooler.connect("pgbouncer", "split_admin", "").await;
    let rows = admin.simple_query("SHOW HOSTS").await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r)
                if r.get("database") == Some("app") && r.get("port") == Some(&port.to_string()) =>
            {
                r.get("state").map(String::from)
            }
            _ => None,
        })
        .expect("a SHOW HOSTS row")
}

/// Wait until `standby` has replayed everything `primary` wrote so far.
pub(crate) async fn caught_up(primary: &PgCluster, standby: &PgCluster) {
    let p = primary
        .direct_client("postgres", support::pg::SUPERUSER)
        .await;
    let lsn = value(&p, "SELECT pg_current_wal_insert_lsn()::text").await;
    let s = standby
        .direct_client("postgres", support::pg::SUPERUSER)
        .await;
    let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
    support::poll(200, Duration::from_millis(25), || async {
        (value(&s, &sql).await == "t").then_some(())
    })
    .await
    .expect("the standby never caught up");
}

/// Wait until the health checker has seen `n` standbys in the rotation.
async fn wait_rotation(pooler: &TestPooler, n: i64) {
    support::poll(200, Duration::from_millis(50), || async {
        (routed(pooler, "", "eligible_standbys").await == n).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("the read rotation never had {n} standbys"));
}

#[tokio::test]
async fn reads_go_to_standbys_and_everything_else_to_the_primary() {
    bounded_for(Duration::from_secs(120), async {
        let (primary, standby) = replicated().await;
        let pooler = split_pooler(&primary, &[&standby], "").await;
        let c = pooler.connect("app", "postgres", "").await;
        // Autocommit reads, simple and extended protocol.
        assert_eq!(value(&c, IN_RECOVERY).await, "t");
        let row = c.query_one(IN_RECOVERY, &[]).await.unwrap();
        assert!(row.get::<_, bool>(0));
        let st = c.prepare("SELECT pg_is_in_recovery(), $1::int").await.unwrap();
        for i in 0..3 {
            let row = c.query_one(&st, &[&i]).await.unwrap();
            assert!(row.get::<_, bool>(0), "prepared statement run {i}");
        }
        // Writes, and what only looks like a read, go to the primary.
        c.batch_execute("CREATE TABLE t (id int)").await.unwrap();
        c.execute("INSERT INTO t VALUES ($1)", &[&1]).await.unwrap();
        caught_up(&primary, &standby).await;
        for sql in [
            "SELECT pg_is_in_recovery() FROM t FOR UPDATE",
            "WITH d AS (DELETE FROM t WHERE id < 0 RETURNING *) SELECT pg_is_in_recovery() FROM (SELECT 1) x",
            "/* pgsluice:primary */ SELECT pg_is_in_recovery()",
            "SELECT pg_is_in_recovery() WHERE nextval('s') > 0 OR true",
        ] {
            if sql.contains("nextval") {
                c.batch_execute("CREATE SEQUENCE IF NOT EXISTS s").await.unwrap();
            }
            assert_eq!(value(&c, sql).await, "f", "{sql}");
        }
        // A transaction block is the primary's throughout; BEGIN READ ONLY
        // is a standby's.
        c.batch_execute("BEGIN").await.unwrap();
        assert_eq!(value(&c, IN_RECOVERY).await, "f");
        c.batch_execute("COMMIT").await.unwrap();
        c.batch_execute("BEGIN READ ONLY").await.unwrap();
        assert_eq!(value(&c, IN_RECOVERY).await, "t");
        assert_eq!(value(&c, "SELECT count(*) FROM t").await, "1");
        c.batch_execute("COMMIT").await.unwrap();
        // A hint naming no known role is no hint; a standby hint is obeyed.
        assert_eq!(value(&c, "/* pgsluice:replica */ SELECT pg_is_in_recovery()").await, "t");
        assert_eq!(value(&c, "/* pgsluice:standby */ SELECT pg_is_in_recovery()").await, "t");
        // Bad input: a parse error comes from the primary, a 1 MB statement
        // (not classified: more than one read) works.
        let e = c.simple_query("SELEC 1").await.unwrap_err();
        assert_eq!(support::sqlstate(&e).as_deref(), Some("42601"));
        let big = format!("SELECT pg_is_in_recovery(), length('{}')", "x".repeat(1 << 20));
        let rows = c.simple_query(&big).await.unwrap();
        assert!(
            rows.iter()
                .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(1) == Some("1048576")))
        );
        // default_transaction_read_only: every transaction can only read.
        c.batch_execute("SET default_transaction_read_only = on").await.unwrap();
        c.batch_execute("BEGIN").await.unwrap();
        assert_eq!(value(&c, IN_RECOVERY).await, "t");
        c.batch_execute("COMMIT").await.unwrap();
        c.batch_execute("RESET default_transaction_read_only").await.unwrap();
        // Session state pins the client to the primary.
        c.batch_execute("CREATE TEMP TABLE mine (a int)").await.unwrap();
        assert_eq!(value(&c, IN_RECOVERY).await, "f");
        assert_eq!(value(&c, "SELECT count(*) FROM mine").await, "0");
        // Another client is not pinned.
        let other = pooler.connect("app", "postgres", "").await;
        assert_eq!(value(&other, IN_RECOVERY).await, "t");
        for (target, reason, least) in [
            ("standby", "read", 8),
            ("primary", "write", 3),
            ("primary", "hint", 1),
            ("standby", "hint", 1),
            ("primary", "unparseable", 2),
            ("primary", "session_state", 2),
        ] {
            let n = routed(&pooler, target, reason).await;
            if n < least {
                // Every count, to tell where the missing transaction went.
                let admin = pooler.connect("pgbouncer", "split_admin", "").await;
                let rows = admin.simple_query("SHOW ROUTING").await.unwrap();
                let all: Vec<String> = rows
                    .iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(r) => Some(format!(
                            "{}/{}: {}",
                            r.get("target").unwrap_or(""),
                            r.get("reason").unwrap_or(""),
                            r.get("transactions").unwrap_or("")
                        )),
                        _ => None,
                    })
                    .collect();
                panic!("{target}/{reason}: {n} transactions; all: {all:?}");
            }
        }
        // SHOW POOLS: one row for each of the database's two pools.
        let admin = pooler.connect("pgbouncer", "split_admin", "").await;
        let mut roles: Vec<String> = admin
            .simple_query("SHOW POOLS")
            .await
            .unwrap()
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) if r.get("database") == Some("app") => {
                    r.get("role").map(String::from)
                }
                _ => None,
            })
            .collect();
        roles.sort();
        assert_eq!(roles, ["primary", "standby"]);
    })
    .await
}

#[tokio::test]
async fn read_write_split_off_for_a_user_keeps_its_sessions_on_the_primary() {
    bounded_for(Duration::from_secs(120), async {
        let (primary, standby) = replicated().await;
        let p = primary
            .direct_client("postgres", support::pg::SUPERUSER)
            .await;
        p.batch_execute("CREATE ROLE split_reader LOGIN")
            .await
            .unwrap();
        caught_up(&primary, &standby).await;
        let pooler = split_builder(&primary, &[&standby], "")
            .trust("split_reader")
            .user("postgres", "read_write_split=0")
            .start()
            .await;
        // Another user of the same database splits (its first session
        // makes the database's read rotation).
        let reader = pooler.connect("app", "split_reader", "").await;
        wait_rotation(&pooler, 1).await;
        // The user with read_write_split=0 in [users]: every read on the
        // primary, and not counted by the splitting database's rotation.
        let kept = pooler.connect("app", "postgres", "").await;
        for _ in 0..5 {
            assert_eq!(value(&kept, IN_RECOVERY).await, "f");
        }
        assert_eq!(routed(&pooler, "standby", "read").await, 0);
        for _ in 0..5 {
            assert_eq!(value(&reader, IN_RECOVERY).await, "t");
        }
        assert_eq!(routed(&pooler, "standby", "read").await, 5);
    })
    .await;
}

#[tokio::test]
async fn pipelined_reads_and_writes_each_go_their_way() {
    bounded_for(Duration::from_secs(120), async {
        let (primary, standby) = replicated().await;
        primary.sql("CREATE TABLE p (id int)").await;
        let pooler = split_pooler(&primary, &[&standby], "").await;
        let c = pooler.connect("app", "postgres", "").await;
        // tokio-postgres pipelines these: each Sync-terminated group is a
        // unit; the write after a read must not reach the standby.
        let read = c.prepare("SELECT pg_is_in_recovery()").await.unwrap();
        let write = c
            .prepare("INSERT INTO p VALUES (1) RETURNING pg_is_in_recovery()")
            .await
            .unwrap();
        let (a, b, d) = tokio::join!(
            c.query_one(&read, &[]),
            c.query_one(&write, &[]),
            c.query_one(&read, &[])
        );
        assert!(a.unwrap().get::<_, bool>(0));
        assert!(!b.unwrap().get::<_, bool>(0));
        // What was pipelined behind a write goes with it to the primary
        // (never a write to a standby).
        d.unwrap();
        assert_eq!(
            value(&c, "/* pgsluice:primary */ SELECT count(*) FROM p").await,
            "1"
        );
    })
    .await
}

/// Make the only standby lag: pause its replay, write 1 MB through `c`,
/// and wait until the rotation has no standby (max_standby_lag_bytes
/// below that). Returns a direct client of the standby, to resume with
/// `pg_wal_replay_resume()`.
async fn lag_behind(
    pooler: &TestPooler,
    c: &tokio_postgres::Client,
    standby: &PgCluster,
) -> tokio_postgres::Client {
    let direct = standby
        .direct_client("postgres", support::pg::SUPERUSER)
        .await;
    direct
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    c.batch_execute(
        "CREATE TABLE big AS SELECT repeat('x', 1000) AS x FROM generate_series(1, 1000)",
    )
    .await
    .unwrap();
    wait_rotation(pooler, 0).await;
    direct
}

#[tokio::test]
async fn a_lagging_standby_leaves_the_read_rotation_and_comes_back() {
    bounded_for(Duration::from_secs(120), async {
        let (primary, standby) = replicated().await;
        let pooler = split_pooler(&primary, &[&standby], "max_standby_lag_bytes=64kB").await;
        let c = pooler.connect("app", "postgres", "").await;
        wait_rotation(&pooler, 1).await;
        assert_eq!(value(&c, IN_RECOVERY).await, "t");
        let direct = lag_behind(&pooler, &c, &standby).await;
        assert_eq!(host_state(&pooler, standby.port()).await, "lagging");
        // standby_fallback = primary: reads go there meanwhile.
        assert_eq!(value(&c, IN_RECOVERY).await, "f");
        assert!(routed(&pooler, "primary", "lag").await >= 1);
        direct
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .unwrap();
        wait_rotation(&pooler, 1).await;
        assert_eq!(value(&c, IN_RECOVERY).await, "t");
        assert_eq!(host_state(&pooler, standby.port()).await, "up");
    })
    .await
}

#[tokio::test]
async fn standby_fallback_wait_holds_reads_until_a_standby_is_back() {
    bounded_for(Duration::from_secs(120), async {
        let (primary, standby) = replicated().await;
        let pooler = split_pooler(
            &primary,
            &[&standby],
            "max_standby_lag_bytes=64kB standby_fallback=wait",
        )
        .await;
        let c = pooler.connect("app", "postgres", "").await;
        wait_rotation(&pooler, 1).await;
        assert_eq!(value(&c, IN_RECOVERY).await, "t");
        let direct = lag_behind(&pooler, &c, &standby).await;
        // A read now waits for a standby instead of going to the primary.
        let reader = pooler.connect("app", "postgres", "").await;
        let read = tokio::spawn(async move { value(&reader, IN_RECOVERY).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!read.is_finished(), "the read did not wait for a standby");
        direct
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .unwrap();
        assert_eq!(read.await.unwrap(), "t");
        assert_eq!(routed(&pooler, "primary", "lag").await, 0);
    })
    .await
}

/// Insert then select at once, `rounds` times on each of `clients`
/// clients, through a standby that applies WAL two seconds late: the
/// number of rounds whose select did not see its own insert.
async fn own_writes_missed(pooler: &TestPooler, clients: usize, rounds: usize) -> usize {
    let mut tasks = Vec::new();
    for k in 0..clients {
        let c = pooler.connect("app", "postgres", "").await;
        tasks.push(tokio::spawn(async move {
            let mut missed = 0;
            for i in 0..rounds {
                let id = (k * 1000 + i) as i32;
                c.execute("INSERT INTO ryw VALUES ($1)", &[&id])
                    .await
                    .unwrap();
                let n: i64 = c
                    .query_one("SELECT count(*) FROM ryw WHERE id = $1", &[&id])
                    .await
                    .unwrap()
                    .get(0);
                missed += usize::from(n == 0);
            }
            missed
        }));
    }
    let mut missed = 0;
    for t in tasks {
        missed += t.await.unwrap();
    }
    missed
}

/// A primary and a standby that applies WAL two seconds late.
async fn delayed_pair() -> (PgCluster, PgCluster) {
    let (primary, standby) = replicated().await;
    primary.sql("CREATE TABLE ryw (id int)").await;
    caught_up(&primary, &standby).await;
    standby
        .sql("ALTER SYSTEM SET recovery_min_apply_delay = '2s'")
        .await;
    standby.sql("SELECT pg_reload_conf()").await;
    (primary, standby)
}

#[tokio::test]
async fn read_your_writes_by_window_and_without() {
    bounded_for(Duration::from_secs(150), async {
        let (primary, standby) = delayed_pair().await;
        // Without read-your-writes, the delayed standby misses the insert
        // (what makes the test able to fail).
        let off = split_pooler(&primary, &[&standby], "").await;
        let _first = off.connect("app", "postgres", "").await;
        wait_rotation(&off, 1).await;
        assert!(own_writes_missed(&off, 1, 3).await > 0);
        let pooler = split_pooler(
            &primary,
            &[&standby],
            "read_your_writes=window read_your_writes_window=1",
        )
        .await;
        let _first = pooler.connect("app", "postgres", "").await;
        wait_rotation(&pooler, 1).await;
        assert_eq!(own_writes_missed(&pooler, 4, 10).await, 0);
        assert!(routed(&pooler, "primary", "read_your_writes").await >= 40);
        // After the window, reads go to standbys again.
        let c = pooler.connect("app", "postgres", "").await;
        c.batch_execute("INSERT INTO ryw VALUES (-1)")
            .await
            .unwrap();
        assert_eq!(value(&c, IN_RECOVERY).await, "f");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(value(&c, IN_RECOVERY).await, "t");
        // Scope user: another connection of the same user reads on the
        // primary after this one's write.
        let by_user = split_pooler(
            &primary,
            &[&standby],
            "read_your_writes=window read_your_writes_scope=user",
        )
        .await;
        let (a, b) = (
            by_user.connect("app", "postgres", "").await,
            by_user.connect("app", "postgres", "").await,
        );
        a.execute("INSERT INTO ryw VALUES ($1)", &[&-2])
            .await
            .unwrap();
        let seen: i64 = b
            .query_one("SELECT count(*) FROM ryw WHERE id = -2", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, 1);
    })
    .await
}

#[tokio::test]
async fn read_your_writes_by_wal_position() {
    bounded_for(Duration::from_secs(150), async {
        let (primary, standby) = delayed_pair().await;
        let pooler = split_pooler(&primary, &[&standby], "read_your_writes=wal").await;
        let _first = pooler.connect("app", "postgres", "").await;
        wait_rotation(&pooler, 1).await;
        assert_eq!(own_writes_missed(&pooler, 4, 10).await, 0);
        // Once the standby has replayed the write, reads go there.
        let c = pooler.connect("app", "postgres", "").await;
        c.batch_execute("INSERT INTO ryw VALUES (-1)")
            .await
            .unwrap();
        let back = support::poll(100, Duration::from_millis(100), || async {
            (value(&c, IN_RECOVERY).await == "t").then_some(())
        })
        .await;
        assert!(back.is_some(), "reads never went back to the standby");
        assert!(routed(&pooler, "primary", "read_your_writes").await >= 40);
    })
    .await
}

#[tokio::test]
async fn wal_positions_are_asked_between_health_checks() {
    bounded_for(Duration::from_secs(120), async {
        let (primary, standby) = replicated().await;
        primary.sql("CREATE TABLE ryw (id int)").await;
        caught_up(&primary, &standby).await;
        let pooler = split_pooler(&primary, &[&standby], "read_your_writes=wal").await;
        let c = pooler.connect("app", "postgres", "").await;
        wait_rotation(&pooler, 1).await;
        // No health check for the rest of the test: only the position
        // asked of the primary at each commit and of the standby's server
        // can send a read after a write to the standby.
        let admin = pooler.connect("pgbouncer", "split_admin", "").await;
        admin
            .simple_query("SET host_check_period = 600")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut waits = 0;
        for k in 0..20 {
            c.execute("INSERT INTO ryw VALUES ($1)", &[&k])
                .await
                .unwrap();
            let mut on_standby = false;
            for _ in 0..100 {
                let row = c
                    .query_one(
                        "SELECT pg_is_in_recovery(), count(*) FROM ryw WHERE id = $1",
                        &[&k],
                    )
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i64>(1), 1, "write {k} not seen");
                if row.get::<_, bool>(0) {
                    on_standby = true;
                    break;
                }
                waits += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                on_standby,
                "reads after write {k} never went to the standby"
            );
        }
        // The test clusters commit with synchronous_commit = off: the WAL
        // writer sends a commit within wal_writer_delay (200 ms).
        eprintln!("20 writes: {waits} reads went to the primary before the standby had replayed");
    })
    .await
}

#[tokio::test]
async fn a_standby_killed_under_reads_fails_only_what_was_in_flight() {
    bounded_for(Duration::from_secs(150), async {
        let primary = PgCluster::dedicated();
        let first = PgCluster::standby_of(&primary);
        let second = PgCluster::standby_of(&primary);
        primary.wait_for_standbys(2).await;
        let pooler = split_pooler(&primary, &[&first, &second], "").await;
        let c = pooler.connect("app", "postgres", "").await;
        wait_rotation(&pooler, 2).await;
        assert_eq!(value(&c, IN_RECOVERY).await, "t");
        first.stop_immediate();
        let mut failed = 0;
        for _ in 0..50 {
            match c.simple_query(IN_RECOVERY).await {
                Ok(rows) => assert!(
                    rows.iter()
                        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))),
                    "the other standby serves reads"
                ),
                Err(_) => failed += 1,
            }
        }
        // Only a server to the killed standby that was handed out before
        // the pooler knew may fail (at most the pool's connections to it).
        assert!(failed <= 2, "{failed} reads failed");
        second.stop_immediate();
        wait_rotation(&pooler, 0).await;
        let mut c2 = None;
        for _ in 0..20 {
            let c = pooler.connect("app", "postgres", "").await;
            if c.simple_query(IN_RECOVERY).await.is_ok() {
                c2 = Some(c);
                break;
            }
        }
        let c2 = c2.expect("reads never reached the primary");
        assert_eq!(value(&c2, IN_RECOVERY).await, "f");
    })
    .await
}

#[tokio::test]
async fn a_write_the_parser_cannot_see_is_retried_on_the_primary() {
    bounded_for(Duration::from_secs(120), async {
        let (primary, standby) = replicated().await;
        // A function that writes, not in writing_functions: its call looks
        // like a read, and the standby refuses it with 25006.
        primary
            .sql(
                "CREATE TABLE bumps (n int); \
                 CREATE FUNCTION bump() RETURNS int LANGUAGE sql \
                 AS 'INSERT INTO bumps VALUES (1) RETURNING pg_is_in_recovery()::int'",
            )
            .await;
        caught_up(&primary, &standby).await;
        let pooler = split_pooler(&primary, &[&standby], "").await;
        let c = pooler.connect("app", "postgres", "").await;
        // Simple protocol, then a prepared statement (extended protocol).
        assert_eq!(value(&c, "SELECT bump()").await, "0");
        let st = c.prepare("SELECT bump(), $1::int").await.unwrap();
        for i in 0..3 {
            let row = c.query_one(&st, &[&i]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), 0, "run {i} ran on the primary");
        }
        // Pipelined behind the refused unit: still in order, still served.
        let (a, b) = tokio::join!(c.query_one(&st, &[&7]), c.query_one(IN_RECOVERY, &[]));
        assert_eq!(a.unwrap().get::<_, i32>(1), 7);
        b.unwrap();
        assert_eq!(
            value(&c, "/* pgsluice:primary */ SELECT count(*) FROM bumps").await,
            "5"
        );
        assert!(routed(&pooler, "primary", "retried").await >= 5);
        // The client's session is fine afterwards, on the standby.
        assert_eq!(value(&c, IN_RECOVERY).await, "t");
    })
    .await
}
