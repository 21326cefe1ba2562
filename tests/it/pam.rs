//! auth_type = pam against the real Linux-PAM with pam_unix: the PAM
//! service `pgbouncer` (PgBouncer's) in /etc/pam.d checks OS users'
//! passwords in /etc/shadow. Right and wrong passwords, an unknown user,
//! an empty password, an expired account (pam_acct_mgmt), TCP and Unix
//! socket, logins in parallel; the password PAM accepted logs the user in
//! to PostgreSQL (a SCRAM role of the same name and password).
//!
//! Needs root (to write /etc/pam.d/pgbouncer and add OS users; CI runs as
//! root): fails, never skips, without it. An /etc/pam.d/pgbouncer that
//! these tests did not write is left alone and fails the test.

use std::process::Command;

use crate::support;

use support::{Encryption, PgCluster, PoolerBuilder, TestPooler, bounded, wire};

const MARKER: &str = "# written by the pgsluice tests (tests/it/pam.rs)";
const USER: &str = "pgsluice_pam";
const EXPIRED: &str = "pgsluice_pam_expired";
const PASSWORD: &str = "pam-Secret-1";

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

/// The PAM service file and the OS users (idempotent).
fn set_up_pam() {
    assert!(
        is_root(),
        "the PAM tests need root (they write /etc/pam.d/pgbouncer and add OS users)"
    );
    let path = std::path::Path::new("/etc/pam.d").join("pgbouncer");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        assert!(
            existing.starts_with(MARKER),
            "{} exists and was not written by these tests: not overwriting it",
            path.display()
        );
    }
    // nodelay: pam_unix would sleep ~2 s after each failure.
    std::fs::write(
        &path,
        format!("{MARKER}\nauth required pam_unix.so nodelay\naccount required pam_unix.so\n"),
    )
    .unwrap();
    for user in [USER, EXPIRED] {
        let exists = Command::new("id")
            .arg(user)
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            run(
                "useradd",
                &["--no-create-home", "--shell", "/usr/sbin/nologin", user],
                None,
            );
        }
        run("chpasswd", &[], Some(&format!("{user}:{PASSWORD}\n")));
    }
    // Expired since 1970-01-02: pam_acct_mgmt refuses it.
    run("usermod", &["--expiredate", "1970-01-02", EXPIRED], None);
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

async fn refused(p: &TestPooler, db: &str, user: &str, pw: &str) {
    let message = format!("PAM authentication failed for user \"{user}\"");
    p.assert_refused((db, user, pw), "28000", &message).await;
}

#[tokio::test]
async fn pam_unix_checks_passwords_and_accounts() {
    bounded(async {
        set_up_pam();
        let pg = PgCluster::shared();
        let db = support::unique("pam_db");
        pg.create_db(&db).await;
        // The server login uses the password PAM accepted.
        pg.create_role(USER, PASSWORD, Encryption::Scram).await;
        pg.create_role(EXPIRED, PASSWORD, Encryption::Scram).await;
        let pooler = PoolerBuilder::new()
            .set("auth_type", "pam")
            .pg_database(pg, &db, "")
            .start()
            .await;

        let c = pooler.connect(&db, USER, PASSWORD).await;
        assert_eq!(support::value(&c, "SELECT current_user").await, USER);
        refused(&pooler, &db, USER, "wrong").await;
        // An empty password (which libpq-based drivers will not send).
        let mut s = pooler.raw_connect().await;
        wire::send(&mut s, &wire::startup(USER, &db)).await.unwrap();
        let asked = wire::read_msg(&mut s).await.unwrap().unwrap();
        assert_eq!(
            (asked.tag, asked.int32(0)),
            (b'R', 3),
            "cleartext password asked"
        );
        wire::send(&mut s, &wire::password("")).await.unwrap();
        let err = wire::expect_error(&mut s).await.unwrap().unwrap();
        assert_eq!(err.sqlstate(), "28000", "{:?}", err.fields());
        refused(&pooler, &db, "pgsluice_no_such_os_user", PASSWORD).await;
        // The password is right; the account is expired.
        refused(&pooler, &db, EXPIRED, PASSWORD).await;

        // Over the Unix socket (no PAM_RHOST).
        let mut cfg = pooler.unix_config(&db, USER);
        cfg.password(PASSWORD);
        let (c2, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        assert_eq!(support::value(&c2, "SELECT 1").await, "1");

        // Logins in parallel, more than the PAM workers, right and wrong.
        let mut logins = Vec::new();
        for i in 0..12 {
            let (pooler, db) = (&pooler, db.clone());
            logins.push(async move {
                let pw = if i % 3 == 0 { "nope" } else { PASSWORD };
                (
                    pw == PASSWORD,
                    pooler.try_connect(&db, USER, pw).await.is_ok(),
                )
            });
        }
        for (should, did) in futures_util::future::join_all(logins).await {
            assert_eq!(should, did);
        }
        // The first session was never disturbed.
        assert_eq!(support::value(&c, "SELECT 2").await, "2");
    })
    .await
}
