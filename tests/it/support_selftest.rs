//! Checks of the test support itself, against PostgreSQL directly: if these
//! fail, every other integration test's result means nothing.

use crate::support;

use support::{Encryption, PgCluster, md5_secret, wire};

/// On the shared cluster, with a database and roles of its own.
#[tokio::test]
async fn cluster_roles_and_hba_methods() {
    let pg = PgCluster::shared();
    let db = support::unique("st_db");
    let (md5, scram) = (support::unique("st_md5"), support::unique("st_scram"));
    pg.create_db(&db).await;
    pg.create_role(&md5, "pw-md5", Encryption::Md5).await;
    pg.create_role(&scram, "pw-scram", Encryption::Scram).await;
    for (user, pw) in [(&md5, "pw-md5"), (&scram, "pw-scram")] {
        let mut cfg = pg.direct_config(&db, user);
        cfg.password(pw);
        let (c, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .expect("right password");
        tokio::spawn(conn);
        let row = c.query_one("SELECT current_user::text", &[]).await.unwrap();
        assert_eq!(&row.get::<_, String>(0), user);
        cfg.password("wrong");
        let err = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("wrong password fails");
        assert_eq!(err.code().unwrap().code(), "28P01");
    }
    let v = pg.scram_verifier(&scram).await;
    assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
    let client = pg.direct_client("postgres", "postgres").await;
    let row = client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&md5],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), md5_secret(&md5, "pw-md5"));
}

/// On the shared cluster: the line names a role of this test only.
#[tokio::test]
async fn add_hba_takes_effect() {
    let pg = PgCluster::shared();
    let role = support::unique("st_rejected");
    pg.create_trusted_role(&role).await;
    pg.direct_client("postgres", &role).await;
    pg.add_hba(&format!("host all {role} 127.0.0.1/32 reject"))
        .await;
    let err = pg
        .direct_config("postgres", &role)
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("rejected by pg_hba");
    assert_eq!(err.code().unwrap().code(), "28000", "{err:?}");
}

#[tokio::test]
async fn raw_wire_against_postgres() {
    let pg = PgCluster::shared();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", pg.port()))
        .await
        .unwrap();
    wire::send(&mut s, &wire::ssl_request()).await.unwrap();
    assert_eq!(wire::read_byte(&mut s).await.unwrap(), b'N');
    let msgs = wire::login_trust(&mut s, "postgres", "postgres").await;
    assert!(msgs.iter().any(|m| m.tag == b'K'));
    let rows = wire::simple_query(&mut s, "SELECT 40 + 2").await.unwrap();
    assert_eq!(rows, vec![Some("42".to_string())]);
    let err = wire::simple_query(&mut s, "SELECT nope").await.unwrap_err();
    assert_eq!(err.sqlstate(), "42703");
    // 3.1 gets NegotiateProtocolVersion from PostgreSQL too.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", pg.port()))
        .await
        .unwrap();
    let v31 = (3 << 16) | 1;
    wire::send(
        &mut s,
        &wire::startup_with_version(v31, &[("user", "postgres"), ("database", "postgres")]),
    )
    .await
    .unwrap();
    let msgs = wire::read_until_ready(&mut s).await.unwrap();
    assert!(msgs.iter().any(|m| m.tag == b'v'), "{msgs:?}");
}

#[test]
fn dedicated_cluster_stop_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pg = PgCluster::dedicated();
    let port = pg.port();
    rt.block_on(async {
        let c = pg.direct_client("postgres", "postgres").await;
        c.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
            .await
            .unwrap();
    });
    pg.restart();
    assert_eq!(pg.port(), port);
    rt.block_on(async {
        let c = pg.direct_client("postgres", "postgres").await;
        let row = c.query_one("SELECT x FROM t", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 7);
    });
    pg.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    pg.start();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}
