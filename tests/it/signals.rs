//! The binary's signals, as PgBouncer's: SIGHUP reloads, SIGTERM waits for
//! every client to leave, SIGINT waits for running transactions, a second
//! signal or SIGQUIT exits at once, SIGUSR1 pauses and SIGUSR2 resumes.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use support::{PgCluster, PoolerBuilder, bounded, fresh_dbs, pg::free_port, poll, value as one};
use tokio::process::Child;

struct Running {
    child: Child,
    port: u16,
    ini: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start(db: &str, extra: &str) -> Running {
    let port = free_port();
    let (dir, ini) = PoolerBuilder::new()
        .set("listen_port", &port.to_string())
        .pg_database(PgCluster::shared(), db, extra)
        .write();
    let child = support::pooler::spawn_binary(&ini);
    let r = Running {
        child,
        port,
        ini,
        _dir: dir,
    };
    let up = poll(200, Duration::from_millis(50), || async {
        r.try_connect(db).await.ok()
    })
    .await;
    assert!(up.is_some(), "the binary never accepted a client");
    r
}

impl Running {
    async fn try_connect(&self, db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .dbname(db)
            .user("postgres");
        let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(c)
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("run kill(1) (procps: scripts/test.sh installs it)");
        assert!(ok.success());
    }

    /// Whether the process exits within `within` (and with success).
    async fn exits_within(&mut self, within: Duration) -> bool {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => {
                assert!(status.unwrap().success());
                true
            }
            Err(_) => false,
        }
    }
}

#[tokio::test]
async fn sigterm_waits_for_the_last_client_and_sigquit_exits_at_once() {
    bounded(async {
        let [db] = fresh_dbs(["sigterm"]).await;
        let mut r = start(&db, "").await;
        let client = r.try_connect(&db).await.unwrap();
        r.signal("TERM");
        // Still running for the connected client, which keeps working...
        assert!(!r.exits_within(Duration::from_secs(2)).await);
        assert_eq!(one(&client, "SELECT 1").await, "1");
        // ...while new clients are not accepted.
        assert!(r.try_connect(&db).await.is_err());
        // The last client leaves: the process exits.
        drop(client);
        assert!(r.exits_within(Duration::from_secs(20)).await);

        let mut r = start(&db, "").await;
        let _client = r.try_connect(&db).await.unwrap();
        r.signal("QUIT");
        assert!(r.exits_within(Duration::from_secs(10)).await);
    })
    .await
}

#[tokio::test]
async fn sigint_finishes_transactions_and_a_second_signal_exits() {
    bounded(async {
        let [db] = fresh_dbs(["sigint"]).await;
        let mut r = start(&db, "").await;
        let idle = r.try_connect(&db).await.unwrap();
        let busy = r.try_connect(&db).await.unwrap();
        busy.simple_query("BEGIN").await.unwrap();
        r.signal("INT");
        // The idle client is told and closed; the transaction may finish.
        let e = one_err(&idle).await;
        assert!(e.contains("57P01") || e.contains("Closed"), "{e}");
        assert_eq!(one(&busy, "SELECT 2").await, "2");
        busy.simple_query("COMMIT").await.unwrap();
        assert!(r.exits_within(Duration::from_secs(20)).await);

        let mut r = start(&db, "").await;
        let client = r.try_connect(&db).await.unwrap();
        r.signal("TERM");
        assert!(!r.exits_within(Duration::from_secs(1)).await);
        r.signal("TERM");
        assert!(r.exits_within(Duration::from_secs(10)).await);
        drop(client);
    })
    .await
}

async fn one_err(c: &tokio_postgres::Client) -> String {
    let e = poll(100, Duration::from_millis(50), || async {
        c.simple_query("SELECT 1").await.err()
    })
    .await
    .expect("the idle client was not closed");
    format!("{e:?}")
}

#[tokio::test]
async fn sighup_reloads_and_usr1_usr2_pause_and_resume() {
    bounded(async {
        let [db, added] = fresh_dbs(["sighup", "sighup_new"]).await;
        let mut r = start(&db, "").await;
        assert!(r.try_connect(&added).await.is_err());
        let port = PgCluster::shared().port();
        let text = std::fs::read_to_string(&r.ini).unwrap().replace(
            "[databases]\n",
            &format!("[databases]\n{added} = host=127.0.0.1 port={port} dbname={added}\n"),
        );
        std::fs::write(&r.ini, text).unwrap();
        r.signal("HUP");
        let c = poll(100, Duration::from_millis(50), || async {
            r.try_connect(&added).await.ok()
        })
        .await
        .expect("SIGHUP did not reload");
        assert_eq!(one(&c, "SELECT current_database()").await, added);

        // SIGUSR1: PAUSE; queries wait (no error). SIGUSR2: RESUME.
        r.signal("USR1");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let q = tokio::spawn(async move { one(&c, "SELECT 5").await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!q.is_finished(), "a query ran while paused");
        r.signal("USR2");
        let v = tokio::time::timeout(Duration::from_secs(10), q).await;
        assert_eq!(v.expect("RESUME did not release the query").unwrap(), "5");
        r.signal("QUIT");
        assert!(r.exits_within(Duration::from_secs(10)).await);
    })
    .await
}

#[tokio::test]
async fn sighup_under_pgbench_load_fails_nothing() {
    bounded(async {
        let (db, pgbench) = support::pgbench_db("sighup_bench").await;
        let mut r = start(&db, "pool_size=2").await;
        let bench = tokio::process::Command::new(&pgbench)
            .args(["-n", "-c", "8", "-j", "2", "-T", "5", "-h", "127.0.0.1"])
            .args(["-p", &r.port.to_string(), "-U", "postgres", &db])
            .output();
        let bench = tokio::spawn(bench);
        for size in ["4", "1", "3"] {
            tokio::time::sleep(Duration::from_millis(900)).await;
            let text = std::fs::read_to_string(&r.ini).unwrap();
            let start = text.find("pool_size=").unwrap();
            let end = start
                + text[start..]
                    .find(|c: char| c.is_whitespace())
                    .unwrap_or(text.len() - start);
            let text = format!("{}pool_size={size}{}", &text[..start], &text[end..]);
            std::fs::write(&r.ini, text).unwrap();
            r.signal("HUP");
        }
        let out = bench.await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("number of failed transactions: 0"), "{text}");
        r.signal("QUIT");
        assert!(r.exits_within(Duration::from_secs(10)).await);
    })
    .await
}
