//! Ids of client and server connections: one counter for both, as
//! PgBouncer numbers every socket it holds (SHOW CLIENTS, SHOW SERVERS and
//! SHOW SOCKETS show them): a client that gets a new server sees ids n and
//! n + 1, and logs and the console agree on which connection came first.

use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// The id of a new client or server connection (never 0, never reused).
pub(crate) fn next_socket_id() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_increase() {
        let a = super::next_socket_id();
        let b = super::next_socket_id();
        assert!(a >= 1 && b > a);
    }
}
