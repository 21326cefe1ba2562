//! The expected responses of a tracked link, in the order the server will
//! send them: one entry per message sent to the server that gets an
//! answer, saying how the answer ends and what to do with it (forward it,
//! hide it, turn it into another message). PostgreSQL's error rule is
//! applied here too: after an ErrorResponse to an extended-protocol
//! message the server skips everything up to Sync, so the entries of the
//! skipped messages are dropped and their bookkeeping undone (a skipped
//! Parse means the server does not have that statement, a skipped Close
//! means the client still has its statement).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::names::{Names, Stmt};
use crate::server::statements::{ServerStatements, drops_all_statements};

/// Which message an answer belongs to, hence how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// ParseComplete.
    Parse,
    /// BindComplete.
    Bind,
    /// RowDescription or NoData (after ParameterDescription for a statement).
    Describe,
    /// CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// CloseComplete.
    Close,
    /// ReadyForQuery of a Sync: the end of a skip after an error.
    Sync,
    /// ReadyForQuery of a Query or FunctionCall (skipped like any other
    /// message after an error; an error inside one does not skip).
    Ready,
}

impl End {
    pub(super) fn ended_by(self, tag: u8) -> bool {
        match self {
            End::Parse => tag == b'1',
            End::Bind => tag == b'2',
            End::Describe => tag == b'T' || tag == b'n',
            End::Execute => matches!(tag, b'C' | b'I' | b's'),
            End::Close => tag == b'3',
            End::Sync | End::Ready => tag == b'Z',
        }
    }
}

/// What to do with the answer.
#[derive(Debug)]
pub(crate) enum Act {
    /// The client's own message: forward its answer.
    Pass,
    /// The pooler's own Parse or Close: hide its success (errors are
    /// forwarded: the client's next message depended on it).
    Hide,
    /// A fence: its CloseComplete becomes this one-byte-tag message.
    Swap(u8),
    /// The failing Describe: its error becomes this ErrorResponse (boxed,
    /// like `Undo::Reset`: entries are moved in and out of the queue for
    /// every message of a tracked link, so they are kept small).
    Fail(Box<Bytes>),
}

/// What to undo if the message is skipped or fails.
#[derive(Debug)]
pub(crate) enum Undo {
    /// Nothing.
    None,
    /// The server does not have `id` after all.
    ServerLacks(u64),
    /// The client's Parse of `name` did not happen; with `Some(id)`, the
    /// Parse was sent and the server does not have `id` either.
    Forget(Box<[u8]>, Option<u64>),
    /// The client's Close of `name` did not happen.
    Restore(Box<[u8]>, Arc<Stmt>),
    /// The eviction of `id` did not happen.
    ServerHas(u64),
    /// A DISCARD ALL / DEALLOCATE ALL failed: what was there before.
    Reset(Box<Before>),
}

/// A client's statement names and its server's statements, as they were.
pub(crate) type Before = (Names, ServerStatements);

/// One expected answer. An entry with `Act::Pass` and `Undo::None` owns
/// no heap memory: `Queue::on_server` forgets such entries rather than
/// dropping them, so any field added here must keep that true.
#[derive(Debug)]
pub(crate) struct Entry {
    pub end: End,
    pub act: Act,
    pub undo: Undo,
}

pub(crate) use crate::client::scan::Verdict;

/// The queue of one tracked client (kept across links, empty between them).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    entries: VecDeque<Entry>,
    /// The server reported an error in an extended-protocol message and
    /// skips messages up to the next Sync.
    skipping: bool,
}

impl Queue {
    /// Expect an answer.
    pub(crate) fn push(&mut self, end: End, act: Act, undo: Undo) {
        self.entries.push_back(Entry { end, act, undo });
    }

    /// The last `n` Syncs queued get no answer (PostgreSQL ignored them
    /// during a COPY FROM STDIN): drop their entries.
    pub(crate) fn forget_last_syncs(&mut self, mut n: u32) {
        let mut i = self.entries.len();
        while n > 0 && i > 0 {
            i -= 1;
            if self.entries[i].end == End::Sync {
                self.entries.remove(i);
                n -= 1;
            }
        }
    }

    /// The server was lost with answers outstanding: everything they did
    /// is undone, as if each had failed (a statement whose Parse was not
    /// answered is not the client's).
    pub(crate) fn abandon(&mut self, names: &mut Names, server: &mut ServerStatements) {
        while let Some(e) = self.entries.pop_front() {
            undo(e.undo, names, server);
        }
        self.skipping = false;
    }

    /// A new link: nothing is outstanding.
    pub(crate) fn reset(&mut self) {
        self.entries.clear();
        self.skipping = false;
    }

    /// Decide about one server message of type `tag` (not one that
    /// `prepared::passes`). `msg` is the whole
    /// message for ParseComplete, CloseComplete, ErrorResponse and
    /// CommandComplete, at least the header otherwise.
    pub(crate) fn on_server(
        &mut self,
        tag: u8,
        msg: &[u8],
        names: &mut Names,
        server: &mut ServerStatements,
    ) -> Verdict {
        // The common case first: the answer to one of the client's own
        // messages ends here and there is nothing to undo (no error, no
        // skip, no statement-dropping command).
        if !self.skipping
            && tag != b'E'
            && let Some(front) = self.entries.front()
            && matches!((&front.act, &front.undo), (Act::Pass, Undo::None))
            && front.end.ended_by(tag)
            && !(tag == b'C' && front.end == End::Execute && drops_all_statements(&msg[5..]))
        {
            // Such an entry owns nothing (see `Entry`): `forget` spares
            // the generic drop of its `Act` and `Undo` (callgrind, -M
            // prepared: 7,273 -> 7,135 instructions per transaction).
            std::mem::forget(self.entries.pop_front());
            return Verdict::Forward;
        }
        if self.skipping {
            self.drop_skipped(names, server);
        }
        let Some(front) = self.entries.front() else {
            return Verdict::Forward;
        };
        if tag == b'E' && !matches!(front.end, End::Ready | End::Sync) {
            let e = self.entries.pop_front().expect("front");
            undo(e.undo, names, server);
            self.skipping = true;
            self.drop_skipped(names, server);
            return match e.act {
                Act::Fail(err) => Verdict::Replace(*err),
                _ => Verdict::Forward,
            };
        }
        if tag == b'E' {
            // An error inside a Query: a DISCARD ALL that failed keeps
            // what it would have dropped.
            if let Some(e) = self.entries.front_mut()
                && matches!(e.undo, Undo::Reset(..))
            {
                undo(std::mem::replace(&mut e.undo, Undo::None), names, server);
            }
            return Verdict::Forward;
        }
        if tag == b'C' && front.end == End::Execute && drops_all_statements(&msg[5..]) {
            // DEALLOCATE ALL / DISCARD ALL through the extended protocol.
            server.clear();
            names.clear();
        }
        if !front.end.ended_by(tag) {
            return Verdict::Forward;
        }
        let e = self.entries.pop_front().expect("front");
        if tag == b'Z' {
            self.skipping = false;
        }
        match e.act {
            Act::Pass | Act::Fail(_) => Verdict::Forward,
            Act::Hide => Verdict::Drop,
            Act::Swap(t) => Verdict::Replace(Bytes::copy_from_slice(&[t, 0, 0, 0, 4])),
        }
    }

    /// Drop the entries of messages the server skips (up to the next
    /// Sync's), undoing what they did.
    fn drop_skipped(&mut self, names: &mut Names, server: &mut ServerStatements) {
        while let Some(e) = self.entries.front() {
            if e.end == End::Sync {
                break;
            }
            let e = self.entries.pop_front().expect("front");
            undo(e.undo, names, server);
        }
    }
}

fn undo(u: Undo, names: &mut Names, server: &mut ServerStatements) {
    match u {
        Undo::None => {}
        Undo::ServerLacks(id) => server.remove(id),
        Undo::Forget(name, sent) => {
            names.remove(&name);
            if let Some(id) = sent {
                server.remove(id);
            }
        }
        Undo::Restore(name, stmt) => {
            names.entry(name).or_insert(stmt);
        }
        Undo::ServerHas(id) => server.insert_oldest(id),
        Undo::Reset(old) => {
            let (old_names, old_server) = *old;
            for (k, v) in old_names {
                names.entry(k).or_insert(v);
            }
            server.merge(old_server);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message of a tracked link moves an entry in and out of the
    /// queue: boxed rare payloads keep that a small copy (168 bytes before).
    #[test]
    fn entries_stay_small() {
        assert!(
            std::mem::size_of::<Entry>() <= 64,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}
