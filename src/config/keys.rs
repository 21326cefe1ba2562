//! The table of `[pgbouncer]` keys: every PgBouncer 1.25 setting with its
//! type, default and reloadability ([`KEYS`], in PgBouncer's SHOW CONFIG
//! order), and the settings pgsluice does not implement yet
//! ([`NOT_YET_IMPLEMENTED`]). Data only; parsing is in `settings.rs`.
//!
//! Sources: PgBouncer's `doc/config.md` and its parameter table. pgsluice's
//! own keys are listed in [`EXTENSIONS`]. Two keys
//! from PgBouncer's current documentation (`pool_idle_timeout`,
//! `login_notify_message`) are included so newer files load too.

/// The type of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An integer within `min..=max`.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// 0/1, yes/no, on/off, true/false; any other integer is true if nonzero.
    Bool,
    /// Seconds, possibly fractional, not negative.
    Time,
    /// Free text.
    Str,
    /// A file mode; shown in octal.
    Mode,
    /// One of these words (case-insensitive).
    Choice(&'static [&'static str]),
}

/// One known `[pgbouncer]` key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyDef {
    /// The key, lowercase.
    pub name: &'static str,
    /// Its value type.
    pub kind: Kind,
    /// PgBouncer's default, as text.
    pub default: &'static str,
    /// Whether it can change at run time (RELOAD / SET), as SHOW CONFIG says.
    pub changeable: bool,
}

const fn key(name: &'static str, kind: Kind, default: &'static str) -> KeyDef {
    KeyDef {
        name,
        kind,
        default,
        changeable: true,
    }
}

const fn fixed(name: &'static str, kind: Kind, default: &'static str) -> KeyDef {
    KeyDef {
        name,
        kind,
        default,
        changeable: false,
    }
}

const COUNT: Kind = Kind::Int {
    min: 0,
    max: i32::MAX as i64,
};
const PORT: Kind = Kind::Int { min: 0, max: 65535 };
const UINT: Kind = Kind::Int {
    min: 0,
    max: u32::MAX as i64,
};
const T: Kind = Kind::Time;
const S: Kind = Kind::Str;
const B: Kind = Kind::Bool;
const SSLMODES: Kind = Kind::Choice(&[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
]);

/// `auth_type` values PgBouncer knows.
pub(crate) const AUTH_TYPES: &[&str] = &[
    "any",
    "trust",
    "plain",
    "md5",
    "cert",
    "hba",
    "ldap",
    "pam",
    "scram-sha-256",
];
/// `pool_mode` values.
pub(crate) const POOL_MODES: &[&str] = &["session", "transaction", "statement"];

/// `log_format` values (a pgsluice extension).
pub(crate) const LOG_FORMATS: &[&str] = &["text", "json"];

/// `standby_fallback` values (a pgsluice extension).
pub(crate) const FALLBACKS: &[&str] = &["primary", "wait"];
/// `read_your_writes` values (a pgsluice extension).
pub(crate) const RYW_MODES: &[&str] = &["off", "window", "wal"];
/// `read_your_writes_scope` values (a pgsluice extension).
pub(crate) const RYW_SCOPES: &[&str] = &["client", "user"];

/// Keys pgsluice adds to PgBouncer's (PgBouncer would reject them).
pub const EXTENSIONS: &[&str] = &[
    "auth_query_cache",
    "auth_query_cache_ttl",
    "host_check_period",
    "log_format",
    "max_standby_lag",
    "max_standby_lag_bytes",
    "metrics_listen_addr",
    "primary_wait_timeout",
    "read_write_split",
    "read_your_writes",
    "read_your_writes_scope",
    "read_your_writes_window",
    "standby_fallback",
    "target_session_attrs",
    "writing_functions",
];

/// PgBouncer's default `auth_query`.
pub(crate) const DEFAULT_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin";

/// Every `[pgbouncer]` key, in PgBouncer's (alphabetical) SHOW CONFIG order.
pub(crate) const KEYS: &[KeyDef] = &[
    key("admin_users", S, ""),
    key("application_name_add_host", B, "0"),
    key("auth_dbname", S, ""),
    key("auth_file", S, ""),
    key("auth_hba_file", S, ""),
    key("auth_ident_file", S, ""),
    key("auth_ldap_options", S, ""),
    key("auth_query", S, DEFAULT_AUTH_QUERY),
    key("auth_query_cache", B, "1"),
    key("auth_query_cache_ttl", T, "10"),
    key("auth_type", Kind::Choice(AUTH_TYPES), "md5"),
    key("auth_user", S, ""),
    key("autodb_idle_timeout", T, "3600"),
    key("cancel_wait_timeout", T, "10"),
    key("client_idle_timeout", T, "0"),
    key("client_login_timeout", T, "60"),
    key("client_tls13_ciphers", S, ""),
    key("client_tls_ca_file", S, ""),
    key("client_tls_cert_file", S, ""),
    key("client_tls_ciphers", S, "default"),
    key("client_tls_dheparams", S, "auto"),
    key("client_tls_ecdhcurve", S, "auto"),
    key("client_tls_key_file", S, ""),
    key("client_tls_protocols", S, "secure"),
    key("client_tls_sslmode", SSLMODES, "disable"),
    key("conffile", S, ""),
    key("default_pool_size", COUNT, "20"),
    fixed("disable_pqexec", B, "0"),
    key("dns_max_ttl", T, "15"),
    key("dns_nxdomain_ttl", T, "15"),
    key("dns_zone_check_period", T, "0"),
    key("host_check_period", T, "1"),
    key("idle_transaction_timeout", T, "0"),
    key("ignore_startup_parameters", S, ""),
    fixed("job_name", S, "pgbouncer"),
    fixed("listen_addr", S, ""),
    fixed("listen_backlog", COUNT, "128"),
    fixed("listen_port", PORT, "6432"),
    key("log_connections", B, "1"),
    key("log_disconnections", B, "1"),
    fixed("log_format", Kind::Choice(LOG_FORMATS), "text"),
    key("log_pooler_errors", B, "1"),
    key("log_stats", B, "1"),
    key("logfile", S, ""),
    key("login_notify_message", S, ""),
    key("max_client_conn", COUNT, "100"),
    key("max_db_client_connections", COUNT, "0"),
    key("max_db_connections", COUNT, "0"),
    key("max_packet_size", UINT, "2147483647"),
    key("max_prepared_statements", COUNT, "200"),
    key("max_standby_lag", T, "0"),
    key("max_standby_lag_bytes", S, "0"),
    key("max_user_client_connections", COUNT, "0"),
    key("max_user_connections", COUNT, "0"),
    fixed("metrics_listen_addr", S, ""),
    key("min_pool_size", COUNT, "0"),
    key("peer_id", Kind::Int { min: 0, max: 16383 }, "0"),
    fixed("pidfile", S, ""),
    fixed("pkt_buf", COUNT, "4096"),
    key("pool_idle_timeout", T, "0"),
    key("pool_mode", Kind::Choice(POOL_MODES), "session"),
    key("primary_wait_timeout", T, "30"),
    key("query_timeout", T, "0"),
    key("query_wait_notify", T, "5"),
    key("query_wait_timeout", T, "120"),
    key("read_write_split", B, "0"),
    key("read_your_writes", Kind::Choice(RYW_MODES), "off"),
    key("read_your_writes_scope", Kind::Choice(RYW_SCOPES), "client"),
    key("read_your_writes_window", T, "60"),
    key("reserve_pool_size", COUNT, "0"),
    key("reserve_pool_timeout", T, "5"),
    fixed("resolv_conf", S, ""),
    key("sbuf_loopcnt", COUNT, "5"),
    key(
        "scram_iterations",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
        "4096",
    ),
    key("server_check_delay", T, "30"),
    key("server_check_query", S, "<empty>"),
    key("server_connect_timeout", T, "15"),
    key("server_fast_close", B, "0"),
    key("server_idle_timeout", T, "600"),
    key("server_lifetime", T, "3600"),
    key("server_login_retry", T, "15"),
    key("server_reset_query", S, "DISCARD ALL"),
    key("server_reset_query_always", B, "0"),
    key("server_round_robin", B, "0"),
    key("server_tls13_ciphers", S, ""),
    key("server_tls_ca_file", S, ""),
    key("server_tls_cert_file", S, ""),
    key("server_tls_ciphers", S, "default"),
    key("server_tls_key_file", S, ""),
    key("server_tls_protocols", S, "secure"),
    key("server_tls_sslmode", SSLMODES, "prefer"),
    fixed("service_name", S, "pgbouncer"),
    fixed("so_reuseport", B, "0"),
    key("standby_fallback", Kind::Choice(FALLBACKS), "primary"),
    key(
        "stats_period",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
        "60",
    ),
    key("stats_users", S, ""),
    key("suspend_timeout", T, "10"),
    key("syslog", B, "0"),
    key("syslog_facility", S, "daemon"),
    key("syslog_ident", S, "pgbouncer"),
    key(
        "target_session_attrs",
        Kind::Choice(super::hosts::SESSION_ATTRS),
        "any",
    ),
    key("tcp_defer_accept", B, "1"),
    key("tcp_keepalive", B, "1"),
    key("tcp_keepcnt", COUNT, "0"),
    key("tcp_keepidle", COUNT, "0"),
    key("tcp_keepintvl", COUNT, "0"),
    key("tcp_socket_buffer", COUNT, "0"),
    key("tcp_user_timeout", COUNT, "0"),
    fixed("track_extra_parameters", S, "IntervalStyle"),
    key("transaction_timeout", T, "0"),
    fixed("unix_socket_dir", S, "/tmp"),
    fixed("unix_socket_group", S, ""),
    fixed("unix_socket_mode", Kind::Mode, "0777"),
    fixed("user", S, ""),
    key("verbose", COUNT, "0"),
    key("writing_functions", S, ""),
];

/// Known keys pgsluice parses but does not act on yet. Setting one of them
/// to a non-default value produces a warning. Remove a key from this list
/// when the feature lands.
pub const NOT_YET_IMPLEMENTED: &[&str] = &[
    // In `General`, waiting for their features:
    "suspend_timeout",
    "unix_socket_group",
    "pkt_buf",
    // Not in `General` at all:
    "conffile",
    "disable_pqexec",
    "dns_max_ttl",
    "dns_nxdomain_ttl",
    "dns_zone_check_period",
    "job_name",
    "login_notify_message",
    "pool_idle_timeout",
    "resolv_conf",
    "sbuf_loopcnt",
    "scram_iterations",
    "service_name",
    "syslog",
    "syslog_facility",
    "syslog_ident",
    "tcp_defer_accept",
    // Applied, it made replication streams through pgsluice hang with
    // PgBouncer's test.ini value (4096): back here until that is found.
    "tcp_socket_buffer",
];

/// Whether `name` is a known key that can change at run time (RELOAD, SET).
pub fn changeable(name: &str) -> Option<bool> {
    find(name).map(|k| k.changeable)
}

/// Why `name` is not a key: "unknown setting", with the known key it is
/// closest to when it looks like a misspelling of one (at most two edits,
/// fewer than half its length: `pool_mod`, `max_client_con`).
pub(crate) fn unknown(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    let closest = KEYS
        .iter()
        .map(|k| (edit_distance(name.as_bytes(), k.name.as_bytes()), k.name))
        .filter(|&(d, _)| d <= 2 && d * 2 < name.len())
        .min_by_key(|&(d, _)| d);
    match closest {
        Some((_, key)) => format!("unknown setting; did you mean \"{key}\"?"),
        None => "unknown setting".to_string(),
    }
}

/// Levenshtein distance: insertions, deletions and substitutions.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Finds a key's definition, ignoring case.
pub(crate) fn find(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}
