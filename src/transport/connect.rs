//! Connecting to where a server listens (a `config::Endpoint`), and TLS
//! towards it as `server_tls_sslmode` says: an SSLRequest first; on 'S'
//! the handshake, with the certificate checked as the mode says; on 'N'
//! plaintext for `allow`/`prefer`, an error for `require` and stricter.
//! PostgreSQL's Unix sockets never carry TLS (as in libpq and PgBouncer).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Stream, TlsStream};
use crate::config::{Endpoint, ServerTls, SslMode};

/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Open a stream to `endpoint` (TCP with TCP_NODELAY: the pooler writes
/// whole batches).
pub async fn connect(endpoint: &Endpoint) -> io::Result<Stream> {
    match endpoint {
        Endpoint::Tcp { host, port } => {
            // Resolved first, so that a name that does not resolve says so
            // (PgBouncer's words); then each address in turn.
            let addrs = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("server DNS lookup failed: {e}")))?;
            let mut last = io::Error::new(
                io::ErrorKind::NotFound,
                "server DNS lookup failed: no address",
            );
            for addr in addrs {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(s) => {
                        s.set_nodelay(true)?;
                        return Ok(Stream::from(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Endpoint::Unix { dir, port } => {
            let path = Endpoint::socket_path(dir, *port);
            Ok(Stream::from(tokio::net::UnixStream::connect(path).await?))
        }
    }
}

/// Open a stream to `endpoint` with TLS as `tls` says (None: plaintext).
/// A TLS failure is an error whose text says what failed ("server refused
/// SSL", "certificate verify failed: ...").
pub async fn connect_tls(endpoint: &Endpoint, tls: Option<&ServerTls>) -> io::Result<Stream> {
    let mut stream = connect(endpoint).await?;
    let (Some(tls), Endpoint::Tcp { host, .. }) = (tls, endpoint) else {
        return Ok(stream);
    };
    stream.write_all(&SSL_REQUEST).await?;
    // One byte exactly: anything the server sends after it must come
    // through TLS (CVE-2021-23222).
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {
            let Stream::Plain(socket) = stream else {
                unreachable!("a new connection is a bare socket")
            };
            // Boxed: the handshake's state (a rustls connection) would
            // otherwise size every future that may connect (a client's
            // login forwards cancel requests).
            let s = Box::pin(TlsStream::connect(socket, tls.config.clone(), host))
                .await
                .map_err(handshake_error)?;
            Ok(Stream::Tls(Box::new(s)))
        }
        b'N' if tls.mode >= SslMode::Require => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "server refused SSL (server_tls_sslmode requires it)",
        )),
        b'N' => Ok(stream),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad answer to SSLRequest: {:?}", other as char),
        )),
    }
}

/// Name a failed certificate check as OpenSSL does ("certificate verify
/// failed"), so that logs read the same as PgBouncer's.
fn handshake_error(e: io::Error) -> io::Error {
    let bad_cert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if bad_cert {
        io::Error::new(
            e.kind(),
            format!("TLS handshake failed: certificate verify failed: {e}"),
        )
    } else {
        io::Error::new(e.kind(), format!("TLS handshake failed: {e}"))
    }
}
