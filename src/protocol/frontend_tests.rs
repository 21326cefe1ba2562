//! Unit tests for the frontend parser, with byte sequences built by
//! postgres-protocol's frontend writers (what real clients send).

use super::*;
use bytes::BufMut;
use postgres_protocol::message::frontend;

fn startup_bytes(version: i32, params: &[(&str, &str)]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i32(version);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut buf = BytesMut::new();
    buf.put_i32(body.len() as i32 + 4);
    buf.put_slice(&body);
    buf
}

#[test]
fn startup_message_3_0() {
    let mut buf = BytesMut::new();
    frontend::startup_message([("user", "alice"), ("database", "db")], &mut buf).unwrap();
    let whole = buf.clone();
    // Not whole yet: every proper prefix gives None and consumes nothing.
    for n in 0..whole.len() {
        let mut part = BytesMut::from(&whole[..n]);
        assert!(read_startup(&mut part).unwrap().is_none(), "prefix {n}");
        assert_eq!(part.len(), n);
    }
    match read_startup(&mut buf).unwrap() {
        Some(StartupPacket::Startup(s)) => {
            assert_eq!(s.minor, 0);
            assert_eq!(s.param("user"), Some("alice"));
            assert_eq!(s.param("database"), Some("db"));
            assert!(s.protocol_options.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(buf.is_empty());
}

#[test]
fn startup_3_2_keeps_protocol_options_apart() {
    let mut buf = startup_bytes((3 << 16) | 2, &[("user", "u"), ("_pq_.compression", "on")]);
    match read_startup(&mut buf).unwrap() {
        Some(StartupPacket::Startup(s)) => {
            assert_eq!(s.minor, 2);
            assert_eq!(s.params().collect::<Vec<_>>(), vec![("user", "u")]);
            assert_eq!(s.protocol_options, vec!["_pq_.compression".to_string()]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ssl_gss_and_cancel_requests() {
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    assert_eq!(
        read_startup(&mut buf).unwrap(),
        Some(StartupPacket::SslRequest)
    );
    let mut buf = BytesMut::new();
    buf.put_i32(8);
    buf.put_i32(GSSENC_REQUEST_CODE);
    assert_eq!(
        read_startup(&mut buf).unwrap(),
        Some(StartupPacket::GssEncRequest)
    );
    let mut buf = BytesMut::new();
    frontend::cancel_request(42, -7, &mut buf);
    assert_eq!(
        read_startup(&mut buf).unwrap(),
        Some(StartupPacket::Cancel {
            process_id: 42,
            secret_key: -7
        })
    );
}

#[test]
fn unsupported_versions_and_bad_lengths() {
    let mut buf = startup_bytes(4 << 16, &[("user", "u")]);
    let err = read_startup(&mut buf).unwrap_err();
    assert!(matches!(err, ProtocolError::UnsupportedVersion(v) if v == 4 << 16));
    assert_eq!(err.sqlstate(), "0A000");
    assert!(err.to_string().contains("4.0"));

    let mut buf = BytesMut::from(&[0u8, 0, 0, 4, 0, 3, 0, 0][..]);
    assert!(matches!(
        read_startup(&mut buf),
        Err(ProtocolError::BadStartupLength(4))
    ));
    let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0][..]);
    assert!(matches!(
        read_startup(&mut buf),
        Err(ProtocolError::BadStartupLength(_))
    ));
    // An SSLRequest with a wrong length.
    let mut buf = BytesMut::new();
    buf.put_i32(12);
    buf.put_i32(SSL_REQUEST_CODE);
    buf.put_i32(0);
    assert!(read_startup(&mut buf).is_err());
}

#[test]
fn startup_without_terminator_is_malformed() {
    let mut buf = BytesMut::new();
    buf.put_i32(4 + 4 + 4);
    buf.put_i32(196_608); // protocol 3.0
    buf.put_slice(b"use");
    buf.put_u8(b'r');
    assert!(matches!(
        read_startup(&mut buf),
        Err(ProtocolError::Malformed { .. })
    ));
}

#[test]
fn every_tagged_message_round_trips() {
    let mut buf = BytesMut::new();
    frontend::query("SELECT 1", &mut buf).unwrap();
    frontend::parse("s1", "SELECT $1", [23u32], &mut buf).unwrap();
    frontend::bind(
        "p1",
        "s1",
        [1i16],
        [Some(7i32)],
        |v, out| {
            match v {
                Some(v) => out.put_i32(v),
                None => return Ok(postgres_protocol::IsNull::Yes),
            }
            Ok::<_, Box<dyn std::error::Error + Sync + Send>>(postgres_protocol::IsNull::No)
        },
        [0i16],
        &mut buf,
    )
    .map_err(|_| ())
    .unwrap();
    frontend::describe(b'S', "s1", &mut buf).unwrap();
    frontend::execute("p1", 10, &mut buf).unwrap();
    frontend::close(b'P', "p1", &mut buf).unwrap();
    frontend::flush(&mut buf);
    frontend::sync(&mut buf);
    frontend::CopyData::new(&b"a\tb\n"[..])
        .unwrap()
        .write(&mut buf);
    frontend::copy_done(&mut buf);
    frontend::copy_fail("stop", &mut buf).unwrap();
    frontend::password_message(b"secret", &mut buf).unwrap();
    frontend::terminate(&mut buf);

    let mut got = Vec::new();
    while let Some(m) = read_message(&mut buf, 1 << 20).unwrap() {
        got.push(m);
    }
    assert!(buf.is_empty());
    assert_eq!(got[0], FrontendMessage::Query("SELECT 1".into()));
    assert_eq!(
        got[1],
        FrontendMessage::Parse {
            name: "s1".into(),
            query: "SELECT $1".into(),
            param_types: vec![23]
        }
    );
    match &got[2] {
        FrontendMessage::Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        } => {
            assert_eq!((portal.as_str(), statement.as_str()), ("p1", "s1"));
            assert_eq!(param_formats, &[1]);
            assert_eq!(params, &[Some(Bytes::from_static(&[0, 0, 0, 7]))]);
            assert_eq!(result_formats, &[0]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        got[3],
        FrontendMessage::Describe {
            kind: b'S',
            name: "s1".into()
        }
    );
    assert_eq!(
        got[4],
        FrontendMessage::Execute {
            portal: "p1".into(),
            max_rows: 10
        }
    );
    assert_eq!(
        got[5],
        FrontendMessage::Close {
            kind: b'P',
            name: "p1".into()
        }
    );
    assert_eq!(got[6], FrontendMessage::Flush);
    assert_eq!(got[7], FrontendMessage::Sync);
    assert_eq!(
        got[8],
        FrontendMessage::CopyData(Bytes::from_static(b"a\tb\n"))
    );
    assert_eq!(got[9], FrontendMessage::CopyDone);
    assert_eq!(got[10], FrontendMessage::CopyFail("stop".into()));
    match &got[11] {
        FrontendMessage::Password(body) => {
            assert_eq!(parse_password(body.clone()).unwrap(), "secret")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(got[12], FrontendMessage::Terminate);
}

#[test]
fn length_is_checked_before_buffering() {
    // Only the header has arrived, announcing 1 MB: rejected at once.
    let mut buf = BytesMut::new();
    buf.put_u8(b'Q');
    buf.put_i32(1 << 20);
    let err = read_message(&mut buf, 4096).unwrap_err();
    assert!(matches!(err, ProtocolError::TooLong { len, max: 4096, .. } if len == 1 << 20));
    assert_eq!(err.sqlstate(), "08P01");
    // The type byte counts too (as in PgBouncer): 2^31-1 is too long
    // under the default max_packet_size of 2^31-1, one less is not.
    let mut buf = BytesMut::new();
    buf.put_u8(b'Q');
    buf.put_u32(u32::MAX >> 1);
    let err = read_message(&mut buf, u32::MAX >> 1).unwrap_err();
    assert!(matches!(err, ProtocolError::TooLong { .. }), "{err:?}");
    let mut buf = BytesMut::new();
    buf.put_u8(b'Q');
    buf.put_u32((u32::MAX >> 1) - 1);
    assert!(matches!(read_message(&mut buf, u32::MAX >> 1), Ok(None)));
    let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
    assert!(matches!(
        read_message(&mut buf, 4096),
        Err(ProtocolError::BadLength { len: 3, .. })
    ));
}

#[test]
fn garbage_is_rejected() {
    let mut buf = BytesMut::from(&[b'!', 0, 0, 0, 4][..]);
    assert!(matches!(
        read_message(&mut buf, 4096),
        Err(ProtocolError::UnknownTag(b'!'))
    ));
    // A Query whose string is not terminated.
    let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 6, b'a', b'b'][..]);
    assert!(read_message(&mut buf, 4096).is_err());
    // A Bind announcing more parameter bytes than present.
    let mut body = BytesMut::new();
    body.put_slice(b"\0\0");
    body.put_i16(0);
    body.put_i16(1);
    body.put_i32(100);
    assert!(FrontendMessage::parse(b'B', body.freeze()).is_err());
    // Trailing bytes after a Sync.
    assert!(FrontendMessage::parse(b'S', Bytes::from_static(b"x")).is_err());
}

#[test]
fn sasl_initial_response() {
    let mut buf = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc", &mut buf).unwrap();
    let msg = read_message(&mut buf, 4096).unwrap().unwrap();
    let FrontendMessage::Password(body) = msg else {
        panic!()
    };
    let r = SaslInitialResponse::parse(body).unwrap();
    assert_eq!(r.mechanism, "SCRAM-SHA-256");
    assert_eq!(&r.data[..], b"n,,n=,r=abc");
}
