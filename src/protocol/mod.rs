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
