//! Authenticating a client: the message exchanges for auth_type trust,
//! any, plain, md5 and scram-sha-256 (SCRAM-SHA-256-PLUS over TLS), and
//! the certificate check of auth_type cert. The checks themselves (constant time)
//! live in `crate::auth`; no password or secret is ever logged.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::SessionEnd;
use super::login::read_more;
use crate::auth::{self, ScramKeys, ScramSecret, ScramServer, Secret};
use crate::config::{AuthType, Config};
use crate::protocol::backend;
use crate::protocol::frontend::{
    FrontendMessage, SaslInitialResponse, parse_password, read_message,
};
use crate::protocol::{MAX_STARTUP_PACKET, ProtocolError, sqlstate};
use crate::transport::Stream;

/// Authenticate `user` as the config says. Returns the SCRAM keys the
/// client proved, when it logged in with SCRAM.
pub(super) async fn authenticate(
    stream: &mut Stream,
    buf: &mut BytesMut,
    cfg: &Config,
    user: &str,
) -> Result<Option<ScramKeys>, SessionEnd> {
    let secret = cfg.userlist.get(user);
    match cfg.general.auth_type {
        AuthType::Any => Ok(None),
        AuthType::Trust => match secret {
            Some(_) => Ok(None),
            None => Err(auth_failed(user)),
        },
        AuthType::Plain => {
            let mut out = BytesMut::new();
            backend::authentication_cleartext(&mut out);
            stream.write_all(&out).await?;
            let password = parse_password(read_password(stream, buf).await?)?;
            match secret {
                Some(s) if auth::verify_password(s, user, &password) => Ok(None),
                _ => Err(auth_failed(user)),
            }
        }
        AuthType::Md5 => match secret {
            Some(Secret::Scram(s)) => scram(stream, buf, user, Some(s.clone())).await.map(Some),
            _ => md5(stream, buf, user, secret).await.map(|()| None),
        },
        AuthType::ScramSha256 => {
            let verifier = secret.and_then(auth::scram_secret_for);
            scram(stream, buf, user, verifier).await.map(Some)
        }
        AuthType::Cert => cert(stream, user, secret).map(|()| None),
        AuthType::Hba | AuthType::Pam => Err(SessionEnd::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "this auth_type is not supported by pgsluice yet",
        )),
    }
}

/// auth_type = cert, as PgBouncer: the client is on TLS, sent a
/// certificate (checked against client_tls_ca_file by the handshake), the
/// certificate's common name is the user name, and the user is known.
fn cert(stream: &Stream, user: &str, secret: Option<&Secret>) -> Result<(), SessionEnd> {
    let why = match stream {
        Stream::Tls(s) => match s.peer_certificates().first() {
            None => Some("TLS client certificate required"),
            Some(c) if auth::x509::subject_common_name(c).as_deref() != Some(user) => {
                Some("TLS certificate name mismatch")
            }
            Some(_) if secret.is_none() => Some("unknown user"),
            Some(_) => None,
        },
        _ => Some("TLS connection required"),
    };
    match why {
        None => Ok(()),
        Some(why) => {
            tracing::warn!(%user, "certificate authentication failed: {why}");
            Err(SessionEnd::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "certificate authentication failed",
            ))
        }
    }
}

fn auth_failed(user: &str) -> SessionEnd {
    SessionEnd::fatal(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Read the client's next 'p' message body.
async fn read_password(stream: &mut Stream, buf: &mut BytesMut) -> Result<Bytes, SessionEnd> {
    loop {
        match read_message(buf, MAX_STARTUP_PACKET as u32)? {
            Some(FrontendMessage::Password(body)) => return Ok(body),
            Some(FrontendMessage::Terminate) => {
                return Err(SessionEnd::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Some(_) => {
                return Err(SessionEnd::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "expected a password response",
                ));
            }
            None => read_more(stream, buf).await?,
        }
    }
}

async fn md5(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    secret: Option<&Secret>,
) -> Result<(), SessionEnd> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    backend::authentication_md5(&mut out, salt);
    stream.write_all(&out).await?;
    let answer = read_password(stream, buf).await?;
    let answer = answer.strip_suffix(b"\0").ok_or(ProtocolError::Malformed {
        what: "PasswordMessage",
    })?;
    match secret {
        Some(s) if auth::verify_md5_response(s, user, salt, answer) => Ok(()),
        _ => Err(auth_failed(user)),
    }
}

/// SCRAM-SHA-256. An unknown user (or an md5 secret, which cannot do SCRAM)
/// goes through the same exchange with a throwaway verifier and fails at
/// the end, so that user names cannot be probed.
async fn scram(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    verifier: Option<ScramSecret>,
) -> Result<ScramKeys, SessionEnd> {
    let known = verifier.is_some();
    let verifier = verifier.unwrap_or_else(|| {
        let throwaway: [u8; 16] = rand::random();
        let salt: [u8; 16] = rand::random();
        ScramSecret::from_password(&hex(&throwaway), &salt, 4096)
    });
    // Over TLS, SCRAM-SHA-256-PLUS is offered first, as PostgreSQL does.
    let binding = match stream {
        Stream::Tls(s) if !s.channel_binding().is_empty() => Some(s.channel_binding().to_vec()),
        _ => None,
    };
    let mut out = BytesMut::new();
    if binding.is_some() {
        backend::authentication_sasl(&mut out, &[auth::SCRAM_SHA_256_PLUS, auth::SCRAM_SHA_256]);
    } else {
        backend::authentication_sasl(&mut out, &[auth::SCRAM_SHA_256]);
    }
    stream.write_all(&out).await?;

    let initial = SaslInitialResponse::parse(read_password(stream, buf).await?)?;
    let plus = initial.mechanism == auth::SCRAM_SHA_256_PLUS && binding.is_some();
    if initial.mechanism != auth::SCRAM_SHA_256 && !plus {
        return Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "client selected an invalid SASL authentication mechanism",
        ));
    }
    let mut server = match binding {
        Some(b) => ScramServer::with_binding(verifier, b, plus),
        None => ScramServer::new(verifier),
    };
    let server_first = server
        .client_first(&initial.data)
        .map_err(|e| SessionEnd::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
    out.clear();
    backend::authentication_sasl_continue(&mut out, &server_first);
    stream.write_all(&out).await?;

    let client_final = read_password(stream, buf).await?;
    match server.client_final(&client_final) {
        Ok((server_final, keys)) if known => {
            out.clear();
            backend::authentication_sasl_final(&mut out, &server_final);
            stream.write_all(&out).await?;
            Ok(keys)
        }
        Err(auth::ScramError::ChannelBindingMismatch) => Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "SCRAM channel binding check failed",
        )),
        _ => Err(auth_failed(user)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
