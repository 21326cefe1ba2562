//! A pool's settings, resolved from the config when the pool is created:
//! the [databases] entry, the [users] entry of the pool's user and
//! [pgbouncer], with PgBouncer's precedence.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Database, Endpoint, General, LoadBalance, PoolMode, SessionAttrs};
use crate::server::{ServerCredentials, ServerTarget};

/// Settings of one pool. Durations of zero mean "off" unless noted.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Where and as whom to connect (`target.addr` is the first host).
    pub target: ServerTarget,
    /// The database entry's host list, in order (one host for most).
    pub hosts: Arc<Vec<Arc<Endpoint>>>,
    /// load_balance_hosts: how the host of a new connection is chosen.
    pub balance: LoadBalance,
    /// target_session_attrs: which hosts new connections may use.
    pub attrs: SessionAttrs,
    /// primary_wait_timeout: how long a new connection keeps trying when
    /// no host has the wanted role (only when `attrs` is not `any`).
    pub primary_wait: Duration,
    /// The secret to log in with (SCRAM keys may be added later).
    pub credentials: ServerCredentials,
    /// pool_size: server connections in normal use.
    pub size: usize,
    /// min_pool_size: connections kept open even when idle (capped at `size`).
    pub min_size: usize,
    /// reserve_pool_size: extra connections for clients that waited
    /// `reserve_timeout`.
    pub reserve_size: usize,
    /// reserve_pool_timeout.
    pub reserve_timeout: Duration,
    /// session, transaction or statement.
    pub mode: PoolMode,
    /// server_connect_timeout.
    pub connect_timeout: Duration,
    /// server_login_retry: after a failed login, new connections are not
    /// tried (and clients needing one fail at once) for this long.
    pub login_retry: Duration,
    /// query_wait_timeout.
    pub wait_timeout: Duration,
    /// server_reset_query.
    pub reset_query: String,
    /// server_reset_query_always.
    pub reset_query_always: bool,
    /// connect_query of the [databases] entry, run once per new server.
    pub connect_query: Option<String>,
    /// server_lifetime: unused servers older than this are closed.
    pub lifetime: Duration,
    /// server_idle_timeout: servers idle longer than this are closed.
    pub idle_timeout: Duration,
    /// server_check_delay: a server idle longer than this is checked with
    /// `check_query` before it is handed out (zero = always checked).
    pub check_delay: Duration,
    /// server_check_query; None = checks disabled ("" = the empty query).
    pub check_query: Option<String>,
    /// server_round_robin: reuse idle servers in turn instead of LIFO.
    pub round_robin: bool,
    /// query_timeout (for the pool's clients).
    pub query_timeout: Duration,
    /// idle_transaction_timeout (for the pool's clients).
    pub idle_transaction_timeout: Duration,
    /// transaction_timeout (for the pool's clients).
    pub transaction_timeout: Duration,
    /// client_idle_timeout (for the pool's clients).
    pub client_idle_timeout: Duration,
    /// max_prepared_statements (a RELOAD or SET applies to sessions that
    /// are already connected, from their next transaction).
    pub max_prepared: u32,
    /// max_db_connections of the pool's database (0 = no limit).
    pub max_db_connections: usize,
    /// max_user_connections of the pool's user (0 = no limit).
    pub max_user_connections: usize,
    /// max_db_client_connections of the pool's database (0 = no limit).
    pub max_db_client_connections: usize,
    /// max_user_client_connections of the pool's user (0 = no limit).
    pub max_user_client_connections: usize,
    /// The pool was made from the `*` entry: dropped after
    /// autodb_idle_timeout without use (zero = kept).
    pub autodb_idle_timeout: Option<Duration>,
    /// Read/write splitting: the database's read rotation, and its lag
    /// limits (max_standby_lag, max_standby_lag_bytes), for the pools of a
    /// database that splits (a standby pool never connects to a standby
    /// out of the rotation).
    pub rotation: Option<(Arc<crate::topology::Rotation>, (Duration, u64))>,
}

impl PoolSettings {
    /// Settings with [pgbouncer]'s defaults for `target`.
    #[cfg(test)]
    pub(crate) fn with_defaults(
        target: ServerTarget,
        credentials: ServerCredentials,
    ) -> PoolSettings {
        let g = General::defaults();
        let db = Database::new(&target.database);
        let mut s = Self::build(&g, &db, None, target);
        s.credentials = credentials;
        s
    }

    /// Resolve a pool's settings from its [databases] entry `db`, [users]
    /// and [pgbouncer]. `database` is the client-side database name,
    /// `pool_user` the user pgsluice logs in to PostgreSQL as, `endpoint`
    /// the first host (of `db.endpoints()`, as routing chose): new
    /// connections may go to any of the entry's hosts from there.
    pub(crate) fn resolve(
        cfg: &Config,
        db: &Database,
        (database, pool_user): (&str, &str),
        endpoint: &Endpoint,
    ) -> PoolSettings {
        let credentials = match (&db.password, cfg.userlist.get(pool_user)) {
            (Some(pw), _) => ServerCredentials::Password(pw.clone()),
            (None, Some(crate::auth::Secret::Plain(pw))) => ServerCredentials::Password(pw.clone()),
            (None, Some(crate::auth::Secret::Md5(s))) => ServerCredentials::Md5Secret(s.clone()),
            (None, Some(crate::auth::Secret::Scram(_))) => ServerCredentials::ScramVerifier,
            (None, None) => ServerCredentials::None,
        };
        let mut startup_params = Vec::new();
        for (name, v) in [
            ("client_encoding", &db.client_encoding),
            ("datestyle", &db.datestyle),
            ("timezone", &db.timezone),
            ("application_name", &db.application_name),
        ] {
            if let Some(v) = v {
                startup_params.push((name.to_string(), v.clone()));
            }
        }
        let target = ServerTarget {
            addr: Arc::new(endpoint.clone()),
            database: db.dbname.clone().unwrap_or_else(|| database.to_string()),
            user: pool_user.to_string(),
            startup_params,
            tls: cfg.tls.server.clone(),
            tcp: crate::transport::TcpOptions::from_general(&cfg.general),
        };
        let mut s = Self::build(&cfg.general, db, cfg.users.get(pool_user), target);
        s.credentials = credentials;
        // The host list from the chosen host on (routing chooses the first).
        let all = db.endpoints();
        let from = all.iter().position(|e| e == endpoint).unwrap_or(0);
        if all.len() > 1 {
            let mut hosts: Vec<Arc<Endpoint>> = Vec::with_capacity(all.len());
            hosts.push(s.target.addr.clone());
            hosts.extend(
                all.iter()
                    .cycle()
                    .skip(from + 1)
                    .take(all.len() - 1)
                    .map(|e| Arc::new(e.clone())),
            );
            s.hosts = Arc::new(hosts);
        }
        s
    }

    /// These settings for a pool serving `role` of a database with
    /// read/write splitting `split`: the primary pool's connections go to
    /// a host that takes writes, the standby pool's to a standby in the
    /// read rotation (or, with standby_fallback = primary, the primary
    /// when none answers).
    pub(crate) fn for_role(
        mut self,
        role: super::Role,
        split: &crate::config::Split,
        rotation: Arc<crate::topology::Rotation>,
    ) -> PoolSettings {
        use crate::config::Fallback;
        match role {
            super::Role::Any => return self,
            super::Role::Primary => {
                if self.attrs != SessionAttrs::Primary {
                    self.attrs = SessionAttrs::ReadWrite;
                }
            }
            super::Role::Standby => {
                self.attrs = match split.fallback {
                    Fallback::Primary => SessionAttrs::PreferStandby,
                    Fallback::Wait => SessionAttrs::Standby,
                };
            }
        }
        self.rotation = Some((rotation, (split.max_lag, split.max_lag_bytes)));
        self
    }

    fn build(
        g: &General,
        db: &Database,
        user: Option<&crate::config::UserSettings>,
        target: ServerTarget,
    ) -> PoolSettings {
        let n = |v: u32| v as usize;
        // As PgBouncer: the (pool's) user's pool_size and reserve_pool_size
        // come before the database's.
        let size = user
            .and_then(|u| u.pool_size)
            .or(db.pool_size)
            .unwrap_or(g.default_pool_size);
        let user_time = |f: fn(&crate::config::UserSettings) -> Option<Duration>,
                         global: Duration| {
            user.and_then(f).unwrap_or(global)
        };
        PoolSettings {
            rotation: None,
            hosts: Arc::new(vec![target.addr.clone()]),
            balance: LoadBalance::from_entry(db.load_balance_hosts.as_deref()),
            attrs: db.target_session_attrs.unwrap_or(g.target_session_attrs),
            primary_wait: db.primary_wait_timeout.unwrap_or(g.primary_wait_timeout),
            target,
            credentials: ServerCredentials::None,
            size: n(size).max(1),
            min_size: n(db.min_pool_size.unwrap_or(g.min_pool_size)),
            reserve_size: n(user
                .and_then(|u| u.reserve_pool_size)
                .or(db.reserve_pool_size)
                .unwrap_or(g.reserve_pool_size)),
            reserve_timeout: g.reserve_pool_timeout,
            mode: user
                .and_then(|u| u.pool_mode)
                .or(db.pool_mode)
                .unwrap_or(g.pool_mode),
            connect_timeout: g.server_connect_timeout,
            login_retry: g.server_login_retry,
            wait_timeout: user
                .and_then(|u| u.query_wait_timeout)
                .or(db.query_wait_timeout)
                .unwrap_or(g.query_wait_timeout),
            reset_query: g.server_reset_query.clone(),
            reset_query_always: g.server_reset_query_always,
            connect_query: db.connect_query.clone(),
            lifetime: db.server_lifetime.unwrap_or(g.server_lifetime),
            idle_timeout: g.server_idle_timeout,
            check_delay: g.server_check_delay,
            check_query: g.server_check_enabled.then(|| g.server_check_query.clone()),
            round_robin: g.server_round_robin,
            query_timeout: user_time(|u| u.query_timeout, g.query_timeout),
            idle_transaction_timeout: user_time(
                |u| u.idle_transaction_timeout,
                g.idle_transaction_timeout,
            ),
            transaction_timeout: user_time(|u| u.transaction_timeout, g.transaction_timeout),
            client_idle_timeout: user_time(|u| u.client_idle_timeout, g.client_idle_timeout),
            max_prepared: g.max_prepared_statements,
            max_db_connections: n(db.max_db_connections.unwrap_or(g.max_db_connections)),
            max_user_connections: n(user
                .and_then(|u| u.max_user_connections)
                .unwrap_or(g.max_user_connections)),
            max_db_client_connections: n(db
                .max_db_client_connections
                .unwrap_or(g.max_db_client_connections)),
            max_user_client_connections: n(user
                .and_then(|u| u.max_user_client_connections)
                .unwrap_or(g.max_user_client_connections)),
            autodb_idle_timeout: (db.name == "*").then_some(g.autodb_idle_timeout),
        }
    }
}

impl PoolSettings {
    /// Whether servers opened with `other` are the same as ones opened
    /// with these settings (same address, database, user, startup
    /// parameters, secret and connect_query).
    pub(crate) fn same_connection(&self, other: &PoolSettings) -> bool {
        use ServerCredentials as C;
        let same_secret = match (&self.credentials, &other.credentials) {
            (C::None, C::None) | (C::ScramVerifier, C::ScramVerifier) => true,
            (C::Password(a), C::Password(b)) | (C::Md5Secret(a), C::Md5Secret(b)) => a == b,
            (C::ScramKeys(_), C::ScramKeys(_)) => true,
            _ => false,
        };
        let (a, b) = (&self.target, &other.target);
        same_secret
            && self.hosts == other.hosts
            && self.attrs == other.attrs
            && a.database == b.database
            && a.user == b.user
            && a.startup_params == b.startup_params
            && self.connect_query == other.connect_query
            && a.tls.as_ref().map(|t| &t.settings) == b.tls.as_ref().map(|t| &t.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(ini: &str, database: &str, user: &str) -> PoolSettings {
        let cfg = crate::config::load_str(ini, std::path::Path::new("t.ini"))
            .unwrap()
            .config;
        let db = cfg.databases.lookup(database).unwrap().clone();
        PoolSettings::resolve(&cfg, &db, (database, user), &db.endpoints()[0])
    }

    #[test]
    fn precedence_of_database_user_and_global_settings() {
        let ini = "[databases]\n\
                   a = host=h pool_size=7 min_pool_size=2 reserve_pool_size=3 server_lifetime=9 max_db_connections=11\n\
                   b = host=h\n\
                   [users]\n\
                   u = pool_size=5 reserve_pool_size=4 pool_mode=statement max_user_connections=6 query_timeout=8 client_idle_timeout=12 idle_transaction_timeout=13\n\
                   [pgbouncer]\n\
                   auth_type=any\ndefault_pool_size=20\nmin_pool_size=1\nreserve_pool_size=1\nmax_db_connections=30\n";
        let a = resolve(ini, "a", "u");
        // The user's pool_size and reserve_pool_size first (PgBouncer's
        // pool_pool_size and pool_res_pool_size).
        assert_eq!((a.size, a.min_size, a.reserve_size), (5, 2, 4));
        let a_other = resolve(ini, "a", "v");
        assert_eq!((a_other.size, a_other.reserve_size), (7, 3));
        assert_eq!(a.lifetime, Duration::from_secs(9));
        assert_eq!(a.max_db_connections, 11);
        assert_eq!(a.mode, PoolMode::Statement);
        assert_eq!(a.max_user_connections, 6);
        assert_eq!(a.query_timeout, Duration::from_secs(8));
        assert_eq!(a.client_idle_timeout, Duration::from_secs(12));
        assert_eq!(a.idle_transaction_timeout, Duration::from_secs(13));
        let b = resolve(ini, "b", "u");
        assert_eq!((b.size, b.min_size, b.reserve_size), (5, 1, 4));
        assert_eq!(b.max_db_connections, 30);
        let other = resolve(ini, "b", "v");
        assert_eq!((other.size, other.reserve_size), (20, 1));
        assert_eq!(other.mode, PoolMode::Session);
        assert_eq!(other.query_timeout, Duration::ZERO);
        assert_eq!(other.autodb_idle_timeout, None);
    }

    #[test]
    fn fallback_entry_makes_autodb_pools() {
        let s = resolve(
            "[databases]\n* = host=h\n[pgbouncer]\nauth_type=any\nautodb_idle_timeout=5\n",
            "x",
            "u",
        );
        assert_eq!(s.autodb_idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.target.database, "x");
    }
}
