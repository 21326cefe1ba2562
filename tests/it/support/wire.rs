//! Raw PostgreSQL wire protocol for protocol-level tests: build frontend
//! messages as bytes, read backend messages (tag + body) with a timeout.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Upper bound for any single read in these tests.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Protocol 3.0.
pub const PROTOCOL_3_0: u32 = 3 << 16;

/// A StartupMessage for the given protocol version and parameters.
pub fn startup_with_version(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    untagged(&body)
}

/// A protocol 3.0 StartupMessage with `user` and `database`.
pub fn startup(user: &str, database: &str) -> Vec<u8> {
    startup_with_version(PROTOCOL_3_0, &[("user", user), ("database", database)])
}

/// SSLRequest.
pub fn ssl_request() -> Vec<u8> {
    untagged(&80877103u32.to_be_bytes())
}

/// GSSENCRequest.
pub fn gssenc_request() -> Vec<u8> {
    untagged(&80877104u32.to_be_bytes())
}

/// An untagged message: Int32 length (including itself) then body.
pub fn untagged(body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A tagged message: tag, Int32 length (including itself), body.
pub fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Simple Query.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    tagged(b'Q', &body)
}

/// PasswordMessage (cleartext or md5 answer).
pub fn password(pw: &str) -> Vec<u8> {
    let mut body = pw.as_bytes().to_vec();
    body.push(0);
    tagged(b'p', &body)
}

/// Terminate.
pub fn terminate() -> Vec<u8> {
    tagged(b'X', &[])
}

/// One backend message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// Fields of an ErrorResponse / NoticeResponse by field code.
    pub fn fields(&self) -> HashMap<u8, String> {
        let mut out = HashMap::new();
        let mut rest = &self.body[..];
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            out.insert(code, String::from_utf8_lossy(&tail[..end]).into_owned());
            rest = tail.get(end + 1..).unwrap_or(&[]);
        }
        out
    }

    /// SQLSTATE of an ErrorResponse.
    pub fn sqlstate(&self) -> String {
        self.fields().get(&b'C').cloned().unwrap_or_default()
    }

    /// Message text of an ErrorResponse.
    pub fn message(&self) -> String {
        self.fields().get(&b'M').cloned().unwrap_or_default()
    }

    /// Name and value of a ParameterStatus.
    pub fn parameter(&self) -> (String, String) {
        let mut parts = self.body.split(|&b| b == 0);
        let name = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
        let value = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
        (name, value)
    }

    /// The Int32 at `offset` of the body.
    pub fn int32(&self, offset: usize) -> i32 {
        i32::from_be_bytes(self.body[offset..offset + 4].try_into().unwrap())
    }
}

/// Write all bytes and flush.
pub async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// Read one byte (the answer to SSLRequest / GSSENCRequest).
pub async fn read_byte<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    tokio::time::timeout(READ_TIMEOUT, s.read_exact(&mut b))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    Ok(b[0])
}

/// Read one backend message. `Ok(None)` on a clean EOF (connection closed
/// between messages); an error on timeout or EOF inside a message.
pub async fn read_msg<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<Msg>> {
    tokio::time::timeout(READ_TIMEOUT, read_msg_inner(s))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))?
}

async fn read_msg_inner<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<Msg>> {
    let mut head = [0u8; 5];
    let n = s.read(&mut head[..1]).await?;
    if n == 0 {
        return Ok(None);
    }
    s.read_exact(&mut head[1..]).await?;
    let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    assert!(
        (4..=64 << 20).contains(&len),
        "implausible message length {len}"
    );
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).await?;
    Ok(Some(Msg { tag: head[0], body }))
}

/// Read messages until ReadyForQuery (included) and return them all; an
/// error if the connection closes first.
pub async fn read_until_ready<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<Msg>> {
    let mut out = Vec::new();
    loop {
        match read_msg(s).await? {
            Some(m) => {
                let done = m.tag == b'Z';
                out.push(m);
                if done {
                    return Ok(out);
                }
            }
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("closed before ReadyForQuery after {out:?}"),
                ));
            }
        }
    }
}

/// Read until the first ErrorResponse (returned) or EOF / ReadyForQuery
/// (None). Used where an error is expected.
pub async fn expect_error<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<Msg>> {
    loop {
        match read_msg(s).await? {
            Some(m) if m.tag == b'E' => return Ok(Some(m)),
            Some(m) if m.tag == b'Z' => return Ok(None),
            Some(_) => continue,
            None => return Ok(None),
        }
    }
}

/// After an error the server must close the connection: read until EOF
/// (a reset also counts as closed). Returns the messages seen first.
pub async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<Msg>> {
    let mut out = Vec::new();
    loop {
        match read_msg(s).await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(e),
            Err(_) => return Ok(out), // reset / EOF inside a message
        }
    }
}

/// Log in with trust (no password) and read up to ReadyForQuery; returns the
/// login messages. Panics on anything but a successful login.
pub async fn login_trust<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    user: &str,
    database: &str,
) -> Vec<Msg> {
    send(s, &startup(user, database)).await.unwrap();
    let msgs = read_until_ready(s).await.expect("login");
    assert_eq!(msgs[0].tag, b'R', "expected AuthenticationOk, got {msgs:?}");
    assert_eq!(
        msgs[0].int32(0),
        0,
        "expected AuthenticationOk, got {msgs:?}"
    );
    assert!(msgs.iter().all(|m| m.tag != b'E'), "login failed: {msgs:?}");
    msgs
}

/// Run a simple query and return the first column of every DataRow as text.
pub async fn simple_query<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    sql: &str,
) -> Result<Vec<Option<String>>, Msg> {
    send(s, &query(sql)).await.unwrap();
    let msgs = read_until_ready(s).await.expect("query answer");
    if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
        return Err(e.clone());
    }
    Ok(msgs
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            let len = i32::from_be_bytes(m.body[2..6].try_into().unwrap());
            (len >= 0).then(|| String::from_utf8_lossy(&m.body[6..6 + len as usize]).into_owned())
        })
        .collect())
}
