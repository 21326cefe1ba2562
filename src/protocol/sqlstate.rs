//! SQLSTATEs: the [`SqlState`] type, and the codes the pooler reports
//! itself (PostgreSQL's Appendix A).

/// A SQLSTATE: five ASCII letters or digits, held inline (no allocation),
/// whether the pooler chose it or PostgreSQL sent it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SqlState([u8; 5]);

impl SqlState {
    /// A code known when compiling (panics, at compile time in a
    /// constant, unless it is five ASCII letters or digits).
    pub const fn new(code: &str) -> SqlState {
        match SqlState::from_bytes(code.as_bytes()) {
            Some(s) => s,
            None => panic!("a SQLSTATE is five ASCII letters or digits"),
        }
    }

    /// A code read at run time (PostgreSQL's ErrorResponse); None unless
    /// it is five ASCII letters or digits.
    pub fn parse(code: &str) -> Option<SqlState> {
        SqlState::from_bytes(code.as_bytes())
    }

    const fn from_bytes(b: &[u8]) -> Option<SqlState> {
        if b.len() != 5 {
            return None;
        }
        let mut i = 0;
        while i < 5 {
            if !b[i].is_ascii_alphanumeric() {
                return None;
            }
            i += 1;
        }
        Some(SqlState([b[0], b[1], b[2], b[3], b[4]]))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Five ASCII letters or digits (checked when made).
        std::str::from_utf8(&self.0).unwrap_or("XX000")
    }

    /// Its class: the first two characters.
    pub fn class(&self) -> &str {
        &self.as_str()[..2]
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlState({})", self.as_str())
    }
}

impl PartialEq<&str> for SqlState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// 00000 successful_completion (the code of a notice that is no error).
pub(crate) const SUCCESSFUL_COMPLETION: SqlState = SqlState::new("00000");
/// 08P01 protocol_violation.
pub(crate) const PROTOCOL_VIOLATION: SqlState = SqlState::new("08P01");
/// 08006 connection_failure.
pub(crate) const CONNECTION_FAILURE: SqlState = SqlState::new("08006");
/// 28P01 invalid_password.
pub(crate) const INVALID_PASSWORD: SqlState = SqlState::new("28P01");
/// 28000 invalid_authorization_specification.
pub(crate) const INVALID_AUTHORIZATION: SqlState = SqlState::new("28000");
/// 3D000 invalid_catalog_name (unknown database).
pub(crate) const INVALID_CATALOG_NAME: SqlState = SqlState::new("3D000");
/// 53300 too_many_connections.
pub(crate) const TOO_MANY_CONNECTIONS: SqlState = SqlState::new("53300");
/// 57P01 admin_shutdown.
pub(crate) const ADMIN_SHUTDOWN: SqlState = SqlState::new("57P01");
/// 0A000 feature_not_supported.
pub(crate) const FEATURE_NOT_SUPPORTED: SqlState = SqlState::new("0A000");
/// invalid_sql_statement_name: a prepared statement that does not exist.
pub(crate) const INVALID_SQL_STATEMENT_NAME: SqlState = SqlState::new("26000");
/// 57014 query_canceled (used for wait timeouts).
pub(crate) const QUERY_CANCELED: SqlState = SqlState::new("57014");
/// XX000 internal_error.
pub(crate) const INTERNAL_ERROR: SqlState = SqlState::new("XX000");
/// 57P05 idle_session_timeout: PostgreSQL's own code for a session closed
/// for idling outside a transaction (client_idle_timeout).
pub(crate) const IDLE_SESSION_TIMEOUT: SqlState = SqlState::new("57P05");
/// 57P03 cannot_connect_now (a database disabled with DISABLE).
pub(crate) const CANNOT_CONNECT_NOW: SqlState = SqlState::new("57P03");
/// F0000 config_file_error (RELOAD of an invalid file).
pub(crate) const CONFIG_FILE_ERROR: SqlState = SqlState::new("F0000");
/// 55P02 cant_change_runtime_param (SET refused).
pub(crate) const CANT_CHANGE_RUNTIME_PARAM: SqlState = SqlState::new("55P02");
/// 55000 object_not_in_prerequisite_state (RESUME when not paused).
pub(crate) const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState::new("55000");
/// 42P05 duplicate_prepared_statement.
pub(crate) const DUPLICATE_PREPARED_STATEMENT: SqlState = SqlState::new("42P05");
/// 22023 invalid_parameter_value (a bad startup parameter value).
pub(crate) const INVALID_PARAMETER_VALUE: SqlState = SqlState::new("22023");
/// 42601 syntax_error.
pub(crate) const SYNTAX_ERROR: SqlState = SqlState::new("42601");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_five_letters_or_digits() {
        assert_eq!(PROTOCOL_VIOLATION.as_str(), "08P01");
        assert_eq!(PROTOCOL_VIOLATION.class(), "08");
        assert_eq!(SqlState::parse("57P01"), Some(ADMIN_SHUTDOWN));
        for bad in ["", "5701", "57P011", "57 01", "57P0\u{e9}"] {
            assert_eq!(SqlState::parse(bad), None, "{bad:?}");
        }
        assert_eq!(format!("{QUERY_CANCELED}"), "57014");
    }
}
