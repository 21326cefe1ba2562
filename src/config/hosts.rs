//! How a database entry's host list is used: `load_balance_hosts`
//! (PgBouncer's) and `target_session_attrs` (libpq's values, a pgsluice
//! key for PgBouncer's [databases] and [pgbouncer]), as typed values.

/// `target_session_attrs`: which hosts of a host list new server
/// connections may go to, with libpq's values and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionAttrs {
    /// Any host (PgBouncer's only behaviour).
    #[default]
    Any,
    /// A host whose sessions accept writes: not in hot standby and
    /// `default_transaction_read_only` off.
    ReadWrite,
    /// A host whose sessions do not accept writes (the opposite).
    ReadOnly,
    /// A host not in hot standby.
    Primary,
    /// A host in hot standby.
    Standby,
    /// A standby when one is up, else any host.
    PreferStandby,
}

/// `target_session_attrs` values, canonical spelling (libpq's).
pub(crate) const SESSION_ATTRS: &[&str] = &[
    "any",
    "read-write",
    "read-only",
    "primary",
    "standby",
    "prefer-standby",
];

impl SessionAttrs {
    /// The value for one of [`SESSION_ATTRS`].
    pub(crate) fn from_name(name: &str) -> Option<SessionAttrs> {
        Some(match name.to_ascii_lowercase().as_str() {
            "any" => SessionAttrs::Any,
            "read-write" => SessionAttrs::ReadWrite,
            "read-only" => SessionAttrs::ReadOnly,
            "primary" => SessionAttrs::Primary,
            "standby" => SessionAttrs::Standby,
            "prefer-standby" => SessionAttrs::PreferStandby,
            _ => return None,
        })
    }

    /// The value as written in a configuration.
    pub fn name(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Primary => "primary",
            SessionAttrs::Standby => "standby",
            SessionAttrs::PreferStandby => "prefer-standby",
        }
    }

    /// Whether a session with these facts is acceptable: `hot_standby`
    /// (the server is in recovery) and `read_only`
    /// (default_transaction_read_only is on). `relaxed` is the second pass
    /// of prefer-standby, which takes any host.
    pub fn accepts(self, hot_standby: bool, read_only: bool, relaxed: bool) -> bool {
        match self {
            SessionAttrs::Any => true,
            SessionAttrs::ReadWrite => !hot_standby && !read_only,
            SessionAttrs::ReadOnly => hot_standby || read_only,
            SessionAttrs::Primary => !hot_standby,
            SessionAttrs::Standby => hot_standby,
            SessionAttrs::PreferStandby => relaxed || hot_standby,
        }
    }
}

/// `load_balance_hosts`: how a host list's entry is chosen for a new
/// server connection (PgBouncer's values and default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LoadBalance {
    /// Each new connection takes the next host of the list.
    #[default]
    RoundRobin,
    /// New connections keep to one host until a connection to it fails.
    Disable,
}

impl LoadBalance {
    /// The value of a [databases] entry's `load_balance_hosts` (canonical
    /// spelling; None = the default).
    pub(crate) fn from_entry(v: Option<&str>) -> LoadBalance {
        match v {
            Some("disable") => LoadBalance::Disable,
            _ => LoadBalance::RoundRobin,
        }
    }
}

/// A `port=` value: one port, or (a pgsluice extension, as in libpq) a
/// comma list with one port per host.
pub(crate) fn parse_ports(v: &str) -> Result<Vec<u16>, String> {
    v.split(',')
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid port: {v:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_accept_as_libpq_does() {
        use SessionAttrs::*;
        // (hot_standby, read_only) of a primary, a read-only primary, a standby.
        let hosts = [(false, false), (false, true), (true, true)];
        let fits = |a: SessionAttrs, relaxed| {
            hosts
                .iter()
                .map(|&(h, r)| a.accepts(h, r, relaxed))
                .collect::<Vec<_>>()
        };
        assert_eq!(fits(Any, false), [true, true, true]);
        assert_eq!(fits(ReadWrite, false), [true, false, false]);
        assert_eq!(fits(ReadOnly, false), [false, true, true]);
        assert_eq!(fits(Primary, false), [true, true, false]);
        assert_eq!(fits(Standby, false), [false, false, true]);
        assert_eq!(fits(PreferStandby, false), [false, false, true]);
        assert_eq!(fits(PreferStandby, true), [true, true, true]);
        for name in SESSION_ATTRS {
            assert_eq!(SessionAttrs::from_name(name).unwrap().name(), *name);
        }
        assert_eq!(SessionAttrs::from_name("READ-WRITE"), Some(ReadWrite));
        assert_eq!(SessionAttrs::from_name("master"), None);
    }

    #[test]
    fn ports_one_or_a_list() {
        assert_eq!(parse_ports("5432"), Ok(vec![5432]));
        assert_eq!(parse_ports("5432, 5433"), Ok(vec![5432, 5433]));
        assert!(parse_ports("5432,").is_err());
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("99999").is_err());
    }
}
