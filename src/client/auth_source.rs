//! Where a login's secret comes from, as PgBouncer decides it: the user's
//! auth_file line; else, for a configured database with an auth_user,
//! auth_query run through the auth pool (auth_dbname's entry, auth_user);
//! else nothing, and the exchange runs with no secret and fails, so that a
//! client that has not proven a password learns nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tracing::{info, warn};

use super::SessionEnd;
use crate::auth::Secret;
use crate::config::{Config, Database};
use crate::context::Context;
use crate::pool::{Lookup, Pool};
use crate::protocol::sqlstate;
use crate::server::{Found, LookupError};

/// What the client logs in to.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    /// A [databases] entry (by the name the client gave).
    Database(&'a Database, &'a str),
    /// The admin console.
    Console,
    /// A database that is not configured (refused after authentication).
    Unknown,
}

/// A login's secret, found or to be found.
pub(super) enum Source {
    /// The user's auth_file line.
    File(Secret),
    /// auth_query: a secret found earlier, or a lookup in flight.
    Lookup(Box<Pending>),
    /// No such user: the exchange runs with no secret and fails.
    Unknown,
}

/// A user looked up with auth_query: the secret a recent lookup found
/// (reused when the cache allows), and the lookup in flight, if any.
pub(super) struct Pending {
    pool: Arc<Pool>,
    query: Arc<str>,
    user: String,
    share: bool,
    limit: std::time::Duration,
    cached: Option<Found>,
    fresh: Option<Pin<Box<dyn Future<Output = Lookup> + Send>>>,
}

/// The secret an exchange runs with: None when there is none to check
/// against (the exchange fails); whether the user is known; and whether
/// it is a fresh answer (a file's line, or a lookup no older than the
/// login) rather than a reused one.
pub(super) struct Start {
    pub secret: Option<Secret>,
    pub found: bool,
    pub fresh: bool,
}

impl Source {
    /// Find where `user`'s secret comes from for `target`. With `reuse`
    /// (the exchange does not depend on the secret's salt) and
    /// auth_query_cache on, a secret found within auth_query_cache_ttl is
    /// used with no lookup; otherwise a lookup starts here, so that it
    /// runs while the client answers.
    pub(super) fn find(
        ctx: &Context,
        cfg: &Config,
        user: &str,
        target: Target<'_>,
        reuse: bool,
    ) -> Result<Source, SessionEnd> {
        if let Some(secret) = cfg.userlist.get(user) {
            return Ok(Source::File(secret.clone()));
        }
        let auth_user = match target {
            Target::Database(db, _) => db.auth_user.as_ref().or(cfg.general.auth_user.as_ref()),
            Target::Console => cfg.general.auth_user.as_ref(),
            Target::Unknown => None,
        };
        let Some(auth_user) = auth_user else {
            info!(%user, "no such user: {user}");
            return Ok(Source::Unknown);
        };
        let (pool, query) = auth_pool(ctx, cfg, target, auth_user)?;
        let g = &cfg.general;
        let cached = match reuse && g.auth_query_cache {
            // Only an md5 or plain secret is reused: a SCRAM secret's
            // exchange needs its current salt, and a NULL one (an expired
            // role) lets no password in, so a fresh answer is needed.
            true => pool
                .known_secret(&query, user, g.auth_query_cache_ttl)
                .filter(|f| matches!(f, Found::User(Some(s)) if !s.starts_with("SCRAM-SHA-256$"))),
            false => None,
        };
        let mut p = Pending {
            pool,
            query,
            user: user.to_string(),
            share: g.auth_query_cache,
            limit: g.client_login_timeout,
            cached,
            fresh: None,
        };
        if p.cached.is_none() {
            let run = p.pool.lookup(&p.query, &p.user, p.share, p.limit);
            p.fresh = Some(Box::pin(run));
        }
        Ok(Source::Lookup(Box::new(p)))
    }

    /// The secret to start the exchange with: a reused one when there is
    /// one, else the lookup's answer.
    pub(super) async fn start(&mut self) -> Result<Start, SessionEnd> {
        match self {
            Source::File(s) => Ok(Start {
                secret: Some(s.clone()),
                found: true,
                fresh: true,
            }),
            Source::Unknown => Ok(Start {
                secret: None,
                found: false,
                fresh: true,
            }),
            Source::Lookup(p) => match p.cached.take() {
                Some(Found::User(secret)) => Ok(Start {
                    secret: secret.as_deref().map(Secret::parse),
                    found: true,
                    fresh: false,
                }),
                _ => Ok(Start {
                    secret: p.answer().await?,
                    found: true,
                    fresh: true,
                }),
            },
        }
    }

    /// Look the user up once more (a reused secret did not check out): a
    /// changed password works at once, a dropped role is refused.
    pub(super) async fn again(&mut self) -> Result<Option<Secret>, SessionEnd> {
        match self {
            Source::Lookup(p) => p.answer().await,
            Source::File(s) => Ok(Some(s.clone())),
            Source::Unknown => Ok(None),
        }
    }
}

impl Pending {
    /// The lookup's answer (started now if none is in flight): the user's
    /// secret (None: NULL, no password may be used), or the client's error.
    async fn answer(&mut self) -> Result<Option<Secret>, SessionEnd> {
        let fresh = match self.fresh.take() {
            Some(f) => f,
            None => Box::pin(
                self.pool
                    .lookup(&self.query, &self.user, self.share, self.limit),
            ),
        };
        match fresh.await {
            Ok(Found::User(secret)) => Ok(secret.as_deref().map(Secret::parse)),
            Ok(Found::NoUser) => {
                // As PgBouncer: auth_query's "no such user" is told.
                info!(user = %self.user, "no such user: {}", self.user);
                Err(SessionEnd::fatal(
                    sqlstate::INVALID_AUTHORIZATION,
                    "no such user",
                ))
            }
            Err(e) => Err(lookup_failed(&self.user, &e)),
        }
    }
}

/// The client's error for a lookup that gave no answer (the reason is
/// logged, never told; a server that could not be had is told as the
/// auth pool's clients are told, as PgBouncer does).
fn lookup_failed(user: &str, e: &LookupError) -> SessionEnd {
    warn!(%user, "{e}");
    match e {
        LookupError::Query(_) | LookupError::Shape(_) | LookupError::Stale => {
            SessionEnd::fatal(sqlstate::PROTOCOL_VIOLATION, "bouncer config error")
        }
        LookupError::Checkout(code, message) => SessionEnd::fatal(*code, message.clone()),
        LookupError::Server(_) => SessionEnd::fatal(
            sqlstate::CONNECTION_FAILURE,
            "could not look up the user: authentication database unavailable",
        ),
    }
}

/// The pool auth_query runs through for `target`, and the query: the
/// entry's auth_dbname, else the global one, else the client's database;
/// refused (as PgBouncer: "bouncer config error", the reason logged) when
/// that database is not configured or is the console, and when disabled.
fn auth_pool(
    ctx: &Context,
    cfg: &Config,
    target: Target<'_>,
    auth_user: &str,
) -> Result<(Arc<Pool>, Arc<str>), SessionEnd> {
    let (entry_dbname, own, query) = match target {
        Target::Database(db, name) => (db.auth_dbname.as_deref(), name, db.auth_query.as_deref()),
        _ => (None, crate::config::ADMIN_DB, None),
    };
    let auth_dbname = entry_dbname
        .or(cfg.general.auth_dbname.as_deref())
        .unwrap_or(own);
    let config_error = |why: String| {
        warn!("{why}");
        SessionEnd::fatal(sqlstate::PROTOCOL_VIOLATION, "bouncer config error")
    };
    if auth_dbname == crate::config::ADMIN_DB {
        return Err(config_error(format!(
            "cannot use the reserved \"{auth_dbname}\" database as an auth_dbname"
        )));
    }
    let Some(auth_db) = cfg.databases.lookup(auth_dbname) else {
        return Err(config_error(format!(
            "authentication database \"{auth_dbname}\" is not configured."
        )));
    };
    if ctx.pools.db_control(auth_dbname).disabled() {
        return Err(SessionEnd::fatal(
            sqlstate::CANNOT_CONNECT_NOW,
            format!("authentication database \"{auth_dbname}\" is disabled"),
        ));
    }
    let pool = crate::routing::auth_pool(&ctx.pools, cfg, (auth_db, auth_dbname, auth_user));
    let query = match query {
        Some(q) => Arc::from(q),
        None => cfg.general.auth_query.clone(),
    };
    Ok((pool, query))
}
