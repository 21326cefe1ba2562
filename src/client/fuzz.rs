//! Fuzz entry points for what clients and servers send (see `crate::fuzz`):
//! the startup family, the login-phase messages, the relay's client and
//! server scanners fed in reads of varying size, as the relay feeds them,
//! with the invariants the relay relies on checked.

use bytes::BytesMut;

use super::scan::{Pass, scan_client, scan_server};
use crate::protocol::frontend::{
    FrontendMessage, SaslInitialResponse, StartupPacket, read_message, read_startup,
};

/// The read sizes: the first byte chooses them (1 to 64 bytes, or all at
/// once for 0), the rest is the stream.
fn reads(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((0, rest)) => (rest.len().max(1), rest),
        Some((n, rest)) => (usize::from(n % 64) + 1, rest),
        None => (1, data),
    }
}

/// A connection's first packets (SSLRequest, GSSENCRequest,
/// CancelRequest, StartupMessage), then the login exchange's messages
/// (PasswordMessage, SASLInitialResponse, SASLResponse).
pub(crate) fn startup_and_login(data: &[u8]) {
    let (step, stream) = reads(data);
    let mut buf = BytesMut::new();
    let mut started = false;
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            if !started {
                match read_startup(&mut buf) {
                    Ok(Some(StartupPacket::Startup(s))) => {
                        started = true;
                        for (k, v) in s.params() {
                            std::hint::black_box((k, v));
                        }
                        std::hint::black_box(s.param("user"));
                    }
                    Ok(Some(other)) => {
                        std::hint::black_box(other);
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            } else {
                match read_message(&mut buf, 1 << 20) {
                    Ok(Some(FrontendMessage::Password(body))) => {
                        let _ = SaslInitialResponse::parse(body.clone());
                        let _ = crate::protocol::frontend::parse_password(body);
                    }
                    Ok(Some(m)) => {
                        std::hint::black_box(m);
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }
}

/// The relay's client direction: forwarded bytes are a prefix of the
/// stream, in order, and never more than was read.
pub(crate) fn client_stream(data: &[u8]) {
    let (step, stream) = reads(data);
    let (mut buf, mut sent) = (BytesMut::new(), 0usize);
    let (mut skip, mut since_exec, mut in_group) = (0usize, 0u32, false);
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        let stop_at_named = chunk.first().is_some_and(|b| b & 1 == 1);
        match scan_client(
            &buf,
            &mut skip,
            &mut since_exec,
            1 << 16,
            (stop_at_named, in_group),
        ) {
            Ok(batch) => {
                assert!(batch.forward <= buf.len(), "forwarded more than read");
                let out = buf.split_to(batch.forward);
                assert_eq!(&out[..], &stream[sent..sent + out.len()], "bytes reordered");
                sent += out.len();
                if let Some(ext) = batch.extended {
                    in_group = ext;
                }
                if batch.terminate {
                    return;
                }
            }
            // A protocol error ends the session: nothing more is read.
            Err(_) => return,
        }
    }
}

/// The relay's server direction (every message forwarded): forwarded
/// bytes are the stream's, in order; a ReadyForQuery status is one
/// PostgreSQL sends.
pub(crate) fn server_stream(data: &[u8]) {
    let (step, stream) = reads(data);
    let (mut buf, mut sent) = (BytesMut::new(), 0usize);
    let mut skip = 0usize;
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        let statement_mode = chunk.first().is_some_and(|b| b & 1 == 1);
        let batch = scan_server(
            &mut buf,
            &mut skip,
            statement_mode,
            |n, v| {
                std::hint::black_box((n, v));
            },
            &mut Pass,
        );
        assert!(batch.forward <= buf.len(), "forwarded more than read");
        let out = buf.split_to(batch.forward);
        assert_eq!(&out[..], &stream[sent..sent + out.len()], "bytes reordered");
        sent += out.len();
        std::hint::black_box((
            batch.ready_count,
            batch.last_status,
            batch.transaction_block,
        ));
    }
}
