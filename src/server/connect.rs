//! Connecting and logging in to PostgreSQL: trust, cleartext, md5 and
//! SCRAM-SHA-256 (with a password, or with the keys a client proved).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::AsyncWriteExt;

use super::{BackendKey, ServerConn, ServerError};
use crate::auth::{self, ScramClient, ScramCredentials, ScramKeys};
use crate::config::{Endpoint, ServerTls};
use crate::transport::Stream;

/// The secret the pooler logs in to PostgreSQL with.
#[derive(Clone)]
pub enum ServerCredentials {
    /// No secret known: only trust (or a server that asks for nothing) works.
    None,
    /// auth_file holds a SCRAM verifier for the user: it cannot log in by
    /// itself, only with the keys a client proves (learned at login).
    ScramVerifier,
    /// A plain-text password.
    Password(String),
    /// An md5 secret (`md5...`): enough for md5 authentication.
    Md5Secret(String),
    /// SCRAM keys a client proved; work when PostgreSQL holds the same verifier.
    ScramKeys(ScramKeys),
}

impl std::fmt::Debug for ServerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerCredentials::None => "None",
            ServerCredentials::ScramVerifier => "ScramVerifier",
            ServerCredentials::Password(_) => "Password(<redacted>)",
            ServerCredentials::Md5Secret(_) => "Md5Secret(<redacted>)",
            ServerCredentials::ScramKeys(_) => "ScramKeys(<redacted>)",
        })
    }
}

/// Everything needed to open a server connection.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    /// Where (the first host of a host list; `connect` is told which).
    pub addr: Arc<Endpoint>,
    /// Database name on the server.
    pub database: String,
    /// User name on the server.
    pub user: String,
    /// Extra startup parameters (client_encoding, DateStyle, ... from the
    /// [databases] entry).
    pub startup_params: Vec<(String, String)>,
    /// TLS towards the server (None: `server_tls_sslmode = disable`).
    pub tls: Option<Arc<ServerTls>>,
    /// tcp_keepalive and the other TCP keys, for the server's socket.
    pub tcp: crate::transport::TcpOptions,
}

/// Open and log in a server connection to `addr` (one of the target's
/// hosts) within `timeout`. Returns the connection and every
/// ParameterStatus PostgreSQL reported at login.
pub(crate) async fn connect(
    target: &ServerTarget,
    addr: &Arc<Endpoint>,
    credentials: &ServerCredentials,
    timeout: Duration,
) -> Result<(Box<ServerConn>, Vec<(String, String)>), ServerError> {
    let fut = connect_inner(target, addr, credentials);
    if timeout.is_zero() {
        return fut.await;
    }
    match crate::runtime::timer::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ServerError::Timeout {
            addr: (**addr).clone(),
        }),
    }
}

async fn connect_inner(
    target: &ServerTarget,
    addr: &Arc<Endpoint>,
    credentials: &ServerCredentials,
) -> Result<(Box<ServerConn>, Vec<(String, String)>), ServerError> {
    let stream = crate::transport::connect_tls(addr, target.tls.as_deref())
        .await
        .map_err(|source| ServerError::Connect {
            addr: (**addr).clone(),
            source,
        })?;
    stream
        .set_tcp_options(&target.tcp)
        .map_err(|source| ServerError::Connect {
            addr: (**addr).clone(),
            source,
        })?;
    let mut conn = ServerConn::new(stream, addr.clone());
    let mut out = BytesMut::new();
    let params = [
        ("user", target.user.as_str()),
        ("database", target.database.as_str()),
    ];
    let extra = target
        .startup_params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    frontend::startup_message(params.into_iter().chain(extra), &mut out)
        .map_err(ServerError::Io)?;
    conn.stream.write_all(&out).await.map_err(ServerError::Io)?;

    authenticate(&mut conn, &target.user, credentials).await?;

    let mut reported = Vec::new();
    loop {
        match conn.read_message().await? {
            Message::ParameterStatus(p) => {
                let name = p.name().map_err(ServerError::Io)?.to_string();
                let value = p.value().map_err(ServerError::Io)?.to_string();
                conn.params.set(&name, &value);
                reported.push((name, value));
            }
            Message::BackendKeyData(k) => {
                conn.key = BackendKey {
                    process_id: k.process_id(),
                    secret_key: k.secret_key(),
                }
            }
            Message::ReadyForQuery(_) => break,
            Message::ErrorResponse(body) => {
                return Err(ServerError::from_error_fields(body.fields()));
            }
            Message::NoticeResponse(_) => {}
            _ => {
                return Err(ServerError::Protocol(
                    "unexpected message during login".into(),
                ));
            }
        }
    }
    conn.buf.clear();
    Ok((conn, reported))
}

async fn send(conn: &mut ServerConn, out: &mut BytesMut) -> Result<(), ServerError> {
    conn.stream.write_all(out).await.map_err(ServerError::Io)?;
    out.clear();
    Ok(())
}

/// Answer PostgreSQL's authentication requests until AuthenticationOk.
async fn authenticate(
    conn: &mut ServerConn,
    user: &str,
    credentials: &ServerCredentials,
) -> Result<(), ServerError> {
    let mut out = BytesMut::new();
    loop {
        match conn.read_message().await? {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let ServerCredentials::Password(pw) = credentials else {
                    return Err(no_secret("cleartext password", user, credentials));
                };
                frontend::password_message(pw.as_bytes(), &mut out).map_err(ServerError::Io)?;
                send(conn, &mut out).await?;
            }
            Message::AuthenticationMd5Password(body) => {
                let secret = match credentials {
                    ServerCredentials::Password(pw) => auth::md5_secret(user, pw),
                    ServerCredentials::Md5Secret(s) => s.clone(),
                    _ => return Err(no_secret("md5", user, credentials)),
                };
                let answer = auth::md5_response(&secret, body.salt());
                frontend::password_message(answer.as_bytes(), &mut out).map_err(ServerError::Io)?;
                send(conn, &mut out).await?;
            }
            Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let (mut offered, mut plus) = (false, false);
                while let Some(m) = mechanisms.next().map_err(ServerError::Io)? {
                    offered |= m == auth::SCRAM_SHA_256;
                    plus |= m == auth::SCRAM_SHA_256_PLUS;
                }
                if !offered && !plus {
                    return Err(ServerError::Auth(
                        "server offers no supported SASL mechanism".into(),
                    ));
                }
                scram(conn, user, credentials, plus, &mut out).await?;
            }
            Message::ErrorResponse(body) => {
                return Err(ServerError::from_error_fields(body.fields()));
            }
            _ => {
                return Err(ServerError::Auth(
                    "server asks for an unsupported authentication method".into(),
                ));
            }
        }
    }
}

/// The server asks for `method` and what pgsluice holds for `user` cannot
/// answer it: nothing at all, or a secret of another kind (an md5 secret
/// for SCRAM: "wrong password type", in PgBouncer's words).
fn no_secret(method: &str, user: &str, held: &ServerCredentials) -> ServerError {
    ServerError::Auth(match held {
        ServerCredentials::None => format!(
            "server asks for {method} authentication but no usable password for user \"{user}\" is configured"
        ),
        _ => format!(
            "wrong password type: server asks for {method} authentication and the secret for user \"{user}\" cannot answer it"
        ),
    })
}

/// SCRAM-SHA-256, with channel binding (SCRAM-SHA-256-PLUS) when the
/// connection is TLS and the server offers it (`plus`).
async fn scram(
    conn: &mut ServerConn,
    user: &str,
    credentials: &ServerCredentials,
    plus: bool,
    out: &mut BytesMut,
) -> Result<(), ServerError> {
    let creds = match credentials {
        ServerCredentials::Password(pw) => ScramCredentials::Password(pw.clone()),
        ServerCredentials::ScramKeys(k) => ScramCredentials::Keys(k.clone()),
        _ => return Err(no_secret("SCRAM-SHA-256", user, credentials)),
    };
    let scram_err = |e: auth::ScramError| ServerError::Auth(format!("SCRAM: {e}"));
    let mut client = match &conn.stream {
        Stream::Tls(s) => {
            let binding = s.channel_binding();
            let bind = (plus && !binding.is_empty()).then(|| binding.to_vec());
            ScramClient::over_tls(creds, bind)
        }
        _ => ScramClient::new(creds),
    };
    let first = client.client_first();
    frontend::sasl_initial_response(client.mechanism(), &first, out).map_err(ServerError::Io)?;
    send(conn, out).await?;
    let server_first = match conn.read_message().await? {
        Message::AuthenticationSaslContinue(b) => b.data().to_vec(),
        Message::ErrorResponse(body) => return Err(ServerError::from_error_fields(body.fields())),
        _ => return Err(ServerError::Protocol("expected SASLContinue".into())),
    };
    let client_final = client.server_first(&server_first).map_err(scram_err)?;
    frontend::sasl_response(&client_final, out).map_err(ServerError::Io)?;
    send(conn, out).await?;
    match conn.read_message().await? {
        Message::AuthenticationSaslFinal(b) => client.server_final(b.data()).map_err(scram_err),
        Message::ErrorResponse(body) => Err(ServerError::from_error_fields(body.fields())),
        _ => Err(ServerError::Protocol("expected SASLFinal".into())),
    }
}
