//! The `[pgbouncer]` section's keys: every PgBouncer 1.25 setting with its
//! type, default and reloadability ([`KEYS`], in PgBouncer's SHOW CONFIG
//! order), the list of settings pgsluice does not implement yet
//! ([`NOT_YET_IMPLEMENTED`]), and the value parsers.
//!
//! Values are read the way PgBouncer reads them: integers like C `strtol`
//! with base 0 (so `0777` is octal and `0x10` hex), times as (possibly
//! fractional) seconds without unit suffixes, choices case-insensitively.
//! Booleans, which PgBouncer stores as integers, also accept yes/no, on/off
//! and true/false. This module does not build [`super::General`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;

/// The type of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
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
pub struct KeyDef {
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
    KeyDef { name, kind, default, changeable: true }
}

const fn fixed(name: &'static str, kind: Kind, default: &'static str) -> KeyDef {
    KeyDef { name, kind, default, changeable: false }
}

const COUNT: Kind = Kind::Int { min: 0, max: i32::MAX as i64 };
const PORT: Kind = Kind::Int { min: 0, max: 65535 };
const UINT: Kind = Kind::Int { min: 0, max: u32::MAX as i64 };
const T: Kind = Kind::Time;
const S: Kind = Kind::Str;
const B: Kind = Kind::Bool;
const SSLMODES: Kind =
    Kind::Choice(&["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]);

/// `auth_type` values PgBouncer knows.
pub const AUTH_TYPES: &[&str] =
    &["any", "trust", "plain", "md5", "cert", "hba", "ldap", "pam", "scram-sha-256"];
/// `pool_mode` values.
pub const POOL_MODES: &[&str] = &["session", "transaction", "statement"];

/// PgBouncer's default `auth_query`.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin";

/// Every `[pgbouncer]` key, in PgBouncer's (alphabetical) SHOW CONFIG order.
pub const KEYS: &[KeyDef] = &[
    key("admin_users", S, ""),
    key("application_name_add_host", B, "0"),
    key("auth_dbname", S, ""),
    key("auth_file", S, ""),
    key("auth_hba_file", S, ""),
    key("auth_ident_file", S, ""),
    key("auth_ldap_options", S, ""),
    key("auth_query", S, DEFAULT_AUTH_QUERY),
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
    key("idle_transaction_timeout", T, "0"),
    key("ignore_startup_parameters", S, ""),
    fixed("job_name", S, "pgbouncer"),
    fixed("listen_addr", S, ""),
    fixed("listen_backlog", COUNT, "128"),
    fixed("listen_port", PORT, "6432"),
    key("log_connections", B, "1"),
    key("log_disconnections", B, "1"),
    key("log_pooler_errors", B, "1"),
    key("log_stats", B, "1"),
    key("logfile", S, ""),
    key("login_notify_message", S, ""),
    key("max_client_conn", COUNT, "100"),
    key("max_db_client_connections", COUNT, "0"),
    key("max_db_connections", COUNT, "0"),
    key("max_packet_size", UINT, "2147483647"),
    key("max_prepared_statements", COUNT, "200"),
    key("max_user_client_connections", COUNT, "0"),
    key("max_user_connections", COUNT, "0"),
    key("min_pool_size", COUNT, "0"),
    key("peer_id", Kind::Int { min: 0, max: 16383 }, "0"),
    fixed("pidfile", S, ""),
    fixed("pkt_buf", COUNT, "4096"),
    key("pool_idle_timeout", T, "0"),
    key("pool_mode", Kind::Choice(POOL_MODES), "session"),
    key("query_timeout", T, "0"),
    key("query_wait_notify", T, "5"),
    key("query_wait_timeout", T, "120"),
    key("reserve_pool_size", COUNT, "0"),
    key("reserve_pool_timeout", T, "5"),
    fixed("resolv_conf", S, ""),
    key("sbuf_loopcnt", COUNT, "5"),
    key("scram_iterations", Kind::Int { min: 1, max: i32::MAX as i64 }, "4096"),
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
    key("stats_period", Kind::Int { min: 1, max: i32::MAX as i64 }, "60"),
    key("stats_users", S, ""),
    key("suspend_timeout", T, "10"),
    key("syslog", B, "0"),
    key("syslog_facility", S, "daemon"),
    key("syslog_ident", S, "pgbouncer"),
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
];

/// Known keys pgsluice parses but does not act on yet. Setting one of them
/// to a non-default value produces a warning. Remove a key from this list
/// when the feature lands.
pub const NOT_YET_IMPLEMENTED: &[&str] = &[
    // In `General`, waiting for their features:
    "min_pool_size", "reserve_pool_size", "reserve_pool_timeout", "max_db_connections",
    "max_user_connections", "server_round_robin", "server_check_delay", "server_check_query",
    "server_lifetime", "server_idle_timeout", "query_timeout", "client_idle_timeout",
    "idle_transaction_timeout", "suspend_timeout", "stats_period", "max_prepared_statements",
    "so_reuseport", "unix_socket_group", "log_stats", "application_name_add_host",
    "server_reset_query_always",
    // Not in `General` at all:
    "auth_dbname", "auth_hba_file", "auth_ident_file", "auth_ldap_options", "auth_query",
    "auth_user", "autodb_idle_timeout", "client_tls13_ciphers", "client_tls_ca_file",
    "client_tls_cert_file", "client_tls_ciphers", "client_tls_dheparams", "client_tls_ecdhcurve",
    "client_tls_key_file", "client_tls_protocols", "client_tls_sslmode", "conffile",
    "disable_pqexec", "dns_max_ttl", "dns_nxdomain_ttl", "dns_zone_check_period", "job_name",
    "login_notify_message", "max_db_client_connections", "max_user_client_connections",
    "peer_id", "pool_idle_timeout", "query_wait_notify", "resolv_conf", "sbuf_loopcnt",
    "scram_iterations", "server_fast_close", "server_tls13_ciphers", "server_tls_ca_file",
    "server_tls_cert_file", "server_tls_ciphers", "server_tls_key_file", "server_tls_protocols",
    "server_tls_sslmode", "service_name", "syslog", "syslog_facility", "syslog_ident",
    "tcp_defer_accept", "tcp_keepcnt", "tcp_keepidle", "tcp_keepintvl", "tcp_socket_buffer",
    "tcp_user_timeout", "transaction_timeout", "user",
];

/// Finds a key's definition, ignoring case.
pub fn find(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}

/// A typed setting value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer or file mode.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A time span.
    Time(Duration),
    /// Text.
    Str(String),
    /// One of a fixed set of words, in canonical (lowercase) spelling.
    Choice(&'static str),
}

impl Value {
    /// The value as SHOW CONFIG shows it.
    pub fn text(&self, kind: Kind) -> String {
        match self {
            Value::Int(n) if kind == Kind::Mode => format!("0{n:o}"),
            Value::Int(n) => n.to_string(),
            Value::Bool(b) => u8::from(*b).to_string(),
            Value::Time(d) => d.as_secs_f64().to_string(),
            Value::Str(s) => s.clone(),
            Value::Choice(c) => (*c).to_string(),
        }
    }
}

/// Parses `raw` as a value of type `kind`; the error is a lowercase reason.
pub fn parse_value(kind: Kind, raw: &str) -> Result<Value, String> {
    match kind {
        Kind::Int { min, max } => {
            let n = parse_c_int(raw).ok_or_else(|| format!("invalid integer: {raw:?}"))?;
            if n < min || n > max {
                return Err(format!("{n} is out of range {min}..={max}"));
            }
            Ok(Value::Int(n))
        }
        Kind::Mode => match parse_c_int(raw) {
            Some(n) if (0..=0o7777).contains(&n) => Ok(Value::Int(n)),
            _ => Err(format!("invalid file mode: {raw:?}")),
        },
        Kind::Bool => parse_bool(raw)
            .map(Value::Bool)
            .ok_or_else(|| format!("invalid boolean: {raw:?} (use 0/1, yes/no, on/off)")),
        Kind::Time => parse_seconds(raw)
            .map(Value::Time)
            .ok_or_else(|| format!("invalid time: {raw:?} (seconds, without a unit)")),
        Kind::Str => Ok(Value::Str(raw.to_string())),
        Kind::Choice(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(raw))
            .map(|w| Value::Choice(w))
            .ok_or_else(|| format!("invalid value {raw:?}; expected one of: {}", words.join(", "))),
    }
}

/// Parses an integer like C `strtol(s, &end, 0)` with nothing left over:
/// optional sign, then `0x` hex, leading-`0` octal, or decimal.
pub fn parse_c_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, body) = if let Some(h) = digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
        (16, h)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = i64::from_str_radix(body, radix).ok()?;
    Some(if neg { -n } else { n })
}

/// Parses a boolean: the words PostgreSQL accepts, or an integer as PgBouncer.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" => Some(true),
        "no" | "off" | "false" => Some(false),
        other => parse_c_int(other).map(|n| n != 0),
    }
}

/// Parses seconds like PgBouncer (`strtod`): fractional allowed, no unit,
/// not negative; truncated to microseconds.
pub fn parse_seconds(s: &str) -> Option<Duration> {
    let v: f64 = s.parse().ok()?;
    if !v.is_finite() || v < 0.0 || v > 1e12 {
        return None;
    }
    Some(Duration::from_micros((v * 1e6) as u64))
}

/// Where a setting was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// The line.
    pub line: usize,
}

/// A `[pgbouncer]` value as written, before typing.
#[derive(Debug, Clone)]
pub struct RawSetting {
    /// The text after `=`.
    pub value: String,
    /// Where it was written.
    pub origin: Origin,
}

/// Every known key's effective typed value, with where it was set.
#[derive(Debug, Clone, Default)]
pub struct Values {
    map: HashMap<&'static str, Value>,
    origins: HashMap<&'static str, Origin>,
}

impl Values {
    /// Types every raw value (bad ones are reported and fall back to the
    /// default) and fills in defaults. Warns about not-yet-implemented keys
    /// set to a non-default value.
    pub fn resolve(
        raw: &HashMap<&'static str, RawSetting>,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<String>,
    ) -> Values {
        let mut out = Values::default();
        for def in KEYS {
            let default = parse_value(def.kind, def.default).unwrap_or(Value::Str(String::new()));
            let Some(r) = raw.get(def.name) else {
                out.map.insert(def.name, default);
                continue;
            };
            let at = format!("{}:{}: {}", r.origin.file.display(), r.origin.line, def.name);
            let value = match parse_value(def.kind, &r.value) {
                Ok(v) => v,
                Err(msg) => {
                    errors.push(ConfigError::new(&r.origin.file, r.origin.line, def.name, msg));
                    default.clone()
                }
            };
            if NOT_YET_IMPLEMENTED.contains(&def.name) && value != default {
                warnings.push(format!(
                    "{at}: setting is not implemented by pgsluice yet; ignored"
                ));
            }
            if def.kind == Kind::Mode && r.value.len() > 1 && !r.value.starts_with('0') {
                warnings.push(format!(
                    "{at}: {:?} has no leading 0, so it is decimal (mode 0{:o}) as in PgBouncer",
                    r.value,
                    out_int(&value)
                ));
            }
            out.map.insert(def.name, value);
            out.origins.insert(def.name, r.origin.clone());
        }
        out
    }

    /// Where `name` was set, if it was.
    pub fn origin(&self, name: &str) -> Option<&Origin> {
        self.origins.get(name)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// An integer setting (0 if absent).
    pub fn int(&self, name: &str) -> i64 {
        self.get(name).map(out_int).unwrap_or(0)
    }

    /// An integer setting as u32 (0 if absent; ranges are already checked).
    pub fn u32(&self, name: &str) -> u32 {
        u32::try_from(self.int(name)).unwrap_or(0)
    }

    /// A boolean setting.
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Bool(true)))
    }

    /// A time setting.
    pub fn time(&self, name: &str) -> Duration {
        match self.get(name) {
            Some(Value::Time(d)) => *d,
            _ => Duration::ZERO,
        }
    }

    /// A text or choice setting.
    pub fn str(&self, name: &str) -> &str {
        match self.get(name) {
            Some(Value::Str(s)) => s,
            Some(Value::Choice(c)) => c,
            _ => "",
        }
    }
}

fn out_int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_integers() {
        assert_eq!(parse_c_int("6432"), Some(6432));
        assert_eq!(parse_c_int("0777"), Some(0o777));
        assert_eq!(parse_c_int("0x1F"), Some(31));
        assert_eq!(parse_c_int("-5"), Some(-5));
        assert_eq!(parse_c_int("+5"), Some(5));
        assert_eq!(parse_c_int("0"), Some(0));
        for bad in ["", "abc", "12a", "08", "0x", "1.5", "- 1", "5s"] {
            assert_eq!(parse_c_int(bad), None, "{bad}");
        }
    }

    #[test]
    fn booleans_and_times() {
        for t in ["1", "yes", "ON", "true", "2"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "no", "Off", "FALSE"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_seconds("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_seconds("1e2"), Some(Duration::from_secs(100)));
        for bad in ["-1", "5s", "1min", "inf", "NaN", "", "1e20"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_default_parses_and_keys_are_sorted_and_unique() {
        for def in KEYS {
            assert!(parse_value(def.kind, def.default).is_ok(), "{}", def.name);
            assert_eq!(def.name, def.name.to_ascii_lowercase());
        }
        for w in KEYS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for name in NOT_YET_IMPLEMENTED {
            assert!(find(name).is_some(), "{name} is not a known key");
        }
    }

    #[test]
    fn values_display_like_show_config() {
        assert_eq!(Value::Int(0o777).text(Kind::Mode), "0777");
        assert_eq!(Value::Time(Duration::from_millis(500)).text(Kind::Time), "0.5");
        assert_eq!(Value::Time(Duration::from_secs(60)).text(Kind::Time), "60");
        assert_eq!(Value::Bool(true).text(Kind::Bool), "1");
        let pm = parse_value(Kind::Choice(POOL_MODES), "Transaction");
        assert_eq!(pm, Ok(Value::Choice("transaction")));
    }
}
