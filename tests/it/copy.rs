//! COPY through the pooler in transaction mode: FROM STDIN and TO STDOUT
//! with the extended protocol (tokio-postgres) and the simple one (psql),
//! CopyFail, an error in the middle of a COPY, and a 64 MB value; after
//! each, the server goes back to the pool clean and serves another client.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, pin_mut};
use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, fresh_dbs, tool, value as one};

async fn setup() -> (TestPooler, String) {
    let [db] = fresh_dbs(["copy"]).await;
    let direct = PgCluster::shared().direct_client(&db, "postgres").await;
    direct
        .batch_execute("CREATE TABLE t (n int, s text)")
        .await
        .unwrap();
    // A pool of one: every client after a COPY gets the same server.
    let p = PoolerBuilder::new()
        .pg_database(PgCluster::shared(), &db, "pool_size=1")
        .start()
        .await;
    (p, db)
}

const ROWS: usize = 100_000;

fn row(i: usize) -> String {
    format!("{i}\tvalue number {i}\n")
}

#[tokio::test]
async fn copy_in_and_out_with_the_extended_protocol() {
    bounded_for(Duration::from_secs(120), async {
        let (p, db) = setup().await;
        let c = p.connect(&db, "postgres", "").await;
        let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
        pin_mut!(sink);
        let mut chunk = String::new();
        for i in 0..ROWS {
            chunk.push_str(&row(i));
            if chunk.len() > 60_000 {
                sink.send(Bytes::from(std::mem::take(&mut chunk)))
                    .await
                    .unwrap();
            }
        }
        sink.send(Bytes::from(chunk)).await.unwrap();
        let n = sink.finish().await.unwrap();
        assert_eq!(n, ROWS as u64);
        // Out again, every row as written.
        let stream = c.copy_out("COPY t TO STDOUT").await.unwrap();
        pin_mut!(stream);
        let mut out = Vec::new();
        while let Some(part) = stream.next().await {
            out.extend_from_slice(&part.unwrap());
        }
        let want: String = (0..ROWS).map(row).collect();
        assert!(out == want.as_bytes(), "COPY TO STDOUT changed the data");
        // The server is clean for the next client.
        let other = p.connect(&db, "postgres", "").await;
        assert_eq!(
            one(&other, "SELECT count(*) FROM t").await,
            ROWS.to_string()
        );
    })
    .await
}

#[tokio::test]
async fn copy_fail_and_bad_data_leave_the_server_clean() {
    bounded_for(Duration::from_secs(120), async {
        let (p, db) = setup().await;
        let c = p.connect(&db, "postgres", "").await;
        // CopyFail: the sink is dropped without finishing.
        {
            let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
            pin_mut!(sink);
            sink.send(Bytes::from_static(b"1\tone\n")).await.unwrap();
        }
        assert_eq!(one(&c, "SELECT count(*) FROM t").await, "0");
        // A bad row in the middle: an error, nothing copied.
        let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"1\tone\nnot a number\ttwo\n3\tthree\n"))
            .await
            .unwrap();
        let err = sink.finish().await.unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("22P02"), "{err:?}");
        assert_eq!(one(&c, "SELECT count(*) FROM t").await, "0");
        let other = p.connect(&db, "postgres", "").await;
        assert_eq!(one(&other, "SELECT 1").await, "1");
    })
    .await
}

#[tokio::test]
async fn a_64_mb_value_through_copy() {
    bounded_for(Duration::from_secs(240), async {
        let (p, db) = setup().await;
        let c = p.connect(&db, "postgres", "").await;
        const SIZE: usize = 64 << 20;
        let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"1\t")).await.unwrap();
        let piece: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
        for _ in 0..SIZE >> 20 {
            sink.send(Bytes::from(piece.clone())).await.unwrap();
        }
        sink.send(Bytes::from_static(b"\n")).await.unwrap();
        assert_eq!(sink.finish().await.unwrap(), 1);
        assert_eq!(
            one(&c, "SELECT length(s) FROM t WHERE n = 1").await,
            SIZE.to_string()
        );
        let stream = c
            .copy_out("COPY (SELECT s FROM t) TO STDOUT")
            .await
            .unwrap();
        pin_mut!(stream);
        let mut got = 0usize;
        let mut ok = true;
        while let Some(part) = stream.next().await {
            let part = part.unwrap();
            for (i, b) in part.iter().enumerate() {
                let pos = got + i;
                let want = if pos == SIZE {
                    b'\n'
                } else {
                    b'a' + (pos % (1 << 20) % 26) as u8
                };
                ok &= *b == want;
            }
            got += part.len();
        }
        assert_eq!(got, SIZE + 1);
        assert!(ok, "the 64 MB value changed on the way");
    })
    .await
}

#[tokio::test]
async fn psql_copy_with_the_simple_protocol() {
    bounded_for(Duration::from_secs(120), async {
        let (p, db) = setup().await;
        let psql = tool("psql").expect("psql (installed by scripts/test.sh)");
        let port = p.addr().port().to_string();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rows.tsv");
        let data: String = (0..10_000).map(row).collect();
        std::fs::write(&file, &data).unwrap();
        let run = |script: String| {
            let (psql, port, db) = (psql.clone(), port.clone(), db.clone());
            async move {
                let out = tokio::process::Command::new(psql)
                    .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
                    .args(["-p", &port, "-U", "postgres", "-d", &db, "-c", &script])
                    .output()
                    .await
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                String::from_utf8(out.stdout).unwrap()
            }
        };
        let copied = run(format!("\\copy t FROM '{}'", file.display())).await;
        assert!(copied.contains("COPY 10000"), "{copied}");
        let back = dir.path().join("back.tsv");
        run(format!("\\copy t TO '{}'", back.display())).await;
        assert_eq!(std::fs::read_to_string(&back).unwrap(), data);
        let c = p.connect(&db, "postgres", "").await;
        assert_eq!(one(&c, "SELECT count(*) FROM t").await, "10000");
    })
    .await
}
