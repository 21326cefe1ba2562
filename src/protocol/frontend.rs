//! Parsing of everything a client (frontend) may send: the untagged startup
//! family and every tagged message.
//!
//! postgres-protocol only parses messages sent by the backend, so this is
//! written here in its shape: parsers take `&mut BytesMut`, return
//! `Ok(None)` until a whole message is buffered, and check every length
//! against a maximum before anything is buffered.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;

use super::{
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, Header, MAX_STARTUP_PACKET, SSL_REQUEST_CODE,
};

/// Errors in what a client sent. All of them are protocol violations (08P01)
/// except an unsupported protocol version (0A000).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// A length field below the protocol minimum.
    #[error("invalid message length {len} for message type {}", printable(*tag))]
    BadLength { tag: u8, len: u32 },
    /// A length field above max_packet_size.
    #[error("message of type {} too long: {len} bytes, max_packet_size is {max}", printable(*tag))]
    TooLong { tag: u8, len: u32, max: u32 },
    /// A startup packet with a bad length.
    #[error("invalid length of startup packet: {0}")]
    BadStartupLength(u32),
    /// A protocol version the pooler does not speak.
    #[error("unsupported frontend protocol {}.{}: server supports 3.0 to 3.0", .0 >> 16, .0 & 0xffff)]
    UnsupportedVersion(u32),
    /// A message body that does not parse.
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    /// A message type byte that no client may send.
    #[error("invalid frontend message type {}", printable(*.0))]
    UnknownTag(u8),
}

impl ProtocolError {
    /// The SQLSTATE to report for this error.
    pub(crate) fn sqlstate(&self) -> super::SqlState {
        match self {
            ProtocolError::UnsupportedVersion(_) => super::sqlstate::FEATURE_NOT_SUPPORTED,
            _ => super::sqlstate::PROTOCOL_VIOLATION,
        }
    }
}

fn printable(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("0x{tag:02x}")
    }
}

/// A parsed startup-family packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartupPacket {
    /// SSLRequest.
    SslRequest,
    /// GSSENCRequest.
    GssEncRequest,
    /// CancelRequest with the key from BackendKeyData.
    Cancel { process_id: i32, secret_key: i32 },
    /// StartupMessage for protocol 3.x.
    Startup(Startup),
}

/// A StartupMessage: the requested version and its parameters. The
/// parameters stay in the packet (UTF-8, checked once) and are looked up by
/// offset: a login does not allocate a string per name and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Startup {
    /// Requested minor version of protocol 3 (3.x).
    pub minor: u16,
    /// The packet's parameter area (one allocation: as a `String`, a
    /// parameter is a slice, not a UTF-8 check per look).
    text: String,
    /// Name and value ranges in `text`, in the order sent (`user`,
    /// `database`, `options`, ...); `_pq_.` protocol options are not here.
    params: Vec<[u32; 4]>,
    /// `_pq_.` protocol options the client asked for (none are supported).
    pub protocol_options: Vec<String>,
}

impl Startup {
    /// The parameters in the order sent.
    pub(crate) fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .iter()
            .map(|r| (self.str_at(r[0], r[1]), self.str_at(r[2], r[3])))
    }

    /// The value of a parameter, if sent.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn str_at(&self, from: u32, to: u32) -> &str {
        // Ranges end at NUL bytes: always on character boundaries.
        self.text.get(from as usize..to as usize).unwrap_or("")
    }
}

/// Read one startup-family packet. `Ok(None)` until it is whole.
pub(crate) fn read_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, ProtocolError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_PACKET as u32).contains(&len) {
        return Err(ProtocolError::BadStartupLength(len));
    }
    if buf.len() < len as usize {
        return Ok(None);
    }
    let mut body = buf.split_to(len as usize).freeze();
    body.advance(4);
    let code = body.get_i32();
    match code {
        SSL_REQUEST_CODE if len == 8 => Ok(Some(StartupPacket::SslRequest)),
        GSSENC_REQUEST_CODE if len == 8 => Ok(Some(StartupPacket::GssEncRequest)),
        CANCEL_REQUEST_CODE if len == 16 => Ok(Some(StartupPacket::Cancel {
            process_id: body.get_i32(),
            secret_key: body.get_i32(),
        })),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {
            Err(ProtocolError::BadStartupLength(len))
        }
        _ if (code >> 16) == 3 => parse_startup_params((code & 0xffff) as u16, body)
            .map(|s| Some(StartupPacket::Startup(s))),
        _ => Err(ProtocolError::UnsupportedVersion(code as u32)),
    }
}

fn parse_startup_params(minor: u16, text: Bytes) -> Result<Startup, ProtocolError> {
    const WHAT: &str = "startup";
    let bad = || ProtocolError::Malformed { what: WHAT };
    // Valid as a whole, so is every NUL-separated piece.
    let text = String::from_utf8(text.to_vec()).map_err(|_| bad())?;
    let mut params = Vec::with_capacity(4);
    let mut protocol_options = Vec::new();
    // The packet is at most MAX_STARTUP_PACKET bytes: offsets fit in u32.
    let mut at = 0usize;
    let cstr = |at: &mut usize| -> Result<(u32, u32), ProtocolError> {
        let len = memchr(0, &text.as_bytes()[*at..]).ok_or_else(bad)?;
        let range = (*at as u32, (*at + len) as u32);
        *at += len + 1;
        Ok(range)
    };
    loop {
        let key = cstr(&mut at)?;
        if key.0 == key.1 {
            break;
        }
        let value = cstr(&mut at)?;
        let name = &text[key.0 as usize..key.1 as usize];
        if name.starts_with("_pq_.") {
            protocol_options.push(name.to_string());
        } else {
            params.push([key.0, key.1, value.0, value.1]);
        }
    }
    if at != text.len() {
        return Err(bad());
    }
    Ok(Startup {
        minor,
        text,
        params,
        protocol_options,
    })
}

/// Take a NUL-terminated UTF-8 string from the front of `body`.
pub(crate) fn take_cstr(body: &mut Bytes, what: &'static str) -> Result<String, ProtocolError> {
    let end = memchr(0, body).ok_or(ProtocolError::Malformed { what })?;
    let s = body.split_to(end);
    body.advance(1);
    String::from_utf8(s.to_vec()).map_err(|_| ProtocolError::Malformed { what })
}

fn take_i16(body: &mut Bytes, what: &'static str) -> Result<i16, ProtocolError> {
    if body.remaining() < 2 {
        return Err(ProtocolError::Malformed { what });
    }
    Ok(body.get_i16())
}

fn take_i32(body: &mut Bytes, what: &'static str) -> Result<i32, ProtocolError> {
    if body.remaining() < 4 {
        return Err(ProtocolError::Malformed { what });
    }
    Ok(body.get_i32())
}

/// Take a non-negative count.
fn take_count(body: &mut Bytes, what: &'static str) -> Result<usize, ProtocolError> {
    let n = take_i16(body, what)?;
    usize::try_from(n).map_err(|_| ProtocolError::Malformed { what })
}

/// A tagged message from a client, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrontendMessage {
    /// 'Q' simple query.
    Query(String),
    /// 'P' Parse.
    Parse {
        name: String,
        query: String,
        param_types: Vec<u32>,
    },
    /// 'B' Bind.
    Bind {
        portal: String,
        statement: String,
        param_formats: Vec<i16>,
        params: Vec<Option<Bytes>>,
        result_formats: Vec<i16>,
    },
    /// 'D' Describe of a statement (`b'S'`) or portal (`b'P'`).
    Describe { kind: u8, name: String },
    /// 'E' Execute.
    Execute { portal: String, max_rows: i32 },
    /// 'C' Close of a statement (`b'S'`) or portal (`b'P'`).
    Close { kind: u8, name: String },
    /// 'S' Sync.
    Sync,
    /// 'H' Flush.
    Flush,
    /// 'X' Terminate.
    Terminate,
    /// 'd' CopyData.
    CopyData(Bytes),
    /// 'c' CopyDone.
    CopyDone,
    /// 'f' CopyFail.
    CopyFail(String),
    /// 'F' FunctionCall (kept raw: the pooler only forwards it).
    FunctionCall(Bytes),
    /// 'p' PasswordMessage, SASLInitialResponse or SASLResponse: which one
    /// depends on the authentication exchange, see [`SaslInitialResponse`].
    Password(Bytes),
}

/// Read one tagged message. `Ok(None)` until it is whole; the length is
/// checked against `max_len` before anything more is buffered.
pub(crate) fn read_message(
    buf: &mut BytesMut,
    max_len: u32,
) -> Result<Option<FrontendMessage>, ProtocolError> {
    let Some(header) = Header::parse(buf) else {
        return Ok(None);
    };
    header.check(max_len)?;
    if buf.len() < header.total() {
        buf.reserve(header.total() - buf.len());
        return Ok(None);
    }
    let mut msg = buf.split_to(header.total()).freeze();
    msg.advance(5);
    FrontendMessage::parse(header.tag, msg).map(Some)
}

impl FrontendMessage {
    /// Parse the body of a message of type `tag`.
    pub(crate) fn parse(tag: u8, mut body: Bytes) -> Result<FrontendMessage, ProtocolError> {
        let msg = match tag {
            b'Q' => FrontendMessage::Query(take_cstr(&mut body, "Query")?),
            b'P' => parse_parse(&mut body)?,
            b'B' => parse_bind(&mut body)?,
            b'D' | b'C' => {
                let what = if tag == b'D' { "Describe" } else { "Close" };
                let kind = *body.first().ok_or(ProtocolError::Malformed { what })?;
                if kind != b'S' && kind != b'P' {
                    return Err(ProtocolError::Malformed { what });
                }
                body.advance(1);
                let name = take_cstr(&mut body, what)?;
                if tag == b'D' {
                    FrontendMessage::Describe { kind, name }
                } else {
                    FrontendMessage::Close { kind, name }
                }
            }
            b'E' => FrontendMessage::Execute {
                portal: take_cstr(&mut body, "Execute")?,
                max_rows: take_i32(&mut body, "Execute")?,
            },
            b'S' => FrontendMessage::Sync,
            b'H' => FrontendMessage::Flush,
            b'X' => FrontendMessage::Terminate,
            b'd' => return Ok(FrontendMessage::CopyData(body)),
            b'c' => FrontendMessage::CopyDone,
            b'f' => FrontendMessage::CopyFail(take_cstr(&mut body, "CopyFail")?),
            b'F' => return Ok(FrontendMessage::FunctionCall(body)),
            b'p' => return Ok(FrontendMessage::Password(body)),
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        if body.has_remaining() {
            return Err(ProtocolError::Malformed {
                what: tag_name(tag),
            });
        }
        Ok(msg)
    }
}

/// A name for a frontend message type, for errors and logs.
pub(crate) fn tag_name(tag: u8) -> &'static str {
    match tag {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'D' => "Describe",
        b'E' => "Execute",
        b'C' => "Close",
        b'S' => "Sync",
        b'H' => "Flush",
        b'X' => "Terminate",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        b'F' => "FunctionCall",
        b'p' => "PasswordMessage",
        _ => "unknown",
    }
}

/// Whether `tag` is a message type a client may send after startup.
#[inline]
pub(crate) fn is_frontend_tag(tag: u8) -> bool {
    matches!(
        tag,
        b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'H' | b'X' | b'd' | b'c' | b'f' | b'F'
    )
}

fn parse_parse(body: &mut Bytes) -> Result<FrontendMessage, ProtocolError> {
    const W: &str = "Parse";
    let name = take_cstr(body, W)?;
    let query = take_cstr(body, W)?;
    let n = take_count(body, W)?;
    let mut param_types = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        param_types.push(take_i32(body, W)? as u32);
    }
    Ok(FrontendMessage::Parse {
        name,
        query,
        param_types,
    })
}

fn parse_bind(body: &mut Bytes) -> Result<FrontendMessage, ProtocolError> {
    const W: &str = "Bind";
    let portal = take_cstr(body, W)?;
    let statement = take_cstr(body, W)?;
    let mut param_formats = Vec::new();
    for _ in 0..take_count(body, W)? {
        param_formats.push(take_i16(body, W)?);
    }
    let n = take_count(body, W)?;
    let mut params = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let len = take_i32(body, W)?;
        if len == -1 {
            params.push(None);
        } else {
            let len = usize::try_from(len).map_err(|_| ProtocolError::Malformed { what: W })?;
            if body.remaining() < len {
                return Err(ProtocolError::Malformed { what: W });
            }
            params.push(Some(body.split_to(len)));
        }
    }
    let mut result_formats = Vec::new();
    for _ in 0..take_count(body, W)? {
        result_formats.push(take_i16(body, W)?);
    }
    Ok(FrontendMessage::Bind {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

/// The body of a SASLInitialResponse ('p' during SASL): mechanism and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SaslInitialResponse {
    /// Chosen mechanism, e.g. `SCRAM-SHA-256`.
    pub mechanism: String,
    /// The client-first-message (empty when the client sent length -1).
    pub data: Bytes,
}

impl SaslInitialResponse {
    /// Parse the body of a 'p' message sent in answer to AuthenticationSASL.
    pub(crate) fn parse(mut body: Bytes) -> Result<SaslInitialResponse, ProtocolError> {
        const W: &str = "SASLInitialResponse";
        let mechanism = take_cstr(&mut body, W)?;
        let len = take_i32(&mut body, W)?;
        let data = if len == -1 {
            Bytes::new()
        } else {
            let len = usize::try_from(len).map_err(|_| ProtocolError::Malformed { what: W })?;
            if body.remaining() != len {
                return Err(ProtocolError::Malformed { what: W });
            }
            body.split_to(len)
        };
        Ok(SaslInitialResponse { mechanism, data })
    }
}

/// The body of a cleartext or md5 PasswordMessage: the NUL-terminated password.
pub(crate) fn parse_password(mut body: Bytes) -> Result<String, ProtocolError> {
    let pw = take_cstr(&mut body, "PasswordMessage")?;
    if body.has_remaining() {
        return Err(ProtocolError::Malformed {
            what: "PasswordMessage",
        });
    }
    Ok(pw)
}

#[cfg(test)]
#[path = "frontend_tests.rs"]
mod tests;
