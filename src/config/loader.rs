//! Putting the configuration together: walks the lexed lines section by
//! section, hands each line to its section's parser, types the
//! `[pgbouncer]` values, checks the rules that span fields, and loads the
//! auth_file. Every problem is collected before returning.

use std::collections::HashMap;
use std::path::Path;

use super::databases::{Databases, parse_database};
use super::error::{ConfigError, ConfigErrors};
use super::general::General;
use super::ini::{self, Entry, EntryKind};
use super::keys;
use super::peers::parse_peer;
use super::settings::{self, Origin, RawSetting, Values};
use super::userlist::parse_userlist;
use super::users::{UserSettings, parse_user};
use super::{AuthType, Config, Loaded};

/// Loads the config file (following `%include`), validates it, and loads
/// the auth_file when one is set.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_with(path, &[])
}

/// [`load`], with `[pgbouncer]` values set at run time (the admin
/// console's `SET key = value`) applied over the file's.
pub fn load_with(path: &Path, overrides: &[(String, String)]) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let msg = format!("could not read config file: {e}");
        ConfigErrors(vec![ConfigError::new(path, 0, "conffile", msg)])
    })?;
    parse(&text, path, overrides, None)
}

/// [`load_with`] for RELOAD and SET, with the TLS of the running
/// configuration: a TLS leg that cannot be built keeps the running one (see
/// `tls_build::settle`).
pub fn reload_with(
    path: &Path,
    overrides: &[(String, String)],
    running: &super::Tls,
) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let msg = format!("could not read config file: {e}");
        ConfigErrors(vec![ConfigError::new(path, 0, "conffile", msg)])
    })?;
    parse(&text, path, overrides, Some(running))
}

/// The `logfile` a config file names, read even when the file is invalid
/// (what can be read of it): a bad config is logged there too, as PgBouncer
/// does, before pgsluice exits.
pub fn logfile_of(path: &Path) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let entries = ini::lex(&text, path, &mut errors);
    let sections = Sections::collect(&entries, path, &mut errors, &mut warnings);
    let value = &sections.raw.get("logfile")?.value;
    (!value.is_empty()).then(|| std::path::PathBuf::from(value))
}

/// Parses `text` as if it were the contents of `file`. `%include` and
/// auth_file paths are used as written (relative ones against the current
/// working directory), exactly as [`load`] does.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn load_str(text: &str, file: &Path) -> Result<Loaded, ConfigErrors> {
    parse(text, file, &[], None)
}

fn parse(
    text: &str,
    file: &Path,
    overrides: &[(String, String)],
    running: Option<&super::Tls>,
) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let entries = ini::lex(text, file, &mut errors);
    let mut sections = Sections::collect(&entries, file, &mut errors, &mut warnings);
    for (key, value) in overrides {
        match settings::find(key) {
            Some(def) => {
                let origin = Origin {
                    file: file.with_file_name("<SET>"),
                    line: 0,
                };
                let value = value.clone();
                sections.raw.insert(def.name, RawSetting { value, origin });
            }
            None => errors.push(ConfigError::new(file, 0, key, keys::unknown(key))),
        }
    }
    let values = Values::resolve(&sections.raw, &mut errors, &mut warnings);
    let general = General::from_values(&values, file);
    check_security(&values, &mut errors);
    check_metrics_addr(&values, &general, file, &mut errors);
    check_split(&values, (&general, &sections.databases), file, &mut errors);
    let userlist = check_auth(&values, (&general, &sections.databases), file, &mut errors);
    let hba = load_hba(&values, &general, file, &mut errors);
    let ldap = (general.auth_type == AuthType::Ldap)
        .then(|| super::ldap::LdapOptions::parse(&general.auth_ldap_options))
        .and_then(|parsed| {
            parsed
                .map_err(|e| {
                    let (f, l) = at(&values, "auth_ldap_options", file);
                    let msg = format!("auth_type ldap: {e}");
                    errors.push(ConfigError::new(&f, l, "auth_ldap_options", msg));
                })
                .ok()
        });
    let ldap_tls = ldap_tls(&values, (&hba, ldap.as_ref()), file, &mut errors);
    let tls = if errors.is_empty() {
        build_tls(&values, file, running, &mut errors, &mut warnings)
    } else {
        Default::default()
    };
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let config = Config {
        file: file.to_path_buf(),
        general,
        databases: sections.databases,
        users: sections.users,
        peers: sections.peers,
        userlist,
        hba,
        ldap,
        ldap_tls,
        tls,
    };
    Ok(Loaded { config, warnings })
}

/// The TLS configuration of LDAP connections, when an ldap option (of
/// auth_ldap_options or an auth_hba_file line) asks for ldaps or StartTLS:
/// read from ldap.conf and the environment as libldap reads them, so that
/// a bad setting fails the load (and RELOAD picks up a changed file).
fn ldap_tls(
    values: &Values,
    (hba, ldap): (&super::hba::Hba, Option<&super::ldap::LdapOptions>),
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<std::sync::Arc<rustls::ClientConfig>> {
    let uses_tls = |o: &super::ldap::LdapOptions| o.ldaps || o.starttls;
    let key = if ldap.is_some_and(uses_tls) {
        "auth_ldap_options"
    } else if hba
        .rules
        .iter()
        .filter_map(|r| r.ldap.as_ref())
        .any(uses_tls)
    {
        "auth_hba_file"
    } else {
        return None;
    };
    match super::ldap_conf::LdapTls::from_environment().and_then(|t| t.client_config()) {
        Ok(config) => Some(config),
        Err(e) => {
            let (f, l) = at(values, key, file);
            errors.push(ConfigError::new(&f, l, key, format!("LDAP over TLS: {e}")));
            None
        }
    }
}

/// Which section a line is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Main,
    Databases,
    Users,
    Peers,
    Unknown,
}

/// The sections' contents, untyped for `[pgbouncer]`.
#[derive(Default)]
struct Sections {
    raw: HashMap<&'static str, RawSetting>,
    databases: Databases,
    users: HashMap<String, UserSettings>,
    peers: super::peers::Peers,
}

impl Sections {
    fn collect(
        entries: &[Entry],
        file: &Path,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<String>,
    ) -> Sections {
        let mut out = Sections::default();
        let mut section = None;
        let mut got_main = false;
        for e in entries {
            let (key, value) = match &e.kind {
                EntryKind::Section(name) => {
                    section = Some(out.enter(name, e, errors, warnings));
                    got_main |= section == Some(Section::Main);
                    continue;
                }
                EntryKind::Pair { key, value } => (key.as_str(), value.as_str()),
            };
            let (f, l) = (e.file.as_path(), e.line);
            match section {
                None => errors.push(ConfigError::new(f, l, key, "value outside any section")),
                Some(Section::Main) => out.set_main(key, value, e, errors),
                Some(Section::Databases) => {
                    if let Some(db) = parse_database(key, value, f, l, errors, warnings) {
                        if key == "*" {
                            out.databases.fallback = Some(db);
                        } else {
                            out.databases.entries.insert(key.to_string(), db);
                        }
                    }
                }
                Some(Section::Users) => {
                    if let Some(u) = parse_user(key, value, f, l, errors, warnings) {
                        out.users.insert(key.to_string(), u);
                    }
                }
                Some(Section::Peers) => {
                    if let Some((id, endpoint)) = parse_peer(key, value, f, l, errors) {
                        out.peers.insert(id, endpoint);
                    }
                }
                Some(Section::Unknown) => {}
            }
        }
        if !got_main {
            let msg = "main section [pgbouncer] is missing";
            errors.push(ConfigError::new(file, 0, "pgbouncer", msg));
        }
        out
    }

    /// Starts a section. Like PgBouncer, a `[pgbouncer]` header resets the
    /// `[pgbouncer]` settings read so far to their defaults.
    fn enter(
        &mut self,
        name: &str,
        e: &Entry,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<String>,
    ) -> Section {
        match name.to_ascii_lowercase().as_str() {
            "pgbouncer" => {
                if !self.raw.is_empty() {
                    warnings.push(format!(
                        "{}:{}: pgbouncer: a second [pgbouncer] header resets the {} settings \
                         before it to their defaults, as in PgBouncer",
                        e.file.display(),
                        e.line,
                        self.raw.len()
                    ));
                    self.raw.clear();
                }
                Section::Main
            }
            "databases" => Section::Databases,
            "users" => Section::Users,
            "peers" => Section::Peers,
            _ => {
                let msg = "unknown section (expected pgbouncer, databases, users or peers)";
                errors.push(ConfigError::new(&e.file, e.line, name, msg));
                Section::Unknown
            }
        }
    }

    /// Records a `[pgbouncer]` value; a later one for the same key wins.
    /// An unknown key is an error, as in PgBouncer (which refuses to start,
    /// and keeps its settings on a reload): a misspelled key must not leave
    /// its default in force unnoticed (`pool_mod = transaction` would run
    /// in session mode).
    fn set_main(&mut self, key: &str, value: &str, e: &Entry, errors: &mut Vec<ConfigError>) {
        let origin = Origin {
            file: e.file.clone(),
            line: e.line,
        };
        match settings::find(key) {
            Some(def) => {
                let raw = RawSetting {
                    value: value.to_string(),
                    origin,
                };
                self.raw.insert(def.name, raw);
            }
            None => errors.push(ConfigError::new(&e.file, e.line, key, keys::unknown(key))),
        }
    }
}

/// Where `key` was set, or the main file with line 0.
fn at(values: &Values, key: &str, file: &Path) -> (std::path::PathBuf, usize) {
    match values.origin(key) {
        Some(o) => (o.file.clone(), o.line),
        None => (file.to_path_buf(), 0),
    }
}

/// Settings whose being ignored would silently weaken security are errors.
fn check_security(values: &Values, errors: &mut Vec<ConfigError>) {
    let mut refuse = |key: &str, msg: &str| {
        if let Some(o) = values.origin(key) {
            errors.push(ConfigError::new(&o.file, o.line, key, msg));
        }
    };
    if values.bool("disable_pqexec") {
        refuse(
            "disable_pqexec",
            "disable_pqexec is not supported by pgsluice yet; refusing to allow simple queries it would block",
        );
    }
}

/// The rustls configurations of both legs (`tls.rs`); a key that cannot be
/// used is an error at the line that set it.
fn build_tls(
    values: &Values,
    file: &Path,
    running: Option<&super::Tls>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> super::Tls {
    use super::tls_build::settle;
    let mut notes = Vec::new();
    let legs = super::tls_build::build(values, &mut notes);
    let client = settle(
        legs.client,
        legs.modes.0,
        running.map(|r| r.client.as_ref()),
        &mut notes,
    );
    let server = settle(
        legs.server,
        legs.modes.1,
        running.map(|r| r.server.as_ref()),
        &mut notes,
    );
    for (key, msg) in notes {
        let (f, line) = at(values, &key, file);
        warnings.push(format!("{}:{line}: {key}: {msg}", f.display()));
    }
    let mut refused = |(key, msg): (String, String)| {
        let (f, line) = at(values, &key, file);
        errors.push(ConfigError::new(&f, line, &key, msg));
    };
    let client = client.unwrap_or_else(|e| {
        refused(e);
        None
    });
    let server = server.unwrap_or_else(|e| {
        refused(e);
        None
    });
    super::Tls { client, server }
}

/// metrics_listen_addr must be `host:port` (an IPv6 host in brackets).
/// Read/write splitting: values that parse, and never in session mode (a
/// session holds one server: there is nothing to split).
fn check_split(
    values: &Values,
    (general, databases): (&General, &super::Databases),
    file: &Path,
    errors: &mut Vec<ConfigError>,
) {
    let text = |k: &str| {
        values
            .get(k)
            .map(|x| x.text(super::keys::Kind::Str))
            .unwrap_or_default()
    };
    for (key, msg) in super::split::check_global(text) {
        let (f, l) = at(values, key, file);
        errors.push(ConfigError::new(&f, l, key, msg));
    }
    for (name, db) in &databases.entries {
        let on = db.split.on.unwrap_or(general.split.on);
        let mode = db.pool_mode.unwrap_or(general.pool_mode);
        let ryw = db.split.ryw.unwrap_or(general.split.ryw);
        if on && ryw == super::ReadYourWrites::Wal && general.host_check_period.is_zero() {
            let (f, l) = at(values, "host_check_period", file);
            let msg = format!(
                "read_your_writes=wal needs the health checker: host_check_period is 0 (database {name:?})"
            );
            errors.push(ConfigError::new(&f, l, "read_your_writes", msg));
        }
        if on && mode == super::PoolMode::Session {
            let (f, l) = at(values, "read_write_split", file);
            let msg = format!(
                "read_write_split needs pool_mode transaction or statement: database {name:?} is in session mode"
            );
            errors.push(ConfigError::new(&f, l, "read_write_split", msg));
        }
    }
}

fn check_metrics_addr(
    values: &Values,
    general: &General,
    file: &Path,
    errors: &mut Vec<ConfigError>,
) {
    let Some(addr) = &general.metrics_listen_addr else {
        return;
    };
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !ok {
        let (f, l) = at(values, "metrics_listen_addr", file);
        let msg = format!("expected host:port, got {addr:?}");
        errors.push(ConfigError::new(&f, l, "metrics_listen_addr", msg));
    }
}

/// Checks auth_type against what is supported and loads the auth_file.
/// A method that needs known users needs auth_file, or auth_user (global
/// or in some [databases] entry) to look them up with auth_query.
fn check_auth(
    values: &Values,
    (general, databases): (&General, &super::Databases),
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, crate::auth::Secret> {
    let method = values.str("auth_type");
    let (f, l) = at(values, "auth_type", file);
    let lookups =
        general.auth_user.is_some() || databases.entries.values().any(|d| d.auth_user.is_some());
    match general.auth_type {
        AuthType::Pam if !cfg!(feature = "pam") => errors.push(ConfigError::new(
            &f,
            l,
            "auth_type",
            format!(
                "auth_type {method}: this pgsluice is built without PAM support \
                 (cargo's `pam` feature, on by default)"
            ),
        )),
        AuthType::Hba if general.auth_hba_file.is_none() => errors.push(ConfigError::new(
            &f,
            l,
            "auth_hba_file",
            "auth_type hba needs auth_hba_file to be set",
        )),
        AuthType::Trust
        | AuthType::Plain
        | AuthType::Md5
        | AuthType::ScramSha256
        | AuthType::Cert
        | AuthType::Hba
            if general.auth_file.is_none() && !lookups =>
        {
            errors.push(ConfigError::new(
                &f,
                l,
                "auth_file",
                format!("auth_type {method} needs auth_file or auth_user to be set"),
            ))
        }
        _ => {}
    }
    if general.auth_dbname.as_deref() == Some(crate::config::ADMIN_DB) {
        let (f, l) = at(values, "auth_dbname", file);
        let msg = format!(
            "cannot use the reserved \"{}\" database as an auth_dbname",
            crate::config::ADMIN_DB
        );
        errors.push(ConfigError::new(&f, l, "auth_dbname", msg));
    }
    let Some(path) = &general.auth_file else {
        return HashMap::new();
    };
    let (f, l) = at(values, "auth_file", file);
    match std::fs::read_to_string(path) {
        Ok(text) => parse_userlist(&text, path).unwrap_or_else(|e| {
            errors.extend(e.0);
            HashMap::new()
        }),
        Err(e) => {
            let msg = format!("could not read auth_file {}: {e}", path.display());
            errors.push(ConfigError::new(&f, l, "auth_file", msg));
            HashMap::new()
        }
    }
}

/// auth_hba_file's rules, with auth_ident_file's maps, when auth_type is
/// hba: every bad line of either file is an error naming it (startup and
/// RELOAD fail, the running rules stay).
fn load_hba(
    values: &Values,
    general: &General,
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> super::hba::Hba {
    if general.auth_type != AuthType::Hba {
        return Default::default();
    }
    let read = |key: &str, path: &Path, errors: &mut Vec<ConfigError>| {
        std::fs::read_to_string(path)
            .map_err(|e| {
                let (f, l) = at(values, key, file);
                let msg = format!("could not read {key} {}: {e}", path.display());
                errors.push(ConfigError::new(&f, l, key, msg));
            })
            .ok()
    };
    let mut maps = super::ident::IdentMaps::default();
    if let Some(path) = &general.auth_ident_file
        && let Some(text) = read("auth_ident_file", path, errors)
    {
        match super::ident::IdentMaps::parse(&text, path) {
            Ok(m) => maps = m,
            Err(e) => errors.extend(e),
        }
    }
    let Some(path) = &general.auth_hba_file else {
        return Default::default();
    };
    let Some(text) = read("auth_hba_file", path, errors) else {
        return Default::default();
    };
    super::hba::Hba::parse(&text, path, &maps).unwrap_or_else(|e| {
        errors.extend(e);
        Default::default()
    })
}
