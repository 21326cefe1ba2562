//! Which pooler-named prepared statements a server connection has
//! (`PGSLUICE_<id>`, see `client::prepared`): a small LRU of statement ids.
//! It only records what was sent; the relay keeps it exact (undoing entries
//! for Parse messages the server skipped after an error) and resets it when
//! the server runs DISCARD ALL or DEALLOCATE ALL.

use std::collections::HashMap;

/// Statement ids a server connection has prepared, with their last use.
#[derive(Debug, Default)]
pub struct ServerStatements {
    /// id -> tick of last use (ids are the pooler's own: foldhash, not
    /// SipHash, on every Bind).
    used: HashMap<u64, u64, foldhash::fast::RandomState>,
    /// Use counter (grows with each touch).
    tick: u64,
    /// max_prepared_statements of the link using it (set at its start).
    pub limit: usize,
}

impl ServerStatements {
    /// Whether the server has statement `id`; marks it used.
    pub(crate) fn touch(&mut self, id: u64) -> bool {
        self.tick += 1;
        match self.used.get_mut(&id) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    /// Whether the server has statement `id` (no use recorded).
    pub fn contains(&self, id: u64) -> bool {
        self.used.contains_key(&id)
    }

    /// Record that the server has statement `id`, most recently used.
    pub fn insert(&mut self, id: u64) {
        self.tick += 1;
        self.used.insert(id, self.tick);
    }

    /// Record that the server has `id` again, least recently used (an
    /// eviction the server skipped).
    pub(crate) fn insert_oldest(&mut self, id: u64) {
        self.used.insert(id, 0);
    }

    /// Forget statement `id`.
    pub(crate) fn remove(&mut self, id: u64) {
        self.used.remove(&id);
    }

    /// The least recently used statement.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.used.iter().min_by_key(|(_, t)| **t).map(|(id, _)| *id)
    }

    /// How many statements the server has.
    pub fn len(&self) -> usize {
        self.used.len()
    }

    /// True when the server has none.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// The server dropped them all (DISCARD ALL / DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.used.clear();
    }

    /// Add every statement of `other` (an undone reset).
    pub(crate) fn merge(&mut self, other: ServerStatements) {
        for id in other.used.into_keys() {
            self.used.entry(id).or_insert(0);
        }
    }
}

/// Whether a CommandComplete body (tag and NUL) reports that every
/// prepared statement of the session is gone.
pub(crate) fn drops_all_statements(command_complete_body: &[u8]) -> bool {
    matches!(
        command_complete_body,
        b"DISCARD ALL\0" | b"DEALLOCATE ALL\0"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let mut s = ServerStatements::default();
        s.insert(1);
        s.insert(2);
        s.insert(3);
        assert!(s.touch(1));
        assert_eq!(s.oldest(), Some(2));
        s.remove(2);
        assert_eq!(s.oldest(), Some(3));
        s.insert_oldest(7);
        assert_eq!(s.oldest(), Some(7));
        assert!(!s.touch(9));
        assert_eq!(s.len(), 3);
        s.clear();
        assert!(s.is_empty());
        assert!(drops_all_statements(b"DISCARD ALL\0"));
        assert!(!drops_all_statements(b"DISCARD PLANS\0"));
    }
}
