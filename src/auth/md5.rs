//! PostgreSQL md5 authentication: the stored `md5<hex>` secret, the salted
//! answer to AuthenticationMD5Password, and its constant-time check.
//!
//! Used both to authenticate clients (auth_type md5) and, through
//! [`md5_response`], to log in to a PostgreSQL server that asks for md5.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::Secret;

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| {
            [
                DIGITS[usize::from(b >> 4)] as char,
                DIGITS[usize::from(b & 0xf)] as char,
            ]
        })
        .collect()
}

/// The stored md5 secret: `"md5" + hex(md5(password || user))`.
pub(crate) fn md5_secret(user: &str, password: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(password.as_bytes());
    md5.update(user.as_bytes());
    format!("md5{}", hex(&md5.finalize()))
}

/// The client's answer to AuthenticationMD5Password:
/// `"md5" + hex(md5(hex_part_of_md5_secret || salt))`. Takes the md5 secret
/// in its `md5...` form (a missing prefix is tolerated).
pub(crate) fn md5_response(md5_secret: &str, salt: [u8; 4]) -> String {
    let hex_part = md5_secret.strip_prefix("md5").unwrap_or(md5_secret);
    let mut md5 = Md5::new();
    md5.update(hex_part.as_bytes());
    md5.update(salt);
    format!("md5{}", hex(&md5.finalize()))
}

/// Constant-time check of a client's md5 answer (the PasswordMessage body; a
/// trailing NUL is ignored) against a stored secret. Plain and Md5 secrets
/// can be checked; a Scram secret cannot and gives `false`.
pub(crate) fn verify_md5_response(
    secret: &Secret,
    user: &str,
    salt: [u8; 4],
    response: &[u8],
) -> bool {
    let expected = match secret {
        Secret::Plain(password) => md5_response(&md5_secret(user, password), salt),
        Secret::Md5(stored) => md5_response(&stored.to_ascii_lowercase(), salt),
        Secret::Scram(_) => return false,
    };
    let response = response.strip_suffix(b"\0").unwrap_or(response);
    expected.as_bytes().ct_eq(response).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::md5_hash;

    const SALT: [u8; 4] = [0x2a, 0x3d, 0x8f, 0xe0];

    #[test]
    fn secret_vector() {
        assert_eq!(
            md5_secret("postgres", "postgres"),
            "md53175bce1d3201d16594cebf9d7eb3f9d"
        );
    }

    #[test]
    fn response_matches_postgres_protocol() {
        let secret = md5_secret("md5_user", "password");
        let response = md5_response(&secret, SALT);
        assert_eq!(response, "md562af4dd09bbb41884907a838a3233294");
        assert_eq!(response, md5_hash(b"md5_user", b"password", SALT));
        assert_eq!(md5_response(&secret[3..], SALT), response);
    }

    #[test]
    fn verify_against_plain_and_md5() {
        let response = md5_hash(b"alice", b"s3cret", SALT);
        let plain = Secret::Plain("s3cret".into());
        let md5 = Secret::parse(
            &md5_secret("alice", "s3cret")
                .to_uppercase()
                .replacen("MD5", "md5", 1),
        );
        for secret in [&plain, &md5] {
            assert!(verify_md5_response(
                secret,
                "alice",
                SALT,
                response.as_bytes()
            ));
            let with_nul = format!("{response}\0");
            assert!(verify_md5_response(
                secret,
                "alice",
                SALT,
                with_nul.as_bytes()
            ));
            assert!(!verify_md5_response(
                secret,
                "alice",
                [0; 4],
                response.as_bytes()
            ));
            assert!(!verify_md5_response(secret, "alice", SALT, b"md5"));
        }
        // A Plain secret is hashed with the user name; an Md5 one already contains it.
        assert!(!verify_md5_response(
            &plain,
            "bob",
            SALT,
            response.as_bytes()
        ));
        // A Plain secret is hashed with the user name; an Md5 one already contains it.
        assert!(!verify_md5_response(
            &plain,
            "bob",
            SALT,
            response.as_bytes()
        ));
        let wrong = md5_hash(b"alice", b"wrong", SALT);
        assert!(!verify_md5_response(
            &plain,
            "alice",
            SALT,
            wrong.as_bytes()
        ));
        let scram = Secret::Scram(crate::auth::ScramSecret::from_password(
            "s3cret", b"salt", 1,
        ));
        assert!(!verify_md5_response(
            &scram,
            "alice",
            SALT,
            response.as_bytes()
        ));
    }
}
