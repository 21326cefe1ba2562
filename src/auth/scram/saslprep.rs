//! SASLprep (RFC 4013) of passwords, as PostgreSQL applies it before
//! deriving SCRAM keys: the normalized form when SASLprep accepts the
//! password, the raw bytes when it rejects it (prohibited characters).
//! The `stringprep` crate (also used by postgres-protocol) does the work.

use std::borrow::Cow;

/// The bytes PostgreSQL feeds to Hi() for `password`.
pub(crate) fn normalize(password: &str) -> Cow<'_, [u8]> {
    match stringprep::saslprep(password) {
        Ok(Cow::Borrowed(s)) => Cow::Borrowed(s.as_bytes()),
        Ok(Cow::Owned(s)) => Cow::Owned(s.into_bytes()),
        Err(_) => Cow::Borrowed(password.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_unchanged() {
        assert_eq!(normalize("pencil").as_ref(), b"pencil");
    }

    #[test]
    fn mapping_and_nfkc() {
        // Non-ASCII space and a soft hyphen: the mapping step.
        assert_eq!(normalize("a\u{00A0}b\u{00AD}c").as_ref(), b"a bc");
        // Full-width letters change under NFKC.
        assert_eq!(
            normalize("\u{FF50}\u{FF41}\u{FF53}\u{FF53}").as_ref(),
            b"pass"
        );
        // Prohibited (ASCII control character): PostgreSQL uses the raw bytes.
        assert_eq!(normalize("tab\there").as_ref(), b"tab\there");
    }
}
