//! A 1 GiB COPY in and out through the pooler binary, streamed: the
//! pooler (its own process here, so that its memory is measured alone)
//! must never hold more than a small part of it.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, pin_mut};
use support::{PgCluster, PoolerBuilder, bounded_for, fresh_dbs, pg::free_port};

/// Bytes of each row's text value; a row line is this plus its number.
const VALUE: usize = 1000;
/// Rows for a little over 1 GiB of COPY data.
const ROWS: u64 = (1 << 30) / VALUE as u64 + 1;
/// The pooler's peak RSS must stay below this (its buffers are kilobytes;
/// the headroom is for the runtime and allocator, not for the data).
const MAX_RSS: u64 = 32 << 20;

fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb << 10
}

/// A row's value: deterministic, differs between rows.
fn value(n: u64) -> Vec<u8> {
    let c = b'a' + (n % 26) as u8;
    vec![c; VALUE]
}

#[tokio::test]
async fn one_gib_copy_in_and_out_is_streamed() {
    bounded_for(Duration::from_secs(600), async {
        let [db] = fresh_dbs(["copy_gib"]).await;
        let pg = PgCluster::shared();
        let direct = pg.direct_client(&db, "postgres").await;
        direct
            .batch_execute("CREATE UNLOGGED TABLE big (n int8, s text)")
            .await
            .unwrap();
        let port = free_port();
        let (_files, ini) = PoolerBuilder::new()
            .set("listen_port", &port.to_string())
            .set("pool_mode", "transaction")
            .pg_database(pg, &db, "pool_size=1")
            .write();
        let mut child = support::pooler::spawn_binary(&ini);
        let pid = child.id().unwrap();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(port)
            .dbname(&db)
            .user("postgres");
        let c = support::poll(100, Duration::from_millis(100), || async {
            cfg.connect(tokio_postgres::NoTls).await.ok()
        })
        .await
        .map(|(c, conn)| {
            tokio::spawn(conn);
            c
        })
        .expect("the pooler binary accepts connections");
        let before = vm_hwm(pid);

        // In: 64 KiB CopyData messages, generated as they are sent.
        let sink = c.copy_in("COPY big FROM STDIN").await.unwrap();
        pin_mut!(sink);
        let mut chunk = Vec::with_capacity(70_000);
        let mut sent = 0u64;
        for n in 0..ROWS {
            chunk.extend_from_slice(n.to_string().as_bytes());
            chunk.push(b'\t');
            chunk.extend_from_slice(&value(n));
            chunk.push(b'\n');
            if chunk.len() >= 64 << 10 {
                sent += chunk.len() as u64;
                sink.send(Bytes::from(std::mem::take(&mut chunk)))
                    .await
                    .unwrap();
                chunk.reserve(70_000);
            }
        }
        sent += chunk.len() as u64;
        sink.send(Bytes::from(chunk)).await.unwrap();
        assert_eq!(sink.finish().await.unwrap(), ROWS);
        assert!(sent > 1 << 30);
        let after_in = vm_hwm(pid);

        // Every row arrived intact.
        let row = direct
            .query_one(
                "SELECT count(*), sum(n)::int8, sum(length(s))::int8, \
                 count(*) FILTER (WHERE s <> repeat(chr(97 + (n % 26)::int), $1)) FROM big",
                &[&(VALUE as i32)],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0) as u64, ROWS);
        assert_eq!(row.get::<_, i64>(1) as u64, ROWS * (ROWS - 1) / 2);
        assert_eq!(row.get::<_, i64>(2) as u64, ROWS * VALUE as u64);
        assert_eq!(row.get::<_, i64>(3), 0, "rows with a wrong value");

        // Out: PostgreSQL sends one CopyData per row; each is checked.
        let stream = c.copy_out("COPY big TO STDOUT").await.unwrap();
        pin_mut!(stream);
        let (mut bytes, mut rows, mut bad) = (0u64, 0u64, 0u64);
        while let Some(part) = stream.next().await {
            let part = part.unwrap();
            bytes += part.len() as u64;
            let tab = part[..24].iter().position(|&x| x == b'\t').unwrap();
            let n: u64 = std::str::from_utf8(&part[..tab]).unwrap().parse().unwrap();
            let mut want = value(n);
            want.push(b'\n');
            if part[tab + 1..] != want[..] {
                bad += 1;
            }
            rows += 1;
        }
        assert_eq!((rows, bad, bytes), (ROWS, 0, sent));
        let after_out = vm_hwm(pid);

        // The pooler still serves, then its memory is checked.
        let one: i64 = c.query_one("SELECT 1::int8", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        eprintln!(
            "pooler VmHWM: {before} before, {after_in} after COPY in, {after_out} after COPY out"
        );
        assert!(
            after_in < MAX_RSS && after_out < MAX_RSS,
            "the pooler held the COPY in memory: VmHWM {before} -> {after_in} -> {after_out}"
        );
        drop(c);
        direct.batch_execute("DROP TABLE big").await.unwrap();
        child.kill().await.unwrap();
    })
    .await
}
