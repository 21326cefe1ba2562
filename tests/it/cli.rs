//! The `pgsluice` binary: --version, --help, config errors (exit status 64
//! naming file, line and key), and a real run stopped by SIGTERM.

use crate::support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{PgCluster, PoolerBuilder, bounded, pg::free_port, poll, unique, value};

fn bin() -> &'static str {
    // option_env!: the suite still compiles while the binary does not exist.
    match option_env!("CARGO_BIN_EXE_pgsluice") {
        Some(path) => path,
        None => panic!("the pgsluice binary target is missing"),
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run pgsluice")
}

fn all_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn version() {
    let out = run(&["--version"]);
    assert!(out.status.success(), "{}", all_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pgsluice") && text.contains(env!("CARGO_PKG_VERSION")),
        "{text}"
    );
    // The first line is SHOW VERSION's (PgBouncer's suite compares them),
    // the second says which build it is; -V is the same.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], pgsluice::admin::version(), "{text}");
    assert!(lines[1].ends_with(" build)"), "{text}");
    assert_eq!(String::from_utf8_lossy(&run(&["-V"]).stdout), text);
}

#[test]
fn help() {
    let out = run(&["--help"]);
    assert!(out.status.success(), "{}", all_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CONFIG"), "{text}");
    assert!(text.contains("-v") && text.contains("-q"), "{text}");
}

#[test]
fn bad_value_exits_64_naming_file_line_and_key() {
    let (_dir, ini) = PoolerBuilder::new().set("listen_port", "abc").write();
    let text = std::fs::read_to_string(&ini).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("listen_port"))
        .unwrap()
        + 1;
    let out = run(&[ini.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", all_text(&out));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains(&format!("{}:{line}", ini.display())),
        "file:line missing: {msg}"
    );
    assert!(msg.contains("listen_port"), "key missing: {msg}");
}

/// As PgBouncer: a bad config is also written to the logfile it names.
#[test]
fn bad_config_is_logged_to_its_logfile() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pgsluice.log");
    let (_dir, ini) = PoolerBuilder::new()
        .set("logfile", log.to_str().unwrap())
        .set("auth_user", "pgb")
        .set("auth_dbname", "pgbouncer")
        .write();
    let out = run(&[ini.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", all_text(&out));
    let text = std::fs::read_to_string(&log).expect("the logfile was written");
    assert!(
        text.contains("cannot use the reserved \"pgbouncer\" database as an auth_dbname"),
        "{text}"
    );
}

#[test]
fn bad_database_entry_exits_64() {
    let (_dir, ini) = PoolerBuilder::new()
        .database("x", "host=127.0.0.1 port=5432 no_such_key=1")
        .write();
    let text = std::fs::read_to_string(&ini).unwrap();
    let line = text.lines().position(|l| l.starts_with("x = ")).unwrap() + 1;
    let out = run(&[ini.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", all_text(&out));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains(&format!(":{line}")), "line missing: {msg}");
    assert!(msg.contains("no_such_key"), "key missing: {msg}");
}

/// As PgBouncer: a key that is not one refuses the start (a typo must not
/// leave the default in force: `pool_mod` would run in session mode).
#[test]
fn misspelled_key_exits_64_naming_the_closest_key() {
    let (_dir, ini) = PoolerBuilder::new().set("pool_mod", "transaction").write();
    let text = std::fs::read_to_string(&ini).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("pool_mod "))
        .unwrap()
        + 1;
    let out = run(&[ini.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", all_text(&out));
    let msg = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:{line}: pool_mod: unknown setting; did you mean \"pool_mode\"?",
        ini.display()
    );
    assert!(msg.contains(&want), "{msg}");
}

#[test]
fn missing_config_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.ini");
    let out = run(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", all_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.ini"));
}

#[test]
fn no_arguments_is_a_usage_error() {
    let out = run(&[]);
    assert!(!out.status.success(), "{}", all_text(&out));
}

/// The binary on `ini` (with `env` set), and a client once it accepts on
/// 127.0.0.1:`port`.
async fn start_binary(
    ini: &std::path::Path,
    env: &[(&str, &str)],
    port: u16,
    db: &str,
) -> (
    tokio::process::Child,
    tokio_postgres::Config,
    tokio_postgres::Client,
) {
    let child = tokio::process::Command::new(bin())
        .arg(ini)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1").port(port).dbname(db).user("postgres");
    let client = poll(200, Duration::from_millis(50), || async {
        let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.ok()?;
        tokio::spawn(conn);
        Some(c)
    })
    .await
    .expect("the binary never accepted a client");
    (child, cfg, client)
}

/// The binary serves clients and stops on SIGTERM with status 0.
#[tokio::test]
async fn serves_and_stops_on_sigterm() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("cli_db");
        pg.create_db(&db).await;
        let port = free_port();
        let (_dir, ini) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .pg_database(pg, &db, "pool_size=1")
            .write();
        let (mut child, _cfg, client) = start_binary(&ini, &[], port, &db).await;
        assert_eq!(value(&client, "SELECT 7 * 6").await, "42");
        drop(client);

        let pid = child.id().unwrap().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill(1) (procps: scripts/test.sh installs it)");
        assert!(status.success());
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("no exit after SIGTERM")
            .unwrap();
        assert!(status.success(), "exit after SIGTERM: {status:?}");
    })
    .await
}

/// The listening sockets of the binary's threads share the port
/// (SO_REUSEPORT); a second pooler started on that port must still fail
/// with "address in use" instead of taking a share of the connections.
#[tokio::test]
async fn a_second_pooler_on_the_same_port_fails() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("cli_port_db");
        pg.create_db(&db).await;
        let port = free_port();
        let (_dir, ini) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .pg_database(pg, &db, "pool_size=1")
            .write();
        let (mut first, cfg, client) =
            start_binary(&ini, &[("PGSLUICE_THREADS", "3")], port, &db).await;
        // A second instance (its Unix socket is in use too, so give it
        // none) must not start.
        let (_dir2, ini2) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .set("unix_socket_dir", "")
            .pg_database(pg, &db, "pool_size=1")
            .write();
        let second = tokio::process::Command::new(bin())
            .arg(&ini2)
            .env("PGSLUICE_THREADS", "3")
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), second)
            .await
            .expect("the second pooler did not exit")
            .unwrap();
        assert!(
            !out.status.success(),
            "a second pooler started on a port in use"
        );
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(text.contains("in use"), "unexpected error: {text}");
        // The first one still serves every new connection.
        for i in 0..8 {
            let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            assert_eq!(value(&c, &format!("SELECT {i}")).await, i.to_string());
        }
        assert_eq!(value(&client, "SELECT 1").await, "1");
        first.kill().await.unwrap();
    })
    .await
}
