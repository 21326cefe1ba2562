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

/// `-R`: ask the pooler listening on the Unix socket `socket` (the one this
/// configuration would use) to hand over: over its admin console, logged
/// in as `pgbouncer` (this process's own OS user needs no password there),
/// TAKEOVER makes it close its listening sockets at once and exit once
/// its last client has left; this process then binds them. Ok(false): no
/// process answers there (start normally, as PgBouncer does).
///
/// Unlike PgBouncer's online restart, client connections are not moved:
/// they stay with the old process until they end (none is dropped).
pub fn take_over(socket: &std::path::Path) -> Result<bool, String> {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let Ok(mut s) = UnixStream::connect(socket) else {
        return Ok(false);
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let why = |e: std::io::Error| format!("takeover over {}: {e}", socket.display());
    let mut startup = Vec::new();
    for (k, v) in [("user", "pgbouncer"), ("database", "pgbouncer")] {
        startup.extend_from_slice(k.as_bytes());
        startup.push(0);
        startup.extend_from_slice(v.as_bytes());
        startup.push(0);
    }
    startup.push(0);
    let mut packet = ((startup.len() + 8) as u32).to_be_bytes().to_vec();
    packet.extend(196_608u32.to_be_bytes());
    packet.extend(startup);
    s.write_all(&packet).map_err(why)?;
    // Read messages up to ReadyForQuery; an ErrorResponse is the error.
    let until_ready = |s: &mut UnixStream| -> Result<(), String> {
        loop {
            let mut head = [0u8; 5];
            s.read_exact(&mut head).map_err(why)?;
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4)];
            s.read_exact(&mut body).map_err(why)?;
            match head[0] {
                b'Z' => return Ok(()),
                b'E' => {
                    let text: Vec<String> = body
                        .split(|b| *b == 0)
                        .filter(|f| f.first() == Some(&b'M'))
                        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                        .collect();
                    return Err(format!(
                        "the running pooler refused the takeover: {}",
                        text.join("; ")
                    ));
                }
                _ => {}
            }
        }
    };
    until_ready(&mut s)?;
    let query = b"TAKEOVER\0";
    let mut msg = vec![b'Q'];
    msg.extend(((query.len() + 4) as u32).to_be_bytes());
    msg.extend(query);
    s.write_all(&msg).map_err(why)?;
    until_ready(&mut s)?;
    Ok(true)
}
