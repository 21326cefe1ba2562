//! tokio-postgres over TLS (rustls through tokio-postgres-rustls) through
//! the pooler in transaction mode: the certificate checked against the
//! test CA for `localhost`, SCRAM-SHA-256-PLUS with channel binding
//! required, and named prepared statements reused by several clients
//! across transactions on a pool smaller than the client count.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::{ChannelBinding, SslMode};
use tokio_postgres::types::Type;
use tokio_postgres_rustls::MakeRustlsConnect;

use support::{Encryption, PgCluster, PoolerBuilder, bounded_for, unique};

const CLIENTS: usize = 6;
const ROUNDS: i64 = 20;

/// A rustls client trusting only the shared test CA.
fn tls_connector() -> MakeRustlsConnect {
    let (ca, _) = support::tls::shared();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca.ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

/// TLS required, to the pooler at `localhost` (its certificate's name).
fn client_config(port: u16, db: &str, role: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .port(port)
        .dbname(db)
        .user(role)
        .password("pw-Tls1")
        .ssl_mode(SslMode::Require);
    config
}

#[tokio::test]
async fn tokio_postgres_over_tls_with_channel_binding_and_prepared_statements() {
    bounded_for(Duration::from_secs(120), async {
        let pg = PgCluster::shared();
        let db = unique("tpg_tls");
        pg.create_db(&db).await;
        let role = unique("tpg_tls_role");
        pg.create_role(&role, "pw-Tls1", Encryption::Scram).await;
        pg.direct_client(&db, "postgres")
            .await
            .batch_execute(&format!(
                "CREATE TABLE items (client int, n int8); GRANT ALL ON items TO {role}"
            ))
            .await
            .unwrap();
        let builder = PoolerBuilder::new()
            .set("auth_type", "scram-sha-256")
            .set("max_prepared_statements", "10")
            .auth_user(&role, "pw-Tls1")
            .pg_database(pg, &db, "pool_size=2");
        let p = support::tls::require_client_tls(builder).start().await;

        let mut tasks = Vec::new();
        for client in 0..CLIENTS as i32 {
            let mut config = client_config(p.addr().port(), &db, &role);
            config.channel_binding(ChannelBinding::Require);
            let (c, conn) = config.connect(tls_connector()).await.unwrap();
            tokio::spawn(conn);
            tasks.push(tokio::spawn(async move {
                // Prepared once, used in every transaction, whichever server
                // the pool gives this client.
                let insert = c
                    .prepare("INSERT INTO items VALUES ($1, $2)")
                    .await
                    .unwrap();
                let count = c
                    .prepare("SELECT count(*), sum(n)::int8 FROM items WHERE client = $1")
                    .await
                    .unwrap();
                for n in 1..=ROUNDS {
                    c.execute(&insert, &[&client, &n]).await.unwrap();
                    let row = c.query_one(&count, &[&client]).await.unwrap();
                    assert_eq!(row.get::<_, i64>(0), n);
                    assert_eq!(row.get::<_, i64>(1), n * (n + 1) / 2);
                }
                let row = c
                    .query_typed_one("SELECT $1::text || '!'", &[(&"tls", Type::TEXT)])
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, String>(0), "tls!");
                let ssl = c
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap();
                // The server leg is plaintext here: only the client leg is TLS.
                assert!(!ssl.get::<_, bool>(0));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }

        // Without the CA the certificate is refused by the client.
        let config = client_config(p.addr().port(), &db, &role);
        let empty = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let err = config
            .connect(MakeRustlsConnect::new(empty))
            .await
            .err()
            .expect("an untrusted certificate is refused");
        assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
        p.shutdown().await;
    })
    .await;
}
