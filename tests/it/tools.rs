//! Real client tools through the pooler: psql and pgbench (simple and
//! extended protocol).

use crate::support;

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use support::{PgCluster, PoolerBuilder, bounded_for, tool, unique};

async fn run(mut cmd: Command) -> Output {
    cmd.kill_on_drop(true)
        .env("PGCONNECT_TIMEOUT", "20")
        .env("PGSSLMODE", "disable");
    tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("tool hung")
        .expect("run tool")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn psql_through_the_pooler() {
    let psql = tool("psql").expect("psql (installed by scripts/test.sh)");
    bounded_for(Duration::from_secs(120), async {
        let pg = PgCluster::shared();
        let db = unique("psql_db");
        pg.create_db(&db).await;
        let pooler = PoolerBuilder::new()
            .set("auth_type", "md5")
            .auth_user("psql_user", "psql-secret")
            .pg_database(pg, &db, "user=postgres pool_size=2")
            .start()
            .await;
        let port = pooler.addr().port().to_string();
        // Over TCP with a password, and over the Unix socket.
        let mut hosts = vec!["127.0.0.1".to_string()];
        let sock = pooler.unix_socket_path().expect("pooler has a Unix socket");
        hosts.push(sock.parent().unwrap().display().to_string());
        for (i, host) in hosts.iter().enumerate() {
            let mut cmd = Command::new(&psql);
            cmd.args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                host,
                "-p",
                &port,
            ])
            .args(["-U", "psql_user", "-d", &db, "-c"])
            .arg(format!(
                "CREATE TABLE t{i} AS SELECT g FROM generate_series(1, 1000) g; \
                     SELECT sum(g) FROM t{i}"
            ))
            .env("PGPASSWORD", "psql-secret");
            let out = run(cmd).await;
            assert!(out.status.success(), "psql via {host}: {}", text(&out));
            assert!(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.trim() == "500500"),
                "{}",
                text(&out)
            );
        }
        // A wrong password is refused with PostgreSQL's wording.
        let mut cmd = Command::new(&psql);
        cmd.args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "psql_user",
            "-d",
            &db,
            "-c",
            "SELECT 1",
        ])
        .env("PGPASSWORD", "wrong");
        let out = run(cmd).await;
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("password authentication failed for user \"psql_user\""),
            "{}",
            text(&out)
        );
    })
    .await
}

/// "number of transactions actually processed: N/M" and failed count.
fn pgbench_counts(stdout: &str) -> (u64, Option<u64>) {
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
        .and_then(|v| v.parse().ok());
    (processed, failed)
}

#[tokio::test]
async fn pgbench_simple_and_extended() {
    let pgbench = tool("pgbench").expect("pgbench (installed by scripts/test.sh)");
    bounded_for(Duration::from_secs(400), async {
        let pg = PgCluster::shared();
        let db = unique("bench_db");
        pg.create_db(&db).await;
        let mut init = Command::new(&pgbench);
        init.args(["-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p"])
            .arg(pg.port().to_string())
            .args(["-U", "postgres", &db]);
        let out = run(init).await;
        assert!(out.status.success(), "pgbench -i: {}", text(&out));

        let pooler = PoolerBuilder::new()
            .set("max_client_conn", "50")
            .pg_database(pg, &db, "pool_size=2")
            .start()
            .await;
        let port = pooler.addr().port().to_string();
        let direct = pg.direct_client(&db, "postgres").await;
        for mode in ["simple", "extended"] {
            let mut cmd = Command::new(&pgbench);
            cmd.args([
                "-M",
                mode,
                "-c",
                "4",
                "-j",
                "2",
                "-t",
                "200",
                "-h",
                "127.0.0.1",
            ])
            .args(["-p", &port, "-U", "postgres", &db]);
            let out = run(cmd).await;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "pgbench -M {mode}: {}", text(&out));
            let (processed, failed) = pgbench_counts(&stdout);
            assert_eq!(processed, 800, "pgbench -M {mode}: {}", text(&out));
            assert_eq!(failed.unwrap_or(0), 0, "pgbench -M {mode}: {}", text(&out));
            assert!(
                !String::from_utf8_lossy(&out.stderr).contains("error"),
                "pgbench -M {mode}: {}",
                text(&out)
            );
            // The work really happened: one history row per transaction
            // (pgbench empties pgbench_history before each run).
            let n: i64 = direct
                .query_one("SELECT count(*) FROM pgbench_history", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 800, "pgbench -M {mode}");
        }
    })
    .await
}
