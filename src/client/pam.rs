//! auth_type = pam: the client's cleartext password is checked by PAM, as
//! PgBouncer does: service `pgbouncer` (so an existing
//! `/etc/pam.d/pgbouncer` works unchanged), PAM_RHOST set to the client's
//! address, `pam_authenticate` then `pam_acct_mgmt` (expired or locked
//! accounts, access hours), both with PAM_SILENT. The PAM library is
//! pam-client (libpam through its own bindings; no unsafe code here).
//!
//! PAM modules block (pam_unix reads /etc/shadow and sleeps about two
//! seconds after a failure), so each check runs on a blocking thread of
//! the timer runtime, never on a shard, and at most [`WORKERS`] run at
//! once (PgBouncer runs them on one thread); a login waiting for its turn
//! is bound by client_login_timeout like any other.

use tokio::sync::Semaphore;
use tracing::debug;

use super::SessionEnd;

/// The PAM service name, PgBouncer's.
#[cfg(feature = "pam")]
const SERVICE: &str = "pgbouncer";

/// How many PAM checks may run at once.
const WORKERS: usize = 4;

static TURNS: Semaphore = Semaphore::const_new(WORKERS);

/// Check `password` for `user`, who connects from `rhost` (None: a Unix
/// socket).
pub(super) async fn check(
    user: &str,
    password: &str,
    rhost: Option<String>,
) -> Result<(), SessionEnd> {
    let (user_owned, password) = (user.to_string(), password.to_string());
    let outcome = crate::runtime::timer::spawn_off_shard(async move {
        let _turn = TURNS.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || authenticate(&user_owned, &password, rhost.as_deref()))
            .await
            .map_err(|e| format!("PAM task failed: {e}"))?
    })
    .await
    .unwrap_or_else(|e| Err(format!("PAM task failed: {e}")));
    match outcome {
        Ok(()) => {
            debug!(%user, "PAM authentication succeeded");
            Ok(())
        }
        Err(why) => Err(super::auth_method::refused(
            user,
            "PAM",
            &why,
            format!("PAM authentication failed for user \"{user}\""),
        )),
    }
}

#[cfg(feature = "pam")]
fn authenticate(user: &str, password: &str, rhost: Option<&str>) -> Result<(), String> {
    use pam_client::conv_mock::Conversation;
    use pam_client::{Context, Flag};
    use tracing::warn;
    // An empty password must not reach modules that would take it (as
    // PostgreSQL refuses it before asking PAM).
    if password.is_empty() {
        return Err("empty password".into());
    }
    let conversation = Conversation::with_credentials(user, password);
    let mut pam =
        Context::new(SERVICE, Some(user), conversation).map_err(|e| format!("pam_start: {e}"))?;
    if let Some(host) = rhost
        && let Err(e) = pam.set_rhost(Some(host))
    {
        warn!(%user, "PAM: cannot set PAM_RHOST to {host}: {e}");
    }
    pam.authenticate(Flag::SILENT)
        .map_err(|e| format!("pam_authenticate: {e}"))?;
    pam.acct_mgmt(Flag::SILENT)
        .map_err(|e| format!("pam_acct_mgmt: {e}"))?;
    Ok(())
}

/// Built without the `pam` feature: auth_type = pam is refused at load, so
/// this is never reached; it refuses all the same.
#[cfg(not(feature = "pam"))]
fn authenticate(_user: &str, _password: &str, _rhost: Option<&str>) -> Result<(), String> {
    Err("this pgsluice is built without PAM support".into())
}
