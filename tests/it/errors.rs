//! Errors a client can cause or meet: garbage and truncated startup packets,
//! oversized and malformed messages, unknown database, too many clients,
//! PostgreSQL unreachable (and back). Every case is answered while another
//! client of the same pooler goes on working.

use crate::support;

use std::time::Duration;

use support::{
    PgCluster, PoolerBuilder, TestPooler, bounded, db_message, poll, sqlstate, unique, wire,
};

async fn setup(extra: &[(&str, &str)]) -> (TestPooler, String) {
    let pg = PgCluster::shared();
    let db = unique("err_db");
    pg.create_db(&db).await;
    let mut b = PoolerBuilder::new().pg_database(pg, &db, "pool_size=2");
    for (k, v) in extra {
        b = b.set(k, v);
    }
    (b.start().await, db)
}

/// A bystander that must keep working through every error case.
async fn still_works(c: &tokio_postgres::Client, n: i32) {
    let rows = c
        .simple_query(&format!("SELECT {n}"))
        .await
        .expect("bystander broken");
    assert_eq!(support::rows_col0(&rows), vec![n.to_string()]);
}

/// The pooler answers (ErrorResponse or not) and closes; returns any error.
async fn closed_with(s: &mut tokio::net::TcpStream) -> Option<wire::Msg> {
    let msgs = wire::read_to_close(s)
        .await
        .expect("pooler neither answered nor closed");
    assert!(
        msgs.iter().all(|m| m.tag != b'Z'),
        "garbage got a session: {msgs:?}"
    );
    msgs.into_iter().find(|m| m.tag == b'E')
}

#[tokio::test]
async fn garbage_and_truncated_startup() {
    bounded(async {
        let (p, db) = setup(&[]).await;
        let bystander = p.connect(&db, "postgres", "").await;
        still_works(&bystander, 1).await;
        for round in 0..20 {
            let mut s = p.raw_connect().await;
            let mut junk = vec![0u8; 64];
            rand::fill(&mut junk[..]);
            // A complete packet: a valid length, then a protocol code that
            // is no known one (first byte 0x7f), then random parameters.
            junk[..4].copy_from_slice(&64u32.to_be_bytes());
            junk[4] = 0x7f;
            wire::send(&mut s, &junk).await.unwrap();
            closed_with(&mut s).await;
            still_works(&bystander, round).await;
        }
        // A length below the minimum.
        let mut s = p.raw_connect().await;
        wire::send(&mut s, &[0, 0, 0, 2, 0, 3, 0, 0]).await.unwrap();
        if let Some(e) = closed_with(&mut s).await {
            assert_eq!(e.sqlstate(), "08P01", "{:?}", e.fields());
        }
        // A startup packet that claims more than it brings, then EOF.
        let mut s = p.raw_connect().await;
        let full = wire::startup("postgres", &db);
        let mut cut = full[..full.len() / 2].to_vec();
        cut[..4].copy_from_slice(&(full.len() as u32).to_be_bytes());
        wire::send(&mut s, &cut).await.unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut s).await.unwrap();
        closed_with(&mut s).await;
        // A startup packet without its terminating zero bytes.
        let mut s = p.raw_connect().await;
        let mut body = wire::PROTOCOL_3_0.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0postgres\0database");
        wire::send(&mut s, &wire::untagged(&body)).await.unwrap();
        if let Some(e) = closed_with(&mut s).await {
            assert_eq!(e.sqlstate(), "08P01", "{:?}", e.fields());
        }
        still_works(&bystander, 100).await;
        // New clients still log in.
        let fresh = p.connect(&db, "postgres", "").await;
        still_works(&fresh, 101).await;
    })
    .await
}

/// PgBouncer's probe: with the default max_packet_size (2^31-1), a length
/// field of 2^31-1 (the whole message one byte more) is refused at once,
/// not waited for.
#[tokio::test]
async fn a_length_field_of_2_31_minus_1_is_refused_at_once() {
    bounded(async {
        let (p, db) = setup(&[]).await;
        let mut s = p.raw_connect().await;
        wire::login_trust(&mut s, "postgres", &db).await;
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&(u32::MAX >> 1).to_be_bytes());
        msg.extend_from_slice(b"SELECT 1");
        wire::send(&mut s, &msg).await.unwrap();
        let e = closed_with(&mut s)
            .await
            .expect("ErrorResponse for a 2 GB message");
        assert_eq!(e.sqlstate(), "08P01", "{:?}", e.fields());
    })
    .await
}

#[tokio::test]
async fn oversized_and_malformed_messages() {
    bounded(async {
        let (p, db) = setup(&[("max_packet_size", "65536")]).await;
        let bystander = p.connect(&db, "postgres", "").await;

        // A Query whose length exceeds max_packet_size: refused from the header.
        let mut s = p.raw_connect().await;
        wire::login_trust(&mut s, "postgres", &db).await;
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&1_000_000u32.to_be_bytes());
        msg.extend_from_slice(&[b'x'; 1000]);
        wire::send(&mut s, &msg).await.unwrap();
        let e = closed_with(&mut s)
            .await
            .expect("ErrorResponse for an oversized message");
        assert_eq!(e.sqlstate(), "08P01", "{:?}", e.fields());
        still_works(&bystander, 1).await;

        // A length field below 4.
        let mut s = p.raw_connect().await;
        wire::login_trust(&mut s, "postgres", &db).await;
        wire::send(&mut s, &[b'Q', 0, 0, 0, 1]).await.unwrap();
        let e = closed_with(&mut s)
            .await
            .expect("ErrorResponse for a bad length");
        assert_eq!(e.sqlstate(), "08P01", "{:?}", e.fields());

        // A message type no frontend may send.
        let mut s = p.raw_connect().await;
        wire::login_trust(&mut s, "postgres", &db).await;
        wire::send(&mut s, &wire::tagged(0xC3, b"zzz"))
            .await
            .unwrap();
        let e = closed_with(&mut s)
            .await
            .expect("ErrorResponse for an unknown message type");
        assert_eq!(e.sqlstate(), "08P01", "{:?}", e.fields());

        // Just under the limit is fine.
        let c = p.connect(&db, "postgres", "").await;
        let big = format!("SELECT length('{}')", "y".repeat(60_000));
        assert_eq!(support::value(&c, &big).await, "60000");
        still_works(&bystander, 2).await;
    })
    .await
}

#[tokio::test]
async fn unknown_database() {
    bounded(async {
        let (p, db) = setup(&[]).await;
        let bystander = p.connect(&db, "postgres", "").await;
        let err = p
            .try_connect("no_such_db_here", "postgres", "")
            .await
            .expect_err("must fail");
        assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{err:?}");
        assert!(
            db_message(&err).unwrap().contains("no_such_db_here"),
            "{err:?}"
        );
        still_works(&bystander, 3).await;
    })
    .await
}

#[tokio::test]
async fn too_many_clients() {
    bounded(async {
        let (p, db) = setup(&[("max_client_conn", "3"), ("admin_users", "postgres")]).await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(p.connect(&db, "postgres", "").await);
        }
        let err = p
            .try_connect(&db, "postgres", "")
            .await
            .expect_err("4th client must fail");
        assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err:?}");
        // The admin console is let in over the limit (as in PgBouncer),
        // and a client still is not.
        let admin = p.connect("pgbouncer", "postgres", "").await;
        let rows = admin.simple_query("SHOW CLIENTS").await.unwrap();
        let clients_shown = rows
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        assert!(clients_shown >= 3, "{clients_shown} clients shown");
        let err = p
            .try_connect(&db, "postgres", "")
            .await
            .expect_err("a client over the limit must still fail");
        assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err:?}");
        drop(admin);
        for (i, c) in clients.iter().enumerate() {
            still_works(c, i as i32).await;
        }
        // A freed slot is usable again.
        drop(clients.pop());
        let again = poll(100, Duration::from_millis(50), || async {
            p.try_connect(&db, "postgres", "").await.ok()
        })
        .await
        .expect("a client slot was not released");
        still_works(&again, 9).await;
    })
    .await
}

/// Connect and run one query; the error of whichever step failed.
async fn try_query(p: &TestPooler, db: &str) -> Result<(), tokio_postgres::Error> {
    let c = p.try_connect(db, "postgres", "").await?;
    c.simple_query("SELECT 1").await.map(|_| ())
}

#[tokio::test]
async fn postgres_unreachable_then_back() {
    bounded(async {
        let pg = tokio::task::spawn_blocking(PgCluster::dedicated)
            .await
            .unwrap();
        let port = pg.port();
        let p = PoolerBuilder::new()
            .set("server_connect_timeout", "3")
            .set("server_login_retry", "0.5")
            .database(
                "gone",
                &format!("host=127.0.0.1 port={port} dbname=postgres query_wait_timeout=2"),
            )
            .database(
                "patient",
                &format!("host=127.0.0.1 port={port} dbname=postgres query_wait_timeout=60"),
            )
            .start()
            .await;
        try_query(&p, "gone")
            .await
            .expect("works while PostgreSQL is up");
        let pg = tokio::task::spawn_blocking(move || {
            pg.stop();
            pg
        })
        .await
        .unwrap();

        // The client waits (the pool trying again after a backoff up to
        // server_login_retry) for query_wait_timeout, then gets the reason.
        let started = std::time::Instant::now();
        let err = try_query(&p, "gone").await.expect_err("PostgreSQL is down");
        assert!(started.elapsed() >= Duration::from_millis(1500), "{err:?}");
        assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err:?}");
        let msg = db_message(&err).unwrap();
        // Clear, but not where the server is (as PgBouncer: only the log
        // names it).
        assert!(msg.starts_with("could not connect to server: "), "{msg}");
        assert!(
            !msg.contains("127.0.0.1") && !msg.contains(&port.to_string()),
            "the error must not name the server: {msg}"
        );

        // A client that comes while it is down waits, and is served once
        // it is back, with no error.
        let cfg = p.config("patient", "postgres", "");
        let waiting = tokio::spawn(async move {
            let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            c.simple_query("SELECT 1").await.map(|_| ())
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !waiting.is_finished(),
            "the client was failed: {:?}",
            waiting.await
        );
        let pg = tokio::task::spawn_blocking(move || {
            pg.start();
            pg
        })
        .await
        .unwrap();
        waiting
            .await
            .unwrap()
            .expect("served once PostgreSQL was back");
        let back = poll(60, Duration::from_millis(500), || async {
            try_query(&p, "gone").await.ok()
        })
        .await;
        assert!(
            back.is_some(),
            "pooler did not recover after PostgreSQL came back"
        );
        drop(pg);
    })
    .await
}

/// A `replication` value that is neither a boolean nor `database` gets
/// PostgreSQL's error (replication connections themselves:
/// tests/it/replication.rs).
#[tokio::test]
async fn a_bad_replication_value_is_refused_clearly() {
    bounded(async {
        let (p, db) = setup(&[]).await;
        for value in ["maybe", "", "Database"] {
            let mut s = p.raw_connect().await;
            let packet = wire::startup_with_version(
                196_608,
                &[
                    ("user", "postgres"),
                    ("database", &db),
                    ("replication", value),
                ],
            );
            wire::send(&mut s, &packet).await.unwrap();
            let e = closed_with(&mut s).await.expect("an ErrorResponse");
            let f = e.fields();
            assert_eq!(f.get(&b'C').map(String::as_str), Some("22023"), "{f:?}");
            assert!(f[&b'M'].contains("\"replication\""), "{f:?}");
        }
        // replication=false is an ordinary connection.
        let mut s = p.raw_connect().await;
        let packet = wire::startup_with_version(
            196_608,
            &[
                ("user", "postgres"),
                ("database", &db),
                ("replication", "false"),
            ],
        );
        wire::send(&mut s, &packet).await.unwrap();
        let msgs = wire::read_until_ready(&mut s).await.expect("a session");
        assert!(msgs.iter().any(|m| m.tag == b'Z'));
    })
    .await
}
