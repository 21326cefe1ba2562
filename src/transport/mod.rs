//! Transport: the byte streams the pooler speaks PostgreSQL over, on both
//! legs. One [`Stream`] type for TCP and Unix-domain sockets (TLS will be
//! one more variant), with readiness that stays right for a stream that
//! buffers bytes of its own; taking a socket off a shard's reactor and
//! putting it on another's (parked clients, servers moving between
//! shards); where clients connect from ([`Peer`]) and where servers listen
//! ([`Endpoint`]); binding the listeners; and the parker, which watches
//! the sockets of parked clients.
//!
//! What it does not own: the protocol spoken over a stream (`protocol`),
//! sessions (`registry`, `client`).

mod endpoint;
pub mod listen;
pub mod parker;
mod peer;
#[cfg(test)]
mod read_ahead;
mod socket;
mod stream;

pub use endpoint::Endpoint;
pub use peer::Peer;
pub use socket::{DetachedSocket, Socket, SocketRead, SocketWrite, UnixPeer};
pub use stream::{Detached, ReadHalf, Stream, WriteHalf};
