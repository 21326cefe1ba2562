//! Password secrets as stored in auth_file (and pg_authid): plain text,
//! `md5<hex>` or `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.

use std::fmt;

/// A stored secret. `Debug` never prints the secret itself.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plain-text password.
    Plain(String),
    /// `md5` followed by 32 lowercase hex digits: md5(password || username).
    Md5(String),
    /// A SCRAM-SHA-256 verifier.
    Scram(ScramSecret),
}

/// A parsed SCRAM-SHA-256 verifier (RFC 5803 form, as in pg_authid).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// The raw salt (base64-decoded).
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Plain(_) => f.write_str("Secret::Plain(<redacted>)"),
            Secret::Md5(_) => f.write_str("Secret::Md5(<redacted>)"),
            Secret::Scram(_) => f.write_str("Secret::Scram(<redacted>)"),
        }
    }
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScramSecret(iterations={}, <redacted>)", self.iterations)
    }
}
