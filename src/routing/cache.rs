//! The classes of statements seen, so that a repeated statement is parsed
//! once (for the whole process: all shards share it).
//!
//! The key is a keyed hash (SipHash with a key made at startup, so that
//! nobody can make two statements collide on purpose) of the statement
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

const STRIPES: usize = 16;
/// Entries per stripe before it is emptied (16 × 4,096 statements).
const STRIPE_CAP: usize = 4096;

/// The process's statement classes.
pub(crate) struct ClassCache {
    keys: std::hash::RandomState,
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
            keys: std::hash::RandomState::new(),
            stripes: std::array::from_fn(|_| Mutex::new(HashMap::with_hasher(Identity))),
            parsed: AtomicU64::new(0),
        }
    }

    /// The class of `sql` (a statement's text, without its trailing NUL),
    /// parsed when not cached. `writing` (writing_functions) is part of
    /// the key: databases with other lists do not share entries.
    pub(crate) fn class(&self, sql: &[u8], writing: &[String]) -> Class {
        let key = self.key(sql, writing);
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

    fn key(&self, sql: &[u8], writing: &[String]) -> u64 {
        let mut h = self.keys.build_hasher();
        for w in writing {
            h.write(w.as_bytes());
            h.write_u8(0);
        }
        if simple(sql) {
            masked(sql, &mut h);
        } else {
            h.write_u8(1);
            h.write(sql);
        }
        h.finish()
    }
}

/// Whether constants can be masked safely: no comment, dollar quote,
/// backslash or escape string anywhere.
fn simple(sql: &[u8]) -> bool {
    !sql.windows(2).any(|w| {
        matches!(w, b"--" | b"/*" | b"e'" | b"E'")
            || (w[0] == b'$' && !w[1].is_ascii_digit())
            || w[0] == b'\\'
    }) && sql.last() != Some(&b'\\')
}

/// Hash `sql` with string and numeric constants replaced by a marker;
/// quoted identifiers kept as they are.
fn masked(sql: &[u8], h: &mut impl Hasher) {
    let mut out = [0u8; 128];
    let mut n = 0;
    let mut push = |b: u8, h: &mut dyn Hasher| {
        out[n] = b;
        n += 1;
        if n == out.len() {
            h.write(&out);
            n = 0;
        }
    };
    let mut i = 0;
    let mut prev_ident = false;
    while i < sql.len() {
        let b = sql[i];
        match b {
            b'\'' => {
                // A string constant ('' inside is two strings in a row:
                // same marker sequence for the same shape).
                i += 1;
                while i < sql.len() && sql[i] != b'\'' {
                    i += 1;
                }
                push(0xff, h);
                prev_ident = false;
            }
            b'"' => {
                push(b, h);
                i += 1;
                while i < sql.len() && sql[i] != b'"' {
                    push(sql[i], h);
                    i += 1;
                }
                if i < sql.len() {
                    push(b'"', h);
                }
                prev_ident = true;
            }
            b'0'..=b'9' if !prev_ident => {
                while i + 1 < sql.len() && (sql[i + 1].is_ascii_digit() || sql[i + 1] == b'.') {
                    i += 1;
                }
                push(0xfe, h);
                prev_ident = true;
            }
            _ => {
                push(b, h);
                prev_ident = b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
            }
        }
        i += 1;
    }
    h.write(&out[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sql: &str) -> u64 {
        ClassCache::get().key(sql.as_bytes(), &[])
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
        assert_eq!(c.class(sql(1).as_bytes(), &[]), Class::Read);
        assert_eq!(c.class(sql(2).as_bytes(), &[]), Class::Read);
        assert_eq!(c.parsed(), 1);
        // Another writing_functions list is another entry.
        assert_eq!(c.class(sql(3).as_bytes(), &["f".into()]), Class::Read);
        assert_eq!(c.parsed(), 2);
        assert_eq!(c.class(b"\xff\xfe", &[]), Class::Unparsed);
        // Bounded: a full stripe is emptied, never grown.
        for k in 0..(STRIPE_CAP * STRIPES * 2) {
            c.class(format!("SELECT c{k}").as_bytes(), &[]);
        }
        assert!(c.stripes.iter().all(|s| s.lock().len() <= STRIPE_CAP));
    }
}
