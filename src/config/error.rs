//! Configuration errors: one [`ConfigError`] per problem, naming the file,
//! line and key, and [`ConfigErrors`] holding every problem found in one load.
//!
//! This module owns only the error types; the parsers that produce them live
//! in the sibling modules.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration or auth file.
///
/// Displays as `{file}:{line}: {key}: {message}`, or `{file}: {key}:
/// {message}` when the problem is not tied to one line (a missing section,
/// an unreadable file, a setting left at its default that conflicts with
/// another): no made-up line 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {}: {}", .file.display(), LineOf(*.line), .key, .message)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line number, 0 when unknown.
    pub line: usize,
    /// The setting, database, user or directive concerned.
    pub key: String,
    /// What is wrong, in lowercase.
    pub message: String,
}

impl ConfigError {
    /// Builds an error from its parts.
    pub fn new(
        file: impl AsRef<Path>,
        line: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.as_ref().to_path_buf(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }
}

/// `:{line}`, or nothing for line 0 (not tied to a line).
struct LineOf(usize);

impl fmt::Display for LineOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, ":{n}"),
        }
    }
}

/// Every problem found while loading; validation reports all bad fields,
/// not only the first. Displays one error per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", JoinLines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Formats a list of errors one per line.
struct JoinLines<'a>(&'a [ConfigError]);

impl fmt::Display for JoinLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_and_key() {
        let e = ConfigError::new("/etc/pgbouncer.ini", 7, "listen_port", "invalid integer");
        assert_eq!(
            e.to_string(),
            "/etc/pgbouncer.ini:7: listen_port: invalid integer"
        );
    }

    #[test]
    fn errors_display_one_per_line() {
        let errs = ConfigErrors(vec![
            ConfigError::new("a.ini", 1, "x", "bad"),
            ConfigError::new("a.ini", 0, "y", "worse"),
        ]);
        assert_eq!(errs.to_string(), "a.ini:1: x: bad\na.ini: y: worse");
    }
}
