//! Real drivers in other languages through the pooler in transaction mode,
//! 20 concurrent connections on a pool of 4 server connections: psycopg 3
//! (`prepare_threshold=0`, pipeline mode), asyncpg (statement cache,
//! explicit prepared statements), node-postgres (named queries) and pgjdbc
//! (`prepareThreshold=1`, batches); each also over TLS (`sslmode=verify-full`
//! against the test CA, pgsluice requiring TLS). Each
//! script checks every result itself and exits non-zero on the first wrong
//! one (tests/drivers/).
//!
//! The drivers come from committed pins, installed by `scripts/drivers.sh`
//! (run by scripts/test.sh, hence by CI). Missing drivers fail the test in
//! CI and skip it, with a note, elsewhere.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{PgCluster, PoolerBuilder, bounded_for, transaction_pooler};

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `path` if it exists; otherwise fail in CI, or None (skip) elsewhere.
pub(crate) fn installed(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} not installed ({}): run scripts/drivers.sh",
        path.display()
    );
    eprintln!("note: {what} not installed, skipping (run scripts/drivers.sh)");
    None
}

pub(crate) fn python() -> Option<PathBuf> {
    installed(
        repo().join("target/drivers/venv/bin/python"),
        "the Python driver virtualenv",
    )
}

pub(crate) fn node_modules() -> Option<PathBuf> {
    installed(
        repo().join("tests/drivers/node/node_modules/pg"),
        "node-postgres",
    )
}

/// node with node-postgres installed, if found (see [`installed`]).
pub(crate) fn node() -> Option<PathBuf> {
    node_modules()?;
    let node = support::pg::find_in_path("node");
    installed(node.unwrap_or_default(), "node (on PATH)")
}

/// java and pgjdbc's class path, if found (see [`installed`]). Java 11+
/// runs a single source file directly.
pub(crate) fn java() -> Option<(PathBuf, String)> {
    let jar = installed(
        PathBuf::from("/usr/share/java/postgresql.jar"),
        "pgjdbc (libpostgresql-jdbc-java)",
    )?;
    let java = support::pg::find_in_path("java");
    let java = installed(java.unwrap_or_default(), "java (on PATH)")?;
    Some((java, jar.to_str().unwrap().to_string()))
}

/// Run `program [args] script` against a fresh database behind a pool of 4 and
/// require success; its output is shown on failure. `tls`: pgsluice
/// requires TLS of its clients and the driver checks its certificate
/// (`sslmode=verify-full` against the test CA).
async fn run_script(prefix: &str, program: &Path, args: &[&str], script: &str, tls: bool) {
    bounded_for(Duration::from_secs(300), async {
        let (db, p) = if tls {
            let pg = PgCluster::shared();
            let db = support::unique(prefix);
            pg.create_db(&db).await;
            let b = PoolerBuilder::new().pg_database(pg, &db, "pool_size=4");
            (db, support::tls::require_client_tls(b).start().await)
        } else {
            transaction_pooler(prefix, "pool_size=4").await
        };
        let port = p.addr().port();
        let (host, query) = if tls {
            let ca = support::tls::shared().0.ca_file.display().to_string();
            ("localhost", format!("sslmode=verify-full&sslrootcert={ca}"))
        } else {
            ("127.0.0.1", String::new())
        };
        let dsn = format!("postgresql://postgres@{host}:{port}/{db}?{query}");
        let jdbc = format!("jdbc:postgresql://{host}:{port}/{db}?user=postgres&{query}");
        run_driver(program, args, script, (&dsn, &jdbc), (20, 40)).await;
        p.shutdown().await;
    })
    .await
}

/// Run `program [args] tests/drivers/script` with the pooler's `dsn` and
/// JDBC URL, `clients` and `rounds` in its environment, and require
/// success (its output is shown on failure).
pub(crate) async fn run_driver(
    program: &Path,
    args: &[&str],
    script: &str,
    (dsn, jdbc): (&str, &str),
    (clients, rounds): (u32, u32),
) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .arg(repo().join("tests/drivers").join(script))
        .env("PGSLUICE_DSN", dsn)
        .env("PGSLUICE_JDBC_URL", jdbc)
        .env("CLIENTS", clients.to_string())
        .env("ROUNDS", rounds.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{}", stdout.trim());
}

#[tokio::test]
async fn psycopg3_prepared_and_pipelined() {
    let Some(py) = python() else { return };
    run_script("psycopg", &py, &[], "python/psycopg_check.py", false).await;
}

#[tokio::test]
async fn psycopg3_over_tls() {
    let Some(py) = python() else { return };
    run_script("psycopg_tls", &py, &[], "python/psycopg_check.py", true).await;
}

#[tokio::test]
async fn asyncpg_statement_cache() {
    let Some(py) = python() else { return };
    run_script("asyncpg", &py, &[], "python/asyncpg_check.py", false).await;
}

#[tokio::test]
async fn asyncpg_over_tls() {
    let Some(py) = python() else { return };
    run_script("asyncpg_tls", &py, &[], "python/asyncpg_check.py", true).await;
}

#[tokio::test]
async fn node_postgres_named_queries() {
    let Some(node) = node() else { return };
    run_script("nodepg", &node, &[], "node/pg_check.js", false).await;
}

#[tokio::test]
async fn node_postgres_over_tls() {
    let Some(node) = node() else { return };
    run_script("nodepg_tls", &node, &[], "node/pg_check.js", true).await;
}

#[tokio::test]
async fn pgjdbc_server_prepared_statements() {
    let Some((java, cp)) = java() else { return };
    let cp = cp.as_str();
    run_script("jdbc", &java, &["-cp", cp], "java/JdbcCheck.java", false).await;
}

#[tokio::test]
async fn pgjdbc_over_tls() {
    let Some((java, cp)) = java() else { return };
    let cp = cp.as_str();
    run_script("jdbc_tls", &java, &["-cp", cp], "java/JdbcCheck.java", true).await;
}
