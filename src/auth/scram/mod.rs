//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it.
//!
//! This module owns the shared primitives (H, HMAC, Hi, XOR, nonces), the error
//! type, the proven-key type handed from the server side to the client side,
//! and re-exports the two state machines: [`ScramServer`] authenticates
//! clients, [`ScramClient`] logs in to PostgreSQL. Both are sans-IO: they take
//! and return SASL message bodies; the session code moves the bytes and wraps
//! them in AuthenticationSASL* / SASLInitialResponse / SASLResponse messages.
//!
//! `binding` computes `tls-server-end-point` data for SCRAM-SHA-256-PLUS.

pub(crate) mod binding;
pub(crate) mod client;
mod message;
pub(crate) mod saslprep;
pub(crate) mod server;
#[cfg(test)]
mod tests;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};

pub use client::{ScramClient, ScramCredentials};
pub use server::ScramServer;

/// The SASL mechanism with channel binding, offered over TLS.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// The channel binding type pgsluice (and PostgreSQL) supports.
pub(crate) const TLS_SERVER_END_POINT: &str = "tls-server-end-point";

/// The SASL mechanism name PostgreSQL advertises for SCRAM-SHA-256.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Iteration count used when the pooler builds a verifier itself
/// (PostgreSQL's default `scram_iterations`).
pub(crate) const DEFAULT_ITERATIONS: u32 = 4096;

/// Salt length used when the pooler builds a verifier itself (as PostgreSQL).
pub(crate) const DEFAULT_SALT_LEN: usize = 16;

/// Random bytes per nonce; base64 makes 24 printable characters, no commas.
const NONCE_BYTES: usize = 18;

/// Keys a client proved during a SCRAM login. The pooler reuses them to log in
/// to PostgreSQL when PostgreSQL holds the same verifier (same salt and
/// iteration count), so it never needs the cleartext password.
#[derive(Clone)]
pub struct ScramKeys {
    /// HMAC(SaltedPassword, "Client Key"), recovered as ClientProof XOR ClientSignature.
    pub client_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key"), from the verifier.
    pub server_key: [u8; 32],
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

/// Why a SCRAM exchange failed. Messages never contain secrets, proofs or
/// message contents sent by the peer (except a server's `e=` error code).
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// A method was called in the wrong state (e.g. final before first).
    #[error("scram message out of order")]
    OutOfOrder,
    /// The peer's message does not follow the RFC 5802 grammar.
    #[error("malformed scram message: {0}")]
    Malformed(&'static str),
    /// Channel binding as PostgreSQL refuses it: a type other than
    /// `tls-server-end-point`, `p` without TLS or with the plain mechanism,
    /// the PLUS mechanism without `p`, or `y` when PLUS was offered (a
    /// downgrade). The text is PostgreSQL's message.
    #[error("{0}")]
    ChannelBinding(&'static str),
    /// The client sent an authorization identity (`a=`), which PostgreSQL does not support.
    #[error("scram authorization identity is not supported")]
    AuthzidUnsupported,
    /// The peer sent a mandatory extension (`m=`) we do not understand.
    #[error("unsupported mandatory scram extension")]
    MandatoryExtension,
    /// The nonce in a message does not match the one negotiated.
    #[error("scram nonce mismatch")]
    NonceMismatch,
    /// The channel-binding echo in client-final-message differs from the gs2 header.
    #[error("scram channel binding mismatch")]
    ChannelBindingMismatch,
    /// The client's proof is wrong: wrong password (or wrong verifier).
    #[error("scram authentication failed: invalid proof")]
    InvalidProof,
    /// The server's signature is wrong: the server does not know the verifier.
    #[error("scram authentication failed: invalid server signature")]
    InvalidServerSignature,
    /// The server ended the exchange with `e=<code>` (sanitized, truncated).
    #[error("server reported scram error: {0}")]
    Server(String),
}

/// H(data) = SHA-256.
pub(crate) fn h(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Hi(password, salt, i) = PBKDF2-HMAC-SHA-256 with a 32-byte output.
pub(crate) fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    out
}

/// Byte-wise XOR of two 32-byte strings.
pub(crate) fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// ClientKey = HMAC(SaltedPassword, "Client Key").
pub(crate) fn client_key(salted_password: &[u8; 32]) -> [u8; 32] {
    hmac(salted_password, &[b"Client Key"])
}

/// ServerKey = HMAC(SaltedPassword, "Server Key").
pub(crate) fn server_key(salted_password: &[u8; 32]) -> [u8; 32] {
    hmac(salted_password, &[b"Server Key"])
}

/// Fills `buf` from rand's thread-local CSPRNG (ChaCha, seeded and
/// periodically reseeded from the operating system).
pub(crate) fn random_bytes(buf: &mut [u8]) {
    rand::rng().fill_bytes(buf);
}

/// A fresh nonce: 18 random bytes, base64 (printable, never a comma).
pub(crate) fn nonce() -> String {
    let mut buf = [0u8; NONCE_BYTES];
    random_bytes(&mut buf);
    b64(&buf)
}

/// Standard base64 with padding, as SCRAM uses.
pub(crate) fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes standard base64; `None` when invalid.
pub(crate) fn b64_decode(data: &str) -> Option<Vec<u8>> {
    STANDARD.decode(data).ok()
}

/// Decodes standard base64 that must hold exactly 32 bytes.
pub(crate) fn b64_decode_32(data: &str) -> Option<[u8; 32]> {
    b64_decode(data)?.try_into().ok()
}
