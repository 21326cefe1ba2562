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

/// `-d`: the command returns once the pooler serves in the background (in
/// a session of its own, its pid in the pidfile); SIGTERM stops it and
/// removes the pidfile. Without a pidfile, or with its port taken, the
/// command fails and says why.
#[tokio::test]
async fn daemon_mode_runs_in_the_background() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("cli_daemon_db");
        pg.create_db(&db).await;
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pgsluice.pid");
        let logfile = dir.path().join("pgsluice.log");
        let (_ini_dir, ini) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .set("unix_socket_dir", "")
            .set("pidfile", &pidfile.display().to_string())
            .set("logfile", &logfile.display().to_string())
            .pg_database(pg, &db, "pool_size=1")
            .write();
        let ini = ini.display().to_string();
        let out = tokio::process::Command::new(bin())
            .args(["-d", "-q", &ini])
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .expect("pgsluice -d did not return")
            .unwrap();
        assert!(out.status.success(), "-d failed: {}", all_text(&out));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("the pidfile is written before -d returns")
            .trim()
            .parse()
            .unwrap();
        // Its own session: it is the leader of one (sid == pid).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        assert_eq!(
            fields[3],
            pid.to_string(),
            "session id of the daemon: {stat}"
        );
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(port)
            .dbname(&db)
            .user("postgres");
        let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        assert_eq!(value(&c, "SELECT 6 * 7").await, "42");
        drop(c);

        // A second one on the same port: the command fails, with the error.
        let (_ini2_dir, ini2) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .set("unix_socket_dir", "")
            .set(
                "pidfile",
                &dir.path().join("second.pid").display().to_string(),
            )
            .pg_database(pg, &db, "pool_size=1")
            .write();
        let out = run(&["-d", &ini2.display().to_string()]);
        assert!(!out.status.success());
        assert!(all_text(&out).contains("in use"), "{}", all_text(&out));

        // No pidfile configured: refused, as PgBouncer refuses it.
        let (_ini3_dir, ini3) = PoolerBuilder::new()
            .set("listen_port", &free_port().to_string())
            .pg_database(pg, &db, "pool_size=1")
            .write();
        let out = run(&["--daemon", &ini3.display().to_string()]);
        assert_eq!(out.status.code(), Some(64), "{}", all_text(&out));
        assert!(
            all_text(&out).contains("needs pidfile"),
            "{}",
            all_text(&out)
        );

        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let gone = poll(200, Duration::from_millis(50), || async {
            (!std::path::Path::new(&format!("/proc/{pid}")).exists() && !pidfile.exists())
                .then_some(())
        })
        .await;
        assert!(
            gone.is_some(),
            "the daemon did not stop or left its pidfile"
        );
        let log = std::fs::read_to_string(&logfile).unwrap();
        assert!(log.contains("pgsluice started"), "{log}");
    })
    .await
}

/// `-u USER` as the user the process already is works; an unknown user
/// is refused.
#[tokio::test]
async fn user_flag_is_taken() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("cli_flags_db");
        pg.create_db(&db).await;
        let port = free_port();
        let (_dir, ini) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .set("unix_socket_dir", "")
            .pg_database(pg, &db, "pool_size=1")
            .write();
        let me = nix_user_name();
        let mut child = tokio::process::Command::new(bin())
            .args(["-u", &me])
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(port)
            .dbname(&db)
            .user("postgres");
        let client = poll(200, Duration::from_millis(50), || async {
            let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.ok()?;
            tokio::spawn(conn);
            Some(c)
        })
        .await
        .expect("pgsluice -u did not serve");
        assert_eq!(value(&client, "SELECT 1").await, "1");
        child.kill().await.unwrap();

        let out = run(&["-u", "no_such_os_user_xyz", &ini.display().to_string()]);
        assert!(!out.status.success());
        assert!(
            all_text(&out).contains("does not exist"),
            "{}",
            all_text(&out)
        );
    })
    .await
}

/// `-R`: a second process with the same configuration takes the listening
/// sockets over (TAKEOVER on the first one's admin console); the first
/// keeps serving the client it has, in the middle of its transaction, and
/// exits once that client has left; new clients reach the second.
#[tokio::test]
async fn online_restart_hands_the_listeners_over() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("cli_reboot_db");
        pg.create_db(&db).await;
        let port = free_port();
        let (_dir, ini) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .pg_database(pg, &db, "pool_size=2")
            .write();
        let (mut old, cfg, client) = start_binary(&ini, &[], port, &db).await;
        client.batch_execute("BEGIN").await.unwrap();
        assert_eq!(value(&client, "SELECT 1").await, "1");

        let mut new = tokio::process::Command::new(bin())
            .arg("-R")
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The old one lets go of its listeners (the new one binds them only
        // then): new clients reach the new one.
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
            new.stderr.take().unwrap(),
        ));
        let mut seen = Vec::new();
        while !seen.iter().any(|l: &String| l.contains("pgsluice started")) {
            let line = lines.next_line().await.unwrap();
            seen.push(line.unwrap_or_else(|| panic!("the new process ended: {seen:?}")));
        }
        assert!(
            seen.iter()
                .any(|l| l.contains("online restart: the running pooler closed")),
            "{seen:?}"
        );
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (served, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        assert_eq!(value(&served, "SELECT 3").await, "3");
        assert!(new.try_wait().unwrap().is_none(), "the new process exited");

        // The old one still serves its client, transaction included.
        assert_eq!(value(&client, "SELECT 2").await, "2");
        client.batch_execute("COMMIT").await.unwrap();
        assert!(
            old.try_wait().unwrap().is_none(),
            "the old process left a client"
        );
        drop(client);
        let status = tokio::time::timeout(Duration::from_secs(30), old.wait())
            .await
            .expect("the old process did not exit once its client left")
            .unwrap();
        assert!(status.success(), "{status:?}");
        assert_eq!(value(&served, "SELECT 4").await, "4");
        new.kill().await.unwrap();
    })
    .await
}

/// This process's OS user name.
fn nix_user_name() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
