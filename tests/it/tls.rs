//! TLS on both legs with real components: a test CA made at test time, a
//! PostgreSQL cluster with `ssl = on` whose pg_hba.conf takes TCP over TLS
//! only (`hostssl`), psql and pgbench with `sslmode=verify-full` through
//! pgsluice, and raw protocol clients for what drivers never send (direct
//! TLS, garbage for a ClientHello, an SSLRequest inside TLS, a stalled
//! handshake). Each bad input gets an error or a closed connection, and a
//! good client right after it still works.

use crate::support;

use std::sync::OnceLock;
use std::time::Duration;

use support::tls::{Issued, TestCa, Validity, client_handshake, ssl_request_handshake};
use support::wire;
use support::{PgCluster, PoolerBuilder, TestPooler, bounded, tool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One CA, one hostssl-only cluster serving a certificate for
/// `localhost` only, and the pooler's certificate (localhost, 127.0.0.1).
struct World {
    ca: TestCa,
    pg: PgCluster,
    pooler_cert: Issued,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let ca = TestCa::new("pgsluice test CA");
        let server = ca.issue("localhost", &["localhost"]);
        let pg = PgCluster::dedicated_tls(&server, &ca.ca_file);
        let pooler_cert = ca.issue("localhost", &["localhost", "127.0.0.1"]);
        World {
            ca,
            pg,
            pooler_cert,
        }
    })
}

async fn tls_db(prefix: &str) -> String {
    let name = support::unique(prefix);
    world().pg.create_db(&name).await;
    name
}

/// Client TLS required with the pooler's certificate; servers reached at
/// `localhost` with `verify-full` against the test CA.
fn tls_pooler(db: &str) -> PoolerBuilder {
    let w = world();
    PoolerBuilder::new()
        .set("admin_users", "postgres")
        .set("client_tls_sslmode", "require")
        .set(
            "client_tls_key_file",
            &w.pooler_cert.key.display().to_string(),
        )
        .set(
            "client_tls_cert_file",
            &w.pooler_cert.cert.display().to_string(),
        )
        .set("client_tls_ca_file", &w.ca.ca_file.display().to_string())
        .set("server_tls_sslmode", "verify-full")
        .set("server_tls_ca_file", &w.ca.ca_file.display().to_string())
        .database(
            db,
            &format!("host=localhost port={} dbname={db}", w.pg.port()),
        )
}

/// psql with `conninfo`; (success, stdout, stderr).
async fn psql(conninfo: &str, sql: &str) -> (bool, String, String) {
    let out = tokio::process::Command::new(tool("psql").expect("psql is installed by .ci/run"))
        .args(["-X", "-At", "-c", sql, conninfo])
        .env("PGCONNECT_TIMEOUT", "20")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify_full(p: &TestPooler, db: &str, root: &std::path::Path) -> String {
    format!(
        "host=localhost port={} dbname={db} user=postgres sslmode=verify-full sslrootcert={}",
        p.addr().port(),
        root.display()
    )
}

/// Whether the server connection of this session uses TLS.
const SERVER_SSL: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[tokio::test]
async fn psql_verify_full_through_pgsluice_to_a_hostssl_only_server() {
    bounded(async {
        let db = tls_db("tls_psql").await;
        let p = tls_pooler(&db).start().await;
        let (ok, out, err) = psql(&verify_full(&p, &db, &world().ca.ca_file), SERVER_SSL).await;
        assert!(ok, "psql over TLS failed: {err}");
        assert_eq!(out, "t", "the server leg is TLS too");
        // The console shows the client's TLS as PgBouncer does.
        let (ok, out, err) = psql(
            &verify_full(&p, "pgbouncer", &world().ca.ca_file),
            "SHOW CLIENTS",
        )
        .await;
        assert!(ok, "{err}");
        assert!(
            out.contains("TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=X25519"),
            "{out}"
        );
        // A plaintext TCP client is refused under require.
        let plain = format!(
            "host=127.0.0.1 port={} dbname={db} user=postgres sslmode=disable",
            p.addr().port()
        );
        let (ok, _, err) = psql(&plain, "SELECT 1").await;
        assert!(!ok);
        assert!(err.contains("SSL required"), "{err}");
        p.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn pgbench_over_tls_in_simple_extended_and_prepared_modes() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_bench").await;
        let pgbench = tool("pgbench").expect("pgbench is installed by .ci/run");
        let init = tokio::process::Command::new(&pgbench)
            .args(["-i", "-q", "-s", "1", "-h"])
            .arg(w.pg.socket_dir())
            .args(["-p", &w.pg.port().to_string(), "-U", "postgres", &db])
            .output()
            .await
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let p = tls_pooler(&db).start().await;
        for mode in ["simple", "extended", "prepared"] {
            let out = tokio::process::Command::new(&pgbench)
                .args(["-n", "-S", "-M", mode, "-c", "4", "-j", "2", "-t", "200"])
                .args(["-h", "localhost", "-p", &p.addr().port().to_string()])
                .args(["-U", "postgres", &db])
                .env("PGSSLMODE", "verify-full")
                .env("PGSSLROOTCERT", &w.ca.ca_file)
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success()
                    && text.contains("number of transactions actually processed: 800/800"),
                "pgbench -M {mode} over TLS: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        p.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn bad_tls_inputs_end_only_their_own_connection() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_bad").await;
        let p = tls_pooler(&db)
            .set("client_login_timeout", "1")
            .start()
            .await;
        let good = verify_full(&p, &db, &w.ca.ca_file);

        // A client trusting another CA refuses the pooler's certificate.
        let other = TestCa::new("another CA");
        let (ok, _, err) = psql(&verify_full(&p, &db, &other.ca_file), "SELECT 1").await;
        assert!(!ok);
        assert!(err.contains("certificate verify failed"), "{err}");

        // Garbage where the ClientHello should be: the connection closes,
        // and the failed handshake is counted.
        let failed = || {
            pgsluice::transport::HANDSHAKES
                .client_failed
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let failed_before = failed();
        let mut tcp = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
        tcp.write_all(&wire::ssl_request()).await.unwrap();
        assert_eq!(tcp.read_u8().await.unwrap(), b'S');
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        assert!(!rest.contains(&b'R'), "no login over garbage");
        assert!(failed() > failed_before, "the failed handshake is counted");

        // Two SSLRequests in one write: the second could be a man in the
        // middle's plaintext; refused before any TLS.
        let mut tcp = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
        let mut two = wire::ssl_request();
        two.extend(wire::ssl_request());
        tcp.write_all(&two).await.unwrap();
        let msgs = wire::read_to_close(&mut tcp).await.unwrap();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0].sqlstate(), "08P01");
        assert!(
            msgs[0]
                .message()
                .contains("unencrypted data after SSL request")
        );

        // An SSLRequest inside TLS.
        let mut tls = ssl_request_handshake(p.addr(), &w.ca.ca_file).await;
        wire::send(&mut tls, &wire::ssl_request()).await.unwrap();
        let msgs = wire::read_to_close(&mut tls).await.unwrap();
        assert_eq!(msgs[0].sqlstate(), "08P01", "{msgs:?}");

        // A handshake that never comes is ended by client_login_timeout.
        let mut tcp = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
        tcp.write_all(&wire::ssl_request()).await.unwrap();
        assert_eq!(tcp.read_u8().await.unwrap(), b'S');
        let closed =
            tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut Vec::new())).await;
        assert!(
            closed.is_ok(),
            "a stalled handshake must not hold its connection"
        );

        // Nobody else was harmed.
        let (ok, out, err) = psql(&good, "SELECT 42").await;
        assert!(ok, "{err}");
        assert_eq!(out, "42");
        p.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn direct_tls_needs_alpn_postgresql() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_direct").await;
        let p = tls_pooler(&db).start().await;
        let tcp = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
        let mut tls = client_handshake(tcp, &w.ca.ca_file, "localhost", &[b"postgresql"])
            .await
            .unwrap();
        wire::login_trust(&mut tls, "postgres", &db).await;
        let rows = wire::simple_query(&mut tls, SERVER_SSL).await.unwrap();
        assert_eq!(rows, vec![Some("t".to_string())]);

        // Without ALPN, PostgreSQL 17's error, over TLS.
        let tcp = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
        let mut tls = client_handshake(tcp, &w.ca.ca_file, "localhost", &[])
            .await
            .unwrap();
        let msgs = wire::read_to_close(&mut tls).await.unwrap();
        assert_eq!(msgs[0].sqlstate(), "08P01", "{msgs:?}");
        assert!(msgs[0].message().contains("ALPN"), "{msgs:?}");
        p.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn server_leg_modes_check_what_they_promise() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_modes").await;
        let ca = w.ca.ca_file.display().to_string();
        // The cluster's certificate names localhost only: reached as
        // 127.0.0.1, verify-full fails and verify-ca passes.
        let by_ip = format!("host=127.0.0.1 port={} dbname={db}", w.pg.port());
        for (mode, works) in [
            ("verify-full", false),
            ("verify-ca", true),
            ("require", true),
            ("prefer", true),
        ] {
            let p = PoolerBuilder::new()
                .set("server_tls_sslmode", mode)
                .set("server_tls_ca_file", &ca)
                .set("server_connect_timeout", "3")
                // A failed handshake is not retried within this.
                .set("query_wait_timeout", "2")
                .database(&db, &by_ip)
                .start()
                .await;
            let r = p.try_connect(&db, "postgres", "").await;
            let r = match r {
                Ok(c) => c
                    .simple_query(SERVER_SSL)
                    .await
                    .map(|m| support::rows_col0(&m)),
                Err(e) => Err(e),
            };
            match (works, r) {
                (true, Ok(rows)) => assert_eq!(rows, vec!["t"], "{mode}"),
                (false, Err(_)) => {}
                (w, r) => panic!("server_tls_sslmode={mode}: expected works={w}, got {r:?}"),
            }
            p.shutdown().await;
        }
        // A server that says 'N' (the plain shared cluster): prefer goes on
        // in plaintext, require refuses.
        let plain = support::fresh_dbs(["tls_plain"]).await[0].clone();
        let shared = PgCluster::shared();
        for (mode, works) in [("prefer", true), ("require", false)] {
            let p = PoolerBuilder::new()
                .set("server_tls_sslmode", mode)
                .set("server_connect_timeout", "3")
                .set("query_wait_timeout", "2")
                .pg_database(shared, &plain, "")
                .start()
                .await;
            let r = match p.try_connect(&plain, "postgres", "").await {
                Ok(c) => c.simple_query("SELECT 1").await.map(|_| ()),
                Err(e) => Err(e),
            };
            assert_eq!(r.is_ok(), works, "server_tls_sslmode={mode}: {r:?}");
            p.shutdown().await;
        }
    })
    .await
}

#[tokio::test]
async fn a_session_over_tls_survives_parking_and_reload_swaps_certificates() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_reload").await;
        let p = tls_pooler(&db).start().await;
        let mut session = ssl_request_handshake(p.addr(), &w.ca.ca_file).await;
        wire::login_trust(&mut session, "postgres", &db).await;
        assert_eq!(
            wire::simple_query(&mut session, "SELECT 1").await.unwrap(),
            vec![Some("1".into())]
        );
        // Idle for over a second: the sweep parks the session, its TLS
        // state kept while its socket waits in the parker.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            wire::simple_query(&mut session, "SELECT 2").await.unwrap(),
            vec![Some("2".into())]
        );

        // A certificate from another CA, by RELOAD.
        let ca2 = TestCa::new("second CA");
        let cert2 = ca2.issue("localhost", &["localhost"]);
        let ini = std::fs::read_to_string(p.ini_path()).unwrap();
        let swapped = ini
            .replace(
                &w.pooler_cert.cert.display().to_string(),
                &cert2.cert.display().to_string(),
            )
            .replace(
                &w.pooler_cert.key.display().to_string(),
                &cert2.key.display().to_string(),
            );
        std::fs::write(p.ini_path(), swapped).unwrap();
        p.pooler().context().reload().unwrap();
        let (ok, _, err) = psql(&verify_full(&p, &db, &ca2.ca_file), "SELECT 1").await;
        assert!(ok, "new certificate after RELOAD: {err}");
        let (ok, _, _) = psql(&verify_full(&p, &db, &w.ca.ca_file), "SELECT 1").await;
        assert!(!ok, "the old certificate is gone");
        // The session that was there before goes on.
        assert_eq!(
            wire::simple_query(&mut session, "SELECT 3").await.unwrap(),
            vec![Some("3".into())]
        );

        // A broken key file: as in PgBouncer, RELOAD goes on (a warning
        // names the key) and the running certificate stays in force.
        let broken = ca2.issue("localhost", &["localhost"]);
        std::fs::write(&broken.key, "not a key").unwrap();
        let ini = std::fs::read_to_string(p.ini_path()).unwrap();
        std::fs::write(
            p.ini_path(),
            ini.replace(
                &cert2.key.display().to_string(),
                &broken.key.display().to_string(),
            ),
        )
        .unwrap();
        p.pooler().context().reload().unwrap();
        let (ok, _, err) = psql(&verify_full(&p, &db, &ca2.ca_file), "SELECT 1").await;
        assert!(ok, "the running certificate stays: {err}");
        // TLS cannot be turned on by a SET that leaves it unusable: with
        // client TLS off, `require` without a key is refused, not ignored.
        let off = PoolerBuilder::new()
            .database(&db, "host=localhost")
            .start()
            .await;
        let e = off
            .pooler()
            .context()
            .set("client_tls_sslmode", "require")
            .unwrap_err();
        assert!(e.contains("client_tls_sslmode"), "{e}");
        off.shutdown().await;
        p.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn cancel_over_tls_reaches_a_tls_server() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_cancel").await;
        let p = tls_pooler(&db).start().await;
        let mut session = ssl_request_handshake(p.addr(), &w.ca.ca_file).await;
        let login = wire::login_trust(&mut session, "postgres", &db).await;
        let key = login
            .iter()
            .find(|m| m.tag == b'K')
            .expect("BackendKeyData");
        let (pid, secret) = (key.int32(0), key.int32(4));
        wire::send(&mut session, &wire::query("SELECT pg_sleep(60)"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut cancel = ssl_request_handshake(p.addr(), &w.ca.ca_file).await;
        let mut body = 80_877_102i32.to_be_bytes().to_vec();
        body.extend(pid.to_be_bytes());
        body.extend(secret.to_be_bytes());
        wire::send(&mut cancel, &wire::untagged(&body))
            .await
            .unwrap();
        let msgs = wire::read_until_ready(&mut session).await.unwrap();
        let e = msgs
            .iter()
            .find(|m| m.tag == b'E')
            .expect("the query was cancelled");
        assert_eq!(e.sqlstate(), "57014");
        p.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_dates").await;
        for validity in [Validity::Expired, Validity::NotYet] {
            let cert = w.ca.issue_with("localhost", &["localhost"], validity);
            let p = tls_pooler(&db)
                .set("client_tls_key_file", &cert.key.display().to_string())
                .set("client_tls_cert_file", &cert.cert.display().to_string())
                .start()
                .await;
            let (ok, _, err) = psql(&verify_full(&p, &db, &w.ca.ca_file), "SELECT 1").await;
            assert!(!ok, "a client checking dates refuses the certificate");
            assert!(err.contains("certificate verify failed"), "{err}");
            p.shutdown().await;
        }
    })
    .await
}

/// SCRAM-SHA-256-PLUS on both legs: psql insists on channel binding towards
/// pgsluice, and pgsluice logs in to a hostssl scram-sha-256 server over
/// TLS, where PostgreSQL refuses a client that could bind and does not
/// (so the login succeeding proves the binding was made and was right).
/// Over plaintext, a client that asks for the PLUS mechanism gets
/// PostgreSQL's error.
#[tokio::test]
async fn scram_channel_binding_on_both_legs() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_scram").await;
        let role = support::unique("tls_scram_role");
        w.pg.create_role(&role, "pw-Plus1", support::Encryption::Scram).await;
        let p = tls_pooler(&db)
            .set("auth_type", "scram-sha-256")
            .set("client_tls_sslmode", "allow")
            .auth_user(&role, "pw-Plus1")
            .start()
            .await;
        let conninfo = format!(
            "host=localhost port={} dbname={db} user={role} password=pw-Plus1 sslmode=verify-full sslrootcert={} channel_binding=require",
            p.addr().port(),
            w.ca.ca_file.display()
        );
        let (ok, out, err) = psql(&conninfo, SERVER_SSL).await;
        assert!(ok, "SCRAM-SHA-256-PLUS through pgsluice: {err}");
        assert_eq!(out, "t");

        // Plaintext TCP (allowed by `allow`): the PLUS mechanism is not
        // offered, and choosing it is PostgreSQL's protocol violation.
        let mut tcp = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
        wire::send(&mut tcp, &wire::startup(&role, &db)).await.unwrap();
        let offer = wire::read_msg(&mut tcp).await.unwrap().unwrap();
        assert_eq!(offer.tag, b'R');
        let mechanisms = String::from_utf8_lossy(&offer.body[4..]).to_string();
        assert!(mechanisms.contains("SCRAM-SHA-256") && !mechanisms.contains("PLUS"), "{mechanisms}");
        let data = b"p=tls-server-end-point,,n=,r=abcdefgh";
        let mut body = b"SCRAM-SHA-256-PLUS\0".to_vec();
        body.extend((data.len() as i32).to_be_bytes());
        body.extend(data);
        wire::send(&mut tcp, &wire::tagged(b'p', &body)).await.unwrap();
        let msgs = wire::read_to_close(&mut tcp).await.unwrap();
        assert_eq!(msgs[0].sqlstate(), "08P01", "{msgs:?}");
        assert!(msgs[0].message().contains("invalid SASL authentication mechanism"));
        p.shutdown().await;
    })
    .await
}

/// auth_type = cert with client_tls_sslmode = verify-full: the client's
/// certificate, signed by the CA, names the user in its common name.
#[tokio::test]
async fn certificate_authentication() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_cert").await;
        let p = tls_pooler(&db)
            .set("auth_type", "cert")
            .set("client_tls_sslmode", "verify-full")
            .start()
            .await;
        let with_cert = |c: &Issued| {
            format!(
                "{} sslcert={} sslkey={}",
                verify_full(&p, &db, &w.ca.ca_file),
                c.cert.display(),
                c.key.display()
            )
        };
        let mine = w.ca.issue("postgres", &[]);
        let (ok, out, err) = psql(&with_cert(&mine), "SELECT current_user").await;
        assert!(ok, "certificate login: {err}");
        assert_eq!(out, "postgres");
        // Another user's certificate.
        let theirs = w.ca.issue("someone_else", &[]);
        let (ok, _, err) = psql(&with_cert(&theirs), "SELECT 1").await;
        assert!(!ok);
        assert!(err.contains("certificate authentication failed"), "{err}");
        // A certificate from a CA pgsluice does not trust: the handshake fails.
        let other = TestCa::new("untrusted CA").issue("postgres", &[]);
        let (ok, _, _) = psql(&with_cert(&other), "SELECT 1").await;
        assert!(!ok);
        // No certificate at all under verify-full.
        let (ok, _, _) = psql(&verify_full(&p, &db, &w.ca.ca_file), "SELECT 1").await;
        assert!(!ok);
        p.shutdown().await;
    })
    .await
}

/// X.509 v1 certificates (what `openssl x509 -req` makes without an
/// extensions file, and PgBouncer's own test certificates): as pgsluice's
/// own certificate, as a client certificate under verify-full with
/// auth_type = cert, and as PostgreSQL's under verify-full (common name
/// checked, since a v1 certificate has no subjectAltName) and verify-ca.
#[tokio::test]
async fn x509_v1_certificates_work_where_pgbouncer_takes_them() {
    bounded(async {
        let w = world();
        // PostgreSQL serving a v1 certificate for localhost.
        let pg_cert = w.ca.issue_v1("localhost");
        let pg = PgCluster::dedicated_tls(&pg_cert, &w.ca.ca_file);
        let db = support::unique("tls_v1");
        pg.create_db(&db).await;
        let own = w.ca.issue_v1("localhost");
        let ca = w.ca.ca_file.display().to_string();
        let pooler = |host: &str, mode: &str, ca: &str| {
            PoolerBuilder::new()
                .set("client_tls_sslmode", "verify-full")
                .set("client_tls_key_file", &own.key.display().to_string())
                .set("client_tls_cert_file", &own.cert.display().to_string())
                .set("client_tls_ca_file", &w.ca.ca_file.display().to_string())
                .set("auth_type", "cert")
                .set("server_tls_sslmode", mode)
                .set("server_tls_ca_file", ca)
                .set("server_connect_timeout", "3")
                .database(&db, &format!("host={host} port={} dbname={db}", pg.port()))
        };
        let client = w.ca.issue_v1("postgres");
        let conninfo = |p: &TestPooler| {
            format!(
                "{} sslcert={} sslkey={}",
                verify_full(p, &db, &w.ca.ca_file),
                client.cert.display(),
                client.key.display()
            )
        };
        let p = pooler("localhost", "verify-full", &ca).start().await;
        let (ok, out, err) = psql(&conninfo(&p), SERVER_SSL).await;
        assert!(ok, "v1 certificates on both legs: {err}");
        assert_eq!(out, "t");
        p.shutdown().await;
        // The common name is the only name a v1 certificate has.
        let p = pooler("127.0.0.1", "verify-full", &ca).start().await;
        let (ok, _, _) = psql(&conninfo(&p), "SELECT 1").await;
        assert!(!ok, "127.0.0.1 is not the certificate's name");
        p.shutdown().await;
        let p = pooler("127.0.0.1", "verify-ca", &ca).start().await;
        let (ok, _, err) = psql(&conninfo(&p), "SELECT 1").await;
        assert!(ok, "verify-ca does not check the name: {err}");
        p.shutdown().await;
        // Signed by another CA (same name): refused on both legs.
        let impostor = TestCa::new("pgsluice test CA");
        let p = pooler(
            "localhost",
            "verify-full",
            &impostor.ca_file.display().to_string(),
        )
        .start()
        .await;
        let (ok, _, _) = psql(&conninfo(&p), "SELECT 1").await;
        assert!(!ok, "PostgreSQL's certificate is not the impostor CA's");
        p.shutdown().await;
        let forged = impostor.issue_v1("postgres");
        let p = pooler("localhost", "verify-full", &ca).start().await;
        let forged_conn = format!(
            "{} sslcert={} sslkey={}",
            verify_full(&p, &db, &w.ca.ca_file),
            forged.cert.display(),
            forged.key.display()
        );
        let (ok, _, _) = psql(&forged_conn, "SELECT 1").await;
        assert!(
            !ok,
            "a client certificate from another CA with the same name"
        );
        p.shutdown().await;
    })
    .await
}

/// Two shards: TLS sessions park and come back on the other shard's
/// reactor with their TLS state, and TLS server connections move between
/// shards with the clients that take them; pgbench runs its three modes
/// through it with no failed transaction.
#[tokio::test]
async fn tls_sessions_and_servers_move_between_shards() {
    bounded(async {
        let w = world();
        let db = tls_db("tls_shards").await;
        let p = tls_pooler(&db).start_sharded(2).await;
        let mut sessions = Vec::new();
        for _ in 0..4 {
            let mut s = ssl_request_handshake(p.addr(), &w.ca.ca_file).await;
            wire::login_trust(&mut s, "postgres", &db).await;
            sessions.push(s);
        }
        for round in 0..3 {
            // Idle past the sweep: every session parks, and resumes on the
            // shards in turn.
            tokio::time::sleep(Duration::from_millis(2200)).await;
            for (i, s) in sessions.iter_mut().enumerate() {
                let sql = format!("SELECT {round} * 10 + {i}");
                let rows = wire::simple_query(s, &sql).await.unwrap();
                assert_eq!(rows, vec![Some((round * 10 + i).to_string())]);
            }
        }
        let pgbench = tool("pgbench").expect("pgbench is installed by .ci/run");
        let init = tokio::process::Command::new(&pgbench)
            .args(["-i", "-q", "-s", "1", "-h"])
            .arg(w.pg.socket_dir())
            .args(["-p", &w.pg.port().to_string(), "-U", "postgres", &db])
            .output()
            .await
            .unwrap();
        assert!(init.status.success());
        for mode in ["simple", "extended", "prepared"] {
            let out = tokio::process::Command::new(&pgbench)
                .args(["-n", "-S", "-M", mode, "-c", "8", "-j", "2", "-t", "100"])
                .args(["-h", "localhost", "-p", &p.addr().port().to_string()])
                .args(["-U", "postgres", &db])
                .env("PGSSLMODE", "verify-full")
                .env("PGSSLROOTCERT", &w.ca.ca_file)
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("processed: 800/800"),
                "pgbench -M {mode} on two shards over TLS: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        p.shutdown().await;
    })
    .await
}
