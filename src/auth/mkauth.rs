//! `pgsluice --hash-password USER`: an auth_file line with a SCRAM-SHA-256
//! verifier made from a password, like PgBouncer's mkauth tool. The keys
//! are derived by the same code that checks client logins
//! ([`ScramSecret::from_password`]: SASLprep, PBKDF2, 4096 iterations, a
//! random 16-byte salt), so PostgreSQL accepts the verifier as a role
//! password too.

use super::scram::{DEFAULT_ITERATIONS, DEFAULT_SALT_LEN, random_bytes};
use super::secret::ScramSecret;

/// The verifier for `password` with a fresh random salt.
pub fn scram_verifier(password: &str) -> String {
    let mut salt = [0u8; DEFAULT_SALT_LEN];
    random_bytes(&mut salt);
    ScramSecret::from_password(password, &salt, DEFAULT_ITERATIONS).to_verifier_string()
}

/// One auth_file line: `"USER" "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"`
/// (a `"` inside the user name is doubled, as userlist.txt quotes it).
pub fn userlist_line(user: &str, password: &str) -> String {
    format!(
        "\"{}\" \"{}\"",
        user.replace('"', "\"\""),
        scram_verifier(password)
    )
}

/// The password from the first line of `input`, without its line end
/// (`\n` or `\r\n`); `None` when the input is empty.
pub fn password_from_line(input: &str) -> Option<&str> {
    if input.is_empty() {
        return None;
    }
    let line = input.split('\n').next().unwrap_or("");
    Some(line.strip_suffix('\r').unwrap_or(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_are_random() {
        assert_ne!(scram_verifier("x"), scram_verifier("x"));
    }

    #[test]
    fn first_line_without_its_end() {
        assert_eq!(password_from_line("pw\n"), Some("pw"));
        assert_eq!(password_from_line("pw\r\nmore\n"), Some("pw"));
        assert_eq!(password_from_line("pw"), Some("pw"));
        assert_eq!(password_from_line("\n"), Some(""));
        assert_eq!(password_from_line(""), None);
    }
}
