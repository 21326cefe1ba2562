//! Sharing equal values among a pool's clients: thousands of clients of
//! one pool usually want the same parameters and have the same identity,
//! and one shared copy costs a pointer per client instead of an allocation.

use std::sync::Arc;

use parking_lot::Mutex;

/// Most distinct values kept for sharing.
const MAX_INTERNED: usize = 64;

/// A small set of shared values.
pub(super) struct Interner<T>(Mutex<Vec<Arc<T>>>);

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner(Mutex::new(Vec::new()))
    }
}

impl<T: PartialEq> Interner<T> {
    /// A shared copy of `value`: an equal one already in use, or this one,
    /// remembered for the next.
    pub(super) fn intern(&self, value: T) -> Arc<T> {
        let mut kept = self.0.lock();
        if let Some(v) = kept.iter().find(|v| ***v == value) {
            return v.clone();
        }
        remember(&mut kept, value)
    }

    /// A shared copy of the value `is` matches: one already in use, or
    /// the one `make` builds (only then), remembered for the next.
    pub(super) fn intern_with(&self, is: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> Arc<T> {
        let mut kept = self.0.lock();
        if let Some(v) = kept.iter().find(|v| is(v)) {
            return v.clone();
        }
        remember(&mut kept, make())
    }
}

fn remember<T>(kept: &mut Vec<Arc<T>>, value: T) -> Arc<T> {
    let v = Arc::new(value);
    if kept.len() >= MAX_INTERNED {
        // Forget values nobody uses any more, else the oldest.
        kept.retain(|v| Arc::strong_count(v) > 1);
        if kept.len() >= MAX_INTERNED {
            kept.remove(0);
        }
    }
    kept.push(v.clone());
    v
}
