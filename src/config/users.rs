//! The `[users]` section: per-user overrides ([`UserSettings`]) from
//! `name = key=value ...` lines. Connection strings are split by
//! `connstr.rs`; this module knows the allowed keys.

use std::path::Path;
use std::time::Duration;

use super::PoolMode;
use super::connstr::{choice, opt_count, opt_seconds, parse_pairs};
use super::error::ConfigError;
use super::settings::POOL_MODES;

/// One `[users]` entry; None = not overridden.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserSettings {
    /// Pool mode for all of this user's pools.
    pub pool_mode: Option<PoolMode>,
    /// Pool size for this user's pools.
    pub pool_size: Option<u32>,
    /// Reserve pool size for this user's pools.
    pub reserve_pool_size: Option<u32>,
    /// Server connection limit for this user.
    pub max_user_connections: Option<u32>,
    /// Client connection limit for this user.
    pub max_user_client_connections: Option<u32>,
    /// query_timeout override.
    pub query_timeout: Option<Duration>,
    /// query_wait_timeout override.
    pub query_wait_timeout: Option<Duration>,
    /// idle_transaction_timeout override.
    pub idle_transaction_timeout: Option<Duration>,
    /// client_idle_timeout override.
    pub client_idle_timeout: Option<Duration>,
    /// transaction_timeout override.
    pub transaction_timeout: Option<Duration>,
    /// read_write_split override (pgsluice extension).
    pub read_write_split: Option<bool>,
}

/// `[users]` keys that are parsed and checked but not acted on yet.
pub const USER_KEYS_NOT_YET_IMPLEMENTED: &[&str] = &[];

/// Parses one `[users]` line, reporting every bad key; returns the
/// settings only when the whole line is valid.
pub(crate) fn parse_user(
    name: &str,
    settings: &str,
    file: &Path,
    line: usize,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Option<UserSettings> {
    let pairs = match parse_pairs(settings) {
        Ok(p) => p,
        Err(msg) => {
            errors.push(ConfigError::new(file, line, name, msg));
            return None;
        }
    };
    let before = errors.len();
    let mut u = UserSettings::default();
    for (key, value) in pairs {
        if let Err(msg) = set_key(&mut u, &key, &value) {
            let msg = format!("{msg} (user {name:?})");
            errors.push(ConfigError::new(file, line, &key, msg));
        } else if USER_KEYS_NOT_YET_IMPLEMENTED.contains(&key.as_str()) {
            warnings.push(format!(
                "{}:{line}: {key}: setting is not implemented by pgsluice yet; ignored (user {name:?})",
                file.display()
            ));
        }
    }
    (errors.len() == before).then_some(u)
}

fn set_key(u: &mut UserSettings, key: &str, v: &str) -> Result<(), String> {
    match key {
        "pool_mode" => u.pool_mode = PoolMode::from_name(choice(v, POOL_MODES)?),
        "pool_size" => u.pool_size = opt_count(v)?,
        "reserve_pool_size" => u.reserve_pool_size = opt_count(v)?,
        "max_user_connections" => u.max_user_connections = opt_count(v)?,
        "max_user_client_connections" => u.max_user_client_connections = opt_count(v)?,
        "query_timeout" => u.query_timeout = opt_seconds(v)?,
        "query_wait_timeout" => u.query_wait_timeout = opt_seconds(v)?,
        "idle_transaction_timeout" => u.idle_transaction_timeout = opt_seconds(v)?,
        "client_idle_timeout" => u.client_idle_timeout = opt_seconds(v)?,
        "transaction_timeout" => u.transaction_timeout = opt_seconds(v)?,
        "read_write_split" => {
            u.read_write_split = Some(
                super::settings::parse_bool(v).ok_or_else(|| format!("invalid boolean: {v:?}"))?,
            )
        }
        _ => return Err("unknown user parameter".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Option<UserSettings>, Vec<ConfigError>) {
        let mut e = vec![];
        let mut w = vec![];
        (
            parse_user("bob", s, Path::new("p.ini"), 3, &mut e, &mut w),
            e,
        )
    }

    #[test]
    fn every_key() {
        let (u, e) = parse(
            "pool_mode=statement pool_size=3 reserve_pool_size=1 max_user_connections=4 \
             max_user_client_connections=40 query_timeout=2 query_wait_timeout=0.5 \
             idle_transaction_timeout=7 client_idle_timeout=8 transaction_timeout=9",
        );
        assert!(e.is_empty(), "{e:?}");
        let u = u.expect("valid");
        assert_eq!(u.pool_mode, Some(PoolMode::Statement));
        assert_eq!(
            (u.pool_size, u.max_user_client_connections),
            (Some(3), Some(40))
        );
        assert_eq!(u.query_wait_timeout, Some(Duration::from_millis(500)));
        assert_eq!(u.transaction_timeout, Some(Duration::from_secs(9)));
    }

    #[test]
    fn every_user_key_is_implemented() {
        let (mut e, mut w) = (vec![], vec![]);
        let u = parse_user(
            "bob",
            "pool_size=2 transaction_timeout=5",
            Path::new("p.ini"),
            3,
            &mut e,
            &mut w,
        );
        assert!(u.is_some() && e.is_empty());
        assert!(w.is_empty(), "{w:?}");
        assert!(USER_KEYS_NOT_YET_IMPLEMENTED.is_empty());
    }

    #[test]
    fn bad_keys_are_errors() {
        let (u, e) = parse("pool_mode=nope colour=red");
        assert!(u.is_none());
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[1].to_string(),
            "p.ini:3: colour: unknown user parameter (user \"bob\")"
        );
    }
}
