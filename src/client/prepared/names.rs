//! Statement identities: the process-wide registry that gives every
//! distinct (query text, parameter types) one id, hence one server-side
//! name `PGSLUICE_<id>` shared by every client that prepares it, and the
//! helpers that write those names.
//!
//! The registry holds weak references: a statement no client holds any
//! more is dropped from it at the next sweep (ids are never reused, so a
//! server still holding an old copy keeps a harmless, unused statement
//! until its LRU evicts it).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;

/// Client statement name -> statement. Hashed with foldhash, not SipHash:
/// it is looked up on every Bind, and its keys (the client's own statement
/// names) can only slow down the client that chose them.
pub(crate) type Names = HashMap<Box<[u8]>, Arc<Stmt>, foldhash::fast::RandomState>;

/// Prefix of the names the pooler gives statements on servers.
pub(crate) const SERVER_PREFIX: &str = "PGSLUICE_";

/// A statement name no server ever has: the target of the pooler's own
/// Close (its CloseComplete orders a synthesized answer) and Describe (its
/// error carries a synthesized one).
pub(crate) const NEVER_PREPARED: &[u8] = b"pgsluice_never_prepared";

/// One distinct statement: its id and the Parse body after the name
/// (query text, NUL, parameter type count and types).
#[derive(Debug)]
pub(crate) struct Stmt {
    /// Unique id; the server-side name is `PGSLUICE_<id>`.
    pub id: u64,
    /// Query text and parameter types as sent in Parse.
    pub rest: Bytes,
    /// `PGSLUICE_<id>` and its NUL, as written on every Bind (made once).
    pub name: Box<[u8]>,
}

struct Registry {
    map: HashMap<Bytes, Weak<Stmt>>,
    next: u64,
    /// Sweep dead entries when the map grows past this.
    sweep_at: usize,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Mutex::new(Registry {
            map: HashMap::new(),
            next: 1,
            sweep_at: 1024,
        })
    })
}

/// The statement for this Parse body (after the name): the same `Arc`
/// for the same text and types while any client holds it.
pub(crate) fn intern(rest: &[u8]) -> Arc<Stmt> {
    let mut r = registry().lock();
    if let Some(s) = r.map.get(rest).and_then(Weak::upgrade) {
        return s;
    }
    let rest = Bytes::copy_from_slice(rest);
    let mut name = BytesMut::new();
    put_server_name(&mut name, r.next);
    let stmt = Arc::new(Stmt {
        id: r.next,
        rest: rest.clone(),
        name: name[..].into(),
    });
    r.next += 1;
    r.map.insert(rest, Arc::downgrade(&stmt));
    if r.map.len() > r.sweep_at {
        r.map.retain(|_, w| w.strong_count() > 0);
        r.sweep_at = (r.map.len() * 2).max(1024);
    }
    stmt
}

/// Append `PGSLUICE_<id>` and its NUL.
pub(crate) fn put_server_name(out: &mut BytesMut, id: u64) {
    out.put_slice(SERVER_PREFIX.as_bytes());
    let mut digits = [0u8; 20];
    let mut n = id;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
    out.put_u8(0);
}

/// Length of `PGSLUICE_<id>` with its NUL.
pub(crate) fn server_name_len(id: u64) -> usize {
    let mut digits = 1;
    let mut n = id / 10;
    while n > 0 {
        digits += 1;
        n /= 10;
    }
    SERVER_PREFIX.len() + digits + 1
}

/// Start a tagged message of body length `body` (its length field is
/// known up front).
pub(crate) fn put_header(out: &mut BytesMut, tag: u8, body: usize) {
    let [a, b, c, d] = ((body + 4) as u32).to_be_bytes();
    out.put_slice(&[tag, a, b, c, d]);
}

/// Parse of statement `stmt` under its server-side name.
pub(crate) fn put_parse(out: &mut BytesMut, stmt: &Stmt) {
    put_header(out, b'P', stmt.name.len() + stmt.rest.len());
    out.put_slice(&stmt.name);
    out.put_slice(&stmt.rest);
}

/// Close or Describe of statement `id` under its server-side name.
pub(crate) fn put_server_named(out: &mut BytesMut, tag: u8, id: u64) {
    put_header(out, tag, 1 + server_name_len(id));
    out.put_u8(b'S');
    put_server_name(out, id);
}

/// Close of [`NEVER_PREPARED`] (answered CloseComplete, changes nothing).
pub(crate) fn put_fence(out: &mut BytesMut) {
    put_header(out, b'C', 1 + NEVER_PREPARED.len() + 1);
    out.put_u8(b'S');
    out.put_slice(NEVER_PREPARED);
    out.put_u8(0);
}

/// Describe of [`NEVER_PREPARED`] (always fails with 26000, which starts
/// PostgreSQL's skip to Sync).
pub(crate) fn put_failing_describe(out: &mut BytesMut) {
    put_header(out, b'D', 1 + NEVER_PREPARED.len() + 1);
    out.put_u8(b'S');
    out.put_slice(NEVER_PREPARED);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_and_types_share_one_statement() {
        let a = intern(b"SELECT 1\0\0\0");
        let b = intern(b"SELECT 1\0\0\0");
        let c = intern(b"SELECT 1\0\0\x01\0\0\0\x17");
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(a.id, c.id);
        for id in [0, 7, 10, 99, 12345, u64::MAX] {
            let mut out = BytesMut::new();
            put_server_name(&mut out, id);
            assert_eq!(out.len(), server_name_len(id));
            assert_eq!(&out[..], format!("PGSLUICE_{id}\0").as_bytes());
        }
        let mut out = BytesMut::new();
        put_parse(&mut out, &a);
        let len = u32::from_be_bytes(out[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, out.len());
    }
}
