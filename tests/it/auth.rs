//! Client authentication (trust, plain, md5, scram-sha-256 with every
//! auth_file secret form) and server login to PostgreSQL (md5, SCRAM, with
//! the password from [databases], from auth_file, or SCRAM passthrough).

use crate::support;

use support::{
    Encryption, PgCluster, PoolerBuilder, TestPooler, bounded, db_message, md5_secret, sqlstate,
    unique, value,
};

/// Who the pooled session really is on PostgreSQL.
async fn whoami(pooler: &TestPooler, db: &str, user: &str, pw: &str) -> String {
    let c = pooler.connect(db, user, pw).await;
    value(&c, "SELECT current_user").await
}

/// How a failed login is answered, in PgBouncer's words.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// plain and md5: PostgreSQL's own message.
    Password,
    /// A SCRAM exchange that did not prove the password.
    Sasl,
    /// auth_type trust for a user not in auth_file.
    Trust,
}

/// Assert that a login through the pooler fails with the SQLSTATE and the
/// message PgBouncer gives for that method.
async fn assert_auth_fails(pooler: &TestPooler, db: &str, user: &str, pw: &str, how: Failure) {
    let err = pooler
        .try_connect(db, user, pw)
        .await
        .err()
        .unwrap_or_else(|| panic!("login as {user} with password {pw:?} must fail"));
    // PgBouncer answers a trust failure with 08P01; 28000 says what it is.
    let code = match how {
        Failure::Trust => "28000",
        _ => "28P01",
    };
    assert_eq!(sqlstate(&err).as_deref(), Some(code), "{err:?}");
    let expected = match how {
        Failure::Password => format!("password authentication failed for user \"{user}\""),
        Failure::Sasl => "SASL authentication failed".to_owned(),
        Failure::Trust => "\"trust\" authentication failed".to_owned(),
    };
    assert_eq!(db_message(&err).unwrap(), expected);
}

/// A database and a role that PostgreSQL trusts over TCP, so that only the
/// pooler's client authentication is under test.
async fn trusted_setup(pg: &PgCluster) -> (String, String) {
    let db = unique("auth_db");
    let user = unique("auth_user");
    pg.create_db(&db).await;
    pg.create_trusted_role(&user).await;
    (db, user)
}

/// A SCRAM verifier for `password`, made by PostgreSQL for a scratch role
/// (the verifier does not depend on the user name).
async fn scram_secret_for(pg: &PgCluster, password: &str) -> String {
    let scratch = unique("scram_src");
    pg.create_role(&scratch, password, Encryption::Scram).await;
    pg.scram_verifier(&scratch).await
}

#[tokio::test]
async fn trust_accepts_any_password() {
    bounded(async {
        let pg = PgCluster::shared();
        let (db, user) = trusted_setup(pg).await;
        let pooler = PoolerBuilder::new()
            .set("auth_type", "trust")
            .trust(&user)
            .pg_database(pg, &db, "")
            .start()
            .await;
        assert_eq!(whoami(&pooler, &db, &user, "").await, user);
        assert_eq!(whoami(&pooler, &db, &user, "anything").await, user);
        // As in PgBouncer, trust still needs the user in auth_file.
        let stranger = unique("stranger");
        pg.create_trusted_role(&stranger).await;
        assert_auth_fails(&pooler, &db, &stranger, "", Failure::Trust).await;
    })
    .await
}

/// auth_type plain/md5/scram-sha-256 against auth_file secrets in each form.
async fn client_auth_case(auth_type: &str, secret_kind: &str) {
    let pg = PgCluster::shared();
    let (db, user) = trusted_setup(pg).await;
    let password = format!("pw-{user}-\u{e9}");
    let secret = match secret_kind {
        "plain" => password.clone(),
        "md5" => md5_secret(&user, &password),
        "scram" => scram_secret_for(pg, &password).await,
        _ => unreachable!(),
    };
    let pooler = PoolerBuilder::new()
        .set("auth_type", auth_type)
        .auth_user(&user, &secret)
        .pg_database(pg, &db, "")
        .start()
        .await;
    assert_eq!(whoami(&pooler, &db, &user, &password).await, user);
    // SCRAM is asked for under auth_type scram-sha-256, and under md5 when
    // the secret is a SCRAM verifier.
    let scram = auth_type == "scram-sha-256" || secret_kind == "scram";
    let how = if scram {
        Failure::Sasl
    } else {
        Failure::Password
    };
    assert_auth_fails(&pooler, &db, &user, "wrong", how).await;
    assert_auth_fails(&pooler, &db, &user, &password[1..], how).await;
    // A user not in auth_file gets the same answer as a wrong password
    // (md5 asks a stranger for md5, whatever the known users' secrets).
    let stranger = unique("stranger");
    let how = if auth_type == "scram-sha-256" {
        Failure::Sasl
    } else {
        Failure::Password
    };
    assert_auth_fails(&pooler, &db, &stranger, &password, how).await;
    // The pooler still serves the right user after the failures.
    assert_eq!(whoami(&pooler, &db, &user, &password).await, user);
}

#[tokio::test]
async fn plain_with_plain_secret() {
    bounded(client_auth_case("plain", "plain")).await
}

#[tokio::test]
async fn md5_with_plain_secret() {
    bounded(client_auth_case("md5", "plain")).await
}

#[tokio::test]
async fn md5_with_md5_secret() {
    bounded(client_auth_case("md5", "md5")).await
}

/// With auth_type md5, a user whose secret is SCRAM is asked for SCRAM.
#[tokio::test]
async fn md5_with_scram_secret_uses_scram() {
    bounded(client_auth_case("md5", "scram")).await
}

#[tokio::test]
async fn scram_with_plain_secret() {
    bounded(client_auth_case("scram-sha-256", "plain")).await
}

#[tokio::test]
async fn scram_with_scram_secret() {
    bounded(client_auth_case("scram-sha-256", "scram")).await
}

/// Server login with the password from the [databases] entry (forced user),
/// for a role PostgreSQL authenticates with md5 and one with SCRAM.
#[tokio::test]
async fn server_login_with_database_password() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("srv_db");
        pg.create_db(&db).await;
        for enc in [Encryption::Md5, Encryption::Scram] {
            let role = unique("srv_role");
            let pw = format!("pw {role}");
            pg.create_role(&role, &pw, enc).await;
            let alias = unique("alias");
            let conn = format!(
                "host=127.0.0.1 port={} dbname={db} user={role} password='{pw}'",
                pg.port()
            );
            let pooler = PoolerBuilder::new()
                .set("auth_type", "trust")
                .database(&alias, &conn)
                .start()
                .await;
            // The entry forces `user=`: the client name does not reach PostgreSQL.
            assert_eq!(
                whoami(&pooler, &alias, "postgres", "").await,
                role,
                "{enc:?}"
            );
        }
    })
    .await
}

/// Server login with the client's plain password from auth_file.
#[tokio::test]
async fn server_login_with_auth_file_plain_password() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("srv_db");
        pg.create_db(&db).await;
        for (enc, auth_type) in [
            (Encryption::Md5, "md5"),
            (Encryption::Scram, "scram-sha-256"),
            (Encryption::Md5, "plain"),
        ] {
            let role = unique("srv_role");
            let pw = format!("secret-{role}");
            pg.create_role(&role, &pw, enc).await;
            let pooler = PoolerBuilder::new()
                .set("auth_type", auth_type)
                .auth_user(&role, &pw)
                .pg_database(pg, &db, "")
                .start()
                .await;
            assert_eq!(whoami(&pooler, &db, &role, &pw).await, role, "{enc:?}");
            let how = if auth_type == "scram-sha-256" {
                Failure::Sasl
            } else {
                Failure::Password
            };
            assert_auth_fails(&pooler, &db, &role, "not-it", how).await;
        }
    })
    .await
}

/// An md5 secret in auth_file works as the password for an md5 server.
#[tokio::test]
async fn server_login_md5_with_md5_secret() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("srv_db");
        pg.create_db(&db).await;
        let role = unique("srv_md5");
        let pw = "md5-pass";
        pg.create_role(&role, pw, Encryption::Md5).await;
        let pooler = PoolerBuilder::new()
            .set("auth_type", "md5")
            .auth_user(&role, &md5_secret(&role, pw))
            .pg_database(pg, &db, "")
            .start()
            .await;
        assert_eq!(whoami(&pooler, &db, &role, pw).await, role);
    })
    .await
}

/// SCRAM passthrough: auth_file holds the role's verifier from pg_authid and
/// no password appears anywhere in the config; the pooler logs in to
/// PostgreSQL with the keys the client proved.
#[tokio::test]
async fn server_login_scram_passthrough() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("srv_db");
        pg.create_db(&db).await;
        let role = unique("srv_pass");
        let pw = "pass-through-me";
        pg.create_role(&role, pw, Encryption::Scram).await;
        let verifier = pg.scram_verifier(&role).await;
        for auth_type in ["scram-sha-256", "md5"] {
            let pooler = PoolerBuilder::new()
                .set("auth_type", auth_type)
                .auth_user(&role, &verifier)
                .pg_database(pg, &db, "pool_size=2")
                .start()
                .await;
            let text = std::fs::read_to_string(pooler.ini_path()).unwrap();
            assert!(!text.contains(pw));
            // Several clients, several transactions each: the servers opened
            // for later clients log in with the keys too.
            let mut clients = Vec::new();
            for _ in 0..4 {
                clients.push(pooler.connect(&db, &role, pw).await);
            }
            for c in &clients {
                for _ in 0..3 {
                    assert_eq!(value(c, "SELECT current_user").await, role);
                }
            }
            assert_auth_fails(&pooler, &db, &role, "guess", Failure::Sasl).await;
        }
    })
    .await
}

/// A wrong server password in [databases] gives the client an error, not a hang.
#[tokio::test]
async fn server_login_wrong_password_reports_error() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("srv_db");
        pg.create_db(&db).await;
        let role = unique("srv_bad");
        pg.create_role(&role, "right", Encryption::Scram).await;
        let conn = format!(
            "host=127.0.0.1 port={} dbname={db} user={role} password=wrong",
            pg.port()
        );
        let pooler = PoolerBuilder::new().database(&db, &conn).start().await;
        let result = match pooler.try_connect(&db, "postgres", "").await {
            Ok(c) => c.simple_query("SELECT 1").await.map(|_| ()),
            Err(e) => Err(e),
        };
        let err = result.expect_err("server login with a wrong password cannot succeed");
        assert!(
            err.as_db_error().is_some(),
            "expected an ErrorResponse, got {err:?}"
        );
    })
    .await
}
