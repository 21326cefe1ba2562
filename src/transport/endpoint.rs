//! Server endpoints: where a PostgreSQL server listens, and opening a
//! socket to one.

use std::fmt;
use std::io;
use std::path::PathBuf;

use tokio::net::{TcpStream, UnixStream};

use super::Stream;

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
    pub fn socket_path(dir: &std::path::Path, port: u16) -> PathBuf {
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

impl Endpoint {
    /// Open a socket to the endpoint (TCP with TCP_NODELAY: the pooler
    /// writes whole batches).
    pub async fn connect(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                Ok(Stream::from(s))
            }
            Endpoint::Unix { dir, port } => Ok(Stream::from(
                UnixStream::connect(Endpoint::socket_path(dir, *port)).await?,
            )),
        }
    }
}
