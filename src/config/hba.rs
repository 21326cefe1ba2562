//! auth_hba_file: which authentication method a login gets under
//! auth_type = hba, in PostgreSQL's pg_hba.conf syntax as PgBouncer reads
//! it. A line is `local DATABASE USER METHOD [map=NAME]` or
//! `host|hostssl|hostnossl DATABASE USER ADDRESS METHOD [map=NAME]`, where
//! DATABASE and USER are comma lists of names, quoted names, `all`,
//! `@file` (names read from a file beside this one), and for DATABASE
//! `sameuser` and `replication`; ADDRESS is `all`, `addr/bits` or
//! `addr mask`; METHOD is trust, reject, md5, password, scram-sha-256,
//! cert, peer or ldap (its options follow it). The first matching line
//! decides; no matching line refuses the login.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::hba_lex::{Token, tokens};
use super::ident::{IdentMaps, Mapping};

/// What a rule asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Trust,
    Reject,
    Md5,
    /// Clear text (`password`).
    Password,
    ScramSha256,
    Cert,
    Peer,
    Ldap,
}

/// Where a client comes from, as a rule sees it.
#[derive(Debug, Clone, Copy)]
pub enum From {
    /// A Unix socket.
    Unix,
    /// TCP, from this address.
    Ip(IpAddr),
}

/// A database or user list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Names {
    all: bool,
    sameuser: bool,
    /// The `replication` keyword: matches physical replication
    /// connections (only those, as in PostgreSQL).
    replication: bool,
    names: HashSet<String>,
}

impl Names {
    fn matches(&self, name: &str, other: &str) -> bool {
        self.all || (self.sameuser && name == other) || self.names.contains(name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Any,
    Net(IpAddr, IpAddr),
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The line it was read from (1-based).
    pub line: usize,
    kind: Kind,
    databases: Names,
    users: Names,
    address: Address,
    pub method: Method,
    /// The ident map of `map=NAME`, with its name.
    pub map: Option<(String, Vec<Mapping>)>,
    /// The options of an `ldap` line.
    pub ldap: Option<super::ldap::LdapOptions>,
}

/// The rules of an auth_hba_file, in file order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Hba {
    pub rules: Vec<Rule>,
}

impl Hba {
    /// Parse `text`, read from `path` (`@file` names are read relative to
    /// it); `maps` are auth_ident_file's. Every bad line is an error naming
    /// the file and line.
    pub fn parse(text: &str, path: &Path, maps: &IdentMaps) -> Result<Hba, Vec<ConfigError>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let parsed = tokens(line).and_then(|t| match t.is_empty() {
                true => Ok(None),
                false => rule(&t, i + 1, path, maps).map(Some),
            });
            match parsed {
                Ok(Some(r)) => rules.push(r),
                Ok(None) => {}
                Err(e) => errors.push(ConfigError::new(path, i + 1, "auth_hba_file", e)),
            }
        }
        match errors.is_empty() {
            true => Ok(Hba { rules }),
            false => Err(errors),
        }
    }

    /// The rule for a login of `user` to `database` from `from` (over TLS
    /// or not), if one matches. A `physical` replication connection
    /// matches only lines whose database list has `replication`, as in
    /// PostgreSQL (a logical one, `replication=database`, matches as an
    /// ordinary login).
    pub fn find(
        &self,
        from: From,
        tls: bool,
        (database, physical): (&str, bool),
        user: &str,
    ) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            let place = match (r.kind, from) {
                (Kind::Local, From::Unix) => true,
                (Kind::Local, _) | (_, From::Unix) => false,
                (Kind::HostSsl, _) if !tls => false,
                (Kind::HostNoSsl, _) if tls => false,
                (_, From::Ip(ip)) => r.address.matches(ip),
            };
            let database_matches = match physical {
                true => r.databases.replication,
                false => r.databases.matches(database, user),
            };
            place && database_matches && r.users.matches(user, database)
        })
    }
}

impl Address {
    fn matches(&self, ip: IpAddr) -> bool {
        match (self, ip.to_canonical()) {
            (Address::Any, _) => true,
            (Address::Net(IpAddr::V4(net), IpAddr::V4(mask)), IpAddr::V4(ip)) => {
                u32::from(ip) & u32::from(*mask) == u32::from(*net)
            }
            (Address::Net(IpAddr::V6(net), IpAddr::V6(mask)), IpAddr::V6(ip)) => {
                u128::from(ip) & u128::from(*mask) == u128::from(*net)
            }
            _ => false,
        }
    }
}

/// A cursor over a line's tokens.
struct Line<'a> {
    toks: &'a [Token],
    at: usize,
}

impl<'a> Line<'a> {
    fn next(&mut self) -> Option<&'a Token> {
        let t = self.toks.get(self.at);
        self.at += 1;
        t
    }

    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.at)
    }
}

fn rule(toks: &[Token], line: usize, path: &Path, maps: &IdentMaps) -> Result<Rule, String> {
    let mut l = Line { toks, at: 0 };
    let kind = match l.next() {
        Some(t) if t.is("local") => Kind::Local,
        Some(t) if t.is("host") => Kind::Host,
        Some(t) if t.is("hostssl") => Kind::HostSsl,
        Some(t) if t.is("hostnossl") => Kind::HostNoSsl,
        _ => return Err("unknown connection type (local, host, hostssl, hostnossl)".into()),
    };
    let databases = names(&mut l, path, true)?;
    let users = names(&mut l, path, false)?;
    let address = match kind {
        Kind::Local => Address::Any,
        _ => address(&mut l)?,
    };
    let method = match l.next() {
        Some(t) if t.is("trust") => Method::Trust,
        Some(t) if t.is("reject") => Method::Reject,
        Some(t) if t.is("md5") => Method::Md5,
        Some(t) if t.is("password") => Method::Password,
        Some(t) if t.is("scram-sha-256") => Method::ScramSha256,
        Some(t) if t.is("cert") => Method::Cert,
        Some(t) if t.is("peer") => Method::Peer,
        Some(t) if t.is("ldap") => Method::Ldap,
        Some(Token::Word(w)) => return Err(format!("unsupported method: {w}")),
        _ => return Err("missing method".into()),
    };
    if method == Method::Peer && kind != Kind::Local {
        return Err("peer is only for local lines".into());
    }
    let mut rule = Rule {
        line,
        kind,
        databases,
        users,
        address,
        method,
        map: None,
        ldap: None,
    };
    if method == Method::Ldap {
        rule.ldap = Some(super::ldap::LdapOptions::from_tokens(&l.toks[l.at..])?);
        return Ok(rule);
    }
    if let Some(Token::Word(w)) = l.peek()
        && let Some(name) = w.strip_prefix("map=")
    {
        l.next();
        if !matches!(method, Method::Peer | Method::Cert) {
            return Err(format!(
                "map= is only for peer and cert, not on this line's method ({w})"
            ));
        }
        let Some(map) = maps.get(name) else {
            return Err(format!("ident map {name} is not found in auth_ident_file"));
        };
        rule.map = Some((name.to_string(), map.to_vec()));
    }
    match l.next() {
        None => Ok(rule),
        Some(t) => Err(format!(
            "unsupported parameters: {}",
            t.name().unwrap_or(",")
        )),
    }
}

/// A comma list of names.
fn names(l: &mut Line<'_>, path: &Path, database: bool) -> Result<Names, String> {
    let mut out = Names::default();
    let what = if database { "database" } else { "user" };
    loop {
        match l.next() {
            Some(t) if t.is("all") => out.all = true,
            Some(t) if database && t.is("sameuser") => out.sameuser = true,
            Some(t) if database && t.is("replication") => out.replication = true,
            Some(t) if database && (t.is("samerole") || t.is("samegroup")) => {
                return Err(format!("{} is not supported", t.name().unwrap_or_default()));
            }
            Some(Token::Word(w)) if w.starts_with('+') => {
                return Err(format!("group membership ({w}) is not supported"));
            }
            Some(Token::Word(w)) if w.starts_with('@') => {
                let file = path.parent().unwrap_or(Path::new(".")).join(&w[1..]);
                name_file(&file, &mut out.names)?;
            }
            Some(Token::Word(w) | Token::Quoted(w)) => {
                out.names.insert(w.clone());
            }
            _ => return Err(format!("missing {what} name")),
        }
        if l.peek() != Some(&Token::Comma) {
            return Ok(out);
        }
        l.next();
    }
}

/// The names of an `@file` (white space or comma separated).
fn name_file(file: &PathBuf, names: &mut HashSet<String>) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("could not read {}: {e}", file.display()))?;
    for line in text.lines() {
        for t in tokens(line).map_err(|e| format!("{}: {e}", file.display()))? {
            if let Some(n) = t.name() {
                names.insert(n.to_string());
            }
        }
    }
    Ok(())
}

fn address(l: &mut Line<'_>) -> Result<Address, String> {
    let Some(Token::Word(text)) = l.next() else {
        return Err("missing address".into());
    };
    if text == "all" {
        return Ok(Address::Any);
    }
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text.as_str(), None),
    };
    let net: IpAddr = addr
        .parse()
        .map_err(|_| format!("failed to parse address: {addr}"))?;
    let mask = match bits {
        Some(b) => {
            let max = if net.is_ipv4() { 32 } else { 128 };
            let bits: u32 = b
                .parse()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("invalid mask: /{b}"))?;
            prefix_mask(net, bits)
        }
        None => {
            let Some(Token::Word(m)) = l.next() else {
                return Err(format!("missing mask after {addr}"));
            };
            let mask: IpAddr = m
                .parse()
                .map_err(|_| format!("failed to parse mask: {m}"))?;
            if mask.is_ipv4() != net.is_ipv4() {
                return Err(format!("mask {m} is not of the address's family"));
            }
            mask
        }
    };
    // As PgBouncer and PostgreSQL: bits of the address outside the mask
    // are cleared (PostgreSQL would refuse such a line; PgBouncer warns).
    let net = match (net, mask) {
        (IpAddr::V4(n), IpAddr::V4(m)) => IpAddr::V4((u32::from(n) & u32::from(m)).into()),
        (IpAddr::V6(n), IpAddr::V6(m)) => IpAddr::V6((u128::from(n) & u128::from(m)).into()),
        _ => unreachable!("families checked above"),
    };
    Ok(Address::Net(net, mask))
}

fn prefix_mask(net: IpAddr, bits: u32) -> IpAddr {
    match net {
        IpAddr::V4(_) => IpAddr::V4(u32::MAX.checked_shl(32 - bits).unwrap_or(0).into()),
        IpAddr::V6(_) => IpAddr::V6(u128::MAX.checked_shl(128 - bits).unwrap_or(0).into()),
    }
}

#[cfg(test)]
#[path = "hba_tests.rs"]
mod tests;
