//! `log_format = json` (a pgsluice extension): every line of the log is a
//! JSON object; the login line names the client, its address, the user and
//! the database; no line holds a password, whether the login succeeds or
//! fails.

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use support::{PgCluster, PoolerBuilder, bounded, fresh_dbs, pg::free_port, poll, value};

const PASSWORD: &str = "Sup3r-Secret-pw";

#[tokio::test]
async fn json_lines_name_the_client_and_hold_no_secret() {
    bounded(async {
        let pg = PgCluster::shared();
        let [db] = fresh_dbs(["jsonlog"]).await;
        let port = free_port();
        let (dir, ini) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .set("auth_type", "plain")
            .auth_user("postgres", PASSWORD)
            .set("log_format", "json")
            .pg_database(pg, &db, "")
            .write();
        let log = dir.path().join("pgsluice.log");
        let text = std::fs::read_to_string(&ini).unwrap().replace(
            "[pgbouncer]\n",
            &format!("[pgbouncer]\nlogfile = {}\n", log.display()),
        );
        std::fs::write(&ini, text).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"))
            .args(["-q"])
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let connect = |pw: &'static str| {
            let mut cfg = tokio_postgres::Config::new();
            cfg.host("127.0.0.1")
                .port(port)
                .dbname(&db)
                .user("postgres")
                .password(pw);
            async move {
                let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                Ok::<_, tokio_postgres::Error>(c)
            }
        };
        let c = poll(200, Duration::from_millis(50), || async {
            connect(PASSWORD).await.ok()
        })
        .await
        .expect("never logged in");
        assert_eq!(value(&c, "SELECT 1").await, "1");
        drop(c);
        assert!(connect("wrong-password").await.is_err());

        // The lines are written as the events happen, by two shards: the
        // first client's Terminate may be logged after the second client's
        // failure on a loaded machine, so wait for both (and whole lines).
        let lines = poll(400, Duration::from_millis(50), || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.contains("password authentication failed")
                && text.contains("client close request")
                && text.ends_with('\n'))
            .then_some(text)
        })
        .await
        .unwrap_or_else(|| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("no failed-login or disconnection line:\n{text}")
        });
        child.kill().await.unwrap();

        assert!(!lines.contains(PASSWORD), "a password leaked:\n{lines}");
        assert!(
            !lines.contains("wrong-password"),
            "a password leaked:\n{lines}"
        );
        let events: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let logins: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["fields"]["message"] == "login attempt")
            .collect();
        assert_eq!(logins.len(), 2, "{lines}");
        for e in logins {
            let f = &e["fields"];
            assert_eq!(f["database"], db.as_str(), "{e}");
            assert_eq!(f["user"], "postgres", "{e}");
            assert!(f["client"].is_u64(), "{e}");
            assert!(f["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");
            assert_eq!(e["level"], "INFO");
            assert!(e["timestamp"].is_string());
        }
        let failed = events
            .iter()
            .find(|e| {
                e["fields"]["message"].as_str().is_some_and(|m| {
                    m.starts_with("closing because: password authentication failed")
                })
            })
            .unwrap_or_else(|| panic!("no closing line:\n{lines}"));
        assert_eq!(failed["fields"]["sqlstate"], "28P01", "{failed}");
        assert_eq!(failed["level"], "WARN");
        assert!(
            failed["fields"]["who"]
                .as_str()
                .unwrap()
                .starts_with("@127.0.0.1:"),
            "{failed}"
        );
        // A line of the login itself names the user and the database.
        let refused = events
            .iter()
            .find(|e| {
                e["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("login failed: password authentication failed"))
            })
            .unwrap_or_else(|| panic!("no failed-login line:\n{lines}"));
        assert_eq!(refused["fields"]["user"], "postgres", "{refused}");
        assert_eq!(refused["fields"]["database"], db.as_str(), "{refused}");
        assert_eq!(refused["fields"]["sqlstate"], "28P01", "{refused}");
        // The file-descriptor limit, at start, beside what the
        // configuration may use.
        assert!(
            events.iter().any(|e| e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("file descriptor limit: ")
                    && m.contains("max expected fd use: "))),
            "no file descriptor limit line:\n{lines}"
        );
        // The disconnection names database, user and address too.
        let gone = events
            .iter()
            .find(|e| e["fields"]["message"] == "client close request")
            .unwrap_or_else(|| panic!("no disconnection line:\n{lines}"));
        let who = gone["fields"]["who"].as_str().unwrap();
        assert!(
            who.starts_with(&format!("{db}/postgres@127.0.0.1:")),
            "{gone}"
        );
    })
    .await
}
