//! Header scanning for the relay, one scanner per direction: what a batch
//! of client or server bytes holds (how much can be forwarded,
//! ReadyForQuery count and status, ParameterStatus, message counts),
//! without parsing message bodies. What client messages mean is defined
//! once ([`count_message`], [`client_header`]): the plain relay's scan
//! forwards them as they are, a tracked link's rewriter
//! (`prepared::rewrite`) copies them rewritten, both counting with it. The
//! server scan is one loop with a filter: the plain relay's [`Pass`], or a
//! tracked link's queue.

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
    /// CopyData among them (a COPY FROM STDIN is under way).
    pub(super) copy_data: bool,
}

/// Pass over the rest of a streamed message: up to `avail` of the `skip`
/// bytes still to forward. Returns how many were taken.
#[inline]
pub(super) fn take_skip(skip: &mut usize, avail: usize) -> usize {
    let n = (*skip).min(avail);
    *skip -= n;
    n
}

/// What one client message means for the link, counted in `b`: answers
/// it will cause, extended-protocol groups, Parse and Bind counts, and the
/// Syncs a CopyDone or CopyFail makes ignored (returned). The one
/// definition of these rules: the plain relay's scan ([`scan_client`]) and
/// a tracked link's rewriter (`prepared::rewrite`) both count with it.
/// `since_exec`: Syncs sent since the last Execute or Query;
/// `in_group`: extended-protocol messages were sent since the last Sync.
#[inline(always)]
pub(super) fn count_message(
    tag: u8,
    b: &mut ClientBatch,
    since_exec: &mut u32,
    in_group: &mut bool,
) -> u32 {
    // An extended-protocol message opens (or continues) a group; only a
    // Sync closes one.
    let mut extended = |b: &mut ClientBatch| {
        b.extended = Some(true);
        *in_group = true;
    };
    match tag {
        b'Q' => {
            b.answers += 1;
            *since_exec = 0;
        }
        b'F' => b.answers += 1,
        b'S' => {
            b.answers += 1;
            *since_exec += 1;
            b.extended = Some(false);
            *in_group = false;
        }
        b'd' => b.copy_data = true,
        b'c' | b'f' => {
            let ignored = std::mem::take(since_exec);
            b.ignored += ignored;
            return ignored;
        }
        b'P' => {
            b.parses += 1;
            extended(b);
        }
        b'B' => {
            b.binds += 1;
            extended(b);
        }
        b'E' => {
            *since_exec = 0;
            extended(b);
        }
        b'D' | b'C' | b'H' => extended(b),
        _ => {}
    }
    0
}

/// The header of the client message at the start of `buf`, checked (a
/// frontend tag, a length within `max_len`) before anything of it is
/// taken; None until five bytes are buffered.
#[inline(always)]
pub(super) fn client_header(buf: &[u8], max_len: u32) -> Result<Option<Header>, ProtocolError> {
    let Some(h) = Header::parse(buf) else {
        return Ok(None);
    };
    if !is_frontend_tag(h.tag) {
        return Err(ProtocolError::UnknownTag(h.tag));
    }
    h.check(max_len)?;
    Ok(Some(h))
}

/// Scan client bytes for the plain relay: what they mean for the link
/// ([`count_message`]) and how much of them can be forwarded as they are.
/// `skip` carries the unforwarded rest of a streamed message across calls;
/// `since_exec` the Syncs sent since the last Execute or Query (see
/// `ClientBatch::ignored`). `stop_at_named`: stop where tracking must
/// start (`ClientBatch::activate`); `in_group`: extended-protocol messages
/// were sent since the last Sync.
pub(super) fn scan_client(
    buf: &[u8],
    skip: &mut usize,
    since_exec: &mut u32,
    max_len: u32,
    (stop_at_named, mut in_group): (bool, bool),
) -> Result<ClientBatch, ProtocolError> {
    let mut b = ClientBatch::default();
    let mut pos = 0;
    while pos < buf.len() {
        if *skip > 0 {
            pos += take_skip(skip, buf.len() - pos);
            continue;
        }
        let Some(h) = client_header(&buf[pos..], max_len)? else {
            break;
        };
        match h.tag {
            b'X' => {
                b.terminate = true;
                break;
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H'
                if stop_at_named && !in_group && !group_is_unnamed(&buf[pos..], max_len) =>
            {
                b.activate = true;
                break;
            }
            tag => {
                count_message(tag, &mut b, since_exec, &mut in_group);
            }
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
    let mut from = 0;
    loop {
        let (part, special) = scan_until_special(
            &buf[from..],
            skip,
            stop_in_transaction,
            &mut on_param,
            filter,
        );
        b.forward = from + part.forward;
        if part.ready_count > 0 {
            b.ready_count += part.ready_count;
            b.last_status = part.last_status;
        }
        b.transaction_block = part.transaction_block;
        // With the plain relay's `Pass` there is none: one round.
        let Some((verdict, len)) = special else {
            return b;
        };
        let at = b.forward;
        let tail = buf.split_off(at + len);
        buf.truncate(at);
        if let Verdict::Replace(bytes) = verdict {
            buf.extend_from_slice(&bytes);
            *skip = bytes.len();
        }
        buf.unsplit(tail);
        from = at;
    }
}

/// [`scan_server`] up to the first message `filter` does not forward as it
/// is: what it found, and that message's verdict and length (a message
/// `needs_whole` makes whole: never a ReadyForQuery or ParameterStatus).
#[inline]
fn scan_until_special<F: ServerMessages>(
    buf: &[u8],
    skip: &mut usize,
    stop_in_transaction: bool,
    on_param: &mut impl FnMut(&str, &str),
    filter: &mut F,
) -> (ServerBatch, Option<(Verdict, usize)>) {
    let mut b = ServerBatch::default();
    let mut pos = 0;
    let mut special = None;
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
        let verdict = filter.verdict(h.tag, &buf[pos..pos + total.min(avail)]);
        if verdict != Verdict::Forward {
            special = Some((verdict, total));
            break;
        }
        if avail >= total {
            pos += total;
        } else {
            *skip = total - avail;
            pos = buf.len();
        }
    }
    b.forward = pos;
    (b, special)
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
