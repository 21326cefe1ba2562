//! A throwaway PostgreSQL cluster for integration tests.
//!
//! `initdb` into a temp dir, an ephemeral port, run as the `postgres` OS user
//! when the tests run as root. PostgreSQL is started through a small shell
//! wrapper whose stdin is a pipe held by the test process: when the test
//! process exits (normally, by panic or by a signal) the pipe closes, the
//! wrapper stops PostgreSQL (fast shutdown) and removes the data directory.
//!
//! pg_hba.conf is fixed at initdb time and needs no reload for the usual
//! cases: a role created with [`PgCluster::create_role`] is put into the group
//! `pgsluice_md5` or `pgsluice_scram`, and the hba lines for those groups
//! require md5 / scram-sha-256 over TCP. Everything else is trusted.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How a role's password is stored in pg_authid (and so which pg_hba method
/// is required for it over TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    Md5,
    Scram,
}

/// Marker line in pg_hba.conf; [`PgCluster::add_hba`] inserts above it.
const HBA_MARKER: &str = "# pgsluice-tests: per-test lines above this one";

/// Superuser name created by initdb.
pub const SUPERUSER: &str = "postgres";

/// A running (or stopped) PostgreSQL cluster owned by the test process.
pub struct PgCluster {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    run_as: Option<(u32, u32)>,
    /// TCP takes TLS only (`dedicated_tls`): direct clients use the Unix socket.
    tls_only: bool,
    /// The shell wrapper (stdin pipe + child), `None` while stopped.
    wrapper: Mutex<Option<(ChildStdin, Child)>>,
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();

impl PgCluster {
    /// The cluster shared by all tests of this test binary (started on first use).
    pub fn shared() -> &'static PgCluster {
        SHARED.get_or_init(PgCluster::dedicated)
    }

    /// A cluster of its own, for tests that stop, restart or break it.
    pub fn dedicated() -> PgCluster {
        Self::dedicated_with(|_| {})
    }

    /// A cluster of its own with `ssl = on`, serving `server` (key and
    /// certificate) and checking client certificates against `ca`, whose
    /// pg_hba.conf accepts TCP connections over TLS only (`hostssl`).
    pub fn dedicated_tls(server: &super::tls::Issued, ca: &Path) -> PgCluster {
        Self::dedicated_with(|c| {
            c.tls_only = true;
            let data = c.data_dir();
            for (from, to) in [
                (&server.cert, "server.crt"),
                (&server.key, "server.key"),
                (&ca.to_path_buf(), "root.crt"),
            ] {
                let text = fs::read_to_string(from).unwrap();
                c.write_as_owner(&data.join(to), &text);
            }
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(data.join("server.key"), fs::Permissions::from_mode(0o600))
                .unwrap();
            let conf = data.join("postgresql.conf");
            let mut text = fs::read_to_string(&conf).unwrap();
            text.push_str(
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n",
            );
            c.write_as_owner(&conf, &text);
            let hba = data.join("pg_hba.conf");
            let text = fs::read_to_string(&hba)
                .unwrap()
                .replace("\nhost ", "\nhostssl ");
            c.write_as_owner(&hba, &text);
        })
    }

    /// A cluster of its own with `conf` added to postgresql.conf (before
    /// its first start: settings that need a restart, wal_level = logical).
    pub fn dedicated_conf(conf: &str) -> PgCluster {
        Self::dedicated_with(|c| {
            let path = c.data_dir().join("postgresql.conf");
            let text = fs::read_to_string(&path).unwrap() + conf + "\n";
            c.write_as_owner(&path, &text);
        })
    }

    fn dedicated_with(setup: impl Fn(&mut PgCluster)) -> PgCluster {
        super::raise_nofile_limit();
        let bindir = pg_bindir();
        let dir = tempfile::Builder::new()
            .prefix("pgsluice-pg-")
            .tempdir()
            .expect("create temp dir for PostgreSQL");
        let run_as = postgres_os_user();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let mut cluster = PgCluster {
            bindir,
            dir,
            port: 0,
            run_as,
            tls_only: false,
            wrapper: Mutex::new(None),
        };
        cluster.initdb();
        setup(&mut cluster);
        // A port chosen by binding :0 may be taken by someone else before
        // PostgreSQL binds it: retry with another one.
        let mut last_err = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(e) => last_err = e,
            }
        }
        panic!("PostgreSQL did not start: {last_err}");
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory holding the Unix socket `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(program.as_ref());
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env("TZ", "UTC");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid)
                .gid(gid)
                .env("HOME", self.dir.path())
                .env("USER", SUPERUSER);
        }
        cmd
    }

    fn initdb(&self) {
        let sock = self.socket_dir();
        fs::create_dir(&sock).expect("create socket dir");
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&sock, Some(uid), Some(gid)).expect("chown socket dir");
        }
        let out = self
            .command(self.bindir.join("initdb"))
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let hba = format!(
            "local all all trust\n\
             host all {SUPERUSER} 127.0.0.1/32 trust\n\
             {HBA_MARKER}\n\
             host all +pgsluice_md5 127.0.0.1/32 md5\n\
             host all +pgsluice_scram 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 trust\n\
             local replication all trust\n\
             host replication all 127.0.0.1/32 trust\n"
        );
        self.write_as_owner(&self.data_dir().join("pg_hba.conf"), &hba);
        let conf = "listen_addresses = '127.0.0.1'\n\
                    fsync = off\n\
                    synchronous_commit = off\n\
                    full_page_writes = off\n\
                    max_connections = 300\n\
                    shared_buffers = 32MB\n\
                    log_min_messages = warning\n\
                    password_encryption = 'scram-sha-256'\n";
        let mut text = fs::read_to_string(self.data_dir().join("postgresql.conf")).unwrap();
        text.push_str(conf);
        self.write_as_owner(&self.data_dir().join("postgresql.conf"), &text);
        // Roles whose membership selects the pg_hba method (see module docs),
        // created in single-user mode so that no SQL connection is needed.
        let mut single = self
            .command(postgres_bin(&self.bindir))
            .args(["--single", "-D"])
            .arg(self.data_dir())
            .arg("postgres")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run postgres --single");
        single
            .stdin
            .take()
            .unwrap()
            .write_all(b"CREATE ROLE pgsluice_md5 NOLOGIN;\nCREATE ROLE pgsluice_scram NOLOGIN;\n")
            .unwrap();
        let out = single.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "postgres --single failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn write_as_owner(&self, path: &Path, text: &str) {
        fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// Start PostgreSQL again after [`stop`](Self::stop), on the same port.
    pub fn start(&self) {
        let mut err = String::new();
        for _ in 0..20 {
            match self.try_start() {
                Ok(()) => return,
                // The port may still be in TIME_WAIT-like limbo: try again.
                Err(e) => err = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "PostgreSQL did not start again on port {}: {err}",
            self.port
        );
    }

    fn try_start(&self) -> Result<(), String> {
        let mut guard = self.wrapper.lock().unwrap();
        assert!(guard.is_none(), "PostgreSQL is already running");
        let log_len_before = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let postgres = postgres_bin(&self.bindir);
        // The wrapper waits for a line (or EOF) on stdin, then stops
        // PostgreSQL with a fast shutdown. EOF (the test process is gone)
        // also removes the cluster directory; the line "keep" does not.
        let script = r#"
            "$1" -D "$2" -p "$3" -k "$4" >>"$5" 2>&1 &
            p=$!
            read cmd
            if [ "$cmd" = immediate ]; then kill -QUIT $p 2>/dev/null; else kill -INT $p 2>/dev/null; fi
            wait $p
            if [ "$cmd" != keep ] && [ "$cmd" != immediate ]; then rm -rf "$6"; fi
        "#;
        let mut child = self
            .command("sh")
            .arg("-c")
            .arg(script)
            .arg("pg-wrapper")
            .arg(&postgres)
            .arg(self.data_dir())
            .arg(self.port.to_string())
            .arg(self.socket_dir())
            .arg(self.log_path())
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn postgres wrapper: {e}"))?;
        let stdin = child.stdin.take().unwrap();
        let pidfile = self.data_dir().join("postmaster.pid");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = fs::read_to_string(&pidfile) {
                // Line 8 of postmaster.pid is the postmaster status (PG >= 10).
                // A standby says "standby" once it accepts connections.
                if matches!(
                    text.lines().nth(7).map(str::trim),
                    Some("ready" | "standby")
                ) {
                    *guard = Some((stdin, child));
                    return Ok(());
                }
            }
            let log = self.log();
            let new_log = log.get(log_len_before as usize..).unwrap_or("");
            if new_log.contains("FATAL") || Instant::now() > deadline {
                let mut stdin = stdin;
                let _ = stdin.write_all(b"keep\n");
                drop(stdin);
                let _ = child.wait();
                return Err(new_log.to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop PostgreSQL (fast shutdown: sessions are terminated) and wait for it.
    pub fn stop(&self) {
        let mut guard = self.wrapper.lock().unwrap();
        let (mut stdin, mut child) = guard.take().expect("PostgreSQL is not running");
        stdin
            .write_all(b"keep\n")
            .expect("signal the postgres wrapper");
        drop(stdin);
        child.wait().expect("wait for postgres wrapper");
    }

    /// Stop PostgreSQL as a crash would (`pg_ctl stop -m immediate`: no
    /// checkpoint, sessions cut) and wait for it.
    pub fn stop_immediate(&self) {
        let mut guard = self.wrapper.lock().unwrap();
        let (mut stdin, mut child) = guard.take().expect("PostgreSQL is not running");
        stdin
            .write_all(b"immediate\n")
            .expect("signal the postgres wrapper");
        drop(stdin);
        child.wait().expect("wait for postgres wrapper");
    }

    /// A hot standby of `primary`, made by `pg_basebackup -R` (streaming
    /// replication from the primary's Unix socket), started on a port of
    /// its own and accepting connections.
    pub fn standby_of(primary: &PgCluster) -> PgCluster {
        Self::standby_with(primary, "")
    }

    /// A standby of `primary` (as [`standby_of`](Self::standby_of)) with
    /// `conf` added to its configuration (e.g. `hot_standby = off`: it then
    /// refuses every login with 57P03 until promoted).
    pub fn standby_with(primary: &PgCluster, conf: &str) -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("pgsluice-standby-")
            .tempdir()
            .expect("create temp dir for a standby");
        if let Some((uid, gid)) = primary.run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let mut standby = PgCluster {
            bindir: primary.bindir.clone(),
            dir,
            port: 0,
            run_as: primary.run_as,
            tls_only: false,
            wrapper: Mutex::new(None),
        };
        let sock = standby.socket_dir();
        fs::create_dir(&sock).expect("create socket dir");
        if let Some((uid, gid)) = standby.run_as {
            std::os::unix::fs::chown(&sock, Some(uid), Some(gid)).expect("chown socket dir");
        }
        let out = standby
            .command(standby.bindir.join("pg_basebackup"))
            .arg("-D")
            .arg(standby.data_dir())
            .args(["-R", "-X", "stream", "-c", "fast", "-U", SUPERUSER, "-h"])
            .arg(primary.socket_dir())
            .args(["-p", &primary.port.to_string()])
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !conf.is_empty() {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(standby.data_dir().join("postgresql.auto.conf"))
                .expect("open the standby's postgresql.auto.conf");
            writeln!(f, "{conf}").expect("write the standby's configuration");
        }
        let mut last_err = String::new();
        for _ in 0..5 {
            standby.port = free_port();
            match standby.try_start() {
                Ok(()) => return standby,
                Err(e) => last_err = e,
            }
        }
        panic!("the standby did not start: {last_err}");
    }

    /// Wait until `n` standbys stream from this primary
    /// (`pg_stat_replication`, state `streaming`).
    pub async fn wait_for_standbys(&self, n: usize) {
        let client = self.direct_client("postgres", SUPERUSER).await;
        for _ in 0..600 {
            let rows = client
                .simple_query("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                .await
                .unwrap();
            if super::rows_col0(&rows) == [n.to_string()] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} standbys never streamed from the primary");
    }

    /// Promote a standby (`pg_ctl promote`, waiting until it is done).
    pub fn promote(&self) {
        let out = self
            .command(self.bindir.join("pg_ctl"))
            .args(["promote", "-w", "-D"])
            .arg(self.data_dir())
            .output()
            .expect("run pg_ctl promote");
        assert!(
            out.status.success(),
            "pg_ctl promote failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fast restart, as `pg_ctl restart -m fast`: every session is terminated
    /// and PostgreSQL comes back on the same port.
    pub fn restart(&self) {
        self.stop();
        self.start();
    }

    /// Run SQL as the superuser through a direct connection to `postgres`.
    pub async fn sql(&self, sql: &str) {
        let client = self.direct_client("postgres", SUPERUSER).await;
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// Create a database owned by the superuser; `public` is open to everyone.
    pub async fn create_db(&self, name: &str) {
        self.sql(&format!("CREATE DATABASE {}", ident(name))).await;
        let client = self.direct_client(name, SUPERUSER).await;
        client
            .batch_execute("GRANT ALL ON SCHEMA public TO PUBLIC")
            .await
            .unwrap();
    }

    /// Create a login role with a password stored as md5 or SCRAM. Over TCP
    /// that role then needs md5 (for `Md5`) or scram-sha-256 (for `Scram`).
    pub async fn create_role(&self, name: &str, password: &str, enc: Encryption) {
        let (method, group) = match enc {
            Encryption::Md5 => ("md5", "pgsluice_md5"),
            Encryption::Scram => ("scram-sha-256", "pgsluice_scram"),
        };
        self.sql(&format!(
            "SET password_encryption = '{method}';\n\
             CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {group}",
            ident(name),
            literal(password)
        ))
        .await;
    }

    /// Create a login role without a password (trusted over TCP).
    pub async fn create_trusted_role(&self, name: &str) {
        self.sql(&format!("CREATE ROLE {} LOGIN", ident(name)))
            .await;
    }

    /// The role's SCRAM verifier as stored in pg_authid.
    pub async fn scram_verifier(&self, role: &str) -> String {
        let client = self.direct_client("postgres", SUPERUSER).await;
        let row = client
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[&role],
            )
            .await
            .unwrap();
        let secret: String = row.get(0);
        assert!(
            secret.starts_with("SCRAM-SHA-256$"),
            "not a SCRAM secret: {role}"
        );
        secret
    }

    /// Insert a pg_hba.conf line before the catch-all lines, reload, and wait
    /// until the postmaster has read it.
    pub async fn add_hba(&self, line: &str) {
        let path = self.data_dir().join("pg_hba.conf");
        let text = fs::read_to_string(&path).unwrap();
        let text = text.replacen(HBA_MARKER, &format!("{line}\n{HBA_MARKER}"), 1);
        self.write_as_owner(&path, &text);
        let reloads = |log: &str| log.matches("reloading configuration files").count();
        let before = reloads(&self.log());
        self.sql("SELECT pg_reload_conf()").await;
        for _ in 0..500 {
            if reloads(&self.log()) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("PostgreSQL did not reload pg_hba.conf");
    }

    /// A client connected straight to PostgreSQL over TCP (no pooler).
    pub async fn direct_client(&self, db: &str, user: &str) -> tokio_postgres::Client {
        let mut last = None;
        // A freshly restarted cluster may refuse briefly ("starting up").
        for _ in 0..50 {
            match self
                .direct_config(db, user)
                .connect(tokio_postgres::NoTls)
                .await
            {
                Ok((client, conn)) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    return client;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("direct connection to {db} as {user}: {:?}", last.unwrap());
    }

    /// The tokio-postgres config for a direct connection.
    pub fn direct_config(&self, db: &str, user: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        if self.tls_only {
            cfg.host_path(self.socket_dir());
        } else {
            cfg.host("127.0.0.1");
        }
        cfg.port(self.port)
            .dbname(db)
            .user(user)
            .connect_timeout(Duration::from_secs(10));
        cfg
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some((stdin, mut child)) = self.wrapper.get_mut().unwrap().take() {
            drop(stdin); // EOF: fast shutdown and removal of the directory
            let _ = child.wait();
        }
    }
}

fn postgres_bin(bindir: &Path) -> PathBuf {
    bindir.join("postgres")
}

/// Quote an SQL identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote an SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server that a
/// test starts itself and that binds it later (PostgreSQL, the pgsluice
/// binary). Taken below the kernel's ephemeral range
/// (`ip_local_port_range`), never from it: every outgoing connection of
/// the tests (thousands, in one process) takes its local port from that
/// range, and one that took this port in the meantime would keep the
/// server from binding it. Never the same port twice in one process; the
/// first one tried depends on the process id, so that two test runs on
/// one machine start apart. Falls back to a port the kernel picks when
/// the ephemeral range leaves no room below it.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_from = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_from > FIRST + 1_000 {
        let span = ephemeral_from - FIRST;
        let offset = std::process::id().wrapping_mul(2_654_435_761) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = (FIRST + (offset + n) % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// (uid, gid) of the `postgres` OS user when running as root, else None.
fn postgres_os_user() -> Option<(u32, u32)> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|s| s.parse::<u32>().ok());
    if euid != Some(0) {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == "postgres" {
            return Some((f[2].parse().unwrap(), f[3].parse().unwrap()));
        }
    }
    panic!(
        "running as root but there is no `postgres` OS user (PostgreSQL refuses to run as root); \
         install the postgresql package or run scripts/test.sh"
    );
}

/// Directory with initdb/postgres: the one of `initdb` on PATH, else the
/// newest /usr/lib/postgresql/*/bin.
pub fn pg_bindir() -> PathBuf {
    if let Some(initdb) = find_in_path("initdb") {
        let real = fs::canonicalize(&initdb).unwrap_or(initdb);
        let dir = real.parent().unwrap().to_path_buf();
        if dir.join("postgres").exists() {
            return dir;
        }
    }
    newest_versioned_bindir()
        .filter(|d| d.join("initdb").exists())
        .expect(
            "PostgreSQL server binaries (initdb) not found: run scripts/test.sh to install them",
        )
}

fn newest_versioned_bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A client tool (psql, pgbench) from PATH or /usr/lib/postgresql/*/bin.
/// Missing: panics when env CI is set (never skip silently in CI), otherwise
/// prints a note and returns None so that the test can return early.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = find_in_path(name).or_else(|| {
        newest_versioned_bindir()
            .map(|d| d.join(name))
            .filter(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} not found and CI is set: install postgresql-client");
        }
        eprintln!("note: {name} not found, skipping this test (install postgresql-client)");
    }
    found
}
