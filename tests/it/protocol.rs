//! The startup family at the wire level: SSLRequest / GSSENCRequest answered
//! 'N', protocol 3.1 negotiated down to 3.0, protocol 4.0 refused, and what a
//! login answer contains.

use crate::support;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded, unique, wire};

async fn pooler() -> (TestPooler, String) {
    let pg = PgCluster::shared();
    let db = unique("proto_db");
    pg.create_db(&db).await;
    let p = PoolerBuilder::new()
        .pg_database(pg, &db, "pool_size=2")
        .start()
        .await;
    (p, db)
}

#[tokio::test]
async fn ssl_and_gssenc_requests_get_n() {
    bounded(async {
        let (p, db) = pooler().await;
        for (name, req) in [
            ("ssl", wire::ssl_request()),
            ("gssenc", wire::gssenc_request()),
        ] {
            let mut s = p.raw_connect().await;
            wire::send(&mut s, &req).await.unwrap();
            assert_eq!(wire::read_byte(&mut s).await.unwrap(), b'N', "{name}");
            // The same connection goes on with a plain StartupMessage.
            wire::login_trust(&mut s, "postgres", &db).await;
            let rows = wire::simple_query(&mut s, "SELECT 'after ' || $$1$$")
                .await
                .unwrap();
            assert_eq!(rows, vec![Some("after 1".into())], "{name}");
        }
        // Both, one after the other, as libpq does with gssencmode=prefer.
        let mut s = p.raw_connect().await;
        wire::send(&mut s, &wire::gssenc_request()).await.unwrap();
        assert_eq!(wire::read_byte(&mut s).await.unwrap(), b'N');
        wire::send(&mut s, &wire::ssl_request()).await.unwrap();
        assert_eq!(wire::read_byte(&mut s).await.unwrap(), b'N');
        wire::login_trust(&mut s, "postgres", &db).await;
    })
    .await
}

#[tokio::test]
async fn login_answer_has_parameters_and_key() {
    bounded(async {
        let (p, db) = pooler().await;
        let mut s = p.raw_connect().await;
        let msgs = wire::login_trust(&mut s, "postgres", &db).await;
        let params: std::collections::HashMap<String, String> = msgs
            .iter()
            .filter(|m| m.tag == b'S')
            .map(|m| m.parameter())
            .collect();
        for name in [
            "server_version",
            "server_encoding",
            "client_encoding",
            "DateStyle",
            "TimeZone",
            "integer_datetimes",
            "standard_conforming_strings",
        ] {
            assert!(
                params.contains_key(name),
                "ParameterStatus {name} missing: {params:?}"
            );
        }
        assert_eq!(params["server_encoding"], "UTF8");
        assert_eq!(params["integer_datetimes"], "on");
        assert_eq!(params["standard_conforming_strings"], "on");
        assert!(
            params["server_version"].starts_with(char::is_numeric),
            "{params:?}"
        );
        let keys: Vec<_> = msgs.iter().filter(|m| m.tag == b'K').collect();
        assert_eq!(keys.len(), 1, "exactly one BackendKeyData: {msgs:?}");
        assert_eq!(keys[0].body.len(), 8);
        let last = msgs.last().unwrap();
        assert_eq!((last.tag, last.body.as_slice()), (b'Z', &b"I"[..]));

        // The key is the pooler's own: not the pid of any backend.
        let pid = keys[0].int32(0);
        let direct = PgCluster::shared()
            .direct_client("postgres", "postgres")
            .await;
        let n: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "BackendKeyData carries a real backend pid");
        // Two clients get different keys.
        let mut s2 = p.raw_connect().await;
        let msgs2 = wire::login_trust(&mut s2, "postgres", &db).await;
        let k2 = msgs2.iter().find(|m| m.tag == b'K').unwrap();
        assert_ne!(k2.body, keys[0].body);
    })
    .await
}

#[tokio::test]
async fn protocol_3_1_is_negotiated_down() {
    bounded(async {
        let (p, db) = pooler().await;
        let mut s = p.raw_connect().await;
        let v31 = (3 << 16) | 1;
        let startup = wire::startup_with_version(
            v31,
            &[
                ("user", "postgres"),
                ("database", &db),
                ("_pq_.unknown_ext", "x"),
            ],
        );
        wire::send(&mut s, &startup).await.unwrap();
        let msgs = wire::read_until_ready(&mut s).await.unwrap();
        assert!(msgs.iter().all(|m| m.tag != b'E'), "{msgs:?}");
        let v = msgs
            .iter()
            .find(|m| m.tag == b'v')
            .expect("NegotiateProtocolVersion");
        assert_eq!(v.int32(0), 0, "newest supported minor version of 3.x: 0");
        assert_eq!(v.int32(4), 1, "one unrecognized option");
        assert_eq!(&v.body[8..], b"_pq_.unknown_ext\0");
        assert!(msgs.iter().any(|m| m.tag == b'R' && m.int32(0) == 0));
        let rows = wire::simple_query(&mut s, "SELECT 31").await.unwrap();
        assert_eq!(rows, vec![Some("31".into())]);
    })
    .await
}

#[tokio::test]
async fn protocol_4_0_is_refused() {
    bounded(async {
        let (p, db) = pooler().await;
        let mut s = p.raw_connect().await;
        let startup =
            wire::startup_with_version(4 << 16, &[("user", "postgres"), ("database", &db)]);
        wire::send(&mut s, &startup).await.unwrap();
        let msgs = wire::read_to_close(&mut s).await.unwrap();
        let err = msgs.iter().find(|m| m.tag == b'E').expect("ErrorResponse");
        assert_eq!(err.sqlstate(), "0A000", "{:?}", err.fields());
        assert!(msgs.iter().all(|m| m.tag != b'Z'), "{msgs:?}");
    })
    .await
}

#[tokio::test]
async fn terminate_closes_cleanly() {
    bounded(async {
        let (p, db) = pooler().await;
        let mut s = p.raw_connect().await;
        wire::login_trust(&mut s, "postgres", &db).await;
        wire::send(&mut s, &wire::terminate()).await.unwrap();
        let rest = wire::read_to_close(&mut s).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    })
    .await
}
