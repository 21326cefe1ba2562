//! Property tests of the relay's scanners: a message stream cut into reads
//! at any places gives the same bytes forwarded and the same transaction
//! boundaries as the stream in one piece. The scanners see the stream as
//! the relay feeds them: bytes arrive, a scan forwards a prefix (whole
//! messages, or the start of a message too long to wait for, whose rest is
//! passed over with `skip`), and what was not forwarded waits for more.

use bytes::{BufMut, BytesMut};
use postgres_protocol::message::frontend;
use proptest::prelude::*;

use super::scan::{ClientBatch, Pass, scan_client, scan_server};

/// A client message, as drivers send them.
#[derive(Debug, Clone)]
enum Front {
    Query(String),
    Parse(String),
    Bind(String),
    Describe,
    Execute,
    Sync,
    Flush,
    Close,
    CopyData(usize),
    CopyDone,
}

fn front() -> impl Strategy<Value = Front> {
    prop_oneof![
        "[ -~]{0,40}".prop_map(Front::Query),
        "[a-z]{0,6}".prop_map(Front::Parse),
        "[a-z]{0,6}".prop_map(Front::Bind),
        Just(Front::Describe),
        Just(Front::Execute),
        Just(Front::Sync),
        Just(Front::Flush),
        Just(Front::Close),
        (0usize..3000).prop_map(Front::CopyData),
        Just(Front::CopyDone),
    ]
}

fn encode_front(msgs: &[Front]) -> BytesMut {
    let mut buf = BytesMut::new();
    for m in msgs {
        match m {
            Front::Query(q) => frontend::query(q, &mut buf).unwrap(),
            Front::Parse(name) => frontend::parse(name, "SELECT $1", [23], &mut buf).unwrap(),
            Front::Bind(stmt) => frontend::bind(
                "",
                stmt,
                Some(1),
                [7],
                |v: i32, out: &mut BytesMut| {
                    out.put_i32(v);
                    Ok::<_, Box<dyn std::error::Error + Sync + Send>>(postgres_protocol::IsNull::No)
                },
                Some(1),
                &mut buf,
            )
            .map_err(|_| ())
            .unwrap(),
            Front::Describe => frontend::describe(b'P', "", &mut buf).unwrap(),
            Front::Execute => frontend::execute("", 0, &mut buf).unwrap(),
            Front::Sync => frontend::sync(&mut buf),
            Front::Flush => frontend::flush(&mut buf),
            Front::Close => frontend::close(b'S', "", &mut buf).unwrap(),
            Front::CopyData(n) => {
                buf.put_u8(b'd');
                buf.put_i32(4 + *n as i32);
                buf.put_bytes(b'x', *n);
            }
            Front::CopyDone => frontend::copy_done(&mut buf),
        }
    }
    buf
}

/// Cut `len` bytes at the given places (sorted, deduplicated, in range).
fn pieces(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    at.push(0);
    at.push(len);
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| (w[0], w[1])).collect()
}

/// What the relay's client direction makes of `stream` arriving in
/// `pieces`: the bytes forwarded in order, and the batch totals.
fn feed_client(stream: &[u8], pieces: &[(usize, usize)]) -> (Vec<u8>, ClientBatch) {
    let (mut buf, mut out) = (BytesMut::new(), Vec::new());
    let (mut skip, mut since_exec, mut in_group) = (0usize, 0u32, false);
    let mut total = ClientBatch::default();
    for &(a, b) in pieces {
        buf.extend_from_slice(&stream[a..b]);
        let batch = scan_client(&buf, &mut skip, &mut since_exec, 1 << 20, (false, in_group))
            .expect("valid messages");
        out.extend_from_slice(&buf.split_to(batch.forward));
        total.answers += batch.answers;
        total.parses += batch.parses;
        total.binds += batch.binds;
        total.ignored += batch.ignored;
        total.copy_data |= batch.copy_data;
        if let Some(ext) = batch.extended {
            total.extended = Some(ext);
            in_group = ext;
        }
        total.forward += batch.forward;
    }
    assert!(
        buf.is_empty() && skip == 0,
        "every byte forwarded at the end"
    );
    (out, total)
}

/// A server message.
#[derive(Debug, Clone)]
enum Back {
    Row(usize),
    Complete,
    Ready(u8),
    Param(String, String),
    Notice,
}

fn back() -> impl Strategy<Value = Back> {
    prop_oneof![
        (0usize..5000).prop_map(Back::Row),
        Just(Back::Complete),
        prop_oneof![Just(b'I'), Just(b'T'), Just(b'E')].prop_map(Back::Ready),
        ("[a-z_]{1,12}", "[ -~]{0,20}").prop_map(|(n, v)| Back::Param(n, v)),
        Just(Back::Notice),
    ]
}

fn message(buf: &mut BytesMut, tag: u8, body: &[u8]) {
    buf.put_u8(tag);
    buf.put_i32(4 + body.len() as i32);
    buf.put_slice(body);
}

fn encode_back(msgs: &[Back]) -> BytesMut {
    let mut buf = BytesMut::new();
    for m in msgs {
        match m {
            Back::Row(n) => {
                let mut body = vec![0, 1];
                body.extend_from_slice(&(*n as i32).to_be_bytes());
                body.resize(body.len() + n, b'r');
                message(&mut buf, b'D', &body);
            }
            Back::Complete => message(&mut buf, b'C', b"SELECT 1\0"),
            Back::Ready(s) => message(&mut buf, b'Z', &[*s]),
            Back::Param(n, v) => message(&mut buf, b'S', format!("{n}\0{v}\0").as_bytes()),
            Back::Notice => message(&mut buf, b'N', b"SNOTICE\0Mhello\0\0"),
        }
    }
    buf
}

/// What the relay's server direction makes of `stream` arriving in
/// `pieces`: bytes forwarded, ReadyForQuery statuses in order, and the
/// ParameterStatus pairs seen.
fn feed_server(
    stream: &[u8],
    pieces: &[(usize, usize)],
) -> (Vec<u8>, Vec<u8>, Vec<(String, String)>) {
    let (mut buf, mut out) = (BytesMut::new(), Vec::new());
    let (mut skip, mut statuses, mut params) = (0usize, Vec::new(), Vec::new());
    for &(a, b) in pieces {
        buf.extend_from_slice(&stream[a..b]);
        let batch = scan_server(
            &mut buf,
            &mut skip,
            false,
            |n, v| params.push((n.to_owned(), v.to_owned())),
            &mut Pass,
        );
        let sent = buf.split_to(batch.forward);
        // A batch ends at its last ReadyForQuery's status: each one is in
        // the bytes forwarded, whole.
        if batch.ready_count > 0 {
            statuses.push((batch.ready_count, batch.last_status));
        }
        out.extend_from_slice(&sent);
    }
    assert!(
        buf.is_empty() && skip == 0,
        "every byte forwarded at the end"
    );
    // The statuses as the link sees them: the count and the last status of
    // each batch (what `relay` acts on).
    let flat = statuses
        .iter()
        .flat_map(|&(n, s)| std::iter::repeat_n(0u8, n as usize - 1).chain([s]))
        .collect();
    (out, flat, params)
}

/// The ReadyForQuery statuses of a server stream, in order.
fn statuses_of(msgs: &[Back]) -> Vec<u8> {
    msgs.iter()
        .filter_map(|m| match m {
            Back::Ready(s) => Some(*s),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn client_stream_cut_anywhere_scans_as_one_piece(
        msgs in prop::collection::vec(front(), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let stream = encode_front(&msgs);
        let (whole_out, whole) = feed_client(&stream, &pieces(stream.len(), &[]));
        let (cut_out, cut) = feed_client(&stream, &pieces(stream.len(), &cuts));
        prop_assert_eq!(&whole_out[..], &stream[..]);
        prop_assert_eq!(&cut_out[..], &stream[..]);
        prop_assert_eq!(cut.answers, whole.answers);
        prop_assert_eq!(cut.parses, whole.parses);
        prop_assert_eq!(cut.binds, whole.binds);
        prop_assert_eq!(cut.ignored, whole.ignored);
        prop_assert_eq!(cut.extended, whole.extended);
        prop_assert_eq!(cut.copy_data, whole.copy_data);
        // Every Query and Sync is answered, the way the scan counts them.
        let expected = msgs.iter().filter(|m| matches!(m, Front::Query(_) | Front::Sync)).count();
        prop_assert_eq!(whole.answers as usize, expected);
    }

    #[test]
    fn server_stream_cut_anywhere_scans_as_one_piece(
        msgs in prop::collection::vec(back(), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let stream = encode_back(&msgs);
        let (cut_out, cut_status, cut_params) = feed_server(&stream, &pieces(stream.len(), &cuts));
        prop_assert_eq!(&cut_out[..], &stream[..]);
        // The last status of every batch is the status of its last
        // ReadyForQuery, and the counts add up, wherever the cuts fell.
        let all = statuses_of(&msgs);
        prop_assert_eq!(cut_status.len(), all.len());
        for (seen, want) in cut_status.iter().zip(&all) {
            if *seen != 0 {
                prop_assert_eq!(seen, want);
            }
        }
        let want_params: Vec<(String, String)> = msgs
            .iter()
            .filter_map(|m| match m {
                Back::Param(n, v) => Some((n.clone(), v.clone())),
                _ => None,
            })
            .collect();
        prop_assert_eq!(cut_params, want_params);
    }
}
