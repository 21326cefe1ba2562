//! The classes of statements seen, so that a repeated statement is parsed
//! once (for the whole process: all shards share it).
//!
//! The key is a seeded hash (foldhash with a seed made at startup, so that
//! nobody can aim two statements at one entry) of the statement
//! with its constants masked: `WHERE aid = 12` and `WHERE aid = 99` are one
//! entry, as the class never depends on a constant's value. Masking is
//! done only where the text is simple (no comment, no dollar quote, no
//! backslash, no E'' string); otherwise the exact text is the key.
//!
//! Bounded: a stripe that reaches [`STRIPE_CAP`] entries is emptied.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use super::classify::{Class, classify};
use super::shape::{MAX_SPANS, Span};

const STRIPES: usize = 16;
/// Entries per stripe before it is emptied (16 × 4,096 statements).
const STRIPE_CAP: usize = 4096;

/// The process's statement classes.
pub(crate) struct ClassCache {
    /// foldhash with a seed made at startup: fast on short texts, and
    /// nobody can aim two texts at one entry without the seed.
    keys: foldhash::quality::RandomState,
    stripes: [Mutex<HashMap<u64, Class, Identity>>; STRIPES],
    /// Statements parsed (cache misses).
    parsed: AtomicU64,
}

/// The keys are hashes already.
#[derive(Default, Clone, Copy)]
struct Identity;

impl BuildHasher for Identity {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl ClassCache {
    /// The process's cache.
    pub(crate) fn get() -> &'static ClassCache {
        static CACHE: OnceLock<ClassCache> = OnceLock::new();
        CACHE.get_or_init(ClassCache::new)
    }

    fn new() -> ClassCache {
        ClassCache {
            keys: foldhash::quality::RandomState::default(),
            stripes: std::array::from_fn(|_| Mutex::new(HashMap::with_hasher(Identity))),
            parsed: AtomicU64::new(0),
        }
    }

    /// The class of `sql` (a statement's text, without its trailing NUL),
    /// parsed when not cached. `writing` (writing_functions) is part of
    /// the key: databases with other lists do not share entries. `spans`
    /// gets where the text's masked constants are (for `shape::Memo`;
    /// empty when the text is not simple).
    pub(crate) fn class(&self, sql: &[u8], writing: &[String], spans: &mut Vec<Span>) -> Class {
        let key = self.key(sql, writing, spans);
        let stripe = &self.stripes[(key as usize) % STRIPES];
        if let Some(c) = stripe.lock().get(&key) {
            return *c;
        }
        let class = match std::str::from_utf8(sql) {
            Ok(text) => classify(text, writing),
            Err(_) => Class::Unparsed,
        };
        self.parsed.fetch_add(1, Relaxed);
        let mut map = stripe.lock();
        if map.len() >= STRIPE_CAP {
            map.clear();
        }
        map.insert(key, class);
        class
    }

    /// Statements parsed so far (cache misses).
    pub(crate) fn parsed(&self) -> u64 {
        self.parsed.load(Relaxed)
    }

    pub(super) fn key(&self, sql: &[u8], writing: &[String], spans: &mut Vec<Span>) -> u64 {
        let mut h = self.keys.build_hasher();
        for w in writing {
            h.write(w.as_bytes());
            h.write_u8(0);
        }
        spans.clear();
        if !masked(sql, &mut h, spans) {
            spans.clear();
            // Not simple: the exact text.
            let mut h = self.keys.build_hasher();
            for w in writing {
                h.write(w.as_bytes());
                h.write_u8(0);
            }
            h.write_u8(1);
            h.write(sql);
            return h.finish();
        }
        h.finish()
    }
}

/// Hash `sql` into `h` with string and numeric constants replaced by
/// markers, quoted identifiers kept as they are; the text between
/// constants goes in as whole slices (the same masked shape gives the
/// same writes). False, with `h` to be thrown away, when the text is not
/// simple: a comment, a dollar quote, a backslash, or an `E''` string.
/// The constants' places go to `spans` (up to one more than MAX_SPANS:
/// more is too many to remember).
fn masked(sql: &[u8], h: &mut impl Hasher, spans: &mut Vec<Span>) -> bool {
    let mut span = |start: usize, end: usize, string: bool| {
        if spans.len() <= MAX_SPANS {
            // Texts remembered are short (shape::MAX_TEXT): u32 holds them.
            let (start, end) = (start as u32, end as u32);
            spans.push(Span { start, end, string });
        }
    };
    let n = sql.len();
    let (mut i, mut run) = (0, 0);
    while i < n {
        // Most bytes need nothing: skip to the next one that may.
        match sql[i..].iter().position(|&b| KIND[b as usize] >= SPECIAL) {
            Some(k) => i += k,
            None => break,
        }
        let b = sql[i];
        // Whether the byte before is part of an identifier (a digit
        // there is one: a number's digits are all taken at its first).
        let prev_ident = i > 0 && matches!(KIND[sql[i - 1] as usize], IDENT | DIGIT_OR_QUOTE);
        match b {
            b'0'..=b'9' if prev_ident => i += 1,
            b'0'..=b'9' => {
                h.write(&sql[run..i]);
                let start = i;
                while i < n && (sql[i].is_ascii_digit() || sql[i] == b'.') {
                    i += 1;
                }
                span(start, i, false);
                h.write_u8(0xfe);
                run = i;
            }
            b'\'' => {
                if prev_ident && matches!(sql[i - 1], b'e' | b'E') {
                    return false;
                }
                h.write(&sql[run..i]);
                let start = i;
                i += 1;
                while i < n && sql[i] != b'\'' {
                    if sql[i] == b'\\' {
                        return false;
                    }
                    i += 1;
                }
                // '' inside a string is two strings in a row: the same
                // markers for the same shape.
                h.write_u8(0xff);
                i += 1;
                span(start, i.min(n), true);
                run = i;
            }
            b'"' => {
                i += 1;
                while i < n && sql[i] != b'"' {
                    i += 1;
                }
                i += 1;
            }
            b'-' if sql.get(i + 1) == Some(&b'-') => return false,
            b'/' if sql.get(i + 1) == Some(&b'*') => return false,
            b'$' if !sql.get(i + 1).is_some_and(u8::is_ascii_digit) => return false,
            b'\\' => return false,
            _ => i += 1,
        }
    }
    h.write(&sql[run.min(n)..]);
    true
}

/// What a byte is to [`masked`]: SPECIAL and DIGIT_OR_QUOTE bytes (digits,
/// quotes, `-`, `/`, `\\`, `$`) are looked at, the others skipped. IDENT
/// (letters, `_`, non-ASCII) and DIGIT_OR_QUOTE (digits, `"`, `$`) bytes
/// say that a digit after them is inside an identifier.
const OTHER: u8 = 0;
const IDENT: u8 = 1;
const SPECIAL: u8 = 2;
const DIGIT_OR_QUOTE: u8 = 3;

static KIND: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() || matches!(c, b'"' | b'$') {
            DIGIT_OR_QUOTE
        } else if matches!(c, b'\'' | b'-' | b'/' | b'\\') {
            SPECIAL
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            IDENT
        } else {
            OTHER
        };
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sql: &str) -> u64 {
        ClassCache::get().key(sql.as_bytes(), &[], &mut Vec::new())
    }

    #[test]
    fn constants_share_an_entry_and_structure_does_not() {
        assert_eq!(
            key("SELECT abalance FROM a WHERE aid = 12;"),
            key("SELECT abalance FROM a WHERE aid = 99871;")
        );
        assert_eq!(key("SELECT 'x', 1.5"), key("SELECT 'longer text', 2.25"));
        assert_ne!(key("SELECT * FROM t1"), key("SELECT * FROM t2"));
        assert_ne!(key("SELECT \"a1\""), key("SELECT \"a2\""));
        assert_ne!(key("SELECT $1"), key("SELECT $2"));
        assert_ne!(key("SELECT 1"), key("SELECT 1 FOR UPDATE"));
        // Not simple: the exact text.
        assert_ne!(key("SELECT 1 -- a"), key("SELECT 2 -- a"));
        assert_ne!(key("SELECT E'\\'' , 1"), key("SELECT E'\\'' , 2"));
        assert_ne!(key("SELECT $$a$$"), key("SELECT $$b$$"));
        // A constant's quote cannot hide a statement after it.
        assert_ne!(
            key("SELECT 'a'; DELETE FROM t"),
            key("SELECT 'a'; SELECT 1")
        );
        let long = format!("SELECT {}", "x, ".repeat(200));
        assert_ne!(key(&long), key(&long.replace("x, x", "y, y")));
    }

    #[test]
    fn classes_are_parsed_once() {
        let c = ClassCache::new();
        let sql = |k: u32| format!("SELECT v FROM t WHERE k = {k}");
        assert_eq!(
            c.class(sql(1).as_bytes(), &[], &mut Vec::new()),
            Class::Read
        );
        assert_eq!(
            c.class(sql(2).as_bytes(), &[], &mut Vec::new()),
            Class::Read
        );
        assert_eq!(c.parsed(), 1);
        // Another writing_functions list is another entry.
        assert_eq!(
            c.class(sql(3).as_bytes(), &["f".into()], &mut Vec::new()),
            Class::Read
        );
        assert_eq!(c.parsed(), 2);
        assert_eq!(c.class(b"\xff\xfe", &[], &mut Vec::new()), Class::Unparsed);
        // Bounded: a full stripe is emptied, never grown.
        for k in 0..(STRIPE_CAP * STRIPES * 2) {
            c.class(format!("SELECT c{k}").as_bytes(), &[], &mut Vec::new());
        }
        assert!(c.stripes.iter().all(|s| s.lock().len() <= STRIPE_CAP));
    }
}
