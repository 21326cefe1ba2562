//! Transport: the byte streams the pooler speaks PostgreSQL over, on both
//! legs. One [`Stream`] type for TCP and Unix-domain sockets and TLS over
//! them (`tls`), with readiness that stays right for a stream that
//! buffers bytes of its own; taking a socket off a shard's reactor and
//! putting it on another's (parked clients, servers moving between
//! shards); where clients connect from ([`Peer`]) and connecting to where
//! servers listen ([`connect`] a `config::Endpoint`); binding the
//! listeners; and the parker, which watches the sockets of parked clients.
//!
//! What it does not own: the protocol spoken over a stream (`protocol`),
//! sessions (`registry`, `client`).

mod connect;
pub mod listen;
pub(crate) mod parker;
mod peer;
#[cfg(test)]
mod read_ahead;
mod socket;
mod stream;
mod sys;
mod tcp_options;
mod tls;

pub use connect::{connect, connect_tls};
pub use peer::Peer;
pub use socket::{DetachedSocket, Socket, SocketRead, SocketWrite, UnixPeer};
pub use stream::{Detached, ReadHalf, Stream, WriteHalf};
pub use tcp_options::TcpOptions;
pub use tls::{HANDSHAKES, Handshakes, TlsHalf, TlsStream};
