//! Strict parsers for the four SCRAM messages (RFC 5802 section 7 grammar).
//!
//! Each parser checks attribute order, printable nonces, base64 fields and
//! the `m=` mandatory-extension rule, and borrows from the input. Errors name
//! what was wrong, never the offending bytes.

use super::{ScramError, b64_decode, b64_decode_32};

type Result<T> = std::result::Result<T, ScramError>;

/// The gs2 channel-binding flag of a client-first-message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gs2Flag<'a> {
    /// `n`: the client does not do channel binding.
    No,
    /// `y`: the client could, but thinks the server cannot.
    ClientOnly,
    /// `p=<type>`: the client binds to the channel with `<type>`.
    Binding(&'a str),
}

/// Parsed client-first-message.
pub(super) struct ClientFirst<'a> {
    /// The gs2 header including its trailing comma (`n,,`, `y,,`,
    /// `p=tls-server-end-point,,`).
    pub gs2_header: &'a str,
    /// Its channel-binding flag.
    pub flag: Gs2Flag<'a>,
    /// client-first-message-bare (`n=...,r=...[,ext]`), part of AuthMessage.
    pub bare: &'a str,
    /// The client's nonce.
    pub nonce: &'a str,
}

/// Parsed server-first-message.
pub(super) struct ServerFirst<'a> {
    /// Client nonce followed by the server's nonce.
    pub nonce: &'a str,
    /// The decoded salt.
    pub salt: Vec<u8>,
    /// The iteration count (at least 1).
    pub iterations: u32,
}

/// Parsed client-final-message.
pub(super) struct ClientFinal<'a> {
    /// The decoded channel-binding echo (`c=`).
    pub channel_binding: Vec<u8>,
    /// The combined nonce.
    pub nonce: &'a str,
    /// client-final-message-without-proof, part of AuthMessage.
    pub without_proof: &'a str,
    /// The decoded ClientProof.
    pub proof: [u8; 32],
}

/// Parsed server-final-message.
pub(super) enum ServerFinal<'a> {
    /// `v=`: the decoded ServerSignature (length unchecked).
    Verifier(Vec<u8>),
    /// `e=`: the server's error code.
    Error(&'a str),
}

/// UTF-8 without NUL, as every SCRAM message must be.
pub(super) fn text(data: &[u8]) -> Result<&str> {
    let s = std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not valid utf-8"))?;
    if s.contains('\0') {
        return Err(ScramError::Malformed("contains a nul byte"));
    }
    Ok(s)
}

/// The value of `part` when it is `<name>=<value>`. A mandatory extension
/// (`m=`) where another attribute was due is reported as such.
fn attr<'a>(part: Option<&'a str>, name: char, what: &'static str) -> Result<&'a str> {
    let part = part.ok_or(ScramError::Malformed(what))?;
    if name != 'm' && part.starts_with("m=") {
        return Err(ScramError::MandatoryExtension);
    }
    let mut chars = part.chars();
    match (chars.next(), chars.next()) {
        (Some(n), Some('=')) if n == name => Ok(&part[2..]),
        _ => Err(ScramError::Malformed(what)),
    }
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E, at least one character.
fn check_nonce(nonce: &str) -> Result<()> {
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(ScramError::Malformed("invalid nonce"));
    }
    Ok(())
}

/// Optional trailing extensions: `ALPHA "=" 1*value-char`, never `m=`.
fn check_extensions<'a>(parts: impl Iterator<Item = &'a str>) -> Result<()> {
    for part in parts {
        let b = part.as_bytes();
        if b.len() < 3 || !b[0].is_ascii_alphabetic() || b[1] != b'=' {
            return Err(ScramError::Malformed("invalid extension attribute"));
        }
        if b[0] == b'm' {
            return Err(ScramError::MandatoryExtension);
        }
    }
    Ok(())
}

/// RFC 5802 `saslname`: `=` only as `=2C` or `=3D`. Empty is allowed
/// because PostgreSQL clients send `n=` (the user comes from the startup packet).
fn check_saslname(name: &str) -> Result<()> {
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        let esc = rest.get(i + 1..i + 3);
        if esc != Some("2C") && esc != Some("3D") {
            return Err(ScramError::Malformed("invalid username encoding"));
        }
        rest = &rest[i + 3..];
    }
    Ok(())
}

/// Parses a client-first-message (`gs2-header client-first-message-bare`).
pub(super) fn client_first(data: &[u8]) -> Result<ClientFirst<'_>> {
    let msg = text(data)?;
    let (flag, rest) = msg
        .split_once(',')
        .ok_or(ScramError::Malformed("missing gs2 header"))?;
    let flag = match flag {
        "n" => Gs2Flag::No,
        "y" => Gs2Flag::ClientOnly,
        f if f.starts_with("p=") && f.len() > 2 => Gs2Flag::Binding(&f[2..]),
        _ => return Err(ScramError::Malformed("invalid channel binding flag")),
    };
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("missing gs2 header"))?;
    if authzid.starts_with("a=") {
        return Err(ScramError::AuthzidUnsupported);
    } else if !authzid.is_empty() {
        return Err(ScramError::Malformed("invalid authorization identity"));
    }
    let gs2_header = &msg[..msg.len() - bare.len()];
    let mut parts = bare.split(',');
    check_saslname(attr(parts.next(), 'n', "missing username")?)?;
    let nonce = attr(parts.next(), 'r', "missing nonce")?;
    check_nonce(nonce)?;
    check_extensions(parts)?;
    Ok(ClientFirst {
        gs2_header,
        flag,
        bare,
        nonce,
    })
}

/// Parses a server-first-message (`r=...,s=...,i=...[,ext]`).
pub(super) fn server_first(data: &[u8]) -> Result<ServerFirst<'_>> {
    let mut parts = text(data)?.split(',');
    let nonce = attr(parts.next(), 'r', "missing nonce")?;
    check_nonce(nonce)?;
    let salt = attr(parts.next(), 's', "missing salt")?;
    let salt = b64_decode(salt)
        .filter(|s| !s.is_empty())
        .ok_or(ScramError::Malformed("invalid salt"))?;
    let iterations = attr(parts.next(), 'i', "missing iteration count")?;
    let iterations = iterations
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| iterations.parse::<u32>().ok())
        .flatten()
        .filter(|&i| i >= 1)
        .ok_or(ScramError::Malformed("invalid iteration count"))?;
    check_extensions(parts)?;
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// Parses a client-final-message (`c=...,r=...[,ext],p=...`).
pub(super) fn client_final(data: &[u8]) -> Result<ClientFinal<'_>> {
    let msg = text(data)?;
    let (without_proof, proof) = msg
        .rsplit_once(",p=")
        .ok_or(ScramError::Malformed("missing proof"))?;
    let proof = b64_decode_32(proof).ok_or(ScramError::Malformed("invalid proof encoding"))?;
    let mut parts = without_proof.split(',');
    let cbind = attr(parts.next(), 'c', "missing channel binding")?;
    let channel_binding =
        b64_decode(cbind).ok_or(ScramError::Malformed("invalid channel binding"))?;
    let nonce = attr(parts.next(), 'r', "missing nonce")?;
    check_nonce(nonce)?;
    check_extensions(parts)?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// Parses a server-final-message (`v=...[,ext]` or `e=...[,ext]`).
pub(super) fn server_final(data: &[u8]) -> Result<ServerFinal<'_>> {
    let mut parts = text(data)?.split(',');
    let first = parts.next().unwrap_or_default();
    if let Some(code) = first.strip_prefix("e=") {
        return Ok(ServerFinal::Error(code));
    }
    let verifier = attr(Some(first), 'v', "missing server signature")?;
    let verifier = b64_decode(verifier).ok_or(ScramError::Malformed("invalid server signature"))?;
    check_extensions(parts)?;
    Ok(ServerFinal::Verifier(verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_rules() {
        let m = client_first(b"n,,n=,r=abc").unwrap();
        assert_eq!((m.gs2_header, m.bare, m.nonce), ("n,,", "n=,r=abc", "abc"));
        assert!(client_first(b"y,,n=u=2Cx,r=abc,x=ext").is_ok());
        let err = |d: &[u8]| client_first(d).err().unwrap();
        let p = client_first(b"p=tls-server-end-point,,n=,r=a").unwrap();
        assert_eq!(p.flag, Gs2Flag::Binding("tls-server-end-point"));
        assert_eq!(p.gs2_header, "p=tls-server-end-point,,");
        assert!(matches!(err(b"p=,,n=,r=a"), ScramError::Malformed(_)));
        assert!(matches!(
            err(b"n,a=bob,n=,r=a"),
            ScramError::AuthzidUnsupported
        ));
        assert!(matches!(
            err(b"n,,m=x,n=,r=a"),
            ScramError::MandatoryExtension
        ));
        assert!(matches!(err(b"n,,r=a,n="), ScramError::Malformed(_)));
        assert!(matches!(err(b"n,,n=,r="), ScramError::Malformed(_)));
        assert!(matches!(err(b"n,,n=,r=a b"), ScramError::Malformed(_)));
        assert!(matches!(err(b"n,,n=a=b,r=a"), ScramError::Malformed(_)));
        assert!(matches!(err(b"x,,n=,r=a"), ScramError::Malformed(_)));
        assert!(matches!(err(b"n,,n=,r=a\0"), ScramError::Malformed(_)));
        assert!(matches!(
            err(b"n,,n=,r=a,m=x"),
            ScramError::MandatoryExtension
        ));
    }

    #[test]
    fn server_first_rules() {
        let m = server_first(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096").unwrap();
        assert_eq!((m.nonce, m.iterations, m.salt.len()), ("abcdef", 4096, 12));
        assert!(server_first(b"r=ab,s=QSXC,i=0").is_err());
        assert!(server_first(b"r=ab,s=QSXC,i=+1").is_err());
        assert!(server_first(b"r=ab,s=QSXC,i=99999999999").is_err());
        assert!(server_first(b"r=ab,s=!!,i=1").is_err());
        assert!(server_first(b"r=ab,i=1,s=QSXC").is_err());
    }

    #[test]
    fn final_messages() {
        let p = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let msg = format!("c=biws,r=abc,p={p}");
        let m = client_final(msg.as_bytes()).unwrap();
        assert_eq!((m.nonce, m.without_proof), ("abc", "c=biws,r=abc"));
        assert_eq!(m.channel_binding, b"n,,");
        assert!(client_final(b"c=biws,r=abc,p=AAAA").is_err());
        assert!(client_final(format!("r=abc,c=biws,p={p}").as_bytes()).is_err());
        assert!(matches!(
            server_final(b"e=invalid-proof"),
            Ok(ServerFinal::Error("invalid-proof"))
        ));
        assert!(matches!(
            server_final(b"v=AAAA"),
            Ok(ServerFinal::Verifier(_))
        ));
        assert!(server_final(b"x=AAAA").is_err());
    }
}
