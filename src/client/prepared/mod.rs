//! Protocol-level named prepared statements in transaction and statement
//! mode (PgBouncer 1.21+ semantics, max_prepared_statements > 0).
//!
//! A client's statement names map to statements shared by identical query
//! text and parameter types (`names`), each prepared on servers under the
//! name `PGSLUICE_<id>`; each server connection records which it has
//! (`server::statements`, an LRU of at most max_prepared_statements). In a
//! tracked link (`rewrite`) the client's Parse, Bind, Describe and Close
//! of named statements are rewritten: a statement the server lacks is
//! prepared first (its ParseComplete hidden), a Parse of a statement the
//! server has is answered ParseComplete, a Close is answered locally.
//!
//! Order: every synthesized answer takes the place of the answer to a
//! message the pooler sends instead (a Close of a statement that never
//! exists for ParseComplete / CloseComplete, a Describe of it for an
//! error), so answers come back in exactly the order the client expects,
//! across pipelines, Flush and errors, with no wake-up of its own; the
//! per-link `queue` says, answer by answer, what to forward, hide or
//! replace, and follows PostgreSQL's skip to Sync after an error.
//!
//! Cost: a client is tracked from its first extended-protocol message on
//! (while max_prepared_statements > 0 in transaction or statement mode);
//! clients that only send simple queries never are, and their links run
//! the relay's plain path (one flag read per batch).

pub(crate) mod names;
pub(crate) mod queue;
pub(crate) mod rewrite;

use bytes::BytesMut;

use crate::server::statements::{ServerStatements, drops_all_statements};
pub(crate) use names::Names;
use queue::{End, Queue, Verdict};

/// A tracked client's statements and its link's expected answers.
#[derive(Debug, Default)]
pub(crate) struct ClientPrepared {
    /// Client statement name -> statement.
    pub names: Names,
    /// Expected answers of the current link.
    pub queue: Queue,
    /// Bytes to send to the server (reused).
    pub out: BytesMut,
    /// Parse messages sent to servers minus those the client sent, this
    /// link (the pooler answers some and adds others).
    pub parse_delta: i64,
}

/// Link modes (the relay's `Link::prepared`).
pub(crate) const OFF: u8 = 0;
/// The client is not tracked but the server has statements: watch for
/// DISCARD ALL / DEALLOCATE ALL.
pub(crate) const WATCH: u8 = 1;
/// The client is tracked.
pub(crate) const TRACKED: u8 = 2;

/// What one link works on, behind a lock the two directions take in turn
/// (never across an await; they run in one task, so it is uncontended).
pub(crate) struct Tracking<'a> {
    /// The client's state; None until it is tracked.
    pub client: &'a mut Option<Box<ClientPrepared>>,
    /// The server's statements.
    pub server: &'a mut ServerStatements,
}

impl Tracking<'_> {
    /// The mode a link starts in, with max_prepared_statements `max`.
    pub(crate) fn start(&mut self, max: usize) -> u8 {
        self.server.limit = max;
        match self.client.as_deref_mut() {
            Some(c) => {
                c.queue.reset();
                c.out.clear();
                c.parse_delta = 0;
                TRACKED
            }
            None if !self.server.is_empty() => WATCH,
            None => OFF,
        }
    }

    /// Start tracking the client now: `pending` answers to messages sent
    /// earlier in this link are outstanding, one ReadyForQuery each (Query,
    /// FunctionCall, or the Sync that closed a group of extended-protocol
    /// messages naming no statement); nothing else is: tracking starts at
    /// the first message of a group (`scan::group_is_unnamed`).
    pub(crate) fn activate(&mut self, pending: u32) {
        let c = self.client.get_or_insert_with(Default::default);
        c.queue.reset();
        c.out.clear();
        c.parse_delta = 0;
        for _ in 0..pending {
            c.queue
                .push(End::Ready, queue::Act::Pass, queue::Undo::None);
        }
    }

    /// The server was lost: undo what the unanswered messages did.
    pub(crate) fn abandon(&mut self) {
        if let Some(c) = self.client.as_deref_mut() {
            c.queue.abandon(&mut c.names, self.server);
        }
    }

    /// Server Parse count of a link whose client sent `client` Parses.
    pub(crate) fn server_parses(&self, client: u64) -> u64 {
        let d = self.client.as_ref().map_or(0, |c| c.parse_delta);
        client.saturating_add_signed(d)
    }

    /// Decide about one server message (see `Queue::on_server`).
    pub(crate) fn on_server(&mut self, mode: u8, tag: u8, msg: &[u8]) -> Verdict {
        if passes(tag) {
            return Verdict::Forward;
        }
        if mode == TRACKED
            && let Some(c) = self.client.as_deref_mut()
        {
            return c.queue.on_server(tag, msg, &mut c.names, self.server);
        }
        if tag == b'C' && msg.len() > 5 && drops_all_statements(&msg[5..]) {
            self.server.clear();
        }
        Verdict::Forward
    }
}

/// Server messages that neither end an expected answer nor report an
/// error nor drop statements: forwarded without a look at the queue (rows
/// and COPY data come by the thousand). Deferring the queue's skip after
/// an error to the next message that matters changes nothing: no other
/// message reads it.
#[inline]
fn passes(tag: u8) -> bool {
    matches!(
        tag,
        b'D' | b'd' | b'N' | b'A' | b'S' | b't' | b'G' | b'H' | b'W' | b'c'
    )
}

/// Tags a tracked or watching link must see whole before deciding.
#[inline]
pub(crate) fn needs_whole(tag: u8) -> bool {
    matches!(tag, b'1' | b'3' | b'E' | b'C')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::prepared::queue::End;

    /// A message the queue must see is never passed without a look: one
    /// that ends an expected answer, an error, or a CommandComplete (which
    /// may say DEALLOCATE ALL).
    #[test]
    fn passed_tags_never_matter_to_the_queue() {
        let ends = [
            End::Parse,
            End::Bind,
            End::Describe,
            End::Execute,
            End::Close,
            End::Sync,
            End::Ready,
        ];
        for tag in 0..=u8::MAX {
            let matters = tag == b'E' || tag == b'C' || ends.iter().any(|e| e.ended_by(tag));
            assert!(
                !(matters && passes(tag)),
                "tag {:?} is passed but matters",
                tag as char
            );
        }
        assert!(
            passes(b'D') && passes(b'd'),
            "rows and COPY data take the fast path"
        );
    }
}
