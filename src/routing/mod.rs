//! Routing: which pool serves a session, and each of its transactions. A
//! database entry resolves to its endpoints (`config::Database::endpoints`,
//! its host list in order); choosing among them is this module's step,
//! separate and replaceable ([`Choose`]): today [`First`], the first host,
//! as PgBouncer without load_balance_hosts. The high-availability and
//! read/write work bring choosers that know host roles, lag and the
//! statement.
//!
//! A session holds a [`Route`]: the pool it logged in to (its home, where
//! it is counted: SHOW POOLS' cl_* and the client limits) and, when its
//! chooser spreads transactions over several pools, those pools. Each
//! transaction takes its server from [`Route::pick`]'s pool and gives it
//! back there, so server counts, statistics and limits stay per pool.
//!
//! What it does not own: pools (`pool`; a pool spreads its own new
//! connections over the host list, `pool/hosts.rs`), what is known of the
//! hosts (`topology`).

pub(crate) mod cache;
pub(crate) mod classify;
pub(crate) mod shape;
pub(crate) mod split;

use std::sync::Arc;

use crate::config::{Config, Database, Endpoint};
use crate::pool::{ClientLimit, LoginCount, Pool, PoolClient, PoolSettings, Pools, Role};

/// How a database's pools are chosen among its endpoints.
pub(crate) trait Choose: Send + Sync {
    /// The endpoint (an index into `endpoints`, never empty) whose pool a
    /// session logs in to.
    fn home(&self, endpoints: &[Endpoint]) -> usize;

    /// Whether transactions go to other pools than the home one: then
    /// every endpoint gets a pool and [`pick`](Self::pick) is asked per
    /// transaction.
    fn spreads(&self) -> bool {
        false
    }

    /// The pool (an index into `pools`, which are in endpoint order) for
    /// the next transaction.
    #[inline]
    fn pick(&self, pools: &[Arc<Pool>]) -> usize {
        let _ = pools;
        0
    }
}

/// The first endpoint, for the session and all its transactions (today's
/// policy: a host list's first host).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct First;

impl Choose for First {
    fn home(&self, _endpoints: &[Endpoint]) -> usize {
        0
    }
}

/// Where a session's transactions go.
pub(crate) struct Route {
    /// The pool the session logged in to, counting it as a client.
    home: PoolClient,
    /// The pools transactions are spread over, with the chooser, or the
    /// standby pool and the session's splitting state; None when they all
    /// go home (one endpoint, or a chooser that keeps sessions on one
    /// pool, and no read/write splitting).
    spread: Option<Box<Spread>>,
    /// The client counted under the user it logged in as (boxed: one
    /// pointer in every session's future).
    _login: Option<Box<LoginCount>>,
}

/// The pools a chooser spreads a session's transactions over (in endpoint
/// order), and the chooser.
pub(crate) type Spreading = (Vec<Arc<Pool>>, Arc<dyn Choose>);

// Always boxed (`Route::spread`): the variants' sizes cost nothing.
#[allow(clippy::large_enum_variant)]
enum Spread {
    /// Over several endpoints' pools.
    Endpoints {
        pools: Vec<Arc<Pool>>,
        choose: Arc<dyn Choose>,
    },
    /// Read/write splitting: the home pool is the primary's.
    Split {
        standby: Arc<Pool>,
        state: split::SplitRoute,
    },
}

impl Route {
    /// Route a session of `database` logging in to PostgreSQL as
    /// `pool_user` (whose [databases] entry is `db`): the pool of the
    /// endpoint `choose` picks, made when missing, counting the client in
    /// it (within max_db_client_connections / max_user_client_connections).
    pub(crate) fn login(
        pools: &Pools,
        cfg: &Config,
        (db, database, pool_user): (&Database, &str, &str),
        choose: Arc<dyn Choose>,
    ) -> Result<Route, ClientLimit> {
        if let Some(split) = splits(cfg, db, pool_user) {
            let (primary, standby) = split_pools(pools, cfg, (db, database, pool_user), &split);
            let home = primary.add_client()?;
            let rotation = pools.topology().rotation(database);
            let state = split::SplitRoute::new(split, rotation, pool_user);
            return Ok(Route {
                home,
                spread: Some(Box::new(Spread::Split { standby, state })),
                _login: None,
            });
        }
        let endpoints = db.endpoints();
        let pool_of = |i: usize| pool_for(pools, cfg, (db, database, pool_user), &endpoints, i);
        let home_at = choose.home(&endpoints).min(endpoints.len() - 1);
        let home = pool_of(home_at).add_client()?;
        let spread = (choose.spreads() && endpoints.len() > 1)
            .then(|| ((0..endpoints.len()).map(pool_of).collect(), choose));
        Ok(Route::new(home, spread))
    }

    /// A route from its parts: the home pool with the client counted, and
    /// the pools `choose` spreads transactions over, if it does.
    pub(crate) fn new(home: PoolClient, spread: Option<Spreading>) -> Route {
        let spread = spread.map(|(pools, choose)| Box::new(Spread::Endpoints { pools, choose }));
        Route {
            home,
            spread,
            _login: None,
        }
    }

    /// Hold the client's count under its login user for the session.
    pub(crate) fn with_login(mut self, login: LoginCount) -> Route {
        self._login = Some(Box::new(login));
        self
    }

    /// The pool the session is counted in.
    pub(crate) fn home(&self) -> &Arc<Pool> {
        &self.home
    }

    /// The pool for the session's next transaction (the primary's when
    /// it splits: see [`split`](Self::split)).
    #[inline]
    pub(crate) fn pick(&self) -> &Arc<Pool> {
        match self.spread.as_deref() {
            None | Some(Spread::Split { .. }) => &self.home,
            Some(Spread::Endpoints { pools, choose }) => {
                &pools[choose.pick(pools).min(pools.len() - 1)]
            }
        }
    }

    /// The bound of the current transaction's link (read/write splitting,
    /// `split::SplitRoute::bound`; 0: none).
    #[inline]
    pub(crate) fn bound(&self) -> u32 {
        match self.spread.as_deref() {
            Some(Spread::Split { state, .. }) => state.bound(),
            _ => 0,
        }
    }

    /// When the session splits reads from writes: the primary's pool, the
    /// standby pool and the session's splitting state.
    #[inline]
    pub(crate) fn split(&mut self) -> Option<(&Arc<Pool>, &Arc<Pool>, &mut split::SplitRoute)> {
        match self.spread.as_deref_mut() {
            Some(Spread::Split { standby, state }) => Some((&self.home, standby, state)),
            _ => None,
        }
    }
}

/// The splitting settings of `db` for sessions whose pools log in as
/// `pool_user`, when it splits: read_write_split on (the user's [users]
/// setting first) and not in session mode.
fn splits(cfg: &Config, db: &Database, pool_user: &str) -> Option<crate::config::Split> {
    let split = cfg.general.split.with(&db.split);
    let user = cfg.users.get(pool_user);
    let on = user.and_then(|u| u.read_write_split).unwrap_or(split.on);
    let mode = user
        .and_then(|u| u.pool_mode)
        .or(db.pool_mode)
        .unwrap_or(cfg.general.pool_mode);
    (on && mode != crate::config::PoolMode::Session).then_some(split)
}

/// The primary and standby pools of a database that splits, made when
/// missing (both keyed by the host list's first endpoint).
fn split_pools(
    pools: &Pools,
    cfg: &Config,
    (db, database, pool_user): (&Database, &str, &str),
    split: &crate::config::Split,
) -> (Arc<Pool>, Arc<Pool>) {
    let endpoints = db.endpoints();
    let endpoint = &endpoints[0];
    let pool = |role: Role| {
        pools.get_or_create((database, pool_user, endpoint, role), 0, || {
            PoolSettings::resolve(cfg, db, (database, pool_user), endpoint).for_role(
                role,
                split,
                pools.topology().rotation(database),
            )
        })
    };
    (pool(Role::Primary), pool(Role::Standby))
}

/// The chooser of every database today.
pub(crate) fn chooser() -> Arc<dyn Choose> {
    static FIRST: std::sync::OnceLock<Arc<dyn Choose>> = std::sync::OnceLock::new();
    FIRST.get_or_init(|| Arc::new(First)).clone()
}

/// The pool of the `at`-th endpoint of `db` for `pool_user`, made when
/// missing.
fn pool_for(
    pools: &Pools,
    cfg: &Config,
    (db, database, pool_user): (&Database, &str, &str),
    endpoints: &[Endpoint],
    at: usize,
) -> Arc<Pool> {
    let endpoint = &endpoints[at];
    pools.get_or_create((database, pool_user, endpoint, Role::Any), at, || {
        PoolSettings::resolve(cfg, db, (database, pool_user), endpoint)
    })
}

/// The pool auth_query runs through: that of auth_dbname's entry `db`
/// (named `database`) and `auth_user`, at the chooser's home endpoint.
/// It is an ordinary pool (SHOW POOLS lists it, its size bounds the
/// lookups running at once), logging in with auth_user's auth_file secret.
pub(crate) fn auth_pool(
    pools: &Pools,
    cfg: &Config,
    (db, database, auth_user): (&Database, &str, &str),
) -> Arc<Pool> {
    let endpoints = db.endpoints();
    let at = chooser().home(&endpoints).min(endpoints.len() - 1);
    pool_for(pools, cfg, (db, database, auth_user), &endpoints, at)
}

/// Pools of databases with a forced user exist from the start, as in
/// PgBouncer (so min_pool_size applies to them before any client comes):
/// made here, at the chooser's home endpoint, by the janitor.
pub(crate) fn forced_user_pools(pools: &Pools, cfg: &Config) {
    let choose = chooser();
    for (name, db) in &cfg.databases.entries {
        if let Some(user) = &db.user {
            if let Some(split) = splits(cfg, db, user) {
                split_pools(pools, cfg, (db, name, user), &split);
                continue;
            }
            let endpoints = db.endpoints();
            let at = choose.home(&endpoints).min(endpoints.len() - 1);
            pool_for(pools, cfg, (db, name, user), &endpoints, at);
        }
    }
}
