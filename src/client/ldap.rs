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

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use tracing::{debug, warn};

use super::SessionEnd;
use crate::config::ldap::{LdapMode, LdapOptions};
use crate::protocol::sqlstate;

/// How long one server may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
        Err(why) => {
            warn!(%user, "LDAP authentication failed: {why}");
            Err(SessionEnd::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!("LDAP authentication failed for user \"{user}\""),
            ))
        }
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
        return Err("ldaptls=1 with ldaps: StartTLS on a connection that is TLS already \
                    is refused (as libldap refuses it)"
            .into());
    }
    let mut settings = LdapConnSettings::new().set_conn_timeout(CONNECT_TIMEOUT);
    if options.ldaps || options.starttls {
        // Built at load whenever an option asks for TLS.
        let tls = tls.ok_or("no LDAP TLS configuration")?;
        settings = settings.set_config(tls).set_starttls(options.starttls);
    }
    let scheme = if options.ldaps { "ldaps" } else { "ldap" };
    let mut last = String::from("no server");
    for server in &options.servers {
        let url = format!("{scheme}://{server}:{}", options.port);
        let settings = settings.clone();
        let (conn, mut ldap) = match LdapConnAsync::with_settings(settings, &url).await {
            Ok(c) => c,
            Err(e) => {
                last = format!("could not connect to {url}: {e}");
                continue;
            }
        };
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        let result = bind(&mut ldap, &options.mode, user, password).await;
        let _ = ldap.unbind().await;
        return result.map_err(|e| format!("{url}: {e}"));
    }
    Err(last)
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
