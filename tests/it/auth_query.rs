//! auth_query: users missing from auth_file are looked up in PostgreSQL
//! through the auth pool (auth_dbname's entry as auth_user), with
//! PgBouncer's default query and with a SECURITY DEFINER function; real
//! md5 and SCRAM roles, password changes, dropped and expired roles, and
//! every way a lookup can go wrong answered with an error and no harm.

use crate::support;

use support::{
    Encryption, PgCluster, PoolerBuilder, TestPooler, backends, bounded, db_message, ident,
    literal, sqlstate, unique, value,
};

/// The login must fail with this SQLSTATE and message.
async fn refused(pooler: &TestPooler, db: &str, user: &str, pw: &str, code: &str, msg: &str) {
    let err = pooler
        .try_connect(db, user, pw)
        .await
        .err()
        .unwrap_or_else(|| panic!("login as {user} must fail"));
    assert_eq!(sqlstate(&err).as_deref(), Some(code), "{err:?}");
    assert_eq!(db_message(&err).as_deref(), Some(msg), "{err:?}");
}

async fn whoami(pooler: &TestPooler, db: &str, user: &str, pw: &str) -> String {
    let c = pooler
        .try_connect(db, user, pw)
        .await
        .unwrap_or_else(|e| panic!("login as {user} with {pw:?}: {e:?}"));
    value(&c, "SELECT current_user").await
}

/// A role that may run the lookup function and nothing else, and the
/// function (SECURITY DEFINER, owned by the superuser) in `db`.
async fn lookup_role(pg: &PgCluster, db: &str) -> (String, String) {
    let role = unique("lookup");
    let pw = format!("pw-{role}");
    pg.create_role(&role, &pw, Encryption::Scram).await;
    let client = pg.direct_client(db, "postgres").await;
    client
        .batch_execute(&format!(
            "CREATE FUNCTION public.user_lookup(in i_username text, out uname text, out phash text) \
             RETURNS record AS $$ \
             SELECT rolname::text, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END \
             FROM pg_authid WHERE rolname = i_username AND rolcanlogin $$ \
             LANGUAGE sql SECURITY DEFINER; \
             REVOKE ALL ON FUNCTION public.user_lookup(text) FROM public; \
             GRANT EXECUTE ON FUNCTION public.user_lookup(text) TO {}",
            ident(&role)
        ))
        .await
        .unwrap();
    (role, pw)
}

/// The password of the test support's auth_file line for `postgres`.
const TRUSTED: &str = "trusted-by-test-support";

/// An app database, an auth database with the lookup function, and the
/// lookup role.
struct Split {
    app: String,
    auth_db: String,
    lookup: String,
    lookup_pw: String,
}

async fn split(pg: &PgCluster) -> Split {
    let app = unique("aq_app");
    let auth_db = unique("aq_auth");
    pg.create_db(&app).await;
    pg.create_db(&auth_db).await;
    let (lookup, lookup_pw) = lookup_role(pg, &auth_db).await;
    Split {
        app,
        auth_db,
        lookup,
        lookup_pw,
    }
}

const FUNCTION_QUERY: &str =
    "SELECT uname, phash FROM public.user_lookup($1) WHERE uname IS NOT NULL";

/// PgBouncer's default query run as the superuser: md5 and SCRAM roles log
/// in with their own passwords, and the pooler logs in to PostgreSQL as
/// them (md5 with the secret found, SCRAM with the keys the client proved).
#[tokio::test]
async fn default_query_md5_and_scram_roles() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("aq_db");
        pg.create_db(&db).await;
        let md5_role = unique("aq_md5");
        let scram_role = unique("aq_scram");
        pg.create_role(&md5_role, "md5-pass", Encryption::Md5).await;
        pg.create_role(&scram_role, "scram-pass", Encryption::Scram)
            .await;
        for auth_type in ["md5", "scram-sha-256"] {
            let pooler = PoolerBuilder::new()
                .set("auth_type", auth_type)
                .set("auth_user", "postgres")
                .pg_database(pg, &db, "pool_size=2")
                .start()
                .await;
            // SCRAM cannot be run with an md5 secret (as in PgBouncer).
            let sasl = auth_type == "scram-sha-256";
            let roles: &[(&String, &str)] = match sasl {
                false => &[(&md5_role, "md5-pass"), (&scram_role, "scram-pass")],
                true => &[(&scram_role, "scram-pass")],
            };
            for &(role, pw) in roles {
                // Several clients at once: servers opened for later ones log
                // in with what the lookup (or the proof) gave too.
                let mut clients = Vec::new();
                for _ in 0..3 {
                    clients.push(pooler.connect(&db, role, pw).await);
                }
                for c in &clients {
                    for _ in 0..2 {
                        assert_eq!(value(c, "SELECT current_user").await, *role);
                    }
                }
            }
            let wrong = |user: &str| match sasl {
                true => "SASL authentication failed".to_owned(),
                false => format!("password authentication failed for user \"{user}\""),
            };
            refused(&pooler, &db, &md5_role, "nope", "28P01", &wrong(&md5_role)).await;
            if sasl {
                let right_but_md5 = "md5-pass";
                refused(
                    &pooler,
                    &db,
                    &md5_role,
                    right_but_md5,
                    "28P01",
                    &wrong(&md5_role),
                )
                .await;
            }
            // A SCRAM secret is always checked with SCRAM.
            let scram_wrong = "SASL authentication failed";
            refused(&pooler, &db, &scram_role, "nope", "28P01", scram_wrong).await;
            // As PgBouncer: auth_query says when a user does not exist.
            let ghost = unique("ghost");
            refused(&pooler, &db, &ghost, "x", "28000", "no such user").await;
            // The pooler is unharmed.
            assert_eq!(
                whoami(&pooler, &db, &scram_role, "scram-pass").await,
                scram_role
            );
        }
    })
    .await
}

/// A password change, an expired VALID UNTIL and a dropped role count at
/// the next login when no secret is reused: cache on with a TTL of zero
/// (lookups are still shared) and off, for md5 and plain; with reuse on, a
/// changed password works at once too (a failed check looks up again).
#[tokio::test]
async fn password_change_expiry_and_drop_count_at_once() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("aq_db");
        pg.create_db(&db).await;
        for (cache, ttl, auth_type) in [
            ("1", "0", "md5"),
            ("0", "0", "md5"),
            ("1", "0", "plain"),
            ("1", "60", "md5"),
        ] {
            let reuse = ttl != "0";
            let pooler = PoolerBuilder::new()
                .set("auth_type", auth_type)
                .set("auth_query_cache_ttl", ttl)
                .set("auth_user", "postgres")
                .set("auth_query_cache", cache)
                .pg_database(pg, &db, "")
                .start()
                .await;
            for enc in [Encryption::Md5, Encryption::Scram] {
                let role = unique("aq_change");
                pg.create_role(&role, "before", enc).await;
                assert_eq!(whoami(&pooler, &db, &role, "before").await, role);
                let set_pw = |pw: &str| {
                    let method = match enc {
                        Encryption::Md5 => "md5",
                        Encryption::Scram => "scram-sha-256",
                    };
                    format!(
                        "SET password_encryption = '{method}'; ALTER ROLE {} PASSWORD {}",
                        ident(&role),
                        literal(pw)
                    )
                };
                pg.sql(&set_pw("after")).await;
                // The first login with the new password works: the SCRAM
                // exchange ran with the new salt.
                assert_eq!(whoami(&pooler, &db, &role, "after").await, role);
                let old = pooler.try_connect(&db, &role, "before").await;
                assert_eq!(sqlstate(&old.err().unwrap()).as_deref(), Some("28P01"));

                if reuse {
                    // A reused secret lets an expired or dropped role in
                    // until the TTL ends: see reused_secrets_skip_the_lookup.
                    continue;
                }
                // VALID UNTIL in the past: the default query gives NULL.
                pg.sql(&format!(
                    "ALTER ROLE {} VALID UNTIL '2000-01-01'",
                    ident(&role)
                ))
                .await;
                let expired = pooler.try_connect(&db, &role, "after").await;
                assert_eq!(
                    sqlstate(&expired.err().unwrap()).as_deref(),
                    Some("28P01"),
                    "{enc:?} cache={cache} ttl={ttl} {auth_type}"
                );
                pg.sql(&format!(
                    "ALTER ROLE {} VALID UNTIL 'infinity'",
                    ident(&role)
                ))
                .await;
                assert_eq!(whoami(&pooler, &db, &role, "after").await, role);

                pg.sql(&format!("DROP ROLE {}", ident(&role))).await;
                refused(&pooler, &db, &role, "after", "28000", "no such user").await;
            }
        }
    })
    .await
}

/// A least-privilege auth_user with a SECURITY DEFINER function (the setup
/// PgBouncer's docs recommend), run in a separate auth_dbname; auth_user
/// and auth_query set on the [databases] entry.
#[tokio::test]
async fn function_in_auth_dbname_per_database_settings() {
    bounded(async {
        let pg = PgCluster::shared();
        let Split {
            app,
            auth_db,
            lookup,
            lookup_pw,
        } = split(pg).await;
        let role = unique("aq_user");
        pg.create_role(&role, "user-pass", Encryption::Scram).await;
        let pooler = PoolerBuilder::new()
            .set("auth_type", "scram-sha-256")
            .auth_user(&lookup, &lookup_pw)
            .pg_database(
                pg,
                &app,
                &format!("auth_user={lookup} auth_dbname={auth_db} auth_query='{FUNCTION_QUERY}'"),
            )
            .pg_database(pg, &auth_db, "pool_size=1")
            .start()
            .await;
        assert_eq!(whoami(&pooler, &app, &role, "user-pass").await, role);
        // The lookup ran as the lookup role in the auth database, and the
        // client's session is in the app database.
        assert_eq!(backends(&auth_db, Some(&lookup)).await, 1);
        let ghost = unique("ghost");
        refused(&pooler, &app, &ghost, "x", "28000", "no such user").await;
        // The lookup role itself logs in from auth_file; on the auth pool's
        // one server it drops every prepared statement, auth_query's too:
        // the next lookup prepares it again.
        let own = pooler.connect(&auth_db, &lookup, &lookup_pw).await;
        assert_eq!(value(&own, "SELECT current_user").await, lookup);
        own.batch_execute("DEALLOCATE ALL").await.unwrap();
        drop(own);
        for _ in 0..2 {
            assert_eq!(whoami(&pooler, &app, &role, "user-pass").await, role);
        }
        assert_eq!(backends(&auth_db, Some(&lookup)).await, 1);
    })
    .await
}

/// With auth_query_cache on, a secret found is reused for
/// auth_query_cache_ttl with no lookup: logins go on while the lookup
/// cannot run, a wrong password is still looked up again (and refused),
/// and once the TTL is over every login looks up again.
#[tokio::test]
async fn reused_secrets_skip_the_lookup() {
    bounded(async {
        let pg = PgCluster::shared();
        let sp = split(pg).await;
        let role = unique("aq_reuse");
        pg.create_role(&role, "reuse-pass", Encryption::Md5).await;
        let pooler = PoolerBuilder::new()
            .set("auth_type", "md5")
            .set("auth_user", &sp.lookup)
            .set("auth_dbname", &sp.auth_db)
            .set("auth_query", FUNCTION_QUERY)
            .set("auth_query_cache_ttl", "2")
            .auth_user(&sp.lookup, &sp.lookup_pw)
            .pg_database(pg, &sp.app, "")
            .pg_database(pg, &sp.auth_db, "")
            .start()
            .await;
        assert_eq!(whoami(&pooler, &sp.app, &role, "reuse-pass").await, role);
        // The lookup role loses the function: every lookup fails now.
        let revoke = format!(
            "REVOKE EXECUTE ON FUNCTION public.user_lookup(text) FROM {}",
            ident(&sp.lookup)
        );
        pg.direct_client(&sp.auth_db, "postgres")
            .await
            .batch_execute(&revoke)
            .await
            .unwrap();
        // The secret found is reused: no lookup, the login goes on.
        assert_eq!(whoami(&pooler, &sp.app, &role, "reuse-pass").await, role);
        // A wrong password is looked up again before it is refused, and
        // the failed lookup is what the client is told.
        let config_error = ("08P01", "bouncer config error");
        let (code, msg) = config_error;
        refused(&pooler, &sp.app, &role, "wrong", code, msg).await;
        // Past the TTL the secret is not reused: the lookup runs and fails.
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        refused(&pooler, &sp.app, &role, "reuse-pass", code, msg).await;
    })
    .await
}

/// A flood of logins of different users never opens more lookup
/// connections than the auth pool's size, and all of them get in.
#[tokio::test]
async fn login_flood_stays_within_the_auth_pool() {
    bounded(async {
        let pg = PgCluster::shared();
        let Split {
            app,
            auth_db,
            lookup,
            lookup_pw,
        } = split(pg).await;
        let mut roles = Vec::new();
        for _ in 0..12 {
            let role = unique("aq_flood");
            pg.create_role(&role, "flood-pass", Encryption::Md5).await;
            roles.push(role);
        }
        let pooler = PoolerBuilder::new()
            .set("auth_type", "md5")
            .set("auth_user", &lookup)
            .set("auth_dbname", &auth_db)
            .set("auth_query", FUNCTION_QUERY)
            .auth_user(&lookup, &lookup_pw)
            .pg_database(pg, &app, "")
            .pg_database(pg, &auth_db, "pool_size=2")
            .start()
            .await;
        let pooler = &pooler;
        let app = &app;
        let logins = roles.iter().flat_map(|r| [r, r]).map(|role| async move {
            let c = pooler.connect(app, role, "flood-pass").await;
            value(&c, "SELECT current_user").await == *role
        });
        let all = futures_util::future::join_all(logins).await;
        assert!(all.iter().all(|ok| *ok));
        assert!(backends(&auth_db, Some(&lookup)).await <= 2);
    })
    .await
}

/// Every way a lookup can fail is answered with an error to that client,
/// and the pooler keeps serving others.
#[tokio::test]
async fn broken_lookups_are_refused() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("aq_db");
        pg.create_db(&db).await;
        let role = unique("aq_user");
        pg.create_role(&role, "user-pass", Encryption::Md5).await;
        let config_error = ("08P01", "bouncer config error");
        let cases: [(&str, &str, (&str, &str)); 5] = [
            // Not SQL.
            ("auth_query", "SELEC oops $1", config_error),
            // One column.
            (
                "auth_query",
                "SELECT rolname FROM pg_authid WHERE rolname = $1",
                config_error,
            ),
            // Two rows.
            (
                "auth_query",
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1 \
                 UNION ALL SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1",
                config_error,
            ),
            // A NULL user name.
            (
                "auth_query",
                "SELECT NULL::text, NULL::text WHERE $1 IS NOT NULL",
                config_error,
            ),
            // An auth_dbname that is not configured.
            ("auth_dbname", "not_configured_db", config_error),
        ];
        for (key, val, (code, msg)) in cases {
            let pooler = PoolerBuilder::new()
                .set("auth_type", "md5")
                .set("auth_user", "postgres")
                .set(key, val)
                .pg_database(pg, &db, "")
                .start()
                .await;
            refused(&pooler, &db, &role, "user-pass", code, msg).await;
            // auth_file users are not affected.
            assert_eq!(whoami(&pooler, &db, "postgres", TRUSTED).await, "postgres");
        }

        // A lookup slower than client_login_timeout is abandoned.
        let pooler = PoolerBuilder::new()
            .set("auth_type", "md5")
            .set("auth_user", "postgres")
            .set("client_login_timeout", "1")
            .set(
                "auth_query",
                "SELECT rolname, rolpassword FROM pg_authid, pg_sleep(30) WHERE rolname = $1",
            )
            .pg_database(pg, &db, "")
            .start()
            .await;
        let err = pooler
            .try_connect(&db, &role, "user-pass")
            .await
            .expect_err("a lookup that never answers must not let the client in");
        assert!(sqlstate(&err).is_some(), "{err:?}");
        assert_eq!(whoami(&pooler, &db, "postgres", TRUSTED).await, "postgres");
    })
    .await
}

/// auth_dbname = pgbouncer (the console) is refused: globally when the
/// config loads, on a [databases] entry at login.
#[tokio::test]
async fn console_as_auth_dbname_is_refused() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("aq_db");
        pg.create_db(&db).await;
        let role = unique("aq_user");
        pg.create_role(&role, "user-pass", Encryption::Md5).await;
        let pooler = PoolerBuilder::new()
            .set("auth_type", "md5")
            .set("auth_user", "postgres")
            .pg_database(pg, &db, "auth_dbname=pgbouncer")
            .start()
            .await;
        refused(
            &pooler,
            &db,
            &role,
            "user-pass",
            "08P01",
            "bouncer config error",
        )
        .await;

        let (_dir, ini) = PoolerBuilder::new()
            .set("auth_user", "postgres")
            .set("auth_dbname", "pgbouncer")
            .pg_database(pg, &db, "")
            .write();
        let err = pgsluice::config::load(&ini).expect_err("must not load");
        assert!(err.to_string().contains("auth_dbname"), "{err}");
    })
    .await
}
