//! StartTLS (RFC 4511 section 4.14) for `ldaptls=1`, done here rather than
//! by ldap3: ldap3 0.12 waits forever when the server closes the
//! connection instead of answering the StartTLS request (as a server on an
//! ldaps port does: libldap reports that at once). This sends the one
//! request and reads the one response; ldap3 then runs the TLS handshake on
//! the same socket. Hand-written because it is one fixed request and three
//! fields of one response: BER's definite-length TLVs, nothing more.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The StartTLS OID, RFC 4511.
const OID: &[u8] = b"1.3.6.1.4.1.1466.20037";

/// LDAPMessage { messageID 1, ExtendedRequest [APPLICATION 23] {
/// requestName [0] OID } }.
fn request() -> Vec<u8> {
    let name_len = OID.len() as u8; // 22
    let ext_len = 2 + name_len; // [0] tag, length, OID
    let msg_len = 3 + 2 + ext_len; // messageID TLV, [APPLICATION 23] tag and length
    let mut out = vec![
        0x30, msg_len, 0x02, 0x01, 0x01, 0x77, ext_len, 0x80, name_len,
    ];
    out.extend_from_slice(OID);
    out
}

/// Largest response accepted (a result code and two short strings).
const MAX_RESPONSE: usize = 16 << 10;

/// Send StartTLS on `stream` and wait for its answer: Ok when the server
/// agrees (result code 0), else why not.
pub(super) async fn negotiate(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .write_all(&request())
        .await
        .map_err(|e| format!("StartTLS: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    loop {
        if let Some(answer) = parse(&buf)? {
            return answer;
        }
        if buf.len() > MAX_RESPONSE {
            return Err("StartTLS: response too long".into());
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("StartTLS: {e}"))?;
        if n == 0 {
            return Err("StartTLS: the server closed the connection \
                        (is this port ldaps rather than ldap?)"
                .into());
        }
    }
}

/// A TLV: tag, contents, and the bytes after it.
type Tlv<'a> = (u8, &'a [u8], &'a [u8]);

/// One TLV at the start of `b`, None when `b` is incomplete.
fn tlv(b: &[u8]) -> Result<Option<Tlv<'_>>, String> {
    let (&tag, rest) = match b.split_first() {
        Some(x) => x,
        None => return Ok(None),
    };
    let Some(&first) = rest.first() else {
        return Ok(None);
    };
    let (len, rest) = if first < 0x80 {
        (first as usize, &rest[1..])
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(format!("StartTLS: bad BER length form 0x{first:02x}"));
        }
        if rest.len() < 1 + n {
            return Ok(None);
        }
        let len = rest[1..1 + n]
            .iter()
            .fold(0usize, |acc, &d| (acc << 8) | d as usize);
        (len, &rest[1 + n..])
    };
    if rest.len() < len {
        return Ok(None);
    }
    Ok(Some((tag, &rest[..len], &rest[len..])))
}

/// The answer in `b`, once a whole LDAPMessage is there.
fn parse(b: &[u8]) -> Result<Option<Result<(), String>>, String> {
    let Some((tag, message, _)) = tlv(b)? else {
        return Ok(None);
    };
    let bad = || "StartTLS: malformed response".to_string();
    if tag != 0x30 {
        return Err(bad());
    }
    let (_, _, rest) = tlv(message)?.filter(|t| t.0 == 0x02).ok_or_else(bad)?;
    // ExtendedResponse, [APPLICATION 24]; a Notice of Disconnection
    // (messageID 0) has the same shape.
    let (_, response, _) = tlv(rest)?.filter(|t| t.0 == 0x78).ok_or_else(bad)?;
    let (_, code, rest) = tlv(response)?.filter(|t| t.0 == 0x0a).ok_or_else(bad)?;
    if code.is_empty() || code.len() > 4 {
        return Err(bad());
    }
    let code = code.iter().fold(0u32, |acc, &d| (acc << 8) | d as u32);
    if code == 0 {
        return Ok(Some(Ok(())));
    }
    // matchedDN, then diagnosticMessage.
    let message = tlv(rest)
        .ok()
        .flatten()
        .and_then(|(_, _, rest)| tlv(rest).ok().flatten())
        .map(|(_, text, _)| String::from_utf8_lossy(text).into_owned())
        .unwrap_or_default();
    Ok(Some(Err(format!(
        "StartTLS refused by the server: result code {code} {message}"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_the_rfc_message() {
        let r = request();
        assert_eq!(r.len(), 31);
        assert_eq!(
            &r[..9],
            &[0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16]
        );
        let (tag, body, rest) = tlv(&r).unwrap().unwrap();
        assert_eq!((tag, body.len(), rest.len()), (0x30, 29, 0));
    }

    #[test]
    fn responses() {
        // Success, with the responseName echoed.
        let mut ok = vec![0x30, 0x24, 0x02, 0x01, 0x01, 0x78, 0x1f, 0x0a, 0x01, 0x00];
        ok.extend_from_slice(&[0x04, 0x00, 0x04, 0x00, 0x8a, 0x16]);
        ok.extend_from_slice(OID);
        assert_eq!(parse(&ok).unwrap(), Some(Ok(())));
        // Every prefix is incomplete, not an error.
        for n in 0..ok.len() {
            assert_eq!(parse(&ok[..n]).unwrap(), None, "{n}");
        }
        // Refused (protocolError 2) with a message.
        let refused = [
            0x30, 0x11, 0x02, 0x01, 0x01, 0x78, 0x0c, 0x0a, 0x01, 0x02, 0x04, 0x00, 0x04, 0x05,
            b'n', b'o', b' ', b't', b'l',
        ];
        let e = parse(&refused).unwrap().unwrap().unwrap_err();
        assert!(e.contains("result code 2 no tl"), "{e}");
        // Long-form lengths.
        let long = [
            0x30, 0x81, 0x08, 0x02, 0x01, 0x01, 0x78, 0x03, 0x0a, 0x01, 0x00,
        ];
        assert_eq!(parse(&long).unwrap(), Some(Ok(())));
        // Garbage.
        assert!(parse(&[0x16, 0x03, 0x01, 0x00, 0x00]).is_err());
        assert!(parse(&[0x30, 0x03, 0x04, 0x01, 0x00]).is_err());
        assert!(parse(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
    }
}
