//! auth_type ldap and auth_hba_file's ldap lines: the client's cleartext
//! password is checked by binding to the directory, as PostgreSQL's ldap
//! method does: as `prefix + user + suffix` (simple bind), or, after a
//! search for the user's entry (as ldapbinddn, or anonymously), as that
//! entry (search+bind). The bind runs on the timer runtime, never on a
//! shard: the LDAP client library uses tokio's timers, and a slow
//! directory must not hold up the shard's other clients. `ldaps` and
//! `ldaptls=1` (StartTLS) check the server's certificate as libldap's
//! ldap.conf says (`config::ldap_conf`).

use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, StdStream};
use tracing::debug;

use super::SessionEnd;
use crate::config::ldap::{LdapMode, LdapOptions};

/// How long one server may take to accept the connection (TCP, StartTLS
/// and the TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the binds (and the search) may take once connected.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Check `password` for `user` against the directory.
pub(super) async fn check(
    options: &LdapOptions,
    tls: Option<&Arc<rustls::ClientConfig>>,
    user: &str,
    password: &str,
) -> Result<(), SessionEnd> {
    // An empty password would be an unauthenticated bind, which LDAP
    // servers accept: refused before asking, as PostgreSQL does.
    let outcome = if password.is_empty() {
        Err("empty password".to_string())
    } else {
        let (options, tls, user_owned, password) = (
            options.clone(),
            tls.cloned(),
            user.to_string(),
            password.to_string(),
        );
        match crate::runtime::timer::spawn_off_shard(async move {
            bind_any(&options, tls, &user_owned, &password).await
        })
        .await
        {
            Ok(r) => r,
            Err(e) => Err(format!("LDAP task failed: {e}")),
        }
    };
    match outcome {
        Ok(()) => {
            debug!(%user, "LDAP authentication succeeded");
            Ok(())
        }
        Err(why) => Err(super::auth_method::refused(
            user,
            "LDAP",
            &why,
            format!("LDAP authentication failed for user \"{user}\""),
        )),
    }
}

/// Try the servers in order; the first that answers decides.
async fn bind_any(
    options: &LdapOptions,
    tls: Option<Arc<rustls::ClientConfig>>,
    user: &str,
    password: &str,
) -> Result<(), String> {
    if options.ldaps && options.starttls {
        return Err(
            "ldaptls=1 with ldaps: StartTLS on a connection that is TLS already \
                    is refused (as libldap refuses it)"
                .into(),
        );
    }
    let tls = match (options.ldaps || options.starttls, tls) {
        (false, _) => None,
        (true, Some(tls)) => Some(tls),
        // Built at load whenever an option asks for TLS.
        (true, None) => return Err("no LDAP TLS configuration".into()),
    };
    let mut last = String::from("no server");
    for server in &options.servers {
        let (scheme, port) = (if options.ldaps { "ldaps" } else { "ldap" }, options.port);
        let url = format!("{scheme}://{server}:{port}");
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, connect(server, port, options, tls.clone()))
                .await
                .unwrap_or_else(|_| Err(format!("no answer in {CONNECT_TIMEOUT:?}")));
        let (conn, mut ldap) = match connected {
            Ok(c) => c,
            Err(e) => {
                last = format!("could not connect to {url}: {e}");
                continue;
            }
        };
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        let result = tokio::time::timeout(
            OPERATION_TIMEOUT,
            bind(&mut ldap, &options.mode, user, password),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {OPERATION_TIMEOUT:?}")));
        let _ = tokio::time::timeout(OPERATION_TIMEOUT, ldap.unbind()).await;
        return result.map_err(|e| format!("{url}: {e}"));
    }
    Err(last)
}

/// Connect to one server: plain, ldaps, or plain then StartTLS (which
/// `ldap_starttls` runs; ldap3 then runs the handshake on that socket).
async fn connect(
    server: &str,
    port: u16,
    options: &LdapOptions,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(LdapConnAsync, ldap3::Ldap), String> {
    let mut settings = LdapConnSettings::new();
    if let Some(tls) = tls {
        settings = settings.set_config(tls);
    }
    let url = if options.starttls {
        let mut stream = tokio::net::TcpStream::connect((server, port))
            .await
            .map_err(|e| e.to_string())?;
        super::ldap_starttls::negotiate(&mut stream).await?;
        let stream = stream.into_std().map_err(|e| e.to_string())?;
        settings = settings.set_std_stream(StdStream::Tcp(stream));
        // The TLS handshake on the socket, as for ldaps.
        format!("ldaps://{server}:{port}")
    } else {
        let scheme = if options.ldaps { "ldaps" } else { "ldap" };
        format!("{scheme}://{server}:{port}")
    };
    LdapConnAsync::with_settings(settings, &url)
        .await
        .map_err(|e| e.to_string())
}

async fn bind(
    ldap: &mut ldap3::Ldap,
    mode: &LdapMode,
    user: &str,
    password: &str,
) -> Result<(), String> {
    let err = |what: &str, e: ldap3::LdapError| format!("{what}: {e}");
    let dn = match mode {
        LdapMode::Simple { prefix, suffix } => format!("{prefix}{user}{suffix}"),
        LdapMode::Search {
            base_dn,
            bind_dn,
            bind_password,
            attribute,
            filter,
            subtree,
        } => {
            ldap.simple_bind(bind_dn, bind_password)
                .await
                .and_then(|r| r.success())
                .map_err(|e| err("search bind", e))?;
            let escaped = ldap3::ldap_escape(user);
            let filter = match filter {
                Some(f) => f.replace("$username", &escaped),
                None => format!("({attribute}={escaped})"),
            };
            let scope = if *subtree {
                Scope::Subtree
            } else {
                Scope::OneLevel
            };
            let (entries, _) = ldap
                .search(base_dn, scope, &filter, vec!["1.1"])
                .await
                .and_then(|r| r.success())
                .map_err(|e| err("search", e))?;
            let n = entries.len();
            let mut found = entries.into_iter();
            match (found.next(), found.next()) {
                (Some(entry), None) => SearchEntry::construct(entry).dn,
                (None, _) => return Err(format!("no entry for {filter} under {base_dn}")),
                _ => {
                    return Err(format!(
                        "{n} entries for {filter} under {base_dn}, expected one"
                    ));
                }
            }
        }
    };
    ldap.simple_bind(&dn, password)
        .await
        .and_then(|r| r.success())
        .map(|_| ())
        .map_err(|e| err(&format!("bind as {dn}"), e))
}
