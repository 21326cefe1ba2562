//! The PostgreSQL wire protocol as the pooler needs it: parsing what clients
//! send (`frontend`), writing the server-side messages the pooler makes
//! itself (`backend`), SQLSTATE codes, and header scanning for the relay.
//!
//! Messages sent by PostgreSQL are parsed with `postgres_protocol` where a
//! full parse is needed; this module does not duplicate that.

pub(crate) mod backend;
pub(crate) mod frontend;
pub(crate) mod replication;
pub(crate) mod sqlstate;

pub(crate) use frontend::{ProtocolError, Startup};
pub(crate) use replication::Replication;
pub(crate) use sqlstate::SqlState;

/// SSLRequest code.
pub(crate) const SSL_REQUEST_CODE: i32 = 80_877_103;
/// GSSENCRequest code.
pub(crate) const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// CancelRequest code.
pub(crate) const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Largest startup packet accepted, as in PostgreSQL (MAX_STARTUP_PACKET_LENGTH).
pub(crate) const MAX_STARTUP_PACKET: usize = 10_000;

/// The header of a tagged message: its type byte and its length field
/// (which counts itself but not the tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Message type byte.
    pub tag: u8,
    /// Length field: body length + 4.
    pub len: u32,
}

impl Header {
    /// Read a header from the start of `buf`, if five bytes are there.
    #[inline]
    pub(crate) fn parse(buf: &[u8]) -> Option<Header> {
        if buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        Some(Header { tag: buf[0], len })
    }

    /// Total size of the message on the wire (tag + length + body).
    #[inline]
    pub(crate) fn total(&self) -> usize {
        self.len as usize + 1
    }

    /// Check the length field against the protocol minimum, and the whole
    /// message (its type byte too, as PgBouncer counts it) against `max`
    /// (max_packet_size): a length field of 2^31-1 is refused at once
    /// under the default limit of 2^31-1, not waited for.
    #[inline]
    pub(crate) fn check(&self, max: u32) -> Result<(), ProtocolError> {
        if self.len < 4 {
            return Err(ProtocolError::BadLength {
                tag: self.tag,
                len: self.len,
            });
        }
        if self.len >= max {
            return Err(ProtocolError::TooLong {
                tag: self.tag,
                len: self.len,
                max,
            });
        }
        Ok(())
    }
}

/// A BackendKeyData (the key a CancelRequest names): PostgreSQL gives one
/// to each server connection, the pooler its own to each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendKey {
    /// Backend process id.
    pub process_id: i32,
    /// Secret key.
    pub secret_key: i32,
}

/// The two lowest bits of a client key's last byte: how many more times a
/// cancel request may be forwarded between peers (PgBouncer's layout).
const PEER_TTL: i32 = 0x03;

/// Peering (`peer_id`) as PgBouncer 1.21+ encodes it in the keys it gives
/// clients, so that peers of either kind forward each other's cancel
/// requests: the key's 2nd and 3rd bytes (of the process id, big-endian)
/// hold the peer id, low byte first, and its last byte's two lowest bits
/// a forwarding TTL, 3 in a key given out.
impl BackendKey {
    /// This key given out by peer `peer_id`, with a full TTL.
    pub fn with_peer(self, peer_id: u16) -> BackendKey {
        let [low, high] = peer_id.to_le_bytes();
        let id = (self.process_id as u32 & 0xff00_00ff)
            | (u32::from(low) << 16)
            | (u32::from(high) << 8);
        BackendKey {
            process_id: id as i32,
            secret_key: self.secret_key | PEER_TTL,
        }
    }

    /// The peer id the key names.
    pub fn peer_id(self) -> u16 {
        let id = self.process_id as u32;
        u16::from_le_bytes([(id >> 16) as u8, (id >> 8) as u8])
    }

    /// Forwards left.
    pub fn ttl(self) -> i32 {
        self.secret_key & PEER_TTL
    }

    /// The key with one forward fewer (the TTL must not be 0).
    pub fn forwarded(self) -> BackendKey {
        BackendKey {
            secret_key: (self.secret_key & !PEER_TTL) | (self.ttl() - 1),
            ..self
        }
    }

    /// The key as this peer gave it out (a full TTL).
    pub fn as_given(self) -> BackendKey {
        BackendKey {
            secret_key: self.secret_key | PEER_TTL,
            ..self
        }
    }
}

#[cfg(test)]
mod peer_key_tests {
    use super::BackendKey;

    #[test]
    fn the_peer_id_and_ttl_sit_where_pgbouncer_puts_them() {
        let k = BackendKey {
            process_id: 0x7abb_ccdd,
            secret_key: 0x1122_3344,
        }
        .with_peer(0x0102);
        // Bytes of the key: 7a 02 01 dd | 11 22 33 47.
        assert_eq!(k.process_id.to_be_bytes(), [0x7a, 0x02, 0x01, 0xdd]);
        assert_eq!(k.secret_key.to_be_bytes()[3], 0x47);
        assert_eq!(k.peer_id(), 0x0102);
        assert_eq!(k.ttl(), 3);
        let once = k.forwarded();
        assert_eq!((once.ttl(), once.peer_id()), (2, 0x0102));
        assert_eq!(once.forwarded().forwarded().ttl(), 0);
        assert_eq!(once.as_given(), k);
        assert!(k.process_id >= 0, "a peer id never sets the sign bit");
    }
}
