//! Transport: the byte streams the pooler speaks PostgreSQL over, on both
//! legs. One [`Stream`] type for TCP and Unix-domain sockets (TLS will be
//! one more variant), with readiness that stays right for a stream that
//! buffers bytes of its own; taking a socket off a shard's reactor and
//! putting it on another's (parked clients, servers moving between
//! shards); where clients connect from ([`Peer`]) and connecting to where
//! servers listen ([`connect`] a `config::Endpoint`); binding the
//! listeners; and the parker, which watches the sockets of parked clients.
//!
//! What it does not own: the protocol spoken over a stream (`protocol`),
//! sessions (`registry`, `client`).

pub mod listen;
pub(crate) mod parker;
mod peer;
#[cfg(test)]
mod read_ahead;
mod socket;
mod stream;

pub use peer::Peer;
pub use socket::{DetachedSocket, Socket, SocketRead, SocketWrite, UnixPeer};
pub use stream::{Detached, ReadHalf, Stream, WriteHalf};

/// Open a stream to `endpoint` (TCP with TCP_NODELAY: the pooler writes
/// whole batches).
pub async fn connect(endpoint: &crate::config::Endpoint) -> std::io::Result<Stream> {
    use crate::config::Endpoint;
    match endpoint {
        Endpoint::Tcp { host, port } => {
            let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            s.set_nodelay(true)?;
            Ok(Stream::from(s))
        }
        Endpoint::Unix { dir, port } => {
            let path = Endpoint::socket_path(dir, *port);
            Ok(Stream::from(tokio::net::UnixStream::connect(path).await?))
        }
    }
}
