//! Unit tests for the relay's header scanners: transaction boundaries,
//! streaming of large messages, and length checks.

use super::*;
use crate::client::scan::{ClientBatch, ServerBatch};
use bytes::BufMut;
use postgres_protocol::message::frontend;

fn rfq(buf: &mut BytesMut, status: u8) {
    buf.put_u8(b'Z');
    buf.put_i32(5);
    buf.put_u8(status);
}

fn param_status(buf: &mut BytesMut, name: &str, value: &str) {
    crate::protocol::backend::parameter_status(buf, name, value);
}

/// The plain relay's server scan over a copy of `buf`.
fn scan_plain(buf: &[u8], skip: &mut usize, stop_in_transaction: bool) -> ServerBatch {
    let mut buf = BytesMut::from(buf);
    scan_server(&mut buf, skip, stop_in_transaction, |_, _| {}, &mut Pass)
}

fn test_link() -> Link<'static> {
    Link::new(LinkStats::new(crate::runtime::clock::clock_ns(), 0))
}

#[test]
fn simple_queries_are_counted_and_forwarded_whole() {
    let mut buf = BytesMut::new();
    frontend::query("BEGIN", &mut buf).unwrap();
    frontend::query("SELECT 1", &mut buf).unwrap();
    let mut skip = 0;
    let b = scan_client(&buf, &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!(
        b,
        ClientBatch {
            forward: buf.len(),
            answers: 2,
            extended: None,
            terminate: false,
            parses: 0,
            binds: 0,
            ignored: 0,
            activate: false,
            server_parses: 0,
            copy_data: false,
        }
    );
    assert_eq!(skip, 0);
}

#[test]
fn syncs_during_copy_in_are_not_answered() {
    // tokio-postgres: Bind, Execute, Sync; then CopyData..., CopyDone, Sync.
    let mut buf = BytesMut::new();
    frontend::execute("", 0, &mut buf).unwrap();
    frontend::sync(&mut buf);
    let mut since = 0;
    let b = scan_client(&buf, &mut 0, &mut since, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.answers, b.ignored), (1, 0));
    let mut buf = BytesMut::new();
    frontend::copy_done(&mut buf);
    frontend::sync(&mut buf);
    let b = scan_client(&buf, &mut 0, &mut since, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.answers, b.ignored), (1, 1));
    // A simple-query COPY sends no Sync: nothing to ignore.
    let mut buf = BytesMut::new();
    frontend::query("COPY t FROM STDIN", &mut buf).unwrap();
    frontend::copy_done(&mut buf);
    let b = scan_client(&buf, &mut 0, &mut since, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.answers, b.ignored), (1, 0));
}

#[test]
fn extended_batch_waits_for_sync() {
    let mut buf = BytesMut::new();
    frontend::parse("", "SELECT $1", [23], &mut buf).unwrap();
    frontend::describe(b'S', "", &mut buf).unwrap();
    frontend::flush(&mut buf);
    let mut skip = 0;
    let b = scan_client(&buf, &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!(b.extended, Some(true));
    assert_eq!(b.answers, 0);
    let mut buf = BytesMut::new();
    frontend::execute("", 0, &mut buf).unwrap();
    frontend::sync(&mut buf);
    let b = scan_client(&buf, &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!(b.extended, Some(false));
    assert_eq!(b.answers, 1);
    // A second batch started after the Sync keeps the link.
    let mut buf = BytesMut::new();
    frontend::sync(&mut buf);
    frontend::parse("", "SELECT 2", [], &mut buf).unwrap();
    let b = scan_client(&buf, &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.extended, b.answers), (Some(true), 1));
}

fn bind(buf: &mut BytesMut) {
    let no_values = std::iter::empty::<i32>();
    let serializer = |_: i32, _: &mut BytesMut| Ok(postgres_protocol::IsNull::No);
    frontend::bind("", "s1", [0i16; 0], no_values, serializer, [1i16], buf)
        .map_err(|_| ())
        .unwrap();
}

#[test]
fn parse_and_bind_messages_are_counted_even_when_streamed() {
    let mut buf = BytesMut::new();
    frontend::parse("s1", "SELECT $1", [23], &mut buf).unwrap();
    bind(&mut buf);
    frontend::execute("", 0, &mut buf).unwrap();
    bind(&mut buf);
    frontend::execute("", 0, &mut buf).unwrap();
    frontend::sync(&mut buf);
    frontend::query("SELECT 1", &mut buf).unwrap();
    let mut skip = 0;
    let b = scan_client(&buf, &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.parses, b.binds, b.answers), (1, 2, 2));
    // A Parse larger than the read: counted once, when its header is seen.
    let mut big = BytesMut::new();
    frontend::parse("", &"x".repeat(10_000), [], &mut big).unwrap();
    let b = scan_client(&big[..100], &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.parses, b.forward), (1, 100));
    let b = scan_client(&big[100..], &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.parses, skip), (0, 0));
}

#[test]
fn terminate_is_not_forwarded() {
    let mut buf = BytesMut::new();
    frontend::query("SELECT 1", &mut buf).unwrap();
    let q = buf.len();
    frontend::terminate(&mut buf);
    let mut skip = 0;
    let b = scan_client(&buf, &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.forward, b.answers, b.terminate), (q, 1, true));
}

#[test]
fn partial_header_waits_and_large_messages_stream() {
    let mut buf = BytesMut::new();
    let big = "x".repeat(100_000);
    frontend::query(&big, &mut buf).unwrap();
    let whole = buf.len();
    let mut skip = 0;
    // Only 3 bytes: not even a header.
    let b = scan_client(&buf[..3], &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!(b.forward, 0);
    // The first 1000 bytes stream through, counting the query once.
    let b = scan_client(&buf[..1000], &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.forward, b.answers), (1000, 1));
    assert_eq!(skip, whole - 1000);
    // The rest is forwarded without being counted again.
    let b = scan_client(&buf[1000..], &mut skip, &mut 0, 1 << 20, (false, false)).unwrap();
    assert_eq!((b.forward, b.answers), (whole - 1000, 0));
    assert_eq!(skip, 0);
}

#[test]
fn oversized_and_garbage_are_errors() {
    let mut buf = BytesMut::new();
    frontend::query(&"y".repeat(5000), &mut buf).unwrap();
    let mut skip = 0;
    assert!(matches!(
        scan_client(&buf, &mut skip, &mut 0, 4096, (false, false)),
        Err(ProtocolError::TooLong { .. })
    ));
    assert!(matches!(
        scan_client(
            b"\x01\x00\x00\x00\x08abcd",
            &mut 0,
            &mut 0,
            4096,
            (false, false)
        ),
        Err(ProtocolError::UnknownTag(1))
    ));
    assert!(matches!(
        scan_client(b"Q\x00\x00\x00\x02", &mut 0, &mut 0, 4096, (false, false)),
        Err(ProtocolError::BadLength { .. })
    ));
    // A PasswordMessage after login is a protocol violation.
    assert!(
        scan_client(
            b"p\x00\x00\x00\x05\x00",
            &mut 0,
            &mut 0,
            4096,
            (false, false)
        )
        .is_err()
    );
}

#[test]
fn server_ready_for_query_and_parameter_status() {
    let mut buf = BytesMut::new();
    crate::protocol::backend::command_complete(&mut buf, "SET");
    param_status(&mut buf, "TimeZone", "UTC");
    rfq(&mut buf, b'T');
    crate::protocol::backend::command_complete(&mut buf, "COMMIT");
    rfq(&mut buf, b'I');
    let mut seen = Vec::new();
    let mut skip = 0;
    let b = scan_server(
        &mut buf.clone(),
        &mut skip,
        false,
        |n, v| seen.push((n.to_string(), v.to_string())),
        &mut Pass,
    );
    assert_eq!(
        b,
        ServerBatch {
            forward: buf.len(),
            ready_count: 2,
            last_status: b'I',
            transaction_block: false,
        }
    );
    assert_eq!(seen, [("TimeZone".to_string(), "UTC".to_string())]);
}

#[test]
fn server_ready_for_query_split_across_reads_is_held_back() {
    let mut buf = BytesMut::new();
    crate::protocol::backend::command_complete(&mut buf, "SELECT 1");
    let cc = buf.len();
    rfq(&mut buf, b'I');
    let mut skip = 0;
    let b = scan_plain(&buf[..cc + 3], &mut skip, false);
    assert_eq!((b.forward, b.ready_count), (cc, 0));
    let b = scan_plain(&buf[cc..], &mut skip, false);
    assert_eq!((b.forward, b.ready_count, b.last_status), (6, 1, b'I'));
}

#[test]
fn large_data_rows_stream() {
    let mut buf = BytesMut::new();
    crate::protocol::backend::data_row(&mut buf, &[Some(&"z".repeat(50_000))]);
    let whole = buf.len();
    rfq(&mut buf, b'I');
    let mut skip = 0;
    let b = scan_plain(&buf[..100], &mut skip, false);
    assert_eq!(b.forward, 100);
    assert_eq!(skip, whole - 100);
    let b = scan_plain(&buf[100..], &mut skip, false);
    assert_eq!((b.forward, b.ready_count), (buf.len() - 100, 1));
}

#[test]
fn link_release_rules() {
    let link = test_link();
    assert!(link.can_release());
    link.pending.store(1, Relaxed);
    assert!(!link.can_release());
    link.pending.store(0, Relaxed);
    link.idle.store(false, Relaxed); // 'T' or 'E'
    assert!(!link.can_release());
    link.idle.store(true, Relaxed);
    link.extended.store(true, Relaxed);
    assert!(!link.can_release());
    link.extended.store(false, Relaxed);
    link.client_busy.store(true, Relaxed);
    assert!(!link.can_release());
}

#[test]
fn statement_mode_stops_before_a_transaction_block() {
    let mut buf = BytesMut::new();
    crate::protocol::backend::command_complete(&mut buf, "SELECT 1");
    rfq(&mut buf, b'I');
    let first = buf.len();
    crate::protocol::backend::command_complete(&mut buf, "BEGIN");
    let before = buf.len();
    rfq(&mut buf, b'T');
    let mut skip = 0;
    let b = scan_plain(&buf, &mut skip, true);
    assert_eq!(
        b,
        ServerBatch {
            forward: before,
            ready_count: 1,
            last_status: b'I',
            transaction_block: true,
        }
    );
    assert!(first < before);
    // Without statement mode the same bytes are simply forwarded.
    let b = scan_plain(&buf, &mut skip, false);
    assert_eq!(
        (b.forward, b.ready_count, b.last_status),
        (buf.len(), 2, b'T')
    );
    assert!(!b.transaction_block);
    // 'E' (failed transaction) is a transaction block too; 'I' is not.
    let mut buf = BytesMut::new();
    rfq(&mut buf, b'E');
    assert!(scan_plain(&buf, &mut 0, true).transaction_block);
    let mut buf = BytesMut::new();
    rfq(&mut buf, b'I');
    assert!(!scan_plain(&buf, &mut 0, true).transaction_block);
}

#[test]
fn link_phases_for_the_timer() {
    let link = test_link();
    assert_eq!(link.phase(), Phase::Quiet);
    link.pending.store(1, Relaxed);
    assert_eq!(link.phase(), Phase::Request);
    link.pending.store(0, Relaxed);
    link.idle.store(false, Relaxed);
    assert_eq!(link.phase(), Phase::IdleInTransaction);
    link.extended.store(true, Relaxed);
    assert_eq!(link.phase(), Phase::Request);
    link.extended.store(false, Relaxed);
    link.server_busy.store(true, Relaxed);
    assert_eq!(link.phase(), Phase::Request);
}

fn bind_to(buf: &mut BytesMut, portal: &str, statement: &str) {
    let no_values = std::iter::empty::<i32>();
    let serializer = |_: i32, _: &mut BytesMut| Ok(postgres_protocol::IsNull::No);
    frontend::bind(
        portal,
        statement,
        [0i16; 0],
        no_values,
        serializer,
        [1i16],
        buf,
    )
    .map_err(|_| ())
    .unwrap();
}

/// Parse, Bind, Describe portal, Execute, Sync on `statement` (and a
/// portal named `portal`).
fn group(buf: &mut BytesMut, statement: &str, portal: &str) {
    frontend::parse(statement, "SELECT 1", [], buf).unwrap();
    bind_to(buf, portal, statement);
    frontend::describe(b'P', portal, buf).unwrap();
    frontend::execute(portal, 0, buf).unwrap();
    frontend::sync(buf);
}

fn scan_tracked(buf: &[u8], in_group: bool) -> ClientBatch {
    scan_client(buf, &mut 0, &mut 0, 1 << 20, (true, in_group)).unwrap()
}

#[test]
fn groups_naming_no_statement_pass_untracked() {
    let mut buf = BytesMut::new();
    group(&mut buf, "", "");
    group(&mut buf, "", "portal1");
    let b = scan_tracked(&buf, false);
    assert!(
        !b.activate,
        "unnamed statements and named portals need no tracking"
    );
    assert_eq!(
        (b.forward, b.answers, b.extended),
        (buf.len(), 2, Some(false))
    );
}

#[test]
fn tracking_starts_at_the_group_that_names_a_statement() {
    let mut buf = BytesMut::new();
    group(&mut buf, "", "");
    let first = buf.len();
    // The name appears only in the group's second message: tracking still
    // starts at the group's first, so its queue holds the whole group.
    frontend::parse("", "SELECT 1", [], &mut buf).unwrap();
    bind_to(&mut buf, "", "");
    frontend::execute("", 0, &mut buf).unwrap();
    frontend::parse("s1", "SELECT 2", [], &mut buf).unwrap();
    frontend::sync(&mut buf);
    let b = scan_tracked(&buf, false);
    assert!(b.activate);
    assert_eq!((b.forward, b.answers), (first, 1));

    // A Bind, Describe or Close of a named statement starts it as well.
    for named in [
        {
            let mut g = BytesMut::new();
            bind_to(&mut g, "", "s1");
            g
        },
        {
            let mut g = BytesMut::new();
            frontend::describe(b'S', "s1", &mut g).unwrap();
            g
        },
        {
            let mut g = BytesMut::new();
            frontend::close(b'S', "s1", &mut g).unwrap();
            g
        },
    ] {
        let mut g = named;
        frontend::sync(&mut g);
        let b = scan_tracked(&g, false);
        assert!(b.activate);
        assert_eq!(b.forward, 0);
    }
}

#[test]
fn a_group_not_buffered_to_its_sync_is_tracked() {
    let mut buf = BytesMut::new();
    group(&mut buf, "", "");
    // Cut before the Sync: whether the rest names a statement is unknown.
    let b = scan_tracked(&buf[..buf.len() - 5], false);
    assert!(b.activate);
    assert_eq!(b.forward, 0);
    // Past the start of a group that already passed untracked (the rest of
    // it arrived later), there is nothing to decide.
    let b = scan_tracked(&buf[buf.len() - 5..], true);
    assert!(!b.activate);
    assert_eq!((b.forward, b.answers), (5, 1));
}

/// Runs one link through `relay` over in-memory socket pairs: the
/// client's stream reads ahead in `record`-byte records (as TLS does), the
/// test plays both peers with `peers` (what it returns is kept open until
/// the link ended). Returns the outcome and the link's statistics.
async fn relay_over_pairs<F, Fut, K>(record: usize, peers: F) -> (Outcome, crate::stats::Totals)
where
    F: FnOnce(tokio::net::UnixStream, tokio::net::UnixStream) -> Fut,
    Fut: Future<Output = K>,
{
    use crate::registry::SessionEntry;
    let (client_end, client_peer) = tokio::net::UnixStream::pair().unwrap();
    let (server_end, server_peer) = tokio::net::UnixStream::pair().unwrap();
    let mut client = Stream::read_ahead(client_end, record);
    let addr = Arc::new(crate::config::Endpoint::Unix {
        dir: "/nonexistent".into(),
        port: 1,
    });
    let mut server = ServerConn::new(Stream::from(server_end), addr);
    let (entry, epoch, stats) = (
        SessionEntry::default(),
        Default::default(),
        PoolStats::new(),
    );
    let rules = Rules {
        bound: 0,
        fast_close: false,
        extra_tracked: &[],
        release_when_idle: true,
        statement_mode: false,
        max_len: 1 << 20,
        limits: Limits::default(),
        clock: Clock {
            target: &entry,
            epoch: &epoch,
        },
        stats: &stats,
        started: crate::runtime::clock::clock_ns(),
        wait_us: 0,
        max_prepared: 0,
    };
    let (mut params, mut prepared, mut cbuf) = (Arc::new(Params::new()), None, BytesMut::new());
    let link = relay(
        &mut client,
        &mut cbuf,
        &mut server,
        &mut params,
        &mut prepared,
        &rules,
    );
    let bounded = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        tokio::join!(link, peers(client_peer, server_peer))
    });
    let (outcome, _kept) = bounded.await.expect("the link hung");
    assert!(server.buf.is_empty());
    if matches!(outcome, Outcome::Released) {
        assert!(cbuf.is_empty(), "a released link left client bytes behind");
    }
    (outcome, stats.totals())
}

fn answer(buf: &mut BytesMut, tag: &str, status: u8) {
    crate::protocol::backend::command_complete(buf, tag);
    rfq(buf, status);
}

/// A transaction block pipelined in one write (BEGIN, SELECT, COMMIT),
/// relayed over streams that read ahead: PostgreSQL gets exactly the
/// client's bytes, the client exactly PostgreSQL's, and the server is
/// released only at the last ReadyForQuery 'I'.
#[tokio::test]
async fn a_pipelined_transaction_relays_over_read_ahead_streams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = BytesMut::new();
    for q in ["BEGIN", "SELECT 1", "COMMIT"] {
        frontend::query(q, &mut request).unwrap();
    }
    let mut answers = BytesMut::new();
    answer(&mut answers, "BEGIN", b'T');
    answer(&mut answers, "SELECT 1", b'T');
    answer(&mut answers, "COMMIT", b'I');
    let (req, ans) = (request.clone(), answers.clone());
    let (outcome, t) = relay_over_pairs(7, |mut client, mut server| async move {
        client.write_all(&req).await.unwrap();
        let mut got = vec![0u8; req.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, &req[..], "PostgreSQL got other bytes");
        // Answered in two parts: the 'T' after BEGIN must not end it.
        let (first, rest) = ans.split_at(13);
        server.write_all(first).await.unwrap();
        tokio::task::yield_now().await;
        server.write_all(rest).await.unwrap();
        let mut back = vec![0u8; ans.len()];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(back, &ans[..], "the client got other bytes");
    })
    .await;
    assert!(matches!(outcome, Outcome::Released), "{outcome:?}");
    assert_eq!((t.xact_count, t.bytes_received), (1, request.len() as u64));
    assert_eq!(t.bytes_sent, answers.len() as u64);
}

/// Two transactions sent before the first is answered end one link only
/// after the second's ReadyForQuery; the client leaving ends it too, with
/// the server clean.
#[tokio::test]
async fn a_link_ends_when_nothing_is_outstanding() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = BytesMut::new();
    frontend::query("SELECT 1", &mut request).unwrap();
    frontend::query("SELECT 2", &mut request).unwrap();
    let req = request.clone();
    let (outcome, t) = relay_over_pairs(4, |mut client, mut server| async move {
        client.write_all(&req).await.unwrap();
        let mut got = vec![0u8; req.len()];
        server.read_exact(&mut got).await.unwrap();
        let mut a = BytesMut::new();
        answer(&mut a, "SELECT 1", b'I');
        server.write_all(&a).await.unwrap();
        let mut back = vec![0u8; a.len()];
        client.read_exact(&mut back).await.unwrap();
        // Still linked: the second answer is outstanding.
        answer(&mut a, "SELECT 1", b'I');
        server.write_all(&a[back.len()..]).await.unwrap();
        client.read_exact(&mut back).await.unwrap();
    })
    .await;
    assert!(matches!(outcome, Outcome::Released), "{outcome:?}");
    // Pipelined requests make one query (and transaction), as PgBouncer
    // counts them.
    assert_eq!((t.query_count, t.xact_count), (1, 1));
    let (outcome, _) = relay_over_pairs(3, |mut client, server| async move {
        let mut terminate = BytesMut::new();
        frontend::terminate(&mut terminate);
        client.write_all(&terminate).await.unwrap();
        server
    })
    .await;
    assert!(
        matches!(outcome, Outcome::ClientGone { clean: true }),
        "{outcome:?}"
    );
}

/// A filter that hides every ParseComplete and turns every CloseComplete
/// into a BindComplete, as a tracked link's queue may.
struct HideAndSwap;

impl ServerMessages for HideAndSwap {
    fn needs_whole(&self, tag: u8) -> bool {
        matches!(tag, b'1' | b'3')
    }
    fn verdict(&mut self, tag: u8, _: &[u8]) -> Verdict {
        match tag {
            b'1' => Verdict::Drop,
            b'3' => Verdict::Replace(bytes::Bytes::from_static(b"2\0\0\0\x04")),
            _ => Verdict::Forward,
        }
    }
}

/// The one server scanner with a filter: hidden messages are cut out of
/// the buffer and replacements put in place, in one pass, and a message
/// the filter must see whole waits for the rest of it.
#[test]
fn a_filtered_scan_edits_the_batch_in_place() {
    let mut buf = BytesMut::from(&b"1\0\0\0\x043\0\0\0\x04"[..]);
    crate::protocol::backend::command_complete(&mut buf, "SELECT 1");
    rfq(&mut buf, b'I');
    buf.extend_from_slice(b"1\0\0");
    let mut skip = 0;
    let b = scan_server(&mut buf, &mut skip, false, |_, _| {}, &mut HideAndSwap);
    let mut want = BytesMut::from(&b"2\0\0\0\x04"[..]);
    crate::protocol::backend::command_complete(&mut want, "SELECT 1");
    rfq(&mut want, b'I');
    assert_eq!((b.forward, b.ready_count, skip), (want.len(), 1, 0));
    assert_eq!(&buf[..b.forward], &want[..]);
    assert_eq!(&buf[b.forward..], b"1\0\0", "a partial ParseComplete waits");
}
