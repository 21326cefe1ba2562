//! Read/write splitting settings (pgsluice extensions): globally in
//! `[pgbouncer]`, per database in its `[databases]` connection string,
//! and `read_write_split` per user in `[users]`.
//!
//! - `read_write_split` (off): send provably read-only transactions to
//!   standbys (transaction and statement mode only).
//! - `max_standby_lag` (time, 0 = no limit) and `max_standby_lag_bytes`
//!   (bytes, `16MB` style, 0 = no limit): a standby further behind leaves
//!   the read rotation until it is back under half the limit.
//! - `standby_fallback` (`primary`): with no eligible standby, reads go to
//!   the primary; `wait`: they wait for a standby (primary_wait_timeout).
//! - `read_your_writes` (`off`, `window`, `wal`), `read_your_writes_window`
//!   (60 s), `read_your_writes_scope` (`client`, `user`).
//! - `writing_functions`: a comma-separated list of the user's own
//!   functions that write (a call to one keeps a statement on the primary).

use std::sync::Arc;
use std::time::Duration;

use super::connstr::{choice, opt_seconds};
use super::keys::{FALLBACKS, RYW_MODES, RYW_SCOPES};
use super::settings::parse_bool;

/// Where reads go when no standby is eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// To the primary.
    #[default]
    Primary,
    /// To the standby pool, which waits up to primary_wait_timeout.
    Wait,
}

/// How a client's reads after its own writes are kept consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadYourWrites {
    /// Not at all: a read may go to a standby that has not replayed it.
    #[default]
    Off,
    /// For `read_your_writes_window` after a write, reads go to the primary.
    Window,
    /// After a write, reads go to a standby only once it has replayed the
    /// primary's WAL position taken after the write.
    Wal,
}

/// Who shares a read-your-writes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RywScope {
    /// One client connection.
    #[default]
    Client,
    /// Every connection of one user to the database.
    User,
}

/// The splitting settings of one database.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// read_write_split.
    pub on: bool,
    /// max_standby_lag; zero: no limit.
    pub max_lag: Duration,
    /// max_standby_lag_bytes; zero: no limit.
    pub max_lag_bytes: u64,
    /// standby_fallback.
    pub fallback: Fallback,
    /// read_your_writes.
    pub ryw: ReadYourWrites,
    /// read_your_writes_window.
    pub window: Duration,
    /// read_your_writes_scope.
    pub scope: RywScope,
    /// writing_functions, lowercased (as PostgreSQL folds unquoted names).
    pub writing_functions: Arc<[String]>,
}

impl Default for Split {
    fn default() -> Split {
        Split {
            on: false,
            max_lag: Duration::ZERO,
            max_lag_bytes: 0,
            fallback: Fallback::Primary,
            ryw: ReadYourWrites::Off,
            window: Duration::from_secs(60),
            scope: RywScope::Client,
            writing_functions: Arc::from(Vec::new()),
        }
    }
}

/// A `[databases]` entry's overrides; None: `[pgbouncer]`'s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitOverrides {
    /// read_write_split.
    pub on: Option<bool>,
    /// max_standby_lag.
    pub max_lag: Option<Duration>,
    /// max_standby_lag_bytes.
    pub max_lag_bytes: Option<u64>,
    /// standby_fallback.
    pub fallback: Option<Fallback>,
    /// read_your_writes.
    pub ryw: Option<ReadYourWrites>,
    /// read_your_writes_window.
    pub window: Option<Duration>,
    /// read_your_writes_scope.
    pub scope: Option<RywScope>,
    /// writing_functions.
    pub writing_functions: Option<Arc<[String]>>,
}

/// Every splitting key, as written in `[pgbouncer]` and `[databases]`.
pub(crate) const SPLIT_KEYS: &[&str] = &[
    "read_write_split",
    "max_standby_lag",
    "max_standby_lag_bytes",
    "standby_fallback",
    "read_your_writes",
    "read_your_writes_window",
    "read_your_writes_scope",
    "writing_functions",
];

impl SplitOverrides {
    /// Apply one key; None when `key` is not a splitting key.
    pub(crate) fn set(&mut self, key: &str, v: &str) -> Option<Result<(), String>> {
        let r = match key {
            "read_write_split" => parse_bool(v)
                .map(|b| self.on = Some(b))
                .ok_or_else(|| format!("invalid boolean: {v:?}")),
            "max_standby_lag" => opt_seconds(v).map(|d| self.max_lag = Some(d.unwrap_or_default())),
            "max_standby_lag_bytes" => parse_bytes(v).map(|b| self.max_lag_bytes = Some(b)),
            "standby_fallback" => choice(v, FALLBACKS).map(|c| self.fallback = Some(fallback(c))),
            "read_your_writes" => choice(v, RYW_MODES).map(|c| self.ryw = Some(ryw(c))),
            "read_your_writes_window" => {
                opt_seconds(v).map(|d| self.window = Some(d.unwrap_or_default()))
            }
            "read_your_writes_scope" => choice(v, RYW_SCOPES).map(|c| self.scope = Some(scope(c))),
            "writing_functions" => {
                self.writing_functions = Some(parse_list(v));
                Ok(())
            }
            _ => return None,
        };
        Some(r)
    }
}

impl Split {
    /// `[pgbouncer]`'s settings from their text (checked already, see
    /// [`check_global`]).
    pub(crate) fn from_text(get: impl Fn(&str) -> String) -> Split {
        let mut o = SplitOverrides::default();
        for k in SPLIT_KEYS {
            let v = get(k);
            let _ = o.set(k, &v);
        }
        Split::default().with(&o)
    }

    /// These settings with a database's overrides.
    pub fn with(&self, o: &SplitOverrides) -> Split {
        Split {
            on: o.on.unwrap_or(self.on),
            max_lag: o.max_lag.unwrap_or(self.max_lag),
            max_lag_bytes: o.max_lag_bytes.unwrap_or(self.max_lag_bytes),
            fallback: o.fallback.unwrap_or(self.fallback),
            ryw: o.ryw.unwrap_or(self.ryw),
            window: o.window.unwrap_or(self.window),
            scope: o.scope.unwrap_or(self.scope),
            writing_functions: o
                .writing_functions
                .clone()
                .unwrap_or_else(|| self.writing_functions.clone()),
        }
    }
}

/// Check `[pgbouncer]`'s splitting keys' text: the first bad one's key and
/// message.
pub(crate) fn check_global(get: impl Fn(&str) -> String) -> Vec<(&'static str, String)> {
    let mut o = SplitOverrides::default();
    SPLIT_KEYS
        .iter()
        .filter_map(|k| match o.set(k, &get(k)) {
            Some(Err(e)) => Some((*k, e)),
            _ => None,
        })
        .collect()
}

fn fallback(c: &str) -> Fallback {
    if c == "wait" {
        Fallback::Wait
    } else {
        Fallback::Primary
    }
}

fn ryw(c: &str) -> ReadYourWrites {
    match c {
        "window" => ReadYourWrites::Window,
        "wal" => ReadYourWrites::Wal,
        _ => ReadYourWrites::Off,
    }
}

fn scope(c: &str) -> RywScope {
    if c == "user" {
        RywScope::User
    } else {
        RywScope::Client
    }
}

/// A size in bytes: a whole number with an optional unit (`B`, `kB`, `MB`,
/// `GB`, `TB`, PostgreSQL's spelling, 1024-based; case-insensitive).
pub(crate) fn parse_bytes(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size: {v:?} (bytes, or a number with kB, MB, GB or TB)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// A comma-separated list of function names, trimmed and lowercased,
/// empty items dropped.
fn parse_list(v: &str) -> Arc<[String]> {
    v.split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_postgres_units() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("16MB"), Ok(16 << 20));
        assert_eq!(parse_bytes("1 kB"), Ok(1024));
        assert!(parse_bytes("-1").is_err() && parse_bytes("1 parsec").is_err());
        assert!(parse_bytes("99999999999TB").is_err());
    }

    #[test]
    fn overrides_apply_over_the_global_settings() {
        let global = Split::from_text(|k| match k {
            "read_write_split" => "1".into(),
            "max_standby_lag" => "10s".into(),
            "writing_functions" => " audit_log, Public.Bump ,".into(),
            "read_your_writes_window" => "60".into(),
            _ => match k {
                "standby_fallback" => "primary".into(),
                "read_your_writes" => "off".into(),
                "read_your_writes_scope" => "client".into(),
                _ => "0".into(),
            },
        });
        assert!(global.on);
        assert_eq!(global.max_lag, Duration::from_secs(10));
        assert_eq!(&*global.writing_functions, ["audit_log", "public.bump"]);
        let mut o = SplitOverrides::default();
        assert_eq!(o.set("read_your_writes", "WAL"), Some(Ok(())));
        assert_eq!(o.set("read_your_writes_scope", "user"), Some(Ok(())));
        assert_eq!(o.set("max_standby_lag_bytes", "1MB"), Some(Ok(())));
        assert_eq!(o.set("standby_fallback", "wait"), Some(Ok(())));
        assert!(o.set("standby_fallback", "never").unwrap().is_err());
        assert!(o.set("pool_size", "1").is_none());
        let s = global.with(&o);
        assert_eq!(s.ryw, ReadYourWrites::Wal);
        assert_eq!(s.scope, RywScope::User);
        assert_eq!(s.max_lag_bytes, 1 << 20);
        assert_eq!(s.fallback, Fallback::Wait);
        assert_eq!(s.max_lag, Duration::from_secs(10));
    }

    #[test]
    fn bad_global_values_are_named() {
        let bad = check_global(|k| match k {
            "max_standby_lag_bytes" => "lots".into(),
            "read_your_writes" => "maybe".into(),
            "standby_fallback" => "primary".into(),
            "read_your_writes_scope" => "client".into(),
            _ => "0".into(),
        });
        let keys: Vec<_> = bad.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["max_standby_lag_bytes", "read_your_writes"]);
    }
}
