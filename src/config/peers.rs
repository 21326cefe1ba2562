//! The `[peers]` section, PgBouncer's syntax (`id = host=... port=...
//! pool_size=...`): where the other processes of a peered group (same
//! port with so_reuseport, or behind one load balancer) take the cancel
//! requests meant for their clients (`cancel::forward_to_peer`). A host
//! starting with `/` is a Unix socket directory; the port defaults to
//! 6432, as in PgBouncer. pool_size (PgBouncer's limit of forwarding
//! connections) is checked and not needed: each forward is a connection
//! of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Endpoint;
use super::connstr::{opt_count, parse_pairs};
use super::error::ConfigError;

/// The peers by id.
pub(crate) type Peers = BTreeMap<u16, Endpoint>;

/// One `[peers]` line, every problem reported; None when it has one.
pub(crate) fn parse_peer(
    id: &str,
    connstr: &str,
    file: &Path,
    line: usize,
    errors: &mut Vec<ConfigError>,
) -> Option<(u16, Endpoint)> {
    let before = errors.len();
    let err = |key: &str, msg: String| ConfigError::new(file, line, key, msg);
    let peer_id = match id.parse::<u16>() {
        Ok(n @ 1..) => n,
        _ => {
            errors.push(err(id, "peer id must be a number from 1 to 65535".into()));
            0
        }
    };
    let pairs = match parse_pairs(connstr) {
        Ok(p) => p,
        Err(msg) => {
            errors.push(err(id, msg));
            return None;
        }
    };
    let (mut host, mut port) = (None, 6432);
    for (key, v) in pairs {
        let problem = match key.as_str() {
            "host" => {
                host = Some(v);
                None
            }
            "port" => match v.parse::<u16>() {
                Ok(p @ 1..) => {
                    port = p;
                    None
                }
                _ => Some(format!("invalid port: {v:?}")),
            },
            "pool_size" => opt_count(&v).err(),
            _ => Some("unknown peer parameter".to_string()),
        };
        if let Some(msg) = problem {
            errors.push(err(&key, format!("{msg} (peer {id})")));
        }
    }
    let Some(host) = host else {
        errors.push(err(id, "host was not provided for peer".into()));
        return None;
    };
    if errors.len() > before {
        return None;
    }
    let endpoint = match host.starts_with('/') {
        true => Endpoint::Unix {
            dir: PathBuf::from(host),
            port,
        },
        false => Endpoint::Tcp { host, port },
    };
    Some((peer_id, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_checked() {
        let mut e = vec![];
        let unix = parse_peer(
            "1",
            "host=/tmp/pgb1 port=6433 pool_size=4",
            Path::new("p"),
            1,
            &mut e,
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            unix,
            Some((
                1,
                Endpoint::Unix {
                    dir: "/tmp/pgb1".into(),
                    port: 6433
                }
            ))
        );
        let tcp = parse_peer("7", "host=db1", Path::new("p"), 1, &mut e);
        let db1 = Endpoint::Tcp {
            host: "db1".into(),
            port: 6432,
        };
        assert_eq!(tcp, Some((7, db1)));
        let bad = parse_peer("0", "port=0 colour=red", Path::new("p"), 2, &mut e);
        assert_eq!(bad, None);
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["0", "port", "colour", "0"]);
    }
}
