//! Tracked session parameters (client_encoding, DateStyle, TimeZone,
//! standard_conforming_strings, application_name, extra_float_digits and
//! track_extra_parameters).
//!
//! In transaction mode a client meets many server connections; before a
//! client's transaction runs on a server, every tracked parameter whose value
//! differs is applied with SET, so a client never sees another's settings.
//!
//! Most tracked parameters are *reported*: PostgreSQL sends ParameterStatus
//! whenever they change, so the server side of the comparison is always
//! known. A tracked parameter PostgreSQL does not report (extra_float_digits,
//! or a track_extra_parameters name the server does not report) is
//! *unreported*: a client's value for it is SET on every sync that cannot be
//! skipped by the pointer check, unless the server's side recorded it with
//! [`Params::note_synced`] after an earlier sync.

/// Parameters tracked by default, with PostgreSQL's spelling in ParameterStatus.
pub(crate) const ALWAYS_TRACKED: [&str; 5] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "standard_conforming_strings",
    "application_name",
];

/// Tracked although PostgreSQL does not report it, because common drivers
/// send it in their startup packet: JDBC sends extra_float_digits (2 or 3),
/// and PgBouncer refuses it unless it is in ignore_startup_parameters, which
/// drops the client's value. Tracking it means the value reaches every
/// server the client uses (it changes how floats are printed), at the cost
/// of one SET on syncs that the pointer check cannot skip, paid only by
/// clients that asked for it.
pub(crate) const DRIVER_TRACKED: [&str; 1] = ["extra_float_digits"];

/// Values of tracked parameters, by canonical name. Few entries: vectors
/// with linear search beat a map here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// Reported parameters.
    values: Vec<(String, String)>,
    /// Unreported parameters. For a client: the values it asked for (a
    /// missing name means the server's default). For a server: the values
    /// the last recorded sync set (a missing name means never set, so the
    /// server's default).
    unreported: Vec<(String, String)>,
}

impl Params {
    /// An empty set.
    pub fn new() -> Params {
        Params::default()
    }

    /// An empty set with room for `reported` and `unreported` entries
    /// (a login builds one; growing it entry by entry reallocated).
    pub fn with_capacity(reported: usize, unreported: usize) -> Params {
        Params {
            values: Vec::with_capacity(reported),
            unreported: Vec::with_capacity(unreported),
        }
    }

    /// The value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        find(&self.values, name).or_else(|| find(&self.unreported, name))
    }

    /// Set `name` to `value`, keeping the first spelling of the name seen.
    /// An unreported parameter already present stays unreported.
    pub fn set(&mut self, name: &str, value: &str) {
        if self
            .unreported
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            put(&mut self.unreported, name, value);
        } else {
            put(&mut self.values, name, value);
        }
    }

    /// Set `name`, a parameter PostgreSQL does not report (see the module
    /// header), to `value`.
    pub(crate) fn set_unreported(&mut self, name: &str, value: &str) {
        self.values.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        put(&mut self.unreported, name, value);
    }

    /// All entries, reported ones first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .chain(&self.unreported)
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether [`Params::adopt`] would change anything.
    pub(crate) fn needs_adopt(&self, server: &Params) -> bool {
        self.values
            .iter()
            .any(|(name, value)| find(&server.values, name).is_some_and(|s| s != value))
    }

    /// After a sync, take the server's spelling of every reported value we
    /// track (PostgreSQL reports `UTF8` for `utf8`, `ISO, MDY` for `ISO`),
    /// so the next comparison finds them equal instead of setting them again.
    pub(crate) fn adopt(&mut self, server: &Params) {
        for (name, value) in &mut self.values {
            if let Some(canonical) = find(&server.values, name)
                && canonical != value
            {
                canonical.clone_into(value);
            }
        }
    }

    /// The SET statements that make `server` match `self` (the client's
    /// wanted values), as one simple-protocol query; None when equal.
    /// Unreported values are compared with what the server recorded
    /// ([`Params::note_synced`]); one the server did not record is SET.
    pub(crate) fn sync_query(&self, server: &Params) -> Option<String> {
        let mut sql = String::new();
        for (name, want) in &self.values {
            if find(&server.values, name) != Some(want) {
                push_set(&mut sql, name, Some(want));
            }
        }
        for (name, want) in &self.unreported {
            if find(&server.unreported, name) != Some(want) {
                push_set(&mut sql, name, Some(want));
            }
        }
        // Set by another client's sync; this client wants the default.
        for (name, _) in &server.unreported {
            if find(&self.unreported, name).is_none() {
                push_set(&mut sql, name, None);
            }
        }
        (!sql.is_empty()).then_some(sql)
    }

    /// Server side, after `client.sync_query(self)` ran successfully:
    /// remember the unreported values it set, so that later syncs compare
    /// them instead of setting them again, and reset them for clients that
    /// did not ask for them. (Like every tracked value, a SET the client
    /// runs itself inside a transaction is not seen for unreported ones.)
    pub fn note_synced(&mut self, client: &Params) {
        self.unreported.clone_from(&client.unreported);
    }
}

fn find<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn put(list: &mut Vec<(String, String)>, name: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        Some((_, v)) => {
            if v != value {
                value.clone_into(v);
            }
        }
        None => list.push((name.to_string(), value.to_string())),
    }
}

/// Append `SET "name" = 'value';` (`TO DEFAULT` for None).
fn push_set(sql: &mut String, name: &str, value: Option<&str>) {
    sql.push_str("SET ");
    push_ident(sql, name);
    match value {
        Some(v) => {
            sql.push_str(" = ");
            push_literal(sql, v);
        }
        None => sql.push_str(" TO DEFAULT"),
    }
    sql.push(';');
}

/// Whether `name` is tracked, given track_extra_parameters; returns the
/// canonical spelling.
pub(crate) fn tracked_name<'a>(name: &str, extra: &'a [String]) -> Option<&'a str>
where
    'static: 'a,
{
    ALWAYS_TRACKED
        .iter()
        .chain(&DRIVER_TRACKED)
        .copied()
        .chain(extra.iter().map(String::as_str))
        .find(|t| t.eq_ignore_ascii_case(name))
}

/// A DateStyle value in the full form PostgreSQL reports (`ISO, MDY`),
/// completed from `default` (the server's value at login) where `value`
/// names only a style or only an order, as PostgreSQL completes a startup
/// DateStyle from its defaults (German alone means DMY). Setting a partial
/// value with SET would instead keep the order the server was last left
/// with, which depends on the previous client. None when `value` is not
/// understood here (PostgreSQL will judge it).
pub(crate) fn datestyle_in_full(value: &str, default: &str) -> Option<String> {
    let (mut style, mut order) = (None, None);
    let mut german = false;
    for token in value.split(',').map(str::trim) {
        let t = token.to_ascii_uppercase();
        let (new_style, new_order) = match t.as_str() {
            "ISO" => (Some("ISO"), None),
            "SQL" => (Some("SQL"), None),
            "GERMAN" => (Some("German"), None),
            _ if t.starts_with("POSTGRES") => (Some("Postgres"), None),
            "YMD" => (None, Some("YMD")),
            "DMY" => (None, Some("DMY")),
            _ if t.starts_with("EURO") => (None, Some("DMY")),
            "MDY" | "US" => (None, Some("MDY")),
            _ if t.starts_with("NONEURO") => (None, Some("MDY")),
            _ => return None,
        };
        if let Some(s) = new_style {
            if style.is_some_and(|old| old != s) {
                return None;
            }
            german = s == "German";
            style = Some(s);
        }
        if let Some(o) = new_order {
            if order.is_some_and(|old| old != o) {
                return None;
            }
            order = Some(o);
        }
    }
    let mut current = default.split(',').map(str::trim);
    let (default_style, default_order) = (current.next()?, current.next()?);
    let order = order.unwrap_or(if german { "DMY" } else { default_order });
    Some(format!("{}, {order}", style.unwrap_or(default_style)))
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
    fn unreported_values_are_set_until_recorded_and_reset_for_others() {
        let mut jdbc = Params::new();
        jdbc.set("TimeZone", "UTC");
        jdbc.set_unreported("extra_float_digits", "3");
        assert_eq!(jdbc.get("EXTRA_FLOAT_DIGITS"), Some("3"));
        let mut plain = Params::new();
        plain.set("TimeZone", "UTC");
        let mut server = Params::new();
        server.set("TimeZone", "UTC");
        // Not recorded: set on every sync; a client without it asks nothing.
        let q = jdbc.sync_query(&server).unwrap();
        assert_eq!(q, "SET \"extra_float_digits\" = '3';");
        assert_eq!(plain.sync_query(&server), None);
        // Recorded: equal needs nothing; a client without it resets it.
        server.note_synced(&jdbc);
        assert_eq!(jdbc.sync_query(&server), None);
        assert_eq!(
            plain.sync_query(&server).unwrap(),
            "SET \"extra_float_digits\" TO DEFAULT;"
        );
        server.note_synced(&plain);
        assert_eq!(plain.sync_query(&server), None);
        // A ParameterStatus for another name does not touch it.
        jdbc.set("extra_float_digits", "2");
        assert_eq!(jdbc.get("extra_float_digits"), Some("2"));
        assert!(!jdbc.needs_adopt(&server));
    }

    #[test]
    fn datestyle_is_completed_from_the_default() {
        let full = |v| datestyle_in_full(v, "ISO, MDY");
        assert_eq!(full("ISO").as_deref(), Some("ISO, MDY"));
        assert_eq!(full("iso, dmy").as_deref(), Some("ISO, DMY"));
        assert_eq!(full("German").as_deref(), Some("German, DMY"));
        assert_eq!(full("German, YMD").as_deref(), Some("German, YMD"));
        assert_eq!(full("European").as_deref(), Some("ISO, DMY"));
        assert_eq!(full("Postgres,US").as_deref(), Some("Postgres, MDY"));
        assert_eq!(
            datestyle_in_full("SQL", "Postgres, DMY").as_deref(),
            Some("SQL, DMY")
        );
        assert_eq!(full("ISO, SQL"), None);
        assert_eq!(full("DEFAULT"), None);
        assert_eq!(full("nonsense"), None);
    }

    #[test]
    fn tracked_names() {
        let extra = vec!["IntervalStyle".to_string()];
        assert_eq!(tracked_name("datestyle", &extra), Some("DateStyle"));
        assert_eq!(tracked_name("intervalstyle", &extra), Some("IntervalStyle"));
        assert_eq!(tracked_name("search_path", &extra), None);
        assert_eq!(
            tracked_name("Extra_Float_Digits", &[]),
            Some("extra_float_digits")
        );
    }
}
