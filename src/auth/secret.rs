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

/// Prefix of a SCRAM-SHA-256 verifier.
const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

impl Secret {
    /// Parses an auth_file / pg_authid secret: `md5` + 32 hex digits -> `Md5`
    /// (lowercased), a well-formed
    /// `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>` ->
    /// `Scram`, anything else (including a malformed verifier) -> `Plain`.
    pub fn parse(s: &str) -> Secret {
        if let Some(hex) = s.strip_prefix("md5")
            && hex.len() == 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Secret::Md5(s.to_ascii_lowercase());
        }
        match ScramSecret::parse(s) {
            Some(scram) => Secret::Scram(scram),
            None => Secret::Plain(s.to_owned()),
        }
    }
}

impl ScramSecret {
    /// A verifier no password matches, for running the exchange of a user
    /// that does not exist: PostgreSQL's default iteration count, random
    /// keys, no key derivation (a stored verifier is read, not derived, so
    /// the two take the same time), and a salt that is the same at every
    /// attempt for the same name, as a real user's is (HMAC of the name
    /// under a key made at startup, like PostgreSQL's mock salt): a salt
    /// that changed between attempts would tell that the user is unknown.
    pub fn throwaway(user: &str) -> ScramSecret {
        static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(rand::random);
        let salt = crate::auth::scram::hmac(key, &[b"pgsluice mock salt", user.as_bytes()]);
        ScramSecret {
            iterations: 4096,
            salt: salt[..16].to_vec(),
            stored_key: rand::random(),
            server_key: rand::random(),
        }
    }

    /// Parses `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>`;
    /// `None` unless every part is well formed (iterations >= 1, non-empty
    /// salt, 32-byte keys).
    pub fn parse(s: &str) -> Option<ScramSecret> {
        let rest = s.strip_prefix(SCRAM_PREFIX)?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        if !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let iterations = iterations.parse::<u32>().ok().filter(|&i| i >= 1)?;
        let salt = crate::auth::scram::b64_decode(salt).filter(|s| !s.is_empty())?;
        Some(ScramSecret {
            iterations,
            salt,
            stored_key: crate::auth::scram::b64_decode_32(stored_key)?,
            server_key: crate::auth::scram::b64_decode_32(server_key)?,
        })
    }

    /// Builds a verifier from a cleartext password (SASLprep-normalized) with
    /// the given salt and iteration count.
    pub(crate) fn from_password(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
        let normalized = crate::auth::scram::saslprep::normalize(password);
        Self::from_normalized(&normalized, salt, iterations)
    }

    fn from_normalized(normalized: &[u8], salt: &[u8], iterations: u32) -> ScramSecret {
        use crate::auth::scram::{client_key, h, hi, server_key};
        let salted = hi(normalized, salt, iterations);
        ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: h(&client_key(&salted)),
            server_key: server_key(&salted),
        }
    }

    /// The verifier in pg_authid / auth_file form (contains key material:
    /// do not log it).
    pub(crate) fn to_verifier_string(&self) -> String {
        use crate::auth::scram::b64;
        format!(
            "{SCRAM_PREFIX}{}:{}${}:{}",
            self.iterations,
            b64(&self.salt),
            b64(&self.stored_key),
            b64(&self.server_key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_users_salt_is_stable_and_its_own() {
        let a = ScramSecret::throwaway("ghost");
        assert_eq!(a.salt, ScramSecret::throwaway("ghost").salt);
        assert_ne!(a.salt, ScramSecret::throwaway("phantom").salt);
        assert_eq!((a.salt.len(), a.iterations), (16, 4096));
    }

    const PG_VERIFIER: &str = "SCRAM-SHA-256$4096:QSXCR+Q6sek8bf92$6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzzA=:YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM=";

    #[test]
    fn parse_three_forms() {
        assert_eq!(Secret::parse("hunter2"), Secret::Plain("hunter2".into()));
        let md5 = "md53175BCE1D3201D16594CEBF9D7EB3F9D";
        assert_eq!(Secret::parse(md5), Secret::Md5(md5.to_ascii_lowercase()));
        let Secret::Scram(scram) = Secret::parse(PG_VERIFIER) else {
            panic!("not scram")
        };
        assert_eq!((scram.iterations, scram.salt.len()), (4096, 12));
        assert_eq!(scram.to_verifier_string(), PG_VERIFIER);
    }

    #[test]
    fn malformed_is_plain() {
        for s in [
            "md5abc",
            "md53175bce1d3201d16594cebf9d7eb3f9dx",
            "md53175bce1d3201d16594cebf9d7eb3fzz",
            "SCRAM-SHA-256$4096:QSXCR+Q6sek8bf92$6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzzA=",
            "SCRAM-SHA-256$0:QSXCR+Q6sek8bf92$6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzzA=:YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM=",
            "SCRAM-SHA-256$4096:QSXCR+Q6sek8bf92$6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzz=:YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM=",
            "SCRAM-SHA-256$4096:!!$6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzzA=:YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM=",
        ] {
            assert_eq!(Secret::parse(s), Secret::Plain(s.into()), "{s}");
        }
    }

    #[test]
    fn from_password_round_trips_through_parse() {
        let secret = ScramSecret::from_password("pencil", b"salt1234", 4096);
        assert_eq!(
            Secret::parse(&secret.to_verifier_string()),
            Secret::Scram(secret.clone())
        );
    }
}
