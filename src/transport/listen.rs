//! Binding the listening sockets: TCP on every listen_addr (with `*` for
//! all IPv4 and IPv6 addresses) and the Unix socket `.s.PGSQL.<port>` in
//! unix_socket_dir. Done before the pooler starts, so that a bad address or
//! a port in use is reported at once.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, Socket, Type};

use crate::config::General;

/// Bound listening sockets, not yet accepting.
#[derive(Debug)]
pub struct Listeners {
    /// TCP listeners: for each address, one socket per shard (sharing the
    /// port with SO_REUSEPORT), or one socket that every shard accepts on.
    pub tcp: Vec<Vec<std::net::TcpListener>>,
    /// The Unix listener and its path.
    pub unix: Option<(std::os::unix::net::UnixListener, PathBuf)>,
    /// The Prometheus endpoint (`metrics_listen_addr`), if set.
    pub metrics: Option<std::net::TcpListener>,
}

/// Bind everything `general` asks for, one TCP socket per address.
pub fn bind(general: &General) -> io::Result<Listeners> {
    bind_sharded(general, 1)
}

/// Bind everything `general` asks for, with `shards` TCP sockets per
/// address when `shards > 1`: each shard accepts on its own socket, and
/// the kernel spreads connections over them, where one shared socket
/// would wake every shard for each connection (`crate::runtime::shard`).
///
/// SO_REUSEPORT would also let a second pooler started on the same port
/// join silently; a plain bind of the port first makes that fail with
/// "address in use", as it does with PgBouncer.
pub fn bind_sharded(general: &General, shards: usize) -> io::Result<Listeners> {
    let mut tcp = Vec::new();
    let mut port = general.listen_port;
    for addr in listen_addrs(general)? {
        let addr = SocketAddr::new(addr.ip(), port);
        // so_reuseport = 1: other processes (pgsluice or PgBouncer) may
        // listen on this port too, and the kernel spreads connections over
        // all of them (peering forwards cancel requests between them).
        let shared = general.so_reuseport;
        let group = if shards > 1 || shared {
            if port != 0 && !shared {
                drop(plain_bind(addr)?);
            }
            let first = bind_tcp(addr, general.listen_backlog, true)?;
            let addr = first.local_addr()?;
            let mut group = vec![first];
            for _ in 1..shards {
                group.push(bind_tcp(addr, general.listen_backlog, true)?);
            }
            group
        } else {
            vec![bind_tcp(addr, general.listen_backlog, false)?]
        };
        if port == 0 {
            // An ephemeral port: every other address (and the socket) uses it too.
            port = group[0].local_addr()?.port();
        }
        tcp.push(group);
    }
    let unix = if general.unix_socket_dir.is_empty() {
        None
    } else {
        let path = Path::new(&general.unix_socket_dir).join(format!(".s.PGSQL.{port}"));
        Some((bind_unix(&path, general.unix_socket_mode)?, path))
    };
    let metrics = match &general.metrics_listen_addr {
        Some(a) => Some(bind_tcp(metrics_addr(a)?, general.listen_backlog, false)?),
        None => None,
    };
    Ok(Listeners { tcp, unix, metrics })
}

/// `host:port` (`*` = every IPv4 address) resolved to its first address.
fn metrics_addr(a: &str) -> io::Result<SocketAddr> {
    let wildcard = a.strip_prefix("*:").map(|port| format!("0.0.0.0:{port}"));
    let text = wildcard.as_deref().unwrap_or(a);
    let cannot = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot resolve metrics_listen_addr {a}: {why}"),
        )
    };
    text.to_socket_addrs()
        .map_err(|e| cannot(e.to_string()))?
        .next()
        .ok_or_else(|| cannot("no address".into()))
}

fn listen_addrs(general: &General) -> io::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for a in &general.listen_addr {
        if a == "*" {
            out.push(SocketAddr::from(([0, 0, 0, 0], 0)));
            out.push(SocketAddr::from(([0u16; 8], 0)));
            continue;
        }
        let host = a.trim_start_matches('[').trim_end_matches(']');
        let resolved = (host, 0).to_socket_addrs().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot resolve listen_addr {a}: {e}"))
        })?;
        for r in resolved {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Bind `addr` without SO_REUSEPORT (not listening): fails if anything
/// listens there, a reuse-port group included.
fn plain_bind(addr: SocketAddr) -> io::Result<Socket> {
    let with_addr =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(with_addr)?;
    socket.set_reuse_address(true).map_err(with_addr)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(with_addr)?;
    }
    socket.bind(&addr.into()).map_err(with_addr)?;
    Ok(socket)
}

fn bind_tcp(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let with_addr =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(with_addr)?;
    socket.set_reuse_address(true).map_err(with_addr)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(with_addr)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(with_addr)?;
    }
    socket.bind(&addr.into()).map_err(with_addr)?;
    socket
        .listen(backlog.clamp(1, i32::MAX as u32) as i32)
        .map_err(with_addr)?;
    socket.set_nonblocking(true).map_err(with_addr)?;
    Ok(socket.into())
}

fn bind_unix(path: &Path, mode: u32) -> io::Result<std::os::unix::net::UnixListener> {
    let with_path = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", path.display()),
        )
    };
    if path.exists() {
        // A socket file left by a crashed process is removed; one that
        // still answers belongs to a running pooler or server.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(with_path(io::Error::new(
                io::ErrorKind::AddrInUse,
                "socket is in use by another process",
            )));
        }
        std::fs::remove_file(path).map_err(with_path)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(with_path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(with_path)?;
    listener.set_nonblocking(true).map_err(with_path)?;
    Ok(listener)
}
