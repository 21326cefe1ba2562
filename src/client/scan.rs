//! Header scanning for the relay: what a batch of client or server bytes
//! holds (how much can be forwarded, ReadyForQuery count and status,
//! ParameterStatus, message counts), without parsing message bodies.
//! With a prepared-statement filter (`prepared`) the server scan also asks
//! it about each message and stops at one not to be forwarded as it is.

use bytes::BytesMut;
use memchr::memchr;

use super::prepared::needs_whole;
use super::prepared::queue::Verdict;
use crate::protocol::frontend::is_frontend_tag;
use crate::protocol::{Header, ProtocolError};

/// What a scan of client bytes found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ClientBatch {
    /// Bytes that can be forwarded now.
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
}

/// Pass over the rest of a streamed message: up to `avail` of the `skip`
/// bytes still to forward. Returns how many were taken.
#[inline]
pub(super) fn take_skip(skip: &mut usize, avail: usize) -> usize {
    let n = (*skip).min(avail);
    *skip -= n;
    n
}

/// Scan client bytes. `skip` carries the unforwarded rest of a streamed
/// message across calls. Every header is checked before anything of its
/// message is forwarded. `since_exec` carries the Syncs sent since the
/// last Execute or Query across calls (see `ClientBatch::ignored`).
/// `stop_at_named`: stop where tracking must start (`ClientBatch::activate`);
/// `in_group`: extended-protocol messages were sent since the last Sync.
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
                in_group = false;
            }
            b'c' | b'f' => b.ignored += std::mem::take(since_exec),
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H'
                if stop_at_named && !in_group && !group_is_unnamed(&buf[pos..], max_len) =>
            {
                b.activate = true;
                break;
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
    /// The filter's verdict on the message after `forward` when it is not
    /// to be forwarded as it is, and that message's length.
    pub(super) special: Option<(Verdict, usize)>,
}

/// Asked about each server message when prepared statements are tracked:
/// its tag and its bytes (whole for the tags `needs_whole` names).
pub(super) type Filter<'f> = &'f mut dyn FnMut(u8, &[u8]) -> Verdict;

/// Scan server bytes. ReadyForQuery and ParameterStatus are inspected (and
/// so must be whole before they are forwarded); everything else streams.
/// With `stop_in_transaction` (statement mode), the scan stops before a
/// ReadyForQuery that is not 'I'. With a `filter`, the scan stops at a
/// message it does not let through as it is.
pub(super) fn scan_server(
    buf: &[u8],
    skip: &mut usize,
    stop_in_transaction: bool,
    mut on_param: impl FnMut(&str, &str),
    mut filter: Option<Filter<'_>>,
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
            t if avail < total && filter.is_some() && needs_whole(t) => break,
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
        if let Some(f) = filter.as_mut() {
            let v = f(h.tag, &buf[pos..pos + total.min(avail)]);
            if v != Verdict::Forward {
                // Never a ReadyForQuery or ParameterStatus.
                b.special = Some((v, total));
                break;
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

/// [`scan_server`] with a prepared-statement filter, in the buffer itself:
/// a message to hide is cut out of `buf`, one to replace is replaced (and
/// passed over unread), and the scan goes on, so the batch still goes out
/// in one write. Never stops at a special message.
pub(super) fn scan_server_filtered(
    buf: &mut BytesMut,
    skip: &mut usize,
    stop_in_transaction: bool,
    mut on_param: impl FnMut(&str, &str),
    filter: Filter<'_>,
) -> ServerBatch {
    let mut b = scan_server(
        buf,
        skip,
        stop_in_transaction,
        &mut on_param,
        Some(&mut *filter),
    );
    while let Some((verdict, len)) = b.special.take() {
        let at = b.forward;
        let tail = buf.split_off(at + len);
        buf.truncate(at);
        if let Verdict::Replace(bytes) = verdict {
            buf.extend_from_slice(&bytes);
            *skip = bytes.len();
        }
        buf.unsplit(tail);
        let more = scan_server(
            &buf[at..],
            skip,
            stop_in_transaction,
            &mut on_param,
            Some(&mut *filter),
        );
        b.forward = at + more.forward;
        if more.ready_count > 0 {
            b.ready_count += more.ready_count;
            b.last_status = more.last_status;
        }
        b.transaction_block = more.transaction_block;
        b.special = more.special;
    }
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
