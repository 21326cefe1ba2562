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

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `path` if it exists; otherwise fail in CI, or None (skip) elsewhere.
fn installed(path: PathBuf, what: &str) -> Option<PathBuf> {
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

fn python() -> Option<PathBuf> {
    installed(
        repo().join("target/drivers/venv/bin/python"),
        "the Python driver virtualenv",
    )
}

fn node_modules() -> Option<PathBuf> {
    installed(
        repo().join("tests/drivers/node/node_modules/pg"),
        "node-postgres",
    )
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
        let out = tokio::process::Command::new(program)
            .args(args)
            .arg(repo().join("tests/drivers").join(script))
            .env("PGSLUICE_DSN", &dsn)
            .env(
                "PGSLUICE_JDBC_URL",
                format!("jdbc:postgresql://{host}:{port}/{db}?user=postgres&{query}"),
            )
            .env("CLIENTS", "20")
            .env("ROUNDS", "40")
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
        p.shutdown().await;
    })
    .await
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
    if node_modules().is_none() {
        return;
    }
    let node = support::pg::find_in_path("node");
    let Some(node) = installed(node.unwrap_or_default(), "node (on PATH)") else {
        return;
    };
    run_script("nodepg", &node, &[], "node/pg_check.js", false).await;
}

#[tokio::test]
async fn node_postgres_over_tls() {
    if node_modules().is_none() {
        return;
    }
    let node = support::pg::find_in_path("node");
    let Some(node) = installed(node.unwrap_or_default(), "node (on PATH)") else {
        return;
    };
    run_script("nodepg_tls", &node, &[], "node/pg_check.js", true).await;
}

#[tokio::test]
async fn pgjdbc_server_prepared_statements() {
    let Some(jar) = installed(
        PathBuf::from("/usr/share/java/postgresql.jar"),
        "pgjdbc (libpostgresql-jdbc-java)",
    ) else {
        return;
    };
    let java = support::pg::find_in_path("java");
    let Some(java) = installed(java.unwrap_or_default(), "java (on PATH)") else {
        return;
    };
    // Java 11+ runs a single source file directly.
    let cp = jar.to_str().unwrap();
    run_script("jdbc", &java, &["-cp", cp], "java/JdbcCheck.java", false).await;
}

#[tokio::test]
async fn pgjdbc_over_tls() {
    let Some(jar) = installed(
        PathBuf::from("/usr/share/java/postgresql.jar"),
        "pgjdbc (libpostgresql-jdbc-java)",
    ) else {
        return;
    };
    let java = support::pg::find_in_path("java");
    let Some(java) = installed(java.unwrap_or_default(), "java (on PATH)") else {
        return;
    };
    let cp = jar.to_str().unwrap();
    run_script("jdbc_tls", &java, &["-cp", cp], "java/JdbcCheck.java", true).await;
}
