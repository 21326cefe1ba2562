//! Notices pgsluice adds to a session: LISTEN in transaction or statement
//! mode cannot work (the next transaction may run on another server, which
//! is not listening), so the client is told, as PgBouncer users learn the
//! hard way otherwise.

use std::future::Future;
use std::pin::Pin;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::transport::Stream;

use crate::protocol::backend::{Severity, error_response};

/// 0A000 feature_not_supported, as a warning: the LISTEN itself runs.
const LISTEN_CODE: crate::protocol::SqlState = crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED;

/// Whether `buf` starts with a simple Query whose statement is LISTEN.
/// Checked before every request: the usual case (not a Query, or one that
/// starts with another letter) is decided inline.
#[inline(always)]
pub(super) fn starts_with_listen(buf: &[u8]) -> bool {
    buf.len() >= 5 + 7
        && buf[0] == b'Q'
        && (matches!(buf[5], b'l' | b'L' | b'(') || buf[5].is_ascii_whitespace())
        && query_is_listen(&buf[5..])
}

#[inline(never)]
fn query_is_listen(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != b'(')
        .unwrap_or(sql.len());
    let word = &sql[start..];
    word.len() > 6 && word[..6].eq_ignore_ascii_case(b"listen") && !word[6].is_ascii_alphanumeric()
}

/// Send the LISTEN notice. Boxed: rare, and its state must not grow every
/// request's future (see the size test in `client::session`).
pub(super) fn send_listen_notice(
    stream: &mut Stream,
) -> Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + '_>> {
    Box::pin(async move { stream.write_all(&listen_notice()).await })
}

/// The NoticeResponse for a LISTEN in transaction or statement mode.
fn listen_notice() -> BytesMut {
    let mut out = BytesMut::new();
    error_response(
        &mut out,
        Severity::Warning,
        LISTEN_CODE,
        "LISTEN does not work in transaction pooling mode: notifications reach this client only \
         while its transaction runs; use a session-mode pool for LISTEN",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn recognises_listen_only() {
        assert!(starts_with_listen(&query("LISTEN jobs")));
        assert!(starts_with_listen(&query("  listen \"jobs\";")));
        assert!(!starts_with_listen(&query("LISTENER")));
        assert!(!starts_with_listen(&query("SELECT 'LISTEN x'")));
        assert!(!starts_with_listen(&query("NOTIFY jobs")));
        assert!(!starts_with_listen(b"P\x00\x00\x00\x10LISTEN x\x00"));
    }
}
