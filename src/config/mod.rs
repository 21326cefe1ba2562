//! Configuration in PgBouncer's format: `pgbouncer.ini` (with `%include`),
//! libpq-style connection strings in `[databases]`, `[users]` overrides and
//! the auth_file (`userlist.txt`), read into a typed [`Config`] with
//! PgBouncer's defaults. Loading reports every problem at once, each naming
//! file, line and key, and warns about settings pgsluice ignores.
//!
//! Module map: `ini` (line lexer, `%include`), `keys` (the `[pgbouncer]`
//! key table), `settings` (value parsers), `general` ([`General`]),
//! `connstr` (connection strings), `databases`, `users`, `peers`,
//! `userlist` (auth_file and secrets), `loader` (putting it together and
//! cross-field validation), `error`.
//!
//! Paths are used as PgBouncer uses them: a relative `%include` file or
//! `auth_file` is relative to the current working directory, not to the
//! config file's directory.
//!
//! This module does not watch files or apply a RELOAD; callers call
//! [`load`] again and compare.

mod connstr;
mod databases;
mod endpoint;
mod error;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod general;
pub mod hba;
mod hba_lex;
mod hosts;
pub mod ident;
mod ini;
mod keys;
pub mod ldap;
pub mod ldap_conf;
mod loader;
mod peers;
mod settings;
mod split;
pub mod tls;
mod tls_build;
mod tls_v1;
mod tls_values;
mod userlist;
mod users;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::auth::Secret;

pub use databases::{DATABASE_KEYS_NOT_YET_IMPLEMENTED, Database, Databases};
pub use endpoint::Endpoint;
pub use error::{ConfigError, ConfigErrors};
pub use general::{General, Setting};
pub use hosts::{LoadBalance, SessionAttrs};
pub use keys::{EXTENSIONS, NOT_YET_IMPLEMENTED, changeable};
#[cfg(test)]
pub(crate) use loader::load_str;
pub use loader::{load, load_with, logfile_of, reload_with};
pub use split::{Fallback, ReadYourWrites, RywScope, Split, SplitOverrides};
pub use tls::{ClientTls, ServerTls, SslMode, Tls};
pub use tls_build::ALPN;
pub use users::{USER_KEYS_NOT_YET_IMPLEMENTED, UserSettings};

/// The admin console's virtual database (a reserved name: never an
/// auth_dbname).
pub const ADMIN_DB: &str = "pgbouncer";

/// A loaded configuration and the warnings produced while loading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// One line per ignored setting, formatted `"{file}:{line}: {key}: {message}"`:
    /// unknown `[pgbouncer]` keys, known keys pgsluice does not implement yet
    /// that are set to a non-default value, and similar notes.
    pub warnings: Vec<String>,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main config file.
    pub file: PathBuf,
    /// `[pgbouncer]`.
    pub general: General,
    /// `[databases]`.
    pub databases: Databases,
    /// `[users]`, by user name.
    pub users: HashMap<String, UserSettings>,
    /// `[peers]`, by peer id.
    pub peers: std::collections::BTreeMap<u16, Endpoint>,
    /// auth_file contents by user name (empty when auth_file is unset).
    pub userlist: HashMap<String, Secret>,
    /// auth_hba_file's rules (auth_type hba; empty otherwise).
    pub hba: hba::Hba,
    /// auth_ldap_options, parsed (auth_type ldap; None otherwise).
    pub ldap: Option<ldap::LdapOptions>,
    /// TLS to LDAP servers (set when an ldap option asks for ldaps or
    /// StartTLS), from ldap.conf and the environment, read at load.
    pub ldap_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// TLS on both legs, built from the `*_tls_*` keys at load.
    pub tls: Tls,
}

/// pool_mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server is linked to a client for the client's whole session.
    Session,
    /// A server is linked to a client for one transaction.
    Transaction,
    /// A server is linked to a client for one statement.
    Statement,
}

impl PoolMode {
    /// The mode for a (case-insensitive) PgBouncer name.
    pub fn from_name(name: &str) -> Option<PoolMode> {
        match name.to_ascii_lowercase().as_str() {
            "session" => Some(PoolMode::Session),
            "transaction" => Some(PoolMode::Transaction),
            "statement" => Some(PoolMode::Statement),
            _ => None,
        }
    }

    /// PgBouncer's name for the mode, as SHOW POOLS prints it.
    pub fn name(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// auth_type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// No authentication; the user name is ignored too.
    Any,
    /// No authentication; the user must be in the auth_file.
    Trust,
    /// Clear-text password.
    Plain,
    /// MD5 (SCRAM for users whose secret is SCRAM).
    Md5,
    /// SCRAM-SHA-256.
    ScramSha256,
    /// TLS client certificate (not supported yet).
    Cert,
    /// Rules from auth_hba_file.
    Hba,
    /// A bind to an LDAP directory with the cleartext password
    /// (auth_ldap_options).
    Ldap,
    /// PAM, service "pgbouncer" (client/pam.rs).
    Pam,
}

impl AuthType {
    /// PgBouncer's name for the method.
    pub fn name(self) -> &'static str {
        match self {
            AuthType::Any => "any",
            AuthType::Trust => "trust",
            AuthType::Plain => "plain",
            AuthType::Md5 => "md5",
            AuthType::ScramSha256 => "scram-sha-256",
            AuthType::Cert => "cert",
            AuthType::Hba => "hba",
            AuthType::Ldap => "ldap",
            AuthType::Pam => "pam",
        }
    }
}
