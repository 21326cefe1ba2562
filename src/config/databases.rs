//! The `[databases]` section: one [`Database`] per `name = connstring`
//! line, the `*` fallback, and [`Databases::lookup`]. Connection strings
//! are split by `connstr.rs`; this module knows the allowed keys.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::PoolMode;
use super::connstr::{choice, opt_count, opt_seconds, parse_pairs};
use super::error::ConfigError;
use super::hosts::{SESSION_ATTRS, SessionAttrs, parse_ports};
use super::settings::POOL_MODES;

/// The `[databases]` section.
#[derive(Debug, Clone, Default)]
pub struct Databases {
    /// Named entries by client-side database name.
    pub entries: HashMap<String, Database>,
    /// The `*` entry, used for names not listed.
    pub fallback: Option<Database>,
}

impl Databases {
    /// The entry for a client's database name: the named entry, else the
    /// `*` fallback (whose `dbname` is None unless set, meaning the client's
    /// name). None when neither exists.
    pub(crate) fn lookup(&self, name: &str) -> Option<&Database> {
        self.entries.get(name).or(self.fallback.as_ref())
    }
}

/// One `[databases]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    /// The key in `[databases]` (`*` for the fallback).
    pub name: String,
    /// Server-side database name; None = the client's database name.
    pub dbname: Option<String>,
    /// None = the default Unix socket; a value starting with `/` is a socket
    /// directory; may be a comma list (kept raw).
    pub host: Option<String>,
    /// Server port (5432); the first of `ports` when that is a list.
    pub port: u16,
    /// `port=` as a list with one port per host (a pgsluice extension, as
    /// in libpq); empty when one port serves every host.
    pub ports: Vec<u16>,
    /// Forced server user (one pool for all clients).
    pub user: Option<String>,
    /// Password for the forced user.
    pub password: Option<String>,
    /// Per-database `auth_user`.
    pub auth_user: Option<String>,
    /// Per-database `auth_query`.
    pub auth_query: Option<String>,
    /// Per-database `auth_dbname`.
    pub auth_dbname: Option<String>,
    /// Pool size override.
    pub pool_size: Option<u32>,
    /// min_pool_size override.
    pub min_pool_size: Option<u32>,
    /// reserve_pool_size override (`reserve_pool` is an alias).
    pub reserve_pool_size: Option<u32>,
    /// Query run on each new server connection.
    pub connect_query: Option<String>,
    /// Pool mode override.
    pub pool_mode: Option<PoolMode>,
    /// Server connection limit for this database.
    pub max_db_connections: Option<u32>,
    /// Client connection limit for this database.
    pub max_db_client_connections: Option<u32>,
    /// server_lifetime override.
    pub server_lifetime: Option<Duration>,
    /// query_wait_timeout override.
    pub query_wait_timeout: Option<Duration>,
    /// client_encoding sent to the server.
    pub client_encoding: Option<String>,
    /// DateStyle sent to the server.
    pub datestyle: Option<String>,
    /// TimeZone sent to the server.
    pub timezone: Option<String>,
    /// `round-robin` or `disable`, canonical spelling.
    pub load_balance_hosts: Option<String>,
    /// application_name sent to the server.
    pub application_name: Option<String>,
    /// Which hosts new server connections go to (None: [pgbouncer]'s).
    pub target_session_attrs: Option<SessionAttrs>,
    /// How long a client waits for a host with the wanted role (None:
    /// [pgbouncer]'s).
    pub primary_wait_timeout: Option<Duration>,
    /// Read/write splitting overrides.
    pub split: super::SplitOverrides,
}

impl Database {
    /// An entry with every key unset (port 5432).
    pub fn new(name: &str) -> Database {
        Database {
            name: name.to_string(),
            dbname: None,
            host: None,
            port: 5432,
            ports: Vec::new(),
            user: None,
            password: None,
            auth_user: None,
            auth_query: None,
            auth_dbname: None,
            pool_size: None,
            min_pool_size: None,
            reserve_pool_size: None,
            connect_query: None,
            pool_mode: None,
            max_db_connections: None,
            max_db_client_connections: None,
            server_lifetime: None,
            query_wait_timeout: None,
            client_encoding: None,
            datestyle: None,
            timezone: None,
            load_balance_hosts: None,
            application_name: None,
            target_session_attrs: None,
            primary_wait_timeout: None,
            split: Default::default(),
        }
    }
}

/// `[databases]` keys that are parsed and checked but not acted on yet.
pub const DATABASE_KEYS_NOT_YET_IMPLEMENTED: &[&str] = &[];

/// Parses one `[databases]` line. Every bad key is reported; the entry is
/// returned only when the whole line is valid.
pub(crate) fn parse_database(
    name: &str,
    connstr: &str,
    file: &Path,
    line: usize,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Option<Database> {
    if name == "pgbouncer" {
        let msg = "database name \"pgbouncer\" is reserved for the admin console";
        errors.push(ConfigError::new(file, line, name, msg));
        return None;
    }
    let pairs = match parse_pairs(connstr) {
        Ok(p) => p,
        Err(msg) => {
            errors.push(ConfigError::new(file, line, name, msg));
            return None;
        }
    };
    let before = errors.len();
    let mut db = Database::new(name);
    for (key, value) in pairs {
        let note = match set_key(&mut db, &key, &value) {
            Ok(None) if DATABASE_KEYS_NOT_YET_IMPLEMENTED.contains(&key.as_str()) => {
                Ok(Some("setting is not implemented by pgsluice yet; ignored"))
            }
            other => other,
        };
        match note {
            Ok(None) => {}
            Ok(Some(note)) => warnings.push(format!(
                "{}:{line}: {key}: {note} (database {name:?})",
                file.display()
            )),
            Err(msg) => errors.push(ConfigError::new(
                file,
                line,
                &key,
                format!("{msg} (database {name:?})"),
            )),
        }
    }
    if !db.ports.is_empty() {
        let hosts = db
            .host
            .as_deref()
            .map_or(1, |h| h.split(',').filter(|h| !h.trim().is_empty()).count());
        if db.ports.len() != hosts {
            let msg = format!(
                "{} ports for {hosts} hosts: give one port, or one per host (database {name:?})",
                db.ports.len()
            );
            errors.push(ConfigError::new(file, line, "port", msg));
        }
    }
    (errors.len() == before).then_some(db)
}

/// Applies one key. `Ok(Some(note))` means accepted but ignored.
fn set_key(db: &mut Database, key: &str, v: &str) -> Result<Option<&'static str>, String> {
    let s = || Some(v.to_string());
    match key {
        "dbname" => db.dbname = s(),
        "host" => db.host = s(),
        "port" => {
            let ports = parse_ports(v)?;
            db.port = ports[0];
            db.ports = if ports.len() > 1 { ports } else { Vec::new() };
        }
        "user" => db.user = s(),
        "password" => db.password = s(),
        "auth_user" => db.auth_user = s(),
        "auth_query" => db.auth_query = s(),
        "auth_dbname" => db.auth_dbname = s(),
        "pool_size" => db.pool_size = opt_count(v)?,
        "min_pool_size" => db.min_pool_size = opt_count(v)?,
        "reserve_pool_size" | "reserve_pool" => db.reserve_pool_size = opt_count(v)?,
        "connect_query" => db.connect_query = s(),
        "pool_mode" => db.pool_mode = PoolMode::from_name(choice(v, POOL_MODES)?),
        "max_db_connections" => db.max_db_connections = opt_count(v)?,
        "max_db_client_connections" => db.max_db_client_connections = opt_count(v)?,
        "server_lifetime" => db.server_lifetime = opt_seconds(v)?,
        "query_wait_timeout" => db.query_wait_timeout = opt_seconds(v)?,
        "client_encoding" => db.client_encoding = s(),
        "datestyle" => db.datestyle = s(),
        "timezone" => db.timezone = s(),
        "application_name" => db.application_name = s(),
        "load_balance_hosts" => {
            db.load_balance_hosts = Some(choice(v, &["round-robin", "disable"])?.to_string())
        }
        "target_session_attrs" => {
            db.target_session_attrs = SessionAttrs::from_name(choice(v, SESSION_ATTRS)?)
        }
        "primary_wait_timeout" => db.primary_wait_timeout = opt_seconds(v)?,
        other => match db.split.set(other, v) {
            Some(r) => r?,
            None => return Err("unknown connection parameter".into()),
        },
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, s: &str) -> (Option<Database>, Vec<ConfigError>, Vec<String>) {
        let (mut e, mut w) = (vec![], vec![]);
        let db = parse_database(name, s, Path::new("p.ini"), 9, &mut e, &mut w);
        (db, e, w)
    }

    #[test]
    fn every_key() {
        let s = "dbname=real host=/var/run/postgresql,10.0.0.2 port=5433 user=u password='p w' \
                 auth_user=au auth_query='SELECT 1' auth_dbname=ad pool_size=5 min_pool_size=1 \
                 reserve_pool=2 connect_query='SET x=1' pool_mode=Transaction max_db_connections=9 \
                 max_db_client_connections=99 server_lifetime=1.5 query_wait_timeout=-1 \
                 client_encoding=UTF8 datestyle='ISO, MDY' timezone=UTC load_balance_hosts=disable \
                 application_name=app target_session_attrs=any";
        let (db, e, w) = parse("app", s);
        assert!(e.is_empty(), "{e:?}");
        // Accepted keys that are not acted on yet each get a warning.
        let warned: Vec<&str> = w.iter().map(|w| w.split(": ").nth(1).unwrap()).collect();
        assert!(warned.is_empty(), "{warned:?}");
        let db = db.expect("valid");
        assert_eq!(db.dbname.as_deref(), Some("real"));
        assert_eq!(db.host.as_deref(), Some("/var/run/postgresql,10.0.0.2"));
        assert_eq!(db.port, 5433);
        assert_eq!(db.password.as_deref(), Some("p w"));
        assert_eq!((db.pool_size, db.reserve_pool_size), (Some(5), Some(2)));
        assert_eq!(db.pool_mode, Some(PoolMode::Transaction));
        assert_eq!(db.server_lifetime, Some(Duration::from_millis(1500)));
        assert_eq!(db.query_wait_timeout, None);
        assert_eq!(db.datestyle.as_deref(), Some("ISO, MDY"));
        assert_eq!(db.load_balance_hosts.as_deref(), Some("disable"));
    }

    #[test]
    fn empty_connstring_means_all_defaults() {
        let (db, e, _) = parse("foodb", "");
        assert!(e.is_empty());
        assert_eq!(db, Some(Database::new("foodb")));
    }

    #[test]
    fn every_bad_key_is_reported() {
        let (db, e, _) = parse(
            "app",
            "hots=x port=0 pool_size=-3 pool_mode=bogus port=99999",
        );
        assert!(db.is_none());
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["hots", "port", "pool_size", "pool_mode", "port"]);
        assert_eq!(
            e[0].to_string(),
            "p.ini:9: hots: unknown connection parameter (database \"app\")"
        );
    }

    #[test]
    fn reserved_name_and_syntax_errors() {
        let (db, e, _) = parse("pgbouncer", "host=x");
        assert!(db.is_none() && e[0].message.contains("reserved"));
        let (db, e, _) = parse("app", "host='open");
        assert!(db.is_none() && e[0].key == "app");
        let (db, _, w) = parse("app", "target_session_attrs=primary primary_wait_timeout=5");
        assert!(w.is_empty());
        let db = db.unwrap();
        assert_eq!(db.target_session_attrs, Some(SessionAttrs::Primary));
        assert_eq!(db.primary_wait_timeout, Some(Duration::from_secs(5)));
        let (db, e, _) = parse("app", "host=a,b,c port=5432,5433,5434");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(db.unwrap().ports, [5432, 5433, 5434]);
        let (db, e, _) = parse("app", "host=a,b port=5432,5433,5434");
        assert!(
            db.is_none() && e[0].message.contains("3 ports for 2 hosts"),
            "{e:?}"
        );
        let (db, e, _) = parse("app", "target_session_attrs=master");
        assert!(db.is_none() && e[0].key == "target_session_attrs");
    }

    #[test]
    fn lookup_prefers_named_entry_then_fallback() {
        let mut dbs = Databases::default();
        assert!(dbs.lookup("x").is_none());
        dbs.entries.insert("a".into(), Database::new("a"));
        dbs.fallback = Some(Database::new("*"));
        assert_eq!(dbs.lookup("a").map(|d| d.name.as_str()), Some("a"));
        let other = dbs.lookup("other").expect("fallback");
        assert_eq!((other.name.as_str(), other.dbname.as_deref()), ("*", None));
    }
}
