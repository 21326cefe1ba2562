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
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::protocol::ProtocolError;
use crate::transport::{ReadHalf, Stream, WriteHalf};
use parking_lot::Mutex;

use super::prepared::{ClientPrepared, OFF, TRACKED, Tracking, rewrite};
use super::refusal::refused_read_only;
use crate::server::ServerConn;
use crate::server::params::{Params, tracked_name};
use crate::stats::{LinkStats, PoolStats};

use super::scan::{ClientBatch, Pass, ServerMessages, Verdict, scan_client, scan_server};
use super::timeouts::{Clock, Expired, Limits, Phase, Watch};

/// `Link::flags`: a standby refused the bounded unit with 25006 and the
/// refusal was dropped before its ReadyForQuery came: drop that too, then
/// stop.
const REFUSED: u8 = 1;
/// `Link::flags`: the client sent CopyData on this link.
const COPIED: u8 = 2;

/// No `Rules::bound` on a link (a bound is shorter: `MAX_BOUND`).
const UNBOUNDED: u16 = u16::MAX;

/// The longest unit a link can be bounded to (u16: the link's state is
/// part of every request's future, which must stay under glibc's tcache
/// limit; see the size test in `session`).
const MAX_BOUND: usize = UNBOUNDED as usize - 1;

/// Read buffers grow in steps of this size (PgBouncer's pkt_buf default).
pub(super) const READ_CHUNK: usize = 4096;

/// State shared by the two directions of one link. Both run in the same
/// task, so the atomics are never contended; they only make the shared
/// borrows `Send`. Decisions are taken only while the other direction is
/// suspended at an await.
struct Link<'t> {
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
    /// Prepared-statement mode (`prepared::OFF`, `WATCH`, `TRACKED`).
    prepared: AtomicU8,
    /// Bytes of a bounded unit still to send (`Rules::bound`; 0: sent,
    /// waiting for its answer), or UNBOUNDED.
    bound: AtomicU16,
    /// `REFUSED` and `COPIED` (one byte for both: the link is part of
    /// every request's future, see the size test in `session`).
    flags: AtomicU8,
    /// Prepared-statement state, when max_prepared_statements is on (here
    /// rather than a parameter of each direction: their futures are kept
    /// small).
    tracking: Option<Mutex<Tracking<'t>>>,
}

impl<'t> Link<'t> {
    /// A new link: the server is idle, nothing is outstanding.
    fn new(stats: LinkStats) -> Link<'t> {
        Link {
            pending: AtomicU32::new(0),
            extended: AtomicBool::new(false),
            client_busy: AtomicBool::new(false),
            server_busy: AtomicBool::new(false),
            idle: AtomicBool::new(true),
            answered: AtomicU32::new(0),
            stats,
            prepared: AtomicU8::new(OFF),
            bound: AtomicU16::new(UNBOUNDED),
            flags: AtomicU8::new(0),
            tracking: None,
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

    /// What a batch of client messages sent means for the answers: `answers`
    /// more ReadyForQuery expected, `ignored` Syncs counted before that get
    /// none (sent during a COPY FROM STDIN, see `ClientBatch::ignored`),
    /// and whether an extended-protocol group is open after it.
    fn expect(&self, answers: u32, ignored: u32, extended: Option<bool>) {
        if answers > 0 {
            self.pending.fetch_add(answers, Relaxed);
        }
        if ignored > 0 {
            let left = self.pending.load(Relaxed).saturating_sub(ignored);
            self.pending.store(left, Relaxed);
        }
        if let Some(ext) = extended {
            self.extended.store(ext, Relaxed);
        }
    }

    /// Set a flag (`REFUSED`, `COPIED`): one task runs both directions,
    /// so no read-modify-write atomic is needed.
    fn set(&self, flag: u8) {
        self.flags.store(self.flags.load(Relaxed) | flag, Relaxed);
    }

    fn has(&self, flag: u8) -> bool {
        self.flags.load(Relaxed) & flag != 0
    }

    /// `n` client bytes were sent: count them off a bounded unit.
    #[inline]
    fn sent_of_unit(&self, n: usize) {
        let left = self.bound.load(Relaxed);
        if left != UNBOUNDED {
            self.bound
                .store(left - n.min(left as usize) as u16, Relaxed);
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
    /// A standby refused the link's bounded unit as a write (SQLSTATE
    /// 25006) before anything of its answer reached the client: nothing
    /// was forwarded, the server is clean, the unit can go to the primary.
    ReadOnlyRefused,
    /// The client sent Terminate or closed. `clean`: the server can be reused.
    ClientGone { clean: bool },
    /// The client broke the protocol. `clean` as above.
    ClientError { error: ProtocolError, clean: bool },
    /// The server connection failed or closed. `owed`: the client can be
    /// told with an ERROR and keep its connection (see [`Owed`]); None: the
    /// session must end.
    ServerGone {
        error: std::io::Error,
        owed: Option<Owed>,
    },
    /// Statement mode: the server went into a transaction block. Everything
    /// before its ReadyForQuery was forwarded; the server is in a transaction.
    TransactionBlock,
    /// A timeout expired; the server is busy or in a transaction.
    /// `midstream`: a server message may be half-forwarded to the client
    /// (so nothing more can be written to it in protocol).
    Expired { what: Expired, midstream: bool },
}

/// What a client whose server was lost is owed, when it can keep its
/// connection: transaction or statement mode, the client had last been
/// told 'I' (no transaction block of its own was lost: it cannot take
/// later statements for part of one), no message half-sent either way, no
/// COPY FROM STDIN under way. The server's transaction is gone, so each
/// request still unanswered fails, as PostgreSQL would fail it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owed {
    /// Queries, Syncs and FunctionCalls sent and not answered: an
    /// ErrorResponse and a ReadyForQuery 'I' each.
    pub answers: u32,
    /// Extended-protocol messages were sent since the last Sync: an
    /// ErrorResponse, then the client's messages are skipped up to its
    /// Sync, which gets the ReadyForQuery (PostgreSQL's skip after an error).
    pub open_group: bool,
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
    /// statistics clock (`runtime::clock::clock_ns`).
    pub started: u64,
    /// How long the client waited for the server, µs.
    pub wait_us: u64,
    /// max_prepared_statements where named statements are tracked
    /// (transaction and statement mode), else 0.
    pub max_prepared: u32,
    /// server_fast_close in session mode: the link ends between
    /// transactions once its session is told the database's
    /// configuration changed (`CloseRequest::ConfigChanged`).
    pub fast_close: bool,
    /// Read/write splitting sent this link's first `n` client bytes (one
    /// unit of work) to a standby: nothing after them is sent until they
    /// are answered, and answered idle, the link ends (what the client
    /// pipelined after them is routed on its own). 0: no such bound.
    pub bound: u32,
}

/// Why a link stopped: what one of its directions, or its timer, saw.
enum Stop {
    /// The client sent Terminate, closed its socket, or its socket failed
    /// while being read (the server may still be clean).
    ClientGone,
    /// The client's socket failed while a server message was being
    /// written to it (the server is not clean).
    ClientUnwritable,
    /// The client broke the protocol.
    ClientError(ProtocolError),
    /// The server's socket failed or closed.
    ServerIo(std::io::Error),
    /// The transaction is over: the server can go back.
    Released,
    /// See `Outcome::ReadOnlyRefused`.
    ReadOnlyRefused,
    /// Statement mode: the server went into a transaction block.
    TransactionBlock,
    /// query_timeout or idle_transaction_timeout expired.
    Expired(Expired),
}

/// Relay between `client` and `server` until the link ends. `cbuf` holds
/// client bytes not yet forwarded (kept across links); `params` are the
/// client's wanted tracked parameters, updated from ParameterStatus.
pub(super) async fn relay(
    client: &mut Stream,
    cbuf: &mut BytesMut,
    server: &mut ServerConn,
    params: &mut Arc<Params>,
    prepared: &mut Option<Box<ClientPrepared>>,
    rules: &Rules<'_>,
) -> Outcome {
    let mut link = Link::new(LinkStats::new(rules.started, rules.wait_us));
    if rules.bound > 0 {
        link.bound
            .store(rules.bound.min(MAX_BOUND as u32) as u16, Relaxed);
    }
    let ServerConn {
        stream,
        buf: sbuf,
        params: sparams,
        synced,
        statements,
        ..
    } = server;
    if rules.max_prepared > 0 {
        let mut t = Tracking {
            client: prepared,
            server: statements,
        };
        link.prepared
            .store(t.start(rules.max_prepared as usize), Relaxed);
        link.tracking = Some(Mutex::new(t));
    }
    let (cr, cw) = client.split();
    let (sr, sw) = stream.split();
    // The timer branch exists only when a timeout is set: without, the
    // link runs exactly as if there were no timeouts at all. The timed
    // variant is boxed so that its larger future does not size every link.
    let end = if rules.limits.any() || rules.fast_close {
        let up = client_to_server(cr, sw, cbuf, &link, rules.max_len);
        let down = server_to_client(sr, cw, sbuf, &link, (sparams, synced), params, rules);
        Box::pin(timed(up, down, &link, rules)).await
    } else {
        // Made where they are pinned: a move (into a helper future, or
        // into `pin!` from a local) copies the futures (callgrind: ~90 and
        // ~50 instructions per transaction).
        let mut up = std::pin::pin!(client_to_server(cr, sw, cbuf, &link, rules.max_len));
        let mut down = std::pin::pin!(server_to_client(
            sr,
            cw,
            sbuf,
            &link,
            (sparams, synced),
            params,
            rules
        ));
        let mut first = true;
        poll_fn(move |cx| poll_both(&mut first, up.as_mut(), down.as_mut(), cx)).await
    };
    // Once per link: one batch of relaxed adds to the pool's counters.
    let mut totals = link.stats.finish();
    if let Some(t) = &link.tracking {
        totals.server_parse_count = t.lock().server_parses(totals.client_parse_count);
    }
    rules.stats.add(&totals);
    let clean = || link.can_release() && sbuf.is_empty();
    match end {
        Stop::Released => Outcome::Released,
        Stop::ReadOnlyRefused => Outcome::ReadOnlyRefused,
        Stop::TransactionBlock => Outcome::TransactionBlock,
        Stop::ServerIo(error) => Outcome::ServerGone {
            error,
            owed: owed(&link, rules),
        },
        Stop::ClientUnwritable => Outcome::ClientGone { clean: false },
        Stop::Expired(what) => Outcome::Expired {
            what,
            midstream: link.server_busy.load(Relaxed) || !sbuf.is_empty(),
        },
        Stop::ClientGone => Outcome::ClientGone { clean: clean() },
        Stop::ClientError(error) => Outcome::ClientError {
            error,
            clean: clean(),
        },
    }
}

/// What the client is owed after its server was lost, if it can keep its
/// connection (see [`Owed`]). A tracked client's statements whose Parse was
/// not answered are forgotten, as the server's error would have.
#[cold]
#[inline(never)]
fn owed(link: &Link<'_>, rules: &Rules<'_>) -> Option<Owed> {
    let keep = rules.release_when_idle
        && link.idle.load(Relaxed)
        && !link.client_busy.load(Relaxed)
        && !link.server_busy.load(Relaxed)
        && !link.has(COPIED);
    if !keep {
        return None;
    }
    if let Some(t) = &link.tracking {
        t.lock().abandon();
    }
    Some(Owed {
        answers: link.pending.load(Relaxed),
        open_group: link.extended.load(Relaxed),
    })
}

/// One poll of both directions of a link: ready when one ended. The
/// client direction is polled first once (`first`), so that the request
/// that started the link goes to the server before the server direction's
/// first (empty) read; from then on the server direction goes first (a
/// reply that ends the link is seen before the client direction reads on).
fn poll_both(
    first: &mut bool,
    mut up: Pin<&mut impl Future<Output = Stop>>,
    mut down: Pin<&mut impl Future<Output = Stop>>,
    cx: &mut Context<'_>,
) -> Poll<Stop> {
    let up_first = std::mem::take(first);
    if up_first && let Poll::Ready(c) = up.as_mut().poll(cx) {
        return Poll::Ready(c);
    }
    if let Poll::Ready(s) = down.as_mut().poll(cx) {
        return Poll::Ready(s);
    }
    if up_first {
        return Poll::Pending;
    }
    up.poll(cx)
}

/// Both directions and the timer of a link with query_timeout or
/// idle_transaction_timeout (see `timeouts`).
async fn timed(
    up: impl Future<Output = Stop>,
    down: impl Future<Output = Stop>,
    link: &Link<'_>,
    rules: &Rules<'_>,
) -> Stop {
    let mut watch = Watch::new(rules.limits);
    let timer = poll_fn(|cx| {
        let answered = link.answered.load(Relaxed);
        let idle = link.idle.load(Relaxed);
        let phase = link.phase();
        if rules.fast_close && phase == Phase::Quiet && config_changed(rules.clock) {
            return Poll::Ready(Expired::ConfigChanged);
        }
        watch.poll((phase, answered, idle), rules.clock, cx)
    });
    // Biased, timer last: it sees every phase change the directions made
    // in the same poll.
    let end = tokio::select! {
        biased;
        s = down => s,
        c = up => c,
        t = timer => Stop::Expired(t),
    };
    rules.clock.target.set_link_deadline(0);
    end
}

/// Whether the session was told its database's configuration changed
/// (server_fast_close; its waker is the session's, registered before the
/// request, so the request wakes this link).
fn config_changed(clock: Clock<'_>) -> bool {
    clock.target.closing_reason(clock.epoch) == Some(crate::registry::CloseRequest::ConfigChanged)
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
    link: &Link<'_>,
    max_len: u32,
) -> Stop {
    let tracking = link.tracking.as_ref();
    let mut skip = 0usize;
    let mut syncs_since_exec = 0u32;
    loop {
        if link.bound.load(Relaxed) == 0 {
            // A bounded unit is out (see `Rules::bound`): the rest waits
            // for its answer. Answered idle, the server direction ends the
            // link first (it is polled first); in a transaction (BEGIN READ
            // ONLY), the relay goes on as usual. No waker of its own: the
            // answer wakes the task through the server's socket, and both
            // directions are polled on every wake.
            poll_fn(|_| {
                if link.pending.load(Relaxed) == 0 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            link.bound.store(UNBOUNDED, Relaxed);
        }
        if !cbuf.is_empty() {
            let end = cbuf.len().min(link.bound.load(Relaxed) as usize);
            let view = &cbuf[..end];
            match tracking {
                Some(t) if link.prepared.load(Relaxed) == TRACKED => {
                    // Tracked (see `prepared::rewrite`): the batch,
                    // rewritten, in one write. In this future rather than
                    // a boxed one of its own: a box per link cost ~250
                    // instructions per transaction (callgrind, -M
                    // prepared).
                    let (consumed, terminate, mut out) = match tracked_batch(
                        t,
                        view,
                        (&mut skip, &mut syncs_since_exec),
                        link,
                        max_len,
                    ) {
                        Ok(b) => b,
                        Err(e) => return Stop::ClientError(e),
                    };
                    // What is sent is in `out`: the client's bytes are
                    // done with (advanced before the write, so that only
                    // `out` is kept across it).
                    cbuf.advance(consumed);
                    link.sent_of_unit(consumed);
                    if !out.is_empty() {
                        link.client_busy.store(true, Relaxed);
                        if let Err(e) = sw.write_all(&out).await {
                            return Stop::ServerIo(e);
                        }
                        out.clear();
                    }
                    // Through `tracking`, not the arm's `t`: one
                    // reference fewer kept across the write (see the size
                    // test in `session`).
                    if let Some(t) = tracking
                        && let Some(c) = t.lock().client.as_deref_mut()
                    {
                        c.out = out;
                    }
                    link.client_busy.store(skip > 0, Relaxed);
                    if terminate {
                        return Stop::ClientGone;
                    }
                }
                _ => {
                    let state = (&mut skip, &mut syncs_since_exec);
                    let batch = match plain_batch(view, state, link, max_len) {
                        Ok(b) => b,
                        Err(e) => return Stop::ClientError(e),
                    };
                    if batch.forward > 0 {
                        link.client_busy.store(true, Relaxed);
                        if let Err(e) = sw.write_all(&cbuf[..batch.forward]).await {
                            return Stop::ServerIo(e);
                        }
                        cbuf.advance(batch.forward);
                        link.sent_of_unit(batch.forward);
                    }
                    link.client_busy.store(skip > 0, Relaxed);
                    if batch.terminate {
                        return Stop::ClientGone;
                    }
                    if let (true, Some(t)) = (batch.activate, tracking) {
                        // The client's first group of extended-protocol
                        // messages that names a statement: track it from
                        // there.
                        t.lock().activate(link.pending.load(Relaxed));
                        link.prepared.store(TRACKED, Relaxed);
                        continue;
                    }
                }
            }
        }
        if link.bound.load(Relaxed) == 0 {
            continue;
        }
        reserve_for_read(cbuf);
        match cr.read_buf(cbuf).await {
            Ok(0) => return Stop::ClientGone,
            Ok(_) => {}
            Err(_) => return Stop::ClientGone,
        }
    }
}

/// Scan one batch of an untracked client's messages (forwarded as they
/// are) and count it on the link.
#[inline]
fn plain_batch(
    cbuf: &[u8],
    (skip, since_exec): (&mut usize, &mut u32),
    link: &Link<'_>,
    max_len: u32,
) -> Result<ClientBatch, ProtocolError> {
    let tracking = link.tracking.is_some();
    let in_group = link.extended.load(Relaxed);
    let batch = scan_client(cbuf, skip, since_exec, max_len, (tracking, in_group))?;
    link.expect(batch.answers, batch.ignored, batch.extended);
    if batch.copy_data {
        link.set(COPIED);
    }
    if batch.forward > 0 {
        // Parse and Bind counts are PgBouncer's counts of tracked named
        // statements (max_prepared_statements): an untracked link's
        // (unnamed statements, or tracking off) are not counted.
        link.stats.client_sent(batch.forward, 0, 0);
    }
    Ok(batch)
}

/// Rewrite one batch of a tracked client's messages (see
/// `prepared::rewrite`) and count it on the link: the bytes consumed,
/// whether a Terminate follows, and what to send (the client's output
/// buffer, to be given back).
fn tracked_batch(
    t: &Mutex<Tracking<'_>>,
    cbuf: &[u8],
    (skip, since_exec): (&mut usize, &mut u32),
    link: &Link<'_>,
    max_len: u32,
) -> Result<(usize, bool, BytesMut), ProtocolError> {
    let (step, out) = {
        let mut g = t.lock();
        let Tracking { client, server } = &mut *g;
        let c = client
            .as_deref_mut()
            .expect("a tracked client has its state");
        let step = rewrite::client_batch(c, server, cbuf, (skip, since_exec), max_len)?;
        (step, std::mem::take(&mut c.out))
    };
    link.expect(step.answers, step.ignored, step.extended);
    if step.copy_data {
        link.set(COPIED);
    }
    if step.forward > 0 {
        link.stats
            .client_sent(step.forward, step.parses, step.binds);
    }
    Ok((step.forward, step.terminate, out))
}

/// A tracked or watched link's server messages go by its prepared
/// statements' queue (see `prepared`).
struct Queued<'g, 't> {
    tracking: &'g mut Tracking<'t>,
    /// `prepared::WATCH` or `prepared::TRACKED`.
    mode: u8,
}

impl ServerMessages for Queued<'_, '_> {
    #[inline]
    fn needs_whole(&self, tag: u8) -> bool {
        super::prepared::needs_whole(tag)
    }

    #[inline]
    fn verdict(&mut self, tag: u8, msg: &[u8]) -> Verdict {
        self.tracking.on_server(self.mode, tag, msg)
    }
}

/// What the server direction needs of a scan.
struct Figures {
    forward: usize,
    ready_count: u32,
    last_status: u8,
    transaction_block: bool,
}

impl Figures {
    #[inline]
    fn of(b: crate::client::scan::ServerBatch) -> Figures {
        Figures {
            forward: b.forward,
            ready_count: b.ready_count,
            last_status: b.last_status,
            transaction_block: b.transaction_block,
        }
    }
}

async fn server_to_client(
    mut sr: ReadHalf<'_>,
    mut cw: WriteHalf<'_>,
    sbuf: &mut BytesMut,
    link: &Link<'_>,
    (server_params, synced): (&mut Params, &mut Option<Arc<Params>>),
    client_params: &mut Arc<Params>,
    rules: &Rules<'_>,
) -> Stop {
    let extra_tracked = rules.extra_tracked;
    let mut skip = 0usize;
    loop {
        reserve_for_read(sbuf);
        match sr.read_buf(sbuf).await {
            Ok(0) => return Stop::ServerIo(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) => return Stop::ServerIo(e),
        }
        let on_param = |name: &str, value: &str| {
            param_status(
                (&mut *server_params, &mut *synced),
                &mut *client_params,
                extra_tracked,
                (name, value),
            );
        };
        let stop = rules.statement_mode;
        // Only the small figures outlive the scan.
        let batch = match &link.tracking {
            Some(t) if link.prepared.load(Relaxed) != OFF => {
                let mode = link.prepared.load(Relaxed);
                let mut queue = Queued {
                    tracking: &mut t.lock(),
                    mode,
                };
                Figures::of(scan_server(sbuf, &mut skip, stop, on_param, &mut queue))
            }
            _ => Figures::of(scan_server(sbuf, &mut skip, stop, on_param, &mut Pass)),
        };
        if rules.bound > 0 && link.answered.load(Relaxed) == 0 {
            match refusal(sbuf, &batch, link) {
                // A standby's answer to its unit is 25006, none of it
                // forwarded: dropped, for the unit to go to the primary.
                Some(true) => {
                    sbuf.clear();
                    link.pending.store(0, Relaxed);
                    return Stop::ReadOnlyRefused;
                }
                // Dropped; its ReadyForQuery is still to come.
                Some(false) => continue,
                None => {}
            }
        }
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
                return Stop::ClientUnwritable;
            }
            sbuf.advance(batch.forward);
        }
        if batch.transaction_block {
            return Stop::TransactionBlock;
        }
        if rules.release_when_idle && sbuf.is_empty() && link.can_release() {
            return Stop::Released;
        }
    }
}

/// A standby's first answer to a link's bounded unit, scanned (`batch`)
/// and not forwarded yet: Some(true) when it is a 25006 refusal whose
/// whole answer is in (the caller drops it and stops); Some(false) when it
/// is a refusal whose ReadyForQuery has not come yet (PostgreSQL flushes
/// an error before it): dropped here, and the link drops that
/// ReadyForQuery when it comes. None: an answer to forward.
#[cold]
#[inline(never)]
fn refusal(sbuf: &mut BytesMut, batch: &Figures, link: &Link<'_>) -> Option<bool> {
    let whole = sbuf.len() == batch.forward;
    if link.has(REFUSED) {
        // Only the ReadyForQuery of the refusal dropped before may come.
        let ready = whole && batch.ready_count == 1 && batch.last_status == b'I';
        return ready.then_some(true);
    }
    if !whole || batch.ready_count > 1 || !refused_read_only(&sbuf[..batch.forward]) {
        return None;
    }
    if batch.ready_count == 1 {
        let done = batch.last_status == b'I' && link.pending.load(Relaxed) == 1;
        return done.then_some(true);
    }
    sbuf.clear();
    link.set(REFUSED);
    Some(false)
}

/// A ParameterStatus from the server: note the server's value and, for a
/// tracked parameter, the client's. Out of line: rare (a SET), and its code
/// would sit in the scan of every batch.
#[cold]
#[inline(never)]
fn param_status(
    (server_params, synced): (&mut Params, &mut Option<Arc<Params>>),
    client_params: &mut Arc<Params>,
    extra_tracked: &[String],
    (name, value): (&str, &str),
) {
    server_params.set(name, value);
    *synced = None;
    if tracked_name(name, extra_tracked).is_some() && client_params.get(name) != Some(value) {
        // Copy-on-write: the set may be shared with other clients.
        Arc::make_mut(client_params).set(name, value);
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
