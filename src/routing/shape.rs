//! A session's memo of the last statement text it classified, matched by
//! shape: a text that differs from the remembered one only inside its
//! constants (`WHERE aid = 12` after `WHERE aid = 99871`, the common case
//! of a client sending one query with new values) has the same class, and
//! is recognised in one pass of word-wide compares instead of the cache's
//! masked hashing and lookup.
//!
//! The rule is the cache's (`cache.rs`, `masked`): two texts match when
//! they are equal after each numeric and string constant is replaced by a
//! marker. The memo keeps where the remembered text's constants are
//! ([`Span`]s, recorded by `masked` while it hashed the text); the new
//! text is compared byte for byte, and at a difference that falls inside
//! (or right after) a remembered constant the new text's constant of the
//! same kind is skipped and the compare goes on after both. A difference
//! anywhere else, or a constant that is not one in the new text, is no
//! match: the caller asks the cache.

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

    /// Remember `sql` (whose constants are in `spans` now) and its class.
    pub(crate) fn set(&mut self, sql: &[u8], class: Class) {
        self.text.clear();
        if sql.len() <= MAX_TEXT {
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

/// Whether `s` is `l` with other constants where `l` has its `spans`.
fn same_shape(l: &[u8], spans: &[Span], s: &[u8]) -> bool {
    let (mut li, mut si) = (0, 0);
    let mut spans = spans.iter();
    loop {
        let m = common_prefix(&l[li..], &s[si..]);
        li += m;
        si += m;
        if li == l.len() && si == s.len() {
            return true;
        }
        // A difference: it must be inside (or right after) the next
        // remembered constant, which began after the last resync.
        let sp = loop {
            match spans.next() {
                Some(sp) if (sp.end as usize) < li => continue,
                Some(sp) if sp.start as usize <= li => break sp,
                _ => return false,
            }
        };
        // s equals l from the resync up to here: s's constant begins at
        // the same offset back.
        let start = si - (li - sp.start as usize);
        let Some(end) = constant_end(s, start, sp.string) else {
            return false;
        };
        li = sp.end as usize;
        si = end;
    }
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
        let len = rest
            .iter()
            .position(|&b| !(b.is_ascii_digit() || b == b'.'))
            .unwrap_or(rest.len());
        Some(start + len)
    }
}

/// The length of the common prefix of `a` and `b`, eight bytes at a time.
#[inline]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_le_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_le_bytes(y.try_into().unwrap_or_default());
        let d = x ^ y;
        if d != 0 {
            return i + (d.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    if i == n {
        return n;
    }
    if n >= 8 {
        // The last eight bytes, overlapping what was compared: the first
        // difference among them is the first of all.
        let x = u64::from_le_bytes(a[n - 8..].try_into().unwrap_or_default());
        let y = u64::from_le_bytes(b[n - 8..].try_into().unwrap_or_default());
        let d = x ^ y;
        return if d == 0 {
            n
        } else {
            n - 8 + (d.trailing_zeros() / 8) as usize
        };
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
