//! TLS towards clients at login, as PgBouncer 1.25 does it: an SSLRequest
//! answered 'S' and the handshake (or 'N' when client TLS is off or the
//! client is on the Unix socket), direct TLS (PostgreSQL 17's
//! `sslnegotiation=direct`: a ClientHello first, with ALPN `postgresql`),
//! and `client_tls_sslmode = require` (or stricter) refusing plaintext TCP
//! clients. A failed handshake is logged once, with the peer and the
//! reason, and ends only that connection.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tracing::warn;

use super::SessionEnd;
use crate::config::{ALPN, ClientTls, SslMode};
use crate::context::Context;
use crate::protocol::sqlstate;
use crate::transport::{Socket, Stream, TlsStream};

/// The first byte of a TLS handshake record (a startup packet can never
/// start with it: its length would be over 350 MB).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Whether the client's first bytes are a TLS ClientHello (direct TLS).
pub(super) fn is_direct(stream: &Stream, buf: &[u8]) -> bool {
    buf.first() == Some(&HANDSHAKE_RECORD) && !matches!(stream, Stream::Tls(_))
}

/// Client TLS when it applies to this client: on, and the client on TCP
/// (as PgBouncer and PostgreSQL, never on the Unix socket).
fn client_tls(stream: &Stream, ctx: &Context) -> Option<Arc<ClientTls>> {
    let tls = ctx.config().tls.client.clone()?;
    stream.tcp_peer_addr().is_some().then_some(tls)
}

/// Answer an SSLRequest whose packet has been taken from `buf`.
pub(super) async fn answer_ssl_request(
    stream: &mut Stream,
    buf: &BytesMut,
    ctx: &Context,
) -> Result<(), SessionEnd> {
    if matches!(stream, Stream::Tls(_)) {
        return Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "SSLRequest received over TLS",
        ));
    }
    let Some(tls) = client_tls(stream, ctx) else {
        stream.write_all(b"N").await?;
        return Ok(());
    };
    if !buf.is_empty() {
        // Bytes sent before the handshake could be a man in the middle's
        // (CVE-2021-23222): never read them as if they came over TLS.
        return Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "received unencrypted data after SSL request",
        ));
    }
    stream.write_all(b"S").await?;
    upgrade(stream, &tls, &[]).await
}

/// Take a direct TLS connection whose first bytes are in `buf`.
pub(super) async fn direct(
    stream: &mut Stream,
    buf: &mut BytesMut,
    ctx: &Context,
) -> Result<(), SessionEnd> {
    let Some(tls) = client_tls(stream, ctx) else {
        let why =
            "direct TLS connection, but TLS is not enabled for this client (client_tls_sslmode)";
        warn!(peer = %peer(stream), "{why}");
        return Err(SessionEnd::Io(std::io::Error::other(why)));
    };
    let early = std::mem::take(buf);
    upgrade(stream, &tls, &early).await?;
    let Stream::Tls(s) = stream else {
        unreachable!("upgraded")
    };
    if s.alpn().as_deref() != Some(ALPN) {
        return Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "received direct SSL connection request without ALPN protocol negotiation extension",
        ));
    }
    Ok(())
}

/// Refuse a plaintext TCP client when TLS is required.
pub(super) fn check_required(stream: &Stream, ctx: &Context) -> Result<(), SessionEnd> {
    if matches!(stream, Stream::Tls(_)) {
        return Ok(());
    }
    match client_tls(stream, ctx) {
        Some(tls) if tls.mode >= SslMode::Require => Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "SSL required",
        )),
        _ => Ok(()),
    }
}

fn peer(stream: &Stream) -> String {
    stream
        .tcp_peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// Run the server side of the handshake over the client's socket.
async fn upgrade(stream: &mut Stream, tls: &ClientTls, early: &[u8]) -> Result<(), SessionEnd> {
    let peer = peer(stream);
    let Stream::Plain(socket) = std::mem::replace(stream, Stream::Plain(Socket::Moving)) else {
        return Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "TLS requested on a stream that cannot carry it",
        ));
    };
    // Boxed: the handshake's state (the rustls connection, ~1 kB) would
    // otherwise size every client's login future, TLS or not (S6: +1 kB
    // of RSS per idle plaintext client).
    let accept = Box::pin(TlsStream::accept(
        socket,
        tls.config.clone(),
        &tls.end_point,
        early,
    ));
    match accept.await {
        Ok(s) => {
            *stream = Stream::Tls(Box::new(s));
            Ok(())
        }
        Err(e) => {
            warn!(%peer, "client TLS handshake failed: {e}");
            Err(SessionEnd::Io(e))
        }
    }
}
