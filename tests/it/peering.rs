//! Peering (`peer_id`, `[peers]`, `so_reuseport`): two poolers listen on
//! one TCP port; a cancel request that reaches the process that did not
//! give out the key is forwarded to the one that did, over its Unix
//! socket, as PgBouncer's peers do.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::wire;
use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, pg::free_port, unique};
use tokio::net::UnixStream;

/// A pooler with `peer_id` = `id` on `port` (shared, so_reuseport), its
/// Unix socket in `dir`, and both peers' sockets in `[peers]`.
async fn peer(
    pg: &PgCluster,
    db: &str,
    (id, dir): (u16, &Path),
    port: u16,
    peers: &[(u16, &Path)],
) -> TestPooler {
    let mut b = PoolerBuilder::new()
        .set("listen_port", &port.to_string())
        .set("unix_socket_dir", &dir.display().to_string())
        .set("so_reuseport", "1")
        .set("peer_id", &id.to_string())
        .pg_database(pg, db, "pool_size=2")
        .raw_line("[peers]");
    for (other, dir) in peers {
        b = b.raw_line(&format!("{other} = host={} port={port}", dir.display()));
    }
    b.start().await
}

fn socket(dir: &Path, port: u16) -> std::path::PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// The CancelRequest for (`pid`, `secret`).
fn cancel_request(pid: i32, secret: i32) -> Vec<u8> {
    let mut body = 80_877_102i32.to_be_bytes().to_vec();
    body.extend(pid.to_be_bytes());
    body.extend(secret.to_be_bytes());
    wire::untagged(&body)
}

#[tokio::test]
async fn a_cancel_request_reaching_the_other_peer_is_forwarded() {
    bounded_for(Duration::from_secs(120), async {
        let pg = PgCluster::shared();
        let db = unique("peer_db");
        pg.create_db(&db).await;
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let port = free_port();
        let peers = [(1, d1.path()), (2, d2.path())];
        // Both bind the same TCP port (so_reuseport), each its own socket.
        let p1 = peer(pg, &db, (1, d1.path()), port, &peers).await;
        let p2 = peer(pg, &db, (2, d2.path()), port, &peers).await;
        assert_eq!(p1.addr().port(), p2.addr().port());

        // A client of peer 1 (its own Unix socket), its key from peer 1.
        let mut c = UnixStream::connect(socket(d1.path(), port)).await.unwrap();
        let login = wire::login_trust(&mut c, "postgres", &db).await;
        let k = login
            .iter()
            .find(|m| m.tag == b'K')
            .expect("BackendKeyData");
        let (pid, secret) = (k.int32(0), k.int32(4));
        assert_eq!(
            pid.to_be_bytes()[1..3],
            [1, 0],
            "peer id 1 in the key: {pid:#x}"
        );
        assert_eq!(secret & 3, 3, "a full TTL in the key: {secret:#x}");

        // The cancel goes to peer 2, which forwards it to peer 1.
        wire::send(&mut c, &wire::query("SELECT pg_sleep(60)"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut cancel = UnixStream::connect(socket(d2.path(), port)).await.unwrap();
        wire::send(&mut cancel, &cancel_request(pid, secret))
            .await
            .unwrap();
        let answer = wire::read_until_ready(&mut c).await.unwrap();
        let err = answer
            .iter()
            .find(|m| m.tag == b'E')
            .expect("the query was canceled");
        assert_eq!(err.sqlstate(), "57014", "{answer:?}");
        // The session goes on.
        assert_eq!(
            wire::simple_query(&mut c, "SELECT 1").await.unwrap(),
            vec![Some("1".to_string())]
        );

        // A key naming a peer that is not in [peers], or with no forward
        // left, is not forwarded: the query runs to its end.
        wire::send(&mut c, &wire::query("SELECT pg_sleep(1)"))
            .await
            .unwrap();
        let stranger = (pid & !0x00ff_ff00) | (9 << 16);
        for (p, s) in [(stranger, secret), (pid, secret & !3)] {
            let mut cancel = UnixStream::connect(socket(d2.path(), port)).await.unwrap();
            wire::send(&mut cancel, &cancel_request(p, s))
                .await
                .unwrap();
        }
        let answer = wire::read_until_ready(&mut c).await.unwrap();
        assert!(answer.iter().all(|m| m.tag != b'E'), "{answer:?}");
        p1.shutdown().await;
        p2.shutdown().await;
    })
    .await;
}
