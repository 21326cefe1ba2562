//! Test support shared by the integration tests: a real PostgreSQL cluster
//! (`pg`), pgsluice started in-process on shard runtimes of its own
//! (`pooler`), raw protocol helpers (`wire`). Not every helper is used by
//! every test, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod ldap;
pub mod nft;
pub mod pg;
pub mod pooler;
pub mod tls;
pub mod wire;

#[allow(unused_imports)]
pub use pg::{Encryption, PgCluster, ident, literal, tool};
#[allow(unused_imports)]
pub use pooler::{PoolerBuilder, TestPooler, db_message, sqlstate};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Raise this process's soft RLIMIT_NOFILE to its hard limit (once) and
/// return it. All the integration tests run in one process, in parallel,
/// and a few of them hold over a thousand sockets each (stress, idle), so
/// the usual soft limit of 1024 would make the others fail with EMFILE.
/// Called when a cluster or a pooler is set up.
pub fn raise_nofile_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE to its hard limit")
    })
}

/// A name unique within this test process, for databases and roles.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Poll `check` up to `tries` times, `every` apart, until it returns Some.
pub async fn poll<T, F, Fut>(tries: u32, every: std::time::Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(every).await;
    }
    None
}

/// Run a test body with an upper bound on its run time, so that a hung
/// pooler fails the test instead of hanging the suite.
pub async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    bounded_for(std::time::Duration::from_secs(120), fut).await
}

/// [`bounded`] with an explicit limit.
pub async fn bounded_for<T>(
    limit: std::time::Duration,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
}

/// `md5` + hex(md5(password || user)), the auth_file / pg_authid md5 form.
pub fn md5_secret(user: &str, password: &str) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(format!("{password}{user}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("md5{hex}")
}

/// First column of every row of a simple-query answer (NULL as "NULL").
pub fn rows_col0(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(r.get(0).unwrap_or("NULL").to_string())
            }
            _ => None,
        })
        .collect()
}

/// Run a simple query and return the first column of its first row.
pub async fn value(c: &tokio_postgres::Client, sql: &str) -> String {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    rows_col0(&msgs)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// A fresh database on the shared cluster and a transaction-mode pooler in
/// front of it; `extra` goes into its [databases] entry (e.g. "pool_size=2").
#[allow(dead_code)]
pub async fn transaction_pooler(prefix: &str, extra: &str) -> (String, TestPooler) {
    transaction_pooler_sharded(prefix, extra, 1).await
}

/// [`transaction_pooler`] serving on `shards` runtimes (as the binary).
#[allow(dead_code)]
pub async fn transaction_pooler_sharded(
    prefix: &str,
    extra: &str,
    shards: usize,
) -> (String, TestPooler) {
    let pg = PgCluster::shared();
    let db = unique(prefix);
    pg.create_db(&db).await;
    let pooler = PoolerBuilder::new()
        .set("pool_mode", "transaction")
        .pg_database(pg, &db, extra)
        .start_sharded(shards)
        .await;
    (db, pooler)
}

/// Client backends PostgreSQL has in `db` (as `user`, if given), counted
/// on the shared cluster directly.
pub async fn backends(db: &str, user: Option<&str>) -> i64 {
    let direct = PgCluster::shared()
        .direct_client("postgres", "postgres")
        .await;
    direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
             AND backend_type = 'client backend' AND ($2::text IS NULL OR usename = $2)",
            &[&db, &user],
        )
        .await
        .unwrap()
        .get(0)
}

/// Wait up to 10 s until `db` has exactly `n` backends (as `user`).
pub async fn backends_settle(db: &str, user: Option<&str>, n: i64) -> bool {
    poll(100, std::time::Duration::from_millis(100), || async {
        (backends(db, user).await == n).then_some(())
    })
    .await
    .is_some()
}

/// Fresh databases on the shared cluster, one per prefix.
pub async fn fresh_dbs<const N: usize>(prefixes: [&str; N]) -> [String; N] {
    let names = prefixes.map(unique);
    for d in &names {
        PgCluster::shared().create_db(d).await;
    }
    names
}

/// A fresh database initialised with `pgbench -i -s 1` on the shared
/// cluster; returns its name and the pgbench binary (found, never skipped:
/// scripts/test.sh installs it).
pub async fn pgbench_db(prefix: &str) -> (String, std::path::PathBuf) {
    let pg = PgCluster::shared();
    let [db] = fresh_dbs([prefix]).await;
    let pgbench = tool("pgbench").expect("pgbench (installed by scripts/test.sh)");
    let init = tokio::process::Command::new(&pgbench)
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1"])
        .args(["-p", &pg.port().to_string(), "-U", "postgres", &db])
        .output()
        .await
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    (db, pgbench)
}
