//! The client direction of a tracked link: every client message is copied
//! to an output buffer, named statements rewritten to their server-side
//! names, with the Parse (and the eviction Close) a server needs injected
//! first and an expected-answer entry queued for each message the server
//! will answer (see `queue`).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use memchr::memchr;

use super::ClientPrepared;
use super::names::{
    Stmt, intern, put_failing_describe, put_fence, put_header, put_parse, put_server_named,
};
use super::queue::{Act, End, Queue, Undo};
use crate::client::scan::{ClientBatch, client_header, count_message, take_skip};
use crate::protocol::ProtocolError;
use crate::protocol::backend::{Severity, error_response};
use crate::server::statements::ServerStatements;

/// Largest Query looked at for DISCARD ALL / DEALLOCATE ALL.
const SHORT_QUERY: usize = 64;

/// Process the client bytes in `buf`: what they mean for the link
/// (`scan::count_message`, the plain relay's rules), with the bytes to
/// send, rewritten, in `c.out`. `skip` carries the rest of a streamed
/// message (copied as it comes), `since_exec` the Syncs sent since the
/// last Execute or Query.
pub(crate) fn client_batch(
    c: &mut ClientPrepared,
    server: &mut ServerStatements,
    buf: &[u8],
    (skip, since_exec): (&mut usize, &mut u32),
    max_len: u32,
) -> Result<ClientBatch, ProtocolError> {
    let max = server.limit;
    let mut b = ClientBatch::default();
    // Whether a group was open matters only to the plain relay's stop.
    let mut in_group = false;
    let mut pos = 0;
    while pos < buf.len() {
        let avail = buf.len() - pos;
        if *skip > 0 {
            let n = take_skip(skip, avail);
            c.out.put_slice(&buf[pos..pos + n]);
            pos += n;
            continue;
        }
        let Some(h) = client_header(&buf[pos..], max_len)? else {
            break;
        };
        let total = h.total();
        let whole = avail >= total;
        let msg = &buf[pos..pos + total.min(avail)];
        // Messages looked into must be whole; a Bind up to its statement
        // name. (Asked only of a partial message: a whole Bind's names are
        // read once, by `bind`.)
        if !whole {
            let need_whole = match h.tag {
                b'P' | b'D' | b'C' => true,
                b'Q' => total <= SHORT_QUERY,
                b'B' => !bind_name_buffered(msg),
                _ => false,
            };
            if need_whole {
                break;
            }
        }
        if h.tag == b'X' {
            b.terminate = true;
            break;
        }
        let ignored = count_message(h.tag, &mut b, since_exec, &mut in_group);
        let taken = rewrite(c, (server, max), msg, whole, ignored, &mut b);
        if taken < total {
            *skip = total - taken;
        }
        pos += taken;
    }
    b.forward = pos;
    c.parse_delta += i64::from(b.server_parses) - i64::from(b.parses);
    Ok(b)
}

/// One client message of a tracked link (counted already), into `c.out`:
/// statement names rewritten, the Parse a server lacks injected, an
/// expected-answer entry queued for each message the server answers.
/// Returns the bytes of `msg` consumed (the rest of a large message is
/// copied as it comes).
fn rewrite(
    c: &mut ClientPrepared,
    (server, max): (&mut ServerStatements, usize),
    msg: &[u8],
    whole: bool,
    ignored: u32,
    b: &mut ClientBatch,
) -> usize {
    match msg[0] {
        b'P' => {
            b.server_parses += parse(c, server, max, msg);
            return msg.len();
        }
        b'B' => {
            if let Some(n) = bind(c, server, max, msg, b) {
                return n;
            }
            // Malformed (it is whole, see `client_batch`): PostgreSQL
            // says so.
            c.queue.push(End::Bind, Act::Pass, Undo::None);
        }
        b'D' | b'C' => {
            b.server_parses += describe_or_close(c, server, max, msg);
            return msg.len();
        }
        b'E' => c.queue.push(End::Execute, Act::Pass, Undo::None),
        b'S' => c.queue.push(End::Sync, Act::Pass, Undo::None),
        b'c' | b'f' if ignored > 0 => c.queue.forget_last_syncs(ignored),
        b'Q' => {
            let undo = if whole && drops_all(&msg[5..]) {
                let names = std::mem::take(&mut c.names);
                Undo::Reset(Box::new((names, std::mem::take(server))))
            } else {
                Undo::None
            };
            c.queue.push(End::Ready, Act::Pass, undo);
        }
        b'F' => c.queue.push(End::Ready, Act::Pass, Undo::None),
        _ => {}
    }
    c.out.put_slice(msg);
    msg.len()
}

/// Whether a (partial) Bind is buffered up to its statement name.
fn bind_name_buffered(msg: &[u8]) -> bool {
    let body = msg.get(5..).unwrap_or(b"");
    cstr(body).is_some_and(|portal| cstr(&body[portal.len() + 1..]).is_some())
}

/// The C string at the start of `b`, without its NUL.
#[inline]
fn cstr(b: &[u8]) -> Option<&[u8]> {
    // The empty name (unnamed portal or statement) is the usual case:
    // no memchr call for it.
    if b.first() == Some(&0) {
        return Some(&b[..0]);
    }
    memchr(0, b).map(|n| &b[..n])
}

/// Whether a Query body is DISCARD ALL or DEALLOCATE ALL.
fn drops_all(body: &[u8]) -> bool {
    let Some(sql) = cstr(body) else { return false };
    let sql = sql.trim_ascii();
    let sql = sql.strip_suffix(b";").unwrap_or(sql).trim_ascii();
    let words: Vec<&[u8]> = sql
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    matches!(words.as_slice(), [a, b] if (a.eq_ignore_ascii_case(b"discard") || a.eq_ignore_ascii_case(b"deallocate")) && b.eq_ignore_ascii_case(b"all"))
}

/// Make room on the server for one more statement: Close the least
/// recently used ones (their CloseComplete hidden).
fn make_room(out: &mut BytesMut, queue: &mut Queue, server: &mut ServerStatements, max: usize) {
    while server.len() >= max.max(1) {
        let Some(id) = server.oldest() else { break };
        server.remove(id);
        put_server_named(out, b'C', id);
        queue.push(End::Close, Act::Hide, Undo::ServerHas(id));
    }
}

/// Make sure the server has `stmt` before a message that uses it: a
/// hidden Parse if it lacks it. Returns the Parse messages sent.
fn ensure(
    (out, queue): (&mut BytesMut, &mut Queue),
    server: &mut ServerStatements,
    max: usize,
    stmt: &Stmt,
) -> u32 {
    if server.touch(stmt.id) {
        return 0;
    }
    make_room(out, queue, server, max);
    put_parse(out, stmt);
    server.insert(stmt.id);
    queue.push(End::Parse, Act::Hide, Undo::ServerLacks(stmt.id));
    1
}

/// PgBouncer's log line for a name prepared again, which its users'
/// alerts match. Out of line: its formatting would otherwise sit in the
/// rewriter's code (callgrind, -M prepared: 127 instructions per
/// transaction).
#[cold]
#[inline(never)]
fn already_prepared(name: &[u8]) {
    tracing::warn!(
        "prepared statement '{}' was already prepared",
        String::from_utf8_lossy(name)
    );
}

/// A client Parse (whole). Returns the Parse messages sent to the server.
fn parse(c: &mut ClientPrepared, server: &mut ServerStatements, max: usize, msg: &[u8]) -> u32 {
    let body = &msg[5..];
    let name = cstr(body).unwrap_or(b"");
    if name.is_empty() {
        c.out.put_slice(msg);
        c.queue.push(End::Parse, Act::Pass, Undo::None);
        return 1;
    }
    if c.names.contains_key(name) {
        already_prepared(name);
        // PostgreSQL's answer, made to come in order: a Describe that
        // fails (starting the skip to Sync as the real error would) and
        // whose error is replaced by this one.
        let mut err = BytesMut::new();
        let text = format!(
            "prepared statement \"{}\" already exists",
            String::from_utf8_lossy(name)
        );
        error_response(
            &mut err,
            Severity::Error,
            crate::protocol::sqlstate::DUPLICATE_PREPARED_STATEMENT,
            &text,
        );
        put_failing_describe(&mut c.out);
        c.queue
            .push(End::Describe, Act::Fail(Box::new(err.freeze())), Undo::None);
        return 0;
    }
    let stmt = intern(&body[name.len() + 1..]);
    let key: Box<[u8]> = name.into();
    c.names.insert(key.clone(), stmt.clone());
    if server.touch(stmt.id) {
        // The server has it: answered ParseComplete in order.
        put_fence(&mut c.out);
        c.queue
            .push(End::Close, Act::Swap(b'1'), Undo::Forget(key, None));
        return 0;
    }
    make_room(&mut c.out, &mut c.queue, server, max);
    put_parse(&mut c.out, &stmt);
    server.insert(stmt.id);
    c.queue
        .push(End::Parse, Act::Pass, Undo::Forget(key, Some(stmt.id)));
    1
}

/// A client Bind: rewrites the statement name once the header, portal and
/// name are buffered. Returns the bytes of `msg` consumed (the rest of the
/// message is copied as it comes), None to wait for more.
fn bind(
    c: &mut ClientPrepared,
    server: &mut ServerStatements,
    max: usize,
    msg: &[u8],
    st: &mut ClientBatch,
) -> Option<usize> {
    let body = &msg[5..];
    let portal = cstr(body)?;
    let name = cstr(&body[portal.len() + 1..])?;
    // Borrowed, not cloned: the statement is read while `out` and `queue`
    // are written.
    let ClientPrepared {
        names, queue, out, ..
    } = c;
    let stmt = if name.is_empty() {
        None
    } else {
        names.get(name)
    };
    let Some(stmt) = stmt else {
        // Unnamed or unknown (PostgreSQL answers the error): as it is.
        out.put_slice(msg);
        queue.push(End::Bind, Act::Pass, Undo::None);
        return Some(msg.len());
    };
    st.server_parses += ensure((out, queue), server, max, stmt);
    let old_len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize - 4;
    let new_len = old_len - (name.len() + 1) + stmt.name.len();
    put_header(out, b'B', new_len);
    out.put_slice(&body[..portal.len() + 1]);
    out.put_slice(&stmt.name);
    let after = 5 + portal.len() + 1 + name.len() + 1;
    out.put_slice(&msg[after..]);
    queue.push(End::Bind, Act::Pass, Undo::None);
    Some(msg.len())
}

/// A client Describe or Close (whole). Returns the Parse messages sent.
fn describe_or_close(
    c: &mut ClientPrepared,
    server: &mut ServerStatements,
    max: usize,
    msg: &[u8],
) -> u32 {
    let tag = msg[0];
    let end = if tag == b'D' {
        End::Describe
    } else {
        End::Close
    };
    let kind = msg.get(5).copied().unwrap_or(0);
    // A portal's name is not looked at (nor searched for its end).
    let name = if kind == b'S' {
        cstr(msg.get(6..).unwrap_or(b"")).unwrap_or(b"")
    } else {
        b""
    };
    let stmt: Option<Arc<Stmt>> = if name.is_empty() {
        None
    } else {
        c.names.get(name).cloned()
    };
    let Some(stmt) = stmt else {
        c.out.put_slice(msg);
        c.queue.push(end, Act::Pass, Undo::None);
        return 0;
    };
    if tag == b'C' {
        // Answered in order by a Close of nothing; the server keeps its
        // copy for others.
        let key: Box<[u8]> = name.into();
        c.names.remove(&key);
        put_fence(&mut c.out);
        c.queue
            .push(End::Close, Act::Pass, Undo::Restore(key, stmt));
        return 0;
    }
    let n = ensure((&mut c.out, &mut c.queue), server, max, &stmt);
    put_server_named(&mut c.out, b'D', stmt.id);
    c.queue.push(End::Describe, Act::Pass, Undo::None);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discard_all_is_recognised() {
        assert!(drops_all(b"DISCARD ALL\0"));
        assert!(drops_all(b"  deallocate   all ;\0"));
        assert!(!drops_all(b"DISCARD PLANS\0"));
        assert!(!drops_all(b"DEALLOCATE s1\0"));
    }
}
