//! The typed `[pgbouncer]` section: [`General`] with PgBouncer's defaults,
//! built from the typed [`Values`], and the [`Setting`] rows SHOW CONFIG
//! will print. Parsing and type checking live in `settings.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::settings::{KEYS, Values};
use super::{AuthType, PoolMode};

/// The `[pgbouncer]` section, typed. Field comments give PgBouncer's defaults.
#[derive(Debug, Clone)]
pub struct General {
    /// Addresses to listen on (comma list, trimmed); empty = Unix socket only; `*` = all.
    pub listen_addr: Vec<String>,
    /// TCP port, also used in the Unix socket's name (6432).
    pub listen_port: u16,
    /// Unix socket directory ("/tmp"); empty = no Unix socket.
    pub unix_socket_dir: String,
    /// Unix socket file mode (0o777).
    pub unix_socket_mode: u32,
    /// Unix socket group ("" = unchanged).
    pub unix_socket_group: String,
    /// Client authentication method (md5).
    pub auth_type: AuthType,
    /// The auth_file (userlist.txt). Used as written: a relative path is
    /// relative to the current working directory, as in PgBouncer.
    pub auth_file: Option<PathBuf>,
    /// Who runs auth_query for users missing from auth_file (not set:
    /// no lookups).
    pub auth_user: Option<String>,
    /// The query that finds a user's secret (PgBouncer's default reads
    /// pg_authid).
    pub auth_query: std::sync::Arc<str>,
    /// The [databases] entry auth_query runs in (not set: the client's).
    pub auth_dbname: Option<String>,
    /// A secret auth_query found is reused by later logins of the user
    /// (looked up again before a failed check refuses), and logins share
    /// a lookup in flight (on; a pgsluice extension, see `pool::lookups`).
    pub auth_query_cache: bool,
    /// How long a found secret is reused without a lookup (10 s; a
    /// pgsluice extension): bounds how long a dropped, expired or NOLOGIN
    /// role can still log in with its old password.
    pub auth_query_cache_ttl: Duration,
    /// auth_hba_file (auth_type hba).
    pub auth_hba_file: Option<PathBuf>,
    /// auth_ident_file (maps for peer and cert rules).
    pub auth_ident_file: Option<PathBuf>,
    /// auth_ldap_options (auth_type ldap).
    pub auth_ldap_options: String,
    /// Default pool mode (session).
    pub pool_mode: PoolMode,
    /// Maximum client connections (100).
    pub max_client_conn: u32,
    /// Server connections per (database, user) pool (20).
    pub default_pool_size: u32,
    /// Keep at least this many server connections per pool (0).
    pub min_pool_size: u32,
    /// Extra connections allowed after `reserve_pool_timeout` (0).
    pub reserve_pool_size: u32,
    /// Wait before using the reserve pool (5s).
    pub reserve_pool_timeout: Duration,
    /// Server connections per database, 0 = unlimited.
    pub max_db_connections: u32,
    /// Server connections per user, 0 = unlimited.
    pub max_user_connections: u32,
    /// Client connections per database, 0 = unlimited.
    pub max_db_client_connections: u32,
    /// Client connections per user, 0 = unlimited.
    pub max_user_client_connections: u32,
    /// Drop pools made from the `*` entry after this long unused (3600s).
    pub autodb_idle_timeout: Duration,
    /// Reuse idle servers round-robin instead of LIFO (false).
    pub server_round_robin: bool,
    /// Run on server release ("DISCARD ALL"; session mode only unless `server_reset_query_always`).
    pub server_reset_query: String,
    /// Run `server_reset_query` in every pool mode (false).
    pub server_reset_query_always: bool,
    /// Reuse a released server without a check within this time (30s).
    pub server_check_delay: Duration,
    /// The check query; "" means the empty query (PgBouncer's `<empty>`).
    pub server_check_query: String,
    /// False when `server_check_query` was set to "" (checks disabled).
    pub server_check_enabled: bool,
    /// Close unused servers older than this (3600s).
    pub server_lifetime: Duration,
    /// Close servers idle longer than this (600s).
    pub server_idle_timeout: Duration,
    /// Connect and login deadline for a server (15s).
    pub server_connect_timeout: Duration,
    /// Wait after a failed server login before retrying (15s).
    pub server_login_retry: Duration,
    /// Client login deadline (60s).
    pub client_login_timeout: Duration,
    /// Cancel queries running longer than this, 0 = off.
    pub query_timeout: Duration,
    /// Disconnect clients waiting longer than this for a server (120s), 0 = off.
    pub query_wait_timeout: Duration,
    /// Tell a client waiting longer than this for a server that it is
    /// queued (a NOTICE, once per wait; 5s), 0 = off.
    pub query_wait_notify: Duration,
    /// pgsluice extension: which hosts of a host list new server
    /// connections go to (libpq's values; `any`).
    pub target_session_attrs: super::SessionAttrs,
    /// pgsluice extension: how long a client waits for a host with the
    /// wanted role when none is up (30 s).
    pub primary_wait_timeout: Duration,
    /// pgsluice extension: the health checker's period (1 s; zero = off).
    pub host_check_period: Duration,
    /// pgsluice extension: read/write splitting (`config::split`).
    pub split: super::Split,
    /// Disconnect idle clients after this, 0 = off.
    pub client_idle_timeout: Duration,
    /// Disconnect clients idle in a transaction this long, 0 = off.
    pub idle_transaction_timeout: Duration,
    /// Close a client whose transaction has been open longer than this
    /// (its server too: the transaction rolls back), 0 = off.
    pub transaction_timeout: Duration,
    /// Give up on a waiting cancel request after this (10s).
    pub cancel_wait_timeout: Duration,
    /// SUSPEND buffer flush deadline (10s).
    pub suspend_timeout: Duration,
    /// Largest protocol message allowed through (2147483647).
    pub max_packet_size: u32,
    /// Packet buffer size (4096).
    pub pkt_buf: u32,
    /// listen(2) backlog (128).
    pub listen_backlog: u32,
    /// Enable TCP keepalive (true).
    pub tcp_keepalive: bool,
    /// TCP_KEEPIDLE seconds, 0: the kernel's (`transport::TcpOptions`).
    pub tcp_keepidle: u32,
    /// TCP_KEEPINTVL seconds, 0: the kernel's.
    pub tcp_keepintvl: u32,
    /// TCP_KEEPCNT, 0: the kernel's.
    pub tcp_keepcnt: u32,
    /// TCP_USER_TIMEOUT milliseconds, 0: the kernel's.
    pub tcp_user_timeout: u32,
    /// Set SO_REUSEPORT on listeners (false): other processes may listen
    /// on the same port.
    pub so_reuseport: bool,
    /// This process's id among its peers (`[peers]`); 0: no peering.
    pub peer_id: u16,
    /// server_fast_close: in session mode, a server marked by RECONNECT
    /// (or a reload that changed its database) is closed at its session's
    /// next transaction boundary, the client with it, instead of at the
    /// session's end.
    pub server_fast_close: bool,
    /// `user`: the OS user to switch to at startup (the `-u` option wins);
    /// None: stay.
    pub user: Option<String>,
    /// Log file; None = stderr only.
    pub logfile: Option<PathBuf>,
    /// PID file; None = none written.
    pub pidfile: Option<PathBuf>,
    /// Users allowed every admin console command.
    pub admin_users: Vec<String>,
    /// Users allowed the admin console's SHOW commands.
    pub stats_users: Vec<String>,
    /// Startup parameters to ignore instead of refusing the client.
    pub ignore_startup_parameters: Vec<String>,
    /// Parameters tracked besides the built-in ones (["IntervalStyle"]).
    pub track_extra_parameters: Vec<String>,
    /// Append the client's address to application_name (false).
    pub application_name_add_host: bool,
    /// Log logins (true).
    pub log_connections: bool,
    /// Log disconnections (true).
    pub log_disconnections: bool,
    /// Log errors sent to clients (true).
    pub log_pooler_errors: bool,
    /// Log stats every `stats_period` (true).
    pub log_stats: bool,
    /// Verbosity (0).
    pub verbose: u32,
    /// Stats averaging period (60s).
    pub stats_period: Duration,
    /// Prepared statements tracked per server (200), 0 = off.
    pub max_prepared_statements: u32,
    /// pgsluice extension: `host:port` of the Prometheus endpoint; None = off.
    pub metrics_listen_addr: Option<String>,
    /// pgsluice extension: log lines as JSON objects (`log_format = json`)
    /// instead of text (false).
    pub log_json: bool,
    /// Every known key with its effective value, in SHOW CONFIG order.
    pub settings: Vec<Setting>,
}

/// One row of SHOW CONFIG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key.
    pub key: &'static str,
    /// The effective value as text.
    pub value: String,
    /// PgBouncer's default as text.
    pub default: &'static str,
    /// Whether it can change at run time, as in PgBouncer's SHOW CONFIG.
    pub changeable: bool,
}

impl General {
    /// PgBouncer's defaults, for building a configuration in code.
    pub fn defaults() -> General {
        let mut errors = Vec::new();
        let values = Values::resolve(&Default::default(), &mut errors, &mut Vec::new());
        General::from_values(&values, Path::new(""))
    }

    /// Builds the section from typed values; `file` is the main config file
    /// (the value of `conffile`).
    pub(crate) fn from_values(v: &Values, file: &Path) -> General {
        let opt_path = |k: &str| Some(v.str(k)).filter(|s| !s.is_empty()).map(PathBuf::from);
        let check = v.str("server_check_query");
        General {
            listen_addr: list(v.str("listen_addr")),
            listen_port: u16::try_from(v.int("listen_port")).unwrap_or(6432),
            unix_socket_dir: v.str("unix_socket_dir").to_string(),
            unix_socket_mode: v.u32("unix_socket_mode"),
            unix_socket_group: v.str("unix_socket_group").to_string(),
            auth_type: auth_type(v.str("auth_type")),
            auth_file: opt_path("auth_file"),
            auth_user: Some(v.str("auth_user"))
                .filter(|s| !s.is_empty())
                .map(String::from),
            auth_query: v.str("auth_query").into(),
            auth_dbname: Some(v.str("auth_dbname"))
                .filter(|s| !s.is_empty())
                .map(String::from),
            auth_query_cache: v.bool("auth_query_cache"),
            auth_query_cache_ttl: v.time("auth_query_cache_ttl"),
            auth_hba_file: opt_path("auth_hba_file"),
            auth_ident_file: opt_path("auth_ident_file"),
            auth_ldap_options: v.str("auth_ldap_options").to_string(),
            pool_mode: PoolMode::from_name(v.str("pool_mode")).unwrap_or(PoolMode::Session),
            max_client_conn: v.u32("max_client_conn"),
            default_pool_size: v.u32("default_pool_size"),
            min_pool_size: v.u32("min_pool_size"),
            reserve_pool_size: v.u32("reserve_pool_size"),
            reserve_pool_timeout: v.time("reserve_pool_timeout"),
            max_db_connections: v.u32("max_db_connections"),
            max_user_connections: v.u32("max_user_connections"),
            max_db_client_connections: v.u32("max_db_client_connections"),
            max_user_client_connections: v.u32("max_user_client_connections"),
            autodb_idle_timeout: v.time("autodb_idle_timeout"),
            server_round_robin: v.bool("server_round_robin"),
            server_reset_query: v.str("server_reset_query").to_string(),
            server_reset_query_always: v.bool("server_reset_query_always"),
            server_check_delay: v.time("server_check_delay"),
            server_check_query: if check == "<empty>" { "" } else { check }.to_string(),
            server_check_enabled: !check.is_empty(),
            server_lifetime: v.time("server_lifetime"),
            server_idle_timeout: v.time("server_idle_timeout"),
            server_connect_timeout: v.time("server_connect_timeout"),
            server_login_retry: v.time("server_login_retry"),
            client_login_timeout: v.time("client_login_timeout"),
            query_timeout: v.time("query_timeout"),
            query_wait_timeout: v.time("query_wait_timeout"),
            query_wait_notify: v.time("query_wait_notify"),
            target_session_attrs: super::SessionAttrs::from_name(v.str("target_session_attrs"))
                .unwrap_or_default(),
            primary_wait_timeout: v.time("primary_wait_timeout"),
            host_check_period: v.time("host_check_period"),
            split: super::Split::from_text(|k| {
                v.get(k)
                    .map(|x| x.text(super::keys::Kind::Str))
                    .unwrap_or_default()
            }),
            client_idle_timeout: v.time("client_idle_timeout"),
            idle_transaction_timeout: v.time("idle_transaction_timeout"),
            transaction_timeout: v.time("transaction_timeout"),
            cancel_wait_timeout: v.time("cancel_wait_timeout"),
            suspend_timeout: v.time("suspend_timeout"),
            max_packet_size: v.u32("max_packet_size"),
            pkt_buf: v.u32("pkt_buf"),
            listen_backlog: v.u32("listen_backlog"),
            tcp_keepalive: v.bool("tcp_keepalive"),
            tcp_keepidle: v.u32("tcp_keepidle"),
            tcp_keepintvl: v.u32("tcp_keepintvl"),
            tcp_keepcnt: v.u32("tcp_keepcnt"),
            tcp_user_timeout: v.u32("tcp_user_timeout"),
            so_reuseport: v.bool("so_reuseport"),
            peer_id: u16::try_from(v.int("peer_id")).unwrap_or(0),
            server_fast_close: v.bool("server_fast_close"),
            user: Some(v.str("user").trim().to_string()).filter(|u| !u.is_empty()),
            logfile: opt_path("logfile"),
            pidfile: opt_path("pidfile"),
            admin_users: list(v.str("admin_users")),
            stats_users: list(v.str("stats_users")),
            ignore_startup_parameters: list(v.str("ignore_startup_parameters")),
            track_extra_parameters: list(v.str("track_extra_parameters")),
            application_name_add_host: v.bool("application_name_add_host"),
            log_connections: v.bool("log_connections"),
            log_disconnections: v.bool("log_disconnections"),
            log_pooler_errors: v.bool("log_pooler_errors"),
            log_stats: v.bool("log_stats"),
            verbose: v.u32("verbose"),
            stats_period: Duration::from_secs(u64::try_from(v.int("stats_period")).unwrap_or(60)),
            max_prepared_statements: v.u32("max_prepared_statements"),
            metrics_listen_addr: Some(v.str("metrics_listen_addr").trim())
                .filter(|s| !s.is_empty())
                .map(String::from),
            log_json: v.str("log_format") == "json",
            settings: settings(v, file),
        }
    }
}

/// The SHOW CONFIG rows for `v`.
fn settings(v: &Values, file: &Path) -> Vec<Setting> {
    KEYS.iter()
        .map(|def| {
            let mut value = v
                .get(def.name)
                .map(|x| x.text(def.kind))
                .unwrap_or_default();
            if def.name == "conffile" && v.origin("conffile").is_none() {
                value = file.display().to_string();
            }
            Setting {
                key: def.name,
                value,
                default: def.default,
                changeable: def.changeable,
            }
        })
        .collect()
}

/// Splits a comma list, trimming items and dropping empty ones.
pub(crate) fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// Maps a canonical `auth_type` word.
fn auth_type(s: &str) -> AuthType {
    match s {
        "any" => AuthType::Any,
        "trust" => AuthType::Trust,
        "plain" => AuthType::Plain,
        "scram-sha-256" => AuthType::ScramSha256,
        "cert" => AuthType::Cert,
        "hba" => AuthType::Hba,
        "ldap" => AuthType::Ldap,
        "pam" => AuthType::Pam,
        _ => AuthType::Md5,
    }
}

#[cfg(test)]
mod tests {
    use super::super::settings::parse_value;
    use super::*;

    #[test]
    fn defaults_match_pgbouncer() {
        let g = General::defaults();
        assert!(g.listen_addr.is_empty());
        assert_eq!(g.listen_port, 6432);
        assert_eq!(g.unix_socket_dir, "/tmp");
        assert_eq!(g.unix_socket_mode, 0o777);
        assert_eq!(g.unix_socket_group, "");
        assert_eq!(g.auth_type, AuthType::Md5);
        assert_eq!(g.auth_file, None);
        assert_eq!(g.pool_mode, PoolMode::Session);
        assert_eq!((g.max_client_conn, g.default_pool_size), (100, 20));
        assert_eq!((g.min_pool_size, g.reserve_pool_size), (0, 0));
        assert_eq!(g.reserve_pool_timeout, Duration::from_secs(5));
        assert_eq!((g.max_db_connections, g.max_user_connections), (0, 0));
        assert_eq!(
            (g.max_db_client_connections, g.max_user_client_connections),
            (0, 0)
        );
        assert_eq!(g.autodb_idle_timeout, Duration::from_secs(3600));
        assert!(!g.server_round_robin);
        assert_eq!(g.server_reset_query, "DISCARD ALL");
        assert!(!g.server_reset_query_always);
        assert_eq!(g.server_check_delay, Duration::from_secs(30));
        assert_eq!(g.server_check_query, "");
        assert!(g.server_check_enabled);
        assert_eq!(g.server_lifetime, Duration::from_secs(3600));
        assert_eq!(g.server_idle_timeout, Duration::from_secs(600));
        assert_eq!(g.server_connect_timeout, Duration::from_secs(15));
        assert_eq!(g.server_login_retry, Duration::from_secs(15));
        assert_eq!(g.client_login_timeout, Duration::from_secs(60));
        assert_eq!(g.query_timeout, Duration::ZERO);
        assert_eq!(g.query_wait_timeout, Duration::from_secs(120));
        assert_eq!(g.query_wait_notify, Duration::from_secs(5));
        assert_eq!(g.client_idle_timeout, Duration::ZERO);
        assert_eq!(g.idle_transaction_timeout, Duration::ZERO);
        assert_eq!(g.cancel_wait_timeout, Duration::from_secs(10));
        assert_eq!(g.suspend_timeout, Duration::from_secs(10));
        assert_eq!(g.max_packet_size, 2_147_483_647);
        assert_eq!((g.pkt_buf, g.listen_backlog), (4096, 128));
        assert!(g.tcp_keepalive && !g.so_reuseport);
        assert_eq!((g.logfile.clone(), g.pidfile.clone()), (None, None));
        assert!(g.admin_users.is_empty() && g.stats_users.is_empty());
        assert!(g.ignore_startup_parameters.is_empty());
        assert_eq!(g.track_extra_parameters, vec!["IntervalStyle"]);
        assert!(!g.application_name_add_host);
        assert!(g.log_connections && g.log_disconnections && g.log_pooler_errors && g.log_stats);
        assert_eq!(g.verbose, 0);
        assert_eq!(g.stats_period, Duration::from_secs(60));
        assert_eq!(g.max_prepared_statements, 200);
        assert_eq!((g.metrics_listen_addr.clone(), g.log_json), (None, false));
        assert_eq!(g.settings.len(), KEYS.len());
        // Every row shows its default, canonically formatted.
        for (s, def) in g.settings.iter().zip(KEYS) {
            assert_eq!(s.key, def.name);
            if s.key != "conffile" {
                let want = parse_value(def.kind, def.default).map(|v| v.text(def.kind));
                assert_eq!(want.as_deref(), Ok(s.value.as_str()), "{}", s.key);
            }
        }
    }

    #[test]
    fn pgsluice_extensions_metrics_listen_addr_and_log_format() {
        let load = |extra: &str| {
            let text = format!("[pgbouncer]\nauth_type = any\n{extra}\n");
            super::super::load_str(&text, Path::new("/etc/p.ini"))
        };
        let g = load("metrics_listen_addr = 127.0.0.1:9127\nlog_format = JSON")
            .unwrap()
            .config
            .general;
        assert_eq!(g.metrics_listen_addr.as_deref(), Some("127.0.0.1:9127"));
        assert!(g.log_json);
        assert!(load("metrics_listen_addr = [::1]:0").is_ok());
        for bad in ["9127", "localhost", ":9127", "host:port", "h:70000"] {
            let e = load(&format!("metrics_listen_addr = {bad}")).unwrap_err();
            assert!(e.to_string().contains("metrics_listen_addr"), "{bad}: {e}");
        }
        assert!(load("log_format = xml").is_err());
    }

    #[test]
    fn comma_lists() {
        assert_eq!(list(" a, b ,,c "), vec!["a", "b", "c"]);
        assert!(list("").is_empty());
        assert_eq!(list("*"), vec!["*"]);
    }
}
