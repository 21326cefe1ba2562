//! Unit tests of the session registry's entries: idle timeouts, close
//! requests, size.
use super::*;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[test]
fn idle_timeout_counts_whole_epochs_since_the_last_request() {
    let t = SessionEntry::default();
    t.logged_in(Duration::from_millis(1500), 10);
    // Rounded up to 2 s: idle during epoch 10, expired when epoch 12 closes.
    assert!(!t.idle_expired(10));
    assert!(!t.idle_expired(11));
    assert!(t.idle_expired(12));
    // Busy: never expired.
    t.active();
    assert!(!t.idle_expired(100));
    t.idle(100);
    assert!(!t.idle_expired(101));
    assert!(t.idle_expired(102));
    // Off.
    t.logged_in(Duration::ZERO, 0);
    assert!(!t.idle_expired(1000));
}

#[test]
fn an_idle_timeout_overtaken_by_activity_is_withdrawn_but_a_shutdown_is_not() {
    let t = SessionEntry::default();
    let epoch = AtomicU64::new(5);
    t.logged_in(Duration::from_secs(1), 3);
    t.close(CloseRequest::IdleTimeout);
    // Still idle since epoch 3: the close stands.
    assert_eq!(t.closing_reason(&epoch), Some(CloseRequest::IdleTimeout));
    // The client sent a request (and finished it) meanwhile.
    t.active();
    t.idle(5);
    assert_eq!(t.closing_reason(&epoch), None);
    // A shutdown replaces nothing and is never withdrawn.
    t.close(CloseRequest::Shutdown);
    t.close(CloseRequest::IdleTimeout);
    assert_eq!(t.closing_reason(&epoch), Some(CloseRequest::Shutdown));
}

/// Every connected client has an entry: it must stay small (S6, memory
/// per idle client). 168 bytes: with the Arc's counts, a 192-byte malloc
/// chunk (184 bytes took 208).
#[test]
fn entry_stays_small() {
    assert!(std::mem::size_of::<SessionEntry>() <= 168);
}
