//! The `[peers]` section: checked for PgBouncer's syntax (`id = host=...
//! port=... pool_size=...`) so that a valid PgBouncer file loads, but not
//! used: pgsluice does not forward cancel requests to peers yet.

use std::path::Path;

use super::connstr::{opt_count, parse_pairs};
use super::error::ConfigError;

/// Checks one `[peers]` line, reporting every problem.
pub(crate) fn check_peer(
    id: &str,
    connstr: &str,
    file: &Path,
    line: usize,
    errors: &mut Vec<ConfigError>,
) {
    let err = |key: &str, msg: String| ConfigError::new(file, line, key, msg);
    if !matches!(id.parse::<u32>(), Ok(1..=65535)) {
        errors.push(err(id, "peer id must be a number from 1 to 65535".into()));
    }
    let pairs = match parse_pairs(connstr) {
        Ok(p) => p,
        Err(msg) => return errors.push(err(id, msg)),
    };
    let mut has_host = false;
    for (key, v) in pairs {
        let problem = match key.as_str() {
            "host" => {
                has_host = true;
                None
            }
            "port" => {
                (!matches!(v.parse::<u16>(), Ok(1..))).then(|| format!("invalid port: {v:?}"))
            }
            "pool_size" => opt_count(&v).err(),
            _ => Some("unknown peer parameter".to_string()),
        };
        if let Some(msg) = problem {
            errors.push(err(&key, format!("{msg} (peer {id})")));
        }
    }
    if !has_host {
        errors.push(err(id, "host was not provided for peer".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_checked() {
        let mut e = vec![];
        check_peer(
            "1",
            "host=/tmp/pgb1 port=6433 pool_size=4",
            Path::new("p"),
            1,
            &mut e,
        );
        assert!(e.is_empty(), "{e:?}");
        check_peer("0", "port=0 colour=red", Path::new("p"), 2, &mut e);
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["0", "port", "colour", "0"]);
    }
}
