//! FunctionCall (the fast-path interface, used by libpq's large-object
//! functions) through the pooler in transaction mode: the answer comes
//! back, an error in it is reported, and the server is released after
//! each call so that another client on a pool of one gets it.

use crate::support;

use support::wire::{self, Msg, login_trust, read_until_ready, send, tagged};
use support::{bounded, transaction_pooler};

/// pg_proc oid of int4pl(int4, int4).
const INT4PL: i32 = 177;

/// FunctionCall of `oid` with text arguments and a text result.
fn function_call(oid: i32, args: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&oid.to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes()); // one format code for all
    b.extend_from_slice(&0i16.to_be_bytes()); // text
    b.extend_from_slice(&(args.len() as i16).to_be_bytes());
    for a in args {
        b.extend_from_slice(&(a.len() as i32).to_be_bytes());
        b.extend_from_slice(a.as_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes()); // text result
    tagged(b'F', &b)
}

/// The FunctionCallResponse value, or the error's SQLSTATE; then 'Z'.
fn answer(msgs: &[Msg]) -> String {
    assert_eq!(msgs.last().map(|m| m.tag), Some(b'Z'), "{msgs:?}");
    match msgs[0].tag {
        b'V' => {
            let len = msgs[0].int32(0);
            String::from_utf8(msgs[0].body[4..4 + len as usize].to_vec()).unwrap()
        }
        b'E' => format!("E {}", msgs[0].sqlstate()),
        t => panic!("unexpected answer {}: {msgs:?}", t as char),
    }
}

#[tokio::test]
async fn function_calls_share_a_pool_of_one() {
    bounded(async {
        let (db, p) = transaction_pooler("fncall", "pool_size=1").await;
        let mut a = p.raw_connect().await;
        let mut b = p.raw_connect().await;
        login_trust(&mut a, "postgres", &db).await;
        login_trust(&mut b, "postgres", &db).await;
        for i in 0..20 {
            let c = if i % 2 == 0 { &mut a } else { &mut b };
            send(c, &function_call(INT4PL, &[&i.to_string(), "1000"]))
                .await
                .unwrap();
            assert_eq!(
                answer(&read_until_ready(c).await.unwrap()),
                (i + 1000).to_string()
            );
        }
        // integer out of range: reported, and the next call works.
        send(&mut a, &function_call(INT4PL, &["2147483647", "1"]))
            .await
            .unwrap();
        assert_eq!(answer(&read_until_ready(&mut a).await.unwrap()), "E 22003");
        send(&mut b, &function_call(INT4PL, &["2", "3"]))
            .await
            .unwrap();
        assert_eq!(answer(&read_until_ready(&mut b).await.unwrap()), "5");
        // Inside a transaction block the server stays with its client.
        send(&mut a, &wire::query("BEGIN")).await.unwrap();
        read_until_ready(&mut a).await.unwrap();
        send(&mut a, &function_call(INT4PL, &["40", "2"]))
            .await
            .unwrap();
        let msgs = read_until_ready(&mut a).await.unwrap();
        assert_eq!(answer(&msgs), "42");
        assert_eq!(msgs.last().unwrap().body[0], b'T');
        send(&mut a, &wire::query("COMMIT")).await.unwrap();
        read_until_ready(&mut a).await.unwrap();
        send(&mut b, &function_call(INT4PL, &["1", "1"]))
            .await
            .unwrap();
        assert_eq!(answer(&read_until_ready(&mut b).await.unwrap()), "2");
    })
    .await
}
