//! systemd's readiness protocol (`Type=notify`): READY=1 once the
//! listeners are bound and serving, RELOADING=1 (with MONOTONIC_USEC, as
//! systemd 253+ expects for `Type=notify-reload`) and READY=1 again around
//! a reload, STOPPING=1 when shutdown starts.
//!
//! The protocol is one datagram of `KEY=VALUE` lines sent to the Unix
//! socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written
//! with a leading `@`). Written by hand instead of with a crate: it is a
//! few lines of std, and the crates that do it (libsystemd, sd-notify)
//! either pull in more than this or, for the environment clean-up, need
//! `unsafe` calls we do not want (`#![forbid(unsafe_code)]`). For that
//! reason `NOTIFY_SOCKET` is left in the environment (pgsluice starts no
//! child processes that could inherit it). Without `NOTIFY_SOCKET` (not
//! under systemd) every call does nothing. Failures to send are logged at
//! debug level and otherwise ignored, as sd_notify(3) callers do.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::debug;

/// Where notifications go; `None` when not started by systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a notifier that does nothing when it is unset,
    /// empty or unusable.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(name) => Notifier::to(&name.to_string_lossy()).unwrap_or_else(|e| {
                debug!("NOTIFY_SOCKET {name:?} unusable: {e}");
                Notifier::none()
            }),
            None => Notifier::none(),
        }
    }

    /// A notifier that sends nothing.
    pub fn none() -> Notifier {
        Notifier { target: None }
    }

    /// A notifier sending to `name` (a path, or `@name` for an abstract
    /// socket).
    pub fn to(name: &str) -> io::Result<Notifier> {
        let addr = socket_addr(name)?;
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier {
            target: Some((socket, addr)),
        })
    }

    /// READY=1: listeners bound, serving.
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=serving");
    }

    /// RELOADING=1 with the monotonic time in microseconds.
    pub fn reloading(&self) {
        let msg = format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        );
        self.send(&msg);
    }

    /// STOPPING=1: shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=shutting down");
    }

    /// Send one datagram (ignoring errors: systemd may be gone).
    pub fn send(&self, msg: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(msg.as_bytes(), addr)
        {
            debug!("sd_notify {msg:?}: {e}");
        }
    }
}

/// `@name` -> the abstract address `\0name` (Linux); anything else is a
/// path.
fn socket_addr(name: &str) -> io::Result<SocketAddr> {
    if name.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty name"));
    }
    if let Some(abstract_name) = name.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            return SocketAddr::from_abstract_name(abstract_name.as_bytes());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = abstract_name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract sockets need Linux",
            ));
        }
    }
    SocketAddr::from_pathname(name)
}

/// CLOCK_MONOTONIC in microseconds (the clock systemd compares with).
fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str().unwrap()).unwrap();
        assert!(n.target.is_some());
        n.ready();
        assert_eq!(recv(&socket), "READY=1\nSTATUS=serving");
        let before = monotonic_usec();
        n.reloading();
        let msg = recv(&socket);
        let usec: u64 = msg
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(msg.starts_with("RELOADING=1\n"), "{msg}");
        assert!(usec >= before && usec <= monotonic_usec(), "{msg}");
        n.stopping();
        assert!(recv(&socket).starts_with("STOPPING=1\n"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pgsluice-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::to(&format!("@{name}")).unwrap().ready();
        assert_eq!(recv(&socket), "READY=1\nSTATUS=serving");
    }

    #[test]
    fn nothing_configured_sends_nothing() {
        let n = Notifier::none();
        assert!(n.target.is_none());
        n.ready();
        assert!(Notifier::to("").is_err());
    }
}
