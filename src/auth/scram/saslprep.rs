//! SASLprep (RFC 4013) of passwords, as PostgreSQL and postgres-protocol apply it.
//!
//! postgres-protocol 0.6 keeps its `normalize` private, and Unicode NFKC
//! tables are not among our dependencies. So: ASCII passwords (the common
//! case) are exact, because SASLprep leaves printable ASCII unchanged and a
//! password it rejects (ASCII control characters) is used raw by PostgreSQL.
//! For other passwords we try the RFC 4013 mapping step (non-ASCII spaces to
//! U+0020, "commonly mapped to nothing" removed) and the raw bytes, and confirm
//! the candidate against postgres-protocol's own SCRAM client, which does full
//! SASLprep: a cheap one-iteration exchange shows whether both derive the same
//! key. When neither candidate matches (the password changes under NFKC) the
//! caller is told, see [`normalize`].

use std::borrow::Cow;

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use subtle::ConstantTimeEq;

use super::{b64, b64_decode_32, client_key, h, hi, hmac, xor};

/// RFC 3454 table C.1.2: non-ASCII space characters, mapped to U+0020.
fn non_ascii_space(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200B}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// RFC 3454 table B.1: characters commonly mapped to nothing.
fn mapped_to_nothing(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{034F}' | '\u{1806}' | '\u{180B}'..='\u{180D}' | '\u{200B}'..='\u{200D}'
            | '\u{2060}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
    )
}

/// The RFC 4013 mapping step alone (no NFKC, no prohibition checks).
pub(crate) fn mapped(password: &str) -> Vec<u8> {
    password
        .chars()
        .map(|c| if non_ascii_space(c) { ' ' } else { c })
        .filter(|&c| !mapped_to_nothing(c))
        .collect::<String>()
        .into_bytes()
}

/// The bytes PostgreSQL feeds to Hi() for `password`, or `None` when they
/// cannot be reproduced here (a non-ASCII password that NFKC changes).
pub(crate) fn normalize(password: &str) -> Option<Cow<'_, [u8]>> {
    if password.is_ascii() {
        return Some(Cow::Borrowed(password.as_bytes()));
    }
    let mapped = mapped(password);
    if matches_postgres_protocol(password, &mapped) {
        return Some(Cow::Owned(mapped));
    }
    if matches_postgres_protocol(password, password.as_bytes()) {
        return Some(Cow::Borrowed(password.as_bytes()));
    }
    None
}

/// [`normalize`], falling back to the mapping step when the exact form is unknown.
pub(crate) fn normalize_best_effort(password: &str) -> Cow<'_, [u8]> {
    normalize(password).unwrap_or_else(|| Cow::Owned(mapped(password)))
}

/// One exchange of postgres-protocol's SCRAM client against a made-up server.
pub(crate) struct Exchange {
    /// The client, waiting for a server-final-message.
    pub client: ScramSha256,
    /// The AuthMessage both sides sign.
    pub auth_message: String,
    /// The ClientProof the client sent.
    pub proof: [u8; 32],
}

/// Runs postgres-protocol's client (full SASLprep) for `password` against a
/// server-first-message with `salt` and `iterations`.
pub(crate) fn postgres_protocol_exchange(
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Option<Exchange> {
    let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let first = std::str::from_utf8(client.message()).ok()?;
    let client_nonce = first.strip_prefix("n,,n=,r=")?.to_owned();
    let server_first = format!(
        "r={client_nonce}{},s={},i={iterations}",
        super::nonce(),
        b64(salt)
    );
    client.update(server_first.as_bytes()).ok()?;
    let last = std::str::from_utf8(client.message()).ok()?;
    let (without_proof, proof) = last.rsplit_once(",p=")?;
    let proof = b64_decode_32(proof)?;
    let auth_message = format!("n=,r={client_nonce},{server_first},{without_proof}");
    Some(Exchange {
        client,
        auth_message,
        proof,
    })
}

/// Whether postgres-protocol derives the same keys from `password` as we do from `candidate`.
fn matches_postgres_protocol(password: &str, candidate: &[u8]) -> bool {
    let salt = b"saslprep-check";
    let Some(ex) = postgres_protocol_exchange(password, salt, 1) else {
        return false;
    };
    let ck = client_key(&hi(candidate, salt, 1));
    let signature = hmac(&h(&ck), &[ex.auth_message.as_bytes()]);
    xor(&ex.proof, &signature).ct_eq(&ck).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_unchanged() {
        assert_eq!(normalize("pencil").unwrap().as_ref(), b"pencil");
        assert_eq!(normalize("tab\there").unwrap().as_ref(), b"tab\there");
    }

    #[test]
    fn non_ascii_candidates_are_confirmed() {
        // Already NFKC: unchanged.
        assert_eq!(
            normalize("pässwörd").unwrap().as_ref(),
            "pässwörd".as_bytes()
        );
        // Non-ASCII space and a soft hyphen: the mapping step.
        assert_eq!(normalize("a\u{00A0}b\u{00AD}c").unwrap().as_ref(), b"a bc");
        // Prohibited after mapping (private use): PostgreSQL uses the raw bytes.
        assert_eq!(
            normalize("x\u{E000}\u{00A0}").unwrap().as_ref(),
            "x\u{E000}\u{00A0}".as_bytes()
        );
        // Full-width letters change under NFKC: not reproducible here.
        assert!(normalize("\u{FF50}\u{FF41}\u{FF53}\u{FF53}").is_none());
    }
}
