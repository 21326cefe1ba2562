//! Tracked session parameters (client_encoding, DateStyle, TimeZone,
//! standard_conforming_strings, application_name and track_extra_parameters).
//!
//! In transaction mode a client meets many server connections; before a
//! client's transaction runs on a server, every tracked parameter whose value
//! differs is applied with SET, so a client never sees another's settings.

/// Parameters tracked by default, with PostgreSQL's spelling in ParameterStatus.
pub const ALWAYS_TRACKED: [&str; 5] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "standard_conforming_strings",
    "application_name",
];

/// Values of tracked parameters, by canonical name. Few entries: a vector
/// with linear search beats a map here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: Vec<(String, String)>,
}

impl Params {
    /// An empty set.
    pub fn new() -> Params {
        Params::default()
    }

    /// The value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Set `name` to `value`, keeping the first spelling of the name seen.
    pub fn set(&mut self, name: &str, value: &str) {
        match self
            .values
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => {
                if v != value {
                    value.clone_into(v);
                }
            }
            None => self.values.push((name.to_string(), value.to_string())),
        }
    }

    /// All entries.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether [`Params::adopt`] would change anything.
    pub fn needs_adopt(&self, server: &Params) -> bool {
        self.values
            .iter()
            .any(|(name, value)| server.get(name).is_some_and(|s| s != value))
    }

    /// After a sync, take the server's spelling of every value we track
    /// (PostgreSQL reports `UTF8` for `utf8`, `ISO, MDY` for `ISO`), so the
    /// next comparison finds them equal instead of setting them again.
    pub fn adopt(&mut self, server: &Params) {
        for (name, value) in &mut self.values {
            if let Some(canonical) = server.get(name)
                && canonical != value
            {
                canonical.clone_into(value);
            }
        }
    }

    /// The SET statements that make `server` match `self` (the client's
    /// wanted values), as one simple-protocol query; None when equal.
    pub fn sync_query(&self, server: &Params) -> Option<String> {
        let mut sql = String::new();
        for (name, want) in self.iter() {
            if server.get(name) != Some(want) {
                sql.push_str("SET ");
                push_ident(&mut sql, name);
                sql.push_str(" = ");
                push_literal(&mut sql, want);
                sql.push(';');
            }
        }
        (!sql.is_empty()).then_some(sql)
    }
}

/// Whether `name` is tracked, given track_extra_parameters; returns the
/// canonical spelling.
pub fn tracked_name<'a>(name: &str, extra: &'a [String]) -> Option<&'a str>
where
    'static: 'a,
{
    ALWAYS_TRACKED
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .find(|t| t.eq_ignore_ascii_case(name))
}

fn push_ident(sql: &mut String, name: &str) {
    sql.push('"');
    for c in name.chars() {
        if c == '"' {
            sql.push('"');
        }
        sql.push(c);
    }
    sql.push('"');
}

fn push_literal(sql: &mut String, value: &str) {
    // E'' strings would depend on standard_conforming_strings; with it on
    // (the default since 9.1) '' doubling is enough, and with it off a
    // backslash must be doubled too. Doubling both is right in either case
    // only with E''; use E'' for values containing a backslash.
    if value.contains('\\') {
        sql.push_str("E'");
        for c in value.chars() {
            if c == '\'' || c == '\\' {
                sql.push(c);
            }
            sql.push(c);
        }
    } else {
        sql.push('\'');
        for c in value.chars() {
            if c == '\'' {
                sql.push('\'');
            }
            sql.push(c);
        }
    }
    sql.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_is_case_insensitive_and_keeps_spelling() {
        let mut p = Params::new();
        p.set("DateStyle", "ISO, MDY");
        p.set("datestyle", "ISO, DMY");
        assert_eq!(p.get("DATESTYLE"), Some("ISO, DMY"));
        assert_eq!(p.iter().count(), 1);
        assert_eq!(p.iter().next().unwrap().0, "DateStyle");
    }

    #[test]
    fn sync_query_lists_only_differences_and_quotes() {
        let mut client = Params::new();
        client.set("TimeZone", "UTC");
        client.set("application_name", "it's");
        client.set("DateStyle", "ISO, MDY");
        let mut server = Params::new();
        server.set("TimeZone", "UTC");
        server.set("DateStyle", "SQL");
        let q = client.sync_query(&server).unwrap();
        assert_eq!(
            q,
            "SET \"application_name\" = 'it''s';SET \"DateStyle\" = 'ISO, MDY';"
        );
        server.set("application_name", "it's");
        server.set("DateStyle", "ISO, MDY");
        assert_eq!(client.sync_query(&server), None);
    }

    #[test]
    fn adopting_the_server_spelling_ends_resyncing() {
        let mut client = Params::new();
        client.set("client_encoding", "utf8");
        let mut server = Params::new();
        server.set("client_encoding", "UTF8");
        assert!(client.sync_query(&server).is_some());
        assert!(client.needs_adopt(&server));
        client.adopt(&server);
        assert!(!client.needs_adopt(&server));
        assert_eq!(client.get("client_encoding"), Some("UTF8"));
        assert_eq!(client.sync_query(&server), None);
    }

    #[test]
    fn backslashes_use_escape_strings() {
        let mut client = Params::new();
        client.set("application_name", "a\\b'c");
        let q = client.sync_query(&Params::new()).unwrap();
        assert_eq!(q, "SET \"application_name\" = E'a\\\\b''c';");
    }

    #[test]
    fn tracked_names() {
        let extra = vec!["IntervalStyle".to_string()];
        assert_eq!(tracked_name("datestyle", &extra), Some("DateStyle"));
        assert_eq!(tracked_name("intervalstyle", &extra), Some("IntervalStyle"));
        assert_eq!(tracked_name("search_path", &extra), None);
    }
}
