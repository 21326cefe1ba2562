//! Test support shared by the integration tests: a real PostgreSQL cluster
//! (`pg`), pgsluice started in-process (`pooler`), raw protocol helpers
//! (`wire`). Each test binary includes this module with `mod support;` and
//! uses what it needs, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod pg;
pub mod pooler;
pub mod wire;

pub use pg::{Encryption, PgCluster, tool};
pub use pooler::{PoolerBuilder, TestPooler, db_message, sqlstate};

use std::sync::atomic::{AtomicU32, Ordering};

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
