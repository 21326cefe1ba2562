//! PgBouncer's TCP keys, applied to every TCP socket of both legs (client
//! connections as they are accepted, server connections as they connect),
//! as PgBouncer's `tune_socket` does: `tcp_keepalive`, `tcp_keepidle`,
//! `tcp_keepintvl`, `tcp_keepcnt` (seconds and a count; 0 keeps the
//! kernel's default), `tcp_user_timeout` (milliseconds; 0 keeps the
//! kernel's). `tcp_socket_buffer` is not applied yet (see
//! `config::keys::NOT_YET_IMPLEMENTED`). A peer that vanished without a
//! FIN or RST (a host powered off, a network that drops everything) is then found
//! dead by the kernel, and the session or server is closed instead of
//! waiting forever. Unix-domain sockets take none of them.
//!
//! Values take effect for sockets made after a RELOAD; sockets already
//! open keep theirs (as in PgBouncer).

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

/// The TCP options of the `[pgbouncer]` section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// SO_KEEPALIVE.
    pub keepalive: bool,
    /// TCP_KEEPIDLE, seconds (0: the kernel's).
    pub keepidle: u32,
    /// TCP_KEEPINTVL, seconds (0: the kernel's).
    pub keepintvl: u32,
    /// TCP_KEEPCNT (0: the kernel's).
    pub keepcnt: u32,
    /// TCP_USER_TIMEOUT, milliseconds (0: the kernel's).
    pub user_timeout_ms: u32,
}

impl TcpOptions {
    /// From the `[pgbouncer]` section.
    pub fn from_general(g: &crate::config::General) -> TcpOptions {
        TcpOptions {
            keepalive: g.tcp_keepalive,
            keepidle: g.tcp_keepidle,
            keepintvl: g.tcp_keepintvl,
            keepcnt: g.tcp_keepcnt,
            user_timeout_ms: g.tcp_user_timeout,
        }
    }

    /// Set the options on a TCP socket. The keepalive timings are set only
    /// with keepalive on (as PgBouncer).
    pub fn apply(&self, fd: impl AsFd) -> io::Result<()> {
        use rustix::net::sockopt;
        let fd = fd.as_fd();
        sockopt::set_socket_keepalive(fd, self.keepalive)?;
        if self.keepalive {
            if self.keepidle > 0 {
                sockopt::set_tcp_keepidle(fd, Duration::from_secs(self.keepidle.into()))?;
            }
            if self.keepintvl > 0 {
                sockopt::set_tcp_keepintvl(fd, Duration::from_secs(self.keepintvl.into()))?;
            }
            if self.keepcnt > 0 {
                sockopt::set_tcp_keepcnt(fd, self.keepcnt)?;
            }
        }
        if self.user_timeout_ms > 0 {
            sockopt::set_tcp_user_timeout(fd, self.user_timeout_ms)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::sockopt;

    #[tokio::test]
    async fn options_reach_the_socket() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let opts = TcpOptions {
            keepalive: true,
            keepidle: 7,
            keepintvl: 3,
            keepcnt: 4,
            user_timeout_ms: 2500,
        };
        opts.apply(&s).unwrap();
        assert!(sockopt::socket_keepalive(&s).unwrap());
        assert_eq!(sockopt::tcp_keepidle(&s).unwrap(), Duration::from_secs(7));
        assert_eq!(sockopt::tcp_keepintvl(&s).unwrap(), Duration::from_secs(3));
        assert_eq!(sockopt::tcp_keepcnt(&s).unwrap(), 4);
        assert_eq!(sockopt::tcp_user_timeout(&s).unwrap(), 2500);

        // Off: keepalive off, the timings left alone.
        let before = sockopt::tcp_keepidle(&s).unwrap();
        TcpOptions::default().apply(&s).unwrap();
        assert!(!sockopt::socket_keepalive(&s).unwrap());
        assert_eq!(sockopt::tcp_keepidle(&s).unwrap(), before);
    }
}
