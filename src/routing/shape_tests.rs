use super::*;
use crate::routing::cache::ClassCache;

/// The memo of `l`, as a session makes it.
fn memo(l: &[u8]) -> Memo {
    let mut m = Memo::default();
    ClassCache::get().key(l, &[], &mut m.spans);
    m.set(l, Class::Read);
    m
}

fn key(s: &[u8]) -> u64 {
    ClassCache::get().key(s, &[], &mut Vec::new())
}

#[test]
fn other_constants_match_and_other_text_does_not() {
    let m = memo(b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;");
    for same in [
        &b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"[..],
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 99871234;",
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 1.5;",
    ] {
        assert_eq!(
            m.get(same),
            Some(Class::Read),
            "{}",
            String::from_utf8_lossy(same)
        );
    }
    for other in [
        &b"SELECT abalance FROM pgbench_accounts WHERE aid = 1 FOR UPDATE;"[..],
        b"SELECT abalance FROM pgbench_accounts WHERE aid = x;",
        b"SELECT abalance FROM pgbench_accounts WHERE aid = '1';",
        b"SELECT abalance FROM pgbench_accounts WHERE aid = ",
        b"SELECT abalance FROM pgbench_accounts2 WHERE aid = 1;",
        b"",
    ] {
        assert_eq!(m.get(other), None, "{}", String::from_utf8_lossy(other));
    }
    let m = memo(b"SELECT f('a b', 1), 'x' || 'y'");
    assert_eq!(
        m.get(b"SELECT f('', 22), 'long' || 'er'"),
        Some(Class::Read)
    );
    assert_eq!(m.get(b"SELECT f('a\\'', 1), 'x' || 'y'"), None);
    assert_eq!(m.get(b"SELECT f('a', 1), 'x'); DELETE FROM t; --'"), None);
    // Not simple: the same text only.
    let m = memo(b"SELECT 1 -- a");
    assert_eq!(m.get(b"SELECT 1 -- a"), Some(Class::Read));
    assert_eq!(m.get(b"SELECT 2 -- a"), None);
}

#[test]
fn long_texts_and_many_constants_are_not_matched_by_shape() {
    let many = format!("SELECT {}", "1, ".repeat(MAX_SPANS + 1));
    let m = memo(many.as_bytes());
    assert_eq!(m.get(many.as_bytes()), Some(Class::Read));
    assert_eq!(m.get(many.replacen('1', "2", 1).as_bytes()), None);
    let long = format!("SELECT {}", "x".repeat(MAX_TEXT));
    assert_eq!(memo(long.as_bytes()).get(long.as_bytes()), None);
}

/// Texts made of tokens that exercise every rule of `masked`, with
/// tokens swapped: the memo matches exactly when the cache's keys agree.
#[test]
fn the_memo_agrees_with_the_cache_key() {
    const TOKENS: &[&str] = &[
        "SELECT", " ", "a", "1", "12", "3.5", ".", "'x'", "'y y'", "''", "'", "\"q1\"", "\"", "$1",
        "$", "$$", "-", "--", "/", "/*", "*", "E", "e'\\''", "\\", ",", "t1", ";", "9e", "_",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let (mut matched, mut pairs) = (0, 0);
    for _ in 0..20_000 {
        let len = 1 + next(8);
        let l: Vec<usize> = (0..len).map(|_| next(TOKENS.len())).collect();
        let mut s = l.clone();
        for _ in 0..=next(3) {
            let at = next(len);
            s[at] = next(TOKENS.len());
        }
        if next(4) == 0 {
            s.truncate(next(len) + 1);
        }
        let text = |t: &[usize]| t.iter().map(|&k| TOKENS[k]).collect::<String>();
        let (l, s) = (text(&l), text(&s));
        let m = memo(l.as_bytes());
        let hit = m.get(s.as_bytes()).is_some();
        assert_eq!(
            hit,
            key(l.as_bytes()) == key(s.as_bytes()),
            "{l:?} then {s:?}"
        );
        pairs += 1;
        matched += usize::from(hit && l != s);
    }
    // The swaps hit constants often enough for the test to mean something.
    assert!(matched > pairs / 200, "{matched} of {pairs}");
}

#[test]
fn a_parse_string_matches_the_remembered_text_up_to_its_nul() {
    let m = memo(b"SELECT 1");
    assert_eq!(m.get_cstr(b"SELECT 1\0\0\0"), Some((8, Class::Read)));
    assert_eq!(m.get_cstr(b"SELECT 1\0"), Some((8, Class::Read)));
    // Longer, shorter, other: the caller looks for the NUL itself.
    assert_eq!(m.get_cstr(b"SELECT 12\0"), None);
    assert_eq!(m.get_cstr(b"SELECT \0"), None);
    assert_eq!(m.get_cstr(b"SELECT 1"), None);
    assert_eq!(m.get_cstr(b"SELECT 2\0"), None);
    // A text with a NUL inside is not remembered.
    let m = memo(b"SELECT 1\0x");
    assert_eq!(m.get_cstr(b"SELECT 1\0x\0"), None);
    assert_eq!(m.get(b"SELECT 1\0x"), None);
}
