//! Authenticating a client: the message exchanges for auth_type trust,
//! any, plain, md5 and scram-sha-256 (SCRAM-SHA-256-PLUS over TLS), and
//! the certificate check of auth_type cert, against the secret
//! `auth_source` finds (auth_file or auth_query). The checks themselves (constant time)
//! live in `crate::auth`; no password or secret is ever logged.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::SessionEnd;
use super::auth_source::{Source, Target};
use super::login::read_more;
use crate::auth::{self, ScramKeys, ScramSecret, ScramServer, Secret};
use crate::config::{AuthType, Config};
use crate::context::Context;
use crate::protocol::backend;
use crate::protocol::frontend::{
    FrontendMessage, SaslInitialResponse, parse_password, read_message,
};
use crate::protocol::{MAX_STARTUP_PACKET, ProtocolError, sqlstate};
use crate::transport::Stream;

/// What a login proved.
#[derive(Default)]
pub(super) struct Proven {
    /// The SCRAM keys the client proved, when it logged in with SCRAM.
    pub scram_keys: Option<ScramKeys>,
    /// For a user auth_query found: the password a plain login proved, or
    /// the md5 or plain secret found, for server logins of a pool that has
    /// no other.
    pub looked_up: Option<Secret>,
}

/// What the client sent to prove it knows the password, to be checked
/// against a secret (the one the exchange ran with, or a fresher one).
enum Proof {
    /// auth_type trust: the user exists.
    Trust,
    /// A cleartext password.
    Password(String),
    /// md5(md5(password || user) || salt).
    Md5([u8; 4], Vec<u8>),
    /// SCRAM, already checked against the secret the exchange started
    /// with: the keys proved, and the server's final message.
    Scram(ScramKeys, Vec<u8>),
}

/// Authenticate `user`, logging in to `target`, as the config says, with
/// the secret from auth_file or auth_query (`Source`).
pub(super) async fn authenticate(
    stream: &mut Stream,
    buf: &mut BytesMut,
    (ctx, cfg): (&Context, &Config),
    user: &str,
    target: Target<'_>,
) -> Result<Proven, SessionEnd> {
    if cfg.general.auth_type == AuthType::Any {
        return Ok(Proven::default());
    }
    let mut source = Source::find(ctx, cfg, user, target)?;
    let mut start = source.start().await?;
    let method = cfg.general.auth_type;
    // Under md5 and scram-sha-256 the secret decides the exchange: SCRAM
    // or md5 by its kind, and SCRAM's first answer carries its salt (a
    // proof made with an old salt cannot be checked against a new secret).
    // Those wait for the fresh answer, so that the first login after a
    // password change (or a change of password_encryption) works; plain,
    // trust and cert check the fresh answer at the end.
    let secret_first = matches!(method, AuthType::Md5 | AuthType::ScramSha256);
    if secret_first && !start.fresh {
        let secret = source.confirm().await?;
        start = super::auth_source::Start {
            secret,
            found: true,
            fresh: true,
        };
    }
    let proof = match (method, &start.secret) {
        (AuthType::Any, _) => unreachable!("handled above"),
        (AuthType::Trust, _) if start.found => Proof::Trust,
        (AuthType::Trust, _) => return Err(trust_failed(user)),
        (AuthType::Plain, _) => plain(stream, buf).await?,
        (AuthType::Md5, Some(Secret::Scram(s))) => {
            scram(stream, buf, user, Some(s.clone())).await?
        }
        (AuthType::Md5, _) => md5(stream, buf).await?,
        (AuthType::ScramSha256, secret) => {
            let verifier = secret.as_ref().and_then(auth::scram_secret_for);
            scram(stream, buf, user, verifier).await?
        }
        (AuthType::Cert, secret) => {
            cert(stream, user, secret.is_some() || start.found)?;
            Proof::Trust
        }
        (AuthType::Hba | AuthType::Pam, _) => {
            return Err(SessionEnd::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "this auth_type is not supported by pgsluice yet",
            ));
        }
    };
    // A remembered secret is confirmed by the lookup's fresh answer: a
    // changed password or a dropped role counts at once.
    let started = start.secret.clone();
    let secret = match start.fresh {
        true => start.secret,
        false => source.confirm().await?,
    };
    // A confirmation of a user that is gone failed above.
    let found = start.found;
    let mut proven = Proven::default();
    match proof {
        Proof::Trust if found => {}
        Proof::Trust => return Err(trust_failed(user)),
        Proof::Password(pw) => match &secret {
            // The password proved is the role's own: the servers of a
            // looked-up user log in with it, whatever the secret's kind.
            Some(s) if auth::verify_password(s, user, &pw) => {
                proven.looked_up = Some(Secret::Plain(pw));
            }
            _ => return Err(auth_failed(user)),
        },
        Proof::Md5(salt, answer) => match &secret {
            Some(s) if auth::verify_md5_response(s, user, salt, &answer) => {}
            _ => return Err(auth_failed(user)),
        },
        Proof::Scram(keys, server_final) => {
            // The proof was checked against `verifier`, made from the
            // secret the exchange started with: it stands if that is
            // still the user's secret.
            let same = started.is_some() && started == secret;
            if !same {
                return Err(sasl_failed(user));
            }
            let mut out = BytesMut::new();
            backend::authentication_sasl_final(&mut out, &server_final);
            stream.write_all(&out).await?;
            proven.scram_keys = Some(keys);
        }
    }
    match (&source, secret) {
        (Source::Lookup(_), Some(s @ (Secret::Md5(_) | Secret::Plain(_)))) => {
            proven.looked_up.get_or_insert(s);
        }
        (Source::Lookup(_), _) => {}
        // Only a looked-up user's servers need what the login proved.
        _ => proven.looked_up = None,
    }
    Ok(proven)
}

/// auth_type = cert, as PgBouncer: the client is on TLS, sent a
/// certificate (checked against client_tls_ca_file by the handshake), the
/// certificate's common name is the user name, and the user is known.
fn cert(stream: &Stream, user: &str, known: bool) -> Result<(), SessionEnd> {
    let why = match stream {
        Stream::Tls(s) => match s.peer_certificates().first() {
            None => Some("TLS client certificate required"),
            Some(c) if auth::x509::subject_common_name(c).as_deref() != Some(user) => {
                Some("TLS certificate name mismatch")
            }
            Some(_) if !known => Some("unknown user"),
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

/// A failed SCRAM exchange, in PgBouncer's words.
fn sasl_failed(user: &str) -> SessionEnd {
    tracing::debug!(%user, "SCRAM authentication failed");
    SessionEnd::fatal(sqlstate::INVALID_PASSWORD, "SASL authentication failed")
}

/// auth_type trust for a user that does not exist, in PgBouncer's words.
fn trust_failed(user: &str) -> SessionEnd {
    tracing::debug!(%user, "trust authentication of an unknown user");
    SessionEnd::fatal(
        sqlstate::INVALID_AUTHORIZATION,
        "\"trust\" authentication failed",
    )
}

/// auth_type plain: the cleartext password.
async fn plain(stream: &mut Stream, buf: &mut BytesMut) -> Result<Proof, SessionEnd> {
    let mut out = BytesMut::new();
    backend::authentication_cleartext(&mut out);
    stream.write_all(&out).await?;
    let password = parse_password(read_password(stream, buf).await?)?;
    Ok(Proof::Password(password))
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

async fn md5(stream: &mut Stream, buf: &mut BytesMut) -> Result<Proof, SessionEnd> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    backend::authentication_md5(&mut out, salt);
    stream.write_all(&out).await?;
    let answer = read_password(stream, buf).await?;
    let answer = answer.strip_suffix(b"\0").ok_or(ProtocolError::Malformed {
        what: "PasswordMessage",
    })?;
    Ok(Proof::Md5(salt, answer.to_vec()))
}

/// SCRAM-SHA-256, up to the server's final message (sent once the proof
/// is confirmed). An unknown user (or an md5 secret, which cannot do
/// SCRAM) goes through the same exchange with a throwaway verifier, made
/// without key derivation as a stored one is read, and fails at the end,
/// so that user names can be probed neither by answer nor by time.
async fn scram(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    verifier: Option<ScramSecret>,
) -> Result<Proof, SessionEnd> {
    let known = verifier.is_some();
    let verifier = verifier.unwrap_or_else(ScramSecret::throwaway);
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
        Ok((server_final, keys)) if known => Ok(Proof::Scram(keys, server_final)),
        Err(auth::ScramError::ChannelBindingMismatch) => Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "SCRAM channel binding check failed",
        )),
        _ => Err(sasl_failed(user)),
    }
}
