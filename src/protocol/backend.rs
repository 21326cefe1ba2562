//! Writers for the server-side (backend) messages the pooler makes itself:
//! authentication requests, ParameterStatus, BackendKeyData, ReadyForQuery,
//! ErrorResponse/NoticeResponse, NegotiateProtocolVersion and the result-set
//! messages the admin console needs.
//!
//! postgres-protocol writes only frontend messages, so these are written here
//! in its shape: each appends to a `BytesMut` and back-patches the length.

use bytes::{BufMut, BytesMut};

/// Start a message of type `tag`; returns the offset of its length field.
#[inline]
fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

/// Back-patch the length of the message whose length field is at `at`.
#[inline]
fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

/// AuthenticationOk.
pub(crate) fn authentication_ok(buf: &mut BytesMut) {
    let at = begin(buf, b'R');
    buf.put_i32(0);
    finish(buf, at);
}

/// AuthenticationCleartextPassword.
pub(crate) fn authentication_cleartext(buf: &mut BytesMut) {
    let at = begin(buf, b'R');
    buf.put_i32(3);
    finish(buf, at);
}

/// AuthenticationMD5Password with a salt.
pub(crate) fn authentication_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    let at = begin(buf, b'R');
    buf.put_i32(5);
    buf.put_slice(&salt);
    finish(buf, at);
}

/// AuthenticationSASL listing the mechanisms.
pub(crate) fn authentication_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(buf, b'R');
    buf.put_i32(10);
    for m in mechanisms {
        put_cstr(buf, m);
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// AuthenticationSASLContinue.
pub(crate) fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_i32(11);
    buf.put_slice(data);
    finish(buf, at);
}

/// AuthenticationSASLFinal.
pub(crate) fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_i32(12);
    buf.put_slice(data);
    finish(buf, at);
}

/// ParameterStatus.
pub(crate) fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, b'S');
    put_cstr(buf, name);
    put_cstr(buf, value);
    finish(buf, at);
}

/// BackendKeyData.
pub(crate) fn backend_key_data(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
    let at = begin(buf, b'K');
    buf.put_i32(process_id);
    buf.put_i32(secret_key);
    finish(buf, at);
}

/// ReadyForQuery with a transaction status (`I`, `T` or `E`).
pub(crate) fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let at = begin(buf, b'Z');
    buf.put_u8(status);
    finish(buf, at);
}

/// NegotiateProtocolVersion: the newest minor version of 3 we support and
/// the protocol options we did not recognise.
pub(crate) fn negotiate_protocol_version(buf: &mut BytesMut, minor: i32, unrecognized: &[String]) {
    let at = begin(buf, b'v');
    buf.put_i32(minor);
    buf.put_i32(unrecognized.len() as i32);
    for o in unrecognized {
        put_cstr(buf, o);
    }
    finish(buf, at);
}

/// Severity of an ErrorResponse / NoticeResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// The session ends after this error.
    Fatal,
    /// The current command failed; the session goes on.
    Error,
    /// A notice.
    Notice,
    /// A warning notice.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "FATAL",
            Severity::Error => "ERROR",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
        }
    }
}

/// ErrorResponse (or NoticeResponse for Notice/Warning) with severity,
/// SQLSTATE and message.
pub(crate) fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: super::SqlState,
    message: &str,
) {
    let tag = match severity {
        Severity::Fatal | Severity::Error => b'E',
        Severity::Notice | Severity::Warning => b'N',
    };
    let at = begin(buf, tag);
    for field in [b'S', b'V'] {
        buf.put_u8(field);
        put_cstr(buf, severity.as_str());
    }
    buf.put_u8(b'C');
    put_cstr(buf, code.as_str());
    buf.put_u8(b'M');
    put_cstr(buf, message);
    buf.put_u8(0);
    finish(buf, at);
}

/// A column of a RowDescription: name and type OID (all text format).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column<'a> {
    /// Column name.
    pub name: &'a str,
    /// Type OID (25 text, 20 int8, 23 int4, 16 bool, ...).
    pub type_oid: u32,
}

/// RowDescription for text-format columns.
pub(crate) fn row_description(buf: &mut BytesMut, columns: &[Column<'_>]) {
    let at = begin(buf, b'T');
    buf.put_i16(columns.len() as i16);
    for c in columns {
        put_cstr(buf, c.name);
        buf.put_i32(0); // table oid
        buf.put_i16(0); // column number
        buf.put_u32(c.type_oid);
        let size: i16 = match c.type_oid {
            16 => 1,
            20 => 8,
            23 => 4,
            _ => -1,
        };
        buf.put_i16(size);
        buf.put_i32(-1); // type modifier
        buf.put_i16(0); // text format
    }
    finish(buf, at);
}

/// DataRow of text values (`None` = NULL).
pub(crate) fn data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
    let at = begin(buf, b'D');
    buf.put_i16(values.len() as i16);
    for v in values {
        match v {
            Some(v) => {
                buf.put_i32(v.len() as i32);
                buf.put_slice(v.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    finish(buf, at);
}

/// CommandComplete with a tag such as `SHOW` or `SELECT 3`.
pub(crate) fn command_complete(buf: &mut BytesMut, tag: &str) {
    let at = begin(buf, b'C');
    put_cstr(buf, tag);
    finish(buf, at);
}

/// EmptyQueryResponse.
pub(crate) fn empty_query_response(buf: &mut BytesMut) {
    let at = begin(buf, b'I');
    finish(buf, at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::message::backend::{ErrorFields, Message};

    #[test]
    fn error_response_parses_with_postgres_protocol() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            crate::protocol::sqlstate::INVALID_PASSWORD,
            "password authentication failed",
        );
        match Message::parse(&mut buf).unwrap().unwrap() {
            Message::ErrorResponse(body) => {
                let mut fields: ErrorFields<'_> = body.fields();
                let mut seen = Vec::new();
                while let Some(f) = fields.next().unwrap() {
                    seen.push((
                        f.type_(),
                        String::from_utf8_lossy(f.value_bytes()).to_string(),
                    ));
                }
                assert!(seen.contains(&(b'C', "28P01".into())));
                assert!(seen.contains(&(b'S', "FATAL".into())));
                assert!(seen.contains(&(b'M', "password authentication failed".into())));
            }
            _ => panic!("not an ErrorResponse"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn login_messages_parse_with_postgres_protocol() {
        let mut buf = BytesMut::new();
        authentication_ok(&mut buf);
        parameter_status(&mut buf, "server_version", "15.4");
        backend_key_data(&mut buf, 7, -9);
        ready_for_query(&mut buf, b'I');
        assert!(matches!(
            Message::parse(&mut buf).unwrap(),
            Some(Message::AuthenticationOk)
        ));
        match Message::parse(&mut buf).unwrap() {
            Some(Message::ParameterStatus(p)) => {
                assert_eq!(p.name().unwrap(), "server_version");
                assert_eq!(p.value().unwrap(), "15.4");
            }
            _ => panic!("not ParameterStatus"),
        }
        match Message::parse(&mut buf).unwrap() {
            Some(Message::BackendKeyData(k)) => {
                assert_eq!((k.process_id(), k.secret_key()), (7, -9));
            }
            _ => panic!("not BackendKeyData"),
        }
        match Message::parse(&mut buf).unwrap() {
            Some(Message::ReadyForQuery(r)) => assert_eq!(r.status(), b'I'),
            _ => panic!("not ReadyForQuery"),
        }
    }

    #[test]
    fn result_set_parses_with_postgres_protocol() {
        let mut buf = BytesMut::new();
        let cols = [
            Column {
                name: "database",
                type_oid: 25,
            },
            Column {
                name: "cl_active",
                type_oid: 20,
            },
        ];
        row_description(&mut buf, &cols);
        data_row(&mut buf, &[Some("db"), None]);
        command_complete(&mut buf, "SHOW");
        match Message::parse(&mut buf).unwrap() {
            Some(Message::RowDescription(r)) => {
                let names: Vec<String> = r
                    .fields()
                    .map(|f| Ok(f.name().to_string()))
                    .collect()
                    .unwrap();
                assert_eq!(names, ["database", "cl_active"]);
            }
            _ => panic!("not RowDescription"),
        }
        match Message::parse(&mut buf).unwrap() {
            Some(Message::DataRow(d)) => {
                let vals: Vec<Option<Vec<u8>>> = d
                    .ranges()
                    .map(|r| Ok(r.map(|r| d.buffer()[r].to_vec())))
                    .collect()
                    .unwrap();
                assert_eq!(vals, [Some(b"db".to_vec()), None]);
            }
            _ => panic!("not DataRow"),
        }
        assert!(matches!(
            Message::parse(&mut buf).unwrap(),
            Some(Message::CommandComplete(_))
        ));
    }
}
