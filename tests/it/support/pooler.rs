//! Start pgsluice in-process on 127.0.0.1:0 with a given configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpStream;

use super::pg::PgCluster;

/// Writes pgbouncer.ini (+ userlist.txt) into a temp dir and starts a pooler.
pub struct PoolerBuilder {
    settings: Vec<(String, String)>,
    databases: Vec<(String, String)>,
    users: Vec<(String, String)>,
    userlist: Vec<(String, String)>,
    extra_lines: Vec<String>,
}

impl Default for PoolerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolerBuilder {
    /// listen_addr 127.0.0.1, listen_port 0, transaction mode, auth_type
    /// trust with `postgres` in auth_file (as in PgBouncer, trust still needs
    /// the user in auth_file: add others with [`trust`](Self::trust)).
    pub fn new() -> Self {
        let mut b = PoolerBuilder {
            settings: Vec::new(),
            databases: Vec::new(),
            users: Vec::new(),
            userlist: Vec::new(),
            extra_lines: Vec::new(),
        };
        b = b
            .set("listen_addr", "127.0.0.1")
            .set("listen_port", "0")
            .set("auth_type", "trust")
            .set("pool_mode", "transaction")
            .set("server_connect_timeout", "5")
            .set("server_login_retry", "1")
            .trust("postgres");
        b
    }

    /// Put `user` into auth_file with a dummy secret, so that auth_type trust
    /// lets it in (any password is accepted).
    pub fn trust(self, user: &str) -> Self {
        self.auth_user(user, "trusted-by-test-support")
    }

    /// Set a `[pgbouncer]` key (replaces an earlier value of the same key).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_string(), value.to_string()));
        self
    }

    /// Add a `[databases]` entry with a raw libpq-style connection string.
    pub fn database(mut self, name: &str, connstr: &str) -> Self {
        self.databases.push((name.to_string(), connstr.to_string()));
        self
    }

    /// A `[databases]` entry for database `db` on `cluster` (127.0.0.1) with
    /// extra `key=value` pairs (e.g. "user=x pool_size=5").
    pub fn pg_database(self, cluster: &PgCluster, db: &str, extra: &str) -> Self {
        let connstr = format!("host=127.0.0.1 port={} dbname={db} {extra}", cluster.port());
        self.database(db, connstr.trim_end())
    }

    /// Add a `[users]` entry.
    pub fn user(mut self, name: &str, settings: &str) -> Self {
        self.users.push((name.to_string(), settings.to_string()));
        self
    }

    /// Add a userlist.txt line `"user" "secret"`; sets auth_file.
    pub fn auth_user(mut self, user: &str, secret: &str) -> Self {
        self.userlist.push((user.to_string(), secret.to_string()));
        self
    }

    /// A raw line appended at the end of pgbouncer.ini.
    pub fn raw_line(mut self, line: &str) -> Self {
        self.extra_lines.push(line.to_string());
        self
    }

    /// Write the files into a new temp dir; returns the dir and the ini path.
    pub fn write(&self) -> (tempfile::TempDir, PathBuf) {
        super::raise_nofile_limit();
        let dir = tempfile::Builder::new()
            .prefix("pgsluice-pooler-")
            .tempdir()
            .unwrap();
        let mut ini = String::from("[pgbouncer]\n");
        ini.push_str(&format!("unix_socket_dir = {}\n", dir.path().display()));
        if !self.userlist.is_empty() {
            let path = dir.path().join("userlist.txt");
            let mut text = String::from("; written by the pgsluice test support\n");
            for (u, s) in &self.userlist {
                text.push_str(&format!("{} {}\n", quote(u), quote(s)));
            }
            std::fs::write(&path, text).unwrap();
            ini.push_str(&format!("auth_file = {}\n", path.display()));
        }
        for (k, v) in &self.settings {
            ini.push_str(&format!("{k} = {v}\n"));
        }
        ini.push_str("\n[databases]\n");
        for (k, v) in &self.databases {
            ini.push_str(&format!("{k} = {v}\n"));
        }
        ini.push_str("\n[users]\n");
        for (k, v) in &self.users {
            ini.push_str(&format!("{k} = {v}\n"));
        }
        for l in &self.extra_lines {
            ini.push_str(l);
            ini.push('\n');
        }
        let path = dir.path().join("pgbouncer.ini");
        std::fs::write(&path, ini).unwrap();
        (dir, path)
    }

    /// Load the written config with `pgsluice::config::load` and start the
    /// pooler as the binary runs it: on shard runtimes of its own (see
    /// [`start_sharded`](Self::start_sharded)), one shard unless
    /// `PGSLUICE_THREADS` is set (then as many as the binary would run).
    pub async fn start(self) -> TestPooler {
        let shards = match std::env::var_os("PGSLUICE_THREADS") {
            Some(_) => pgsluice::runtime::shard::wanted(),
            None => 1,
        };
        self.start_sharded(shards).await
    }

    /// Start the pooler on `shards` single-threaded runtimes, as
    /// `src/main.rs` does: shard 0 on a thread of its own (the binary's main
    /// thread), a current-thread runtime without the time driver whose
    /// sleeps go to the timer runtime of `pgsluice::runtime::shard::Shards`, which
    /// starts `shards - 1` more shard threads. Nothing of the pooler runs on
    /// the test's runtime, whatever its flavour.
    pub async fn start_sharded(self, shards: usize) -> TestPooler {
        let (dir, path) = self.write();
        let loaded = match pgsluice::config::load(&path) {
            Ok(l) => l,
            Err(e) => panic!(
                "config rejected: {e}\n--- {} ---\n{}",
                path.display(),
                std::fs::read_to_string(&path).unwrap()
            ),
        };
        // Bound before the shards start, as the binary binds first.
        let listeners = pgsluice::transport::listen::bind_sharded(&loaded.config.general, shards)
            .expect("bind");
        let config = loaded.config;
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pgsluice-shard-0".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .expect("shard 0 runtime");
                runtime.block_on(async move {
                    let shards = match pgsluice::runtime::shard::Shards::start(shards) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = started_tx.send(Err(format!("start shards: {e}")));
                            return;
                        }
                    };
                    pgsluice::runtime::timer::use_timers_of(shards.timers().clone());
                    let handles = shards.handles().to_vec();
                    match pgsluice::Pooler::serve_sharded(listeners, config, handles) {
                        Ok(p) => {
                            let shard0 = tokio::runtime::Handle::current();
                            let _ = started_tx.send(Ok((p, shard0)));
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(format!("start pooler: {e}")));
                            return;
                        }
                    }
                    // Serve until the TestPooler is dropped; then the other
                    // shards stop, and this runtime with its tasks.
                    let _ = stop_rx.await;
                    drop(shards);
                });
            })
            .expect("spawn the shard 0 thread");
        let runtime = ShardRuntime {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        let (pooler, shard0) = match started_rx.await {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("the shard 0 thread died while starting the pooler"),
        };
        TestPooler {
            pooler: Some(pooler),
            shard0,
            _runtime: runtime,
            _dir: dir,
            ini: path,
        }
    }
}

/// The thread running shard 0 (and, through `Shards`, the others): told to
/// stop and joined when dropped, so that a test's pooler, its sessions and
/// its sockets are gone when its `TestPooler` is.
struct ShardRuntime {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ShardRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the pooler's shard 0 thread panicked");
        }
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A running pooler plus its config files.
pub struct TestPooler {
    pooler: Option<pgsluice::Pooler>,
    /// Shard 0's runtime, where the binary runs what signals ask for.
    shard0: tokio::runtime::Handle,
    _runtime: ShardRuntime,
    _dir: tempfile::TempDir,
    ini: PathBuf,
}

impl TestPooler {
    /// The TCP address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.pooler().tcp_addr().expect("pooler has a TCP listener")
    }

    /// Path of the Unix socket, if any.
    pub fn unix_socket_path(&self) -> Option<PathBuf> {
        self.pooler().unix_socket_path()
    }

    /// Path of the pgbouncer.ini in use.
    pub fn ini_path(&self) -> &Path {
        &self.ini
    }

    /// The library handle.
    pub fn pooler(&self) -> &pgsluice::Pooler {
        self.pooler.as_ref().expect("pooler already shut down")
    }

    /// Shut the pooler down (`Pooler::shutdown`, SHUTDOWN WAIT_FOR_SERVERS)
    /// on shard 0, as the binary does for SIGINT, and wait for it.
    pub async fn shutdown(mut self) {
        let p = self.pooler.take().expect("pooler already shut down");
        self.shard0
            .spawn(p.shutdown())
            .await
            .expect("shutdown panicked");
    }

    /// Begin shutting down in `mode` on shard 0 (as the console's SHUTDOWN
    /// does); the returned task ends when the pooler has stopped. Configs
    /// and addresses must be taken before (the pooler handle is gone).
    pub fn begin_shutdown(
        &mut self,
        mode: pgsluice::context::ShutdownMode,
    ) -> tokio::task::JoinHandle<()> {
        let p = self.pooler.take().expect("pooler already shut down");
        self.shard0.spawn(p.shutdown_with(mode))
    }

    /// tokio-postgres config for a connection through the pooler over TCP.
    pub fn config(&self, db: &str, user: &str, password: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.addr().port())
            .dbname(db)
            .user(user)
            .connect_timeout(Duration::from_secs(30));
        if !password.is_empty() {
            cfg.password(password);
        }
        cfg
    }

    /// tokio-postgres config for a connection through the pooler's Unix
    /// socket.
    pub fn unix_config(&self, db: &str, user: &str) -> tokio_postgres::Config {
        let socket = self.unix_socket_path().expect("pooler has a Unix socket");
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(socket.parent().unwrap())
            .port(self.addr().port())
            .dbname(db)
            .user(user);
        cfg
    }

    /// Connect through the pooler; the connection task is spawned.
    pub async fn try_connect(
        &self,
        db: &str,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let cfg = self.config(db, user, password);
        let fut = cfg.connect(tokio_postgres::NoTls);
        let (client, conn) = tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .expect("login through the pooler hung for 60 s")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Log in, expecting the login to be refused with `code` and `message`.
    pub async fn assert_refused(
        &self,
        (db, user, password): (&str, &str, &str),
        code: &str,
        message: &str,
    ) {
        let err = self
            .try_connect(db, user, password)
            .await
            .expect_err("the login must fail");
        assert_eq!(sqlstate(&err).as_deref(), Some(code), "{err:?}");
        assert_eq!(db_message(&err).as_deref(), Some(message), "{err:?}");
    }

    /// Connect through the pooler or panic.
    pub async fn connect(&self, db: &str, user: &str, password: &str) -> tokio_postgres::Client {
        self.try_connect(db, user, password)
            .await
            .unwrap_or_else(|e| panic!("connect to {db} as {user} through the pooler: {e:?}"))
    }

    /// Clients queued for a server in the pools of (`db`, server-side
    /// `user`), as SHOW POOLS' cl_waiting (0 while there is no such pool).
    pub fn waiting(&self, db: &str, user: &str) -> usize {
        let pools = self.pooler().context().pools.all();
        pools
            .iter()
            .filter(|p| p.database() == db && p.user() == user)
            .map(|p| p.figures().waiting)
            .sum()
    }

    /// Whether the request that `task` sends through the pooler as `user`
    /// of `db` is served, or queued because every server of the pool is
    /// held: whichever happens first, as the pool shows it (no time limit
    /// decides; a queued client stays queued unless query_wait_timeout is
    /// set). A queued task is aborted (its client disconnects).
    pub async fn served_or_queued<T>(
        &self,
        db: &str,
        user: &str,
        task: &tokio::task::JoinHandle<T>,
    ) -> bool {
        let served = super::poll(3000, Duration::from_millis(10), || async {
            if task.is_finished() {
                Some(true)
            } else if self.waiting(db, user) > 0 {
                Some(false)
            } else {
                None
            }
        })
        .await
        .expect("the request was neither served nor queued within 30 s");
        if !served {
            task.abort();
        }
        served
    }

    /// A raw TCP connection to the pooler (nothing sent yet).
    pub async fn raw_connect(&self) -> TcpStream {
        TcpStream::connect(self.addr())
            .await
            .expect("connect to pooler")
    }
}

/// SQLSTATE of a tokio-postgres error, if the server sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// Message of a tokio-postgres error from the server, if any.
pub fn db_message(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.message().to_string())
}

/// The pgsluice binary running `ini` as its own process (stdout dropped,
/// stderr shown with the test's output), killed when dropped.
pub fn spawn_binary(ini: &Path) -> tokio::process::Child {
    spawn_binary_env(ini, &[])
}

/// As [`spawn_binary`], with these environment variables set.
pub fn spawn_binary_env(ini: &Path, env: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .arg(ini)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the pgsluice binary")
}
