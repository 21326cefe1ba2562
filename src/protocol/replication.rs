//! The `replication` startup parameter: an ordinary session, a physical
//! replication connection (walsender for streaming, pg_basebackup,
//! pg_receivewal) or a logical one (`database`: walsender bound to a
//! database, which also runs SQL).

use super::{SqlState, sqlstate};

/// What a client's `replication` startup parameter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replication {
    /// An ordinary session (no parameter, or a false value).
    #[default]
    None,
    /// `replication=true` (or another true value).
    Physical,
    /// `replication=database`.
    Logical,
}

impl Replication {
    /// Parse the parameter's value as PostgreSQL does: `database`, or a
    /// boolean (true/false, yes/no, on/off, 1/0 and their unambiguous
    /// prefixes, any case). A bad value gets PostgreSQL's error.
    pub fn parse(value: &str) -> Result<Replication, (SqlState, String)> {
        if value == "database" {
            return Ok(Replication::Logical);
        }
        match parse_bool(value) {
            Some(true) => Ok(Replication::Physical),
            Some(false) => Ok(Replication::None),
            None => Err((
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("invalid value for parameter \"replication\": \"{value}\""),
            )),
        }
    }

    /// The value the server is sent (and SHOW CLIENTS prints: `none`,
    /// `physical`, `logical` there).
    pub fn startup_value(self) -> &'static str {
        match self {
            Replication::None => "false",
            Replication::Physical => "true",
            Replication::Logical => "database",
        }
    }

    /// The name SHOW CLIENTS and SHOW SERVERS print (PgBouncer's).
    pub fn name(self) -> &'static str {
        match self {
            Replication::None => "none",
            Replication::Physical => "physical",
            Replication::Logical => "logical",
        }
    }
}

/// PostgreSQL's `parse_bool`: a value, or a unique prefix of one, in any
/// case (`o` alone is ambiguous).
fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    let prefix_of = |word: &str| !v.is_empty() && word.starts_with(v.as_str());
    match v.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        "on" => Some(true),
        "of" | "off" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_postgresql_reads_them() {
        for v in ["true", "TRUE", "t", "yes", "y", "on", "1", "tr"] {
            assert_eq!(Replication::parse(v), Ok(Replication::Physical), "{v}");
        }
        for v in ["false", "f", "no", "n", "off", "of", "0", "FALSE"] {
            assert_eq!(Replication::parse(v), Ok(Replication::None), "{v}");
        }
        assert_eq!(Replication::parse("database"), Ok(Replication::Logical));
        for v in ["", "o", "2", "databases", "Database", "yess"] {
            let (code, message) = Replication::parse(v).unwrap_err();
            assert_eq!(code, sqlstate::INVALID_PARAMETER_VALUE);
            assert!(message.contains("\"replication\""), "{message}");
        }
        assert_eq!(Replication::Logical.name(), "logical");
        assert_eq!(Replication::Physical.startup_value(), "true");
    }
}
