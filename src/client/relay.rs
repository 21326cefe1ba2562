//! The relay between a client and its server: the product's heart.
//!
//! Both directions run at once inside the client's task (so neither side can
//! block the other: a client pipelining large requests while the server
//! streams results does not deadlock). Each direction reads a batch, scans
//! message headers (never parsing bodies, except the small ReadyForQuery
//! and ParameterStatus), and forwards the whole scanned prefix with one
//! write straight from the read buffer: no allocation, no copy per message.
//! Large messages are streamed: only their header must be seen.
//!
//! The link ends (server back to the pool) when the server sent
//! ReadyForQuery 'I', every Query/Sync/FunctionCall the client sent has
//! been answered, no extended-protocol message is waiting for its Sync, and
//! no message is half-forwarded in either direction.
//!
//! In statement mode a ReadyForQuery saying 'T' or 'E' ends the link at once
//! (what came before it is forwarded, the ReadyForQuery is not). With
//! query_timeout or idle_transaction_timeout set, a third branch times the
//! link (see `timeouts`); without, it is disabled and costs nothing.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

use bytes::{Buf, BytesMut};
use memchr::memchr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::{ReadHalf, Stream, WriteHalf};
use crate::protocol::frontend::is_frontend_tag;
use crate::protocol::{Header, ProtocolError};
use crate::server::ServerConn;
use crate::server::params::{Params, tracked_name};
use crate::stats::{LinkStats, PoolStats};

use super::timeouts::{Clock, Expired, Limits, Phase, Watch};

/// Read buffers grow in steps of this size (PgBouncer's pkt_buf default).
pub(super) const READ_CHUNK: usize = 4096;

/// State shared by the two directions of one link. Both run in the same
/// task, so the atomics are never contended; they only make the shared
/// borrows `Send`. Decisions are taken only while the other direction is
/// suspended at an await.
struct Link {
    /// ReadyForQuery messages still expected (Query, Sync, FunctionCall sent).
    pending: AtomicU32,
    /// Extended-protocol messages were sent since the last Sync.
    extended: AtomicBool,
    /// The client direction is writing, or is inside a streamed message.
    client_busy: AtomicBool,
    /// The server direction is inside a streamed message.
    server_busy: AtomicBool,
    /// The last ReadyForQuery said 'I'.
    idle: AtomicBool,
    /// ReadyForQuery messages seen on this link (wrapping); tells the
    /// timer that a new request began.
    answered: AtomicU32,
    /// What the link did, for the pool's statistics.
    stats: LinkStats,
}

impl Link {
    /// A new link: the server is idle, nothing is outstanding.
    fn new(stats: LinkStats) -> Link {
        Link {
            pending: AtomicU32::new(0),
            extended: AtomicBool::new(false),
            client_busy: AtomicBool::new(false),
            server_busy: AtomicBool::new(false),
            idle: AtomicBool::new(true),
            answered: AtomicU32::new(0),
            stats,
        }
    }

    /// Where the link is, for the timer.
    fn phase(&self) -> Phase {
        if self.pending.load(Relaxed) > 0
            || self.extended.load(Relaxed)
            || self.client_busy.load(Relaxed)
            || self.server_busy.load(Relaxed)
        {
            Phase::Request
        } else if self.idle.load(Relaxed) {
            Phase::Quiet
        } else {
            Phase::IdleInTransaction
        }
    }

    fn can_release(&self) -> bool {
        self.pending.load(Relaxed) == 0
            && self.idle.load(Relaxed)
            && !self.extended.load(Relaxed)
            && !self.client_busy.load(Relaxed)
            && !self.server_busy.load(Relaxed)
    }
}

/// How a link ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The transaction is over; the server is clean.
    Released,
    /// The client sent Terminate or closed. `clean`: the server can be reused.
    ClientGone { clean: bool },
    /// The client broke the protocol. `clean` as above.
    ClientError { error: ProtocolError, clean: bool },
    /// The server connection failed or closed.
    ServerGone(std::io::Error),
    /// Statement mode: the server went into a transaction block. Everything
    /// before its ReadyForQuery was forwarded; the server is in a transaction.
    TransactionBlock,
    /// A timeout expired; the server is busy or in a transaction.
    /// `midstream`: a server message may be half-forwarded to the client
    /// (so nothing more can be written to it in protocol).
    Expired { what: Expired, midstream: bool },
}

/// How a link is run: the session's settings that the relay acts on.
pub(super) struct Rules<'a> {
    /// track_extra_parameters.
    pub extra_tracked: &'a [String],
    /// Give the server back at the end of each transaction (transaction
    /// and statement mode), not only when the client leaves.
    pub release_when_idle: bool,
    /// Statement mode: a transaction block ends the link.
    pub statement_mode: bool,
    /// max_packet_size.
    pub max_len: u32,
    /// query_timeout and idle_transaction_timeout.
    pub limits: Limits,
    /// Where their deadlines are published (see `timeouts`).
    pub clock: Clock<'a>,
    /// The pool's statistics: the link's figures are added when it ends
    /// (and, when servers are not released per transaction, at each
    /// transaction's end).
    pub stats: &'a PoolStats,
    /// When the link's first request started (after the wait), on the
    /// statistics clock (`stats::clock_ns`).
    pub started: u64,
    /// How long the client waited for the server, µs.
    pub wait_us: u64,
}

enum ClientEnd {
    Terminate,
    Eof,
    Error(ProtocolError),
    ClientIo,
    ServerIo(std::io::Error),
}

enum ServerEnd {
    Released,
    TransactionBlock,
    ServerIo(std::io::Error),
    ClientIo,
}

/// Relay between `client` and `server` until the link ends. `cbuf` holds
/// client bytes not yet forwarded (kept across links); `params` are the
/// client's wanted tracked parameters, updated from ParameterStatus.
pub(super) async fn relay(
    client: &mut Stream,
    cbuf: &mut BytesMut,
    server: &mut ServerConn,
    params: &mut Arc<Params>,
    rules: &Rules<'_>,
) -> Outcome {
    let link = Link::new(LinkStats::new(rules.started, rules.wait_us));
    let ServerConn {
        stream,
        buf: sbuf,
        params: sparams,
        synced,
        ..
    } = server;
    let (cr, cw) = client.split();
    let (sr, sw) = stream.split();
    let up = client_to_server(cr, sw, cbuf, &link, rules.max_len);
    let down = server_to_client(sr, cw, sbuf, &link, (sparams, synced), params, rules);
    // The timer branch exists only when a timeout is set: without, the
    // link runs exactly as if there were no timeouts at all.
    let end = if rules.limits.any() {
        let mut watch = Watch::new(rules.limits);
        let timer = poll_fn(|cx| {
            let answered = link.answered.load(Relaxed);
            watch.poll(link.phase(), answered, rules.clock, cx)
        });
        // Biased, timer last: it sees every phase change the directions
        // made in the same poll.
        let end = tokio::select! {
            biased;
            s = down => Err(Ok(s)),
            c = up => Ok(c),
            t = timer => Err(Err(t)),
        };
        rules.clock.target.set_link_deadline(0);
        end
    } else {
        tokio::select! {
            biased;
            s = down => Err(Ok(s)),
            c = up => Ok(c),
        }
    };
    // Once per link: one batch of relaxed adds to the pool's counters.
    rules.stats.add(&link.stats.finish());
    let clean = || link.can_release() && sbuf.is_empty();
    match end {
        Err(Ok(ServerEnd::Released)) => Outcome::Released,
        Err(Ok(ServerEnd::TransactionBlock)) => Outcome::TransactionBlock,
        Err(Ok(ServerEnd::ServerIo(e))) | Ok(ClientEnd::ServerIo(e)) => Outcome::ServerGone(e),
        Err(Ok(ServerEnd::ClientIo)) => Outcome::ClientGone { clean: false },
        Err(Err(what)) => Outcome::Expired {
            what,
            midstream: link.server_busy.load(Relaxed) || !sbuf.is_empty(),
        },
        Ok(ClientEnd::Terminate | ClientEnd::Eof | ClientEnd::ClientIo) => {
            Outcome::ClientGone { clean: clean() }
        }
        Ok(ClientEnd::Error(error)) => Outcome::ClientError {
            error,
            clean: clean(),
        },
    }
}

fn reserve_for_read(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

async fn client_to_server(
    mut cr: ReadHalf<'_>,
    mut sw: WriteHalf<'_>,
    cbuf: &mut BytesMut,
    link: &Link,
    max_len: u32,
) -> ClientEnd {
    let mut skip = 0usize;
    let mut syncs_since_exec = 0u32;
    loop {
        if !cbuf.is_empty() {
            let batch = match scan_client(cbuf, &mut skip, &mut syncs_since_exec, max_len) {
                Ok(b) => b,
                Err(e) => return ClientEnd::Error(e),
            };
            if batch.answers > 0 {
                link.pending.fetch_add(batch.answers, Relaxed);
            }
            if batch.ignored > 0 {
                // Syncs sent during a COPY FROM STDIN get no ReadyForQuery.
                let left = link.pending.load(Relaxed).saturating_sub(batch.ignored);
                link.pending.store(left, Relaxed);
            }
            if let Some(ext) = batch.extended {
                link.extended.store(ext, Relaxed);
            }
            if batch.forward > 0 {
                link.stats
                    .client_sent(batch.forward, batch.parses, batch.binds);
                link.client_busy.store(true, Relaxed);
                if let Err(e) = sw.write_all(&cbuf[..batch.forward]).await {
                    return ClientEnd::ServerIo(e);
                }
                cbuf.advance(batch.forward);
            }
            link.client_busy.store(skip > 0, Relaxed);
            if batch.terminate {
                return ClientEnd::Terminate;
            }
        }
        reserve_for_read(cbuf);
        match cr.read_buf(cbuf).await {
            Ok(0) => return ClientEnd::Eof,
            Ok(_) => {}
            Err(_) => return ClientEnd::ClientIo,
        }
    }
}

async fn server_to_client(
    mut sr: ReadHalf<'_>,
    mut cw: WriteHalf<'_>,
    sbuf: &mut BytesMut,
    link: &Link,
    (server_params, synced): (&mut Params, &mut Option<Arc<Params>>),
    client_params: &mut Arc<Params>,
    rules: &Rules<'_>,
) -> ServerEnd {
    let extra_tracked = rules.extra_tracked;
    let mut skip = 0usize;
    loop {
        reserve_for_read(sbuf);
        match sr.read_buf(sbuf).await {
            Ok(0) => return ServerEnd::ServerIo(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) => return ServerEnd::ServerIo(e),
        }
        let batch = scan_server(sbuf, &mut skip, rules.statement_mode, |name, value| {
            server_params.set(name, value);
            *synced = None;
            if tracked_name(name, extra_tracked).is_some() && client_params.get(name) != Some(value)
            {
                // Copy-on-write: the set may be shared with other clients.
                Arc::make_mut(client_params).set(name, value);
            }
        });
        if batch.ready_count > 0 {
            let left = link.pending.load(Relaxed).saturating_sub(batch.ready_count);
            link.pending.store(left, Relaxed);
            link.idle.store(batch.last_status == b'I', Relaxed);
            let seen = link.answered.load(Relaxed);
            link.answered
                .store(seen.wrapping_add(batch.ready_count), Relaxed);
            if left == 0 {
                let idle = batch.last_status == b'I';
                let more = link.extended.load(Relaxed);
                if link.stats.answered(idle, more) && !rules.release_when_idle {
                    // Session mode: a link lasts the session; publish
                    // at each transaction's end.
                    rules.stats.add(&link.stats.take());
                }
            }
        }
        link.server_busy.store(skip > 0, Relaxed);
        if batch.forward > 0 {
            link.stats.server_sent(batch.forward);
            if cw.write_all(&sbuf[..batch.forward]).await.is_err() {
                return ServerEnd::ClientIo;
            }
            sbuf.advance(batch.forward);
        }
        if batch.transaction_block {
            return ServerEnd::TransactionBlock;
        }
        if rules.release_when_idle && sbuf.is_empty() && link.can_release() {
            return ServerEnd::Released;
        }
    }
}

/// What a scan of client bytes found.
#[derive(Debug, Default, PartialEq, Eq)]
struct ClientBatch {
    /// Bytes that can be forwarded now.
    forward: usize,
    /// ReadyForQuery messages these bytes will cause.
    answers: u32,
    /// Some(true) if the last extended-protocol message is not yet followed
    /// by a Sync, Some(false) if a Sync came last, None if neither was seen.
    extended: Option<bool>,
    /// A Terminate follows the forwarded bytes (and is not forwarded).
    terminate: bool,
    /// Parse messages among them.
    parses: u32,
    /// Bind messages among them.
    binds: u32,
    /// Syncs counted in `answers` (now or in earlier batches) that the
    /// server ignores: those sent between the Execute that started a COPY
    /// FROM STDIN and its CopyDone/CopyFail (PostgreSQL ignores Sync and
    /// Flush in copy-in mode; drivers such as tokio-postgres send one right
    /// after the Execute, and another after CopyDone).
    ignored: u32,
}

/// Pass over the rest of a streamed message: up to `avail` of the `skip`
/// bytes still to forward. Returns how many were taken.
#[inline]
fn take_skip(skip: &mut usize, avail: usize) -> usize {
    let n = (*skip).min(avail);
    *skip -= n;
    n
}

/// Scan client bytes. `skip` carries the unforwarded rest of a streamed
/// message across calls. Every header is checked before anything of its
/// message is forwarded.
/// `since_exec` carries the Syncs sent since the last Execute or Query
/// across calls (see `ClientBatch::ignored`).
fn scan_client(
    buf: &[u8],
    skip: &mut usize,
    since_exec: &mut u32,
    max_len: u32,
) -> Result<ClientBatch, ProtocolError> {
    let mut b = ClientBatch::default();
    let mut pos = 0;
    while pos < buf.len() {
        if *skip > 0 {
            pos += take_skip(skip, buf.len() - pos);
            continue;
        }
        let Some(h) = Header::parse(&buf[pos..]) else {
            break;
        };
        if !is_frontend_tag(h.tag) {
            return Err(ProtocolError::UnknownTag(h.tag));
        }
        h.check(max_len)?;
        match h.tag {
            b'X' => {
                b.terminate = true;
                break;
            }
            b'Q' => {
                b.answers += 1;
                *since_exec = 0;
            }
            b'F' => b.answers += 1,
            b'S' => {
                b.answers += 1;
                *since_exec += 1;
                b.extended = Some(false);
            }
            b'c' | b'f' => {
                b.ignored += std::mem::take(since_exec);
            }
            b'E' => {
                *since_exec = 0;
                b.extended = Some(true);
            }
            b'P' => {
                b.parses += 1;
                b.extended = Some(true);
            }
            b'B' => {
                b.binds += 1;
                b.extended = Some(true);
            }
            b'D' | b'C' | b'H' => b.extended = Some(true),
            _ => {}
        }
        let avail = buf.len() - pos;
        if avail >= h.total() {
            pos += h.total();
        } else {
            *skip = h.total() - avail;
            pos = buf.len();
        }
    }
    b.forward = pos;
    Ok(b)
}

/// What a scan of server bytes found.
#[derive(Debug, Default, PartialEq, Eq)]
struct ServerBatch {
    /// Bytes that can be forwarded now.
    forward: usize,
    /// ReadyForQuery messages among them.
    ready_count: u32,
    /// Status of the last of them.
    last_status: u8,
    /// A ReadyForQuery 'T' or 'E' came when told to stop at one; `forward`
    /// ends before it.
    transaction_block: bool,
}

/// Scan server bytes. ReadyForQuery and ParameterStatus are inspected (and
/// so must be whole before they are forwarded); everything else streams.
/// With `stop_in_transaction` (statement mode), the scan stops before a
/// ReadyForQuery that is not 'I'.
fn scan_server(
    buf: &[u8],
    skip: &mut usize,
    stop_in_transaction: bool,
    mut on_param: impl FnMut(&str, &str),
) -> ServerBatch {
    let mut b = ServerBatch::default();
    let mut pos = 0;
    while pos < buf.len() {
        if *skip > 0 {
            pos += take_skip(skip, buf.len() - pos);
            continue;
        }
        let Some(h) = Header::parse(&buf[pos..]) else {
            break;
        };
        let total = h.total().max(5);
        let avail = buf.len() - pos;
        match h.tag {
            b'Z' | b'S' if avail < total => break,
            b'Z' => {
                let status = buf.get(pos + 5).copied().unwrap_or(b'E');
                if stop_in_transaction && status != b'I' {
                    b.transaction_block = true;
                    break;
                }
                b.ready_count += 1;
                b.last_status = status;
            }
            b'S' => {
                if let Some((name, value)) = parameter_status(&buf[pos + 5..pos + total]) {
                    on_param(name, value);
                }
            }
            _ => {}
        }
        if avail >= total {
            pos += total;
        } else {
            *skip = total - avail;
            pos = buf.len();
        }
    }
    b.forward = pos;
    b
}

fn parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let n = memchr(0, body)?;
    let rest = &body[n + 1..];
    let v = memchr(0, rest)?;
    Some((
        std::str::from_utf8(&body[..n]).ok()?,
        std::str::from_utf8(&rest[..v]).ok()?,
    ))
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
