//! A standby's refusal of a write (read/write splitting): whether an
//! answer the relay holds back is SQLSTATE 25006 (read_only_sql_transaction),
//! so that the unit it answers can go to the primary instead
//! (`relay::refusal` decides when an answer may be held back).

/// Whether `answer` (a standby's whole answer to a bounded unit, none of
/// it forwarded yet) holds a refusal with SQLSTATE 25006
/// (read_only_sql_transaction). What came before it (a row description,
/// even rows of a read before the write) is dropped with it: the client
/// gets it all from the primary. Out of line: only a standby's whole first
/// answer is looked at.
#[cold]
#[inline(never)]
pub(super) fn refused_read_only(answer: &[u8]) -> bool {
    let mut pos = 0;
    while let Some(h) = answer.get(pos..pos + 5) {
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let Some(body) = answer.get(pos + 5..pos + 1 + len) else {
            return false;
        };
        if h[0] == b'E' {
            return error_code(body) == Some(*b"25006");
        }
        pos += 1 + len;
    }
    false
}

/// The SQLSTATE field ('C') of an ErrorResponse's body.
fn error_code(body: &[u8]) -> Option<[u8; 5]> {
    let mut rest = body;
    while let [field, tail @ ..] = rest {
        if *field == 0 {
            return None;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if *field == b'C' {
            return tail[..end].try_into().ok();
        }
        rest = &tail[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn error(code: &str) -> Vec<u8> {
        let body =
            format!("SERROR\0C{code}\0Mcannot execute INSERT in a read-only transaction\0\0");
        msg(b'E', body.as_bytes())
    }

    #[test]
    fn only_a_25006_error_is_a_refusal() {
        let ready = msg(b'Z', b"I");
        let refused = [msg(b'T', &[0, 0]), error("25006"), ready.clone()].concat();
        assert!(refused_read_only(&refused));
        // Flushed before its ReadyForQuery: still a refusal.
        assert!(refused_read_only(&error("25006")));
        assert!(!refused_read_only(
            &[error("42601"), ready.clone()].concat()
        ));
        assert!(!refused_read_only(
            &[msg(b'C', b"SELECT 1\0"), ready].concat()
        ));
        // Cut short: not known to be one.
        let e = error("25006");
        assert!(!refused_read_only(&e[..e.len() - 3]));
        assert_eq!(error_code(b"Mno code\0\0"), None);
    }
}
