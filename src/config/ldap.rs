//! LDAP options, as PostgreSQL's pg_hba.conf `ldap` method takes them and
//! PgBouncer reads them (after `ldap` on an auth_hba_file line, or in
//! auth_ldap_options for auth_type = ldap): `ldapserver`, `ldapport`,
//! `ldapscheme`, `ldaptls`, and either simple bind (`ldapprefix`,
//! `ldapsuffix`) or search+bind (`ldapbasedn`, `ldapbinddn`,
//! `ldapbindpasswd`, `ldapsearchattribute`, `ldapsearchfilter`), or an
//! `ldapurl` that gives server, port, base DN, attribute and scope at once.
//! `ldapscheme=ldaps` (or an `ldaps://` URL) speaks TLS from the start
//! (port 636 by default), `ldaptls=1` upgrades with StartTLS.

use super::hba_lex::{Token, tokens};

/// How a login's password is checked against the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapMode {
    /// Bind as `prefix + user + suffix`.
    Simple { prefix: String, suffix: String },
    /// Bind as `bind_dn` (anonymous when empty), find the user's entry
    /// under `base_dn` (`filter` with `$username`, else `attribute=user`),
    /// then bind as that entry.
    Search {
        base_dn: String,
        bind_dn: String,
        bind_password: String,
        attribute: String,
        filter: Option<String>,
        subtree: bool,
    },
}

/// Where the directory is and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapOptions {
    /// Servers, tried in order.
    pub servers: Vec<String>,
    pub port: u16,
    pub mode: LdapMode,
    /// `ldaps`: TLS from the first byte.
    pub ldaps: bool,
    /// `ldaptls=1`: StartTLS before binding (with `ldaps` too, it fails at
    /// connect time, as libldap's StartTLS on a TLS connection does).
    pub starttls: bool,
}

impl LdapOptions {
    /// Parse `text` (`key=value` pairs, values may be double-quoted).
    pub fn parse(text: &str) -> Result<LdapOptions, String> {
        let toks = tokens(text)?;
        Self::from_tokens(&toks)
    }

    /// Parse the tokens that follow `ldap` on an auth_hba_file line.
    pub(super) fn from_tokens(toks: &[Token]) -> Result<LdapOptions, String> {
        let mut servers = Vec::new();
        let mut port = None;
        let (mut prefix, mut suffix) = (None, None);
        let (mut base_dn, mut bind_dn, mut bind_password) = (None, None, None);
        let (mut attribute, mut filter) = (None, None);
        let mut subtree = true;
        let (mut ldaps, mut starttls) = (false, false);
        for (key, value) in pairs(toks)? {
            let v = value.clone();
            match key.as_str() {
                "ldapserver" => servers.extend(v.split_whitespace().map(str::to_owned)),
                "ldapport" => port = Some(v.parse().map_err(|_| format!("invalid ldapport: {v}"))?),
                "ldapscheme" => {
                    ldaps = match v.as_str() {
                        "ldap" => false,
                        "ldaps" => true,
                        _ => return Err(format!("invalid ldapscheme value: \"{v}\"")),
                    }
                }
                // As PostgreSQL and PgBouncer: "1" turns it on, anything else off.
                "ldaptls" => starttls = v == "1",
                "ldapprefix" => prefix = Some(v),
                "ldapsuffix" => suffix = Some(v),
                "ldapbasedn" => base_dn = Some(v),
                "ldapbinddn" => bind_dn = Some(v),
                "ldapbindpasswd" => bind_password = Some(v),
                "ldapsearchattribute" => attribute = Some(v),
                "ldapsearchfilter" => filter = Some(v),
                "ldapurl" => {
                    let url = Url::parse(&v)?;
                    servers.push(url.host);
                    ldaps = url.ldaps;
                    port = port.or(url.port);
                    base_dn = Some(url.base_dn);
                    if let Some(a) = url.attribute {
                        attribute = Some(a);
                    }
                    if let Some(f) = url.filter {
                        filter = Some(f);
                    }
                    subtree = url.subtree;
                }
                other => return Err(format!("unknown LDAP option: {other}")),
            }
        }
        if servers.is_empty() {
            return Err("ldapserver or ldapurl is required".into());
        }
        let simple = prefix.is_some() || suffix.is_some();
        let search = base_dn.is_some()
            || bind_dn.is_some()
            || bind_password.is_some()
            || attribute.is_some()
            || filter.is_some();
        let mode = match (simple, search) {
            (true, true) => {
                return Err("cannot mix ldapprefix/ldapsuffix with search options".into());
            }
            (true, false) => LdapMode::Simple {
                prefix: prefix.unwrap_or_default(),
                suffix: suffix.unwrap_or_default(),
            },
            (false, true) => {
                if attribute.is_some() && filter.is_some() {
                    return Err("cannot use both ldapsearchattribute and ldapsearchfilter".into());
                }
                LdapMode::Search {
                    base_dn: base_dn.ok_or("ldapbasedn is required for search+bind")?,
                    bind_dn: bind_dn.unwrap_or_default(),
                    bind_password: bind_password.unwrap_or_default(),
                    attribute: attribute.unwrap_or_else(|| "uid".into()),
                    filter,
                    subtree,
                }
            }
            (false, false) => {
                return Err("ldapprefix/ldapsuffix or ldapbasedn is required".into());
            }
        };
        Ok(LdapOptions {
            servers,
            port: port.unwrap_or(if ldaps { 636 } else { 389 }),
            mode,
            ldaps,
            starttls,
        })
    }
}

/// `key=value` pairs, as PgBouncer reads them: separated by white space
/// and an optional comma; the key and the value may each be double-quoted
/// (`"ldapport"=389`, `ldapbasedn="dc=example,dc=net"`); no space around `=`.
fn pairs(toks: &[Token]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = toks.iter().peekable();
    while let Some(t) = it.next() {
        let (key, value) = match t {
            Token::Comma => continue,
            Token::Word(w) => match w.split_once('=') {
                Some((key, value)) => (key.to_string(), value.to_string()),
                None => return Err(format!("expected key=value, found {w}")),
            },
            // A quoted key: the next word starts with '='.
            Token::Quoted(key) => match it.next() {
                Some(Token::Word(w)) if w.starts_with('=') => (key.clone(), w[1..].to_string()),
                _ => return Err(format!("expected = after \"{key}\"")),
            },
        };
        let value = match (value.is_empty(), it.peek()) {
            (true, Some(Token::Quoted(q))) => {
                let q = q.clone();
                it.next();
                q
            }
            _ => value,
        };
        out.push((key, value));
    }
    Ok(out)
}

/// An RFC 4516 URL: `ldap[s]://host[:port]/basedn[?attribute[?scope[?filter]]]`.
struct Url {
    ldaps: bool,
    host: String,
    port: Option<u16>,
    base_dn: String,
    attribute: Option<String>,
    subtree: bool,
    filter: Option<String>,
}

impl Url {
    fn parse(text: &str) -> Result<Url, String> {
        let (ldaps, rest) = match (text.strip_prefix("ldap://"), text.strip_prefix("ldaps://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => {
                return Err(format!(
                    "ldapurl must start with ldap:// or ldaps://: {text}"
                ));
            }
        };
        let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse()
                        .map_err(|_| format!("invalid port in ldapurl: {p}"))?,
                ),
            ),
            None => (hostport, None),
        };
        let mut parts = path.split('?');
        let base_dn = percent_decode(parts.next().unwrap_or(""));
        let attribute = parts.next().filter(|a| !a.is_empty()).map(str::to_owned);
        let subtree = match parts.next() {
            None | Some("") | Some("sub") => true,
            Some("one") | Some("base") => false,
            Some(s) => return Err(format!("invalid scope in ldapurl: {s}")),
        };
        let filter = parts.next().filter(|f| !f.is_empty()).map(percent_decode);
        Ok(Url {
            ldaps,
            host: host.to_string(),
            port,
            base_dn,
            attribute: attribute.filter(|_| filter.is_none()),
            subtree,
            filter,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_search_and_url() {
        let o = LdapOptions::parse("ldapserver=127.0.0.1 ldapport=3890 ldapprefix=\"uid=\" ldapsuffix=\",dc=example,dc=net\"").unwrap();
        assert_eq!(o.servers, ["127.0.0.1"]);
        assert_eq!(o.port, 3890);
        assert_eq!(
            o.mode,
            LdapMode::Simple {
                prefix: "uid=".into(),
                suffix: ",dc=example,dc=net".into()
            }
        );
        let o = LdapOptions::parse("ldapserver=\"a b\" ldapbasedn=\"dc=example,dc=net\" ldapsearchfilter=\"(uid=$username)\"").unwrap();
        assert_eq!(o.servers, ["a", "b"]);
        assert_eq!(o.port, 389);
        assert!(
            matches!(o.mode, LdapMode::Search { ref filter, .. } if filter.as_deref() == Some("(uid=$username)"))
        );
        let o =
            LdapOptions::parse("ldapurl=\"ldap://h/dc=x??sub?(|(uid=$username)(mail=$username))\"")
                .unwrap();
        assert!(
            matches!(o.mode, LdapMode::Search { ref filter, subtree: true, .. } if filter.as_deref() == Some("(|(uid=$username)(mail=$username))"))
        );
        let o = LdapOptions::parse("ldapurl=\"ldap://h:10389/dc=example,dc=net?cn?one\"").unwrap();
        assert_eq!((o.servers[0].as_str(), o.port), ("h", 10389));
        assert!(
            matches!(o.mode, LdapMode::Search { ref base_dn, ref attribute, subtree: false, .. } if base_dn == "dc=example,dc=net" && attribute == "cn")
        );
    }

    #[test]
    fn bad_options_are_refused() {
        for bad in [
            "ldapprefix=x",
            "ldapserver=h",
            "ldapserver=h ldapprefix=x ldapbasedn=y",
            "ldapserver=h ldapbasedn=y ldapsearchattribute=a ldapsearchfilter=f",
            "ldapserver=h ldapprefix=x ldapbogus=1",
            "ldapserver=h ldapprefix=x ldapscheme=ldapx",
            "ldapurl=http://h/dc=x",
            "ldapserver=h ldapport=x ldapprefix=x",
        ] {
            assert!(LdapOptions::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quoted_keys_and_commas() {
        let o = LdapOptions::parse(
            "ldapserver=127.0.0.1 \"ldapport\"=10234 ldapbasedn=\"dc=example,dc=net\" ,ldapsearchfilter=\"uid=$username\"",
        )
        .unwrap();
        assert_eq!(o.port, 10234);
        assert!(
            matches!(o.mode, LdapMode::Search { ref base_dn, ref filter, .. } if base_dn == "dc=example,dc=net" && filter.as_deref() == Some("uid=$username"))
        );
        assert!(LdapOptions::parse("ldapserver=h \"ldapport\" ldapprefix=x").is_err());
    }

    #[test]
    fn ldaps_and_starttls() {
        let o = LdapOptions::parse("ldapserver=h ldapprefix=x").unwrap();
        assert_eq!((o.ldaps, o.starttls, o.port), (false, false, 389));
        let o = LdapOptions::parse("ldapserver=h ldapscheme=ldaps ldapprefix=x").unwrap();
        assert_eq!((o.ldaps, o.starttls, o.port), (true, false, 636));
        let o = LdapOptions::parse("ldapserver=h ldapport=10389 ldaptls=1 ldapprefix=x").unwrap();
        assert_eq!((o.ldaps, o.starttls, o.port), (false, true, 10389));
        let o = LdapOptions::parse("ldapserver=h ldaptls=0 ldapprefix=x").unwrap();
        assert!(!o.starttls);
        let o = LdapOptions::parse("ldapurl=\"ldaps://h:1636/dc=x?uid?sub\"").unwrap();
        assert_eq!((o.ldaps, o.port, o.servers[0].as_str()), (true, 1636, "h"));
        let o = LdapOptions::parse("ldapurl=\"ldaps://h/dc=x\" ldaptls=1").unwrap();
        assert_eq!((o.ldaps, o.starttls, o.port), (true, true, 636));
    }
}
