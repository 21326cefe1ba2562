//! TLS over a [`Socket`], with rustls, for both legs (pgsluice accepts TLS
//! from clients and speaks it to PostgreSQL).
//!
//! Hand-written over `rustls::Connection` rather than tokio-rustls's
//! stream because the session needs three things that stream does not
//! give: two halves used at once by the two directions of the relay in one
//! task without a lock that can contend (here a parking_lot mutex that
//! only one direction can hold at a time, never across a wait); readiness
//! that counts decrypted bytes waiting in the connection, so a session never
//! sleeps on its socket while a request waits in rustls; and taking the
//! socket off the reactor with the TLS state kept, for parking and moving
//! between shards.
//!
//! Writes: plaintext is encrypted into rustls's buffer and written to the
//! socket at once; what the socket does not take waits in rustls and goes
//! before the next write is accepted, on flush, or on the next read of
//! either half (which also registers for the socket's write readiness), so
//! nothing waits unsent while the session waits for its peer.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};

use parking_lot::Mutex;
use rustls::Connection;
use rustls::pki_types::ServerName;
use tokio::io::ReadBuf;

use super::socket::Socket;

/// TLS handshakes made by this process, for `/metrics`: towards clients
/// and towards servers, done and failed.
pub struct Handshakes {
    /// Client leg, done.
    pub client_ok: AtomicU64,
    /// Client leg, failed.
    pub client_failed: AtomicU64,
    /// Server leg, done.
    pub server_ok: AtomicU64,
    /// Server leg, failed.
    pub server_failed: AtomicU64,
}

/// The process's handshake counts (a process runs one pooler).
pub static HANDSHAKES: Handshakes = Handshakes {
    client_ok: AtomicU64::new(0),
    client_failed: AtomicU64::new(0),
    server_ok: AtomicU64::new(0),
    server_failed: AtomicU64::new(0),
};

fn count<T>(r: &io::Result<T>, ok: &AtomicU64, failed: &AtomicU64) {
    let c = if r.is_ok() { ok } else { failed };
    c.fetch_add(1, Relaxed);
}

/// A TLS connection over a socket.
pub struct TlsStream {
    socket: Socket,
    conn: Mutex<Connection>,
    /// `tls-server-end-point` channel binding data (the hash of the
    /// server's certificate: ours towards clients, PostgreSQL's towards
    /// servers); empty when it cannot be computed.
    binding: Box<[u8]>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// The socket as `std::io` for rustls: reads and writes that never wait.
struct Io<'a>(&'a Socket);

impl io::Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read_drain(buf)
    }
}

impl io::Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What reading the socket into rustls gave.
enum Fill {
    /// Records read and processed.
    Read,
    /// The peer closed its side.
    Eof,
    /// Nothing to read now.
    Blocked,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Read what the socket has into rustls and process it. A TLS error
/// queues an alert, which is sent (best effort) before the error returns.
fn fill(socket: &Socket, conn: &mut Connection) -> io::Result<Fill> {
    match conn.read_tls(&mut Io(socket)) {
        Ok(n) => {
            if let Err(e) = conn.process_new_packets() {
                let _ = conn.write_tls(&mut Io(socket));
                return Err(tls_error(e));
            }
            Ok(if n == 0 { Fill::Eof } else { Fill::Read })
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Fill::Blocked),
        Err(e) => Err(e),
    }
}

/// Write what rustls holds for the peer; pending while the socket is full.
fn flush(socket: &Socket, conn: &mut Connection, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    while conn.wants_write() {
        match conn.write_tls(&mut Io(socket)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready!(socket.poll_write_ready(cx))?;
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// Decrypted bytes rustls holds into `out` (as many as fit; none are
/// decrypted here: [`fill`] does that once per socket read). Some(n), n >
/// 0; Some(0) at the end of the stream (close_notify, or the peer closed
/// without one: libpq does, at exit); None when none are held yet.
///
/// Through `BufRead` on rustls's reader: its chunks are copied straight
/// into `out`, with no asking how much is there first (each
/// `process_new_packets` costs ~150 instructions) and no zeroing of a
/// read buffer (a whole 16 kB buffer zeroed per read was a third of the
/// instructions of a TLS transaction).
fn take_plaintext(conn: &mut Connection, out: &mut ReadBuf<'_>) -> io::Result<Option<usize>> {
    drain(conn, |chunk| {
        let n = chunk.len().min(out.remaining());
        out.put_slice(&chunk[..n]);
        (n, out.remaining() > 0)
    })
}

/// [`take_plaintext`] appending to `buf` (all rustls holds).
fn take_into(conn: &mut Connection, buf: &mut bytes::BytesMut) -> io::Result<Option<usize>> {
    drain(conn, |chunk| {
        buf.extend_from_slice(chunk);
        (chunk.len(), true)
    })
}

/// Hand rustls's decrypted chunks to `put`, which says how many bytes it
/// took and whether it takes more; the result as [`take_plaintext`]'s.
fn drain(
    conn: &mut Connection,
    mut put: impl FnMut(&[u8]) -> (usize, bool),
) -> io::Result<Option<usize>> {
    let mut reader = conn.reader();
    let mut total = 0;
    loop {
        let (n, more) = match io::BufRead::fill_buf(&mut reader) {
            Ok([]) => return Ok(Some(total)),
            Ok(chunk) => put(chunk),
            Err(e) => {
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok((total > 0).then_some(total)),
                    io::ErrorKind::UnexpectedEof => Ok(Some(total)),
                    _ => Err(e),
                };
            }
        };
        io::BufRead::consume(&mut reader, n);
        total += n;
        if !more {
            return Ok(Some(total));
        }
    }
}

/// Whether rustls holds decrypted bytes, or has seen the end of the
/// stream (or an error): a read would not wait.
fn holds_plaintext(conn: &mut Connection) -> bool {
    match io::BufRead::fill_buf(&mut conn.reader()) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

fn poll_read(
    socket: &Socket,
    conn: &Mutex<Connection>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    let conn = &mut *conn.lock();
    // Sends what earlier writes left (registering for write readiness when
    // the socket is full); a failure shows on the read.
    let _ = flush(socket, conn, cx);
    loop {
        if take_plaintext(conn, buf)?.is_some() {
            return Poll::Ready(Ok(()));
        }
        match fill(socket, conn)? {
            Fill::Read | Fill::Eof => {}
            Fill::Blocked => ready!(socket.poll_read_ready(cx))?,
        }
    }
}

fn poll_write(
    socket: &Socket,
    conn: &Mutex<Connection>,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    let conn = &mut *conn.lock();
    ready!(flush(socket, conn, cx))?;
    let n = io::Write::write(&mut conn.writer(), data)?;
    // What the socket does not take now goes before the next write, on
    // flush, or on the next read (see the module comment).
    if let Poll::Ready(Err(e)) = flush(socket, conn, cx) {
        return Poll::Ready(Err(e));
    }
    Poll::Ready(Ok(n))
}

impl TlsStream {
    /// Accept a client's TLS handshake on `socket`; `early` holds bytes of
    /// it already read (direct TLS: the ClientHello's start).
    /// `binding`: our certificate's channel binding data.
    pub(crate) async fn accept(
        socket: Socket,
        config: Arc<rustls::ServerConfig>,
        binding: &[u8],
        mut early: &[u8],
    ) -> io::Result<TlsStream> {
        let mut conn = rustls::ServerConnection::new(config).map_err(tls_error)?;
        while !early.is_empty() {
            conn.read_tls(&mut early)?;
            conn.process_new_packets().map_err(tls_error)?;
        }
        let h = &HANDSHAKES;
        let mut s = Self::handshake(
            socket,
            Connection::Server(conn),
            &h.client_ok,
            &h.client_failed,
        )
        .await?;
        s.binding = binding.into();
        Ok(s)
    }

    /// Open TLS to a server on `socket`, checking its certificate for
    /// `host` as the configuration says.
    pub(crate) async fn connect(
        socket: Socket,
        config: Arc<rustls::ClientConfig>,
        host: &str,
    ) -> io::Result<TlsStream> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = rustls::ClientConnection::new(config, name).map_err(tls_error)?;
        let h = &HANDSHAKES;
        let mut s = Self::handshake(
            socket,
            Connection::Client(conn),
            &h.server_ok,
            &h.server_failed,
        )
        .await?;
        let leaf = s
            .conn
            .get_mut()
            .peer_certificates()
            .and_then(|c| c.first().cloned());
        s.binding = leaf
            .and_then(|c| crate::auth::scram::binding::end_point(&c))
            .unwrap_or_default()
            .into();
        Ok(s)
    }

    /// Drive the handshake, counting it in `ok` or `failed` while the
    /// socket is still open (a peer that saw it close sees it counted).
    async fn handshake(
        socket: Socket,
        conn: Connection,
        ok: &AtomicU64,
        failed: &AtomicU64,
    ) -> io::Result<TlsStream> {
        let s = TlsStream {
            socket,
            conn: Mutex::new(conn),
            binding: Box::default(),
        };
        let r = std::future::poll_fn(|cx| s.poll_handshake(cx)).await;
        count(&r, ok, failed);
        r?;
        Ok(s)
    }

    fn poll_handshake(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = &mut *self.conn.lock();
        loop {
            ready!(flush(&self.socket, conn, cx))?;
            if !conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match fill(&self.socket, conn)? {
                Fill::Read => {}
                Fill::Eof => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the connection during the TLS handshake",
                    )));
                }
                Fill::Blocked => ready!(self.socket.poll_read_ready(cx))?,
            }
        }
    }

    /// The socket under it.
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The socket under it, to detach or move.
    pub(crate) fn socket_mut(&mut self) -> &mut Socket {
        &mut self.socket
    }

    /// Split into halves for the two directions of a link.
    pub(crate) fn split(&self) -> (TlsHalf<'_>, TlsHalf<'_>) {
        (TlsHalf(self), TlsHalf(self))
    }

    /// Decrypted bytes waiting, or the peer's close seen.
    pub(crate) fn buffered(&self) -> bool {
        holds_plaintext(&mut self.conn.lock())
    }

    /// Ready when decrypted bytes wait, or else when the socket is readable.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buffered() {
            return Poll::Ready(Ok(()));
        }
        self.socket.poll_read_ready(cx)
    }

    /// Decrypted bytes into `buf` without waiting; `WouldBlock` when none.
    pub(crate) fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        let conn = self.conn.get_mut();
        loop {
            if let Some(n) = take_into(conn, buf)? {
                return Ok(n);
            }
            match fill(&self.socket, conn)? {
                Fill::Read | Fill::Eof => {}
                Fill::Blocked => return Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    /// Encrypt `data` and write what the socket takes now (a Terminate on
    /// the way out).
    pub(crate) fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        let conn = &mut *self.conn.lock();
        let n = io::Write::write(&mut conn.writer(), data)?;
        while conn.wants_write() {
            conn.write_tls(&mut Io(&self.socket))?;
        }
        Ok(n)
    }

    /// Whether the peer closed or sent something unasked (an idle server's
    /// check before reuse).
    pub(crate) fn has_pending_input(&self) -> bool {
        let conn = &mut *self.conn.lock();
        loop {
            match fill(&self.socket, conn) {
                Ok(Fill::Read) => {}
                Ok(Fill::Eof) | Err(_) => return true,
                Ok(Fill::Blocked) => break,
            }
        }
        holds_plaintext(conn)
    }

    /// What SHOW CLIENTS / SHOW SERVERS print in `tls`, as PgBouncer:
    /// `TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=X25519`.
    pub fn info(&self) -> String {
        let conn = self.conn.lock();
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "-",
        };
        let suite = conn
            .negotiated_cipher_suite()
            .map(|s| openssl_name(s.suite()))
            .unwrap_or("-");
        match conn.negotiated_key_exchange_group() {
            Some(g) => format!("{version}/{suite}/ECDH={}", group_name(g.name())),
            None => format!("{version}/{suite}"),
        }
    }

    /// The peer's certificate chain, leaf first (a client's, when it sent
    /// one; a server's).
    pub fn peer_certificates(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.conn
            .lock()
            .peer_certificates()
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    /// `tls-server-end-point` channel binding data of this connection
    /// (empty when unknown).
    pub fn channel_binding(&self) -> &[u8] {
        &self.binding
    }

    /// The ALPN protocol agreed on.
    pub(crate) fn alpn(&self) -> Option<Vec<u8>> {
        self.conn.lock().alpn_protocol().map(<[u8]>::to_vec)
    }

    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read(&self.socket, &self.conn, cx, buf)
    }

    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_write(&self.socket, &self.conn, cx, data)
    }

    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        flush(&self.socket, &mut self.conn.lock(), cx)
    }

    /// Send close_notify and what is pending.
    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = &mut *self.conn.lock();
        conn.send_close_notify();
        flush(&self.socket, conn, cx)
    }
}

/// One direction's view of a [`TlsStream`] (both halves are alike: each
/// reads and writes, the relay uses one for each). One pointer, as a bare
/// socket's half is: the relay's futures hold four halves.
#[derive(Clone, Copy)]
pub struct TlsHalf<'a>(&'a TlsStream);

impl TlsHalf<'_> {
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buf)
    }

    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.0.poll_write(cx, data)
    }

    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_flush(cx)
    }
}

/// OpenSSL's name of a cipher suite (what PgBouncer prints); TLS 1.3
/// suites have the IANA name in both.
fn openssl_name(suite: rustls::CipherSuite) -> &'static str {
    use rustls::CipherSuite as C;
    match suite {
        C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        _ => "-",
    }
}

/// OpenSSL's short name of a key exchange group.
fn group_name(group: rustls::NamedGroup) -> String {
    use rustls::NamedGroup as G;
    match group {
        G::X25519 => "X25519".into(),
        G::secp256r1 => "prime256v1".into(),
        G::secp384r1 => "secp384r1".into(),
        G::secp521r1 => "secp521r1".into(),
        G::X25519MLKEM768 => "X25519MLKEM768".into(),
        other => format!("{other:?}"),
    }
}
