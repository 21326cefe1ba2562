//! Login answers shared by a pool's clients that ask for the same thing.
//!
//! A login answers AuthenticationOk and one ParameterStatus per parameter
//! the server reported, with the client's own values for the ones it set,
//! and gives the client its tracked parameter set. Clients of one service
//! all send the same startup parameters, so the pool keeps the last few
//! answers by (server's parameters, client's parameters, tracked extras)
//! and a login that matches one copies its bytes instead of building them.
//! Measured with `COST_CONNECT=1 benches/cost.sh` (callgrind, pgbench -C):
//! building the answer was about a quarter of pgsluice's instructions per
//! connection.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::Welcome;
use crate::server::params::Params;

/// Answers kept per pool (the oldest is forgotten first).
const KEPT: usize = 8;

/// What a login sends and keeps, shared by the clients that asked alike.
#[derive(Debug)]
pub struct LoginAnswer {
    /// AuthenticationOk and the ParameterStatus messages.
    pub messages: Bytes,
    /// The clients' tracked parameters.
    pub params: Arc<Params>,
    /// Their application_name (empty when none).
    pub application_name: String,
}

struct Kept {
    welcome: Welcome,
    wanted: Params,
    extra: Vec<String>,
    answer: Arc<LoginAnswer>,
}

/// The last answers of one pool.
#[derive(Default)]
pub(super) struct Answers(Mutex<Vec<Kept>>);

impl Answers {
    /// The answer for a client that asked for `wanted` while the pool's
    /// servers report `welcome`, tracking `extra` too; built by `build` when
    /// none is kept.
    pub(super) fn get_or_build(
        &self,
        welcome: &Welcome,
        wanted: Params,
        extra: &[String],
        build: impl FnOnce(&Welcome, &Params) -> LoginAnswer,
    ) -> Arc<LoginAnswer> {
        let same = |k: &Kept| {
            k.wanted == wanted
                && k.extra == extra
                && (Arc::ptr_eq(&k.welcome, welcome) || k.welcome == *welcome)
        };
        if let Some(k) = self.0.lock().iter().find(|k| same(k)) {
            return k.answer.clone();
        }
        // Built outside the lock; two logins racing build it twice.
        let answer = Arc::new(build(welcome, &wanted));
        let mut kept = self.0.lock();
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        kept.push(Kept {
            welcome: welcome.clone(),
            wanted,
            extra: extra.to_vec(),
            answer: answer.clone(),
        });
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(tag: &str) -> LoginAnswer {
        LoginAnswer {
            messages: Bytes::copy_from_slice(tag.as_bytes()),
            params: Arc::new(Params::new()),
            application_name: String::new(),
        }
    }

    #[test]
    fn equal_requests_share_one_answer_and_others_get_their_own() {
        let answers = Answers::default();
        let welcome: Welcome = Arc::new(vec![("TimeZone".into(), "UTC".into())]);
        let mut app = Params::new();
        app.set("application_name", "a");
        let first = answers.get_or_build(&welcome, app.clone(), &[], |_, _| answer("1"));
        // Same request, even with an equal copy of the welcome: shared.
        let copy: Welcome = Arc::new((*welcome).clone());
        let again = answers.get_or_build(&copy, app.clone(), &[], |_, _| panic!("rebuilt"));
        assert!(Arc::ptr_eq(&first, &again));
        // Another application_name, other extras, another welcome: built.
        let mut other = Params::new();
        other.set("application_name", "b");
        let b = answers.get_or_build(&welcome, other, &[], |_, _| answer("2"));
        assert_eq!(&b.messages[..], b"2");
        let x = answers.get_or_build(&welcome, app.clone(), &["search_path".into()], |_, _| {
            answer("3")
        });
        assert_eq!(&x.messages[..], b"3");
        let moved: Welcome = Arc::new(vec![("TimeZone".into(), "Asia/Tokyo".into())]);
        let m = answers.get_or_build(&moved, app.clone(), &[], |_, _| answer("4"));
        assert_eq!(&m.messages[..], b"4");
        // At most KEPT answers: the oldest goes first.
        for i in 0..KEPT {
            let mut p = Params::new();
            p.set("application_name", &format!("n{i}"));
            answers.get_or_build(&welcome, p, &[], |_, _| answer("n"));
        }
        let rebuilt = answers.get_or_build(&welcome, app, &[], |_, _| answer("5"));
        assert_eq!(&rebuilt.messages[..], b"5");
    }
}
