//! How a server connection ends.

/// How a server connection ends: why the pooler closed it (counted per
/// pool and reason for the metrics page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEnd {
    /// Older than server_lifetime.
    Lifetime,
    /// Idle longer than server_idle_timeout.
    IdleTimeout,
    /// Failed server_check_query.
    CheckFailed,
    /// Closed by PostgreSQL (or broken) while idle.
    Broken,
    /// An error, a client gone mid-transaction, a timeout, a failed reset.
    Error,
    /// RECONNECT, a reload that changed the connection, PAUSE, KILL.
    Admin,
    /// Closed to make room for another pool under a shared limit.
    Evicted,
    /// Its session was aborted (KILL) while it was in use.
    Aborted,
    /// Shutdown, or its pool was freed.
    Shutdown,
    /// A replication connection whose client left (never reused).
    Replication,
}

impl ServerEnd {
    /// Every reason, in label order.
    pub const ALL: [ServerEnd; 10] = [
        ServerEnd::Lifetime,
        ServerEnd::IdleTimeout,
        ServerEnd::CheckFailed,
        ServerEnd::Broken,
        ServerEnd::Error,
        ServerEnd::Admin,
        ServerEnd::Evicted,
        ServerEnd::Aborted,
        ServerEnd::Shutdown,
        ServerEnd::Replication,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ServerEnd::Lifetime => "lifetime",
            ServerEnd::IdleTimeout => "idle_timeout",
            ServerEnd::CheckFailed => "check_failed",
            ServerEnd::Broken => "broken",
            ServerEnd::Error => "error",
            ServerEnd::Admin => "admin",
            ServerEnd::Evicted => "evicted",
            ServerEnd::Aborted => "aborted",
            ServerEnd::Shutdown => "shutdown",
            ServerEnd::Replication => "replication",
        }
    }
}
