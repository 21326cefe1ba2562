//! LDAP over TLS against a real slapd: ldaps (ldapscheme=ldaps and ldaps://
//! URLs) and StartTLS (ldaptls=1), with the directory's certificate
//! checked as libldap's ldap.conf says (found through `LDAPCONF`, so each
//! case runs the binary with an environment of its own): a certificate the
//! CA file does not vouch for is refused unless `TLS_REQCERT never`; TLS to
//! the plain port, StartTLS to the ldaps port, and ldaps with StartTLS are
//! refused; a missing ldap.conf named by LDAPCONF stops the start.

use std::path::Path;
use std::time::Duration;

use crate::support;

use support::ldap::{BASE, PEOPLE, Slapd};
use support::pg::free_port;
use support::pooler::spawn_binary_env;
use support::tls::TestCa;
use support::{PgCluster, PoolerBuilder, bounded, poll, unique};

/// The pgsluice binary with `hba` and `LDAPCONF=ldap_conf`, listening on
/// 127.0.0.1:port.
struct Binary {
    _files: tempfile::TempDir,
    _child: tokio::process::Child,
    port: u16,
}

async fn start(pg: &PgCluster, dbs: &[String], hba: &str, ldap_conf: &Path) -> Binary {
    let port = free_port();
    let mut b = PoolerBuilder::new()
        .set("listen_port", &port.to_string())
        .set("auth_type", "hba");
    for db in dbs {
        b = b.pg_database(pg, db, "");
    }
    let (files, ini) = b.write();
    let hba_path = files.path().join("hba.conf");
    std::fs::write(&hba_path, hba).unwrap();
    let text = std::fs::read_to_string(&ini).unwrap().replacen(
        "[pgbouncer]\n",
        &format!("[pgbouncer]\nauth_hba_file = {}\n", hba_path.display()),
        1,
    );
    std::fs::write(&ini, text).unwrap();
    let child = spawn_binary_env(&ini, &[("LDAPCONF", ldap_conf.to_str().unwrap())]);
    poll(100, Duration::from_millis(100), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await
    .expect("the pooler binary listens");
    Binary {
        _files: files,
        _child: child,
        port,
    }
}

impl Binary {
    /// Log in as `user` with `password` to `db`; Ok(current_user) or the
    /// server's SQLSTATE and message.
    async fn login(&self, db: &str, user: &str, password: &str) -> Result<String, String> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .dbname(db)
            .user(user)
            .password(password);
        match cfg.connect(tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                let row = c.query_one("SELECT current_user", &[]).await.unwrap();
                Ok(row.get(0))
            }
            Err(e) => Err(format!(
                "{} {}",
                support::sqlstate(&e).unwrap_or_default(),
                support::db_message(&e).unwrap_or_else(|| e.to_string())
            )),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn ldaps_and_starttls_check_the_directory_certificate() {
    bounded(async {
        let pg = PgCluster::shared();
        let user = unique("ldapsuser");
        pg.create_trusted_role(&user).await;
        let ca = TestCa::new("pgsluice LDAP test CA");
        let cert = ca.issue("localhost", &["localhost", "127.0.0.1"]);
        let slapd = Slapd::start_with_tls(&[(&user, "secret1")], Some((&cert, &ca.ca_file))).await;
        let (plain, tls) = (slapd.port, slapd.ldaps_port);
        let simple = format!("ldapprefix=\"uid=\" ldapsuffix=\",{PEOPLE}\"");
        let good = [
            format!("ldapserver=127.0.0.1 ldapscheme=ldaps ldapport={tls} {simple}"),
            format!("ldapserver=127.0.0.1 ldapport={plain} ldaptls=1 ldapbasedn=\"{BASE}\""),
            format!("ldapurl=\"ldaps://127.0.0.1:{tls}/{BASE}?uid?sub\""),
        ];
        let bad = [
            // TLS to a port that speaks plain LDAP.
            format!("ldapurl=\"ldaps://127.0.0.1:{plain}/{BASE}?uid?sub\""),
            // StartTLS to the ldaps port.
            format!("ldapserver=127.0.0.1 ldapport={tls} ldaptls=1 {simple}"),
            // Both at once.
            format!("ldapurl=\"ldaps://127.0.0.1:{tls}/{BASE}?uid?sub\" ldaptls=1"),
        ];
        let mut hba = String::new();
        let mut good_dbs = Vec::new();
        let mut bad_dbs = Vec::new();
        for (forms, dbs) in [(&good, &mut good_dbs), (&bad, &mut bad_dbs)] {
            for form in forms.iter() {
                let db = unique("ldaps_db");
                pg.create_db(&db).await;
                hba.push_str(&format!("host {db} all 127.0.0.1/32 ldap {form}\n"));
                dbs.push(db);
            }
        }
        let all: Vec<String> = good_dbs.iter().chain(&bad_dbs).cloned().collect();
        let dir = tempfile::tempdir().unwrap();
        let refused = format!("28000 LDAP authentication failed for user \"{user}\"");

        // The CA that signed the directory's certificate: checked and good.
        let trusting = write(
            dir.path(),
            "trusting.conf",
            &format!("# test\nTLS_CACERT {}\n", ca.ca_file.display()),
        );
        let b = start(pg, &all, &hba, &trusting).await;
        for db in &good_dbs {
            assert_eq!(
                b.login(db, &user, "secret1").await,
                Ok(user.clone()),
                "{db}"
            );
            assert_eq!(
                b.login(db, &user, "wrong").await,
                Err(refused.clone()),
                "{db}"
            );
        }
        for db in &bad_dbs {
            assert_eq!(
                b.login(db, &user, "secret1").await,
                Err(refused.clone()),
                "{db}"
            );
        }
        drop(b);

        // Another CA: the certificate is not trusted, every login refused.
        let other = TestCa::new("some other CA");
        let distrusting = write(
            dir.path(),
            "other.conf",
            &format!("TLS_CACERT {}\n", other.ca_file.display()),
        );
        let b = start(pg, &all, &hba, &distrusting).await;
        for db in &all {
            assert_eq!(
                b.login(db, &user, "secret1").await,
                Err(refused.clone()),
                "{db}"
            );
        }
        drop(b);

        // TLS_REQCERT never: any certificate.
        let never = write(
            dir.path(),
            "never.conf",
            &format!(
                "TLS_REQCERT never\nTLS_CACERT {}\n",
                other.ca_file.display()
            ),
        );
        let b = start(pg, &all, &hba, &never).await;
        for db in &good_dbs {
            assert_eq!(
                b.login(db, &user, "secret1").await,
                Ok(user.clone()),
                "{db}"
            );
        }
        drop(b);

        // LDAPCONF names a file that is not there: the pooler does not start.
        let port = free_port();
        let (files, ini) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .set("auth_type", "ldap")
            .set("auth_ldap_options", &good[0])
            .pg_database(pg, &good_dbs[0], "")
            .write();
        let missing = files.path().join("missing-ldap.conf");
        let mut child = spawn_binary_env(&ini, &[("LDAPCONF", missing.to_str().unwrap())]);
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("pgsluice must exit")
            .unwrap();
        assert!(!status.success(), "{status}");
    })
    .await
}
