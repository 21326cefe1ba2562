//! LDAP authentication against a real slapd: auth_hba_file ldap lines in
//! simple bind (prefix/suffix), search+bind (base DN with an attribute or
//! a filter, anonymous or with a bind DN) and ldapurl forms, and
//! auth_type = ldap with auth_ldap_options; wrong, empty and unknown
//! passwords refused, an unreachable directory refused, the pooler
//! serving on; the password proven logs in to PostgreSQL. Over TLS:
//! ldap_tls.rs.

use crate::support;

use support::ldap::{BASE, PEOPLE, Slapd};
use support::{PgCluster, PoolerBuilder, TestPooler, bounded, unique, value};

async fn whoami(p: &TestPooler, db: &str, user: &str, pw: &str) -> String {
    let c = p
        .try_connect(db, user, pw)
        .await
        .unwrap_or_else(|e| panic!("login as {user} to {db}: {e:?}"));
    value(&c, "SELECT current_user").await
}

async fn refused(p: &TestPooler, db: &str, user: &str, pw: &str) {
    let message = format!("LDAP authentication failed for user \"{user}\"");
    p.assert_refused((db, user, pw), "28000", &message).await;
}

#[tokio::test]
async fn hba_ldap_lines_in_every_form() {
    bounded(async {
        let pg = PgCluster::shared();
        let user = unique("ldapuser");
        pg.create_trusted_role(&user).await;
        let slapd = Slapd::start(&[(&user, "secret1"), ("other", "other-pw")]).await;
        let port = slapd.port;
        let forms = [
            format!(
                "ldapserver=127.0.0.1 ldapport={port} ldapprefix=\"uid=\" ldapsuffix=\",{PEOPLE}\""
            ),
            format!("ldapserver=127.0.0.1 ldapport={port} ldapbasedn=\"{BASE}\""),
            format!(
                "ldapserver=127.0.0.1 ldapport={port} ldapbasedn=\"{BASE}\" ldapsearchattribute=uid"
            ),
            format!(
                "ldapserver=127.0.0.1 ldapport={port} ldapbasedn=\"{BASE}\" \
                 ldapbinddn=\"cn=Manager,{BASE}\" ldapbindpasswd=rootsecret \
                 ldapsearchfilter=\"(|(uid=$username)(cn=$username))\""
            ),
            format!("ldapurl=\"ldap://127.0.0.1:{port}/{BASE}?uid?sub\""),
            format!(
                "ldapurl=\"ldap://127.0.0.1:{port}/{BASE}??sub?(|(uid=$username)(mail=$username))\""
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut hba = String::new();
        let mut dbs = Vec::new();
        for form in &forms {
            let db = unique("ldap_db");
            pg.create_db(&db).await;
            hba.push_str(&format!("host {db} all 127.0.0.1/32 ldap {form}\n"));
            dbs.push(db);
        }
        let path = dir.path().join("hba.conf");
        std::fs::write(&path, hba).unwrap();
        let mut b = PoolerBuilder::new()
            .set("auth_type", "hba")
            .set("auth_hba_file", path.to_str().unwrap());
        for db in &dbs {
            b = b.pg_database(pg, db, "");
        }
        let pooler = b.start().await;
        for db in &dbs {
            assert_eq!(whoami(&pooler, db, &user, "secret1").await, user, "{db}");
            refused(&pooler, db, &user, "wrong").await;
            // Someone else's password does not make you them.
            refused(&pooler, db, &user, "other-pw").await;
            refused(&pooler, db, "nobody", "secret1").await;
        }
    })
    .await
}

#[tokio::test]
async fn auth_type_ldap_and_an_unreachable_directory() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("ldap_db");
        pg.create_db(&db).await;
        let user = unique("ldapuser");
        pg.create_trusted_role(&user).await;
        let slapd = Slapd::start(&[(&user, "pw-of-user")]).await;
        let options = format!(
            "ldapserver=127.0.0.1 ldapport={} ldapprefix=\"uid=\" ldapsuffix=\",{PEOPLE}\"",
            slapd.port
        );
        let pooler = PoolerBuilder::new()
            .set("auth_type", "ldap")
            .set("auth_ldap_options", &options)
            .pg_database(pg, &db, "")
            .start()
            .await;
        assert_eq!(whoami(&pooler, &db, &user, "pw-of-user").await, user);
        refused(&pooler, &db, &user, "nope").await;
        // The directory goes away: logins are refused, nothing else breaks.
        drop(slapd);
        refused(&pooler, &db, &user, "pw-of-user").await;

        // auth_type ldap without usable options does not start.
        let (_dir, ini) = PoolerBuilder::new()
            .set("auth_type", "ldap")
            .set(
                "auth_ldap_options",
                "ldapserver=127.0.0.1 ldapscheme=ldapx ldapprefix=x",
            )
            .pg_database(pg, &db, "")
            .write();
        let err = pgsluice::config::load(&ini).expect_err("must not load");
        assert!(err.to_string().contains("auth_ldap_options"), "{err}");
    })
    .await
}
