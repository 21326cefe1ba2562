//! Header scanning for the relay, one scanner per direction: what a batch
//! of client or server bytes holds (how much can be forwarded,
//! ReadyForQuery count and status, ParameterStatus, message counts),
//! without parsing message bodies. Each scanner walks the messages; what
//! becomes of a message's bytes is its handler's choice: the plain relay
//! forwards them as they are ([`Forward`], [`Pass`]), a link with
//! prepared statements tracked rewrites the client's (`prepared::rewrite`)
//! and filters the server's (its queue).

use bytes::BytesMut;
use memchr::memchr;

use crate::protocol::frontend::is_frontend_tag;
use crate::protocol::{Header, ProtocolError};

/// What a scan of client bytes found (the plain relay's and a tracked
/// link's alike).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ClientBatch {
    /// Bytes consumed: forwarded as they are (plain), or handled into the
    /// tracked client's output buffer.
    pub(super) forward: usize,
    /// ReadyForQuery messages these bytes will cause.
    pub(super) answers: u32,
    /// Some(true) if the last extended-protocol message is not yet followed
    /// by a Sync, Some(false) if a Sync came last, None if neither was seen.
    pub(super) extended: Option<bool>,
    /// A Terminate follows the forwarded bytes (and is not forwarded).
    pub(super) terminate: bool,
    /// Parse messages among them.
    pub(super) parses: u32,
    /// Bind messages among them.
    pub(super) binds: u32,
    /// The scan stopped at the start of a group of extended-protocol
    /// messages (up to a Sync) that names a prepared statement, or that is
    /// not all buffered yet (told to: the client is to be tracked from
    /// there on; see `group_is_unnamed`).
    pub(super) activate: bool,
    /// Syncs counted in `answers` (now or in earlier batches) that the
    /// server ignores: those sent between the Execute that started a COPY
    /// FROM STDIN and its CopyDone/CopyFail (PostgreSQL ignores Sync and
    /// Flush in copy-in mode; drivers such as tokio-postgres send one right
    /// after the Execute, and another after CopyDone).
    pub(super) ignored: u32,
    /// Parse messages sent to the server (a tracked link adds and removes
    /// some); the plain relay leaves it 0.
    pub(super) server_parses: u32,
}

/// Pass over the rest of a streamed message: up to `avail` of the `skip`
/// bytes still to forward. Returns how many were taken.
#[inline]
pub(super) fn take_skip(skip: &mut usize, avail: usize) -> usize {
    let n = (*skip).min(avail);
    *skip -= n;
    n
}

/// What to do before a message is taken.
pub(super) enum Before {
    /// Take it.
    Go,
    /// Stop before it: more of it must be buffered first.
    Wait,
    /// Stop before it: the client is to be tracked from here on.
    Activate,
}

/// How a client scan handles the messages it walks over. The scanner
/// checks each header, counts what every message means for the link
/// (answers, extended groups, COPY's ignored Syncs, parses, binds) and
/// streams large messages; a handler decides what becomes of the bytes:
/// [`Forward`] leaves them to be forwarded as they are, the tracked link's
/// rewriter (`prepared::rewrite`) copies them to its output, rewritten.
pub(super) trait ClientMessages {
    /// Whether to take the message at the start of `rest` (`msg`: as much
    /// of it as is buffered; `whole`: all of it is). `in_group`:
    /// extended-protocol messages were sent since the last Sync.
    fn before(&mut self, tag: u8, bytes: (&[u8], &[u8]), whole: bool, in_group: bool) -> Before;

    /// The message is taken (and counted in `batch`); `ignored`: Syncs it
    /// makes ignored (a CopyDone or CopyFail). Returns how many bytes of
    /// `msg` are consumed now; the rest of the message streams through
    /// [`streamed`](Self::streamed).
    fn take(
        &mut self,
        tag: u8,
        msg: &[u8],
        whole: bool,
        ignored: u32,
        batch: &mut ClientBatch,
    ) -> usize;

    /// More bytes of a message taken earlier.
    fn streamed(&mut self, bytes: &[u8]);
}

/// The plain relay's handler: bytes are forwarded as they are; with
/// `stop_at_named`, the scan stops where tracking must start.
pub(super) struct Forward {
    /// Stop at a group of extended-protocol messages that names a
    /// statement (max_prepared_statements is on).
    pub(super) stop_at_named: bool,
    /// max_packet_size (a group with a longer message is tracked).
    pub(super) max_len: u32,
}

impl ClientMessages for Forward {
    #[inline(always)]
    fn before(&mut self, tag: u8, (rest, _): (&[u8], &[u8]), _: bool, in_group: bool) -> Before {
        let extended = matches!(tag, b'P' | b'B' | b'D' | b'E' | b'C' | b'H');
        if self.stop_at_named && extended && !in_group && !group_is_unnamed(rest, self.max_len) {
            Before::Activate
        } else {
            Before::Go
        }
    }

    #[inline(always)]
    fn take(&mut self, _: u8, msg: &[u8], _: bool, _: u32, _: &mut ClientBatch) -> usize {
        msg.len()
    }

    #[inline(always)]
    fn streamed(&mut self, _: &[u8]) {}
}

/// Scan client bytes for the plain relay (see [`scan_client_with`]).
/// `(stop_at_named, in_group)`: see [`Forward`] and
/// [`ClientMessages::before`].
pub(super) fn scan_client(
    buf: &[u8],
    skip: &mut usize,
    since_exec: &mut u32,
    max_len: u32,
    (stop_at_named, in_group): (bool, bool),
) -> Result<ClientBatch, ProtocolError> {
    let mut forward = Forward {
        stop_at_named,
        max_len,
    };
    scan_client_with(buf, (skip, since_exec), max_len, in_group, &mut forward)
}

/// Scan client bytes: check every header before anything of its message
/// is taken, count what each message means, and let `handler` decide what
/// becomes of its bytes. `skip` carries the untaken rest of a streamed
/// message across calls, `since_exec` the Syncs sent since the last
/// Execute or Query (see `ClientBatch::ignored`); `in_group`:
/// extended-protocol messages were sent since the last Sync.
#[inline]
pub(super) fn scan_client_with<H: ClientMessages>(
    buf: &[u8],
    (skip, since_exec): (&mut usize, &mut u32),
    max_len: u32,
    mut in_group: bool,
    handler: &mut H,
) -> Result<ClientBatch, ProtocolError> {
    let mut b = ClientBatch::default();
    let mut pos = 0;
    while pos < buf.len() {
        if *skip > 0 {
            let n = take_skip(skip, buf.len() - pos);
            handler.streamed(&buf[pos..pos + n]);
            pos += n;
            continue;
        }
        let rest = &buf[pos..];
        let Some(h) = Header::parse(rest) else {
            break;
        };
        if !is_frontend_tag(h.tag) {
            return Err(ProtocolError::UnknownTag(h.tag));
        }
        h.check(max_len)?;
        let total = h.total();
        let whole = rest.len() >= total;
        let msg = &rest[..total.min(rest.len())];
        match handler.before(h.tag, (rest, msg), whole, in_group) {
            Before::Go => {}
            Before::Wait => break,
            Before::Activate => {
                b.activate = true;
                break;
            }
        }
        let mut ignored = 0;
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
                in_group = false;
            }
            b'c' | b'f' => {
                ignored = std::mem::take(since_exec);
                b.ignored += ignored;
            }
            b'P' => {
                b.parses += 1;
                b.extended = Some(true);
            }
            b'B' => {
                b.binds += 1;
                b.extended = Some(true);
            }
            b'E' => {
                *since_exec = 0;
                b.extended = Some(true);
            }
            b'D' | b'C' | b'H' => b.extended = Some(true),
            _ => {}
        }
        if b.extended == Some(true) {
            in_group = true;
        }
        let taken = handler.take(h.tag, msg, whole, ignored, &mut b);
        if taken < total {
            *skip = total - taken;
        }
        pos += taken;
    }
    b.forward = pos;
    Ok(b)
}

/// Whether the group of extended-protocol messages at the start of `buf`
/// is all buffered up to its Sync and names no prepared statement (only
/// the unnamed one, and portals, which live and die within the
/// transaction's server): then it can pass untracked. Anything else
/// (a name, a message not buffered far enough, a Sync not yet there, a
/// message that is not part of the extended protocol) says no, and
/// tracking starts at the group's first message: a clean point, since
/// PostgreSQL skips to the Sync after an error, the queue must hold
/// every message of a group.
fn group_is_unnamed(buf: &[u8], max_len: u32) -> bool {
    let mut pos = 0;
    loop {
        let Some(h) = Header::parse(&buf[pos..]) else {
            return false;
        };
        if h.check(max_len).is_err() {
            return false;
        }
        let end = (pos + h.total()).min(buf.len());
        let body = &buf[(pos + 5).min(end)..end];
        let unnamed = match h.tag {
            b'S' => return true,
            // Parse: the statement name comes first.
            b'P' => body.first() == Some(&0),
            // Bind: the portal, then the statement.
            b'B' => memchr(0, body).is_some_and(|n| body.get(n + 1) == Some(&0)),
            // Describe / Close: 'S' or 'P', then the name.
            b'D' | b'C' => matches!(body, [b'P', ..] | [b'S', 0, ..]),
            b'E' | b'H' => true,
            _ => false,
        };
        if !unnamed || end - pos < h.total() {
            return false;
        }
        pos = end;
    }
}

/// What a scan of server bytes found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ServerBatch {
    /// Bytes that can be forwarded now.
    pub(super) forward: usize,
    /// ReadyForQuery messages among them.
    pub(super) ready_count: u32,
    /// Status of the last of them.
    pub(super) last_status: u8,
    /// A ReadyForQuery 'T' or 'E' came when told to stop at one; `forward`
    /// ends before it.
    pub(super) transaction_block: bool,
}

/// What the relay does with one server message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Forward it.
    Forward,
    /// Drop it.
    Drop,
    /// Send these bytes instead.
    Replace(bytes::Bytes),
}

/// What a server scan asks of each message: the plain relay's [`Pass`]
/// forwards everything; a link with prepared statements tracked or
/// watched asks its queue (see `relay`).
pub(super) trait ServerMessages {
    /// Whether a message with this tag must be whole before
    /// [`verdict`](Self::verdict) is asked (every tag it may not forward
    /// as it is must be).
    fn needs_whole(&self, tag: u8) -> bool;

    /// What to do with a message (whole if `needs_whole` said so).
    fn verdict(&mut self, tag: u8, msg: &[u8]) -> Verdict;
}

/// The plain relay's: every message forwarded as it is.
pub(super) struct Pass;

impl ServerMessages for Pass {
    #[inline(always)]
    fn needs_whole(&self, _: u8) -> bool {
        false
    }

    #[inline(always)]
    fn verdict(&mut self, _: u8, _: &[u8]) -> Verdict {
        Verdict::Forward
    }
}

/// Scan server bytes. ReadyForQuery and ParameterStatus are inspected (and
/// so must be whole before they are forwarded); everything else streams.
/// With `stop_in_transaction` (statement mode), the scan stops before a
/// ReadyForQuery that is not 'I'. A message `filter` does not forward as
/// it is is cut out of `buf` (or replaced, and the replacement passed over
/// unread) and the scan goes on, so a batch still goes out in one write.
#[inline]
pub(super) fn scan_server<F: ServerMessages>(
    buf: &mut BytesMut,
    skip: &mut usize,
    stop_in_transaction: bool,
    mut on_param: impl FnMut(&str, &str),
    filter: &mut F,
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
            t if avail < total && filter.needs_whole(t) => break,
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
        match filter.verdict(h.tag, &buf[pos..pos + total.min(avail)]) {
            Verdict::Forward => {}
            // Never a ReadyForQuery or ParameterStatus; whole (see
            // `needs_whole`).
            other => {
                let tail = buf.split_off(pos + total);
                buf.truncate(pos);
                if let Verdict::Replace(bytes) = other {
                    buf.extend_from_slice(&bytes);
                    *skip = bytes.len();
                }
                buf.unsplit(tail);
                continue;
            }
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
