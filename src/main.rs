//! The `pgsluice` binary: parse the command line, load and check the config
//! (exit 64 on a bad one, before any port is bound), set up logging, bind,
//! wire signals and run the pooler in the foreground.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pgsluice::context::ShutdownMode;
use pgsluice::notify::Notifier;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// A PostgreSQL connection pooler, a drop-in replacement for PgBouncer.
#[derive(Parser, Debug)]
#[command(name = "pgsluice", version, about)]
struct Cli {
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No logging to stderr (the logfile still gets it).
    #[arg(short, long)]
    quiet: bool,
    /// Print an auth_file line with a SCRAM-SHA-256 secret for USER (the
    /// password is read from the first line of standard input) and exit.
    #[arg(long, value_name = "USER")]
    hash_password: Option<String>,
    /// The configuration file, in pgbouncer.ini format.
    #[arg(required_unless_present = "hash_password")]
    config_file: Option<PathBuf>,
}

/// EX_CONFIG-like status for a bad configuration (sysexits EX_USAGE = 64).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = loaded.config;
    let g = &config.general;
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
    let shards = pgsluice::shard::wanted();
    let listeners = match pgsluice::listen::bind_sharded(g, shards) {
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
    // `pgsluice::shard`).
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
    listeners: pgsluice::listen::Listeners,
    config: pgsluice::config::Config,
    shards: usize,
) -> ExitCode {
    let shards = match pgsluice::shard::Shards::start(shards) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start the worker threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    // This runtime has no time driver either (see `pgsluice::timer`).
    pgsluice::timer::use_timers_of(shards.timers().clone());
    let handles = shards.handles().to_vec();
    let pooler = match pgsluice::Pooler::serve_sharded(listeners, config, handles) {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok([mut term, mut int, mut hup, mut quit, mut usr1, mut usr2]) = signals() else {
        error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    // systemd Type=notify: the listeners are bound and the accept loops run.
    let notify = Notifier::from_env();
    notify.ready();
    info!(version = env!("CARGO_PKG_VERSION"), "pgsluice started");
    let ctx = pooler.context().clone();
    let mode = loop {
        tokio::select! {
            _ = term.recv() => { info!("got SIGTERM: shutdown once every client has left"); break ShutdownMode::WaitForClients }
            _ = int.recv() => { info!("got SIGINT: shutdown once running transactions are done"); break ShutdownMode::WaitForServers }
            _ = quit.recv() => { info!("got SIGQUIT: exiting now"); break ShutdownMode::Immediate }
            m = ctx.shutdown_requested() => { info!(?m, "shutdown requested from the admin console"); break m }
            _ = hup.recv() => {
                info!("got SIGHUP: reloading the configuration");
                notify.reloading();
                if let Err(e) = ctx.reload() {
                    error!("reload failed, keeping the running configuration: {e}");
                }
                notify.ready();
            }
            _ = usr1.recv() => {
                info!("got SIGUSR1: PAUSE");
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let cfg = ctx.config();
                    if let Err(e) = ctx.pools.pause(&cfg, None).await {
                        error!("PAUSE: {e}");
                    }
                });
            }
            _ = usr2.recv() => {
                info!("got SIGUSR2: RESUME");
                if let Err(e) = ctx.pools.resume(&ctx.config(), None) {
                    warn!("RESUME: {e}");
                }
            }
        }
    };
    notify.stopping();
    if mode == ShutdownMode::Immediate {
        pooler.shutdown_with(mode).await;
        return ExitCode::SUCCESS;
    }
    // A second SIGTERM or SIGINT (or SIGQUIT) during shutdown exits at once.
    tokio::select! {
        _ = pooler.shutdown_with(mode) => info!("shutdown complete"),
        _ = term.recv() => warn!("second signal: exiting immediately"),
        _ = int.recv() => warn!("second signal: exiting immediately"),
        _ = quit.recv() => warn!("SIGQUIT: exiting immediately"),
    }
    ExitCode::SUCCESS
}

/// `--hash-password USER`: read one line (the password) from stdin and
/// print the auth_file line.
fn hash_password(user: &str) -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut input) {
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

/// SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, in that order.
fn signals() -> std::io::Result<[tokio::signal::unix::Signal; 6]> {
    Ok([
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
        signal(SignalKind::hangup())?,
        signal(SignalKind::quit())?,
        signal(SignalKind::user_defined1())?,
        signal(SignalKind::user_defined2())?,
    ])
}
