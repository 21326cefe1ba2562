//! A session's memo of the last statement text it classified, matched by
//! shape: a text that differs from the remembered one only inside its
//! constants (`WHERE aid = 12` after `WHERE aid = 99871`, the common case
//! of a client sending one query with new values) has the same class, and
//! is recognised by comparing the text between constants instead of the
//! cache's masked hashing and lookup.
//!
//! The rule is the cache's (`cache.rs`, `masked`): two texts match when
//! they are equal after each numeric and string constant is replaced by a
//! marker. The memo keeps where the remembered text's constants are
//! ([`Span`]s, recorded by `masked` while it hashed the text); the new
//! text must have the same bytes up to the first one (one `memcmp`), a
//! constant of the same kind there (of any length, read as `masked` reads
//! it), the same bytes up to the next, and so on to the end. Anything
//! else is no match: the caller asks the cache.

use super::classify::Class;

/// The longest text remembered.
pub(crate) const MAX_TEXT: usize = 1024;
/// The most constants a remembered text may have (more: exact matches
/// only).
pub(crate) const MAX_SPANS: usize = 32;

/// Where a constant is in a text: `start..end`, a number or a quoted
/// string (quotes included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) string: bool,
}

/// The last text classified, its constants and its class.
#[derive(Default)]
pub(crate) struct Memo {
    text: Vec<u8>,
    /// Filled by the cache's `masked` for the text being classified;
    /// empty when the text was not simple (then only the same text
    /// matches).
    pub(crate) spans: Vec<Span>,
    class: Option<Class>,
}

impl Memo {
    /// The class of `sql` when it has the remembered text's shape.
    #[inline]
    pub(crate) fn get(&self, sql: &[u8]) -> Option<Class> {
        let class = self.class?;
        same_shape(&self.text, &self.spans, sql).then_some(class)
    }

    /// When `text` starts with the remembered text and a NUL (a Parse
    /// message's query string, repeated as it was): its length and class.
    /// Saves looking for the NUL first.
    #[inline]
    pub(crate) fn get_cstr(&self, text: &[u8]) -> Option<(usize, Class)> {
        let class = self.class?;
        let n = self.text.len();
        (text.get(n) == Some(&0) && text[..n] == *self.text).then_some((n, class))
    }

    /// Remember `sql` (whose constants are in `spans` now) and its class.
    pub(crate) fn set(&mut self, sql: &[u8], class: Class) {
        self.text.clear();
        // A NUL inside (a malformed Query) would let `get_cstr` match a
        // shorter string.
        if sql.len() <= MAX_TEXT && memchr::memchr(0, sql).is_none() {
            self.text.extend_from_slice(sql);
            self.class = Some(class);
            if self.spans.len() > MAX_SPANS {
                self.spans.clear(); // exact matches only
            }
        } else {
            self.class = None;
            self.spans.clear();
        }
    }
}

/// Whether `s` is `l` with other constants where `l` has its `spans`:
/// the text between constants equal, and at each remembered constant a
/// constant of the same kind in `s` (of any length).
fn same_shape(l: &[u8], spans: &[Span], s: &[u8]) -> bool {
    let (mut li, mut si) = (0, 0);
    for sp in spans {
        let start = sp.start as usize;
        let gap = start - li;
        // The text up to this constant, then the constant in s.
        let Some(between) = s.get(si..si + gap) else {
            return false;
        };
        if l[li..start] != *between {
            return false;
        }
        let Some(end) = constant_end(s, si + gap, sp.string) else {
            return false;
        };
        li = sp.end as usize;
        si = end;
    }
    l[li..] == s[si..]
}

/// Where the constant of the kind wanted that begins at `s[start]` ends,
/// as `masked` reads it: a number takes digits and dots; a string runs to
/// its closing quote (or the end) and must hold no backslash.
fn constant_end(s: &[u8], start: usize, string: bool) -> Option<usize> {
    let rest = &s[start..];
    if string {
        if rest.first() != Some(&b'\'') {
            return None;
        }
        // Unterminated: to the end (as masked has it; not valid SQL).
        match rest[1..].iter().position(|&b| b == b'\'' || b == b'\\') {
            None => Some(s.len()),
            Some(close) => (rest[1 + close] == b'\'').then_some(start + close + 2),
        }
    } else {
        if !rest.first().is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let mut end = start + 1;
        while end < s.len() && (s[end].is_ascii_digit() || s[end] == b'.') {
            end += 1;
        }
        Some(end)
    }
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
