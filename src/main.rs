//! The `pgsluice` binary: parse the command line, load and check the config
//! (exit 64 on a bad one, before any port is bound), set up logging, bind,
//! wire signals and run the pooler in the foreground.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pgsluice::context::{Context, ShutdownMode};
use pgsluice::notify::Notifier;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{error, info, warn};

/// A PostgreSQL connection pooler, a drop-in replacement for PgBouncer.
#[derive(Parser, Debug)]
#[command(name = "pgsluice", about, disable_version_flag = true)]
struct Cli {
    /// Print the version and exit: first PgBouncer's form, as SHOW VERSION
    /// answers it (tools compare the two), then pgsluice's with its build.
    #[arg(short = 'V', long)]
    version: bool,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No logging to stderr (the logfile still gets it).
    #[arg(short, long)]
    quiet: bool,
    /// Run in the background (needs `pidfile`); the command returns once
    /// the pooler serves, or with its error.
    #[arg(short, long)]
    daemon: bool,
    /// Run as this OS user (switched to at startup; needs root); wins
    /// over the `user` setting.
    #[arg(short, long, value_name = "USER")]
    user: Option<String>,
    /// Online restart: the pooler running with this configuration (found
    /// on its Unix socket) hands its listening sockets over and exits once
    /// its clients have left; none is dropped or moved.
    #[arg(short = 'R', long)]
    reboot: bool,
    /// Print an auth_file line with a SCRAM-SHA-256 secret for USER (the
    /// password is read from the first line of standard input) and exit.
    #[arg(long, value_name = "USER")]
    hash_password: Option<String>,
    /// The configuration file, in pgbouncer.ini format.
    #[arg(required_unless_present_any = ["hash_password", "version"])]
    config_file: Option<PathBuf>,
}

/// The version and the kind of build (build.rs): "0.1.0 (profile-guided
/// build)" for scripts/build-pgo.sh's binary.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PGSLUICE_BUILD"),
    " build)"
);

/// Append a bad configuration's errors to the logfile it names, if it
/// names one that can be opened (best effort: stderr has them already).
fn log_config_errors(config_file: &std::path::Path, errors: &pgsluice::config::ConfigErrors) {
    use std::io::Write;
    let Some(path) = pgsluice::config::logfile_of(config_file) else {
        return;
    };
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    for e in &errors.0 {
        let _ = writeln!(f, "ERROR pgsluice: invalid configuration: {e}");
    }
}

/// EX_CONFIG-like status for a bad configuration (sysexits EX_USAGE = 64).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("{}", pgsluice::admin::version());
        println!("pgsluice {VERSION}");
        return ExitCode::SUCCESS;
    }
    if let Some(user) = &cli.hash_password {
        return hash_password(user);
    }
    let Some(config_file) = &cli.config_file else {
        eprintln!("pgsluice: a configuration file is required");
        return ExitCode::from(EXIT_CONFIG);
    };
    let loaded = match pgsluice::config::load(config_file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pgsluice: invalid configuration:\n{e}");
            log_config_errors(config_file, &e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = loaded.config;
    let g = &config.general;
    if cli.daemon && !pgsluice::daemon::is_child() {
        if g.pidfile.is_none() {
            eprintln!("pgsluice: daemon mode (-d) needs pidfile configured");
            return ExitCode::from(EXIT_CONFIG);
        }
        return pgsluice::daemon::spawn_background(background_args(&cli, config_file));
    }
    if pgsluice::daemon::is_child()
        && let Err(e) = pgsluice::daemon::detach()
    {
        eprintln!("pgsluice: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(user) = cli.user.as_ref().or(g.user.as_ref())
        && let Err(e) = pgsluice::daemon::switch_user(user)
    {
        eprintln!("pgsluice: {e}");
        return ExitCode::FAILURE;
    }
    let verbosity = u32::from(cli.verbose) + g.verbose;
    let format = if g.log_json {
        pgsluice::logging::Format::Json
    } else {
        pgsluice::logging::Format::Text
    };
    if let Err(e) = pgsluice::logging::init(verbosity, cli.quiet, g.logfile.as_deref(), format) {
        eprintln!("pgsluice: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for w in &loaded.warnings {
        warn!("{w}");
    }
    let mut took_over = false;
    if cli.reboot {
        let socket =
            std::path::Path::new(&g.unix_socket_dir).join(format!(".s.PGSQL.{}", g.listen_port));
        match pgsluice::daemon::take_over(&socket) {
            Ok(true) => {
                info!(
                    "online restart: the running pooler closed its listening sockets and finishes its clients"
                );
                took_over = true;
            }
            Ok(false) => info!("online restart: old process not found, starting normally"),
            Err(e) => {
                error!("online restart failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let shards = pgsluice::runtime::shard::wanted();
    let listeners = match bind(g, shards, took_over) {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let pidfile = g.pidfile.clone();
    if let Some(p) = &pidfile
        && let Err(e) = std::fs::write(p, format!("{}\n", std::process::id()))
    {
        error!("cannot write pidfile {}: {e}", p.display());
        return ExitCode::FAILURE;
    }
    // Shard 0 runs here; the others get threads of their own (see
    // `pgsluice::runtime::shard`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(listeners, config, shards));
    if let Some(p) = &pidfile {
        let _ = std::fs::remove_file(p);
    }
    code
}

async fn run(
    listeners: pgsluice::transport::listen::Listeners,
    config: pgsluice::config::Config,
    shards: usize,
) -> ExitCode {
    let shards = match pgsluice::runtime::shard::Shards::start(shards) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start the worker threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    // This runtime has no time driver either (see `pgsluice::runtime::timer`).
    pgsluice::runtime::timer::use_timers_of(shards.timers().clone());
    let handles = shards.handles().to_vec();
    let pooler = match pgsluice::Pooler::serve_sharded(listeners, config, handles) {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match signals() {
        Ok(rx) => rx,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    // systemd Type=notify: the listeners are bound and the accept loops run.
    let notify = Notifier::from_env();
    notify.ready();
    info!(version = VERSION, "pgsluice started");
    log_fd_limit(&pooler.context().config());
    if pgsluice::daemon::is_child() {
        pgsluice::daemon::ready();
    }
    let mode = until_stopped(pooler.context(), &mut signals, &notify).await;
    notify.stopping();
    stop(pooler, mode, &mut signals).await;
    ExitCode::SUCCESS
}

/// Serve signals until one (or the admin console's SHUTDOWN) asks to stop;
/// how to stop.
async fn until_stopped(
    ctx: &Arc<Context>,
    signals: &mut UnboundedReceiver<i32>,
    notify: &Notifier,
) -> ShutdownMode {
    loop {
        let signal = tokio::select! {
            m = ctx.shutdown_requested() => {
                info!(?m, "shutdown requested from the admin console");
                return m;
            }
            s = signals.recv() => s,
        };
        let Some(signal) = signal else {
            error!("the signal thread ended: shutting down");
            return ShutdownMode::WaitForServers;
        };
        if let Some(mode) = on_signal(signal, ctx, notify) {
            return mode;
        }
    }
}

/// What a signal does, as in PgBouncer: a shutdown mode, or something
/// done at once (reload, PAUSE, RESUME).
fn on_signal(signal: i32, ctx: &Arc<Context>, notify: &Notifier) -> Option<ShutdownMode> {
    match signal {
        SIGTERM => {
            info!("got SIGTERM: shutdown once every client has left");
            return Some(ShutdownMode::WaitForClients);
        }
        SIGINT => {
            info!("got SIGINT: shutdown once running transactions are done");
            return Some(ShutdownMode::WaitForServers);
        }
        SIGQUIT => {
            info!("got SIGQUIT: exiting now");
            return Some(ShutdownMode::Immediate);
        }
        SIGHUP => {
            info!("got SIGHUP: reloading the configuration");
            notify.reloading();
            if let Err(e) = ctx.reload() {
                error!("reload failed, keeping the running configuration: {e}");
            }
            notify.ready();
        }
        SIGUSR1 => {
            info!("got SIGUSR1: PAUSE");
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let cfg = ctx.config();
                if let Err(e) = ctx.pools.pause(&cfg, None).await {
                    error!("PAUSE: {e}");
                }
            });
        }
        SIGUSR2 => {
            info!("got SIGUSR2: RESUME");
            if let Err(e) = ctx.pools.resume(&ctx.config(), None) {
                warn!("RESUME: {e}");
            }
        }
        other => warn!(signal = other, "ignoring an unexpected signal"),
    }
    None
}

/// Stop the pooler in `mode`; a second SIGTERM or SIGINT (or SIGQUIT)
/// meanwhile exits at once.
async fn stop(pooler: pgsluice::Pooler, mode: ShutdownMode, signals: &mut UnboundedReceiver<i32>) {
    if mode == ShutdownMode::Immediate {
        return pooler.shutdown_with(mode).await;
    }
    let second = async {
        loop {
            match signals.recv().await {
                Some(SIGTERM | SIGINT) => break warn!("second signal: exiting immediately"),
                Some(SIGQUIT) => break warn!("SIGQUIT: exiting immediately"),
                // PgBouncer's words: nothing is resumed or paused now.
                Some(SIGUSR2) => info!("got SIGUSR2 while shutting down, ignoring"),
                Some(SIGUSR1) => info!("got SIGUSR1 while shutting down, ignoring"),
                Some(_) => {}
                None => std::future::pending().await,
            }
        }
    };
    tokio::select! {
        _ = pooler.shutdown_with(mode) => info!("shutdown complete"),
        _ = second => {}
    }
}

/// Bind the listeners; after a takeover, while the old process is still
/// letting go of them (its answer comes before its accept loops end), a
/// port in use is tried again for up to 10 s.
fn bind(
    g: &pgsluice::config::General,
    shards: usize,
    took_over: bool,
) -> std::io::Result<pgsluice::transport::listen::Listeners> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match pgsluice::transport::listen::bind_sharded(g, shards) {
            Err(e)
                if took_over
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// The command line of the background process `-d` starts: the same
/// options without `-d`.
fn background_args(cli: &Cli, config_file: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for _ in 0..cli.verbose {
        args.push("-v".into());
    }
    if cli.quiet {
        args.push("-q".into());
    }
    if cli.reboot {
        args.push("-R".into());
    }
    if let Some(user) = &cli.user {
        args.push("-u".into());
        args.push(user.into());
    }
    args.push("--".into());
    args.push(config_file.into());
    args
}

/// `--hash-password USER`: read one line (the password) from stdin and
/// print the auth_file line. At a terminal it asks on stderr and the
/// password is not echoed.
fn hash_password(user: &str) -> ExitCode {
    let mut input = String::new();
    let read = {
        let _quiet = std::io::IsTerminal::is_terminal(&std::io::stdin()).then(NoEcho::start);
        std::io::stdin().read_line(&mut input)
    };
    if let Err(e) = read {
        eprintln!("pgsluice: cannot read the password from standard input: {e}");
        return ExitCode::FAILURE;
    }
    let Some(password) = pgsluice::auth::mkauth::password_from_line(&input) else {
        eprintln!("pgsluice: no password on standard input");
        return ExitCode::FAILURE;
    };
    println!("{}", pgsluice::auth::mkauth::userlist_line(user, password));
    ExitCode::SUCCESS
}

/// The file-descriptor limit beside what the configuration may use, as
/// PgBouncer logs it at start: every client, each named database's pool
/// (with its reserve) for one user, and the listeners. A warning when the
/// limit is lower: logins would fail with EMFILE before max_client_conn.
fn log_fd_limit(cfg: &pgsluice::config::Config) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let g = &cfg.general;
    let pools: u64 = cfg
        .databases
        .entries
        .values()
        .map(|d| {
            u64::from(d.pool_size.unwrap_or(g.default_pool_size))
                + u64::from(d.reserve_pool_size.unwrap_or(g.reserve_pool_size))
        })
        .sum();
    let expected = u64::from(g.max_client_conn) + pools + 16;
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let (soft, hard) = (show(limit.current), show(limit.maximum));
    if limit.current.is_some_and(|n| n < expected) {
        warn!(
            "file descriptor limit: {soft} (hard: {hard}); max_client_conn: {}, max expected fd use: {expected}: raise the limit (ulimit -n, LimitNOFILE=)",
            g.max_client_conn
        );
    } else {
        info!(
            "file descriptor limit: {soft} (hard: {hard}); max_client_conn: {}, max expected fd use: {expected}",
            g.max_client_conn
        );
    }
}

/// The terminal on stdin with echo off, while it lives (then as it was,
/// and the newline the user typed, which was not echoed, written to
/// stderr). The prompt goes to stderr, so stdout holds only the line.
struct NoEcho(Option<rustix::termios::Termios>);

impl NoEcho {
    fn start() -> NoEcho {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let before = tcgetattr(&stdin).ok().and_then(|before| {
            let mut quiet = before.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            // ICANON stays: the line is read as typed, erase keys work.
            tcsetattr(&stdin, OptionalActions::Now, &quiet)
                .ok()
                .map(|()| before)
        });
        // Asked once echo is off: nothing typed after it shows.
        eprint!("Password: ");
        NoEcho(before)
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                before,
            );
        }
        eprintln!();
    }
}

/// SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 as they arrive:
/// caught by signal-hook, read by a thread of their own and passed to the
/// runtime (no runtime carries tokio's signal driver; see Cargo.toml).
fn signals() -> std::io::Result<UnboundedReceiver<i32>> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2])?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("pgsluice-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if tx.send(s).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}
