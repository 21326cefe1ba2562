//! auth_ident_file: user name maps for the `peer` and `cert` rules of
//! auth_hba_file (`map=NAME`), in PostgreSQL's pg_ident.conf syntax as
//! PgBouncer reads it: `MAPNAME SYSTEM-USERNAME PG-USERNAME`, where
//! PG-USERNAME may be the keyword `all`.

use std::collections::HashMap;
use std::path::Path;

use super::ConfigError;
use super::hba_lex::{Token, tokens};

/// One line of a map: the system user (the OS user of a Unix-socket peer,
/// or a name in a client certificate) that may log in as `pg_user` (None:
/// as anyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub system: String,
    pub pg_user: Option<String>,
}

/// The maps of an auth_ident_file, by name, each in file order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdentMaps {
    maps: HashMap<String, Vec<Mapping>>,
}

impl IdentMaps {
    /// Parse `text` (read from `path`); every bad line is an error naming
    /// it.
    pub fn parse(text: &str, path: &Path) -> Result<IdentMaps, Vec<ConfigError>> {
        let mut maps: HashMap<String, Vec<Mapping>> = HashMap::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let err = |m: String| ConfigError::new(path, i + 1, "auth_ident_file", m);
            let toks = match tokens(line) {
                Ok(t) if t.is_empty() => continue,
                Ok(t) => t,
                Err(e) => {
                    errors.push(err(e));
                    continue;
                }
            };
            match mapping(&toks) {
                Ok((name, m)) => maps.entry(name).or_default().push(m),
                Err(e) => errors.push(err(e)),
            }
        }
        match errors.is_empty() {
            true => Ok(IdentMaps { maps }),
            false => Err(errors),
        }
    }

    /// The lines of map `name`, if the file has it.
    pub fn get(&self, name: &str) -> Option<&[Mapping]> {
        self.maps.get(name).map(Vec::as_slice)
    }
}

fn mapping(toks: &[Token]) -> Result<(String, Mapping), String> {
    let [Token::Word(name), system, pg_user] = toks else {
        return Err("expected MAPNAME SYSTEM-USERNAME PG-USERNAME".into());
    };
    let system = system.name().ok_or("missing system user name")?.to_string();
    let pg_user = match pg_user {
        t if t.is("all") => None,
        t => Some(t.name().ok_or("missing PostgreSQL user name")?.to_string()),
    };
    Ok((name.clone(), Mapping { system, pg_user }))
}

/// Whether `map` lets `system` log in as `user`.
pub fn allows(map: &[Mapping], system: &str, user: &str) -> bool {
    map.iter()
        .any(|m| m.system == system && m.pg_user.as_deref().is_none_or(|u| u == user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_with_quotes_and_all() {
        let text = "# MAPNAME SYSTEM PG\n\
                    test pgbouncer.acme.org someuser\n\
                    test pgbouncer.acme.org anotheruser\n\
                    \n\
                    test2 \"bouncer\" all\n";
        let maps = IdentMaps::parse(text, Path::new("ident.conf")).unwrap();
        let test = maps.get("test").unwrap();
        assert_eq!(test.len(), 2);
        assert!(allows(test, "pgbouncer.acme.org", "anotheruser"));
        assert!(!allows(test, "pgbouncer.acme.org", "postgres"));
        assert!(!allows(test, "bouncer", "someuser"));
        let test2 = maps.get("test2").unwrap();
        assert!(allows(test2, "bouncer", "anyone"));
        assert!(maps.get("nope").is_none());
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let text = "ok a b\nbroken only_two\nx \"unterminated b\n";
        let errs = IdentMaps::parse(text, Path::new("/etc/ident.conf")).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3]);
        assert!(
            errs[0].to_string().contains("/etc/ident.conf"),
            "{}",
            errs[0]
        );
    }
}
