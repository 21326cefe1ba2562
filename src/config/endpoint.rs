//! Server endpoints: where a PostgreSQL server listens, and the endpoints a
//! `[databases]` entry names (its host list, in order). Connecting to one
//! is the transport's business (`transport::connect`).

use std::fmt;
use std::path::PathBuf;

use super::Database;

/// Where a PostgreSQL server listens: one host and port (or socket
/// directory and port). A pool serves one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// host:port over TCP.
    Tcp { host: String, port: u16 },
    /// A Unix socket: the directory and port (socket file `.s.PGSQL.<port>`).
    Unix { dir: PathBuf, port: u16 },
}

impl Endpoint {
    /// The socket file of a Unix address.
    pub(crate) fn socket_path(dir: &std::path::Path, port: u16) -> PathBuf {
        dir.join(format!(".s.PGSQL.{port}"))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix { dir, port } => {
                write!(f, "{}", Endpoint::socket_path(dir, *port).display())
            }
        }
    }
}

/// The Unix socket directory used when an entry names no host:
/// /var/run/postgresql when it exists (Debian's), else /tmp.
fn default_socket_dir() -> PathBuf {
    let debian = PathBuf::from("/var/run/postgresql");
    if debian.is_dir() {
        debian
    } else {
        PathBuf::from("/tmp")
    }
}

impl Database {
    /// The endpoints of the entry, in the order of its host list: each
    /// host (a name or address, or a socket directory when it starts with
    /// `/`) with the entry's port; without a host, the default Unix socket
    /// directory. Never empty. Which of them a pool uses is the routing's
    /// choice, not the entry's.
    pub(crate) fn endpoints(&self) -> Vec<Endpoint> {
        let hosts: Vec<&str> = self
            .host
            .as_deref()
            .map(|h| {
                h.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        // One port for every host, or one per host (checked at load).
        let port = |i: usize| self.ports.get(i).copied().unwrap_or(self.port);
        let endpoint = |(i, host): (usize, &&str)| match *host {
            dir if dir.starts_with('/') => Endpoint::Unix {
                dir: PathBuf::from(dir),
                port: port(i),
            },
            host => Endpoint::Tcp {
                host: host.to_string(),
                port: port(i),
            },
        };
        match hosts.as_slice() {
            [] => vec![Endpoint::Unix {
                dir: default_socket_dir(),
                port: self.port,
            }],
            hosts => hosts.iter().enumerate().map(endpoint).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_list_gives_endpoints_in_order() {
        let mut db = Database::new("d");
        db.host = Some("10.0.0.1, /run/pg,db.example.com,".into());
        db.port = 5433;
        assert_eq!(
            db.endpoints(),
            vec![
                Endpoint::Tcp {
                    host: "10.0.0.1".into(),
                    port: 5433
                },
                Endpoint::Unix {
                    dir: "/run/pg".into(),
                    port: 5433
                },
                Endpoint::Tcp {
                    host: "db.example.com".into(),
                    port: 5433
                },
            ]
        );
        assert_eq!(db.endpoints()[1].to_string(), "/run/pg/.s.PGSQL.5433");
        db.ports = vec![1, 2, 3];
        let ports: Vec<String> = db.endpoints().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            ports,
            ["10.0.0.1:1", "/run/pg/.s.PGSQL.2", "db.example.com:3"]
        );
        db.host = None;
        assert!(matches!(
            db.endpoints()[..],
            [Endpoint::Unix { port: 5433, .. }]
        ));
    }
}
