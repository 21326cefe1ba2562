//! The auth_file (`userlist.txt`): `"user" "secret"` lines, read into a map
//! from user name to [`Secret`]. Also turns a stored secret string into a
//! [`Secret`] ([`parse_secret`]) the way PostgreSQL classifies pg_authid
//! values. This module does not authenticate anyone.
//!
//! Format (PgBouncer's): one user a line; both fields in double quotes, `""`
//! inside quotes is one quote; anything after the second field is ignored;
//! blank lines and lines starting with `;` or `#` are skipped. A later line
//! for the same user replaces an earlier one.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::{ConfigError, ConfigErrors};
use crate::auth::{ScramSecret, Secret};

/// Reads and parses an auth_file. Every malformed line is reported.
#[cfg(test)]
pub(crate) fn load_userlist(path: &Path) -> Result<HashMap<String, Secret>, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let msg = format!("could not read auth_file: {e}");
        ConfigErrors(vec![ConfigError::new(path, 0, "auth_file", msg)])
    })?;
    parse_userlist(&text, path)
}

/// Parses auth_file text; `path` is only used in error messages.
pub(crate) fn parse_userlist(
    text: &str,
    path: &Path,
) -> Result<HashMap<String, Secret>, ConfigErrors> {
    let mut users = HashMap::new();
    let mut errors = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let s = raw.trim_start();
        if s.is_empty() || s.starts_with(';') || s.starts_with('#') {
            continue;
        }
        match parse_line(s) {
            Ok((user, secret)) => {
                users.insert(user, parse_secret(&secret));
            }
            Err(msg) => errors.push(ConfigError::new(path, idx + 1, "auth_file", msg)),
        }
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Splits one line into its user name and secret.
fn parse_line(s: &str) -> Result<(String, String), String> {
    let Some(rest) = s.strip_prefix('"') else {
        return Err("expected a double-quoted user name".into());
    };
    let (user, rest) = quoted(rest).ok_or("unterminated quoted user name")?;
    // Like PgBouncer, skip to the next quote.
    let Some(start) = rest.find('"') else {
        return Err(format!("missing quoted secret for user {user:?}"));
    };
    let (secret, _ignored) = quoted(&rest[start + 1..])
        .ok_or_else(|| format!("unterminated secret for user {user:?}"))?;
    Ok((user, secret))
}

/// Reads up to the closing quote (`""` is a literal quote); returns the
/// field and the text after it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            out.push(c);
        } else if matches!(chars.peek(), Some((_, '"'))) {
            chars.next();
            out.push('"');
        } else {
            return Some((out, &s[i + 1..]));
        }
    }
    None
}

/// Classifies a stored secret as PostgreSQL does: `md5` + 32 lowercase hex
/// digits is MD5 (kept whole, prefix included); a well-formed
/// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` is SCRAM; anything
/// else, including a malformed SCRAM string, is a plain-text password.
pub(crate) fn parse_secret(s: &str) -> Secret {
    if let Some(hex) = s.strip_prefix("md5")
        && hex.len() == 32
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Secret::Md5(s.to_string());
    }
    match parse_scram(s) {
        Some(scram) => Secret::Scram(scram),
        None => Secret::Plain(s.to_string()),
    }
}

fn parse_scram(s: &str) -> Option<ScramSecret> {
    let rest = s.strip_prefix("SCRAM-SHA-256$")?;
    let (iter_salt, keys) = rest.split_once('$')?;
    let (iter, salt) = iter_salt.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    if !iter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let iterations = iter.parse::<u32>().ok().filter(|n| *n > 0)?;
    let salt = STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?;
    Some(ScramSecret {
        iterations,
        salt,
        stored_key: key32(stored)?,
        server_key: key32(server)?,
    })
}

fn key32(b64: &str) -> Option<[u8; 32]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn hash_password_line_parses_back_as_a_scram_secret() {
        let line = crate::auth::mkauth::userlist_line("a\"b", "s3cret pass");
        let users =
            parse_userlist(&line, std::path::Path::new("userlist.txt")).expect("valid line");
        let Some(crate::auth::Secret::Scram(s)) = users.get("a\"b") else {
            panic!("not a SCRAM secret: {line}")
        };
        assert_eq!((s.iterations, s.salt.len()), (4096, 16));
        let again = crate::auth::ScramSecret::from_password("s3cret pass", &s.salt, 4096);
        assert_eq!(again.stored_key, s.stored_key);
        assert_eq!(again.server_key, s.server_key);
        assert!(!line.contains("s3cret"));
    }

    /// The verifier the brief supplied as PostgreSQL's for "pencil". It is
    /// well formed (4096 iterations, 12-byte salt, two 32-byte keys) but its
    /// keys do NOT derive from "pencil" (checked with Python's hashlib too),
    /// so it is only used for decoding.
    const PENCIL: &str = "SCRAM-SHA-256$4096:QSXCR+Q6sek8bf92$6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzzA=:YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM=";

    fn scram(s: &str) -> ScramSecret {
        match parse_secret(s) {
            Secret::Scram(x) => x,
            other => panic!("not scram: {other:?}"),
        }
    }

    #[test]
    fn brief_scram_fixture_decodes() {
        let x = scram(PENCIL);
        assert_eq!(x.iterations, 4096);
        assert_eq!(x.salt.len(), 12);
        assert_eq!(STANDARD.encode(&x.salt), "QSXCR+Q6sek8bf92");
        assert_eq!(
            STANDARD.encode(x.stored_key),
            "6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzzA="
        );
        assert_eq!(
            STANDARD.encode(x.server_key),
            "YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM="
        );
    }

    /// A genuine verifier for "pencil" with RFC 7677's salt and iteration
    /// count; with RFC 7677's nonces its ServerKey yields the RFC's server
    /// signature `6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=`.
    pub(crate) const RFC7677_PENCIL: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    /// The keys really derive from "pencil" (RFC 5802 key derivation), so
    /// the fixture is a genuine verifier, not just well-formed base64.
    #[test]
    fn genuine_scram_verifier_matches_its_password() {
        use hmac::{KeyInit, Mac};
        use sha2::{Digest, Sha256};
        let x = scram(RFC7677_PENCIL);
        assert_eq!(x.salt.len(), 16);
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pencil", &x.salt, x.iterations, &mut salted);
        let hmac = |msg: &[u8]| {
            let mut m =
                <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&salted).expect("any key size");
            m.update(msg);
            m.finalize().into_bytes()
        };
        let stored: [u8; 32] = Sha256::digest(hmac(b"Client Key")).into();
        let server: [u8; 32] = hmac(b"Server Key").into();
        assert_eq!(stored, x.stored_key);
        assert_eq!(server, x.server_key);
    }

    #[test]
    fn md5_and_plain_secrets() {
        let md5 = "md545f2603610af569b6155c45067268c6b";
        assert_eq!(parse_secret(md5), Secret::Md5(md5.into()));
        for plain in [
            "1234",
            "",
            "md545F2603610AF569B6155C45067268C6B", // uppercase hex: not md5
            "md5abc",
            "SCRAM-SHA-256$4096:QSXCR+Q6sek8bf92$short:YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM=",
            "SCRAM-SHA-256$0:QSXCR+Q6sek8bf92$6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzzA=:YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM=",
            "SCRAM-SHA-256$x:QSXCR+Q6sek8bf92$6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzzA=:YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM=",
            "SCRAM-SHA-256$4096:!!$6ZpxW6/uGa6cVI8Qye7Ctad2EjqP6qsY/N2wPb/pzzA=:YhxrUafK7dHU9tqc/e3VRwO7RaU1EHSpgQhzaEFN/xM=",
            "SCRAM-SHA-256$4096:QSXCR+Q6sek8bf92",
        ] {
            assert_eq!(parse_secret(plain), Secret::Plain(plain.into()), "{plain}");
        }
    }

    #[test]
    fn userlist_with_quotes_comments_and_all_secret_forms() {
        let text = format!(
            "; comment\n# another\n\n\"alice\" \"pa\"\"ss\"\n  \"bob\" \"md545f2603610af569b6155c45067268c6b\" extra fields\n\
             \"ca\"\"rol\" \"{PENCIL}\"\n\"alice\" \"second wins\"\n\"empty\" \"\"\n"
        );
        let users = parse_userlist(&text, Path::new("u.txt")).expect("valid");
        assert_eq!(users.len(), 4);
        assert_eq!(users["alice"], Secret::Plain("second wins".into()));
        assert!(matches!(&users["bob"], Secret::Md5(s) if s.len() == 35));
        assert_eq!(
            scram(PENCIL),
            match &users["ca\"rol"] {
                Secret::Scram(x) => x.clone(),
                other => panic!("{other:?}"),
            }
        );
        assert_eq!(users["empty"], Secret::Plain(String::new()));
        let users = parse_userlist("\"a\"\"\" \"x\"", Path::new("u")).expect("valid");
        assert!(users.contains_key("a\""));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let text = "\"ok\" \"1\"\nbare words\n\"open\n\"nosecret\"\n\"u\" \"unterminated\n";
        let errs = parse_userlist(text, Path::new("/etc/u.txt")).expect_err("malformed");
        let lines: Vec<usize> = errs.0.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5]);
        assert!(
            errs.0[0]
                .to_string()
                .starts_with("/etc/u.txt:2: auth_file: ")
        );
    }

    #[test]
    fn load_userlist_reports_unreadable_file() {
        let errs = load_userlist(Path::new("/nonexistent/userlist.txt")).expect_err("missing");
        assert_eq!(errs.0[0].key, "auth_file");
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("u.txt");
        std::fs::write(&p, "\"x\" \"y\"\n").expect("write");
        assert_eq!(
            load_userlist(&p).expect("ok")["x"],
            Secret::Plain("y".into())
        );
    }
}
