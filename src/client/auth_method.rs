//! Which exchange a login gets: auth_type's, or under auth_type hba the
//! method of the first auth_hba_file rule that matches (no rule, or
//! reject, refuses the login as PgBouncer does); and the checks of the
//! methods that prove who the client is without a password: cert (the
//! certificate's name) and peer (the OS user of a Unix-socket peer), each
//! through the rule's ident map when it names one.

use tracing::{debug, warn};

use super::SessionEnd;
use crate::auth;
use crate::config::hba::{From, Method};
use crate::config::ident::{self, Mapping};
use crate::config::ldap::LdapOptions;
use crate::config::{AuthType, Config};
use crate::protocol::sqlstate;
use crate::transport::Stream;

/// A rule's ident map and its name.
pub(super) type Map<'a> = Option<&'a (String, Vec<Mapping>)>;

/// The exchange a login runs.
#[derive(Clone, Copy)]
pub(super) enum Exchange<'a> {
    /// Nothing to prove (the user must be known).
    Trust,
    /// A cleartext password.
    Plain,
    /// md5, or SCRAM for a SCRAM secret.
    Md5,
    /// SCRAM-SHA-256 (-PLUS over TLS).
    Scram,
    /// A TLS client certificate naming the user (or mapped to it).
    Cert(Map<'a>),
    /// The Unix-socket peer's OS user is the user (or mapped to it).
    Peer(Map<'a>),
    /// The cleartext password binds to the LDAP directory.
    Ldap(&'a LdapOptions),
    /// The cleartext password is checked by PAM.
    Pam,
}

/// The exchange for `user` logging in to `database` (None: auth_type any,
/// nothing at all is checked).
pub(super) fn choose<'a>(
    stream: &Stream,
    cfg: &'a Config,
    database: (&str, bool),
    user: &str,
) -> Result<Option<Exchange<'a>>, SessionEnd> {
    let exchange = match cfg.general.auth_type {
        AuthType::Any => return Ok(None),
        AuthType::Trust => Exchange::Trust,
        AuthType::Plain => Exchange::Plain,
        AuthType::Md5 => Exchange::Md5,
        AuthType::ScramSha256 => Exchange::Scram,
        AuthType::Cert => Exchange::Cert(None),
        AuthType::Hba => hba(stream, cfg, database, user)?,
        AuthType::Ldap => match &cfg.ldap {
            Some(options) => Exchange::Ldap(options),
            None => return Err(unsupported("LDAP without auth_ldap_options")),
        },
        AuthType::Pam => Exchange::Pam,
    };
    Ok(Some(exchange))
}

fn hba<'a>(
    stream: &Stream,
    cfg: &'a Config,
    (database, physical): (&str, bool),
    user: &str,
) -> Result<Exchange<'a>, SessionEnd> {
    let from = match (stream.unix_peer(), stream.tcp_peer_addr()) {
        (Some(_), _) => From::Unix,
        (None, Some(addr)) => From::Ip(addr.ip()),
        (None, None) => From::Unix,
    };
    let tls = matches!(stream, Stream::Tls(_));
    let Some(rule) = cfg.hba.find(from, tls, (database, physical), user) else {
        warn!(%user, %database, "no auth_hba_file line matches this login");
        return Err(SessionEnd::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "no authentication method is found",
        ));
    };
    debug!(%user, %database, line = rule.line, "auth_hba_file line matched");
    Ok(match rule.method {
        Method::Trust => Exchange::Trust,
        Method::Password => Exchange::Plain,
        Method::Md5 => Exchange::Md5,
        Method::ScramSha256 => Exchange::Scram,
        Method::Cert => Exchange::Cert(rule.map.as_ref()),
        Method::Peer => Exchange::Peer(rule.map.as_ref()),
        Method::Reject => {
            warn!(%user, %database, line = rule.line, "rejected by auth_hba_file");
            return Err(SessionEnd::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "login rejected",
            ));
        }
        Method::Ldap => match &rule.ldap {
            Some(options) => Exchange::Ldap(options),
            None => return Err(unsupported("LDAP without options")),
        },
    })
}

fn unsupported(what: &str) -> SessionEnd {
    warn!("{what} authentication is not supported by pgsluice yet");
    SessionEnd::fatal(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("{what} authentication is not supported by pgsluice yet"),
    )
}

/// cert, as PgBouncer: the client is on TLS, sent a certificate (checked
/// against client_tls_ca_file by the handshake), and the certificate's
/// common name is the user name, or is mapped to it by the rule's map.
pub(super) fn cert(stream: &Stream, user: &str, map: Map<'_>) -> Result<(), SessionEnd> {
    let name = match stream {
        Stream::Tls(s) => s
            .peer_certificates()
            .first()
            .map(|c| auth::x509::subject_common_name(c)),
        _ => None,
    };
    let why = match (name, map) {
        (None, _) => Some("TLS client certificate required".to_string()),
        (Some(cn), None) if cn.as_deref() != Some(user) => {
            Some("TLS certificate name mismatch".to_string())
        }
        (Some(cn), Some((map, lines)))
            if !ident::allows(lines, cn.as_deref().unwrap_or(""), user) =>
        {
            Some(format!("ident map: {map} does not have a match"))
        }
        _ => None,
    };
    why.map_or(Ok(()), |why| {
        Err(refused(user, "certificate", &why, CERT_FAILED))
    })
}

/// peer, as PgBouncer: the client is on the Unix socket, and the OS user
/// of the process at the other end is the user name, or is mapped to it.
pub(super) async fn peer(stream: &Stream, user: &str, map: Map<'_>) -> Result<(), SessionEnd> {
    let uid = stream.unix_peer().and_then(|p| p.uid);
    let os_user = match uid {
        // NSS may ask a directory service: not on the shard's thread.
        Some(uid) => tokio::task::spawn_blocking(move || os_user_name(uid))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let why = match (&os_user, map) {
        (None, _) if uid.is_none() => Some("not a Unix-socket connection".to_string()),
        (None, _) => Some(format!("no OS user has uid {}", uid.unwrap_or_default())),
        (Some(os), None) if os != user => Some(format!("OS user {os} is not {user}")),
        (Some(os), Some((map, lines))) if !ident::allows(lines, os, user) => Some(format!(
            "ident map {map} cannot be matched for OS user {os}"
        )),
        _ => None,
    };
    why.map_or(Ok(()), |why| Err(refused(user, "peer", &why, PEER_FAILED)))
}

/// What a refused cert or peer login is told, in PgBouncer's words.
pub(super) const CERT_FAILED: &str = "certificate authentication failed";
pub(super) const PEER_FAILED: &str = "unix socket login rejected";

/// A cert or peer login refused: the reason logged, `message` told.
pub(super) fn refused(
    user: &str,
    method: &str,
    why: &str,
    message: impl Into<String>,
) -> SessionEnd {
    warn!(%user, "{method} authentication failed: {why}");
    SessionEnd::fatal(sqlstate::INVALID_AUTHORIZATION, message)
}

fn os_user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}
