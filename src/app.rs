//! A running pooler: accept loops for the listeners, one task per client
//! session, and graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::client;
use crate::config::Config;
use crate::context::{Context, ShutdownMode};
use crate::transport::Peer;
use crate::transport::Stream;
use crate::transport::listen::{self, Listeners};

/// How long shutdown waits for running transactions before giving up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A pooler serving in the current tokio runtime (and, when sharded, in
/// the other shards' runtimes).
pub struct Pooler {
    ctx: Arc<Context>,
    shutdown_tx: watch::Sender<bool>,
    tcp_addrs: Vec<SocketAddr>,
    unix_path: Option<PathBuf>,
    metrics_addr: Option<SocketAddr>,
    acceptors: Vec<JoinHandle<()>>,
    /// The Unix socket's accept loops: kept during a WAIT_FOR_* shutdown,
    /// for the admin console (as PgBouncer keeps its Unix socket).
    unix_acceptors: Vec<JoinHandle<()>>,
}

impl Pooler {
    /// Bind the listeners of `config` and start serving.
    pub async fn start(config: Config) -> io::Result<Pooler> {
        let listeners = listen::bind(&config.general)?;
        Pooler::serve(listeners, config)
    }

    /// Start serving on listeners bound earlier (by `main`, before
    /// anything else happens), in the current runtime only.
    pub fn serve(listeners: Listeners, config: Config) -> io::Result<Pooler> {
        Self::serve_sharded(listeners, config, vec![tokio::runtime::Handle::current()])
    }

    /// Start serving with every runtime of `shards` accepting clients and
    /// running their sessions (see `crate::runtime::shard`); the periodic tasks,
    /// the metrics endpoint and signals run on the current runtime, which
    /// should be `shards[0]`.
    pub fn serve_sharded(
        listeners: Listeners,
        config: Config,
        shards: Vec<tokio::runtime::Handle>,
    ) -> io::Result<Pooler> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(Context::sharded(config, shutdown_rx, shards));
        let mut tcp_addrs = Vec::new();
        let mut acceptors = Vec::new();
        for group in listeners.tcp {
            let addr = group[0].local_addr()?;
            info!(%addr, "listening");
            tcp_addrs.push(addr);
            for (i, shard) in ctx.shards().iter().enumerate() {
                // A socket of its own, or else a share of the first.
                let l = match group.get(i) {
                    Some(l) if group.len() > 1 => l.try_clone()?,
                    _ => group[0].try_clone()?,
                };
                let ctx = ctx.clone();
                acceptors.push(shard.spawn(async move {
                    match TcpListener::from_std(l) {
                        Ok(l) => accept_tcp(l, ctx).await,
                        Err(e) => error!(%addr, "cannot accept on this thread: {e}"),
                    }
                }));
            }
        }
        // Periodic work runs on the ticker's clock, not on tokio timers
        // (see `ticker`).
        let tick = crate::runtime::ticker::start()?;
        // Parks sessions idle for a second or more (see CancelRegistry::sweep).
        acceptors.push(tokio::spawn(sweep_idle(ctx.clone(), tick.clone())));
        // Server lifetimes, idle timeouts, min_pool_size (see pool::maintain).
        acceptors.push(tokio::spawn(maintain_pools(ctx.clone(), tick.clone())));
        // The health checker of host lists (see pool::health).
        acceptors.push(tokio::spawn(check_hosts(ctx.clone())));
        // SHOW STATS averages and the log_stats line, every stats_period.
        acceptors.push(tokio::spawn(stats_period(ctx.clone(), tick)));
        let mut unix_path = None;
        let mut unix_acceptors = Vec::new();
        if let Some((l, path)) = listeners.unix {
            info!(path = %path.display(), "listening");
            for shard in ctx.shards() {
                let (l, ctx, path) = (l.try_clone()?, ctx.clone(), path.clone());
                unix_acceptors.push(shard.spawn(async move {
                    match UnixListener::from_std(l) {
                        Ok(l) => accept_unix(l, ctx).await,
                        Err(e) => {
                            error!(path = %path.display(), "cannot accept on this thread: {e}")
                        }
                    }
                }));
            }
            unix_path = Some(path);
        }
        let mut metrics_addr = None;
        if let Some(l) = listeners.metrics {
            let l = TcpListener::from_std(l)?;
            let addr = l.local_addr()?;
            info!(%addr, "serving Prometheus metrics on /metrics");
            metrics_addr = Some(addr);
            acceptors.push(tokio::spawn(crate::exporter::serve(l, ctx.clone())));
        }
        Ok(Pooler {
            ctx,
            shutdown_tx,
            tcp_addrs,
            unix_path,
            metrics_addr,
            acceptors,
            unix_acceptors,
        })
    }

    /// The first TCP address listened on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addrs.first().copied()
    }

    /// The Prometheus endpoint's address (`metrics_listen_addr`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The Unix socket path, if any.
    pub fn unix_socket_path(&self) -> Option<PathBuf> {
        self.unix_path.clone()
    }

    /// The shared state (for the admin console and tests).
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Stop accepting, tell idle clients, let running transactions finish
    /// (for at most [`SHUTDOWN_GRACE`]), close the servers
    /// (`SHUTDOWN WAIT_FOR_SERVERS`).
    pub async fn shutdown(self) {
        self.shutdown_with(ShutdownMode::WaitForServers).await
    }

    /// Stop in the given way (see [`ShutdownMode`]).
    pub async fn shutdown_with(mut self, mode: ShutdownMode) {
        self.ctx.begin_stop();
        for a in &self.acceptors {
            a.abort();
        }
        // Waiting modes keep the Unix socket for the admin console (other
        // logins are refused) until the wait is over; a TAKEOVER gives it
        // up now, for the new process to bind.
        if mode == ShutdownMode::Immediate || self.ctx.handing_over() {
            self.close_unix_socket();
        }
        let all = self.ctx.client_capacity();
        match mode {
            ShutdownMode::WaitForClients => {
                info!(
                    "shutting down: no new connections (the admin console on the Unix socket \
                     only), waiting for every client to leave"
                );
                let _ = self.ctx.client_slots.acquire_many(all).await;
                info!("all clients are gone");
            }
            ShutdownMode::WaitForServers => {
                info!(
                    "shutting down: no new connections (the admin console on the Unix socket \
                     only), waiting for running transactions"
                );
                let _ = self.shutdown_tx.send(true);
                // As PgBouncer: a client ends when it next needs a server
                // (one waiting for a server, at the next look); once no
                // client holds a server, the idle ones are closed.
                let registry = &self.ctx.registry;
                registry.drain_all();
                let wait = async {
                    loop {
                        crate::runtime::timer::sleep(DRAIN_LOOK).await;
                        if !registry.drain_waiting() {
                            break;
                        }
                    }
                    registry.close_all();
                    self.ctx.client_slots.acquire_many(all).await
                };
                match crate::runtime::timer::timeout(SHUTDOWN_GRACE, wait).await {
                    Ok(_) => info!("all clients are gone"),
                    Err(_) => warn!("shutdown grace period over; closing remaining connections"),
                }
            }
            ShutdownMode::Immediate => {
                info!("shutting down now");
                let _ = self.shutdown_tx.send(true);
                self.ctx.registry.close_all();
            }
        }
        self.close_unix_socket();
        for pool in self.ctx.pools.all() {
            pool.close_idle();
        }
    }

    /// Stop accepting on the Unix socket and remove its file (once: after
    /// a TAKEOVER the file is the new process's).
    fn close_unix_socket(&mut self) {
        // The file first: a new process may bind that path as soon as the
        // old socket stops answering, and must not lose its file to us.
        if let Some(path) = self.unix_path.take() {
            let _ = std::fs::remove_file(path);
        }
        for a in &self.unix_acceptors {
            a.abort();
        }
    }
}

/// How often a WAIT_FOR_SERVERS shutdown looks for clients waiting for a
/// server (closed) and for servers still held.
const DRAIN_LOOK: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a connection over max_client_conn waits for a slot before it
/// is refused: a client that just left on another shard may not have given
/// its slot back yet (PgBouncer, one thread, has always seen it leave).
const SLOT_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// Serve a new connection with a max_client_conn slot, waiting up to
/// [`SLOT_GRACE`] for one (off the accept loop) before refusing it.
fn admit(stream: Stream, peer: Peer, ctx: &Arc<Context>) {
    match ctx.client_slots.clone().try_acquire_owned() {
        Ok(permit) => client::spawn(stream, peer, ctx.clone(), Some(permit)),
        Err(_) => {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let wait = ctx.client_slots.clone().acquire_owned();
                let permit = crate::runtime::timer::timeout(SLOT_GRACE, wait)
                    .await
                    .ok()
                    .and_then(Result::ok);
                client::spawn(stream, peer, ctx, permit);
            });
        }
    }
}

async fn accept_tcp(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                let tcp = crate::transport::TcpOptions::from_general(&ctx.config().general);
                if let Err(e) = tcp.apply(&stream) {
                    debug!(peer = %addr, "could not set the TCP options: {e}");
                }
                admit(Stream::from(stream), Peer::Tcp(addr), &ctx);
            }
            Err(e) => accept_error(e).await,
        }
    }
}

async fn accept_unix(listener: UnixListener, ctx: Arc<Context>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                admit(Stream::from(stream), Peer::Unix, &ctx);
            }
            Err(e) => accept_error(e).await,
        }
    }
}

/// Every tick (1 s): park idle sessions.
async fn sweep_idle(ctx: Arc<Context>, mut tick: watch::Receiver<u64>) {
    while tick.changed().await.is_ok() {
        ctx.registry.sweep(&ctx.epoch);
    }
}

/// Every tick (1 s, as PgBouncer's janitor): maintain the pools.
async fn maintain_pools(ctx: Arc<Context>, mut tick: watch::Receiver<u64>) {
    while tick.changed().await.is_ok() {
        if ctx.shutting_down() {
            return;
        }
        crate::routing::forced_user_pools(&ctx.pools, &ctx.config());
        ctx.pools.maintain();
    }
}

/// Every host_check_period (read again each time, so RELOAD and SET
/// apply; zero = off, looked at again a second later), until shutdown: a
/// round of health checks.
async fn check_hosts(ctx: Arc<Context>) {
    let mut checker = crate::pool::HealthChecker::default();
    loop {
        let period = ctx.config().general.host_check_period;
        crate::runtime::timer::sleep(if period.is_zero() {
            std::time::Duration::from_secs(1)
        } else {
            period
        })
        .await;
        if ctx.shutting_down() {
            return;
        }
        if !period.is_zero() {
            ctx.pools.check_hosts(&mut checker).await;
        }
    }
}

/// Every stats_period, counted in ticks (1 s; the period is read again each
/// time, so RELOAD applies), until shutdown: [`stats_tick`].
async fn stats_period(ctx: Arc<Context>, mut tick: watch::Receiver<u64>) {
    let mut shutdown = ctx.shutdown.clone();
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            changed = tick.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|down| *down) => return,
        }
        ticks += 1;
        let period = ctx.config().general.stats_period;
        let every = period.as_secs_f64().ceil().max(1.0) as u64;
        if ticks >= every {
            ticks = 0;
            stats_tick(&ctx, std::time::Instant::now());
        }
    }
}

/// End of a stats_period: snapshot every pool's statistics (SHOW STATS
/// averages are taken from the previous snapshot on) and, with
/// log_stats, log one line per database. Returns the rows logged.
pub(crate) fn stats_tick(ctx: &Context, now: std::time::Instant) -> Vec<crate::stats::StatsRow> {
    let pools = ctx.pools.all();
    let all = crate::admin::stats_show::all_stats(ctx, &pools);
    let rows = crate::stats::report::tick(all, now);
    if ctx.config().general.log_stats {
        // The pools' databases (the console's figures are in SHOW STATS).
        for row in rows.iter().filter(|r| r.database != crate::admin::ADMIN_DB) {
            info!(database = %row.database, "{}", crate::stats::log_line(&row.avg));
        }
    }
    rows
}

/// Out of file descriptors and the like: log and back off a little
/// instead of spinning.
async fn accept_error(e: io::Error) {
    error!("accept failed: {e}");
    crate::runtime::timer::sleep(Duration::from_millis(50)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracing writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn context(ini: &str) -> Context {
        let loaded = crate::config::load_str(ini, std::path::Path::new("x.ini")).unwrap();
        let (_tx, rx) = watch::channel(false);
        Context::new(loaded.config, rx)
    }

    fn pool(ctx: &Context, db: &str) -> Arc<crate::pool::Pool> {
        let endpoint = crate::config::Endpoint::Tcp {
            host: "h".into(),
            port: 1,
        };
        let key = (db, "u", &endpoint, crate::pool::Role::Any);
        ctx.pools.get_or_create(key, 0, || {
            crate::pool::PoolSettings::with_defaults(
                crate::server::ServerTarget {
                    addr: Arc::new(crate::config::Endpoint::Tcp {
                        host: "h".into(),
                        port: 1,
                    }),
                    database: db.into(),
                    user: "u".into(),
                    startup_params: vec![],
                    tls: None,
                    tcp: Default::default(),
                },
                crate::server::ServerCredentials::None,
            )
        })
    }

    /// Runs `tick` with log lines captured; returns them.
    fn logged(ctx: &Context) -> String {
        let buf = Captured::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            stats_tick(ctx, std::time::Instant::now())
        });
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[tokio::test]
    async fn log_stats_logs_one_line_per_database() {
        let ctx = context("[pgbouncer]\nauth_type=any\nlog_stats=1\n");
        pool(&ctx, "a").stats.count_login();
        pool(&ctx, "b").stats.count_login();
        let log = logged(&ctx);
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(lines[0].contains("stats: 0 xacts/s") && lines[0].contains("database=a"));
        assert!(lines[1].contains("database=b"), "{log}");
    }

    #[tokio::test]
    async fn log_stats_off_logs_nothing() {
        let ctx = context("[pgbouncer]\nauth_type=any\nlog_stats=0\n");
        pool(&ctx, "a").stats.count_login();
        assert_eq!(logged(&ctx), "");
    }
}
