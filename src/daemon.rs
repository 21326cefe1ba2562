//! PgBouncer's command-line options that change the process itself:
//! `-d/--daemon` (run in the background) and `-u/--user` (run as another
//! OS user).
//!
//! `-d` without `fork()` (which `#![forbid(unsafe_code)]` rules out, and
//! which a process must do before it starts threads): the command starts
//! itself again without `-d`, with [`CHILD_ENV`] set, stdin on /dev/null
//! and stdout a pipe; the new process makes a session of its own
//! (`setsid`, no controlling terminal), loads, binds and writes its
//! pidfile, then says `ready` on the pipe and puts its stdout and stderr
//! on /dev/null. The first process exits 0 when it reads that, or with
//! the new one's status when it ended first: unlike PgBouncer's `-d`,
//! which forks before binding, a port in use is an error here (printed on
//! the terminal, where stderr still goes until `ready`).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};

/// Set in the environment of the background process that `-d` starts.
pub const CHILD_ENV: &str = "PGSLUICE_DAEMON_CHILD";

/// What the background process writes on its stdout once it serves.
const READY: &str = "ready";

/// Whether this process is the background one `-d` started.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// `-d` in the foreground: run this program again with `args` (the
/// command line without `-d`) in the background, wait until it serves or
/// ends, and give the status to exit with.
pub fn spawn_background(args: Vec<OsString>) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pgsluice: cannot find its own executable to run in the background: {e}");
            return ExitCode::FAILURE;
        }
    };
    let child = Command::new(exe)
        .args(args)
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgsluice: cannot start in the background: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim_end() == READY {
        return ExitCode::SUCCESS;
    }
    // It ended (or closed its stdout) without serving: its status is ours.
    match child.wait() {
        Ok(status) => match status.code() {
            Some(0) | None => ExitCode::FAILURE,
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        },
        Err(_) => ExitCode::FAILURE,
    }
}

/// In the background process, first: a session of its own, away from the
/// terminal the command was started from.
pub fn detach() -> Result<(), String> {
    nix::unistd::setsid()
        .map(drop)
        .map_err(|e| format!("setsid failed: {e}"))
}

/// In the background process, once it serves: tell the waiting first
/// process, then put stdout and stderr on /dev/null (logs go to the
/// logfile or syslog, as PgBouncer's do in daemon mode).
pub fn ready() {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{READY}");
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// `-u USER`: switch to `name`'s user and group (its supplementary groups
/// too), as PgBouncer does before it opens anything. Nothing to do when
/// this process already runs as that user; an error when it cannot
/// switch (only root can).
pub fn switch_user(name: &str) -> Result<(), String> {
    use nix::unistd::{Uid, User, getuid, initgroups, setgid, setuid};
    let user = User::from_name(name)
        .map_err(|e| format!("cannot look up user {name}: {e}"))?
        .ok_or_else(|| format!("user {name} does not exist"))?;
    if getuid() == user.uid {
        return Ok(());
    }
    if getuid() != Uid::from_raw(0) {
        return Err(format!(
            "cannot switch to user {name}: only root can (this process runs as uid {})",
            getuid()
        ));
    }
    let cname = std::ffi::CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
    initgroups(&cname, user.gid).map_err(|e| format!("initgroups({name}) failed: {e}"))?;
    setgid(user.gid).map_err(|e| format!("setgid({}) failed: {e}", user.gid))?;
    setuid(user.uid).map_err(|e| format!("setuid({}) failed: {e}", user.uid))?;
    Ok(())
}
