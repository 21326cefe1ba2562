//! `pgsluice --hash-password USER`: the auth_file line it prints is accepted
//! by pgsluice for a SCRAM-SHA-256 login and, as a role password, by
//! PostgreSQL.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{
    Encryption, PgCluster, PoolerBuilder, bounded, pg::literal, sqlstate, unique, value,
};

/// Run the binary with `password` + newline on stdin; returns the printed
/// line's user and secret fields.
fn hash_password(user: &str, password: &str) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .args(["--hash-password", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(password), "the password leaked: {text}");
    let line = text.trim_end_matches('\n');
    assert_eq!(line.lines().count(), 1, "{text}");
    let fields: Vec<&str> = line.split('"').collect();
    // "USER" "SECRET" -> ["", USER, " ", SECRET, ""]
    assert_eq!(fields.len(), 5, "{line}");
    assert!(fields[3].starts_with("SCRAM-SHA-256$4096:"), "{line}");
    (fields[1].to_string(), fields[3].to_string())
}

#[tokio::test]
async fn pgsluice_accepts_the_secret_for_a_scram_login() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("hashpw_db");
        let user = unique("hashpw_user");
        pg.create_db(&db).await;
        pg.create_trusted_role(&user).await;
        let (name, secret) = hash_password(&user, "c0rrect horse");
        assert_eq!(name, user);
        let pooler = PoolerBuilder::new()
            .set("auth_type", "scram-sha-256")
            .auth_user(&user, &secret)
            .pg_database(pg, &db, "")
            .start()
            .await;
        let c = pooler.connect(&db, &user, "c0rrect horse").await;
        assert_eq!(value(&c, "SELECT current_user").await, user);
        let Err(err) = pooler.try_connect(&db, &user, "wrong").await else {
            panic!("a wrong password was accepted");
        };
        assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err:?}");
    })
    .await
}

#[tokio::test]
async fn postgresql_accepts_the_secret_as_a_role_password() {
    bounded(async {
        let pg = PgCluster::shared();
        // In the group that pg_hba.conf sends to scram-sha-256.
        let user = unique("hashpw_role");
        pg.create_role(&user, "initial", Encryption::Scram).await;
        let (_, secret) = hash_password(&user, "pässword 2");
        pg.sql(&format!(
            "ALTER ROLE {} PASSWORD {}",
            support::pg::ident(&user),
            literal(&secret)
        ))
        .await;
        assert_eq!(pg.scram_verifier(&user).await, secret);
        let mut cfg = pg.direct_config("postgres", &user);
        cfg.password("pässword 2");
        let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        assert_eq!(value(&c, "SELECT current_user").await, user);
        cfg.password("initial");
        let Err(err) = cfg.connect(tokio_postgres::NoTls).await else {
            panic!("the old password still works");
        };
        assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err:?}");
    })
    .await
}

/// At a terminal (a pseudo-terminal made by util-linux's `script`), the
/// password is asked on stderr and not echoed: the terminal's transcript
/// holds the prompt and the auth_file line, never the password.
#[test]
fn at_a_terminal_the_password_is_not_echoed() {
    use std::io::Read;
    let cmd = format!("{} --hash-password alice", env!("CARGO_BIN_EXE_pgsluice"));
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux (bsdutils)");
    let mut out = child.stdout.take().unwrap();
    // A watchdog: without a prompt the reads below would wait forever.
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    });
    // Typed only once the prompt shows (echo is off by then).
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("Password: ") {
        let n = out.read(&mut byte).unwrap();
        assert!(n == 1, "no prompt: {:?}", String::from_utf8_lossy(&seen));
        seen.push(byte[0]);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Sup3r-s3cret\n").unwrap();
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    seen.extend_from_slice(&rest);
    let transcript = String::from_utf8_lossy(&seen);
    assert!(
        !transcript.contains("Sup3r-s3cret"),
        "the password was echoed: {transcript}"
    );
    assert!(
        transcript.contains("\"alice\" \"SCRAM-SHA-256$4096:"),
        "{transcript}"
    );
}
