//! auth_type = hba: rules per database, user and address over TCP, peer
//! on the Unix socket with and without an ident map, and a broken
//! auth_hba_file refused by RELOAD while the running rules stay.

use crate::support;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded, db_message, sqlstate, unique, value};

async fn whoami(c: &tokio_postgres::Client) -> String {
    value(c, "SELECT current_user").await
}

/// The login must fail with this SQLSTATE and message.
fn refused<T: std::fmt::Debug>(r: Result<T, tokio_postgres::Error>, code: &str, msg: &str) {
    let err = r.expect_err("login must fail");
    assert_eq!(sqlstate(&err).as_deref(), Some(code), "{err:?}");
    assert_eq!(db_message(&err).as_deref(), Some(msg), "{err:?}");
}

async fn unix_connect(
    p: &TestPooler,
    db: &str,
    user: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (c, conn) = p
        .unix_config(db, user)
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(conn);
    Ok(c)
}

/// The OS user this test runs as (the peer pgsluice sees on its socket).
fn os_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn rules_by_database_user_and_address() {
    bounded(async {
        let pg = PgCluster::shared();
        let [open, guarded, scram, other] =
            ["hba_open", "hba_md5", "hba_scram", "hba_other"].map(unique);
        for db in [&open, &guarded, &scram, &other] {
            pg.create_db(db).await;
        }
        let (alice, mallory) = (unique("hba_alice"), unique("hba_mallory"));
        for u in [&alice, &mallory] {
            pg.create_trusted_role(u).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let hba = dir.path().join("hba.conf");
        std::fs::write(
            &hba,
            format!(
                "# pgsluice test rules\n\
                 host all {mallory} 0.0.0.0/0 reject\n\
                 host {open} all 127.0.0.1/32 trust\n\
                 host {guarded},\"{other}\" all 127.0.0.0 255.0.0.0 md5\n\
                 host {scram} all 127.0.0.1/32 scram-sha-256\n\
                 host all all 10.0.0.0/8 trust\n"
            ),
        )
        .unwrap();
        let pooler = PoolerBuilder::new()
            .set("auth_type", "hba")
            .set("auth_hba_file", hba.to_str().unwrap())
            .auth_user(&alice, "alice-pw")
            .auth_user(&mallory, "mallory-pw")
            .pg_database(pg, &open, "")
            .pg_database(pg, &guarded, "")
            .pg_database(pg, &scram, "")
            .start()
            .await;
        // trust: any password.
        let c = pooler.try_connect(&open, &alice, "not-it").await.unwrap();
        assert_eq!(whoami(&c).await, alice);
        // md5: the password counts.
        let bad = format!("password authentication failed for user \"{alice}\"");
        refused(
            pooler.try_connect(&guarded, &alice, "not-it").await,
            "28P01",
            &bad,
        );
        let c = pooler
            .try_connect(&guarded, &alice, "alice-pw")
            .await
            .unwrap();
        assert_eq!(whoami(&c).await, alice);
        // scram-sha-256: a SCRAM exchange (its own failure message).
        refused(
            pooler.try_connect(&scram, &alice, "not-it").await,
            "28P01",
            "SASL authentication failed",
        );
        let c = pooler
            .try_connect(&scram, &alice, "alice-pw")
            .await
            .unwrap();
        assert_eq!(whoami(&c).await, alice);
        // reject wins, whatever the password and database.
        refused(
            pooler.try_connect(&open, &mallory, "mallory-pw").await,
            "28000",
            "login rejected",
        );
        // The second name of a list matches; the database is not
        // configured, which is told only after the password is proven.
        refused(
            pooler.try_connect(&other, &alice, "wrong").await,
            "28P01",
            &bad,
        );
        let msg = format!("no such database: {other}");
        refused(
            pooler.try_connect(&other, &alice, "alice-pw").await,
            "3D000",
            &msg,
        );
        // The Unix socket has no local line: nothing matches.
        refused(
            unix_connect(&pooler, &open, &alice).await,
            "28000",
            "no authentication method is found",
        );
    })
    .await
}

#[tokio::test]
async fn peer_on_the_unix_socket_with_and_without_a_map() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("hba_peer");
        pg.create_db(&db).await;
        let me = os_user();
        let (mapped, stranger) = (unique("hba_mapped"), unique("hba_stranger"));
        for u in [&mapped, &stranger] {
            pg.create_trusted_role(u).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let ident = dir.path().join("ident.conf");
        std::fs::write(&ident, format!("m {me} postgres\nm \"{me}\" {mapped}\n")).unwrap();
        let hba = dir.path().join("hba.conf");
        std::fs::write(
            &hba,
            format!("local {db} all peer map=m\nlocal all all peer\nhost all all all md5\n"),
        )
        .unwrap();
        let pooler = PoolerBuilder::new()
            .set("auth_type", "hba")
            .set("auth_hba_file", hba.to_str().unwrap())
            .set("auth_ident_file", ident.to_str().unwrap())
            .auth_user(&mapped, "x")
            .auth_user(&stranger, "x")
            .auth_user(&me, "x")
            .pg_database(pg, &db, "")
            .database(
                "postgres",
                &format!("host=127.0.0.1 port={} dbname=postgres", pg.port()),
            )
            .start()
            .await;
        // The map lets this OS user in as postgres and as `mapped`.
        for user in ["postgres", mapped.as_str()] {
            let c = unix_connect(&pooler, &db, user).await.unwrap();
            assert_eq!(whoami(&c).await, user);
        }
        refused(
            unix_connect(&pooler, &db, &stranger).await,
            "28000",
            "unix socket login rejected",
        );
        // Without a map: only the OS user's own name (the role `me` does
        // not exist in PostgreSQL, so only the pooler's login is checked:
        // a stranger is refused before any server is asked).
        refused(
            unix_connect(&pooler, "postgres", &stranger).await,
            "28000",
            "unix socket login rejected",
        );
        refused(
            unix_connect(&pooler, "postgres", "postgres").await,
            "28000",
            "unix socket login rejected",
        );
        // Over TCP the md5 line applies.
        let c = pooler.try_connect(&db, &mapped, "x").await.unwrap();
        assert_eq!(whoami(&c).await, mapped);
    })
    .await
}

#[tokio::test]
async fn reload_refuses_a_broken_hba_file_and_keeps_the_rules() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("hba_reload");
        pg.create_db(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let hba = dir.path().join("hba.conf");
        let good = "host all all 127.0.0.1/32 trust\n";
        std::fs::write(&hba, good).unwrap();
        let pooler = PoolerBuilder::new()
            .set("auth_type", "hba")
            .set("auth_hba_file", hba.to_str().unwrap())
            .set("admin_users", "postgres")
            .pg_database(pg, &db, "")
            .start()
            .await;
        let admin = pooler.connect("pgbouncer", "postgres", "").await;
        std::fs::write(&hba, format!("{good}host all all 127.0.0.1/99 trust\n")).unwrap();
        let err = admin.simple_query("RELOAD").await.unwrap_err();
        let shown = db_message(&err).unwrap();
        assert!(shown.contains(&format!("{}:2", hba.display())), "{shown}");
        assert!(shown.contains("invalid mask"), "{shown}");
        // The running rules stay: trust still lets anyone in.
        let c = pooler
            .try_connect(&db, "postgres", "anything")
            .await
            .unwrap();
        assert_eq!(whoami(&c).await, "postgres");
        // A good file is taken: now md5.
        std::fs::write(&hba, "host all all 127.0.0.1/32 md5\n").unwrap();
        admin.simple_query("RELOAD").await.unwrap();
        let bad = "password authentication failed for user \"postgres\"";
        refused(
            pooler.try_connect(&db, "postgres", "anything").await,
            "28P01",
            bad,
        );
    })
    .await
}
